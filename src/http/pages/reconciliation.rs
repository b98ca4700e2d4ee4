//! The reconciliation page: the latest run against SMS (or the one asked for),
//! its counts per verdict as filters, and each task's detail side by side: SMS's
//! rounds and the uploads here.

use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::filters;
use super::{html, urlencode, Nav, PageError};
use crate::domain::reconcile::{DirCounts, Verdict};
use crate::http::extract::{PageUser, Query};
use crate::services::reconcile::{self, TaskDetail};
use crate::storage::reconciliation::{self as store, Run, RunKind};
use crate::storage::ReadPool;

/// Tasks on one page.
const PAGE: u32 = 50;

#[derive(Deserialize)]
pub struct ReconciliationQuery {
    run: Option<i64>,
    verdict: Option<String>,
    after: Option<String>,
}

/// A verdict's count as a filter link.
struct VerdictLink {
    verdict: &'static str,
    count: u64,
    href: String,
    chosen: bool,
}

#[derive(Template)]
#[template(path = "reconciliation.html")]
struct ReconciliationPage {
    nav: Option<Nav>,
    run: Option<Run>,
    verdicts: Vec<VerdictLink>,
    all_href: String,
    filtered: bool,
    tasks: Vec<TaskDetail>,
    older_runs: Vec<Run>,
    next: Option<String>,
}

/// `/a 3/1/0/2 · /b 5/0/0/0`: total/different/missing/more per directory.
fn show_dirs(dirs: &[DirCounts]) -> String {
    if dirs.is_empty() {
        return "no directories".into();
    }
    dirs.iter()
        .map(|d| {
            let [t, diff, miss, more] = d.counts;
            format!("{} {t}/{diff}/{miss}/{more}", d.dir_check)
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

pub async fn page(
    query: Query<ReconciliationQuery>,
    reads: web::Data<ReadPool>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
    let verdict =
        Verdict::parse_filter(query.verdict.as_deref()).map_err(PageError::bad_request)?;
    let (asked, after) = (query.run, query.after.clone().unwrap_or_default());
    let (run, counts, mut tasks, older_runs) = reads
        .with_blocking(move |conn| {
            let older = store::runs(conn, 11)?;
            let run = match asked {
                Some(id) => store::run(conn, id)?,
                None => older.first().cloned(),
            };
            let Some(run) = run else {
                return Ok((None, Vec::new(), Vec::new(), older));
            };
            let counts = store::verdict_counts(conn, run.id)?;
            // One more than shown tells whether there is a next page.
            let tasks = store::outcomes(conn, run.id, verdict, &after, PAGE + 1)?
                .into_iter()
                .map(|o| reconcile::detail(conn, &run, o))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((Some(run), counts, tasks, older))
        })
        .await?;
    if let (Some(id), None) = (asked, &run) {
        return Err(PageError::NotFound(format!("no reconciliation {id}")));
    }
    let run_id = run.as_ref().map_or(0, |r| r.id);
    let verdicts = counts
        .iter()
        .map(|(v, n)| VerdictLink {
            verdict: v.as_str(),
            count: *n,
            href: format!("/reconciliation?run={run_id}&verdict={v}"),
            chosen: verdict == Some(*v),
        })
        .collect();
    let next = (tasks.len() > PAGE as usize).then(|| {
        tasks.truncate(PAGE as usize);
        let last = tasks.last().map_or(String::new(), |t| t.task_id.clone());
        let mut link = format!("/reconciliation?run={run_id}&after={}", urlencode(&last));
        if let Some(v) = verdict {
            link.push_str(&format!("&verdict={v}"));
        }
        link
    });
    let body = ReconciliationPage {
        nav: Some(Nav::from(&session)),
        verdicts,
        all_href: format!("/reconciliation?run={run_id}"),
        filtered: verdict.is_some(),
        run,
        tasks,
        older_runs: older_runs
            .into_iter()
            .filter(|r| r.id != run_id)
            .take(10)
            .collect(),
        next,
    }
    .render()?;
    Ok(html(body))
}
