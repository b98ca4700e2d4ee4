//! One upload: its fields, raw body, results, and deliveries.

use super::filters;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::{html, Nav, PageError, When};
use crate::http::extract::PageUser;
use crate::http::Delivery;
use crate::storage::checkpoints;

use crate::services::compare::Verdict;
use crate::storage::uploads::UploadRecord;
use crate::storage::ReadPool;
use crate::storage::{tasks, uploads};

#[derive(Template)]
#[template(path = "upload.html")]
struct UploadPage {
    nav: Option<Nav>,
    u: UploadRecord,
    received: When,
    previous: Option<i64>,
    next: Option<i64>,
    forwarding: bool,
    /// The first checkpoint that covers the upload.
    checkpoint: Option<u64>,
    /// The task's name, if it has one.
    task_name: Option<String>,
    /// Against the previous upload of the task: the verdict and its problems.
    against_previous: Option<(Verdict, i64)>,
}

impl UploadPage {
    /// The badge class and word of the verdict against the previous upload.
    fn verdict_badge(verdict: &Verdict) -> (&'static str, &'static str) {
        (super::verdict_class(*verdict), verdict.word())
    }
}

pub async fn page(
    path: web::Path<String>,
    reads: web::Data<ReadPool>,
    delivery: web::Data<Delivery>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
    let id: i64 = path
        .parse()
        .map_err(|_| PageError::NotFound(format!("no upload {:?}", path.as_str())))?;
    let found = reads
        .with_blocking(move |conn| {
            let Some(u) = uploads::upload(conn, id)? else {
                return Ok(None);
            };
            let (previous, next) = uploads::neighbours(conn, &u.task_id, id)?;
            let checkpoint = checkpoints::covering(conn, id)?;
            let task_name = tasks::task(conn, &u.task_id)?.and_then(|t| t.name);
            let previous_problems = match previous {
                Some(p) => uploads::problems_of(conn, p)?,
                None => None,
            };
            Ok(Some((
                u,
                (previous, next),
                checkpoint,
                task_name,
                previous_problems,
            )))
        })
        .await?;
    let (u, (previous, next), checkpoint, task_name, previous_problems) =
        found.ok_or_else(|| PageError::NotFound(format!("no upload #{id}")))?;
    // An upload without results is compared with nothing: "no results".
    let against_previous = previous_problems
        .filter(|_| u.result_count > 0)
        .map(|before| (Verdict::of_problems(before, u.totals.problems()), before));
    let received = super::utc_and_age(u.received_at);
    let body = UploadPage {
        checkpoint,
        nav: Some(Nav::from(&session)),
        u,
        received,
        previous,
        next,
        forwarding: delivery.upstream.as_ref().is_some_and(|u| u.forward),
        task_name,
        against_previous,
    }
    .render()?;
    Ok(html(body))
}
