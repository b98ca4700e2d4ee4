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
}

pub async fn page(
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
    let body = ReportPage {
        nav: Some(Nav::from(&session)),
        evidence_link: format!("/api/v1/evidence?task_id={}", urlencode(&task.task_id)),
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
