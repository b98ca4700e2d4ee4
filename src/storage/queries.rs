//! Read queries behind the JSON API and the CLI, plus the task registry.
//! Every query here is served by an index; none scans all uploads.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::StorageError;
use crate::domain::{format_timestamp, now_ms, DeliveryState, TaskId, Timestamp, Trigger};

pub use crate::domain::Totals;

/// The four counts from columns `first..first + 4` of a row.
pub fn totals_from_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Totals> {
    Ok(Totals {
        num_total_files: r.get(first)?,
        num_different_files: r.get(first + 1)?,
        num_target_miss_files: r.get(first + 2)?,
        num_target_more_files: r.get(first + 3)?,
    })
}

#[derive(Debug, Serialize)]
pub struct TaskSummary {
    pub task_id: String,
    pub name: Option<String>,
    pub registered_at: String,
    pub registered_by: String,
    pub upload_count: i64,
    pub first_received_at: Option<String>,
    pub last_received_at: Option<String>,
    pub last_upload_id: Option<i64>,
    /// Totals of the latest upload.
    pub latest_totals: Option<Totals>,
    /// The task's state as SMS last listed it (`tasks sync`), and when.
    pub sms_state: Option<String>,
    pub sms_synced_at: Option<String>,
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
                t.sms_state, t.sms_synced_at
         FROM tasks t LEFT JOIN uploads u ON u.id = t.last_upload_id
         WHERE t.task_id > ?1
         ORDER BY t.task_id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit], |r| {
        let last_upload_id: Option<i64> = r.get(7)?;
        Ok(TaskSummary {
            task_id: r.get(0)?,
            name: r.get(1)?,
            registered_at: format_timestamp(r.get(2)?),
            registered_by: r.get(3)?,
            upload_count: r.get(4)?,
            first_received_at: r.get::<_, Option<i64>>(5)?.map(format_timestamp),
            last_received_at: r.get::<_, Option<i64>>(6)?.map(format_timestamp),
            last_upload_id,
            latest_totals: match last_upload_id {
                Some(_) => Some(totals_from_row(r, 8)?),
                None => None,
            },
            sms_state: r.get(12)?,
            sms_synced_at: r.get::<_, Option<i64>>(13)?.map(format_timestamp),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The task's state as SMS last listed it, and when that was (RFC 3339).
pub fn sms_state(
    conn: &Connection,
    task_id: &str,
) -> Result<Option<(String, String)>, StorageError> {
    Ok(conn
        .prepare_cached("SELECT sms_state, sms_synced_at FROM tasks WHERE task_id = ?1")?
        .query_row(params![task_id], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<i64>>(1)?))
        })
        .optional()?
        .and_then(|(state, at)| Some((state?, format_timestamp(at?)))))
}

pub fn task_exists(conn: &Connection, task_id: &str) -> Result<bool, StorageError> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM tasks WHERE task_id = ?1)")?
        .query_row(params![task_id], |r| r.get(0))?)
}

/// A task as SMS lists it: registered if new (`registered_by = 'sms'`), its
/// name (when SMS gives one) and state stored. Returns whether it was new.
pub fn record_sms_task(
    conn: &Connection,
    task_id: &TaskId,
    name: Option<&str>,
    state: Option<&str>,
    source_id: Option<&str>,
    now: Timestamp,
) -> Result<bool, StorageError> {
    let existed: bool = conn.query_row(
        "SELECT count(*) > 0 FROM tasks WHERE task_id = ?1",
        [task_id.as_str()],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO tasks (task_id, name, registered_at, registered_by, sms_state, sms_synced_at,
             sms_source_id)
         VALUES (?1, ?2, ?4, 'sms', ?3, ?4, ?5)
         ON CONFLICT (task_id) DO UPDATE SET name = coalesce(excluded.name, name),
             sms_state = excluded.sms_state, sms_synced_at = excluded.sms_synced_at,
             sms_source_id = excluded.sms_source_id",
        params![task_id.as_str(), name, state, now, source_id],
    )?;
    Ok(!existed)
}

