//! The JSON side's URL map: the SMS upload endpoint, the read API, replays, health
//! checks, and JSON errors for unknown paths and wrong methods.

mod authenticated;
pub(crate) mod compare;
pub(crate) mod evidence;
pub(crate) mod fleet;
pub(crate) mod health;
pub(crate) mod ingest;
pub(crate) mod metrics;
mod proxy;
pub(crate) mod read_api;
pub(crate) mod reconciliation;
pub(crate) mod replays;

use actix_web::{web, HttpRequest, HttpResponse};

use futures_util::StreamExt;

use super::auth::header as header_value;
use super::body_budget::{BodyBudget, BodyHold};
use super::error::{self, ApiError};

/// The SMS upload endpoint. Registered before every other route: actix tries
/// the routes in order, each pattern with a parameter by a regex (with pages
/// first, an upload paid for three that could not match).
pub fn configure_upload(cfg: &mut web::ServiceConfig) {
    // `[^/]*` lets an empty task id reach the handler and get its 400.
    for path in [
        "/v3/tasks/{task_id:[^/]*}/consistency-result",
        "/v3/{task_id:[^/]*}/consistency-result",
    ] {
        cfg.service(
            web::resource(path)
                .route(web::post().to(ingest::upload))
                .default_service(web::to(upload_path_other_method)),
        );
    }
}

/// The rest of the JSON side (after `configure_upload` and the pages).
pub fn configure(cfg: &mut web::ServiceConfig) {
    read_api::configure(cfg);
    reconciliation::configure(cfg);
    cfg.service(get_resource("/api/v1/compare", compare::api));
    evidence::configure(cfg);
    fleet::configure(cfg);
    cfg.service(
        web::resource("/api/v1/replays")
            .route(web::post().to(replays::create))
            .default_service(not_allowed("POST")),
    );
    // ShowApiVersion: SMS's with `--proxy`.
    cfg.service(web::resource("/{version:v[0-9]+}").to(sms_path));
    cfg.service(get_resource("/healthz", health::healthz))
        .service(get_resource("/readyz", health::readyz))
        .service(get_resource("/metrics", metrics::scrape));
    cfg.default_service(web::to(other_path));
}

/// A GET route that answers other methods 405 (JSON or a page, by path).
pub fn get_resource<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(not_allowed("GET"))
}

/// 405 for the methods a resource does not take, in the shape of the path's side
/// (JSON or a page), with `Allow: allow`.
pub fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move |req: HttpRequest| async move {
        Err::<HttpResponse, _>(error::method_not_allowed(&req, allow))
    })
}

/// `GET /v3/tasks/{id}/consistency-result` and the like: SMS's with `--proxy`.
async fn upload_path_other_method(
    req: HttpRequest,
    payload: web::Payload,
    pass_through: Option<proxy::PassThrough>,
) -> Result<HttpResponse, actix_web::Error> {
    if let Some(state) = pass_through {
        return Ok(proxy::pass_through(req, payload, state).await?);
    }
    Err(error::method_not_allowed(&req, "POST"))
}

/// Whether a request is an SMS API call for the pass-through: `--proxy` is on
/// and it carries SMS credentials (an SDK signature or `X-Auth-Token`).
pub fn is_sms_call(ctx: &actix_web::guard::GuardContext<'_>) -> bool {
    let headers = ctx.head().headers();
    ctx.app_data::<web::Data<crate::services::proxy::Proxy>>()
        .is_some()
        && (headers.contains_key("x-auth-token")
            || headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("SDK-HMAC-")))
}

/// A path SMS has outside `/v3/` (`/`, `/v<N>`): passed on with `--proxy`,
/// unknown without.
pub async fn sms_path(
    req: HttpRequest,
    payload: web::Payload,
    pass_through: Option<proxy::PassThrough>,
) -> Result<HttpResponse, actix_web::Error> {
    match pass_through {
        Some(state) => Ok(proxy::pass_through(req, payload, state).await?),
        None => Err(error::not_found(&req, None)),
    }
}

/// Every other `/v3/` path is SMS's with `--proxy`; anything else is unknown.
async fn other_path(
    req: HttpRequest,
    payload: web::Payload,
    pass_through: Option<proxy::PassThrough>,
) -> Result<HttpResponse, actix_web::Error> {
    if let (true, Some(state)) = (req.path().starts_with("/v3/"), pass_through) {
        return Ok(proxy::pass_through(req, payload, state).await?);
    }
    Err(error::not_found(&req, None))
}

/// The most of a declared `Content-Length` reserved before the bytes arrive.
const RESERVE_AT_MOST: usize = 64 * 1024;

/// The body as read: its bytes, or `None` when it exceeded the limit. Each chunk
/// is charged to `budget` (in `hold`) as it arrives: past the budget, 503.
pub(super) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    budget: &BodyBudget,
    hold: &mut BodyHold,
) -> Result<Option<Vec<u8>>, ApiError> {
    let declared = header_value(req, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut body = Vec::with_capacity((declared.unwrap_or(0) as usize).min(RESERVE_AT_MOST));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("body: could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        budget.charge(hold, chunk.len())?;
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_declared_length_reserves_no_more_than_a_little() {
        use actix_web::FromRequest;
        let (req, mut payload) = actix_web::test::TestRequest::post()
            .insert_header(("content-length", "60000000"))
            .set_payload("0123456789")
            .to_http_parts();
        let budget = BodyBudget::new(1 << 30);
        let mut hold = budget.hold();
        let payload = web::Payload::from_request(&req, &mut payload)
            .await
            .unwrap();
        let body = read_body(&req, payload, 64 << 20, &budget, &mut hold)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body, b"0123456789");
        assert!(body.capacity() <= RESERVE_AT_MOST, "{}", body.capacity());
    }
}
