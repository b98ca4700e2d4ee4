//! The two error types: [`ApiError`], which every API handler returns, rendered
//! as SMS renders errors (`{"error_code": "...", "error_msg": "..."}`), and
//! [`PageError`], shown as a page in the site's layout.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use serde::Serialize;

use super::layout::Nav;
use crate::domain::BodyError;
use crate::services::replay::ReplayError;
use crate::storage::StorageError;

/// The error of the upload endpoint, the pass-through and the JSON API
/// (`/api/v1`, `/metrics`, health): answered in SMS's error shape
/// (`{"error_code", "error_msg"}`) with SMS's codes (`SMS.9001`, `APIGW.0301`, …).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{msg}")]
    BadRequest {
        msg: String,
        params: Option<Vec<String>>,
    },
    #[error("{0}")]
    TaskNotFound(String),
    #[error("{0}")]
    NotFound(String),
    #[error("Content-Type is missing; send application/json")]
    ContentTypeMissing,
    #[error("Content-Type {0:?} is not application/json")]
    ContentTypeWrong(String),
    #[error("body is larger than {}", crate::domain::counted(*.0 as u64, "byte"))]
    BodyTooLarge(usize),
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("too many requests for this credential; slow down")]
    Throttled,
    /// Too many failed authentications from this address: wait this many seconds.
    #[error("too many failed authentications from this address; try again in {0} s")]
    AuthBackoff(u64),
    #[error("no such path: {0}")]
    UnknownPath(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    #[error("the request's headers are larger than {}", crate::domain::counted(*.0 as u64, "byte"))]
    HeadersTooLarge(usize),
    #[error("the body was not received within {0} s")]
    BodyTimeout(u64),
    /// The pass-through could not reach SMS (502, as API Gateway answers it).
    #[error("{0}")]
    UpstreamUnavailable(String),
    /// SMS did not answer the pass-through in time (504).
    #[error("{0}")]
    UpstreamTimeout(String),
}

impl ApiError {
    pub fn bad_request(msg: impl std::fmt::Display) -> Self {
        ApiError::BadRequest {
            msg: msg.to_string(),
            params: None,
        }
    }

    pub fn error_code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "APIGW.0301",
            ApiError::Forbidden(_) => "SMS.9004",
            ApiError::BadRequest { .. } => "SMS.9001",
            ApiError::TaskNotFound(_) => "SMS.7703",
            ApiError::ContentTypeMissing => "SMS.2005",
            ApiError::ContentTypeWrong(_) => "SMS.2006",
            ApiError::BodyTooLarge(_) => "SMS.2004",
            ApiError::Storage(_) => "SMS.2007",
            ApiError::Unavailable(_) => "SMS.0201",
            ApiError::Throttled | ApiError::AuthBackoff(_) => "APIGW.0308",
            ApiError::UnknownPath(_) | ApiError::NotFound(_) => "APIGW.0101",
            ApiError::MethodNotAllowed(_) => "SMS.2003",
            ApiError::HeadersTooLarge(_) | ApiError::BodyTimeout(_) => "SMS.9001",
            ApiError::UpstreamUnavailable(_) => "APIGW.0202",
            ApiError::UpstreamTimeout(_) => "APIGW.0203",
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        ApiError::BadRequest {
            msg: e.message(),
            params: e.params(),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::Storage(e.to_string())
    }
}

impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Invalid(msg) => ApiError::bad_request(msg),
            ReplayError::Storage(msg) => ApiError::Storage(msg),
        }
    }
}

/// The error body, as the OpenAPI description shows it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // described, never built: `ErrorBody` is what is sent
pub struct SmsErrorDoc {
    /// `SMS.9001`, `APIGW.0301`, … (docs/agents.md, "The upload endpoint")
    error_code: String,
    error_msg: String,
    /// The parameters a `SMS.9001` names.
    error_param: Option<Vec<String>>,
}

