//! Proofs over the ledger's Merkle tree, for auditors and operators.

#[allow(unused_imports)] // named by the OpenAPI annotations
use crate::http::error::ApiRefusals;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::get_resource;
use super::read_api::{page_limit, time_range};
use crate::domain::TaskId;
use crate::http::error::ApiError;
use crate::http::extract::{ApiReader, Query};
use crate::http::json::CheckpointJson;
use crate::http::Evidence;
use crate::services::evidence::{self, EvidenceError};
use crate::services::witnessing;
use crate::storage::{checkpoints, ReadPool};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_resource("/api/v1/uploads/{id}/proof", inclusion))
        .service(get_resource("/api/v1/uploads/{id}/tlog-proof", tlog_proof))
        .service(get_resource("/api/v1/checkpoints/consistency", consistency))
        .service(get_resource("/api/v1/checkpoints/latest", latest))
        .service(get_resource("/api/v1/checkpoints", list))
        .service(get_resource("/api/v1/evidence", bundle))
        .service(get_resource("/checkpoint", log_checkpoint))
        .service(get_resource("/tile/{path:.*}", tile));
}

/// Monitors and witnesses read the log like any C2SP tlog-tiles log: open with
/// `--public-log`, otherwise for auditors and operators.
async fn may_read_log(req: &HttpRequest, evidence: &Evidence) -> Result<(), ApiError> {
    if !evidence.public_log {
        ApiReader::extract(req).await?;
    }
    Ok(())
}

