//! The pages' template filters, so templates write `{{ n|thousands }}` or
//! `{{ at|utc }}` instead of calling into this crate. Each page module brings
//! them into scope with `use super::filters;` (askama looks for `filters` there).

use askama::Values;

use super::Int;
use crate::domain::DeliveryState;

/// Thousands separators for counts: `12,345`.
#[askama::filter_fn]
pub fn thousands(n: impl std::fmt::Display, _: &dyn Values) -> askama::Result<String> {
    Ok(super::thousands(n))
}

/// A count with thousands separators and its noun, plural unless one:
/// `{{ n|count("upload") }}` is `1 upload` or `1,234 uploads`.
#[askama::filter_fn]
pub fn count(n: impl Int, _: &dyn Values, noun: &str) -> askama::Result<String> {
    Ok(super::count_text(n.int(), noun))
}

/// RFC 3339 UTC text of a stored time.
#[askama::filter_fn]
pub fn utc(ms: impl Int, _: &dyn Values) -> askama::Result<String> {
    Ok(super::utc(ms))
}

/// A stored time as RFC 3339 with how long ago it was (`.iso`, `.relative`).
#[askama::filter_fn]
pub fn utc_and_age(ms: impl Int, _: &dyn Values) -> askama::Result<super::When> {
    Ok(super::utc_and_age(ms))
}

/// Stored text with its invisible and bidirectional characters made visible.
#[askama::filter_fn]
pub fn visible(text: impl AsRef<str>, _: &dyn Values) -> askama::Result<String> {
    Ok(super::visible(text.as_ref()).into_owned())
}

/// [`visible`] keeping line breaks and tabs (a raw body).
#[askama::filter_fn]
pub fn visible_lines(text: impl AsRef<str>, _: &dyn Values) -> askama::Result<String> {
    Ok(super::visible_lines(text.as_ref()).into_owned())
}

/// A value for an HTML attribute a form sends back as it is (already escaped:
/// follow it with `|safe`).
#[askama::filter_fn]
pub fn attribute(text: impl AsRef<str>, _: &dyn Values) -> askama::Result<String> {
    Ok(super::attribute(text.as_ref()))
}

/// A size in bytes as people read it (`1.2 GiB`).
#[askama::filter_fn]
pub fn bytes(n: impl std::borrow::Borrow<u64>, _: &dyn Values) -> askama::Result<String> {
    Ok(super::bytes(n))
}

/// The badge class of a delivery state: good, bad or same.
#[askama::filter_fn]
pub fn state_class(state: &DeliveryState, _: &dyn Values) -> askama::Result<&'static str> {
    Ok(super::state_class(state))
}

/// A task's recent problems as a small inline SVG (already markup: follow it
/// with `|safe`).
#[askama::filter_fn]
pub fn sparkline(values: impl AsRef<[i64]>, _: &dyn Values) -> askama::Result<String> {
    Ok(super::charts::sparkline(values.as_ref()))
}

/// A query value, percent-encoded (everything but letters and digits).
#[askama::filter_fn]
pub fn query_value(text: impl AsRef<str>, _: &dyn Values) -> askama::Result<String> {
    Ok(crate::http::urlencode(text.as_ref()))
}
