//! Queries behind the history pages. Each is served by an index or a summary
//! table; none scans all uploads.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::queries::{first_id_at_or_after, Totals};
use super::StorageError;
use crate::domain::chain::Verification;
use crate::domain::{now_ms, DeliveryState, Timestamp, Trigger};

/// One upload in a chart: when, and the four counts.
pub struct ChartPoint {
    pub id: i64,
    pub at: i64,
    pub values: [i64; 4],
}

/// The last verification run.
#[derive(Debug, Clone, Serialize)]
pub struct VerificationRecord {
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub requested_by: String,
    pub entries: i64,
    pub head_id: i64,
    pub head_hash: String,
    pub first_bad_id: Option<i64>,
    pub problem: Option<String>,
    /// Set for `verify --since-checkpoint`: the checkpoint it started after.
    pub since_checkpoint: Option<i64>,
}

pub fn record_verification(
    conn: &Connection,
    v: &Verification,
    started_at: Timestamp,
    requested_by: &str,
) -> Result<(), rusqlite::Error> {
    conn.execute(
        "INSERT INTO verifications (started_at, finished_at, requested_by, entries, head_id,
            head_hash, first_bad_id, problem, since_checkpoint, checkpoint_verified)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            started_at,
            now_ms(),
            requested_by,
            v.entries as i64,
            v.head_id,
            v.head_hash,
            v.first_bad.as_ref().map(|b| b.id),
            v.first_bad.as_ref().map(|b| b.problem.clone()),
            v.since_checkpoint.map(|s| s as i64),
            v.checkpoint_verified.map(|s| s as i64),
        ],
    )?;
    Ok(())
}

/// The newest full verification run: whether it found the ledger intact, and the
/// newest checkpoint it recomputed (where `verify --since-checkpoint` starts).
pub struct LastFullRun {
    pub finished_at: Timestamp,
    pub first_bad_id: Option<i64>,
    pub checkpoint_verified: Option<u64>,
}

pub fn last_full_verification(conn: &Connection) -> Result<Option<LastFullRun>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT finished_at, first_bad_id, checkpoint_verified FROM verifications
             WHERE since_checkpoint IS NULL ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                Ok(LastFullRun {
                    finished_at: r.get(0)?,
                    first_bad_id: r.get(1)?,
                    checkpoint_verified: r.get::<_, Option<i64>>(2)?.map(|s| s as u64),
                })
            },
        )
        .optional()?)
}

pub fn last_verification(conn: &Connection) -> Result<Option<VerificationRecord>, StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT started_at, finished_at, requested_by, entries, head_id, head_hash,
                    first_bad_id, problem, since_checkpoint
             FROM verifications ORDER BY id DESC LIMIT 1",
        )?
        .query_row([], |r| {
            Ok(VerificationRecord {
                started_at: r.get(0)?,
                finished_at: r.get(1)?,
                requested_by: r.get(2)?,
                entries: r.get(3)?,
                head_id: r.get(4)?,
                head_hash: r.get(5)?,
                first_bad_id: r.get(6)?,
                problem: r.get(7)?,
                since_checkpoint: r.get(8)?,
            })
        })
        .optional()?)
}

pub struct Overview {
    pub tasks: i64,
    pub uploads: i64,
    pub uploads_24h: i64,
    pub head_id: i64,
    pub head_hash: Option<String>,
    pub last_verification: Option<VerificationRecord>,
}

