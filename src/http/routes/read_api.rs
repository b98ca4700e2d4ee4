//! The JSON read API under `/api/v1`, for auditors and operators.

use crate::http::error::ApiRefusals;
#[allow(unused_imports)] // named by the OpenAPI annotations
use crate::http::Evidence;
use crate::storage::{rejections, tasks, uploads};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::get_resource;
use crate::domain::{check_range, format_timestamp, now_ms, parse_time_arg, TaskId, Timestamp};
use crate::http::error::ApiError;
use crate::http::extract::ApiReader;
use crate::http::extract::Query;
use crate::http::json::{
    self, CallJson, RejectionCountJson, RejectionJson, TaskJson, UploadJson, UploadSummaryJson,
};
use crate::http::ProxyLogQuery;
use crate::storage::uploads::UploadPageQuery;
use crate::storage::{fleet, proxy_log, ReadPool};

pub const DEFAULT_PAGE: u32 = 50;
pub const DEFAULT_TASKS_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_resource("/api/v1/tasks", tasks))
        .service(get_resource(
            "/api/v1/tasks/{task_id}/uploads",
            task_uploads,
        ))
        .service(get_resource("/api/v1/uploads/{id}", upload))
        .service(get_resource("/api/v1/ledger", ledger_status))
        .service(get_resource("/api/v1/rejections", rejections))
        .service(get_resource("/api/v1/rejections/counts", rejection_counts))
        .service(get_resource("/api/v1/export", export))
        .service(get_resource("/api/v1/proxy-log", proxy_log));
}

/// `since` and `until` of the API's query, in order.
pub(super) fn time_range(
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(Option<Timestamp>, Option<Timestamp>), ApiError> {
    let (since, until) = (time_param("since", since)?, time_param("until", until)?);
    check_range(since, until).map_err(ApiError::bad_request)?;
    Ok((since, until))
}

/// Where the page after `limit` rows from `offset` starts, out of `total` (none:
/// that page is the last).
pub(super) fn next_offset(total: usize, offset: usize, limit: usize) -> Option<usize> {
    (total > offset.saturating_add(limit)).then(|| offset + limit)
}

/// A list's `limit`: `default` when absent, else 1 to [`MAX_PAGE`] (400 otherwise).
pub(super) fn page_limit(limit: Option<u32>, default: u32) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(format!(
            "limit: must be from 1 to {MAX_PAGE}"
        )))
    }
}

/// A `format=` of `json` (the default) or `csv`: whether CSV is asked for.
pub(super) fn wants_csv(format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "format: must be json or csv (got {other:?})"
        ))),
    }
}

#[derive(Deserialize)]
struct TasksQuery {
    limit: Option<u32>,
    after: Option<String>,
    as_of: Option<String>,
}

/// `GET /api/v1/tasks?limit=&after=`: tasks by id, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    tag = "api",
    params(("limit" = Option<u32>, Query, description = "1–1000, default 100"), ("after" = Option<String>, Query, description = "the last task id of the previous page"), ("as_of" = Option<String>, Query, description = "RFC 3339 or a date: each task as its latest upload by then shows it")),
    responses((status = 200, description = "Tasks by id, a page at a time (tasks, next_after)"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn tasks(
    query: Query<TasksQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit, DEFAULT_TASKS_PAGE)?;
    let after = query.after.clone().unwrap_or_default();
    if let Some(at) = time_param("as_of", query.as_of.as_deref())? {
        return tasks_as_of(reads, at, after, limit).await;
    }
    // One more than asked tells whether there is a next page.
    let mut tasks = reads
        .with_blocking(move |conn| tasks::tasks_after(conn, &after, limit + 1))
        .await?;
    let next_after = (tasks.len() > limit as usize).then(|| {
        tasks.truncate(limit as usize);
        tasks.last().map(|t| t.task_id.clone())
    });
    Ok(HttpResponse::Ok().json(
        json!({ "tasks": json::all::<_, TaskJson>(tasks), "next_after": next_after.flatten() }),
    ))
}

/// `GET /api/v1/tasks?as_of=T`: each task as its latest upload received at or
/// before T shows it; tasks with none by then are left out.
async fn tasks_as_of(
    reads: web::Data<ReadPool>,
    at: Timestamp,
    after: String,
    limit: u32,
) -> Result<HttpResponse, ApiError> {
    let (mut page, counts) = reads
        .with_blocking(move |conn| {
            let upto = fleet::last_id_at(conn, at)?;
            // One more than asked tells whether there is a next page.
            let page = fleet::states_page(conn, upto, &after, limit + 1)?;
            let counts = page
                .iter()
                .take(limit as usize)
                .map(|s| {
                    let count = fleet::upload_count_at(conn, &s.task_id, upto)?;
                    Ok((count, tasks::registration(conn, &s.task_id)?))
                })
                .collect::<Result<Vec<_>, crate::storage::StorageError>>()?;
            Ok((page, counts))
        })
        .await?;
    let next_after = (page.len() > limit as usize).then(|| {
        page.truncate(limit as usize);
        page.last().map(|t| t.task_id.clone())
    });
    let tasks: Vec<_> = page
        .iter()
        .zip(counts)
        .map(|(s, (count, registration))| TaskJson::as_of(s, count, registration))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "as_of": format_timestamp(at),
        "tasks": tasks,
        "next_after": next_after.flatten(),
    })))
}