/// The tasks whose source server (as `tasks sync` read it from SMS) is `source_id`.
pub fn tasks_of_source(conn: &Connection, source_id: &str) -> Result<Vec<String>, StorageError> {
    let mut stmt = conn.prepare_cached("SELECT task_id FROM tasks WHERE sms_source_id = ?1")?;
    let tasks = stmt
        .query_map([source_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(tasks)
}

/// Registers a task (`tasks add`); naming an existing task renames it.
pub fn register_task(
    conn: &Connection,
    task_id: &TaskId,
    name: Option<&str>,
) -> Result<bool, StorageError> {
    let existed = task_exists(conn, task_id.as_str())?;
    conn.execute(
        "INSERT INTO tasks (task_id, name, registered_at, registered_by) VALUES (?1, ?2, ?3, 'cli')
         ON CONFLICT (task_id) DO UPDATE SET name = coalesce(excluded.name, name)",
        params![task_id.as_str(), name, now_ms()],
    )?;
    Ok(!existed)
}

#[derive(Debug, Serialize)]
pub struct UploadSummary {
    pub id: i64,
    pub received_at: String,
    pub result_count: i64,
    pub totals: Totals,
    pub duplicate_of: Option<i64>,
    pub finished_time: Option<i64>,
    /// More problems (different + missing + extra files) than the previous upload.
    pub regressed: bool,
}

#[derive(Default)]
pub struct UploadPageQuery {
    pub limit: u32,
    pub before_id: Option<i64>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub regressed_only: bool,
}

/// The smallest upload id received at or after `t` (one past the last id when
/// none is). `received_at` never decreases as ids grow, so this is a binary search
/// over the primary key instead of an index on time.
pub fn first_id_at_or_after(conn: &Connection, t: Timestamp) -> Result<i64, StorageError> {
    let mut probe = conn
        .prepare_cached("SELECT id, received_at FROM uploads WHERE id >= ?1 ORDER BY id LIMIT 1")?;
    let last: Option<i64> = conn
        .prepare_cached("SELECT max(id) FROM uploads")?
        .query_row([], |r| r.get(0))?;
    let (mut lo, mut hi) = (1, last.unwrap_or(0) + 1);
    // Invariant: every id < lo is before t; every id >= hi is at or after t.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match probe
            .query_row(params![mid], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?
        {
            Some((id, at)) if at < t => lo = id + 1,
            Some(_) | None => hi = mid,
        }
    }
    Ok(lo)
}

/// `since` (inclusive) and `until` (exclusive) as an id range `[lo, hi)`.
pub fn id_range(
    conn: &Connection,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<(i64, i64), StorageError> {
    let lo = since.map_or(Ok(i64::MIN), |t| first_id_at_or_after(conn, t))?;
    let hi = until.map_or(Ok(i64::MAX), |t| first_id_at_or_after(conn, t))?;
    Ok((lo, hi))
}

/// One page of a task's uploads, newest first, and the `before_id` of the next page.
pub fn task_uploads(
    conn: &Connection,
    task_id: &str,
    q: &UploadPageQuery,
) -> Result<(Vec<UploadSummary>, Option<i64>), StorageError> {
    let (lo, hi) = id_range(conn, q.since, q.until)?;
    // Two statements so that each has its index (the regressed one is partial).
    let mut stmt = conn.prepare_cached(if q.regressed_only {
        "SELECT id, received_at, result_count, total_files, different_files,
                target_miss_files, target_more_files, duplicate_of, finished_time, regressed
         FROM uploads
         WHERE task_id = ?1 AND id >= ?2 AND id < ?3 AND regressed = 1
         ORDER BY id DESC LIMIT ?4"
    } else {
        "SELECT id, received_at, result_count, total_files, different_files,
                target_miss_files, target_more_files, duplicate_of, finished_time, regressed
         FROM uploads
         WHERE task_id = ?1 AND id >= ?2 AND id < ?3
         ORDER BY id DESC LIMIT ?4"
    })?;
    let rows = stmt.query_map(
        params![
            task_id,
            lo,
            hi.min(q.before_id.unwrap_or(i64::MAX)),
            i64::from(q.limit) + 1
        ],
        |r| {
            Ok(UploadSummary {
                id: r.get(0)?,
                received_at: format_timestamp(r.get(1)?),
                result_count: r.get(2)?,
                totals: totals_from_row(r, 3)?,
                duplicate_of: r.get(7)?,
                finished_time: r.get(8)?,
                regressed: r.get(9)?,
            })
        },
    )?;
    let mut uploads: Vec<UploadSummary> = rows.collect::<Result<_, _>>()?;
    let next = if uploads.len() > q.limit as usize {
        uploads.truncate(q.limit as usize);
        uploads.last().map(|u| u.id)
    } else {
        None
    };
    Ok((uploads, next))
}

#[derive(Debug, Serialize)]
pub struct ResultRow {
    pub ordinal: i64,
    pub dir_check: String,
    pub num_total_files: i64,
    pub num_different_files: i64,
    pub num_target_miss_files: i64,
    pub num_target_more_files: i64,
}

#[derive(Debug, Serialize)]
pub struct UploadRecord {
    pub id: i64,
    pub request_id: String,
    pub task_id: String,
    pub received_at: String,
    pub credential_name: String,
    pub auth_method: String,
    pub project_id: Option<String>,
    pub peer_addr: String,
    pub forwarded_for: Option<String>,
    pub user_agent: Option<String>,
    pub body_sha256: String,
    pub finished_time: Option<i64>,
    pub result_count: i64,
    pub totals: Totals,
    pub duplicate_of: Option<i64>,
    pub prev_hash: String,
    pub entry_hash: String,
    pub results: Vec<ResultRow>,
    /// Deliveries to SMS (live and replays), each with its attempts.
    pub deliveries: Vec<DeliveryRecord>,
    /// The stored bytes as a string (lossy only if they were not UTF-8, which the
    /// ingest path never accepts); empty once purged.
    pub raw_body: String,
    /// When retention purged the raw body and result rows (the entry stays).
    pub purged_at: Option<String>,
}

pub fn upload(conn: &Connection, id: i64) -> Result<Option<UploadRecord>, StorageError> {
    let record = conn
        .prepare_cached(
            "SELECT id, request_id, task_id, received_at, credential_name, auth_method,
                    project_id, peer_addr, forwarded_for, user_agent, body_sha256,
                    finished_time, result_count, total_files, different_files,
                    target_miss_files, target_more_files, duplicate_of, prev_hash,
                    entry_hash, raw_body, purged_at
             FROM uploads WHERE id = ?1",
        )?
        .query_row(params![id], |r| {
            let raw: Vec<u8> = r.get(20)?;
            Ok(UploadRecord {
                id: r.get(0)?,
                request_id: r.get(1)?,
                task_id: r.get(2)?,
                received_at: format_timestamp(r.get(3)?),
                credential_name: r.get(4)?,
                auth_method: r.get(5)?,
                project_id: r.get(6)?,
                peer_addr: r.get(7)?,
                forwarded_for: r.get(8)?,
                user_agent: r.get(9)?,
                body_sha256: r.get(10)?,
                finished_time: r.get(11)?,
                result_count: r.get(12)?,
                totals: totals_from_row(r, 13)?,
                duplicate_of: r.get(17)?,
                prev_hash: r.get(18)?,
                entry_hash: r.get(19)?,
                results: Vec::new(),
                deliveries: Vec::new(),
                raw_body: String::from_utf8_lossy(&raw).into_owned(),
                purged_at: r.get::<_, Option<i64>>(21)?.map(format_timestamp),
            })
        })
        .optional()?;
    let Some(mut record) = record else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT ordinal, dir_check, num_total_files, num_different_files,
                num_target_miss_files, num_target_more_files
         FROM upload_results WHERE upload_id = ?1 ORDER BY ordinal",
    )?;
    record.results = stmt
        .query_map(params![id], |r| {
            Ok(ResultRow {
                ordinal: r.get(0)?,
                dir_check: r.get(1)?,
                num_total_files: r.get(2)?,
                num_different_files: r.get(3)?,
                num_target_miss_files: r.get(4)?,
                num_target_more_files: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    record.deliveries = deliveries_of(conn, id)?;
    Ok(Some(record))
}

#[derive(Debug, Serialize)]
pub struct AttemptRow {
    pub at: String,
    pub target_url: String,
    pub trigger: Trigger,
    pub http_status: Option<u16>,
    pub upstream_request_id: Option<String>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub transport_error: Option<String>,
    pub response_head: Option<String>,
    pub latency_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub target: String,
    pub trigger: Trigger,
    pub replay_id: Option<i64>,
    pub state: DeliveryState,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub finished_at: Option<String>,
    pub last_error: Option<String>,
    pub attempts: Vec<AttemptRow>,
}

pub fn deliveries_of(
    conn: &Connection,
    upload_id: i64,
) -> Result<Vec<DeliveryRecord>, StorageError> {
    let mut deliveries: Vec<DeliveryRecord> = conn
        .prepare_cached(
            "SELECT id, target, trigger, replay_id, state, created_at, next_attempt_at,
                    finished_at, last_error
             FROM deliveries WHERE upload_id = ?1 ORDER BY id",
        )?
        .query_map(params![upload_id], |r| {
            let state: DeliveryState = r.get(4)?;
            Ok(DeliveryRecord {
                id: r.get(0)?,
                target: r.get(1)?,
                trigger: r.get(2)?,
                replay_id: r.get(3)?,
                next_attempt_at: (state == DeliveryState::Pending)
                    .then(|| r.get(6).map(format_timestamp))
                    .transpose()?,
                state,
                created_at: format_timestamp(r.get(5)?),
                finished_at: r.get::<_, Option<i64>>(7)?.map(format_timestamp),
                last_error: r.get(8)?,
                attempts: Vec::new(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut attempts = conn.prepare_cached(
        "SELECT at, target_url, trigger, http_status, upstream_request_id, error_code, error_msg,
                transport_error, response_head, latency_ms
         FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id",
    )?;
    for d in &mut deliveries {
        d.attempts = attempts
            .query_map(params![d.id], |r| {
                Ok(AttemptRow {
                    at: format_timestamp(r.get(0)?),
                    target_url: r.get(1)?,
                    trigger: r.get(2)?,
                    http_status: r.get(3)?,
                    upstream_request_id: r.get(4)?,
                    error_code: r.get(5)?,
                    error_msg: r.get(6)?,
                    transport_error: r.get(7)?,
                    response_head: r.get(8)?,
                    latency_ms: r.get(9)?,
                })
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(deliveries)
}

#[derive(Debug, Serialize)]
pub struct RejectionRow {
    pub at: String,
    pub peer_addr: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub error_code: String,
    pub credential_name: Option<String>,
    pub request_id: String,
}

/// Which rejections to show; `None` fields match anything.
#[derive(Debug, Default, Clone)]
pub struct RejectionFilter {
    pub status: Option<u16>,
    pub error_code: Option<String>,
    pub credential_name: Option<String>,
}

/// Refusals of one peer with one error code in one minute.
#[derive(Debug, Serialize)]
pub struct RejectionCount {
    pub minute: String,
    pub peer_addr: String,
    pub error_code: String,
    pub count: i64,
}

/// Per-minute refusal counts from `since` on, the largest first (at most `limit`).
pub fn rejection_counts(
    conn: &Connection,
    since: Timestamp,
    limit: u32,
) -> Result<Vec<RejectionCount>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT minute, peer_addr, error_code, count FROM rejection_counts
         WHERE minute >= ?1 ORDER BY count DESC, minute DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![since, limit], |r| {
        Ok(RejectionCount {
            minute: format_timestamp(r.get(0)?),
            peer_addr: r.get(1)?,
            error_code: r.get(2)?,
            count: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest matching rejections first (the log is bounded, so this scan is too).
pub fn recent_rejections(
    conn: &Connection,
    limit: u32,
    filter: &RejectionFilter,
) -> Result<Vec<RejectionRow>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, peer_addr, method, path, status, error_code, credential_name, request_id
         FROM rejections
         WHERE (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR error_code = ?3)
           AND (?4 IS NULL OR credential_name = ?4)
         ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(
        params![
            limit,
            filter.status,
            filter.error_code,
            filter.credential_name
        ],
        |r| {
            Ok(RejectionRow {
                at: format_timestamp(r.get(0)?),
                peer_addr: r.get(1)?,
                method: r.get(2)?,
                path: r.get(3)?,
                status: r.get(4)?,
                error_code: r.get(5)?,
                credential_name: r.get(6)?,
                request_id: r.get(7)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_become_id_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let conn =
            crate::storage::prepare(&dir.path().join("t.db"), crate::storage::SyncMode::Normal)
                .unwrap();
        // ids with a gap at 4; times never decrease.
        for (id, at) in [(1i64, 10i64), (2, 10), (3, 20), (5, 30), (6, 30), (7, 40)] {
            conn.execute(
                "INSERT INTO uploads (id, request_id, task_id, received_at, credential_name,
                    auth_method, peer_addr, raw_body, body_sha256, result_count, total_files,
                    different_files, target_miss_files, target_more_files, prev_hash, entry_hash)
                 VALUES (?1, ?1, 't', ?2, 'c', 'token', 'p', x'', '', 0, 0, 0, 0, 0, '', '')",
                params![id, at],
            )
            .unwrap();
        }
        let rows = [(1, 10), (2, 10), (3, 20), (5, 30), (6, 30), (7, 40)];
        for t in 0..=45 {
            let bound = first_id_at_or_after(&conn, t).unwrap();
            for (id, at) in rows {
                assert_eq!(id >= bound, at >= t, "t={t} bound={bound} id={id}");
            }
        }
        assert_eq!(first_id_at_or_after(&conn, 41).unwrap(), 8);
        assert_eq!(
            id_range(&conn, None, Some(30)).unwrap(),
            (i64::MIN, first_id_at_or_after(&conn, 30).unwrap())
        );
    }
}
