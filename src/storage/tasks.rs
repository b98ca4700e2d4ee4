//! The `tasks` table: the task registry and each task's summary row (upload count,
//! first and last upload, the latest upload's problems), as the API, the dashboard
//! and `tasks` read them. Every query is served by the primary key or an index.

use rusqlite::{params, Connection, OptionalExtension};

use super::uploads::{recent_problems, totals_from_row};
use super::StorageError;
use crate::domain::{now_ms, TaskId, Timestamp, Totals};

/// A task as the API and `tasks list` show it.
#[derive(Debug)]
pub struct TaskSummary {
    /// The SMS task id.
    pub task_id: String,
    /// Its name, from `tasks add --name` or SMS.
    pub name: Option<String>,
    /// When it was registered.
    pub registered_at: Timestamp,
    /// Who registered it: `cli`, `sms` (`tasks sync`) or an upload's credential.
    pub registered_by: String,
    /// How many uploads it has.
    pub upload_count: i64,
    /// When its first upload arrived.
    pub first_received_at: Option<Timestamp>,
    /// When its latest upload arrived.
    pub last_received_at: Option<Timestamp>,
    /// Its latest upload.
    pub last_upload_id: Option<i64>,
    /// Totals of the latest upload.
    pub latest_totals: Option<Totals>,
    /// The task's state as SMS last listed it (`tasks sync`).
    pub sms_state: Option<String>,
    /// When `tasks sync` last read that state.
    pub sms_synced_at: Option<Timestamp>,
    /// The latest upload's problems (none without uploads).
    pub problems: Option<i64>,
    /// Whether the latest upload has more problems than the one before.
    pub regressed: bool,
    /// Result items in the latest upload (none without uploads; 0: no results).
    pub latest_result_count: Option<i64>,
}

/// Every task, by id.
pub fn list_tasks(conn: &Connection) -> Result<Vec<TaskSummary>, StorageError> {
    tasks_after(conn, "", u32::MAX)
}

/// At most `limit` tasks whose id sorts after `after`, by id (the primary key).
pub fn tasks_after(
    conn: &Connection,
    after: &str,
    limit: u32,
) -> Result<Vec<TaskSummary>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.task_id, t.name, t.registered_at, t.registered_by, t.upload_count,
                t.first_upload_at, t.last_upload_at, t.last_upload_id,
                u.total_files, u.different_files, u.target_miss_files, u.target_more_files,
                t.sms_state, t.sms_synced_at, t.last_problems, t.last_regressed, u.result_count
         FROM tasks t LEFT JOIN uploads u ON u.id = t.last_upload_id
         WHERE t.task_id > ?1
         ORDER BY t.task_id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit], |r| {
        let last_upload_id: Option<i64> = r.get(7)?;
        Ok(TaskSummary {
            task_id: r.get(0)?,
            name: r.get(1)?,
            registered_at: r.get(2)?,
            registered_by: r.get(3)?,
            upload_count: r.get(4)?,
            first_received_at: r.get(5)?,
            last_received_at: r.get(6)?,
            last_upload_id,
            latest_totals: match last_upload_id {
                Some(_) => Some(totals_from_row(r, 8)?),
                None => None,
            },
            sms_state: r.get(12)?,
            sms_synced_at: r.get(13)?,
            problems: last_upload_id.map(|_| r.get(14)).transpose()?,
            regressed: r.get(15)?,
            latest_result_count: r.get(16)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The task's state as SMS last listed it, and when that was read.
pub fn sms_state(
    conn: &Connection,
    task_id: &str,
) -> Result<Option<(String, Timestamp)>, StorageError> {
    Ok(conn
        .prepare_cached("SELECT sms_state, sms_synced_at FROM tasks WHERE task_id = ?1")?
        .query_row(params![task_id], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<i64>>(1)?))
        })
        .optional()?
        .and_then(|(state, at)| Some((state?, at?))))
}

