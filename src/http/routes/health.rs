//! Health checks: `/healthz` (the process runs) and `/readyz` (it can write).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::http::error::ApiError;
use crate::storage::writer::WriterHandle;

/// 200 while the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    params(),
    responses((status = 200, description = "200 while the process runs (no auth)"))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 only when the writer can open a write transaction right now.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    params(),
    responses((status = 200, description = "200 when the writer can open a write transaction now, 503 with the reason otherwise (no auth)"))
)]
pub async fn readyz(writer: web::Data<WriterHandle>) -> Result<HttpResponse, ApiError> {
    writer
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(format!("database is not writable: {e}")))?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
