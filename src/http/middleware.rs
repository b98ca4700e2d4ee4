//! Per-request context: an `X-Request-Id` and the security headers on every response, a limit on the size
//! of a request's headers, per-address backoff after failed authentications, and a
//! rejection-log entry for every refused request.

use crate::http::metrics::route_name;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, Version};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, HttpResponse, ResponseError};
use std::net::IpAddr;
use uuid::Uuid;

use super::auth::CredentialName;
use super::auth_failures::AuthFailures;
use super::error::{ApiError, ErrorCode, ErrorMessage, ErrorPageParts};
use super::{Access, IngestSettings, Metrics};
use crate::domain::now_ms;
use crate::storage::rejections::Rejection;
use crate::storage::writer::WriterHandle;

/// The request's id, in the request's extensions for handlers to store.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    // Time-ordered (v7), so the unique index on stored request ids grows at its end.
    let request_id = String::from(
        Uuid::now_v7()
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer()),
    );
    let started = std::time::Instant::now();
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let writer = req.app_data::<web::Data<WriterHandle>>().cloned();
    let access = req.app_data::<web::Data<Access>>().cloned();
    let limit = access.as_ref().map_or(usize::MAX, |a| a.max_header_bytes);
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();

    // Only a request that presents credentials can fail to authenticate (a
    // request with none is refused, but guesses nothing).
    let guessing = presents_credentials(&req)
        .then(|| Some((access.clone()?, client_address(&req)?)))
        .flatten();
    let refusal = if header_bytes > limit {
        Some(ApiError::HeadersTooLarge(limit).error_response())
    } else if let Some(framing) = unsafe_framing(&req) {
        Some(framing.error_response())
    } else {
        guessing
            .as_ref()
            .and_then(|(access, peer)| backoff(&req, &access.failures, *peer))
    };
    let mut res = match refusal {
        Some(refusal) => req.into_response(refusal).map_into_right_body(),
        None => keep_navigation(next.call(req).await?)
            .await
            .map_into_left_body(),
    };
    if let Some((access, peer)) = &guessing {
        if res.status() == actix_web::http::StatusCode::UNAUTHORIZED {
            access.failures.failed(*peer);
        }
    }
    add_security_headers(res.headers_mut());
    // A proxied answer keeps SMS's own request id (the proxy log has both).
    if !res.headers().contains_key(X_REQUEST_ID) {
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            res.headers_mut().insert(X_REQUEST_ID, v);
        }
    }
    let code = res.response().extensions().get::<ErrorCode>().copied();
    access_log(&res, &request_id, code, started);
    if let (Some(code), Some(writer)) = (code, writer) {
        log_rejection(&res, code, &writer, request_id);
    }
    Ok(res)
}

/// The rejection log's entry for a refused request.
fn log_rejection<B>(
    res: &ServiceResponse<B>,
    ErrorCode(code): ErrorCode,
    writer: &WriterHandle,
    request_id: String,
) {
    let req = res.request();
    writer.log_rejection(Rejection {
        at: now_ms(),
        peer_addr: req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default(),
        method: req.method().to_string(),
        path: req.path().chars().take(512).collect(),
        status: res.status().as_u16(),
        error_code: code.to_string(),
        error_msg: res
            .response()
            .extensions()
            .get::<ErrorMessage>()
            .map(|m| m.0.clone()),
        credential_name: req
            .extensions()
            .get::<CredentialName>()
            .map(|c| c.0.clone()),
        request_id,
    });
}

/// Marks a request the pass-through handled (`--proxy`): its metrics and access
/// log line say `route="proxy"`, not the `(none)` of paths that name nothing.
pub struct Proxied;

/// The route a request is counted under: `proxy` for passed-on calls, else the
/// pattern that matched (none for paths that name nothing).
fn route_pattern(req: &actix_web::HttpRequest) -> Option<String> {
    if req.extensions().get::<Proxied>().is_some() {
        Some("proxy".into())
    } else {
        req.match_pattern()
    }
}

/// One line per request (target `sms_audit::access`): never the path's query or
/// a header, so never a secret; the route's pattern, not the path.
fn access_log<B>(
    res: &ServiceResponse<B>,
    request_id: &str,
    code: Option<ErrorCode>,
    started: std::time::Instant,
) {
    let req = res.request();
    let latency = started.elapsed();
    let route = match req.app_data::<web::Data<Metrics>>() {
        Some(metrics) => {
            let route = metrics
                .http
                .observe_request(route_pattern(req), req.method(), latency);
            if req.method() == actix_web::http::Method::POST
                && route.ends_with("/consistency-result")
            {
                metrics
                    .http
                    .count_upload(code.map(|ErrorCode(c)| c), res.status().is_success());
            }
            route
        }
        None => {
            std::sync::Arc::from(route_pattern(req).map_or("(none)".into(), |p| route_name(&p)))
        }
    };
    let extensions = req.extensions();
    tracing::info!(
        target: "sms_audit::access",
        request_id,
        method = %req.method(),
        route = &*route,
        task_id = req.match_info().get("task_id"),
        credential = extensions.get::<CredentialName>().map(|c| c.0.as_str()),
        status = res.status().as_u16(),
        error_code = code.map(|ErrorCode(c)| c),
        latency_ms = latency.as_micros() as f64 / 1000.0,
        "request"
    );
}

