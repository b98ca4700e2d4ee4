//! Reading uploads for an export: one statement in id order, so the snapshot is
//! consistent and rows come from the primary keys without sorting.

use rusqlite::{params, Connection};

use super::uploads::id_range;
use super::StorageError;
use crate::domain::{TaskId, Timestamp};

/// Which uploads an export covers.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Only this task's uploads.
    pub task_id: Option<TaskId>,
    /// Only uploads received at or after this time.
    pub since: Option<Timestamp>,
    /// Only uploads received before this time.
    pub until: Option<Timestamp>,
}

/// How many uploads the filter covers, at most (for progress bars).
pub fn estimate(conn: &Connection, filter: &ExportFilter) -> Result<u64, StorageError> {
    let (lo, hi) = id_range(conn, filter.since, filter.until)?;
    let n: i64 = match &filter.task_id {
        Some(t) => conn
            .prepare_cached(
                "SELECT count(*) FROM uploads WHERE task_id = ?1 AND id >= ?2 AND id < ?3",
            )?
            .query_row(params![t.as_str(), lo, hi], |r| r.get(0))?,
        None => {
            let max: Option<i64> =
                conn.query_row("SELECT max(id) FROM uploads", [], |r| r.get(0))?;
            (hi.min(max.unwrap_or(0) + 1) - lo.max(1)).max(0)
        }
    };
    Ok(n as u64)
}

/// An upload's fields as exported.
pub struct ExportedUpload {
    /// Its id.
    pub id: i64,
    /// The `X-Request-Id` it was answered with.
    pub request_id: String,
    /// Its task.
    pub task_id: String,
    /// When it arrived.
    pub received_at: Timestamp,
    /// The credential that sent it.
    pub credential_name: String,
    /// How that credential signed.
    pub auth_method: String,
    /// The `X-Project-Id` header, if sent.
    pub project_id: Option<String>,
    /// The TCP peer.
    pub peer_addr: String,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// SHA-256 of the raw body.
    pub body_sha256: String,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub entry_hash: String,
    /// The earlier upload of the task with the same bytes, if any.
    pub duplicate_of: Option<i64>,
    /// The agent's `finished_time`, as sent.
    pub finished_time: Option<i64>,
    /// Only when asked for.
    pub raw_body: Option<Vec<u8>>,
    /// When retention purged its raw body and result rows.
    pub purged_at: Option<Timestamp>,
}

/// One result item of an upload.
pub struct ExportedResult {
    /// Its place in the upload, from 0.
    pub ordinal: i64,
    /// The directory it checked.
    pub dir_check: String,
    /// Total, different, missing and extra files.
    pub counts: [i64; 4],
}

/// Calls `visit` for every result row of every upload the filter selects, in
/// (id, ordinal) order; `new_upload` is true on an upload's first row. An upload
/// without results gives one row with no result.
pub fn scan<E: From<StorageError>>(
    conn: &Connection,
    filter: &ExportFilter,
    with_raw_body: bool,
    mut visit: impl FnMut(bool, &ExportedUpload, Option<&ExportedResult>) -> Result<(), E>,
) -> Result<(), E> {
    let (lo, hi) = id_range(conn, filter.since, filter.until)?;
    let sql = format!(
        "SELECT u.id, u.request_id, u.task_id, u.received_at, u.credential_name, u.auth_method,
                u.project_id, u.peer_addr, u.user_agent, u.body_sha256, u.prev_hash, u.entry_hash,
                u.duplicate_of, u.finished_time, {},
                r.ordinal, r.dir_check, r.num_total_files, r.num_different_files,
                r.num_target_miss_files, r.num_target_more_files, u.purged_at
         FROM uploads u LEFT JOIN upload_results r ON r.upload_id = u.id
         WHERE u.id >= ?1 AND u.id < ?2 {}
         ORDER BY u.id, r.ordinal",
        if with_raw_body { "u.raw_body" } else { "NULL" },
        if filter.task_id.is_some() {
            "AND u.task_id = ?3"
        } else {
            "AND ?3 IS NULL"
        }
    );
    let mut stmt = conn.prepare(&sql).map_err(StorageError::from)?;
    let mut rows = stmt
        .query(params![lo, hi, filter.task_id.as_ref().map(TaskId::as_str)])
        .map_err(StorageError::from)?;
    let mut upload: Option<ExportedUpload> = None;
    let read = |r: &rusqlite::Row<'_>,
                upload: &mut Option<ExportedUpload>|
     -> rusqlite::Result<(bool, Option<ExportedResult>)> {
        let id: i64 = r.get(0)?;
        let new_upload = upload.as_ref().is_none_or(|u| u.id != id);
        if new_upload {
            *upload = Some(ExportedUpload {
                id,
                request_id: r.get(1)?,
                task_id: r.get(2)?,
                received_at: r.get(3)?,
                credential_name: r.get(4)?,
                auth_method: r.get(5)?,
                project_id: r.get(6)?,
                peer_addr: r.get(7)?,
                user_agent: r.get(8)?,
                body_sha256: r.get(9)?,
                prev_hash: r.get(10)?,
                entry_hash: r.get(11)?,
                duplicate_of: r.get(12)?,
                finished_time: r.get(13)?,
                raw_body: r.get(14)?,
                purged_at: r.get(21)?,
            });
        }
        let result = match r.get::<_, Option<i64>>(15)? {
            Some(ordinal) => Some(ExportedResult {
                ordinal,
                dir_check: r.get(16)?,
                counts: [r.get(17)?, r.get(18)?, r.get(19)?, r.get(20)?],
            }),
            None => None,
        };
        Ok((new_upload, result))
    };
    while let Some(r) = rows.next().map_err(StorageError::from)? {
        let (new_upload, result) = read(r, &mut upload).map_err(StorageError::from)?;
        let current = upload.as_ref().expect("read sets the upload");
        visit(new_upload, current, result.as_ref())?;
    }
    Ok(())
}
