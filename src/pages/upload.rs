use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::{html, viewer, Nav, PageError, When};
use crate::startup::AppState;
use crate::storage::history;
use crate::storage::queries::{self, UploadRecord};

#[derive(Template)]
#[template(path = "upload.html")]
struct UploadPage {
    nav: Option<Nav>,
    u: UploadRecord,
    received: When,
    pretty_body: String,
    previous: Option<i64>,
    next: Option<i64>,
    forwarding: bool,
}

pub async fn page(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let session = viewer(&req, &state).await?;
    let id: i64 = path
        .parse()
        .map_err(|_| PageError::NotFound(format!("no upload {:?}", path.as_str())))?;
    let found = state
        .read(move |conn| {
            let Some(u) = queries::upload(conn, id)? else {
                return Ok(None);
            };
            let (previous, next) = history::neighbours(conn, &u.task_id, id)?;
            Ok(Some((u, previous, next)))
        })
        .await?;
    let (u, previous, next) =
        found.ok_or_else(|| PageError::NotFound(format!("no upload #{id}")))?;
    let pretty_body = serde_json::from_str::<serde_json::Value>(&u.raw_body)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| u.raw_body.clone());
    let received = super::when(crate::domain::parse_time_arg(&u.received_at).unwrap_or_default());
    let body = UploadPage {
        nav: Some(Nav::from(&session)),
        u,
        received,
        pretty_body,
        previous,
        next,
        forwarding: state.config.upstream.as_ref().is_some_and(|u| u.forward),
    }
    .render()?;
    Ok(html(body))
}
