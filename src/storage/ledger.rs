//! Reading the chain: its head, a task's entries (for evidence), and runs of
//! entries with their result rows and tree hashes (for verification).

use rusqlite::{params, Connection, OptionalExtension};

use super::StorageError;
use crate::domain::chain::Head;
use crate::domain::Timestamp;
use tlog_tiles::Hash;

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

/// Entry `id`'s id, hash and time, when it exists.
pub fn entry_head(conn: &Connection, id: i64) -> Result<Option<Head>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT id, entry_hash, received_at FROM uploads WHERE id = ?1",
            [id],
            |r| {
                Ok(Head {
                    id: r.get(0)?,
                    hash: r.get(1)?,
                    received_at: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// One upload as stored, with everything verification recomputes.
pub struct StoredEntry {
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
    /// The raw body (empty once purged).
    pub raw_body: Vec<u8>,
    /// SHA-256 of the raw body.
    pub body_sha256: String,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub entry_hash: String,
    /// When retention emptied `raw_body`.
    pub purged_at: Option<Timestamp>,
}

/// What the task summaries count: uploads, and the highest upload id.
pub struct SummaryTotals {
    /// Uploads counted.
    pub uploads: i64,
    /// The newest upload counted.
    pub last_upload_id: i64,
}

/// Where a text or blob value of a [`ScannedBatch`] lies in its `bytes`.
pub type Span = std::ops::Range<usize>;

/// An entry as a verification reads it: numbers inline, text and blobs as spans
/// of the batch's bytes (one buffer per batch instead of a dozen per entry).
pub struct ScannedEntry {
    /// Its id.
    pub id: i64,
    /// When it arrived.
    pub received_at: Timestamp,
    /// result_count, total, different, target_miss, target_more, finished_time (-1: none).
    pub totals: [i64; 6],
    /// The `X-Request-Id`, in the batch's bytes.
    pub request_id: Span,
    /// The task id, in the batch's bytes.
    pub task_id: Span,
    /// The credential's name, in the batch's bytes.
    pub credential_name: Span,
    /// The auth method, in the batch's bytes.
    pub auth_method: Span,
    /// The raw body, in the batch's bytes.
    pub raw_body: Span,
    /// The body's SHA-256, in the batch's bytes.
    pub body_sha256: Span,
    /// The previous hash, in the batch's bytes.
    pub prev_hash: Span,
    /// This entry's hash, in the batch's bytes.
    pub entry_hash: Span,
    /// Its rows in the batch's `results`.
    pub results: std::ops::Range<usize>,
    /// Its body and result rows were purged (retention).
    pub purged: bool,
}

/// A stored result row as a verification reads it.
pub struct ScannedResult {
    /// Its place in the upload, from 0.
    pub ordinal: i64,
    /// The directory, in the batch's bytes.
    pub dir_check: Span,
    /// Total, different, missing and extra files.
    pub counts: [i64; 4],
}

/// A run of consecutive entries, their result rows and the stored tree hashes
/// they made.
#[derive(Default)]
pub struct ScannedBatch {
    /// Every text of the batch, back to back (the spans point into it).
    pub bytes: Vec<u8>,
    /// The entries, by id.
    pub entries: Vec<ScannedEntry>,
    /// Their result rows, by upload and ordinal.
    pub results: Vec<ScannedResult>,
    /// The stored hashes the batch's leaves made, as `(idx, hash)`; a hash that
    /// is not 32 bytes is `None`. Empty when the tree is not compared.
    pub tree: Vec<(u64, Option<[u8; 32]>)>,
}

impl ScannedBatch {
    /// The bytes a span points at.
    pub fn get(&self, span: &Span) -> &[u8] {
        &self.bytes[span.clone()]
    }

    /// Copies a text or blob column into `bytes`.
    fn push(&mut self, row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Span> {
        let value = row.get_ref(column)?;
        let bytes = value.as_bytes().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(column, value.data_type(), Box::new(e))
        })?;
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        Ok(start..self.bytes.len())
    }
}

/// What verification compares the chain with, read in the snapshot it checks.
pub struct ScanStart {
    /// Every stored checkpoint's size and root, largest first.
    pub checkpoint_roots: Vec<(u64, Hash)>,
    /// Leaves the stored tree covers (0 before the tree was built).
    pub tree_size: u64,
    /// The last entry's id (0: an empty ledger).
    pub last_id: i64,
    /// The task summaries' totals where the scan starts.
    pub totals: SummaryTotals,
    /// The database has the `purged_at` column (a database from before retention
    /// does not).
    pub purge_column: bool,
    /// The highest upload id a recorded purge covered (0: none).
    pub purged_up_to: i64,
}

/// Reads what a verification starts from. Call inside a read transaction that
/// stays open while the entries are read, so all of it is one snapshot.
pub fn scan_start(conn: &Connection) -> Result<ScanStart, StorageError> {
    let tree_size = if super::has_table(conn, "tree_hashes")? {
        super::tree::size(conn)?
    } else {
        0
    };
    let checkpoint_roots = if super::has_table(conn, "checkpoints")? {
        super::checkpoints::list(conn, u32::MAX, None)?
            .into_iter()
            .map(|c| {
                let root = Hash::parse_hash(&c.root_hash).unwrap_or_default();
                (c.tree_size, root)
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(ScanStart {
        checkpoint_roots,
        tree_size,
        last_id: last_id(conn)?,
        totals: summary_totals(conn)?,
        purge_column: super::has_table(conn, "admin_log")?,
        purged_up_to: super::retention::purged_up_to(conn)?,
    })
}

/// The highest upload id (0: none).
pub fn last_id(conn: &Connection) -> Result<i64, StorageError> {
    Ok(conn.query_row("SELECT coalesce(max(id), 0) FROM uploads", [], |r| r.get(0))?)
}

fn summary_totals(conn: &Connection) -> Result<SummaryTotals, StorageError> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(upload_count), 0), coalesce(max(last_upload_id), 0) FROM tasks",
        [],
        |r| {
            Ok(SummaryTotals {
                uploads: r.get(0)?,
                last_upload_id: r.get(1)?,
            })
        },
    )?)
}

/// Reads the entries with ids in `first..=last` (in id order), their result rows
/// and, with `tree`, the stored tree hashes that leaves `first - 1 ..= last - 1`
/// made. Each table is read as one range of its primary key.
pub fn read_batch(
    conn: &Connection,
    first: i64,
    last: i64,
    tree: bool,
    purge_column: bool,
) -> Result<ScannedBatch, StorageError> {
    let count = (last - first + 1).max(0) as usize;
    let mut batch = ScannedBatch {
        bytes: Vec::with_capacity(count * 1024),
        entries: Vec::with_capacity(count),
        results: Vec::with_capacity(count * 4),
        tree: Vec::new(),
    };
    let mut uploads = conn.prepare_cached(if purge_column {
        "SELECT id, request_id, task_id, received_at, credential_name, auth_method,
                raw_body, body_sha256, prev_hash, entry_hash, result_count, total_files,
                different_files, target_miss_files, target_more_files, finished_time,
                purged_at IS NOT NULL
         FROM uploads WHERE id BETWEEN ?1 AND ?2 ORDER BY id"
    } else {
        "SELECT id, request_id, task_id, received_at, credential_name, auth_method,
                raw_body, body_sha256, prev_hash, entry_hash, result_count, total_files,
                different_files, target_miss_files, target_more_files, finished_time, 0
         FROM uploads WHERE id BETWEEN ?1 AND ?2 ORDER BY id"
    })?;
    let mut results_stmt = conn.prepare_cached(
        "SELECT upload_id, ordinal, dir_check, num_total_files, num_different_files,
                num_target_miss_files, num_target_more_files
         FROM upload_results WHERE upload_id BETWEEN ?1 AND ?2 ORDER BY upload_id, ordinal",
    )?;
    let mut results = results_stmt.query(params![first, last])?;
    let mut result_ahead = results.next()?;
    let mut rows = uploads.query(params![first, last])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let first_result = batch.results.len();
        // Rows of ids before this one belong to missing entries, which
        // verification reports as a gap.
        while let Some(r) = result_ahead {
            let upload_id: i64 = r.get(0)?;
            if upload_id > id {
                break;
            }
            if upload_id == id {
                let dir_check = batch.push(r, 2)?;
                batch.results.push(ScannedResult {
                    ordinal: r.get(1)?,
                    dir_check,
                    counts: [r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
                });
            }
            result_ahead = results.next()?;
        }
        let entry = scanned_entry(&mut batch, row, first_result)?;
        batch.entries.push(entry);
    }
    if tree && count > 0 {
        read_tree(conn, first, last, &mut batch)?;
    }
    Ok(batch)
}

/// An entry from its `uploads` row (columns as `read_batch` selects them), its
/// text kept in the batch's bytes; its result rows are those from `first_result` on.
fn scanned_entry(
    batch: &mut ScannedBatch,
    row: &rusqlite::Row<'_>,
    first_result: usize,
) -> rusqlite::Result<ScannedEntry> {
    Ok(ScannedEntry {
        id: row.get(0)?,
        received_at: row.get(3)?,
        totals: [
            row.get(10)?,
            row.get(11)?,
            row.get(12)?,
            row.get(13)?,
            row.get(14)?,
            row.get::<_, Option<i64>>(15)?.unwrap_or(-1),
        ],
        request_id: batch.push(row, 1)?,
        task_id: batch.push(row, 2)?,
        credential_name: batch.push(row, 4)?,
        auth_method: batch.push(row, 5)?,
        raw_body: batch.push(row, 6)?,
        body_sha256: batch.push(row, 7)?,
        prev_hash: batch.push(row, 8)?,
        entry_hash: batch.push(row, 9)?,
        results: first_result..batch.results.len(),
        purged: row.get(16)?,
    })
}

/// The stored tree hashes that leaves `first - 1 ..= last - 1` made.
fn read_tree(
    conn: &Connection,
    first: i64,
    last: i64,
    batch: &mut ScannedBatch,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT idx, hash FROM tree_hashes WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
    )?;
    let from = tlog_tiles::stored_hash_count(first as u64 - 1);
    let until = tlog_tiles::stored_hash_count(last as u64);
    let mut rows = stmt.query(params![from as i64, until as i64])?;
    while let Some(r) = rows.next()? {
        let hash = r.get_ref(1)?.as_blob().ok().and_then(|b| b.try_into().ok());
        batch.tree.push((r.get::<_, i64>(0)? as u64, hash));
    }
    Ok(())
}