#[derive(Deserialize)]
struct UploadsQuery {
    limit: Option<u32>,
    before_id: Option<i64>,
    since: Option<String>,
    until: Option<String>,
    regressed: Option<bool>,
}

/// A time in the API's query. Unlike the pages' form fields
/// ([`crate::domain::parse_time_field`]), a blank value is an error.
pub(super) fn time_param(name: &str, value: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    value
        .map(|v| parse_time_arg(v).map_err(|e| ApiError::bad_request(format!("{name}: {e}"))))
        .transpose()
}

#[utoipa::path(
    get,
    path = "/api/v1/tasks/{task_id}/uploads",
    tag = "api",
    params(("task_id" = String, Path, description = "the SMS task id"), ("limit" = Option<u32>, Query, description = "1–1000, default 50"), ("before_id" = Option<i64>, Query, description = "the next page"), ("since" = Option<String>, Query, description = "inclusive"), ("until" = Option<String>, Query, description = "exclusive"), ("regressed" = Option<bool>, Query, description = "only regressed uploads")),
    responses((status = 200, description = "A task's uploads, newest first (uploads, next_before_id)"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn task_uploads(
    path: web::Path<String>,
    query: Query<UploadsQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let task_id = TaskId::parse(&path).map_err(ApiError::bad_request)?;
    let limit = page_limit(query.limit, DEFAULT_PAGE)?;
    let (since, until) = time_range(query.since.as_deref(), query.until.as_deref())?;
    let page = UploadPageQuery {
        limit,
        before_id: query.before_id,
        since,
        until,
        regressed_only: query.regressed.unwrap_or(false),
    };
    let id = task_id.clone();
    let result = reads
        .with_blocking(move |conn| {
            if !tasks::task_exists(conn, id.as_str())? {
                return Ok(None);
            }
            uploads::task_uploads(conn, id.as_str(), &page).map(Some)
        })
        .await?;
    let Some((uploads, next_before_id)) = result else {
        return Err(ApiError::TaskNotFound(format!("task {task_id} is unknown")));
    };
    Ok(HttpResponse::Ok().json(json!({
        "task_id": task_id.as_str(),
        "uploads": json::all::<_, UploadSummaryJson>(uploads),
        "next_before_id": next_before_id,
    })))
}

#[utoipa::path(
    get,
    path = "/api/v1/uploads/{id}",
    operation_id = "get_upload",
    tag = "api",
    params(("id" = i64, Path, description = "the upload id")),
    responses((status = 200, description = "One upload: metadata, results, raw body, hashes, deliveries"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn upload(
    path: web::Path<i64>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let record = reads
        .with_blocking(move |conn| uploads::upload(conn, id))
        .await?;
    let record = record.ok_or_else(|| ApiError::NotFound(format!("no upload with id {id}")))?;
    Ok(HttpResponse::Ok().json(UploadJson::from(record)))
}

/// Verifies the chain now; concurrent callers share one run (see
/// `VerificationJob::verify_now`).
#[utoipa::path(
    get,
    path = "/api/v1/ledger",
    tag = "api",
    params(),
    responses((status = 200, description = "Verifies the chain now: `status`, `entries`, `head_id`, `head_hash`, `first_bad`"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn ledger_status(
    evidence: web::Data<Evidence>,
    ApiReader(reader): ApiReader,
) -> Result<HttpResponse, ApiError> {
    let verification = evidence
        .verification
        .verify_now(&format!("api:{}", reader.name))
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "status": if verification.intact() { "intact" } else { "broken" },
        "entries": verification.entries,
        "head_id": verification.head_id,
        "head_hash": verification.head_hash,
        "first_bad": verification.first_bad,
    })))
}

#[derive(Deserialize)]
struct RejectionsQuery {
    limit: Option<u32>,
    status: Option<u16>,
    error_code: Option<String>,
    credential: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/rejections",
    tag = "api",
    params(("limit" = Option<u32>, Query, description = "1–1000, default 100"), ("status" = Option<u16>, Query, description = "HTTP status"), ("error_code" = Option<String>, Query, description = "SMS error code"), ("credential" = Option<String>, Query, description = "credential name")),
    responses((status = 200, description = "The rejection log, newest first"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn rejections(
    query: Query<RejectionsQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit, 100)?;
    let filter = rejections::RejectionFilter {
        status: query.status,
        error_code: query.error_code.clone(),
        credential_name: query.credential.clone(),
    };
    let rows = reads
        .with_blocking(move |conn| rejections::recent_rejections(conn, limit, &filter))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "rejections": json::all::<_, RejectionJson>(rows) })))
}

