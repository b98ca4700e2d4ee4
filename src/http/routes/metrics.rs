//! `GET /metrics`: every metric in the Prometheus text format, the database's
//! gauges read at the scrape. With `--metrics-token`, only for
//! `Authorization: Bearer <token>`.

use crate::http::Metrics;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::http::error::ApiError;
use crate::storage::overview;
use crate::storage::{retention, ReadPool};

/// OpenMetrics 1.0, the text format prometheus-client writes (Prometheus reads it).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    params(),
    responses((status = 200, description = "Metrics in the Prometheus text format (OpenMetrics 1.0); with --metrics-token only for Authorization: Bearer"))
)]
pub async fn scrape(
    req: HttpRequest,
    metrics: web::Data<Metrics>,
    reads: web::Data<ReadPool>,
) -> Result<HttpResponse, ApiError> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !metrics.endpoint.allows(authorization) {
        return Err(ApiError::Unauthenticated(
            "/metrics needs Authorization: Bearer <the --metrics-token>".into(),
        ));
    }
    let path = reads.path().to_path_buf();
    let (snapshot, disk) = reads
        .with_blocking(move |conn| {
            Ok((
                overview::metrics_snapshot(conn)?,
                retention::disk_use(conn, &path)?,
            ))
        })
        .await?;
    metrics.http.set_from(&snapshot, &disk);
    let mut body = String::new();
    {
        let registry = metrics.endpoint.registry.lock();
        prometheus_client::encoding::text::encode(&mut body, &registry)
            .map_err(|e| ApiError::Storage(e.to_string()))?;
    }
    Ok(HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}
