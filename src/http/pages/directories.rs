//! One directory across the fleet: every task's latest counts for it, for when
//! one share or mount is the suspect on many servers.

use super::filters;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{html, page_number, urlencode, Nav, PageError};
use crate::http::extract::{PageUser, Query};
use crate::storage::fleet::{self, DirectoryRow};
use crate::storage::ReadPool;

/// Directories listed for a prefix.
const LISTED: u32 = 200;

#[derive(Deserialize)]
pub struct DirectoriesQuery {
    path: Option<String>,
    prefix: Option<String>,
    page: Option<u32>,
}

/// Tasks a page shows.
const PER_PAGE: usize = 200;

#[derive(Template)]
#[template(path = "directories.html")]
struct DirectoriesPage {
    nav: Option<Nav>,
    prefix: String,
    /// (path, tasks that reported it), for the prefix.
    listed: Vec<(String, i64)>,
    path: Option<String>,
    rows: Vec<DirectoryRow>,
    total: usize,
    first_shown: usize,
    last_shown: usize,
    prev_page: Option<u32>,
    next_page: Option<u32>,
}

impl DirectoriesPage {
    fn page_link(&self, page: impl super::Int) -> String {
        format!(
            "/directories?path={}&prefix={}&page={}",
            urlencode(self.path.as_deref().unwrap_or("")),
            urlencode(&self.prefix),
            page.int()
        )
    }
}

pub async fn page(
    query: Query<DirectoriesQuery>,
    reads: web::Data<ReadPool>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
    let path = query.path.clone().filter(|p| !p.is_empty());
    let page = page_number(query.page)?;
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
    let total = rows.len();
    let skip = (page as usize - 1) * PER_PAGE;
    let rows: Vec<DirectoryRow> = rows.into_iter().skip(skip).take(PER_PAGE).collect();
    let (first_shown, last_shown) = (skip + usize::from(!rows.is_empty()), skip + rows.len());
    let body = DirectoriesPage {
        nav: Some(Nav::from(&session)),
        prefix,
        listed,
        path,
        rows,
        total,
        first_shown,
        last_shown,
        prev_page: (page > 1).then(|| page - 1),
        next_page: (last_shown < total).then_some(page + 1),
    }
    .render()?;
    Ok(html(body))
}
