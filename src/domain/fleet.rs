//! The fleet over time: what a task's change between two moments is called, and
//! UTC days. docs/pages.md ("Fleet history") describes them for users.

use serde::Serialize;

use super::Timestamp;

/// Milliseconds in a day; days start at 00:00 UTC.
pub const DAY_MS: i64 = 86_400_000;

/// The UTC day (days since 1970-01-01) a time falls on.
pub fn day_of(at: Timestamp) -> i64 {
    at.div_euclid(DAY_MS)
}

/// How a task changed between two moments, by its open problems (different,
/// missing and extra files) in its latest upload at each.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Verdict {
    /// No upload at the first moment.
    New,
    /// Fewer problems.
    Improved,
    /// More problems.
    Regressed,
    /// As many problems (whether or not there were uploads in between).
    Unchanged,
    /// Its latest upload at the second moment has no results at all (`{}`, or
    /// an empty or null `consistency_result`): nothing to compare, never better.
    #[serde(rename = "no_results")]
    #[strum(serialize = "no_results")]
    NoResults,
}

impl Verdict {
    /// The verdict for `before` problems (none: no upload yet, or one without
    /// results) and `after`, of an upload with results (else [`Verdict::NoResults`]).
    pub fn of(before: Option<i64>, after: i64) -> Self {
        match before {
            None => Verdict::New,
            Some(b) if after < b => Verdict::Improved,
            Some(b) if after > b => Verdict::Regressed,
            Some(_) => Verdict::Unchanged,
        }
    }

    /// The verdict's name, as queries and the JSON API spell it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_days() {
        assert_eq!(Verdict::of(None, 3), Verdict::New);
        assert_eq!(Verdict::of(Some(3), 1), Verdict::Improved);
        assert_eq!(Verdict::of(Some(1), 3), Verdict::Regressed);
        assert_eq!(Verdict::of(Some(2), 2), Verdict::Unchanged);
        use strum::VariantArray;
        for v in Verdict::VARIANTS {
            assert_eq!(v.as_str().parse::<Verdict>(), Ok(*v));
        }
        assert!("clean".parse::<Verdict>().is_err());
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(DAY_MS), 1);
        assert_eq!(day_of(-1), -1);
    }
}
