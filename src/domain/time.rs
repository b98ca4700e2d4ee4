//! Times: stored as UTC milliseconds, shown and parsed as RFC 3339.

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};

/// Milliseconds since the Unix epoch, UTC: how times are stored.
pub type Timestamp = i64;

/// Now, as stored.
pub fn now_ms() -> Timestamp {
    Utc::now().timestamp_millis()
}

/// RFC 3339 with milliseconds and `Z`, e.g. `2026-11-27T10:00:00.000Z`.
pub fn format_timestamp(ms: Timestamp) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Why a time or a range of times was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Neither RFC 3339 nor a date.
    #[error(
        "{given:?} is not an RFC 3339 time (2026-11-27T10:00:00Z), a date (2026-11-27) or now{hint}"
    )]
    NotATime {
        /// As given.
        given: String,
        /// A likely cause, when one is seen (a `+` read as a space in a URL).
        hint: &'static str,
    },
    /// `since` after `until`.
    #[error("since ({}) is after until ({}): the range is empty", format_timestamp(*.since), format_timestamp(*.until))]
    EmptyRange {
        /// The range's start.
        since: Timestamp,
        /// The range's end.
        until: Timestamp,
    },
    /// A named field's time (a form's, a query's).
    #[error("{field}: {source}")]
    Field {
        /// The field's name.
        field: String,
        /// What is wrong with its value.
        #[source]
        source: Box<TimeError>,
    },
}

/// A time on the command line or in a query string: RFC 3339, a plain date
/// meaning 00:00 UTC, or `now`.
pub fn parse_time_arg(s: &str) -> Result<Timestamp, TimeError> {
    if s.trim().eq_ignore_ascii_case("now") {
        return Ok(now_ms());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis());
    }
    // `+08:00` in a URL's query arrives as ` 08:00`: a `+` there means a space.
    let hint = if s.contains(' ') && DateTime::parse_from_rfc3339(&s.replacen(' ', "+", 1)).is_ok()
    {
        " (in a URL a + is read as a space: write the offset's + as %2B)"
    } else {
        ""
    };
    Err(TimeError::NotATime {
        given: s.to_string(),
        hint,
    })
}

/// A time range whose ends are in order: `since` must not be after `until`.
pub fn check_range(since: Option<Timestamp>, until: Option<Timestamp>) -> Result<(), TimeError> {
    match (since, until) {
        (Some(since), Some(until)) if since > until => Err(TimeError::EmptyRange { since, until }),
        _ => Ok(()),
    }
}

/// A form or query field holding a time: blank means "not given"; an error names
/// the field.
pub fn parse_time_field(name: &str, value: Option<&str>) -> Result<Option<Timestamp>, TimeError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => parse_time_arg(v).map(Some).map_err(|e| TimeError::Field {
            field: name.to_string(),
            source: Box::new(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_round_trips() {
        let t = parse_time_arg("2026-11-27T10:00:00Z").unwrap();
        assert_eq!(format_timestamp(t), "2026-11-27T10:00:00.000Z");
        assert_eq!(
            parse_time_arg("2026-11-27").unwrap(),
            parse_time_arg("2026-11-27T00:00:00+00:00").unwrap()
        );
        assert!(parse_time_arg("yesterday").is_err());
    }
}
