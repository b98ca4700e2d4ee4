//! Fleet history: every task as of an upload id, the fleet's state at the end of
//! each day, and every task's latest counts per directory. The writer keeps
//! `fleet_days` and `task_directories` in the upload's transaction; the as-of
//! state of a task is one seek in the `uploads_task_state` index.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::queries::{first_id_at_or_after, Totals};
use super::StorageError;
use crate::domain::fleet::day_of;
use crate::domain::{ConsistencyResult, Timestamp};

/// The id of the last upload received at or before `at` (0: none).
pub fn last_id_at(conn: &Connection, at: Timestamp) -> Result<i64, StorageError> {
    Ok(first_id_at_or_after(conn, at.saturating_add(1))? - 1)
}

/// A task as its latest upload up to some id shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskState {
    pub task_id: String,
    pub name: Option<String>,
    pub upload_id: i64,
    pub received_at: Timestamp,
    pub totals: Totals,
    pub problems: i64,
    /// The upload has more problems than the task's upload before it.
    pub regressed: bool,
}

/// Every task that has an upload with id `<= upto`, as its latest such upload
/// shows it, by task id. Two index seeks per task; no upload is scanned.
pub fn states_at(conn: &Connection, upto: i64) -> Result<Vec<TaskState>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "WITH latest AS MATERIALIZED (
            SELECT t.task_id AS task_id, t.name AS name,
                   (SELECT max(x.id) FROM uploads x WHERE x.task_id = t.task_id AND x.id <= ?1)
                       AS id
            FROM tasks t
         )
         SELECT l.task_id, l.name, s.id, s.received_at, s.total_files, s.different_files,
                s.target_miss_files, s.target_more_files, s.regressed
         FROM latest l JOIN uploads s INDEXED BY uploads_task_state
              ON s.task_id = l.task_id AND s.id = l.id
         ORDER BY l.task_id",
    )?;
    let rows = stmt.query_map(params![upto], |r| {
        let totals = Totals {
            num_total_files: r.get(4)?,
            num_different_files: r.get(5)?,
            num_target_miss_files: r.get(6)?,
            num_target_more_files: r.get(7)?,
        };
        Ok(TaskState {
            task_id: r.get(0)?,
            name: r.get(1)?,
            upload_id: r.get(2)?,
            received_at: r.get(3)?,
            problems: totals.problems(),
            totals,
            regressed: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Like [`states_at`], for the first `limit` tasks whose id sorts after `after`
/// (the API's pages): one seek per task, stopping when the page is full.
pub fn states_page(
    conn: &Connection,
    upto: i64,
    after: &str,
    limit: u32,
) -> Result<Vec<TaskState>, StorageError> {
    let mut tasks =
        conn.prepare_cached("SELECT task_id, name FROM tasks WHERE task_id > ?1 ORDER BY task_id")?;
    let mut page = Vec::new();
    let mut rows = tasks.query(params![after])?;
    while page.len() < limit as usize {
        let Some(row) = rows.next()? else { break };
        page.extend(latest_upload(conn, row.get(0)?, row.get(1)?, upto)?);
    }
    Ok(page)
}

/// One task as its latest upload with id `<= upto` shows it (none: no upload by
/// then, or no such task).
pub fn state_of(
    conn: &Connection,
    task_id: &str,
    upto: i64,
) -> Result<Option<TaskState>, StorageError> {
    let name: Option<Option<String>> = conn
        .prepare_cached("SELECT name FROM tasks WHERE task_id = ?1")?
        .query_row(params![task_id], |r| r.get(0))
        .optional()?;
    match name {
        Some(name) => latest_upload(conn, task_id.to_string(), name, upto),
        None => Ok(None),
    }
}

/// The seek behind every as-of view: a task's latest upload with id `<= upto`.
fn latest_upload(
    conn: &Connection,
    task_id: String,
    name: Option<String>,
    upto: i64,
) -> Result<Option<TaskState>, StorageError> {
    let mut latest = conn.prepare_cached(
        "SELECT id, received_at, total_files, different_files, target_miss_files,
                target_more_files, regressed
         FROM uploads INDEXED BY uploads_task_state
         WHERE task_id = ?1 AND id <= ?2 ORDER BY id DESC LIMIT 1",
    )?;
    let found = latest
        .query_row(params![task_id, upto], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                Totals {
                    num_total_files: r.get(2)?,
                    num_different_files: r.get(3)?,
                    num_target_miss_files: r.get(4)?,
                    num_target_more_files: r.get(5)?,
                },
                r.get::<_, bool>(6)?,
            ))
        })
        .optional()?;
    Ok(
        found.map(|(upload_id, received_at, totals, regressed)| TaskState {
            task_id,
            name,
            upload_id,
            received_at,
            problems: totals.problems(),
            totals,
            regressed,
        }),
    )
}

/// How many uploads a task had with id `<= upto`, and its first one's time.
pub fn upload_count_at(
    conn: &Connection,
    task_id: &str,
    upto: i64,
) -> Result<(i64, Option<Timestamp>), StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*), min(received_at) FROM uploads INDEXED BY uploads_task_state
             WHERE task_id = ?1 AND id <= ?2",
        )?
        .query_row(params![task_id, upto], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// The fleet at the end of a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FleetDay {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// Tasks with at least one upload by the end of the day.
    pub tasks_reporting: i64,
    /// Problems summed over every task's latest upload.
    pub open_problems: i64,
    /// Tasks whose latest upload has no problems.
    pub tasks_clean: i64,
}

