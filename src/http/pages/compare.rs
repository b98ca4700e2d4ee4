//! Comparing two uploads: the page and `GET /api/v1/compare`.

#[allow(unused_imports)] // named by the OpenAPI annotations
use super::filters;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::{html, Nav, PageError};
use crate::http::extract::{PageUser, Query};
use crate::http::routes::compare::{ids, load, CompareQuery, PickError};
use crate::services::compare::{Comparison, DirComparison, Verdict};
use crate::storage::ReadPool;

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage {
    nav: Option<Nav>,
    c: Comparison,
}

impl ComparePage {
    fn verdict_name(&self, v: &Option<Verdict>) -> &'static str {
        v.map_or("no-verdict", Verdict::word)
    }

    fn verdict_class(&self, v: &Option<Verdict>) -> &'static str {
        v.map_or("same", super::verdict_class)
    }

    /// A, B and the change of the four counts and of the problems (different
    /// + missing + extra), with thousands separators.
    fn cells(&self, d: &DirComparison) -> Vec<(String, String, String)> {
        let pick = |c: &crate::services::compare::Counts| {
            let problems =
                c.num_different_files + c.num_target_miss_files + c.num_target_more_files;
            [
                c.num_total_files,
                c.num_different_files,
                c.num_target_miss_files,
                c.num_target_more_files,
                problems,
            ]
        };
        let (a, b, ch) = (pick(&d.a), pick(&d.b), pick(&d.change));
        (0..5)
            .map(|i| {
                let sign = if ch[i] > 0 { "+" } else { "" };
                (
                    super::thousands(a[i]),
                    super::thousands(b[i]),
                    format!("{sign}{}", super::thousands(ch[i])),
                )
            })
            .collect()
    }
}

pub async fn page(
    query: Query<CompareQuery>,
    reads: web::Data<ReadPool>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
    let (a, b) = ids(&query).map_err(|e| match e {
        PickError::Missing(side) => PageError::bad_request(format!(
            "Pick both uploads to compare ({side} is missing): on a task's page choose one upload \
             in column A and one in column B, then press “Compare A with B”."
        )),
        other => PageError::bad_request(other),
    })?;
    let c = load(&reads, a, b)
        .await?
        .map_err(|missing| PageError::NotFound(format!("no upload #{missing}")))?;
    let body = ComparePage {
        nav: Some(Nav::from(&session)),
        c,
    }
    .render()?;
    Ok(html(body))
}