/// `GET /checkpoint`: the latest signed checkpoint (C2SP tlog-tiles).
#[utoipa::path(
    get,
    path = "/checkpoint",
    tag = "transparency log",
    params(),
    responses((status = 200, description = "The latest checkpoint, for transparency-log monitors (with --public-log open to anyone)"))
)]
async fn log_checkpoint(
    req: HttpRequest,
    reads: web::Data<ReadPool>,
    evidence: web::Data<Evidence>,
) -> Result<HttpResponse, ApiError> {
    may_read_log(&req, &evidence).await?;
    let latest = reads
        .with_blocking(|conn| witnessing::latest_note(conn, None))
        .await?;
    let (_, note) = latest.ok_or_else(|| ApiError::NotFound("no checkpoint yet".into()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(note))
}

/// `GET /tile/<L>/<N>[.p/<W>]`: the tree's hashes as C2SP tlog-tiles tiles
/// (height 8); full tiles never change and may be cached for good.
#[utoipa::path(
    get,
    path = "/tile/{path}",
    tag = "transparency log",
    params(("path" = String, Path, description = "a C2SP tlog-tiles path")),
    responses((status = 200, description = "A tile of the Merkle tree (C2SP tlog-tiles)"))
)]
async fn tile(
    req: HttpRequest,
    reads: web::Data<ReadPool>,
    evidence: web::Data<Evidence>,
) -> Result<HttpResponse, ApiError> {
    may_read_log(&req, &evidence).await?;
    let path = req.path().trim_start_matches('/');
    let partial = path.contains(".p/");
    let data = evidence
        .tiles
        .tile(&reads, path)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no such tile: {}", req.path())))?;
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

/// The most bytes of upload bodies one bundle from the API holds (32 MiB).
pub const BUNDLE_BODY_BYTES: u64 = 32 * 1024 * 1024;

/// `GET /api/v1/evidence?task_id=&since=&until=`: the evidence bundle, after a
/// checkpoint of everything stored so far.
#[utoipa::path(
    get,
    path = "/api/v1/evidence",
    tag = "api",
    params(("task_id" = Option<String>, Query, description = "required"), ("since" = Option<String>, Query, description = "inclusive"), ("until" = Option<String>, Query, description = "exclusive")),
    responses((status = 200, description = "An evidence bundle of a task's uploads (JSON), for offline checks"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn bundle(
    query: Query<EvidenceQuery>,
    reads: web::Data<ReadPool>,
    evidence: web::Data<Evidence>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let task = TaskId::parse(&query.task_id).map_err(ApiError::bad_request)?;
    let (since, until) = time_range(query.since.as_deref(), query.until.as_deref())?;
    let checkpointer = evidence
        .checkpointer
        .clone()
        .ok_or_else(|| ApiError::Unavailable("this service makes no checkpoints".into()))?;
    checkpointer
        .make_now()
        .await
        .map_err(|e| ApiError::Storage(e.to_string()))?;
    let vkey = checkpointer.verifier_key();
    // One bundle is built at a time, with a bounded amount of bodies: each is
    // held in memory (and again as JSON) while it is built and sent.
    static BUILDING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let _one_at_a_time = BUILDING
        .acquire()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let limit = Some(BUNDLE_BODY_BYTES);
    let (bundle, _) = reads
        .with_blocking(move |conn| {
            Ok(evidence::bundle(
                conn,
                task.as_str(),
                since,
                until,
                vkey,
                limit,
            ))
        })
        .await??;
    Ok(HttpResponse::Ok().json(bundle))
}

/// `GET /api/v1/checkpoints/latest`: the signed note, as Go's `note` reads it.
#[utoipa::path(
    get,
    path = "/api/v1/checkpoints/latest",
    tag = "api",
    params(),
    responses((status = 200, description = "The latest signed checkpoint (a C2SP signed note, text/plain)"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn latest(
    query: Query<LatestQuery>,
    reads: web::Data<ReadPool>,
    evidence: web::Data<Evidence>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let witnessed = match query.witnessed.as_deref() {
        None | Some("0") => None,
        Some("1") => Some(evidence.witnesses.clone().ok_or_else(|| {
            ApiError::bad_request("witnessed=1: this service has no --witness configured")
        })?),
        Some(_) => return Err(ApiError::bad_request("witnessed must be 0 or 1")),
    };
    let asked_witnessed = witnessed.is_some();
    let latest = reads
        .with_blocking(move |conn| witnessing::latest_note(conn, witnessed.as_ref()))
        .await?;
    let (_, note) = latest.ok_or_else(|| match asked_witnessed {
        true => {
            ApiError::NotFound("no checkpoint has its witnesses' quorum of cosignatures yet".into())
        }
        false => ApiError::NotFound(
            "no checkpoint yet: the first is made once an upload is stored".into(),
        ),
    })?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(note))
}

#[derive(Deserialize)]
struct LatestQuery {
    witnessed: Option<String>,
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    before: Option<u64>,
}

/// `GET /api/v1/checkpoints?limit=&before=`: newest first, with the verifier key.
#[utoipa::path(
    get,
    path = "/api/v1/checkpoints",
    tag = "api",
    params(("limit" = Option<u32>, Query, description = "1–1000"), ("before" = Option<u64>, Query, description = "tree sizes below this")),
    responses((status = 200, description = "Signed checkpoints, newest first"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn list(
    query: Query<ListQuery>,
    reads: web::Data<ReadPool>,
    evidence: web::Data<Evidence>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit, 50)?;
    let before = query.before;
    let mut list = reads
        .with_blocking(move |conn| checkpoints::list(conn, limit + 1, before))
        .await?;
    let next_before = (list.len() > limit as usize).then(|| {
        list.truncate(limit as usize);
        list.last().map(|c| c.tree_size)
    });
    let verifier_key = evidence.verifier_key();
    let witnesses = evidence.witnesses.clone();
    let checkpoints = reads
        .with_blocking(move |conn| {
            let mut shown = Vec::with_capacity(list.len());
            for c in list {
                let size = c.tree_size;
                let note = witnessing::cosigned_note(conn, &c.note, size)?;
                let mut item = serde_json::to_value(CheckpointJson::from(c)).unwrap_or_default();
                item["note"] = note.into();
                if let Some(w) = &witnesses {
                    item["witnesses"] = witnessing::witness_json(conn, size, w)?;
                }
                shown.push(item);
            }
            Ok(shown)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "checkpoints": checkpoints,
        "next_before": next_before.flatten(),
        "verifier_key": verifier_key,
    })))
}

impl From<EvidenceError> for ApiError {
    fn from(e: EvidenceError) -> Self {
        match e {
            EvidenceError::BadSize(msg) => ApiError::bad_request(msg),
            EvidenceError::TooLarge { .. } => ApiError::bad_request(e.to_string()),
            EvidenceError::NoSuchUpload(_)
            | EvidenceError::NoSuchTask(_)
            | EvidenceError::NoCheckpoint => ApiError::NotFound(e.to_string()),
            EvidenceError::Storage(e) => e.into(),
        }
    }
}

#[derive(Deserialize)]
struct ProofQuery {
    tree_size: Option<u64>,
}

/// `GET /api/v1/uploads/{id}/proof?tree_size=N`.
#[utoipa::path(
    get,
    path = "/api/v1/uploads/{id}/proof",
    tag = "api",
    params(("id" = i64, Path, description = "the upload id"), ("tree_size" = Option<u64>, Query, description = "default: the latest checkpoint")),
    responses((status = 200, description = "An RFC 6962 inclusion proof of an upload"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn inclusion(
    path: web::Path<i64>,
    query: Query<ProofQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let (id, size) = (path.into_inner(), query.tree_size);
    let proof = reads
        .with_blocking(move |conn| Ok(evidence::inclusion(conn, id, size)))
        .await??;
    Ok(HttpResponse::Ok().json(proof))
}

/// `GET /api/v1/uploads/{id}/tlog-proof`: C2SP tlog-proof@v1 text.
#[utoipa::path(
    get,
    path = "/api/v1/uploads/{id}/tlog-proof",
    tag = "api",
    params(("id" = i64, Path, description = "the upload id")),
    responses((status = 200, description = "The upload's C2SP tlog-proof@v1 (text/plain): index, inclusion proof and the latest checkpoint with its cosignatures; the entry hash as extra data"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn tlog_proof(
    path: web::Path<i64>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let proof = reads
        .with_blocking(move |conn| Ok(crate::services::tlog_proof::for_upload(conn, id)))
        .await??;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(proof.to_text()))
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

/// `GET /api/v1/checkpoints/consistency?from=N&to=M`.
#[utoipa::path(
    get,
    path = "/api/v1/checkpoints/consistency",
    tag = "api",
    params(("from" = Option<u64>, Query, description = "the older tree size"), ("to" = Option<u64>, Query, description = "the newer tree size")),
    responses((status = 200, description = "An RFC 6962 consistency proof between two checkpoints"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
async fn consistency(
    query: Query<ConsistencyQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = (query.from, query.to);
    let proof = reads
        .with_blocking(move |conn| Ok(evidence::consistency(conn, from, to)))
        .await??;
    Ok(HttpResponse::Ok().json(proof))
}
