//! Reading the chain: its head, and every entry in id order with its result rows
//! (for verification), in one read snapshot.

use std::ops::ControlFlow;

use rusqlite::{params, Connection, OptionalExtension};

use super::StorageError;
use crate::domain::chain::Head;
use crate::domain::Timestamp;

/// The last entry of the chain (the genesis head for an empty ledger).
pub fn head(conn: &Connection) -> Result<Head, StorageError> {
    Ok(conn
        .query_row(
            "SELECT id, entry_hash, received_at FROM uploads ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                Ok(Head {
                    id: r.get(0)?,
                    hash: r.get(1)?,
                    received_at: r.get(2)?,
                })
            },
        )
        .optional()?
        .unwrap_or_else(Head::genesis))
}

/// One upload as stored, with everything verification recomputes.
pub struct StoredEntry {
    pub id: i64,
    pub request_id: String,
    pub task_id: String,
    pub received_at: Timestamp,
    pub credential_name: String,
    pub auth_method: String,
    pub raw_body: Vec<u8>,
    pub body_sha256: String,
    pub prev_hash: String,
    pub entry_hash: String,
    /// result_count, total, different, target_miss, target_more, finished_time (-1: none).
    pub totals: [i64; 6],
}

/// A stored result row: ordinal, dir_check, the four counts.
pub type StoredResult = (i64, String, [i64; 4]);

/// What the task summaries count: uploads, and the highest upload id.
pub struct SummaryTotals {
    pub uploads: i64,
    pub last_upload_id: i64,
}

/// Visits every entry in id order (`results` reads an entry's result rows) until
/// `visit` breaks, then reads the task summaries' totals, all in one snapshot.
pub fn scan(
    conn: &Connection,
    mut visit: impl FnMut(
        StoredEntry,
        &mut dyn FnMut(i64) -> Result<Vec<StoredResult>, StorageError>,
    ) -> Result<ControlFlow<()>, StorageError>,
) -> Result<SummaryTotals, StorageError> {
    // One read transaction: every statement sees the same snapshot.
    let snapshot = conn.unchecked_transaction()?;
    {
        let mut uploads = conn.prepare(
            "SELECT id, request_id, task_id, received_at, credential_name, auth_method,
                    raw_body, body_sha256, prev_hash, entry_hash, result_count, total_files,
                    different_files, target_miss_files, target_more_files, finished_time
             FROM uploads ORDER BY id",
        )?;
        let mut results_stmt = conn.prepare_cached(
            "SELECT ordinal, dir_check, num_total_files, num_different_files,
                    num_target_miss_files, num_target_more_files
             FROM upload_results WHERE upload_id = ?1 ORDER BY ordinal",
        )?;
        let mut results = |id: i64| -> Result<Vec<StoredResult>, StorageError> {
            Ok(results_stmt
                .query_map(params![id], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
                    ))
                })?
                .collect::<Result<_, _>>()?)
        };
        let mut rows = uploads.query([])?;
        while let Some(row) = rows.next()? {
            let entry = StoredEntry {
                totals: [
                    row.get(10)?,
                    row.get(11)?,
                    row.get(12)?,
                    row.get(13)?,
                    row.get(14)?,
                    row.get::<_, Option<i64>>(15)?.unwrap_or(-1),
                ],
                ..entry_fields(row)?
            };
            if visit(entry, &mut results)?.is_break() {
                break;
            }
        }
    }
    let totals = conn.query_row(
        "SELECT coalesce(sum(upload_count), 0), coalesce(max(last_upload_id), 0) FROM tasks",
        [],
        |r| {
            Ok(SummaryTotals {
                uploads: r.get(0)?,
                last_upload_id: r.get(1)?,
            })
        },
    )?;
    snapshot.finish()?;
    Ok(totals)
}

/// A task's entries with ids up to `max_id`, received in `[since, until)`, in id
/// order (by the task index).
pub fn task_entries(
    conn: &Connection,
    task_id: &str,
    max_id: i64,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<Vec<StoredEntry>, StorageError> {
    let mut stmt = conn.prepare(
        "SELECT id, request_id, task_id, received_at, credential_name, auth_method,
                raw_body, body_sha256, prev_hash, entry_hash
         FROM uploads
         WHERE task_id = ?1 AND id <= ?2 AND (?3 IS NULL OR received_at >= ?3)
           AND (?4 IS NULL OR received_at < ?4)
         ORDER BY id",
    )?;
    let rows = stmt.query_map(params![task_id, max_id, since, until], entry_fields)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The ledger fields of an entry from a row whose first ten columns are `id,
/// request_id, task_id, received_at, credential_name, auth_method, raw_body,
/// body_sha256, prev_hash, entry_hash` (totals left at 0).
fn entry_fields(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEntry> {
    Ok(StoredEntry {
        id: row.get(0)?,
        request_id: row.get(1)?,
        task_id: row.get(2)?,
        received_at: row.get(3)?,
        credential_name: row.get(4)?,
        auth_method: row.get(5)?,
        raw_body: row.get(6)?,
        body_sha256: row.get(7)?,
        prev_hash: row.get(8)?,
        entry_hash: row.get(9)?,
        totals: [0; 6],
    })
}
