//! The dashboard: every task's latest upload (now, or as of a moment),
//! searchable and sortable, and the fleet's daily trend.

use super::filters;
use crate::storage::{overview, tasks, uploads};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::charts::{daily_chart, DailySeries, Style};
use super::{html, page_number, time_field, urlencode, Nav, PageError};
use crate::domain::fleet::DAY_MS;
use crate::domain::{now_ms, Timestamp};
use crate::http::extract::PageUser;
use crate::http::extract::Query;
use crate::services::fleet::{self, TrendPoint};
use crate::storage::fleet::TaskState;
use crate::storage::overview::Overview;
use crate::storage::tasks::TaskRow;
use crate::storage::tasks::TaskSort;
use crate::storage::tasks::{HealthCounts, TaskFilter, TaskListQuery};
use crate::storage::ReadPool;

const PER_PAGE: u32 = 50;

/// The task table's sortable columns: (sort key, label); a key starting with "n"
/// is a numeric column.
const COLUMNS: [(&str, &str); 4] = [
    ("task", "Task"),
    ("last", "Last upload"),
    ("nuploads", "Uploads"),
    ("nproblems", "Problems"),
];

#[derive(Deserialize)]
pub struct DashboardQuery {
    q: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<u32>,
    as_of: Option<String>,
    trend_since: Option<String>,
    trend_until: Option<String>,
    state: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    nav: Option<Nav>,
    overview: Overview,
    base_url: String,
    /// `--db PATH` of the running database, for the hint.
    db_flag: String,
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
    /// As typed, when the page shows the tasks as of a moment.
    as_of: Option<String>,
    as_of_at: Option<Timestamp>,
    now: Timestamp,
    trend_since: String,
    trend_until: String,
    problems_chart: String,
    tasks_chart: String,
    trend_last: Option<TrendPoint>,
    /// No task reported on any day of the trend: a note, not flat lines.
    trend_empty: bool,
    /// The cards' filter in force (`state=`), by its key.
    state: Option<String>,
    health: HealthCounts,
    /// The newest finished reconciliation and each row's verdict in it.
    sms: Option<(i64, Vec<&'static str>)>,
}

impl DashboardPage {
    fn sort_link(&self, key: &str) -> String {
        let key = key.trim_start_matches('n');
        let dir = if self.sort == key && self.direction == "desc" {
            "asc"
        } else {
            "desc"
        };
        format!(
            "/?q={}&sort={key}&dir={dir}{}{}",
            urlencode(&self.search),
            self.state_param(),
            self.as_of_param()
        )
    }

    /// The verdict cards: (filter key, label, tasks, class).
    fn verdict_cards(&self) -> Vec<(&'static str, &'static str, i64, &'static str)> {
        TaskFilter::ALL
            .into_iter()
            .map(|f| {
                let n = self.health.of(f);
                let (label, class) = match f {
                    TaskFilter::Problems => ("Tasks with problems", "bad"),
                    TaskFilter::Regressed => ("Regressed", "bad"),
                    TaskFilter::NoResults => ("No results", "same"),
                    TaskFilter::Clean => ("Clean", "good"),
                };
                (f.key(), label, n, if n == 0 { "zero" } else { class })
            })
            .collect()
    }

    /// The card's label of the filter in force.
    fn state_label(&self) -> Option<&'static str> {
        let key = self.state.as_deref()?;
        self.verdict_cards()
            .into_iter()
            .find(|c| c.0 == key)
            .map(|c| c.1)
    }

    /// The task list with the filter `key` (empty: none), keeping the search,
    /// the order and the moment; the filter in force links back to all tasks.
    fn state_link(&self, key: &str) -> String {
        let state = if key.is_empty() || self.state.as_deref() == Some(key) {
            String::new()
        } else {
            format!("&state={key}")
        };
        format!(
            "/?q={}&sort={}&dir={}{state}{}#tasks-heading",
            urlencode(&self.search),
            self.sort,
            self.direction,
            self.as_of_param()
        )
    }

    fn state_param(&self) -> String {
        self.state
            .as_deref()
            .map_or(String::new(), |k| format!("&state={k}"))
    }

    /// `&as_of=…` for every link that should keep the moment.
    fn as_of_param(&self) -> String {
        self.as_of
            .as_deref()
            .map_or(String::new(), |t| format!("&as_of={}", urlencode(t)))
    }

    /// The changes over the `days` before the moment shown (now, or as of).
    fn changes_link(&self, days: i64) -> String {
        let to = self.as_of_at.unwrap_or(self.now);
        format!(
            "/changes?from={}&to={}",
            urlencode(&crate::domain::format_timestamp(to - days * DAY_MS)),
            urlencode(&crate::domain::format_timestamp(to))
        )
    }

