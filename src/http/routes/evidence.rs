//! Proofs over the ledger's Merkle tree, for auditors and operators.

use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::get_resource;
use super::read_api::{page_limit, time_range};
use crate::domain::TaskId;
use crate::http::error::SmsError;
use crate::http::extract::{ApiReader, Query};
use crate::http::PublicLog;
use crate::services::checkpoints::Checkpointer;
use crate::services::evidence::{self, EvidenceError};
use crate::storage::{checkpoints, tree, ReadPool};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_resource("/api/v1/uploads/{id}/proof", inclusion))
        .service(get_resource("/api/v1/checkpoints/consistency", consistency))
        .service(get_resource("/api/v1/checkpoints/latest", latest))
        .service(get_resource("/api/v1/checkpoints", list))
        .service(get_resource("/api/v1/evidence", bundle))
        .service(get_resource("/checkpoint", log_checkpoint))
        .service(get_resource("/tile/{path:.*}", tile));
}

/// Monitors and witnesses read the log like any C2SP tlog-tiles log: open with
/// `--public-log`, otherwise for auditors and operators.
async fn may_read_log(req: &HttpRequest) -> Result<(), SmsError> {
    let public = req.app_data::<web::Data<PublicLog>>().is_some_and(|p| p.0);
    if !public {
        ApiReader::extract(req).await?;
    }
    Ok(())
}

/// `GET /checkpoint`: the latest signed checkpoint (C2SP tlog-tiles).
async fn log_checkpoint(
    req: HttpRequest,
    reads: web::Data<ReadPool>,
) -> Result<HttpResponse, SmsError> {
    may_read_log(&req).await?;
    let latest = reads.with_blocking(checkpoints::latest).await?;
    let latest = latest.ok_or_else(|| SmsError::NotFound("no checkpoint yet".into()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(latest.note))
}

/// `GET /tile/<L>/<N>[.p/<W>]`: the tree's hashes as C2SP tlog-tiles tiles
/// (height 8); full tiles never change and may be cached for good.
async fn tile(req: HttpRequest, reads: web::Data<ReadPool>) -> Result<HttpResponse, SmsError> {
    may_read_log(&req).await?;
    let path = req.path().trim_start_matches('/').to_string();
    let partial = path.contains(".p/");
    let data = reads
        .with_blocking(move |conn| tree::tile_data(conn, &path))
        .await?
        .ok_or_else(|| SmsError::NotFound(format!("no such tile: {}", req.path())))?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            "Cache-Control",
            if partial {
                "no-store"
            } else {
                "public, max-age=31536000, immutable"
            },
        ))
        .body(data))
}

#[derive(Deserialize)]
struct EvidenceQuery {
    task_id: String,
    since: Option<String>,
    until: Option<String>,
}

/// `GET /api/v1/evidence?task_id=&since=&until=`: the evidence bundle, after a
/// checkpoint of everything stored so far.
async fn bundle(
    req: HttpRequest,
    query: Query<EvidenceQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, SmsError> {
    let task = TaskId::parse(&query.task_id).map_err(SmsError::bad_request)?;
    let (since, until) = time_range(query.since.as_deref(), query.until.as_deref())?;
    let checkpointer = req
        .app_data::<web::Data<Checkpointer>>()
        .cloned()
        .ok_or_else(|| SmsError::Unavailable("this service makes no checkpoints".into()))?;
    checkpointer
        .make_now()
        .await
        .map_err(|e| SmsError::Storage(e.to_string()))?;
    let vkey = checkpointer.verifier_key();
    let (bundle, _) = reads
        .with_blocking(move |conn| Ok(evidence::bundle(conn, task.as_str(), since, until, vkey)))
        .await??;
    Ok(HttpResponse::Ok().json(bundle))
}

/// `GET /api/v1/checkpoints/latest`: the signed note, as Go's `note` reads it.
async fn latest(reads: web::Data<ReadPool>, _: ApiReader) -> Result<HttpResponse, SmsError> {
    let latest = reads.with_blocking(checkpoints::latest).await?;
    let latest = latest.ok_or_else(|| {
        SmsError::NotFound("no checkpoint yet: the first is made once an upload is stored".into())
    })?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(latest.note))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    before: Option<u64>,
}

/// `GET /api/v1/checkpoints?limit=&before=`: newest first, with the verifier key.
async fn list(
    req: HttpRequest,
    query: Query<ListQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, SmsError> {
    let limit = page_limit(query.limit, 50)?;
    let before = query.before;
    let mut list = reads
        .with_blocking(move |conn| checkpoints::list(conn, limit + 1, before))
        .await?;
    let next_before = (list.len() > limit as usize).then(|| {
        list.truncate(limit as usize);
        list.last().map(|c| c.tree_size)
    });
    let verifier_key = req
        .app_data::<web::Data<Checkpointer>>()
        .map(|c| c.verifier_key());
    Ok(HttpResponse::Ok().json(json!({
        "checkpoints": list,
        "next_before": next_before.flatten(),
        "verifier_key": verifier_key,
    })))
}

impl From<EvidenceError> for SmsError {
    fn from(e: EvidenceError) -> Self {
        match e {
            EvidenceError::BadSize(msg) => SmsError::bad_request(msg),
            EvidenceError::NoSuchUpload(_)
            | EvidenceError::NoSuchTask(_)
            | EvidenceError::NoCheckpoint => SmsError::NotFound(e.to_string()),
            EvidenceError::Storage(e) => e.into(),
        }
    }
}

#[derive(Deserialize)]
struct ProofQuery {
    tree_size: Option<u64>,
}

/// `GET /api/v1/uploads/{id}/proof?tree_size=N`.
async fn inclusion(
    path: web::Path<i64>,
    query: Query<ProofQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, SmsError> {
    let (id, size) = (path.into_inner(), query.tree_size);
    let proof = reads
        .with_blocking(move |conn| Ok(evidence::inclusion(conn, id, size)))
        .await??;
    Ok(HttpResponse::Ok().json(proof))
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

/// `GET /api/v1/checkpoints/consistency?from=N&to=M`.
async fn consistency(
    query: Query<ConsistencyQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, SmsError> {
    let (from, to) = (query.from, query.to);
    let proof = reads
        .with_blocking(move |conn| Ok(evidence::consistency(conn, from, to)))
        .await??;
    Ok(HttpResponse::Ok().json(proof))
}
