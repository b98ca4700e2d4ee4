//! `GET /api/v1/reconciliation` (the runs) and
//! `GET /api/v1/reconciliation/{run}/tasks` (a run's tasks, paged, or CSV).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::get_resource;
use super::read_api::{page_limit, DEFAULT_TASKS_PAGE};
use crate::domain::format_timestamp;
use crate::domain::reconcile::Verdict;
use crate::http::error::{ApiError, ApiRefusals};
use crate::http::extract::{ApiReader, Query};
use crate::services::reconcile;
use crate::storage::reconciliation::{self as store, Run};
use crate::storage::ReadPool;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_resource("/api/v1/reconciliation", reconciliation_runs))
        .service(get_resource(
            "/api/v1/reconciliation/{run}/tasks",
            reconciled_tasks,
        ));
}

/// A run as the API shows it, with its counts per verdict.
pub fn run_json(run: &Run, counts: &[(Verdict, u64)]) -> serde_json::Value {
    json!({
        "id": run.id,
        "started_at": format_timestamp(run.started_at),
        "finished_at": run.finished_at.map(format_timestamp),
        "target": run.target,
        "scope": {
            "tasks": run.scope.tasks,
            "since": run.scope.since.map(format_timestamp),
        },
        "ledger_size": run.ledger_size,
        "state": run.state.to_string(),
        "kind": run.kind.to_string(),
        "stopped_by": run.stopped_by,
        "counts": counts.iter().map(|(v, n)| (v.as_str(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
        "summary_note": run.summary_note,
    })
}

#[derive(Deserialize)]
struct RunsQuery {
    limit: Option<u32>,
}

/// `GET /api/v1/reconciliation?limit=`: the newest runs first.
#[utoipa::path(
    get,
    path = "/api/v1/reconciliation",
    tag = "api",
    params(("limit" = Option<u32>, Query, description = "1–1000, default 20")),
    responses((status = 200, description = "Reconciliation runs, newest first (runs): state, scope, counts per verdict, the signed summary"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn reconciliation_runs(
    query: Query<RunsQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit, 20)?;
    let runs = reads
        .with_blocking(move |conn| {
            store::runs(conn, limit)?
                .into_iter()
                .map(|run| Ok((store::verdict_counts(conn, run.id)?, run)))
                .collect::<Result<Vec<_>, crate::storage::StorageError>>()
        })
        .await?;
    let runs: Vec<_> = runs
        .iter()
        .map(|(counts, run)| run_json(run, counts))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "runs": runs })))
}

#[derive(Deserialize)]
struct TasksQuery {
    verdict: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
    format: Option<String>,
}

/// `GET /api/v1/reconciliation/{run}/tasks?verdict=&after=&limit=&format=`.
#[utoipa::path(
    get,
    path = "/api/v1/reconciliation/{run}/tasks",
    tag = "api",
    params(
        ("run" = i64, Path, description = "the run's id"),
        ("verdict" = Option<String>, Query, description = "match, missing-in-sms, foreign, differs or not-checked"),
        ("after" = Option<String>, Query, description = "the last task id of the previous page"),
        ("limit" = Option<u32>, Query, description = "1–1000, default 100"),
        ("format" = Option<String>, Query, description = "json (default: tasks with SMS's rounds and the uploads beside them, a page at a time) or csv (every task of the run)"),
    ),
    responses((status = 200, description = "The run's tasks in task order (tasks, next_after), or CSV"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn reconciled_tasks(
    path: web::Path<i64>,
    query: Query<TasksQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let run_id = path.into_inner();
    let verdict = Verdict::parse_filter(query.verdict.as_deref()).map_err(ApiError::bad_request)?;
    let csv = super::read_api::wants_csv(query.format.as_deref())?;
    let run = reads
        .with_blocking(move |conn| store::run(conn, run_id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no reconciliation {run_id}")))?;
    if csv {
        let outcomes = reads
            .with_blocking(move |conn| store::outcomes(conn, run_id, verdict, "", u32::MAX))
            .await?;
        let mut out = Vec::new();
        reconcile::write_csv(run_id, &outcomes, &mut out)
            .map_err(|e| ApiError::Storage(format!("writing CSV: {e}")))?;
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                "Content-Disposition",
                format!("attachment; filename=\"sms-audit-reconciliation-{run_id}.csv\""),
            ))
            .body(out));
    }
    let limit = page_limit(query.limit, DEFAULT_TASKS_PAGE)?;
    let after = query.after.clone().unwrap_or_default();
    let (mut details, counts) = reads
        .with_blocking(move |conn| {
            // One more than asked tells whether there is a next page.
            let details = store::outcomes(conn, run_id, verdict, &after, limit + 1)?
                .into_iter()
                .map(|o| reconcile::detail(conn, &run, o))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((details, store::verdict_counts(conn, run_id)?))
        })
        .await?;
    let next_after = (details.len() > limit as usize).then(|| {
        details.truncate(limit as usize);
        details.last().map(|d| d.task_id.clone())
    });
    Ok(HttpResponse::Ok().json(json!({
        "run": run_id,
        "counts": counts.iter().map(|(v, n)| (v.as_str(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
        "tasks": details,
        "next_after": next_after.flatten(),
    })))
}
