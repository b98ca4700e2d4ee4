//! The SMS upload endpoint: `POST /v3/tasks/{task_id}/consistency-result`.
//! Checks run in the order of `http::refusals::UPLOAD_REFUSALS` (the manual's
//! error table, docs/agents.md);
//! nothing is stored unless every check passes, and the 200 is sent only after
//! the commit.

use crate::http::Access;
use crate::storage::tasks;
use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

use crate::domain::{AuthMethod, BadTaskId, Credential, TaskId, TaskPolicy, UploadBody};
use crate::http::auth::{self, header as header_value, AuthCache};
use crate::http::error::ApiError;
use crate::http::middleware::RequestId;
use crate::http::IngestSettings;
use crate::storage::uploads::NewUpload;
use crate::storage::writer::{SubmitError, WriterHandle};
use crate::storage::ReadPool;

use super::authenticated::{authenticate_with_body, Authorize, BodyRules};

fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let value = req
        .headers()
        .get(header::CONTENT_TYPE)
        .ok_or(ApiError::ContentTypeMissing)?;
    let text = value.to_str().unwrap_or("(not text)");
    let essence = text.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::ContentTypeWrong(text.to_string()))
    }
}

/// The upload body as SMS defines it (`UpdateConsistencyResultRequestBody`).
/// Its limits are the parser's (`domain::upload_body`); a test holds them to
/// its constants.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // described, never built: the endpoint parses the raw bytes
pub struct UploadBodyDoc {
    /// `null` or absent (no results), or up to `--max-results` items (default 30).
    #[schema(max_items = 30)]
    consistency_result: Option<Vec<ConsistencyResultDoc>>,
    /// When the agent finished, in seconds since the epoch (optional).
    #[schema(minimum = 0, maximum = 100_000_000_000_i64)]
    finished_time: Option<i64>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ConsistencyResultDoc {
    /// The checked directory: a string of at most 1,024 characters (required;
    /// empty is accepted).
    #[schema(max_length = 1024)]
    dir_check: String,
    /// Each 0 to 1,000,000, a JSON integer; all four are required.
    #[schema(minimum = 0, maximum = 1_000_000)]
    num_total_files: u32,
    #[schema(minimum = 0, maximum = 1_000_000)]
    num_different_files: u32,
    #[schema(minimum = 0, maximum = 1_000_000)]
    num_target_miss_files: u32,
    #[schema(minimum = 0, maximum = 1_000_000)]
    num_target_more_files: u32,
}

/// 403 unless the credential may upload to this task.
struct UploadTo<'a>(&'a str);

impl Authorize for UploadTo<'_> {
    async fn authorize(&self, credential: &Credential) -> Result<(), ApiError> {
        let task_name = self.0;
        if credential.may_upload_to(task_name) {
            return Ok(());
        }
        Err(ApiError::Forbidden(if credential.role.may_upload() {
            format!(
                "credential {:?} may not upload to task {task_name:?}",
                credential.name
            )
        } else {
            format!(
                "credential {:?} is an {} credential; uploading needs an agent or operator",
                credential.name, credential.role
            )
        }))
    }
}