/// The refusals every call of the JSON API may get, as the OpenAPI description
/// lists them (`responses(…, ApiRefusals)`).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // described, never built
pub enum ApiRefusals {
    #[response(
        status = 400,
        description = "A query parameter is invalid (`SMS.9001`, naming it)"
    )]
    BadQuery(SmsErrorDoc),
    #[response(status = 401, description = "No credentials (`APIGW.0301`)")]
    Unauthenticated(SmsErrorDoc),
    #[response(status = 403, description = "An agent credential (`SMS.9004`)")]
    Forbidden(SmsErrorDoc),
}

/// Marks an error response with its code so the rejection log can record it.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

/// The message an error response gave, for the rejection log.
#[derive(Clone, Debug)]
pub struct ErrorMessage(pub String);

#[derive(Serialize)]
struct ErrorBody<'a> {
    error_code: &'a str,
    error_msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_param: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoded_authorization_message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Vec<Detail<'a>>>,
}

#[derive(Serialize)]
struct Detail<'a> {
    error_code: &'a str,
    error_msg: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest { .. }
            | ApiError::ContentTypeMissing
            | ApiError::ContentTypeWrong(_) => StatusCode::BAD_REQUEST,
            ApiError::TaskNotFound(_) | ApiError::NotFound(_) | ApiError::UnknownPath(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Throttled | ApiError::AuthBackoff(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.error_code();
        let empty: &[String] = &[];
        let forbidden = matches!(self, ApiError::Forbidden(_));
        let message = self.to_string();
        let body = ErrorBody {
            error_code: code,
            error_msg: message.clone(),
            error_param: match self {
                ApiError::BadRequest { params, .. } => params.as_deref(),
                ApiError::Forbidden(_) => Some(empty),
                _ => None,
            },
            encoded_authorization_message: forbidden.then_some(""),
            details: forbidden.then(|| {
                vec![Detail {
                    error_code: code,
                    error_msg: self.to_string(),
                }]
            }),
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Throttled | ApiError::Unavailable(_)) {
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        if let ApiError::AuthBackoff(seconds) = self {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        let mut response = response.json(body);
        response.extensions_mut().insert(ErrorCode(code));
        response.extensions_mut().insert(ErrorMessage(message));
        response
    }
}

/// An error shown as a page in the site's layout.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("log in first")]
    LoginRequired(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// Too many failed logins from this address: wait this many seconds.
    #[error("too many failed logins from this address; try again in {0} s")]
    LoginBackoff(u64),
    #[error("{0}")]
    Internal(String),
}

impl PageError {
    /// 400 with what was wrong with the request.
    pub fn bad_request(why: impl std::fmt::Display) -> Self {
        PageError::BadRequest(why.to_string())
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        match e.status_code().as_u16() {
            401 => PageError::LoginRequired("/".into()),
            403 => PageError::Forbidden(e.to_string()),
            404 => PageError::NotFound(e.to_string()),
            400..=499 => PageError::BadRequest(e.to_string()),
            _ => PageError::Internal(e.to_string()),
        }
    }
}

impl From<StorageError> for PageError {
    fn from(e: StorageError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        PageError::Internal(format!("rendering failed: {e}"))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    nav: Option<Nav>,
    status: u16,
    heading: &'a str,
    message: String,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::LoginRequired(_) => StatusCode::SEE_OTHER,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            PageError::LoginBackoff(_) => StatusCode::TOO_MANY_REQUESTS,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let PageError::LoginRequired(next) = self {
            let location = format!("/login?next={}", super::urlencode(next));
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, location))
                .finish();
        }
        let status = self.status_code();
        let (heading, code) = match self {
            PageError::Forbidden(_) => ("Forbidden", "SMS.9004"),
            PageError::NotFound(_) => ("Not found", "APIGW.0101"),
            PageError::BadRequest(_) => ("Bad request", "SMS.9001"),
            PageError::MethodNotAllowed(_) => ("Method not allowed", "SMS.2003"),
            PageError::LoginBackoff(_) => ("Too many failed logins", "APIGW.0308"),
            _ => ("Something went wrong", "SMS.2007"),
        };
        if let PageError::Internal(msg) = self {
            tracing::error!(error = %msg, "page failed");
        }
        let page = ErrorPage {
            nav: None,
            status: status.as_u16(),
            heading,
            message: match self {
                PageError::Internal(_) => {
                    "The page could not be shown; the log has details.".into()
                }
                other => other.to_string(),
            },
        };
        let parts = ErrorPageParts {
            status: page.status,
            heading,
            message: page.message.clone(),
        };
        let mut response = HttpResponse::build(status);
        if let PageError::LoginBackoff(seconds) = self {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        let mut response = response
            .content_type("text/html; charset=utf-8")
            .body(page.render().unwrap_or_else(|_| heading.to_string()));
        response.extensions_mut().insert(ErrorCode(code));
        response
            .extensions_mut()
            .insert(ErrorMessage(parts.message.clone()));
        response.extensions_mut().insert(parts);
        response
    }
}

/// The pages' paths; every other path (the SMS API, the read API, health checks,
/// and paths that name nothing) belongs to the JSON side, whose errors are
/// SMS-shaped, as SMS itself answers an unknown path.
pub const PAGE_PREFIXES: [&str; 11] = [
    "/tasks",
    "/uploads",
    "/compare",
    "/changes",
    "/directories",
    "/audit",
    "/deliveries",
    "/proxy",
    "/login",
    "/logout",
    "/assets",
];

/// Whether errors on this path are answered in JSON rather than with a page.
pub fn is_api_path(path: &str) -> bool {
    let page = path == "/"
        || PAGE_PREFIXES.iter().any(|p| {
            path.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        });
    !page
}

/// Paths only programs call: the SMS API, the JSON API, health, metrics and the
/// transparency log. Their errors are JSON whoever asks.
const MACHINE_PREFIXES: [&str; 7] = [
    "/v3/",
    "/api/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/checkpoint",
    "/tile/",
];

/// Whether an error for this request is answered with the site's error page: a
/// page's path, or any other path a browser opens (`Accept: text/html`) that is
/// not one only programs call (a mistyped `/nope` gets the page, with the
/// navigation, not SMS's JSON).
pub fn wants_page(req: &HttpRequest) -> bool {
    let path = req.path();
    if !is_api_path(path) {
        return true;
    }
    let browser = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    browser && !MACHINE_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// A request actix's extractors could not read (`what`: query, form, body), in
/// the shape of the side it was sent to, so it is also in the rejection log.
pub fn bad_input(req: &HttpRequest, what: &str, e: impl std::fmt::Display) -> actix_web::Error {
    if wants_page(req) {
        // People read it: the parameter's problem in words, not the parser's.
        PageError::BadRequest(e.to_string()).into()
    } else {
        ApiError::bad_request(format!("{what}: {e}")).into()
    }
}

/// A path that names nothing here (or a path parameter that cannot be one).
pub fn not_found(req: &HttpRequest, detail: Option<&dyn std::fmt::Display>) -> actix_web::Error {
    let path = req.path().to_string();
    let what = match detail {
        Some(d) => format!("{path}: {d}"),
        None => path,
    };
    if wants_page(req) {
        PageError::NotFound(format!("no such page: {what}")).into()
    } else {
        match detail {
            Some(_) => ApiError::NotFound(what).into(),
            None => ApiError::UnknownPath(what).into(),
        }
    }
}

/// A method the path does not take; `allow` lists those it does (the `Allow`
/// header every 405 carries).
pub fn method_not_allowed(req: &HttpRequest, allow: &'static str) -> actix_web::Error {
    let method = req.method().to_string();
    let mut response = if !wants_page(req) {
        ApiError::MethodNotAllowed(method.clone()).error_response()
    } else {
        PageError::MethodNotAllowed(method.clone()).error_response()
    };
    response.headers_mut().insert(
        header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    );
    actix_web::error::InternalError::from_response(
        format!("method {method} is not allowed here"),
        response,
    )
    .into()
}

/// What an error page said, so `middleware::keep_navigation` can show it again
/// with the navigation of the reader who is logged in.
#[derive(Clone, Debug)]
pub struct ErrorPageParts {
    status: u16,
    heading: &'static str,
    message: String,
}

impl ErrorPageParts {
    /// The same error page with `nav` in its frame.
    pub fn render_with(self, nav: Nav) -> Option<String> {
        ErrorPage {
            nav: Some(nav),
            status: self.status,
            heading: self.heading,
            message: self.message,
        }
        .render()
        .ok()
    }
}
