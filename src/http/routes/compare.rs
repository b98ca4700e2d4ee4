//! `GET /api/v1/compare?a=ID&b=ID`: two uploads compared directory by directory
//! (the `/compare` page shows the same comparison).

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::http::error::{ApiError, ApiRefusals};
use crate::http::extract::{ApiReader, Query};
use crate::services::compare::{compare, Comparison};
use crate::storage::uploads;
use crate::storage::ReadPool;

#[derive(Deserialize)]
pub struct CompareQuery {
    a: Option<String>,
    b: Option<String>,
}

/// Which of the two uploads to compare is missing or not an id.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PickError {
    #[error("{0}: pick an upload")]
    Missing(&'static str),
    #[error("{0}: must be an upload id")]
    NotAnId(&'static str),
}

pub(crate) fn ids(q: &CompareQuery) -> Result<(i64, i64), PickError> {
    let parse = |name: &'static str, v: &Option<String>| {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .ok_or(PickError::Missing(name))?
            .parse::<i64>()
            .map_err(|_| PickError::NotAnId(name))
    };
    Ok((parse("a", &q.a)?, parse("b", &q.b)?))
}

/// Loads both uploads and compares them; `Err(id)` names a missing one.
pub(crate) async fn load(
    reads: &ReadPool,
    a: i64,
    b: i64,
) -> Result<Result<Comparison, i64>, ApiError> {
    Ok(reads
        .with_blocking(move |conn| {
            let Some(ua) = uploads::upload(conn, a)? else {
                return Ok(Err(a));
            };
            let Some(ub) = uploads::upload(conn, b)? else {
                return Ok(Err(b));
            };
            Ok(Ok(compare(&ua, &ub)))
        })
        .await?)
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
) -> Result<HttpResponse, ApiError> {
    let (a, b) = ids(&query).map_err(ApiError::bad_request)?;
    let c = load(&reads, a, b)
        .await?
        .map_err(|missing| ApiError::NotFound(format!("no upload with id {missing}")))?;
    Ok(HttpResponse::Ok().json(c))
}
