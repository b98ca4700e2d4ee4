//! A task's printable report (`/tasks/{task_id}/report`): its latest result per
//! directory, its history in brief, the signed checkpoint that covers it, and how
//! to check the evidence. Print CSS only, no JavaScript.

use super::filters;
use crate::http::Evidence;
use crate::storage::{tasks, uploads};
use actix_web::{web, HttpResponse};
use askama::Template;

use super::{html, urlencode, Nav, PageError};
use crate::domain::{format_timestamp, TaskId};
use crate::http::extract::PageUser;
use crate::storage::checkpoints::{self, StoredCheckpoint};
use crate::storage::tasks::TaskRow;
use crate::storage::uploads::UploadRecord;
use crate::storage::ReadPool;

#[derive(Template)]
#[template(path = "task_report.html")]
struct ReportPage {
    nav: Option<Nav>,
    task: TaskRow,
    latest: Option<UploadRecord>,
    first_received_at: Option<String>,
    regressions: i64,
    checkpoint: Option<StoredCheckpoint>,
    /// Whether the checkpoint covers the task's latest upload.
    covers_latest: bool,
    verifier_key: Option<String>,
    evidence_link: String,
    generated_at: String,
    /// `--db PATH` of the running database, for the hint.
    db_flag: String,
    /// The report in one sentence.
    verdict: String,
}

/// The report in one sentence: what the latest upload says, against the one
/// before, and whether a signed checkpoint covers it.
fn verdict(task: &TaskRow, latest: Option<&UploadRecord>, covers_latest: bool) -> String {
    let Some(u) = latest else {
        return format!(
            "Task {} has no upload yet: there is nothing to report.",
            task.task_id
        );
    };
    let problems = u.totals.problems();
    let state = if u.result_count == 0 {
        "reported no results (an empty upload, not a clean one)".to_string()
    } else if problems == 0 {
        format!(
            "is clean: {} checked, none different, missing or extra",
            super::count_text(u.totals.num_total_files, "file")
        )
    } else {
        format!(
            "reports {} in {} checked{}",
            super::count_text(problems, "problem"),
            super::count_text(u.totals.num_total_files, "file"),
            if task.regressed {
                ", more than the upload before"
            } else {
                ""
            }
        )
    };
    let signed = if covers_latest {
        "it is in a signed checkpoint, so it can be proven unchanged"
    } else {
        "it is not in a signed checkpoint yet"
    };
    format!(
        "Task {}'s latest upload (#{}, {}) {state}; {signed}.",
        task.task_id,
        u.id,
        format_timestamp(u.received_at)
    )
}

pub async fn page(
    req: actix_web::HttpRequest,
    path: web::Path<String>,
    reads: web::Data<ReadPool>,
    evidence: web::Data<Evidence>,
    access: web::Data<crate::http::Access>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
    let task_id = TaskId::parse(&path)
        .map_err(|_| PageError::NotFound(format!("no task {:?}", path.as_str())))?;
    let id = task_id.as_str().to_string();
    let found = reads
        .with_blocking(move |conn| {
            let Some(task) = tasks::task(conn, &id)? else {
                return Ok(None);
            };
            let latest = match task.last_upload_id {
                Some(last) => uploads::upload(conn, last)?,
                None => None,
            };
            let (first, regressions) = uploads::task_history_summary(conn, &id)?;
            Ok(Some((
                task,
                latest,
                first,
                regressions,
                checkpoints::latest(conn)?,
            )))
        })
        .await?;
    let (task, latest, first, regressions, checkpoint) =
        found.ok_or_else(|| PageError::NotFound(format!("no task {task_id}")))?;
    let covers_latest = match (&checkpoint, task.last_upload_id) {
        (Some(c), Some(last)) => c.tree_size >= last as u64,
        _ => false,
    };
    // Absolute: the report is printed, and a relative link is no use on paper.
    let base = match &evidence.public_url {
        Some(url) => url.clone(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    };
    let verdict = verdict(&task, latest.as_ref(), covers_latest);
    let body = ReportPage {
        nav: Some(Nav::from(&session)),
        evidence_link: format!(
            "{base}/api/v1/evidence?task_id={}",
            urlencode(&task.task_id)
        ),
        verdict,
        task,
        latest,
        first_received_at: first.map(format_timestamp),
        regressions,
        checkpoint,
        covers_latest,
        verifier_key: evidence.verifier_key(),
        generated_at: format_timestamp(crate::domain::now_ms()),
        db_flag: access.db_flag.clone(),
    }
    .render()?;
    Ok(html(body))
}
