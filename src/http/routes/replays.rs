//! `POST /api/v1/replays`: operators ask the running service to send stored uploads
//! to SMS again.

#[allow(unused_imports)] // named by the OpenAPI annotations
use crate::http::error::ApiRefusals;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::domain::RawReplayFilter;
use crate::http::error::ApiError;
use crate::http::extract::ApiOperator;
use crate::http::Delivery;
use crate::services::replay;

/// The body of `POST /api/v1/replays`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ReplayRequest {
    #[serde(flatten)]
    pub filter: RawReplayFilter,
    /// Another endpoint than the configured one.
    pub to: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/replays",
    tag = "api",
    params(),
    responses((status = 200, description = "Starts a replay to SMS from the service (operators; JSON or the page's form)"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
pub async fn create(
    body: web::Json<ReplayRequest>,
    delivery: web::Data<Delivery>,
    ApiOperator(credential): ApiOperator,
) -> Result<HttpResponse, ApiError> {
    let target = replay::target(delivery.upstream.as_ref(), body.to.as_deref(), body.dry_run)?;
    let filter = body.filter.parse().map_err(ApiError::bad_request)?;
    let dry_run = body.dry_run;
    let answer = delivery
        .replays
        .start(filter, target, dry_run, &format!("api:{}", credential.name))
        .await?;
    Ok(if dry_run {
        HttpResponse::Ok().json(answer)
    } else {
        HttpResponse::Created().json(answer)
    })
}