/// The stored days in `first..=last` (days with uploads), and the last stored day
/// before `first` (the state the range starts from), oldest first.
pub fn fleet_days(conn: &Connection, first: i64, last: i64) -> Result<Vec<FleetDay>, StorageError> {
    let row = |r: &rusqlite::Row<'_>| {
        Ok(FleetDay {
            day: r.get(0)?,
            tasks_reporting: r.get(1)?,
            open_problems: r.get(2)?,
            tasks_clean: r.get(3)?,
        })
    };
    let before = conn
        .prepare_cached(
            "SELECT day, tasks_reporting, open_problems, tasks_clean FROM fleet_days
             WHERE day < ?1 ORDER BY day DESC LIMIT 1",
        )?
        .query_row(params![first], row)
        .optional()?;
    let mut stmt = conn.prepare_cached(
        "SELECT day, tasks_reporting, open_problems, tasks_clean FROM fleet_days
         WHERE day BETWEEN ?1 AND ?2 ORDER BY day",
    )?;
    let mut days: Vec<FleetDay> = before.into_iter().collect();
    for day in stmt.query_map(params![first, last], row)? {
        days.push(day?);
    }
    Ok(days)
}

/// What one stored upload changed in the fleet: its day, and its task's problems
/// before (none: the task's first upload) and after.
pub struct FleetChange {
    pub day: i64,
    pub before: Option<i64>,
    pub after: i64,
}

/// Adds a batch's changes (in id order, so days never go back) to `fleet_days`:
/// each day touched ends at the state after its last upload.
pub fn record_changes(conn: &Connection, changes: &[FleetChange]) -> Result<(), rusqlite::Error> {
    let Some(first) = changes.first() else {
        return Ok(());
    };
    let mut state = conn
        .prepare_cached(
            "SELECT day, tasks_reporting, open_problems, tasks_clean FROM fleet_days
             ORDER BY day DESC LIMIT 1",
        )?
        .query_row([], |r| {
            Ok(FleetDay {
                day: r.get(0)?,
                tasks_reporting: r.get(1)?,
                open_problems: r.get(2)?,
                tasks_clean: r.get(3)?,
            })
        })
        .optional()?
        .unwrap_or(FleetDay {
            day: first.day,
            tasks_reporting: 0,
            open_problems: 0,
            tasks_clean: 0,
        });
    let mut store = conn.prepare_cached(
        "INSERT INTO fleet_days (day, tasks_reporting, open_problems, tasks_clean)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (day) DO UPDATE SET tasks_reporting = excluded.tasks_reporting,
            open_problems = excluded.open_problems, tasks_clean = excluded.tasks_clean",
    )?;
    for (i, c) in changes.iter().enumerate() {
        state.day = state.day.max(c.day);
        state.tasks_reporting += i64::from(c.before.is_none());
        state.open_problems += c.after - c.before.unwrap_or(0);
        state.tasks_clean += i64::from(c.after == 0) - i64::from(c.before == Some(0));
        let day_ends = changes.get(i + 1).is_none_or(|next| next.day != c.day);
        if day_ends {
            store.execute(params![
                state.day,
                state.tasks_reporting,
                state.open_problems,
                state.tasks_clean
            ])?;
        }
    }
    Ok(())
}

/// The change a stored upload makes to the fleet.
pub fn change_of(received_at: Timestamp, before: Option<i64>, after: i64) -> FleetChange {
    FleetChange {
        day: day_of(received_at),
        before,
        after,
    }
}

/// Records an upload's results as its task's latest counts per directory.
pub fn record_directories(
    conn: &Connection,
    task_id: &str,
    upload_id: i64,
    results: &[ConsistencyResult],
) -> Result<(), rusqlite::Error> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO task_directories (dir_check, task_id, upload_id, num_total_files,
            num_different_files, num_target_miss_files, num_target_more_files)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (dir_check, task_id) DO UPDATE SET upload_id = excluded.upload_id,
            num_total_files = excluded.num_total_files,
            num_different_files = excluded.num_different_files,
            num_target_miss_files = excluded.num_target_miss_files,
            num_target_more_files = excluded.num_target_more_files",
    )?;
    for r in results {
        let [t, d, m, x] = r.counts().map(|c| c.get());
        upsert.execute(params![
            r.dir_check.as_str(),
            task_id,
            upload_id,
            t,
            d,
            m,
            x
        ])?;
    }
    Ok(())
}