/// `GET /api/v1/proxy-log?limit=&before_id=&credential=&method=&path=&status=&outcome=`:
/// calls passed on to SMS, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/proxy-log",
    tag = "api",
    params(("limit" = Option<u32>, Query, description = "1–1000, default 50"), ("before_id" = Option<i64>, Query, description = "the next page"), ("credential" = Option<String>, Query, description = ""), ("method" = Option<String>, Query, description = ""), ("path" = Option<String>, Query, description = "calls whose path starts with this"), ("status" = Option<String>, Query, description = "100–599"), ("outcome" = Option<String>, Query, description = "answered, unreachable, timeout, too_large, aborted")),
    responses((status = 200, description = "Calls passed on to SMS by `--proxy`, newest first"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn proxy_log(
    query: Query<ProxyLogQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit, DEFAULT_PAGE)?;
    let filter = query.filter().map_err(ApiError::bad_request)?;
    let before_id = query.before_id;
    let mut calls = reads
        .with_blocking(move |conn| proxy_log::recent(conn, limit + 1, before_id, &filter))
        .await?;
    let next_before_id = (calls.len() > limit as usize).then(|| {
        calls.truncate(limit as usize);
        calls.last().map(|c| c.id)
    });
    Ok(HttpResponse::Ok()
        .json(json!({ "calls": json::all::<_, CallJson>(calls), "next_before_id": next_before_id.flatten() })))
}

#[derive(Deserialize)]
struct CountsQuery {
    since: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/rejections/counts?since=&limit=`: refusals per minute, peer and
/// error code (default: the last hour), the largest first.
#[utoipa::path(
    get,
    path = "/api/v1/rejections/counts",
    tag = "api",
    params(("since" = Option<String>, Query, description = "default: the last hour"), ("limit" = Option<u32>, Query, description = "most rows")),
    responses((status = 200, description = "Refusals per minute, peer and error code"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn rejection_counts(
    query: Query<CountsQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit, 100)?;
    let since = time_param("since", query.since.as_deref())?.unwrap_or(now_ms() - 3_600_000);
    let counts = reads
        .with_blocking(move |conn| rejections::rejection_counts(conn, since, limit))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "counts": json::all::<_, RejectionCountJson>(counts) })))
}

#[derive(Deserialize)]
struct ExportQuery {
    format: Option<String>,
    task_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// An `io::Write` that hands its bytes to the HTTP response as they are written.
struct ChannelWriter(tokio::sync::mpsc::Sender<Result<web::Bytes, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(web::Bytes::copy_from_slice(buf)))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `GET /api/v1/export?format=csv|jsonl&task_id=&since=&until=`, streamed.
#[utoipa::path(
    get,
    path = "/api/v1/export",
    tag = "api",
    params(("format" = Option<String>, Query, description = "csv or jsonl"), ("task_id" = Option<String>, Query, description = "one task"), ("since" = Option<String>, Query, description = "inclusive"), ("until" = Option<String>, Query, description = "exclusive")),
    responses((status = 200, description = "Uploads as CSV (a row per result item) or JSON lines, streamed"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn export(
    query: Query<ExportQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    use crate::services::export::{self, ExportFilter, Format};
    let format = match query.format.as_deref() {
        Some("csv") | None => Format::Csv,
        Some("jsonl") => Format::Jsonl,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format: must be csv or jsonl, not {other:?}"
            )))
        }
    };
    let task_id = query
        .task_id
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(TaskId::parse)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let (since, until) = time_range(query.since.as_deref(), query.until.as_deref())?;
    let filter = ExportFilter {
        task_id,
        since,
        until,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let pool = reads.get_ref().clone();
    actix_web::rt::task::spawn_blocking(move || {
        let failed = tx.clone();
        let result = pool
            .with(|conn| {
                Ok(export::write(
                    conn,
                    &filter,
                    format,
                    ChannelWriter(tx),
                    |_| {},
                ))
            })
            .map_err(export::ExportError::from)
            .and_then(|written| written);
        if let Err(e) = result {
            tracing::warn!(error = %e, "export stopped early");
            let _ = failed.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"sms-audit-export.{}\"",
                format.extension()
            ),
        ))
        .streaming(body))
}
