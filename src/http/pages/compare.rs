//! Comparing two uploads: the page and `GET /api/v1/compare`.

#[allow(unused_imports)] // named by the OpenAPI annotations
use crate::http::error::ApiRefusals;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{html, Nav, PageError};
use crate::http::error::SmsError;
use crate::http::extract::Query;
use crate::http::extract::{ApiReader, PageUser};
use crate::services::compare::{compare, Comparison, DirComparison, Verdict};
use crate::storage::{queries, ReadPool};

#[derive(Deserialize)]
pub struct CompareQuery {
    a: Option<String>,
    b: Option<String>,
}

fn ids(q: &CompareQuery) -> Result<(i64, i64), String> {
    let parse = |name: &str, v: &Option<String>| {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{name}: pick an upload"))?
            .parse::<i64>()
            .map_err(|_| format!("{name}: must be an upload id"))
    };
    Ok((parse("a", &q.a)?, parse("b", &q.b)?))
}

/// Loads both uploads and compares them; `Err(id)` names a missing one.
async fn load(reads: &ReadPool, a: i64, b: i64) -> Result<Result<Comparison, i64>, SmsError> {
    Ok(reads
        .with_blocking(move |conn| {
            let Some(ua) = queries::upload(conn, a)? else {
                return Ok(Err(a));
            };
            let Some(ub) = queries::upload(conn, b)? else {
                return Ok(Err(b));
            };
            Ok(Ok(compare(&ua, &ub)))
        })
        .await?)
}

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage {
    nav: Option<Nav>,
    c: Comparison,
}

impl ComparePage {
    fn verdict_name(&self, v: &Verdict) -> &'static str {
        match v {
            Verdict::Improved => "improved",
            Verdict::Regressed => "regressed",
            Verdict::Unchanged => "unchanged",
        }
    }

    fn verdict_class(&self, v: &Verdict) -> &'static str {
        match v {
            Verdict::Improved => "good",
            Verdict::Regressed => "bad",
            Verdict::Unchanged => "same",
        }
    }

    fn cells(&self, d: &DirComparison) -> Vec<(i64, i64, String)> {
        let pick = |c: &crate::services::compare::Counts| {
            [
                c.num_total_files,
                c.num_different_files,
                c.num_target_miss_files,
                c.num_target_more_files,
            ]
        };
        let (a, b, ch) = (pick(&d.a), pick(&d.b), pick(&d.change));
        (0..4)
            .map(|i| (a[i], b[i], format!("{:+}", ch[i])))
            .collect()
    }
}

pub async fn page(
    query: Query<CompareQuery>,
    reads: web::Data<ReadPool>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
    let (a, b) = ids(&query).map_err(PageError::BadRequest)?;
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

/// `GET /api/v1/compare?a=ID&b=ID`
#[utoipa::path(
    get,
    path = "/api/v1/compare",
    tag = "api",
    params(("a" = Option<i64>, Query, description = "the first upload id"), ("b" = Option<i64>, Query, description = "the second upload id")),
    responses((status = 200, description = "Two uploads compared directory by directory"), ApiRefusals),
    security(("token" = []), ("session" = []))
)]
pub async fn api(
    query: Query<CompareQuery>,
    reads: web::Data<ReadPool>,
    _: ApiReader,
) -> Result<HttpResponse, SmsError> {
    let (a, b) = ids(&query).map_err(SmsError::bad_request)?;
    let c = load(&reads, a, b)
        .await?
        .map_err(|missing| SmsError::NotFound(format!("no upload with id {missing}")))?;
    Ok(HttpResponse::Ok().json(c))
}