/// When and by whom the task was registered, if it is.
pub fn registration(
    conn: &Connection,
    task_id: &str,
) -> Result<Option<(Timestamp, String)>, StorageError> {
    Ok(conn
        .prepare_cached("SELECT registered_at, registered_by FROM tasks WHERE task_id = ?1")?
        .query_row(params![task_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Whether the task is registered.
pub fn task_exists(conn: &Connection, task_id: &str) -> Result<bool, StorageError> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM tasks WHERE task_id = ?1)")?
        .query_row(params![task_id], |r| r.get(0))?)
}

/// A task as SMS lists it (`tasks sync`, `tasks import`).
pub struct SmsTask<'a> {
    /// Its id.
    pub task_id: &'a TaskId,
    /// Its name in SMS, if SMS gives one.
    pub name: Option<&'a str>,
    /// Its state in SMS.
    pub state: Option<&'a str>,
    /// Its source server's id in SMS.
    pub source_id: Option<&'a str>,
}

/// What storing a task from SMS did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SmsTaskStored {
    /// The task was not registered before.
    pub new: bool,
    /// Its name changed from this (none: it had none) to SMS's.
    pub renamed_from: Option<Option<String>>,
    /// SMS names it otherwise, and the name set by hand was kept.
    pub kept_name: bool,
}

/// A task as SMS lists it: registered if new (`registered_by = 'sms'`), its
/// state stored, and its name when SMS gives one, except over a name set by
/// hand (`tasks add --name`) unless `overwrite_names`.
pub fn record_sms_task(
    conn: &Connection,
    task: &SmsTask<'_>,
    overwrite_names: bool,
    now: Timestamp,
) -> Result<SmsTaskStored, StorageError> {
    let existing: Option<(Option<String>, Option<String>)> = conn
        .prepare_cached("SELECT name, name_set_by FROM tasks WHERE task_id = ?1")?
        .query_row(params![task.task_id.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let mut stored = SmsTaskStored {
        new: existing.is_none(),
        ..SmsTaskStored::default()
    };
    let (old_name, set_by) = existing.unwrap_or_default();
    let by_hand = set_by.as_deref() == Some("cli");
    let name = match task.name {
        Some(n) if old_name.as_deref() == Some(n) => None,
        Some(_) if by_hand && !overwrite_names => {
            stored.kept_name = true;
            None
        }
        Some(n) => {
            stored.renamed_from = (!stored.new).then(|| old_name.clone());
            Some(n)
        }
        None => None,
    };
    conn.execute(
        "INSERT INTO tasks (task_id, name, name_set_by, registered_at, registered_by, sms_state,
             sms_synced_at, sms_source_id)
         VALUES (?1, ?2, CASE WHEN ?2 IS NULL THEN NULL ELSE 'sms' END, ?4, 'sms', ?3, ?4, ?5)
         ON CONFLICT (task_id) DO UPDATE SET name = coalesce(excluded.name, name),
             name_set_by = coalesce(excluded.name_set_by, name_set_by),
             sms_state = excluded.sms_state, sms_synced_at = excluded.sms_synced_at,
             sms_source_id = excluded.sms_source_id",
        params![task.task_id.as_str(), name, task.state, now, task.source_id],
    )?;
    Ok(stored)
}

/// The tasks whose source server (as `tasks sync` read it from SMS) is `source_id`.
pub fn tasks_of_source(conn: &Connection, source_id: &str) -> Result<Vec<String>, StorageError> {
    let mut stmt = conn.prepare_cached("SELECT task_id FROM tasks WHERE sms_source_id = ?1")?;
    let tasks = stmt
        .query_map([source_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(tasks)
}

/// Registers a task (`tasks add`); naming an existing task renames it. Returns
/// whether it was new.
pub fn register_task(
    conn: &Connection,
    task_id: &TaskId,
    name: Option<&str>,
) -> Result<bool, StorageError> {
    let existed = task_exists(conn, task_id.as_str())?;
    conn.execute(
        "INSERT INTO tasks (task_id, name, name_set_by, registered_at, registered_by)
         VALUES (?1, ?2, CASE WHEN ?2 IS NULL THEN NULL ELSE 'cli' END, ?3, 'cli')
         ON CONFLICT (task_id) DO UPDATE SET name = coalesce(excluded.name, name),
             name_set_by = coalesce(excluded.name_set_by, name_set_by)",
        params![task_id.as_str(), name, now_ms()],
    )?;
    Ok(!existed)
}

/// The dashboard's sort orders of the task table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSort {
    /// Newest upload first (the default).
    LastUpload,
    /// By task id.
    TaskId,
    /// By number of uploads.
    Uploads,
    /// By the latest upload's problems.
    Problems,
}

impl TaskSort {
    /// The sort a query's `sort=` names; anything else sorts by last upload.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("task") => TaskSort::TaskId,
            Some("uploads") => TaskSort::Uploads,
            Some("problems") => TaskSort::Problems,
            _ => TaskSort::LastUpload,
        }
    }

    /// The value of `sort=` that names this order.
    pub fn key(self) -> &'static str {
        match self {
            TaskSort::LastUpload => "last",
            TaskSort::TaskId => "task",
            TaskSort::Uploads => "uploads",
            TaskSort::Problems => "problems",
        }
    }

    fn column(self) -> &'static str {
        match self {
            TaskSort::LastUpload => "t.last_upload_at",
            TaskSort::TaskId => "t.task_id",
            TaskSort::Uploads => "t.upload_count",
            TaskSort::Problems => "t.last_problems",
        }
    }
}

