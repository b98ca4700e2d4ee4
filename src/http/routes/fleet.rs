//! Fleet history in the JSON API: what changed between two moments, the
//! fleet's daily trend, and every task's latest counts for a directory (docs/pages.md,
//! "Fleet history"). The tasks as of a moment are `GET
//! /api/v1/tasks?as_of=T` (`read_api`).

#[allow(unused_imports)] // named by the OpenAPI annotations
use crate::http::error::ApiRefusals;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::get_resource;
use super::read_api::time_param;
use crate::domain::fleet::DAY_MS;
use crate::domain::{format_timestamp, now_ms, Timestamp};
use crate::http::error::ApiError;
use crate::http::extract::{ApiReader, Query};
use crate::services::fleet::{self, ChangeFilter, ChangeSort, DEFAULT_TREND_DAYS};
use crate::storage::fleet::DirectoryRow;
use crate::storage::{self, ReadPool};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_resource("/api/v1/changes", changes))
        .service(get_resource("/api/v1/fleet/trend", trend))
        .service(get_resource("/api/v1/directories", directories));
}

#[derive(Deserialize)]
struct ChangesQuery {
    from: Option<String>,
    to: Option<String>,
    verdict: Option<String>,
    sort: Option<String>,
    format: Option<String>,
    limit: Option<u32>,
    offset: Option<usize>,
}

/// `from` (required) and `to` (now unless given), in order.
fn moments(from: Option<&str>, to: Option<&str>) -> Result<(Timestamp, Timestamp), ApiError> {
    let from = time_param("from", from)?.ok_or_else(|| ApiError::bad_request("from: required"))?;
    let to = time_param("to", to)?.unwrap_or_else(crate::domain::now_ms);
    if from > to {
        return Err(ApiError::bad_request("from: must not be after to"));
    }
    Ok((from, to))
}

#[utoipa::path(
    get,
    path = "/api/v1/changes",
    tag = "api",
    params(("from" = Option<String>, Query, description = "required"), ("to" = Option<String>, Query, description = "not before from; default now"), ("verdict" = Option<String>, Query, description = "new, improved, regressed, unchanged, no_results or clean"), ("sort" = Option<String>, Query, description = "change or task"), ("format" = Option<String>, Query, description = "csv for a spreadsheet (every row)"), ("limit" = Option<u32>, Query, description = "1–1000, default 100"), ("offset" = Option<usize>, Query, description = "rows to skip: the previous page's next_offset")),
    responses((status = 200, description = "What changed in the fleet between two moments"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn changes(
    query: Query<ChangesQuery>,
    reads: web::Data<ReadPool>,
    states: web::Data<fleet::StateCache>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = moments(query.from.as_deref(), query.to.as_deref())?;
    let filter = ChangeFilter::parse(query.verdict.as_deref()).map_err(ApiError::bad_request)?;
    let sort = ChangeSort::parse(query.sort.as_deref()).map_err(ApiError::bad_request)?;
    let csv = super::read_api::wants_csv(query.format.as_deref())?;
    let limit = super::read_api::page_limit(query.limit, 100)? as usize;
    let offset = query.offset.unwrap_or(0);
    if csv {
        let rows = reads
            .with_blocking(move |conn| {
                states
                    .changes(conn, from, to)?
                    .select(filter, sort)
                    .all(conn)
            })
            .await?;
        let mut out = Vec::new();
        fleet::write_changes_csv(&rows, &mut out)
            .map_err(|e| ApiError::Storage(format!("writing CSV: {e}")))?;
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                "Content-Disposition",
                "attachment; filename=\"sms-audit-changes.csv\"",
            ))
            .body(out));
    }
    let shown = reads
        .with_blocking(move |conn| {
            states.changes_page(conn, (from, to), filter, sort, offset, limit)
        })
        .await?;
    let page = crate::http::json::ChangesPage {
        total: shown.kept,
        next_offset: super::read_api::next_offset(shown.kept, offset, limit),
        rows: shown.rows.clone(),
    };
    Ok(HttpResponse::Ok().json(crate::http::json::changes(from, to, &shown.counts, &page)))
}

#[derive(Deserialize)]
struct TrendQuery {
    since: Option<String>,
    until: Option<String>,
}

/// `since` and `until` of a trend: by default the last 90 days up to now.
fn trend_range(
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(Timestamp, Timestamp), ApiError> {
    let until = time_param("until", until)?.unwrap_or_else(now_ms);
    let since = time_param("since", since)?.unwrap_or(until - (DEFAULT_TREND_DAYS - 1) * DAY_MS);
    if since > until {
        return Err(ApiError::bad_request("since: must not be after until"));
    }
    Ok((since, until))
}

#[utoipa::path(
    get,
    path = "/api/v1/fleet/trend",
    tag = "api",
    params(("since" = Option<String>, Query, description = "default: 90 days ago"), ("until" = Option<String>, Query, description = "default: now")),
    responses((status = 200, description = "The fleet at the end of each UTC day"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn trend(
    query: Query<TrendQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let (since, until) = trend_range(query.since.as_deref(), query.until.as_deref())?;
    let days = reads
        .with_blocking(move |conn| fleet::trend(conn, since, until))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "days": days })))
}

#[derive(Deserialize)]
struct DirectoriesQuery {
    path: Option<String>,
    prefix: Option<String>,
    limit: Option<u32>,
    offset: Option<usize>,
}

/// Directories listed for a prefix.
pub const MAX_DIRECTORIES: u32 = 200;

fn directory_json(d: &DirectoryRow) -> Value {
    json!({
        "task_id": d.task_id,
        "name": d.name,
        "upload_id": d.upload_id,
        "received_at": format_timestamp(d.received_at),
        "totals": d.totals,
        "problems": d.problems,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/directories",
    tag = "api",
    params(("path" = Option<String>, Query, description = "exact directory"), ("prefix" = Option<String>, Query, description = "directories starting with this"), ("limit" = Option<u32>, Query, description = "with path: 1–1000 tasks, default 100"), ("offset" = Option<usize>, Query, description = "with path: tasks to skip, the previous page's next_offset")),
    responses((status = 200, description = "Each task's latest counts for a directory, or directories by prefix"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn directories(
    query: Query<DirectoriesQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let DirectoriesQuery {
        path,
        prefix,
        limit,
        offset,
    } = query.into_inner();
    let limit = super::read_api::page_limit(limit, 100)? as usize;
    let offset = offset.unwrap_or(0);
    match (path, prefix) {
        (Some(path), None) => {
            let (total, rows) = {
                let path = path.clone();
                reads
                    .with_blocking(move |conn| {
                        storage::fleet::directory(conn, &path, offset, limit)
                    })
                    .await?
            };
            Ok(HttpResponse::Ok().json(json!({
                "path": path,
                "total": total,
                "next_offset": super::read_api::next_offset(total, offset, limit),
                "tasks": rows.iter().map(directory_json).collect::<Vec<_>>(),
            })))
        }
        (None, prefix) => {
            let prefix = prefix.unwrap_or_default();
            let found = {
                let prefix = prefix.clone();
                reads
                    .with_blocking(move |conn| {
                        storage::fleet::directories_starting(conn, &prefix, MAX_DIRECTORIES)
                    })
                    .await?
            };
            Ok(HttpResponse::Ok().json(json!({
                "prefix": prefix,
                "directories": found
                    .iter()
                    .map(|(path, tasks)| json!({ "path": path, "tasks": tasks }))
                    .collect::<Vec<_>>(),
            })))
        }
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "path and prefix: give one (path: one directory's tasks; prefix: the directories)",
        )),
    }
}
