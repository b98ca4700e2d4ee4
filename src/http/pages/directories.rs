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
    /// A long path cut for the list: the start (which may be cut with an
    /// ellipsis) and the end, always whole. Short paths are all start.
    fn split_path<'p>(&self, path: &'p str) -> (&'p str, &'p str) {
        split_for_ellipsis(path)
    }

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
    let skip = (page as usize - 1) * PER_PAGE;
    let (listed, (total, rows)) = reads
        .with_blocking(move |conn| {
            let listed = fleet::directories_starting(conn, &search, LISTED)?;
            let rows = match &shown {
                Some(p) => fleet::directory(conn, p, skip, PER_PAGE)?,
                None => (0, Vec::new()),
            };
            Ok((listed, rows))
        })
        .await?;
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

/// Paths up to this many characters show whole; longer ones keep this many at
/// their end (the directory's own name) whatever the width.
const KEPT_END: usize = 24;

fn split_for_ellipsis(path: &str) -> (&str, &str) {
    let chars = path.chars().count();
    if chars <= KEPT_END + 8 {
        return (path, "");
    }
    let cut = path
        .char_indices()
        .nth(chars - KEPT_END)
        .map_or(path.len(), |(i, _)| i);
    path.split_at(cut)
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_paths_keep_their_end_and_split_on_a_character() {
        assert_eq!(super::split_for_ellipsis("/srv/www"), ("/srv/www", ""));
        let long = format!("/data/{}/ünïcode-tail-of-the-path/final", "x".repeat(60));
        let (head, tail) = super::split_for_ellipsis(&long);
        assert_eq!(format!("{head}{tail}"), long);
        assert_eq!(tail.chars().count(), super::KEPT_END);
    }
}
