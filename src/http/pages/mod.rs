//! The HTML pages for auditors: askama templates from `templates/`, every asset
//! embedded, no JavaScript, charts drawn on the server ([`charts`]). Every page needs a login (an auditor or operator token
//! exchanged for a session cookie); every POST form carries the session's CSRF token.

mod audit;
mod changes;
pub mod charts;
pub(crate) mod compare;
mod dashboard;
mod deliveries;
mod directories;
pub mod filters;
mod login;
mod proxy;
mod reconciliation;
mod report;
mod task;
mod upload;

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::domain::{format_timestamp, now_ms, DeliveryState, Timestamp};
pub use crate::http::error::PageError;
pub use crate::http::layout::Nav;
pub use crate::http::urlencode;

pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::http::routes::{get_resource, not_allowed};
    // With `--proxy`, an SDK's `GET /` (ListApiVersion) is SMS's; a browser's is
    // the dashboard.
    cfg.service(
        web::resource("/")
            .route(
                web::route()
                    .guard(actix_web::guard::fn_guard(crate::http::routes::is_sms_call))
                    .to(crate::http::routes::sms_path),
            )
            .route(web::get().to(dashboard::page))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/login")
            .route(web::get().to(login::form))
            .route(web::post().to(login::submit))
            .default_service(not_allowed("GET, POST")),
    )
    .service(
        web::resource("/logout")
            .route(web::post().to(login::logout))
            .default_service(not_allowed("POST")),
    )
    .service(get_resource("/tasks/{task_id}", task::page))
    .service(get_resource("/tasks/{task_id}/report", report::page))
    .service(get_resource("/uploads/{id}", upload::page))
    .service(get_resource("/compare", compare::page))
    .service(get_resource("/changes", changes::page))
    .service(get_resource("/directories", directories::page))
    .service(get_resource("/audit", audit::page))
    .service(get_resource("/deliveries", deliveries::page))
    .service(get_resource("/proxy", proxy::page))
    .service(get_resource("/reconciliation", reconciliation::page))
    .service(
        web::resource("/deliveries/replay")
            .route(web::get().to(deliveries::preview))
            .route(web::post().to(deliveries::confirm))
            .default_service(not_allowed("GET, POST")),
    )
    .service(
        web::resource("/audit/verify")
            .route(web::post().to(audit::start_verification))
            .default_service(not_allowed("POST")),
    )
    .service(get_resource("/assets/app.css", stylesheet))
    .service(get_resource("/assets/icon.svg", icon));
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../../assets/app.css"))
}

async fn icon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(include_str!("../../../assets/icon.svg"))
}

/// Text as a page shows it: control characters (newlines too) and bidirectional
/// formatting characters become visible `\u{…}`-style escapes (`\u000a`,
/// `\u202e`), so that nothing is hidden, merged or shown reversed.
pub fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    crate::domain::escape_invisible(text, false)
}

/// [`visible`] for text shown with its line breaks (a raw body): `\n`, `\r` and
/// tabs stay as they are.
pub fn visible_lines(text: &str) -> std::borrow::Cow<'_, str> {
    crate::domain::escape_invisible(text, true)
}

/// A value for an HTML attribute that a form sends back as it is: escaped for
/// HTML, with control and bidirectional characters as character references, so
/// the page's source holds none of them raw and the browser still sends the
/// exact value. Use with `|safe`.
pub fn attribute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() || crate::domain::is_bidi_control(c) => {
                out.push_str(&format!("&#x{:x};", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// The badge colour of a delivery state.
pub fn state_class(state: &DeliveryState) -> &'static str {
    match state {
        DeliveryState::Delivered => "good",
        DeliveryState::Failed | DeliveryState::Dead => "bad",
        _ => "same",
    }
}

pub fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
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

impl Int for usize {
    fn int(&self) -> i64 {
        i64::try_from(*self).unwrap_or(i64::MAX)
    }
}

impl Int for u64 {
    fn int(&self) -> i64 {
        i64::try_from(*self).unwrap_or(i64::MAX)
    }
}

impl<T: Int + ?Sized> Int for &T {
    fn int(&self) -> i64 {
        (**self).int()
    }
}

pub fn utc_and_age(ms: impl Int) -> When {
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
        _ => format!("{} ago", crate::domain::counted(s / 86_400, "day")),
    }
}

/// RFC 3339 UTC text of a stored time.
pub fn utc(ms: impl Int) -> String {
    format_timestamp(ms.int())
}

/// The badge class of a verdict: good, bad or the same.
pub fn verdict_class(verdict: crate::services::compare::Verdict) -> &'static str {
    use crate::services::compare::Verdict;
    match verdict {
        Verdict::Improved => "good",
        Verdict::Regressed => "bad",
        Verdict::Unchanged => "same",
    }
}

/// A count with thousands separators and its noun, plural unless one
/// (`1 upload`, `1,234 uploads`): the pages' [`crate::domain::counted`].
pub fn count_text(n: i64, noun: &str) -> String {
    let noun = if n == 1 {
        noun.to_string()
    } else {
        crate::domain::plural(noun)
    };
    format!("{} {noun}", thousands(n))
}

/// A size in bytes as people read it (`1.2 GiB`).
pub fn bytes(n: impl std::borrow::Borrow<u64>) -> String {
    bytesize::ByteSize::b(*n.borrow())
        .display()
        .iec()
        .to_string()
}

/// Thousands separators for counts.
pub fn thousands(n: impl std::fmt::Display) -> String {
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

pub use crate::http::extract::{MAX_PAGE, PAGE_RANGE};

/// A list page's `page`: 1 when absent, at most [`MAX_PAGE`].
pub fn page_number(page: Option<u32>) -> Result<u32, PageError> {
    let page = page.unwrap_or(1);
    if !(1..=MAX_PAGE).contains(&page) {
        return Err(PageError::bad_request(PAGE_RANGE));
    }
    Ok(page)
}

/// Parses an optional form/query time (RFC 3339 or a date); empty means none.
pub fn time_field(name: &str, value: &Option<String>) -> Result<Option<Timestamp>, PageError> {
    crate::domain::parse_time_field(name, value.as_deref()).map_err(PageError::bad_request)
}

/// A form's `since` and `until`, in order.
pub fn time_range(
    since: &Option<String>,
    until: &Option<String>,
) -> Result<(Option<Timestamp>, Option<Timestamp>), PageError> {
    let (since, until) = (time_field("since", since)?, time_field("until", until)?);
    crate::domain::check_range(since, until).map_err(PageError::bad_request)?;
    Ok((since, until))
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_get_separators() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(1234567), "1,234,567");
        assert_eq!(super::thousands(-1000), "-1,000");
        assert_eq!(super::relative(90_000), "1 min ago");
    }
}