/// One page of the dashboard's task table.
pub struct TaskListQuery {
    /// Part of a task id or name (empty: every task).
    pub search: String,
    /// The order.
    pub sort: TaskSort,
    /// Largest first.
    pub descending: bool,
    /// Tasks skipped before the page.
    pub offset: u32,
    /// Tasks on the page.
    pub limit: u32,
    /// Only the tasks whose latest upload says this (none: every task).
    pub filter: Option<TaskFilter>,
}

/// Tasks by what their latest upload says: the dashboard's cards, each a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFilter {
    /// At least one different, missing or extra file.
    Problems,
    /// More problems than the upload before.
    Regressed,
    /// No result items at all: nothing was compared.
    NoResults,
    /// Results, and none of them a problem.
    Clean,
}

impl TaskFilter {
    /// Every filter, in the cards' order.
    pub const ALL: [TaskFilter; 4] = [
        TaskFilter::Problems,
        TaskFilter::Regressed,
        TaskFilter::NoResults,
        TaskFilter::Clean,
    ];

    /// The filter a query's `state=` names.
    pub fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.key() == key)
    }

    /// Its name in a query: `problems`, `regressed`, `no_results`, `clean`.
    pub fn key(self) -> &'static str {
        match self {
            TaskFilter::Problems => "problems",
            TaskFilter::Regressed => "regressed",
            TaskFilter::NoResults => "no_results",
            TaskFilter::Clean => "clean",
        }
    }

    /// Whether a latest upload with these figures passes.
    pub fn holds(self, problems: i64, regressed: bool, results: i64) -> bool {
        match self {
            TaskFilter::Problems => problems > 0,
            TaskFilter::Regressed => regressed,
            TaskFilter::NoResults => results == 0,
            TaskFilter::Clean => results > 0 && problems == 0,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            TaskFilter::Problems => "t.last_problems > 0",
            TaskFilter::Regressed => "t.last_regressed",
            TaskFilter::NoResults => "u.result_count = 0",
            TaskFilter::Clean => "u.result_count > 0 AND t.last_problems = 0",
        }
    }
}

/// How many tasks each [`TaskFilter`] passes, by their latest uploads (in
/// [`TaskFilter::ALL`]'s order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthCounts([i64; 4]);

impl HealthCounts {
    /// The count of one filter.
    pub fn of(&self, filter: TaskFilter) -> i64 {
        self.0[filter as usize]
    }

    /// Counts one task's latest upload.
    pub fn add(&mut self, problems: i64, regressed: bool, results: i64) {
        for f in TaskFilter::ALL {
            self.0[f as usize] += i64::from(f.holds(problems, regressed, results));
        }
    }
}

/// Every task's latest upload, counted by [`TaskFilter`].
pub fn health_counts(conn: &Connection) -> Result<HealthCounts, StorageError> {
    let sql = format!(
        "SELECT {} FROM tasks t JOIN uploads u ON u.id = t.last_upload_id",
        TaskFilter::ALL
            .map(|f| format!("coalesce(sum({}), 0)", f.sql()))
            .join(", ")
    );
    Ok(conn.prepare_cached(&sql)?.query_row([], |r| {
        Ok(HealthCounts([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]))
    })?)
}

