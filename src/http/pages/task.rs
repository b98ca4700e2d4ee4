//! A task's page: its uploads over time, charts, filters.

use super::filters;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::charts::{counts_chart, PROBLEM_SERIES, TOTAL_SERIES};
use super::{html, time_field, time_range, urlencode, Nav, PageError};
use crate::domain::{format_timestamp, TaskId, Timestamp, Totals};
use crate::http::extract::PageUser;
use crate::http::extract::Query;
use crate::storage::tasks::{self, TaskRow};
use crate::storage::uploads::{self, UploadPageQuery, UploadSummary};
use crate::storage::{fleet, ReadPool};

const PER_PAGE: u32 = 25;
/// The directory filter lists what the task reported in this many latest uploads.
const DIR_UPLOADS: u32 = 5_000;
const CHART_UPLOADS: i64 = 200;

#[derive(Deserialize)]
pub struct TaskQuery {
    dir: Option<String>,
    since: Option<String>,
    until: Option<String>,
    regressed: Option<String>,
    before_id: Option<i64>,
    as_of: Option<String>,
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    nav: Option<Nav>,
    task: TaskRow,
    dirs: Vec<String>,
    dir: Option<String>,
    since: String,
    until: String,
    regressed_only: bool,
    problems_chart: String,
    totals_chart: String,
    chart_points: usize,
    /// Each upload with the counts the table shows: its totals, or with a
    /// directory chosen, that directory's (none: the upload did not report it).
    uploads: Vec<(UploadSummary, Option<Totals>)>,
    before_id: Option<i64>,
    next_before_id: Option<i64>,
    /// As typed, when the page shows the task as of a moment.
    as_of: Option<String>,
    as_of_at: Option<Timestamp>,
    /// The task's state as SMS last listed it (`tasks sync`), and when.
    sms_state: Option<(String, crate::domain::Timestamp)>,
    /// The newest reconciliation that checked the task: run, verdict, when.
    reconciled: Option<Reconciled>,
}

/// A task's newest outcome against SMS.
struct Reconciled {
    run: i64,
    verdict: &'static str,
    checked_at: Timestamp,
    reason: Option<String>,
}

impl TaskPage {
    fn filters(&self) -> String {
        format!(
            "dir={}&since={}&until={}{}{}",
            urlencode(self.dir.as_deref().unwrap_or("")),
            urlencode(&self.since),
            urlencode(&self.until),
            if self.regressed_only {
                "&regressed=true"
            } else {
                ""
            },
            self.as_of
                .as_deref()
                .map_or(String::new(), |t| format!("&as_of={}", urlencode(t)))
        )
    }

    /// An export of this task, with the page's time range.
    /// `format`: csv or jsonl for an export, `evidence` for the evidence bundle;
    /// the page's time range either way.
    fn export_link(&self, format: &str) -> String {
        let mut link = match format {
            "evidence" => format!("/api/v1/evidence?task_id={}", urlencode(&self.task.task_id)),
            format => format!(
                "/api/v1/export?format={format}&task_id={}",
                urlencode(&self.task.task_id)
            ),
        };
        // As of a moment: what was received by then.
        let until = match self.as_of_at {
            Some(at) if self.until.trim().is_empty() => format_timestamp(at + 1),
            _ => self.until.clone(),
        };
        for (name, value) in [("since", &self.since), ("until", &until)] {
            if !value.trim().is_empty() {
                link.push_str(&format!("&{name}={}", urlencode(value.trim())));
            }
        }
        link
    }

    fn older_link(&self, before: impl super::Int) -> String {
        let before = before.int();
        format!(
            "/tasks/{}?{}&before_id={before}",
            self.task.task_id,
            self.filters()
        )
    }

    fn newest_link(&self) -> String {
        format!("/tasks/{}?{}", self.task.task_id, self.filters())
    }

    /// This page with every directory (the other filters kept).
    fn without_dir_link(&self) -> String {
        let filters = self.filters();
        let rest = filters.split_once('&').map_or("", |(_, rest)| rest);
        format!("/tasks/{}?{rest}", self.task.task_id)
    }
}

/// One page of the task's uploads, each with the counts its row shows: the
/// totals, or that directory's (none where the upload did not report it).
type TableRows = (Vec<(UploadSummary, Option<Totals>)>, Option<i64>);

fn table_rows(
    conn: &rusqlite::Connection,
    task_id: &str,
    page: &UploadPageQuery,
    dir: Option<&str>,
) -> Result<TableRows, crate::storage::StorageError> {
    let (listed, next) = uploads::task_uploads(conn, task_id, page)?;
    let mut rows = Vec::with_capacity(listed.len());
    for u in listed {
        let shown = match dir {
            None => Some(u.totals),
            Some(dir) => uploads::dir_totals(conn, u.id, dir)?,
        };
        rows.push((u, shown));
    }
    Ok((rows, next))
}