#[utoipa::path(
    post,
    path = "/v3/tasks/{task_id}/consistency-result",
    operation_id = "update_consistency_result",
    tag = "upload",
    params(("task_id" = String, Path, description = "the SMS task id, 1 to 36 characters of A-Z a-z 0-9 _ -")),
    request_body(content = UploadBodyDoc, content_type = "application/json",
        description = "SMS's UpdateConsistencyResultRequestBody; stored byte for byte"),
    responses(
        (status = 200, description = "Stored and committed to disk before this answer: `{}` (and `X-Request-Id`)"),
    ),
    security(("token" = []), ("aksk" = []))
)]
pub async fn upload(
    req: HttpRequest,
    task_id: web::Path<String>,
    payload: web::Payload,
    config: web::Data<IngestSettings>,
    access: web::Data<Access>,
    reads: web::Data<ReadPool>,
    writer: web::Data<WriterHandle>,
) -> Result<HttpResponse, ApiError> {
    let presented = auth::presented(&req, true)?;
    // An upload's body is always under its signature: SMS's own agents sign it.
    if presented.method() == AuthMethod::Aksk && auth::unsigned_payload(&req) {
        return Err(ApiError::Unauthenticated(
            "Authorization: an upload's body must be signed (X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD is refused)"
                .into(),
        ));
    }
    let task_id = TaskId::parse(&task_id);
    // Who is calling is known before any byte of the body is read: an unknown
    // credential costs no memory.
    let found = auth::require_known(
        &presented,
        auth::find(&presented, &access.credentials, &reads).await?,
    )?;
    let task_known = is_registered(&task_id, &config, &access.credentials, &reads).await?;
    let task_name = task_id.as_ref().map(TaskId::as_str).unwrap_or("");
    let mut hold = config.body_budget.hold();
    let rules = BodyRules {
        limit: config.max_body_bytes,
        timeout: config.body_timeout,
        budget: &config.body_budget,
    };
    let (credential, body) = authenticate_with_body(
        &req,
        &presented,
        found,
        payload,
        rules,
        &mut hold,
        &UploadTo(task_name),
    )
    .await?;
    let proven = body.is_some() || presented.method() == AuthMethod::Token;
    let claim = admit(&config, &presented, &credential, body.is_some(), proven)?;
    let task_id = task_id.map_err(ApiError::bad_request)?;
    if !task_known {
        return Err(ApiError::TaskNotFound(format!(
            "task {task_id} is not registered (the service runs with --task-policy registered)"
        )));
    }
    check_content_type(&req)?;
    let raw_body = body.ok_or(ApiError::BodyTooLarge(config.max_body_bytes))?;
    let parsed = UploadBody::parse(&raw_body, config.max_results)?;
    let origin = Origin::of(&req, &config);
    let upload = NewUpload {
        request_id: origin.request_id,
        task_id,
        credential_name: credential.name,
        auth_method: presented.method(),
        project_id: origin.project_id,
        peer_addr: origin.peer_addr,
        forwarded_for: origin.forwarded_for,
        user_agent: origin.user_agent,
        raw_body,
        body: parsed,
    };
    let task = upload.task_id.clone();
    let receipt = writer.submit_on_worker(upload).await.map_err(|e| match e {
        SubmitError::Full | SubmitError::Closed => ApiError::Unavailable(e.to_string()),
        SubmitError::Failed(why) => ApiError::Storage(why.to_string()),
    })?;
    if let Some(claim) = claim {
        claim.keep();
    }
    tracing::debug!(task_id = %task, id = receipt.id, duplicate_of = receipt.duplicate_of, "upload stored");
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body("{}"))
}

/// A verified signature is used once: sent again, it is refused. And the
/// credential's rate limit: only a caller whose identity is proven is charged (a
/// signed body too large to read has an unchecked signature, and must not use up
/// the key's budget).
fn admit<'c>(
    config: &'c IngestSettings,
    presented: &auth::PresentedCredential,
    credential: &Credential,
    body_read: bool,
    proven: bool,
) -> Result<Option<auth::SignatureClaim<'c>>, ApiError> {
    let claim = match (presented, body_read) {
        (auth::PresentedCredential::Aksk(signature), true) => {
            Some(config.seen_signatures.claim(signature)?)
        }
        _ => None,
    };
    if let (Some(limiter), true) = (&config.rate_limiter, proven) {
        if limiter.check_key(&credential.name).is_err() {
            return Err(ApiError::Throttled);
        }
    }
    Ok(claim)
}

/// Under `--task-policy registered`, whether the task exists; known tasks are
/// cached, so usually no read is needed. Always true under `open`.
async fn is_registered(
    task_id: &Result<TaskId, BadTaskId>,
    config: &IngestSettings,
    cache: &AuthCache,
    reads: &ReadPool,
) -> Result<bool, ApiError> {
    let Ok(task) = task_id else { return Ok(true) };
    if config.task_policy != TaskPolicy::Registered || cache.task_known(task.as_str()) {
        return Ok(true);
    }
    let name = task.as_str().to_string();
    let known = reads
        .with_blocking(move |conn| tasks::task_exists(conn, &name))
        .await?;
    if known {
        cache.remember_task(task.as_str());
    }
    Ok(known)
}

/// Where an upload came from: request id, peer, forwarded-for (from trusted
/// proxies only), project and user agent.
struct Origin {
    request_id: String,
    project_id: Option<String>,
    peer_addr: String,
    forwarded_for: Option<String>,
    user_agent: Option<String>,
}

impl Origin {
    fn of(req: &HttpRequest, config: &IngestSettings) -> Self {
        let peer = req.peer_addr();
        Origin {
            request_id: req
                .extensions()
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            project_id: header_value(req, "x-project-id"),
            peer_addr: peer.map(|p| p.to_string()).unwrap_or_default(),
            forwarded_for: peer
                .filter(|p| config.trusted_proxies.contains(&p.ip()))
                .and_then(|_| header_value(req, "x-forwarded-for")),
            user_agent: header_value(req, "user-agent"),
        }
    }
}