/// Requests no route should see, whatever their path: `CONNECT`, a request target
/// in absolute form (`GET http://host/path`: sms-audit is not a forward proxy, and
/// must not be mistaken for one), and repeated `Host` or `Content-Length` headers
/// (which two servers could read differently). actix's own parser already refuses
/// most of the latter; this holds whatever the parser lets through.
fn unsafe_framing(req: &ServiceRequest) -> Option<ApiError> {
    if req.method() == Method::CONNECT {
        return Some(ApiError::MethodNotAllowed("CONNECT".into()));
    }
    let uri = req.uri();
    if req.version() < Version::HTTP_2 && (uri.scheme().is_some() || uri.authority().is_some()) {
        return Some(ApiError::bad_request(
            "the request target must be a path (GET /v3/...), not a whole URL: sms-audit is not a forward proxy",
        ));
    }
    for name in [header::HOST, header::CONTENT_LENGTH] {
        if req.headers().get_all(&name).count() > 1 {
            return Some(ApiError::bad_request(format!(
                "the request has more than one {name} header"
            )));
        }
    }
    None
}

/// The caller's address: the peer's, or, when the peer is one of
/// `--trusted-proxy`, the last address its `X-Forwarded-For` adds.
fn client_address(req: &ServiceRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = req
        .app_data::<web::Data<IngestSettings>>()
        .is_some_and(|s| s.trusted_proxies.contains(&peer));
    if !trusted {
        return Some(peer);
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .last();
    Some(forwarded.unwrap_or(peer))
}

/// A token, a signature, or the login form.
fn presents_credentials(req: &ServiceRequest) -> bool {
    req.headers().contains_key(super::auth::X_AUTH_TOKEN)
        || req.headers().contains_key(header::AUTHORIZATION)
        || (req.method() == actix_web::http::Method::POST && req.path() == "/login")
}

/// 429 for a request that presents credentials from an address that has
/// failed too often lately.
fn backoff(req: &ServiceRequest, failures: &AuthFailures, peer: IpAddr) -> Option<HttpResponse> {
    let wait = failures.wait(peer)?;
    let seconds = wait.as_secs().max(1);
    Some(if super::error::is_api_path(req.path()) {
        ApiError::AuthBackoff(seconds).error_response()
    } else {
        super::error::PageError::LoginBackoff(seconds).error_response()
    })
}

/// Headers on every response: a strict CSP (no script at all, no framing), no MIME
/// sniffing, no referrer. Added here rather than by a middleware of their own: one
/// layer less on every request.
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    ),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
];

/// Ours replace any a handler set, a proxied answer from SMS too: the
/// browser reads them as this site's.
fn add_security_headers(headers: &mut actix_web::http::header::HeaderMap) {
    for (name, value) in &SECURITY_HEADERS {
        headers.insert(name.clone(), value.clone());
    }
}

/// Error pages keep the navigation of a logged-in reader: `PageError` cannot
/// see the request, so an error page of a request with a live session is
/// rendered again here, with the session's navigation. (Called by
/// `request_context`, not a middleware of its own: a layer less per request.)
async fn keep_navigation<B: MessageBody>(
    res: ServiceResponse<B>,
) -> ServiceResponse<EitherBody<B, String>> {
    // Only an error page is looked at again: every other response passes as is.
    let Some(parts) = res.response().extensions().get::<ErrorPageParts>().cloned() else {
        return res.map_into_left_body();
    };
    let cookie = res.request().cookie(super::extract::SESSION_COOKIE);
    let reads = res
        .request()
        .app_data::<web::Data<crate::storage::ReadPool>>()
        .cloned();
    let (Some(cookie), Some(reads)) = (cookie, reads) else {
        return res.map_into_left_body();
    };
    let value = cookie.value().to_string();
    let session = reads
        .with_blocking(move |c| crate::storage::sessions::find(c, &value))
        .await
        .ok()
        .flatten()
        .filter(|s| s.credential.role.may_read());
    let page = session.and_then(|s| parts.render_with(super::layout::Nav::from(&s)));
    match page {
        Some(page) => res.map_body(|_, _| EitherBody::right(page)),
        None => res.map_into_left_body(),
    }
}
