//! The deliveries page: forwarding's health, every delivery with filters, and the
//! replay form (preview, then confirm) for operators.

use super::filters;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{html, time_range, urlencode, Nav, PageError};
use crate::domain::{DeliveryState, RawReplayFilter, Role};
use crate::http::error::ApiError;
use crate::http::extract::Query;
use crate::http::extract::{CarriesCsrf, CsrfForm, PageOperator, PageUser};
use crate::http::Delivery;
use crate::services::replay::{self, ReplayAnswer};
use crate::storage::notifications::{self, SentNotification};
use crate::storage::outbox;
use crate::storage::outbox::DeliveryFilter;
use crate::storage::outbox::DeliveryRow;
use crate::storage::outbox::OutboxHealth;
use crate::storage::ReadPool;

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    state: Option<String>,
    task_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before_id: Option<i64>,
}

#[derive(Template)]
#[template(path = "deliveries.html")]
struct DeliveriesPage {
    nav: Option<Nav>,
    upstream: Option<String>,
    forwarding: bool,
    operator: bool,
    health: OutboxHealth,
    states: Vec<&'static str>,
    state: String,
    task_id: String,
    since: String,
    until: String,
    rows: Vec<DeliveryRow>,
    next_before_id: Option<i64>,
    /// Notifications to `--notify-url`, newest first.
    notifications: Vec<SentNotification>,
}

impl DeliveriesPage {
    fn older_link(&self, before: impl super::Int) -> String {
        format!(
            "/deliveries?state={}&task_id={}&since={}&until={}&before_id={}",
            urlencode(&self.state),
            urlencode(&self.task_id),
            urlencode(&self.since),
            urlencode(&self.until),
            before.int()
        )
    }
}

pub async fn page(
    query: Query<DeliveriesQuery>,
    reads: web::Data<ReadPool>,
    delivery: web::Data<Delivery>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
    let state_filter = match query.state.as_deref().map(str::trim) {
        None | Some("") | Some("any") => None,
        Some(s) => Some(s.parse::<DeliveryState>().ok().ok_or_else(|| {
            PageError::BadRequest(format!(
                "state: must be pending, delivered, failed, dead or superseded (empty: any), not {s:?}"
            ))
        })?),
    };
    let (since, until) = time_range(&query.since, &query.until)?;
    let filter = DeliveryFilter {
        state: state_filter,
        task_id: query.task_id.clone().filter(|t| !t.trim().is_empty()),
        since,
        until,
        before_id: query.before_id,
    };
    let (health, (rows, next_before_id), notifications) = reads
        .with_blocking(move |conn| {
            Ok((
                outbox::outbox_health(conn)?,
                outbox::deliveries(conn, &filter, 100)?,
                notifications::recent(conn, 50)?,
            ))
        })
        .await?;
    let upstream = delivery.upstream.as_ref();
    // A webhook's path is its secret; an endpoint may carry a password.
    let mut notifications = notifications;
    for n in &mut notifications {
        n.url = crate::domain::without_path(&n.url);
    }
    let body = DeliveriesPage {
        nav: Some(Nav::from(&session)),
        upstream: upstream.map(|u| crate::domain::without_userinfo(&u.endpoint)),
        forwarding: upstream.is_some_and(|u| u.forward),
        operator: session.credential.role == Role::Operator,
        health,
        states: <DeliveryState as strum::VariantArray>::VARIANTS
            .iter()
            .map(|s| s.as_str())
            .collect(),
        state: state_filter
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        task_id: query.task_id.clone().unwrap_or_default(),
        since: query.since.clone().unwrap_or_default(),
        until: query.until.clone().unwrap_or_default(),
        rows,
        next_before_id,
        notifications,
    }
    .render()?;
    Ok(html(body))
}

/// The replay form's fields, carried from the preview to the confirmation.
#[derive(Deserialize, Default)]
pub struct ReplayForm {
    #[serde(flatten)]
    filter: RawReplayFilter,
    #[serde(default)]
    to: String,
    #[serde(default)]
    csrf_token: String,
}

impl CarriesCsrf for ReplayForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

impl ReplayForm {
    /// Selects (and unless `dry_run`, creates) the replay the form describes.
    async fn start(
        &self,
        delivery: &Delivery,
        dry_run: bool,
        requested_by: &str,
    ) -> Result<ReplayAnswer, ApiError> {
        let target = replay::target(delivery.upstream.as_ref(), Some(&self.to), dry_run)?;
        let filter = self.filter.parse().map_err(ApiError::bad_request)?;
        let replays = &delivery.replays;
        Ok(replays.start(filter, target, dry_run, requested_by).await?)
    }
}

#[derive(Template)]
#[template(path = "replay_preview.html")]
struct PreviewPage {
    nav: Option<Nav>,
    csrf_token: String,
    answer: ReplayAnswer,
    form: ReplayForm,
}

impl PreviewPage {
    fn field<'a>(&self, value: &'a Option<String>) -> &'a str {
        value.as_deref().unwrap_or_default()
    }
}

pub async fn preview(
    form: Query<ReplayForm>,
    delivery: web::Data<Delivery>,
    PageOperator(session): PageOperator,
) -> Result<HttpResponse, PageError> {
    let answer = form
        .start(&delivery, true, &session.credential.name)
        .await?;
    let body = PreviewPage {
        nav: Some(Nav::from(&session)),
        csrf_token: session.csrf_token.clone(),
        answer,
        form: form.into_inner(),
    }
    .render()?;
    Ok(html(body))
}

pub async fn confirm(
    delivery: web::Data<Delivery>,
    submitted: CsrfForm<ReplayForm, PageOperator>,
) -> Result<HttpResponse, PageError> {
    let PageOperator(session) = &submitted.who;
    let answer = submitted
        .form
        .start(
            &delivery,
            false,
            &format!("page:{}", session.credential.name),
        )
        .await?;
    let location = format!(
        "/deliveries?state=pending&replay={}",
        answer.replay_id.unwrap_or_default()
    );
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish())
}