    fn task_link(&self, task_id: &str) -> String {
        match &self.as_of {
            Some(t) => format!("/tasks/{task_id}?as_of={}", urlencode(t)),
            None => format!("/tasks/{task_id}"),
        }
    }

    fn page_link(&self, page: impl super::Int) -> String {
        let page = page.int();
        format!(
            "/?q={}&sort={}&dir={}&page={page}{}{}",
            urlencode(&self.search),
            self.sort,
            self.direction,
            self.state_param(),
            self.as_of_param()
        )
    }
}

pub async fn page(
    req: HttpRequest,
    query: Query<DashboardQuery>,
    reads: web::Data<ReadPool>,
    states: web::Data<fleet::StateCache>,
    access: web::Data<crate::http::Access>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
    let search = query.q.clone().unwrap_or_default().trim().to_string();
    let sort = TaskSort::parse(query.sort.as_deref());
    let descending = query.dir.as_deref() != Some("asc");
    let page = page_number(query.page)?;
    let filter = task_filter(query.state.as_deref())?;
    let Moments {
        as_of_at,
        as_of,
        trend_since,
        trend_until,
    } = Moments::of(&query)?;
    let trend_ends_at_moment = query
        .trend_until
        .as_deref()
        .is_none_or(|t| t.trim().is_empty());
    let list = TaskListQuery {
        search: search.clone(),
        sort,
        descending,
        offset: (page - 1).saturating_mul(PER_PAGE),
        limit: PER_PAGE,
        filter,
    };
    let (overview, (rows, matching), trend, health) = reads
        .with_blocking(move |conn| {
            read_view(
                conn,
                &states,
                &list,
                (as_of_at, trend_since, trend_until),
                trend_ends_at_moment,
            )
        })
        .await?;
    let sms = against_sms(&reads, &rows).await?;
    let (problems_chart, tasks_chart) = trend_charts(&trend);
    let info = req.connection_info();
    let base_url = format!("{}://{}", info.scheme(), info.host());
    let (first_shown, last_shown) = shown(page, rows.len());
    let body = DashboardPage {
        nav: Some(Nav::from(&session)),
        overview,
        base_url,
        db_flag: access.db_flag.clone(),
        search,
        sort: sort.key(),
        direction: if descending { "desc" } else { "asc" },
        columns: COLUMNS,
        prev_page: (page > 1).then(|| page - 1),
        next_page: (last_shown < matching).then_some(page + 1),
        rows,
        matching,
        first_shown,
        last_shown,
        as_of,
        as_of_at,
        now: now_ms(),
        trend_since: day_of(trend_since),
        trend_until: day_of(trend_until),
        problems_chart,
        tasks_chart,
        trend_last: trend.last().cloned(),
        trend_empty: trend.iter().all(|p| p.tasks_reporting == 0),
        state: filter.map(|f| f.key().to_string()),
        health,
        sms,
    }
    .render()?;
    Ok(html(body))
}

/// Each shown task's verdict in the newest finished reconciliation with SMS
/// (empty where that run did not check it); none before a first run.
async fn against_sms(
    reads: &ReadPool,
    rows: &[TaskRow],
) -> Result<Option<(i64, Vec<&'static str>)>, PageError> {
    let ids: Vec<String> = rows.iter().map(|r| r.task_id.clone()).collect();
    Ok(reads
        .with_blocking(move |conn| {
            use crate::storage::reconciliation as store;
            let Some(run) = store::last_finished_run_id(conn)? else {
                return Ok(None);
            };
            let verdicts = ids
                .iter()
                .map(|id| Ok(store::verdict_in(conn, run, id)?.map_or("", |v| v.as_str())))
                .collect::<Result<_, crate::storage::StorageError>>()?;
            Ok(Some((run, verdicts)))
        })
        .await?)
}

/// The figures, a page of rows and the trend, counted now or as of a moment.
type View = (Overview, (Vec<TaskRow>, i64), Vec<TrendPoint>, HealthCounts);

/// Reads the dashboard's [`View`]: now, or as of `as_of_at` with the trend's last
/// day ending at that moment when `ends_at_moment`.
fn read_view(
    conn: &rusqlite::Connection,
    states: &fleet::StateCache,
    list: &TaskListQuery,
    (as_of_at, trend_since, trend_until): (Option<Timestamp>, Timestamp, Timestamp),
    ends_at_moment: bool,
) -> Result<View, crate::storage::StorageError> {
    let trend = fleet::trend(conn, trend_since, trend_until)?;
    let overview = overview::overview(conn)?;
    match as_of_at {
        None => {
            let health = states.health_now(conn, overview.head_id)?;
            Ok((overview, tasks::task_rows(conn, list)?, trend, health))
        }
        Some(at) => {
            let (overview, rows, then, health) = as_of_rows(conn, states, overview, at, list)?;
            let trend = ending_at(trend, then, at, ends_at_moment);
            Ok((overview, rows, trend, health))
        }
    }
}

