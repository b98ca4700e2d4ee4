//! The dashboard: every task's latest upload, searchable and sortable.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{html, urlencode, Nav, PageError};
use crate::http::extract::PageUser;
use crate::http::extract::Query;
use crate::storage::history::{self, Overview, TaskListQuery, TaskRow, TaskSort};
use crate::storage::ReadPool;

const PER_PAGE: u32 = 50;
/// The last page number accepted (50 million tasks).
const MAX_PAGE: u32 = 1_000_000;

#[derive(Deserialize)]
pub struct DashboardQuery {
    q: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<u32>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    nav: Option<Nav>,
    overview: Overview,
    base_url: String,
    search: String,
    sort: &'static str,
    direction: &'static str,
    /// (sort key, label); a key starting with "n" is a numeric column.
    columns: [(&'static str, &'static str); 4],
    rows: Vec<TaskRow>,
    matching: i64,
    first_shown: i64,
    last_shown: i64,
    prev_page: Option<u32>,
    next_page: Option<u32>,
}

impl DashboardPage {
    fn sort_link(&self, key: &str) -> String {
        let key = key.trim_start_matches('n');
        let dir = if self.sort == key && self.direction == "desc" {
            "asc"
        } else {
            "desc"
        };
        format!("/?q={}&sort={key}&dir={dir}", urlencode(&self.search))
    }

    fn page_link(&self, page: impl super::Int) -> String {
        let page = page.int();
        format!(
            "/?q={}&sort={}&dir={}&page={page}",
            urlencode(&self.search),
            self.sort,
            self.direction
        )
    }
}

pub async fn page(
    req: HttpRequest,
    query: Query<DashboardQuery>,
    reads: web::Data<ReadPool>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
    let search = query.q.clone().unwrap_or_default().trim().to_string();
    let sort = TaskSort::parse(query.sort.as_deref());
    let descending = query.dir.as_deref() != Some("asc");
    let page = query.page.unwrap_or(1);
    if !(1..=MAX_PAGE).contains(&page) {
        return Err(PageError::BadRequest(format!(
            "page: must be a number from 1 to {MAX_PAGE}"
        )));
    }
    let list = TaskListQuery {
        search: search.clone(),
        sort,
        descending,
        offset: (page - 1).saturating_mul(PER_PAGE),
        limit: PER_PAGE,
    };
    let (overview, (rows, matching)) = reads
        .with_blocking(move |conn| Ok((history::overview(conn)?, history::task_rows(conn, &list)?)))
        .await?;
    let info = req.connection_info();
    let base_url = format!("{}://{}", info.scheme(), info.host());
    let first_shown = if rows.is_empty() {
        0
    } else {
        i64::from(page - 1) * i64::from(PER_PAGE) + 1
    };
    let last_shown = i64::from(page - 1) * i64::from(PER_PAGE) + rows.len() as i64;
    let body = DashboardPage {
        nav: Some(Nav::from(&session)),
        overview,
        base_url,
        search,
        sort: sort.key(),
        direction: if descending { "desc" } else { "asc" },
        columns: [
            ("task", "Task"),
            ("last", "Last upload"),
            ("nuploads", "Uploads"),
            ("nproblems", "Problems"),
        ],
        prev_page: (page > 1).then(|| page - 1),
        next_page: (last_shown < matching).then_some(page + 1),
        rows,
        matching,
        first_shown,
        last_shown,
    }
    .render()?;
    Ok(html(body))
}