/// A task as the dashboard, task page and report show it.
pub struct TaskRow {
    /// The SMS task id.
    pub task_id: String,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// When its latest upload arrived.
    pub last_upload_at: Option<Timestamp>,
    /// How many uploads it has.
    pub upload_count: i64,
    /// Its latest upload.
    pub last_upload_id: Option<i64>,
    /// The latest upload's totals.
    pub latest: Option<Totals>,
    /// The latest upload's problems (different + missing + extra files).
    pub problems: Option<i64>,
    /// Whether the latest upload has more problems than the one before.
    pub regressed: bool,
    /// Result items in the latest upload (none: no upload; 0: "no results").
    pub results: Option<i64>,
    /// Problems per upload, oldest first, over the latest uploads.
    pub trend: Vec<i64>,
}

impl TaskRow {
    /// Its latest upload has no result items: "no results", not clean.
    pub fn no_results(&self) -> bool {
        self.results == Some(0)
    }
}

fn like_pattern(search: &str) -> String {
    let escaped = search
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

const TASK_COLUMNS: &str = "t.task_id, t.name, t.last_upload_at, t.upload_count, t.last_upload_id,
    t.last_problems, t.last_regressed, u.total_files, u.different_files, u.target_miss_files,
    u.target_more_files, u.result_count";

fn task_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRow> {
    let last_upload_id: Option<i64> = r.get(4)?;
    Ok(TaskRow {
        task_id: r.get(0)?,
        name: r.get(1)?,
        last_upload_at: r.get(2)?,
        upload_count: r.get(3)?,
        last_upload_id,
        problems: r.get(5)?,
        regressed: r.get(6)?,
        results: r.get(11)?,
        latest: match last_upload_id {
            Some(_) => Some(totals_from_row(r, 7)?),
            None => None,
        },
        trend: Vec::new(),
    })
}

/// One page of the dashboard's task table and the number of matching tasks.
pub fn task_rows(
    conn: &Connection,
    q: &TaskListQuery,
) -> Result<(Vec<TaskRow>, i64), StorageError> {
    // Without a search the statements have no WHERE clause, so that SQLite counts
    // from an index and walks the sort index instead of sorting all tasks.
    let pattern = like_pattern(&q.search);
    let mut filter = if q.search.is_empty() {
        "?1 IS NULL".to_string()
    } else {
        "(t.task_id LIKE ?1 ESCAPE '\\' OR t.name LIKE ?1 ESCAPE '\\')".to_string()
    };
    if let Some(f) = q.filter {
        filter = format!("{filter} AND {}", f.sql());
    }
    let search = (!q.search.is_empty()).then_some(pattern);
    let matching: i64 = match (q.search.is_empty(), q.filter) {
        (true, None) => conn
            .prepare_cached("SELECT count(*) FROM tasks")?
            .query_row([], |r| r.get(0))?,
        (false, None) => conn
            .prepare_cached(&format!("SELECT count(*) FROM tasks t WHERE {filter}"))?
            .query_row(params![search], |r| r.get(0))?,
        (_, Some(_)) => conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM tasks t JOIN uploads u ON u.id = t.last_upload_id WHERE {filter}"
            ))?
            .query_row(params![search], |r| r.get(0))?,
    };
    let direction = if q.descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t LEFT JOIN uploads u ON u.id = t.last_upload_id
         WHERE {filter} ORDER BY {column} {direction}, t.task_id {direction} LIMIT ?2 OFFSET ?3",
        column = q.sort.column()
    );
    let mut rows: Vec<TaskRow> = conn
        .prepare_cached(&sql)?
        .query_map(params![search, q.limit, q.offset], task_row)?
        .collect::<Result<_, _>>()?;
    for row in &mut rows {
        row.trend = recent_problems(conn, &row.task_id, i64::MAX)?;
    }
    Ok((rows, matching))
}

/// One task as the dashboard shows it (without its trend).
pub fn task(conn: &Connection, task_id: &str) -> Result<Option<TaskRow>, StorageError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks t LEFT JOIN uploads u ON u.id = t.last_upload_id
             WHERE t.task_id = ?1"
        ))?
        .query_row(params![task_id], task_row)
        .optional()?)
}