/// A task's latest counts for one directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectoryRow {
    pub task_id: String,
    pub name: Option<String>,
    pub upload_id: i64,
    pub received_at: Timestamp,
    pub totals: Totals,
    pub problems: i64,
}

/// Every task's latest counts for directory `path` (exact), by task id.
pub fn directory(conn: &Connection, path: &str) -> Result<Vec<DirectoryRow>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.task_id, t.name, d.upload_id, u.received_at, d.num_total_files,
                d.num_different_files, d.num_target_miss_files, d.num_target_more_files
         FROM task_directories d JOIN uploads u ON u.id = d.upload_id
              LEFT JOIN tasks t ON t.task_id = d.task_id
         WHERE d.dir_check = ?1 ORDER BY d.task_id",
    )?;
    let rows = stmt.query_map(params![path], |r| {
        let totals = Totals {
            num_total_files: r.get(4)?,
            num_different_files: r.get(5)?,
            num_target_miss_files: r.get(6)?,
            num_target_more_files: r.get(7)?,
        };
        Ok(DirectoryRow {
            task_id: r.get(0)?,
            name: r.get(1)?,
            upload_id: r.get(2)?,
            received_at: r.get(3)?,
            problems: totals.problems(),
            totals,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Up to `limit` directories that start with `prefix`, in order, with how many
/// tasks have reported each.
pub fn directories_starting(
    conn: &Connection,
    prefix: &str,
    limit: u32,
) -> Result<Vec<(String, i64)>, StorageError> {
    // A range of the primary key: every string that starts with `prefix` sorts
    // below `prefix` followed by the highest code point.
    let mut stmt = conn.prepare_cached(
        "SELECT dir_check, count(*) FROM task_directories
         WHERE dir_check >= ?1 AND dir_check < ?1 || char(1114111)
           AND substr(dir_check, 1, length(?1)) = ?1
         GROUP BY dir_check ORDER BY dir_check LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![prefix, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Fills `fleet_days` and `task_directories` from the uploads stored before they
/// existed (once, when `fleet_days` is empty and there are uploads). Returns
/// whether it did. Run by the writer at start, in its own transaction.
pub fn catch_up(conn: &Connection) -> Result<bool, rusqlite::Error> {
    let needed: bool = conn.query_row(
        "SELECT NOT EXISTS (SELECT 1 FROM fleet_days) AND EXISTS (SELECT 1 FROM uploads)",
        [],
        |r| r.get(0),
    )?;
    if needed {
        rebuild(conn)?;
    }
    Ok(needed)
}

/// Recomputes both tables from all uploads: each upload changes the fleet by
/// what its task's state was before it (none, or the previous upload's
/// problems), and a day's row is the running sum at its last upload; a task's
/// counts for a directory are those of the last item for it in the latest
/// upload that has it.
pub fn rebuild(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "DELETE FROM fleet_days;
         INSERT INTO fleet_days (day, tasks_reporting, open_problems, tasks_clean)
         SELECT day, reporting, problems, clean FROM (
             SELECT day,
                    sum(prev IS NULL) OVER running AS reporting,
                    sum(p - coalesce(prev, 0)) OVER running AS problems,
                    sum((p = 0) - coalesce(prev = 0, 0)) OVER running AS clean,
                    row_number() OVER (PARTITION BY day ORDER BY id DESC) AS from_last
             FROM (
                 SELECT id, received_at / 86400000 AS day,
                        different_files + target_miss_files + target_more_files AS p,
                        lag(different_files + target_miss_files + target_more_files)
                            OVER (PARTITION BY task_id ORDER BY id) AS prev
                 FROM uploads
             )
             WINDOW running AS (ORDER BY id ROWS UNBOUNDED PRECEDING)
         )
         WHERE from_last = 1;

         DELETE FROM task_directories;
         INSERT INTO task_directories
         SELECT dir_check, task_id, upload_id, num_total_files, num_different_files,
                num_target_miss_files, num_target_more_files
         FROM (
             SELECT r.dir_check, u.task_id, r.upload_id, r.num_total_files,
                    r.num_different_files, r.num_target_miss_files, r.num_target_more_files,
                    row_number() OVER (PARTITION BY r.dir_check, u.task_id
                                       ORDER BY r.upload_id DESC, r.ordinal DESC) AS from_last
             FROM upload_results r JOIN uploads u ON u.id = r.upload_id
         )
         WHERE from_last = 1;",
    )
}