/// The cards' filter a query's `state=` names (none when empty).
fn task_filter(state: Option<&str>) -> Result<Option<TaskFilter>, PageError> {
    match state.map(str::trim) {
        None | Some("") => Ok(None),
        Some(key) => TaskFilter::parse(key).map(Some).ok_or_else(|| {
            PageError::bad_request(format!(
                "state: {key:?} is not a filter; one of problems, regressed, no_results or clean"
            ))
        }),
    }
}

/// The trend with its last day ending at the moment `at` (the fleet `then`), not
/// at midnight after it, when the trend ends on the moment's day.
fn ending_at(
    mut trend: Vec<TrendPoint>,
    then: TrendPoint,
    at: Timestamp,
    ends_at_moment: bool,
) -> Vec<TrendPoint> {
    if let (true, Some(last)) = (ends_at_moment, trend.last_mut()) {
        if last.date == then.date {
            *last = TrendPoint {
                date: crate::domain::format_timestamp(at),
                ..then
            };
        }
    }
    trend
}

/// The first and last row numbers on `page` of `rows` (0 and before when none).
fn shown(page: u32, rows: usize) -> (i64, i64) {
    let before = i64::from(page - 1) * i64::from(PER_PAGE);
    let first = if rows == 0 { 0 } else { before + 1 };
    (first, before + rows as i64)
}

/// The moments a dashboard shows: the fleet as of a time (or now), and the
/// trend's days.
struct Moments {
    as_of_at: Option<Timestamp>,
    /// `as_of` as given, for the links that keep it.
    as_of: Option<String>,
    trend_since: Timestamp,
    trend_until: Timestamp,
}

impl Moments {
    fn of(query: &DashboardQuery) -> Result<Self, PageError> {
        let as_of_at = time_field("as_of", &query.as_of)?;
        let as_of = as_of_at
            .and(query.as_of.clone())
            .map(|t| t.trim().to_string());
        let trend_until = time_field("trend_until", &query.trend_until)?
            .or(as_of_at)
            .unwrap_or_else(now_ms);
        let trend_since = time_field("trend_since", &query.trend_since)?
            .unwrap_or(trend_until - (fleet::DEFAULT_TREND_DAYS - 1) * DAY_MS);
        if trend_since > trend_until {
            return Err(PageError::bad_request(
                "trend_since: must not be after trend_until",
            ));
        }
        Ok(Moments {
            as_of_at,
            as_of,
            trend_since,
            trend_until,
        })
    }
}

/// The trend's two charts: open problems, and tasks reporting and clean.
fn trend_charts(trend: &[TrendPoint]) -> (String, String) {
    let dates: Vec<String> = trend.iter().map(|p| p.date.clone()).collect();
    let column = |f: fn(&TrendPoint) -> i64| trend.iter().map(f).collect::<Vec<i64>>();
    let (problems, reporting, clean, empty) = (
        column(|p| p.open_problems),
        column(|p| p.tasks_reporting),
        column(|p| p.tasks_clean),
        column(|p| p.tasks_without_results),
    );
    let problems_chart = daily_chart(
        &dates,
        &[DailySeries {
            name: "open problems",
            style: Style::Different,
            values: &problems,
        }],
        "open problems across all tasks",
    );
    let tasks_chart = daily_chart(
        &dates,
        &[
            DailySeries {
                name: "tasks reporting",
                style: Style::Total,
                values: &reporting,
            },
            DailySeries {
                name: "tasks clean",
                style: Style::Clean,
                values: &clean,
            },
            DailySeries {
                name: "tasks with no results",
                style: Style::Empty,
                values: &empty,
            },
        ],
        "tasks reporting, clean and with no results",
    );
    (problems_chart, tasks_chart)
}

/// The cards, a page of rows with the number matching, and the fleet at a moment.
type AsOfRows = (Overview, (Vec<TaskRow>, i64), TrendPoint, HealthCounts);

