//! The proxy page: calls passed on to SMS (`serve --proxy`), newest first, with
//! filters and a link to older calls.

use super::filters;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::{html, urlencode, Nav, PageError};
use crate::http::extract::{PageUser, Query};
use crate::http::ProxyLogQuery;
use crate::services::proxy::ProxyLog;
use crate::storage::proxy_log::{self, CallRow};
use crate::storage::ReadPool;

/// Calls on one page.
const PAGE: u32 = 100;

#[derive(Template)]
#[template(path = "proxy.html")]
struct ProxyPage {
    nav: Option<Nav>,
    enabled: bool,
    logs_bodies: bool,
    filter_credential: String,
    filter_method: String,
    filter_path: String,
    filter_status: String,
    filter_outcome: String,
    calls: Vec<CallRow>,
    /// The link to the next (older) page, filters kept.
    older: Option<String>,
}

pub async fn page(
    query: Query<ProxyLogQuery>,
    reads: web::Data<ReadPool>,
    log: Option<web::Data<ProxyLog>>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
    let filter = query.filter().map_err(PageError::bad_request)?;
    let before_id = query.before_id;
    let mut calls = reads
        .with_blocking(move |conn| proxy_log::recent(conn, PAGE + 1, before_id, &filter))
        .await?;
    let older = (calls.len() > PAGE as usize).then(|| {
        calls.truncate(PAGE as usize);
        let last = calls.last().map_or(0, |c| c.id);
        let mut link = format!("/proxy?before_id={last}");
        for (name, value) in [
            ("credential", &query.credential),
            ("method", &query.method),
            ("path", &query.path),
            ("status", &query.status),
            ("outcome", &query.outcome),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                link.push_str(&format!("&{name}={}", urlencode(v)));
            }
        }
        link
    });
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    // A toggle only where there is a body to show.
    for c in &mut calls {
        c.request_body = c.request_body.take().filter(|b| !b.is_empty());
        c.response_body = c.response_body.take().filter(|b| !b.is_empty());
    }
    let body = ProxyPage {
        nav: Some(Nav::from(&session)),
        enabled: log.is_some(),
        logs_bodies: log.is_some_and(|l| l.settings().log_bodies),
        filter_credential: text(&query.credential),
        filter_method: text(&query.method),
        filter_path: text(&query.path),
        filter_status: text(&query.status),
        filter_outcome: text(&query.outcome),
        calls,
        older,
    }
    .render()?;
    Ok(html(body))
}
