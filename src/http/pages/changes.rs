//! What changed between two moments, for a weekly status review: every task's
//! latest upload at each, its change in problems, and a verdict.

use super::filters;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{html, page_number, time_field, urlencode, Nav, PageError};
use crate::domain::fleet::{Verdict, DAY_MS};
use crate::domain::{format_timestamp, now_ms, Timestamp};
use crate::http::extract::{PageUser, Query};
use crate::services::fleet::{self, Change, ChangeFilter, ChangeSort, ChangesShown, VerdictCounts};
use crate::storage::ReadPool;

#[derive(Deserialize)]
pub struct ChangesQuery {
    from: Option<String>,
    to: Option<String>,
    verdict: Option<String>,
    sort: Option<String>,
    page: Option<u32>,
}

/// Rows a page shows (the counts and the CSV cover all).
const PER_PAGE: usize = 100;

#[derive(Template)]
#[template(path = "changes.html")]
struct ChangesPage {
    /// How the table's headings name the second moment: `now` or `at To`.
    to_word: &'static str,
    nav: Option<Nav>,
    /// As typed (or the preset's), for the form and links.
    from: String,
    to: String,
    from_at: Timestamp,
    to_at: Timestamp,
    counts: VerdictCounts,
    filter: &'static str,
    sort: &'static str,
    verdicts: [(&'static str, usize); 6],
    rows: Vec<Change>,
    presets: [(&'static str, String, String); 2],
    /// Rows shown (1-based, inclusive) of those the filter keeps.
    first_shown: usize,
    last_shown: usize,
    kept: usize,
    prev_page: Option<u32>,
    next_page: Option<u32>,
}

impl ChangesPage {
    fn link(&self, verdict: &str, sort: &str) -> String {
        format!(
            "/changes?from={}&to={}&verdict={verdict}&sort={sort}",
            urlencode(&self.from),
            urlencode(&self.to)
        )
    }

    fn page_link(&self, page: impl super::Int) -> String {
        format!("{}&page={}", self.link(self.filter, self.sort), page.int())
    }

    fn csv_link(&self) -> String {
        format!(
            "/api/v1/changes?from={}&to={}&verdict={}&sort={}&format=csv",
            urlencode(&self.from),
            urlencode(&self.to),
            self.filter,
            self.sort
        )
    }

    fn compare_link(&self, c: &Change) -> Option<String> {
        c.from
            .as_ref()
            .map(|f| format!("/compare?a={}&b={}", f.upload_id, c.to.upload_id))
    }
}

pub async fn page(
    query: Query<ChangesQuery>,
    reads: web::Data<ReadPool>,
    states: web::Data<fleet::StateCache>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
    let now = now_ms();
    // Without moments: the last 7 days.
    let to_text = query
        .to
        .clone()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| format_timestamp(now));
    let to_at = time_field("to", &Some(to_text.clone()))?.unwrap_or(now);
    let from_text = query
        .from
        .clone()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| format_timestamp(to_at - 7 * DAY_MS));
    let from_at = time_field("from", &Some(from_text.clone()))?.unwrap_or(to_at);
    if from_at > to_at {
        return Err(PageError::BadRequest("from: must not be after to".into()));
    }
    let filter = ChangeFilter::parse(query.verdict.as_deref()).map_err(PageError::bad_request)?;
    let sort = ChangeSort::parse(query.sort.as_deref()).map_err(PageError::bad_request)?;
    let page = page_number(query.page)?;
    let skip = (page as usize - 1) * PER_PAGE;
    let shown = reads
        .with_blocking(move |conn| {
            states.changes_page(conn, (from_at, to_at), filter, sort, skip, PER_PAGE)
        })
        .await?;
    let ChangesShown { counts, kept, rows } = ChangesShown::clone(&shown);
    let (first_shown, last_shown) = (skip + usize::from(!rows.is_empty()), skip + rows.len());
    let verdicts = [
        ("new", counts.of(Verdict::New)),
        ("improved", counts.of(Verdict::Improved)),
        ("regressed", counts.of(Verdict::Regressed)),
        ("unchanged", counts.of(Verdict::Unchanged)),
        ("no_results", counts.of(Verdict::NoResults)),
        ("clean", counts.clean),
    ];
    let now_text = format_timestamp(now);
    let body = ChangesPage {
        to_word: to_word(to_at, now),
        nav: Some(Nav::from(&session)),
        from: from_text,
        to: to_text,
        from_at,
        to_at,
        counts,
        filter: filter.key(),
        sort: sort.key(),
        verdicts,
        rows,
        presets: [
            (
                "last 24 h",
                format_timestamp(now - DAY_MS),
                now_text.clone(),
            ),
            ("last 7 days", format_timestamp(now - 7 * DAY_MS), now_text),
        ],
        first_shown,
        last_shown,
        kept,
        prev_page: (page > 1).then(|| page - 1),
        next_page: (last_shown < kept).then_some(page + 1),
    }
    .render()?;
    Ok(html(body))
}

/// How the table's headings name the second moment: "now" only when To is now
/// (within the minute it takes to read the page), else "at To".
fn to_word(to_at: Timestamp, now: Timestamp) -> &'static str {
    if to_at >= now - 60_000 {
        "now"
    } else {
        "at To"
    }
}
