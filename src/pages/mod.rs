//! The HTML pages for auditors: askama templates from `templates/`, every asset
//! embedded, no JavaScript. Every page needs a login (an auditor or operator token
//! exchanged for a session cookie); every POST form carries the session's CSRF token.

mod audit;
mod compare;
mod dashboard;
mod deliveries;
mod login;
mod task;
mod upload;

pub use audit::VerificationJob;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use askama::Template;

use crate::auth::CredentialName;
use crate::domain::{format_timestamp, Timestamp};
use crate::error::{ErrorCode, SmsError};
use crate::sessions::{self, Session};
use crate::startup::AppState;
use crate::storage::writer::now_ms;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::routes::get_resource;
    cfg.service(get_resource("/", dashboard::page))
        .service(
            web::resource("/login")
                .route(web::get().to(login::form))
                .route(web::post().to(login::submit)),
        )
        .service(web::resource("/logout").route(web::post().to(login::logout)))
        .service(get_resource("/tasks/{task_id}", task::page))
        .service(get_resource("/uploads/{id}", upload::page))
        .service(get_resource("/compare", compare::page))
        .service(get_resource("/audit", audit::page))
        .service(get_resource("/deliveries", deliveries::page))
        .service(
            web::resource("/deliveries/replay")
                .route(web::get().to(deliveries::preview))
                .route(web::post().to(deliveries::confirm)),
        )
        .service(web::resource("/audit/verify").route(web::post().to(audit::start_verification)))
        .service(get_resource("/assets/app.css", stylesheet))
        .service(get_resource("/assets/icon.svg", icon))
        .service(get_resource("/api/v1/compare", compare::api));
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../assets/app.css"))
}

async fn icon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(include_str!("../../assets/icon.svg"))
}

/// What the layout shows of the logged-in user.
pub struct Nav {
    pub user: String,
    pub role: String,
    pub csrf_token: String,
}

impl From<&Session> for Nav {
    fn from(s: &Session) -> Self {
        Nav {
            user: s.credential.name.clone(),
            role: s.credential.role.to_string(),
            csrf_token: s.csrf_token.clone(),
        }
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
    #[error("{0}")]
    Internal(String),
}

impl From<SmsError> for PageError {
    fn from(e: SmsError) -> Self {
        match e.status_code().as_u16() {
            401 => PageError::LoginRequired("/".into()),
            403 => PageError::Forbidden(e.to_string()),
            404 => PageError::NotFound(e.to_string()),
            400..=499 => PageError::BadRequest(e.to_string()),
            _ => PageError::Internal(e.to_string()),
        }
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
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let PageError::LoginRequired(next) = self {
            let location = format!("/login?next={}", urlencode(next));
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, location))
                .finish();
        }
        let status = self.status_code();
        let (heading, code) = match self {
            PageError::Forbidden(_) => ("Forbidden", "SMS.9004"),
            PageError::NotFound(_) => ("Not found", "APIGW.0101"),
            PageError::BadRequest(_) => ("Bad request", "SMS.9001"),
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
        let mut response = HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(page.render().unwrap_or_else(|_| heading.to_string()));
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

pub fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// The logged-in reader, or a redirect to the login page.
pub async fn viewer(req: &HttpRequest, state: &AppState) -> Result<Session, PageError> {
    let here = match req.query_string() {
        "" => req.path().to_string(),
        q => format!("{}?{q}", req.path()),
    };
    let Some(cookie) = req.cookie(sessions::COOKIE) else {
        return Err(PageError::LoginRequired(here));
    };
    let value = cookie.value().to_string();
    let session = state
        .read(move |c| sessions::find(c, &value))
        .await?
        .ok_or(PageError::LoginRequired(here))?;
    req.extensions_mut()
        .insert(CredentialName(session.credential.name.clone()));
    if !session.credential.role.may_read() {
        return Err(PageError::Forbidden(format!(
            "{} is an {} credential; the pages are for auditors and operators",
            session.credential.name, session.credential.role
        )));
    }
    Ok(session)
}

/// A UTC time as ISO 8601 with a relative hint.
pub struct When {
    pub iso: String,
    pub relative: String,
}

/// An integer behind any number of references, as templates hand them over.
pub trait Int {
    fn int(&self) -> i64;
}

impl Int for i64 {
    fn int(&self) -> i64 {
        *self
    }
}

impl Int for u32 {
    fn int(&self) -> i64 {
        i64::from(*self)
    }
}

impl<T: Int + ?Sized> Int for &T {
    fn int(&self) -> i64 {
        (**self).int()
    }
}

pub fn when(ms: impl Int) -> When {
    let ms = ms.int();
    When {
        iso: format_timestamp(ms),
        relative: relative(now_ms() - ms),
    }
}

pub fn relative(ago_ms: i64) -> String {
    let s = ago_ms / 1000;
    match s {
        i64::MIN..=-1 => "in the future".into(),
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// RFC 3339 UTC text of a stored time.
pub fn iso(ms: impl Int) -> String {
    format_timestamp(ms.int())
}

/// Thousands separators for counts.
pub fn num(n: impl std::fmt::Display) -> String {
    let text = n.to_string();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d.to_string()),
        None => (false, text),
    };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if negative {
        out.insert(0, '-');
    }
    out
}

/// Parses an optional form/query time (RFC 3339 or a date); empty means none.
pub fn time_field(name: &str, value: &Option<String>) -> Result<Option<Timestamp>, PageError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => crate::domain::parse_time_arg(v)
            .map(Some)
            .map_err(|e| PageError::BadRequest(format!("{name}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_get_separators() {
        assert_eq!(super::num(0), "0");
        assert_eq!(super::num(1234567), "1,234,567");
        assert_eq!(super::num(-1000), "-1,000");
        assert_eq!(super::relative(90_000), "1 min ago");
    }
}