/// The dashboard's rows as of `at`: every task's latest upload received by then
/// (searched, sorted and paged here), the cards counted as of then (the head
/// then), and the fleet's figures at that moment.
fn as_of_rows(
    conn: &rusqlite::Connection,
    cache: &fleet::StateCache,
    overview: Overview,
    at: Timestamp,
    list: &TaskListQuery,
) -> Result<AsOfRows, crate::storage::StorageError> {
    use crate::storage::fleet as stored;
    let upto = stored::last_id_at(conn, at)?;
    let day_before = stored::last_id_at(conn, at - DAY_MS)?;
    let (then, health, matching, shown) = match newest_page(conn, cache, upto, at, list)? {
        Some(page) => page,
        None => fleet_page(conn, cache, at, list)?,
    };
    let reporting = then.tasks_reporting;
    let overview = Overview {
        tasks: reporting,
        uploads: upto.max(0),
        uploads_24h: (upto - day_before).max(0),
        head_id: upto.max(0),
        head_hash: uploads::entry_hash(conn, upto)?,
        ..overview
    };
    let mut rows = Vec::new();
    for s in shown {
        let (count, _) = stored::upload_count_at(conn, &s.task_id, upto)?;
        rows.push(TaskRow {
            trend: uploads::recent_problems(conn, &s.task_id, s.upload_id)?,
            last_upload_at: Some(s.received_at),
            upload_count: count,
            last_upload_id: Some(s.upload_id),
            problems: Some(s.problems),
            regressed: s.regressed,
            latest: Some(s.totals),
            results: Some(s.results),
            name: s.name,
            task_id: s.task_id,
        });
    }
    Ok((overview, (rows, matching), then, health))
}

/// The moment's figures, the number of tasks the list matches and its page.
type FleetPage = (TrendPoint, HealthCounts, i64, Vec<TaskState>);

/// Pages by newest upload this deep at most are read off the uploads.
const NEWEST_PAGES_DEEP: usize = 1000;

/// The list's page without making the fleet, when it is every task newest
/// first: the fleet counted where its states lie, the page read back from the
/// moment's upload (none: another list, a fleet already made, or too far from
/// a snapshot). A new moment's dashboard then grows far less than its fleet
/// (BENCHMARKS.md, eighth round).
fn newest_page(
    conn: &rusqlite::Connection,
    cache: &fleet::StateCache,
    upto: i64,
    at: Timestamp,
    list: &TaskListQuery,
) -> Result<Option<FleetPage>, crate::storage::StorageError> {
    let (offset, limit) = (list.offset as usize, list.limit as usize);
    let newest_first = matches!(list.sort, TaskSort::LastUpload | TaskSort::Uploads)
        && list.descending
        && list.filter.is_none()
        && list.search.is_empty()
        && offset + limit <= NEWEST_PAGES_DEEP;
    if !newest_first || cache.holds(upto) {
        return Ok(None);
    }
    let Some(newest) = cache.newest(conn, upto, offset + limit)? else {
        return Ok(None);
    };
    let shown = newest.tasks.iter().skip(offset).cloned().collect();
    let then = TrendPoint::of_figures(&newest.figures, at);
    Ok(Some((
        then,
        newest.figures.health,
        newest.figures.tasks,
        shown,
    )))
}

/// The list's page from every task as of `at` (made once and kept).
fn fleet_page(
    conn: &rusqlite::Connection,
    cache: &fleet::StateCache,
    at: Timestamp,
    list: &TaskListQuery,
) -> Result<FleetPage, crate::storage::StorageError> {
    let fleet_then = cache.fleet_as_of(conn, at)?;
    let (then, health) = TrendPoint::of_states(&fleet_then.states, at);
    let needle = list.search.to_lowercase();
    let found = |s: &str| s.to_lowercase().contains(&needle);
    let keeps = |s: &&TaskState| {
        list.filter
            .is_none_or(|f| f.holds(s.problems, s.regressed, s.results))
            && (needle.is_empty() || found(&s.task_id) || s.name.as_deref().is_some_and(found))
    };
    let (offset, limit) = (list.offset as usize, list.limit as usize);
    let in_order = || fleet_then.in_order(list.sort, list.descending);
    if list.filter.is_none() && needle.is_empty() {
        // Every task matches: only the page's rows are read.
        let shown = in_order().skip(offset).take(limit).cloned().collect();
        return Ok((then, health, fleet_then.states.len() as i64, shown));
    }
    let (mut matching, mut shown) = (0, Vec::new());
    for s in in_order().filter(keeps) {
        if matching >= offset && shown.len() < limit {
            shown.push(s.clone());
        }
        matching += 1;
    }
    Ok((then, health, matching as i64, shown))
}

/// `YYYY-MM-DD` of a moment (the whole text, were it ever shorter).
fn day_of(at: crate::domain::Timestamp) -> String {
    let text = crate::domain::format_timestamp(at);
    text.get(..10).unwrap_or(&text).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_day_is_read_off_any_moment_without_panicking() {
        assert_eq!(super::day_of(0), "1970-01-01");
        for extreme in [i64::MIN, i64::MAX, -1] {
            assert!(!super::day_of(extreme).is_empty());
        }
    }
}
