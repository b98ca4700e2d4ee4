use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{html, time_field, urlencode, viewer, Nav, PageError};
use crate::domain::Role;
use crate::routes::replays::{self, ReplayAnswer, ReplayRequest};
use crate::startup::AppState;
use crate::storage::history::{self, DeliveryFilter, DeliveryRow, OutboxHealth};

const STATES: [&str; 5] = ["pending", "delivered", "failed", "dead", "superseded"];

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
    states: [&'static str; 5],
    state: String,
    task_id: String,
    since: String,
    until: String,
    rows: Vec<DeliveryRow>,
    next_before_id: Option<i64>,
}

impl DeliveriesPage {
    fn state_class(&self, state: &str) -> &'static str {
        match state {
            "delivered" => "good",
            "failed" | "dead" => "bad",
            _ => "same",
        }
    }

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
    req: HttpRequest,
    query: web::Query<DeliveriesQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let session = viewer(&req, &state).await?;
    let state_filter = query.state.clone().filter(|s| STATES.contains(&s.as_str()));
    let filter = DeliveryFilter {
        state: state_filter.clone(),
        task_id: query.task_id.clone().filter(|t| !t.trim().is_empty()),
        since: time_field("since", &query.since)?,
        until: time_field("until", &query.until)?,
        before_id: query.before_id,
    };
    let (health, (rows, next_before_id)) = state
        .read(move |conn| {
            Ok((
                history::outbox_health(conn)?,
                history::deliveries(conn, &filter, 100)?,
            ))
        })
        .await?;
    let upstream = state.config.upstream.as_ref();
    let body = DeliveriesPage {
        nav: Some(Nav::from(&session)),
        upstream: upstream.map(|u| u.endpoint.clone()),
        forwarding: upstream.is_some_and(|u| u.forward),
        operator: session.credential.role == Role::Operator,
        health,
        states: STATES,
        state: state_filter.unwrap_or_default(),
        task_id: query.task_id.clone().unwrap_or_default(),
        since: query.since.clone().unwrap_or_default(),
        until: query.until.clone().unwrap_or_default(),
        rows,
        next_before_id,
    }
    .render()?;
    Ok(html(body))
}

/// The replay form's fields, carried from the preview to the confirmation.
#[derive(Deserialize, Default)]
pub struct ReplayForm {
    #[serde(default)]
    task: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    latest_per_task: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    csrf_token: String,
}

impl ReplayForm {
    fn request(&self, dry_run: bool) -> ReplayRequest {
        ReplayRequest {
            tasks: self
                .task
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
            since: Some(self.since.clone()),
            until: Some(self.until.clone()),
            state: Some(self.state.clone()).filter(|s| !s.is_empty()),
            latest_per_task: self.latest_per_task == "true",
            to: Some(self.to.clone()),
            dry_run,
        }
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

async fn operator(
    req: &HttpRequest,
    state: &AppState,
) -> Result<crate::sessions::Session, PageError> {
    let session = viewer(req, state).await?;
    replays::require_operator(&session.credential)?;
    Ok(session)
}

pub async fn preview(
    req: HttpRequest,
    form: web::Query<ReplayForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let session = operator(&req, &state).await?;
    let answer = replays::start(&state, form.request(true), &session.credential.name).await?;
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
    req: HttpRequest,
    form: web::Form<ReplayForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let session = operator(&req, &state).await?;
    session.check_csrf(&form.csrf_token)?;
    let answer = replays::start(
        &state,
        form.request(false),
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
