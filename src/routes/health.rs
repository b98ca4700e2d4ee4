use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::SmsError;
use crate::startup::AppState;

/// 200 while the process runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 only when the writer can open a write transaction right now.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, SmsError> {
    state
        .writer
        .ping()
        .await
        .map_err(|e| SmsError::Unavailable(format!("database is not writable: {e}")))?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