/// A task's entries with ids up to `max_id`, received in `[since, until)`, in id
/// order (by the task index).
/// The bytes of raw bodies [`task_entries`] would read.
pub fn task_body_bytes(
    conn: &Connection,
    task_id: &str,
    max_id: i64,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<u64, StorageError> {
    let bytes: i64 = conn.query_row(
        "SELECT coalesce(sum(length(raw_body)), 0) FROM uploads
         WHERE task_id = ?1 AND id <= ?2 AND (?3 IS NULL OR received_at >= ?3)
           AND (?4 IS NULL OR received_at < ?4)",
        params![task_id, max_id, since, until],
        |r| r.get(0),
    )?;
    Ok(bytes.max(0) as u64)
}

/// A task's entries, by id.
pub fn task_entries(
    conn: &Connection,
    task_id: &str,
    max_id: i64,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<Vec<StoredEntry>, StorageError> {
    let mut stmt = conn.prepare(
        "SELECT id, request_id, task_id, received_at, credential_name, auth_method,
                raw_body, body_sha256, prev_hash, entry_hash, purged_at
         FROM uploads
         WHERE task_id = ?1 AND id <= ?2 AND (?3 IS NULL OR received_at >= ?3)
           AND (?4 IS NULL OR received_at < ?4)
         ORDER BY id",
    )?;
    let rows = stmt.query_map(params![task_id, max_id, since, until], entry_fields)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The ledger fields of an entry from a row whose first eleven columns are `id,
/// request_id, task_id, received_at, credential_name, auth_method, raw_body,
/// body_sha256, prev_hash, entry_hash, purged_at`.
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
        purged_at: row.get(10)?,
    })
}
