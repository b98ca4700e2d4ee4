use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{html, viewer, Nav, PageError};
use crate::auth;
use crate::compare::{compare, Comparison, DirComparison, Verdict};
use crate::error::SmsError;
use crate::startup::AppState;
use crate::storage::queries;

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
async fn load(state: &AppState, a: i64, b: i64) -> Result<Result<Comparison, i64>, SmsError> {
    state
        .read(move |conn| {
            let Some(ua) = queries::upload(conn, a)? else {
                return Ok(Err(a));
            };
            let Some(ub) = queries::upload(conn, b)? else {
                return Ok(Err(b));
            };
            Ok(Ok(compare(&ua, &ub)))
        })
        .await
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
        let pick = |c: &crate::compare::Counts| {
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
    req: HttpRequest,
    query: web::Query<CompareQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let session = viewer(&req, &state).await?;
    let (a, b) = ids(&query).map_err(PageError::BadRequest)?;
    let c = load(&state, a, b)
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
pub async fn api(
    req: HttpRequest,
    query: web::Query<CompareQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, SmsError> {
    auth::reader(&req, &state).await?;
    let (a, b) = ids(&query).map_err(SmsError::bad_request)?;
    let c = load(&state, a, b)
        .await?
        .map_err(|missing| SmsError::NotFound(format!("no upload with id {missing}")))?;
    Ok(HttpResponse::Ok().json(c))
}