pub fn overview(conn: &Connection) -> Result<Overview, StorageError> {
    let tasks: i64 = conn
        .prepare_cached("SELECT count(*) FROM tasks")?
        .query_row([], |r| r.get(0))?;
    let head: Option<(i64, String)> = conn
        .prepare_cached("SELECT id, entry_hash FROM uploads ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let head_id = head.as_ref().map_or(0, |h| h.0);
    // Ids have no gaps and times never decrease, so counts are id differences.
    let first_recent = first_id_at_or_after(conn, now_ms() - 86_400_000)?;
    Ok(Overview {
        tasks,
        uploads: head_id,
        uploads_24h: (head_id - first_recent + 1).max(0),
        head_id,
        head_hash: head.map(|h| h.1),
        last_verification: last_verification(conn)?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSort {
    LastUpload,
    TaskId,
    Uploads,
    Problems,
}

impl TaskSort {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("task") => TaskSort::TaskId,
            Some("uploads") => TaskSort::Uploads,
            Some("problems") => TaskSort::Problems,
            _ => TaskSort::LastUpload,
        }
    }

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

pub struct TaskListQuery {
    pub search: String,
    pub sort: TaskSort,
    pub descending: bool,
    pub offset: u32,
    pub limit: u32,
}

pub struct TaskRow {
    pub task_id: String,
    pub name: Option<String>,
    pub last_upload_at: Option<Timestamp>,
    pub upload_count: i64,
    pub last_upload_id: Option<i64>,
    pub latest: Option<Totals>,
    pub problems: Option<i64>,
    pub regressed: bool,
    /// Problems per upload, oldest first, over the latest uploads.
    pub trend: Vec<i64>,
}

/// How many uploads a sparkline covers.
pub const TREND_UPLOADS: i64 = 20;

fn like_pattern(search: &str) -> String {
    let escaped = search
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

const TASK_COLUMNS: &str = "t.task_id, t.name, t.last_upload_at, t.upload_count, t.last_upload_id,
    t.last_problems, t.last_regressed, u.total_files, u.different_files, u.target_miss_files,
    u.target_more_files";

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
        latest: match last_upload_id {
            Some(_) => Some(Totals {
                num_total_files: r.get(7)?,
                num_different_files: r.get(8)?,
                num_target_miss_files: r.get(9)?,
                num_target_more_files: r.get(10)?,
            }),
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
    let filter = if q.search.is_empty() {
        "?1 IS NULL"
    } else {
        "(t.task_id LIKE ?1 ESCAPE '\\' OR t.name LIKE ?1 ESCAPE '\\')"
    };
    let search = (!q.search.is_empty()).then_some(pattern);
    let matching: i64 = if q.search.is_empty() {
        conn.prepare_cached("SELECT count(*) FROM tasks")?
            .query_row([], |r| r.get(0))?
    } else {
        conn.prepare_cached(&format!("SELECT count(*) FROM tasks t WHERE {filter}"))?
            .query_row(params![search], |r| r.get(0))?
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

/// Problems per upload of a task's latest [`TREND_UPLOADS`] uploads with id
/// `<= upto`, oldest first (a sparkline).
pub fn recent_problems(
    conn: &Connection,
    task_id: &str,
    upto: i64,
) -> Result<Vec<i64>, StorageError> {
    let mut values: Vec<i64> = conn
        .prepare_cached(
            "SELECT different_files + target_miss_files + target_more_files FROM uploads
             WHERE task_id = ?1 AND id <= ?2 ORDER BY id DESC LIMIT ?3",
        )?
        .query_map(params![task_id, upto, TREND_UPLOADS], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    values.reverse();
    Ok(values)
}

pub fn task(conn: &Connection, task_id: &str) -> Result<Option<TaskRow>, StorageError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks t LEFT JOIN uploads u ON u.id = t.last_upload_id
             WHERE t.task_id = ?1"
        ))?
        .query_row(params![task_id], task_row)
        .optional()?)
}

/// The four counts of a task's latest `limit` uploads (oldest first), totals or of
/// one directory.
pub fn chart_points(
    conn: &Connection,
    task_id: &str,
    dir: Option<&str>,
    range: (i64, i64),
    limit: i64,
) -> Result<Vec<ChartPoint>, StorageError> {
    let map = |r: &rusqlite::Row<'_>| {
        Ok(ChartPoint {
            id: r.get(0)?,
            at: r.get(1)?,
            values: [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
        })
    };
    let mut points: Vec<ChartPoint> = match dir {
        None => conn
            .prepare_cached(
                "SELECT id, received_at, total_files, different_files, target_miss_files,
                        target_more_files
                 FROM uploads WHERE task_id = ?1 AND id >= ?2 AND id < ?3
                 ORDER BY id DESC LIMIT ?4",
            )?
            .query_map(params![task_id, range.0, range.1, limit], map)?
            .collect::<Result<_, _>>()?,
        Some(dir) => conn
            .prepare_cached(
                "SELECT u.id, u.received_at, sum(r.num_total_files), sum(r.num_different_files),
                        sum(r.num_target_miss_files), sum(r.num_target_more_files)
                 FROM uploads u JOIN upload_results r ON r.upload_id = u.id
                 WHERE u.task_id = ?1 AND u.id >= ?2 AND u.id < ?3 AND r.dir_check = ?5
                 GROUP BY u.id ORDER BY u.id DESC LIMIT ?4",
            )?
            .query_map(params![task_id, range.0, range.1, limit, dir], map)?
            .collect::<Result<_, _>>()?,
    };
    points.reverse();
    Ok(points)
}

/// Directory names of an upload, in order, without repeats.
/// Every directory a task reported in its latest `recent` uploads, by name.
pub fn task_dirs(
    conn: &Connection,
    task_id: &str,
    recent: u32,
) -> Result<Vec<String>, StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT DISTINCT r.dir_check FROM upload_results r
             WHERE r.upload_id IN
               (SELECT id FROM uploads WHERE task_id = ?1 ORDER BY id DESC LIMIT ?2)
             ORDER BY r.dir_check",
        )?
        .query_map(params![task_id, recent], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// The previous and next upload of the same task.
pub fn neighbours(
    conn: &Connection,
    task_id: &str,
    id: i64,
) -> Result<(Option<i64>, Option<i64>), StorageError> {
    let previous = conn
        .prepare_cached("SELECT max(id) FROM uploads WHERE task_id = ?1 AND id < ?2")?
        .query_row(params![task_id, id], |r| r.get(0))?;
    let next = conn
        .prepare_cached("SELECT min(id) FROM uploads WHERE task_id = ?1 AND id > ?2")?
        .query_row(params![task_id, id], |r| r.get(0))?;
    Ok((previous, next))
}

/// A delivery as the deliveries page lists it.
#[derive(Debug, Serialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub upload_id: i64,
    pub task_id: String,
    pub target: String,
    pub trigger: Trigger,
    pub replay_id: Option<i64>,
    pub state: DeliveryState,
    pub created_at: Timestamp,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    pub task_id: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub before_id: Option<i64>,
}

/// The newest matching deliveries (at most `limit`), and the next page's `before_id`.
pub fn deliveries(
    conn: &Connection,
    f: &DeliveryFilter,
    limit: u32,
) -> Result<(Vec<DeliveryRow>, Option<i64>), StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, upload_id, task_id, target, trigger, replay_id, state, created_at, attempts,
                next_attempt_at, last_status, last_error
         FROM deliveries
         WHERE id < ?1 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR task_id = ?3)
           AND created_at >= ?4 AND created_at < ?5
         ORDER BY id DESC LIMIT ?6",
    )?;
    let mut rows: Vec<DeliveryRow> = stmt
        .query_map(
            params![
                f.before_id.unwrap_or(i64::MAX),
                f.state,
                f.task_id,
                f.since.unwrap_or(i64::MIN),
                f.until.unwrap_or(i64::MAX),
                i64::from(limit) + 1
            ],
            |r| {
                Ok(DeliveryRow {
                    id: r.get(0)?,
                    upload_id: r.get(1)?,
                    task_id: r.get(2)?,
                    target: r.get(3)?,
                    trigger: r.get(4)?,
                    replay_id: r.get(5)?,
                    state: r.get(6)?,
                    created_at: r.get(7)?,
                    attempts: r.get(8)?,
                    next_attempt_at: r.get(9)?,
                    last_status: r.get(10)?,
                    last_error: r.get(11)?,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok((rows, next))
}

/// How forwarding is doing.
#[derive(Debug, Serialize)]
pub struct OutboxHealth {
    /// Deliveries per state (pending, failed, dead).
    pub counts: Vec<(DeliveryState, i64)>,
    pub oldest_pending_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    /// Failed attempts since the last success.
    pub consecutive_failures: i64,
}

pub fn outbox_health(conn: &Connection) -> Result<OutboxHealth, StorageError> {
    let mut counts = Vec::new();
    let mut count = conn.prepare_cached("SELECT count(*) FROM deliveries WHERE state = ?1")?;
    // Pending, failed and dead are few and indexed; delivered and superseded
    // deliveries are not counted (that would read them all).
    for state in [
        DeliveryState::Pending,
        DeliveryState::Failed,
        DeliveryState::Dead,
    ] {
        counts.push((state, count.query_row(params![state], |r| r.get(0))?));
    }
    let oldest_pending_at = conn
        // The first queued is the oldest: ids grow with time. Read from the index of
        // pending deliveries instead of visiting each.
        .prepare_cached(
            "SELECT created_at FROM deliveries WHERE state = 'pending' ORDER BY id LIMIT 1",
        )?
        .query_row([], |r| r.get::<_, Timestamp>(0))
        .optional()?;
    // Attempts are recorded in order: the newest success is the last one by id.
    let last_success: Option<(i64, Timestamp)> = conn
        .prepare_cached(
            "SELECT id, at FROM delivery_attempts WHERE http_status BETWEEN 200 AND 299
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let consecutive_failures = conn
        .prepare_cached("SELECT count(*) FROM delivery_attempts WHERE id > ?1")?
        .query_row(params![last_success.map_or(0, |(id, _)| id)], |r| r.get(0))?;
    let last_success_at = last_success.map(|(_, at)| at);
    Ok(OutboxHealth {
        counts,
        oldest_pending_at,
        last_success_at,
        consecutive_failures,
    })
}

/// A task's first upload time and how many of its uploads regressed.
pub fn task_history_summary(
    conn: &Connection,
    task_id: &str,
) -> Result<(Option<Timestamp>, i64), StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT min(received_at), coalesce(sum(regressed), 0) FROM uploads WHERE task_id = ?1",
        )?
        .query_row(params![task_id], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// What `/metrics` reads from the database at each scrape (each a cheap query:
/// the head by primary key, deliveries by their state, verification runs).
#[derive(Debug, Default)]
pub struct MetricsSnapshot {
    pub entries: i64,
    /// (state, count) for every state any delivery is in.
    pub deliveries: Vec<(String, i64)>,
    pub oldest_pending_created_at: Option<Timestamp>,
    /// (intact, runs) over every recorded verification.
    pub verifications: Vec<(bool, i64)>,
    /// The newest run's verdict.
    pub last_verification_intact: Option<bool>,
}

pub fn metrics_snapshot(conn: &Connection) -> Result<MetricsSnapshot, StorageError> {
    let deliveries = conn
        .prepare_cached("SELECT state, count(*) FROM deliveries GROUP BY state")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let verifications = conn
        .prepare_cached("SELECT first_bad_id IS NULL, count(*) FROM verifications GROUP BY 1")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(MetricsSnapshot {
        entries: super::ledger::last_id(conn)?,
        deliveries,
        oldest_pending_created_at: super::outbox::pending_overall(conn)?.1,
        verifications,
        last_verification_intact: last_verification(conn)?.map(|v| v.first_bad_id.is_none()),
    })
}