/// A form's checkbox or a query's switch: true/on or false/off (or absent).
fn switch(name: &str, value: Option<&str>) -> Result<bool, PageError> {
    match value.map(str::trim) {
        None | Some("") | Some("false") | Some("off") => Ok(false),
        Some("true") | Some("on") => Ok(true),
        Some(other) => Err(PageError::bad_request(format!(
            "{name}: must be true or false, not {other:?}"
        ))),
    }
}

/// The task's row as it stood at `at`: its latest upload by then.
fn as_of(
    conn: &rusqlite::Connection,
    task: &mut tasks::TaskRow,
    at: Timestamp,
) -> Result<(), crate::storage::StorageError> {
    let upto = fleet::last_id_at(conn, at)?;
    let state = fleet::state_of(conn, task.task_id.as_str(), upto)?;
    task.upload_count = fleet::upload_count_at(conn, task.task_id.as_str(), upto)?.0;
    task.last_upload_at = state.as_ref().map(|s| s.received_at);
    task.last_upload_id = state.as_ref().map(|s| s.upload_id);
    task.problems = state.as_ref().map(|s| s.problems);
    task.regressed = state.as_ref().is_some_and(|s| s.regressed);
    task.latest = state.map(|s| s.totals);
    Ok(())
}

pub async fn page(
    path: web::Path<String>,
    query: Query<TaskQuery>,
    reads: web::Data<ReadPool>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
    let task_id = TaskId::parse(&path)
        .map_err(|_| PageError::NotFound(format!("no task {:?}", path.as_str())))?;
    let (since, until) = time_range(&query.since, &query.until)?;
    let as_of_at = time_field("as_of", &query.as_of)?;
    // As of a moment: only what was received by then (until is exclusive).
    let until = match (until, as_of_at) {
        (Some(u), Some(at)) => Some(u.min(at + 1)),
        (None, Some(at)) => Some(at + 1),
        (u, None) => u,
    };
    let regressed_only = switch("regressed", query.regressed.as_deref())?;
    let dir = query.dir.clone().filter(|d| !d.is_empty());
    let before_id = query.before_id;
    let id = task_id.clone();
    let chart_dir = dir.clone();
    let found = reads
        .with_blocking(move |conn| {
            let Some(mut task) = tasks::task(conn, id.as_str())? else {
                return Ok(None);
            };
            if let Some(at) = as_of_at {
                as_of(conn, &mut task, at)?;
            }
            let dirs = uploads::task_dirs(conn, id.as_str(), DIR_UPLOADS)?;
            let range = uploads::id_range(conn, since, until)?;
            let points = uploads::chart_points(
                conn,
                id.as_str(),
                chart_dir.as_deref(),
                range,
                CHART_UPLOADS,
            )?;
            let page = UploadPageQuery {
                limit: PER_PAGE,
                before_id,
                since,
                until,
                regressed_only,
            };
            let (uploads, next) = table_rows(conn, id.as_str(), &page, chart_dir.as_deref())?;
            Ok(Some((task, dirs, points, uploads, next)))
        })
        .await?;
    let Some((task, mut dirs, points, uploads, next_before_id)) = found else {
        return Err(PageError::NotFound(format!("no task {task_id}")));
    };
    let (sms_state, reconciled) = standing(&reads, task_id.clone()).await?;
    // The chosen directory stays in the list even when it is no longer uploaded.
    dirs.extend(dir.clone().filter(|d| !dirs.contains(d)));
    let body = TaskPage {
        nav: Some(Nav::from(&session)),
        task,
        dirs,
        dir,
        since: query.since.clone().unwrap_or_default(),
        until: query.until.clone().unwrap_or_default(),
        regressed_only,
        problems_chart: counts_chart(&points, PROBLEM_SERIES),
        totals_chart: counts_chart(&points, TOTAL_SERIES),
        chart_points: points.len(),
        uploads,
        before_id,
        next_before_id,
        as_of: as_of_at
            .and(query.as_of.clone())
            .map(|t| t.trim().to_string()),
        as_of_at,
        sms_state,
        reconciled,
    }
    .render()?;
    Ok(html(body))
}

/// Where the task stands outside this ledger: its state as SMS last listed it,
/// and its verdict in the newest reconciliation that checked it.
async fn standing(
    reads: &ReadPool,
    id: TaskId,
) -> Result<(Option<(String, Timestamp)>, Option<Reconciled>), PageError> {
    Ok(reads
        .with_blocking(move |conn| {
            let sms_state = tasks::sms_state(conn, id.as_str())?;
            let reconciled = crate::storage::reconciliation::latest_outcome_of(conn, id.as_str())?
                .map(|o| Reconciled {
                    run: o.run_id,
                    verdict: o.verdict.as_str(),
                    checked_at: o.checked_at,
                    reason: o.reason,
                });
            Ok((sms_state, reconciled))
        })
        .await?)
}
