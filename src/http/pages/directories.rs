//! One directory across the fleet: every task's latest counts for it, for when
//! one share or mount is the suspect on many servers.

use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{html, Nav, PageError};
use crate::http::extract::{PageUser, Query};
use crate::storage::fleet::{self, DirectoryRow};
use crate::storage::ReadPool;

/// Directories listed for a prefix.
const LISTED: u32 = 200;

#[derive(Deserialize)]
pub struct DirectoriesQuery {
    path: Option<String>,
    prefix: Option<String>,
}

#[derive(Template)]
#[template(path = "directories.html")]
struct DirectoriesPage {
    nav: Option<Nav>,
    prefix: String,
    /// (path, tasks that reported it), for the prefix.
    listed: Vec<(String, i64)>,
    path: Option<String>,
    rows: Vec<DirectoryRow>,
}

pub async fn page(
    query: Query<DirectoriesQuery>,
    reads: web::Data<ReadPool>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
    let path = query.path.clone().filter(|p| !p.is_empty());
    let prefix = query.prefix.clone().unwrap_or_default();
    let (shown, search) = (path.clone(), prefix.clone());
    let (listed, rows) = reads
        .with_blocking(move |conn| {
            let listed = fleet::directories_starting(conn, &search, LISTED)?;
            let rows = match &shown {
                Some(p) => fleet::directory(conn, p)?,
                None => Vec::new(),
            };
            Ok((listed, rows))
        })
        .await?;
    let body = DirectoriesPage {
        nav: Some(Nav::from(&session)),
        prefix,
        listed,
        path,
        rows,
    }
    .render()?;
    Ok(html(body))
}
