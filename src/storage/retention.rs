//! Retention: emptying old uploads' raw bodies and deleting their result rows
//! (their ledger entries stay), the admin log that records it, and handing free
//! pages back to the file system. Each write here is one step of a purge, run in
//! a transaction its caller owns and sized to keep that transaction short.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::uploads::first_id_at_or_after;
use super::StorageError;
use crate::domain::Timestamp;

/// The last upload received before `before` (0: none).
pub fn last_id_before(conn: &Connection, before: Timestamp) -> Result<i64, StorageError> {
    Ok(first_id_at_or_after(conn, before)? - 1)
}

/// What a purge of the uploads with ids up to some id would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Candidates {
    /// Uploads it would purge.
    pub uploads: u64,
    /// Their result rows and raw-body bytes.
    pub result_rows: u64,
    /// Raw-body bytes they hold.
    pub bytes: u64,
    /// Uploads it leaves because a delivery of theirs is pending.
    pub kept_pending: u64,
    /// Uploads purged before.
    pub already_purged: u64,
}

const PENDING: &str =
    "EXISTS (SELECT 1 FROM deliveries d WHERE d.upload_id = u.id AND d.state = 'pending')";

/// What purging every upload up to `up_to_id` would remove.
pub fn candidates(conn: &Connection, up_to_id: i64) -> Result<Candidates, StorageError> {
    let sql = format!(
        "SELECT
           coalesce(sum(u.purged_at IS NULL AND NOT {PENDING}), 0),
           coalesce(sum(CASE WHEN u.purged_at IS NULL AND NOT {PENDING} THEN u.result_count END), 0),
           coalesce(sum(CASE WHEN u.purged_at IS NULL AND NOT {PENDING} THEN length(u.raw_body) END), 0),
           coalesce(sum(u.purged_at IS NULL AND {PENDING}), 0),
           coalesce(sum(u.purged_at IS NOT NULL), 0)
         FROM uploads u WHERE u.id <= ?1"
    );
    Ok(conn.query_row(&sql, [up_to_id], |r| {
        Ok(Candidates {
            uploads: r.get::<_, i64>(0)? as u64,
            result_rows: r.get::<_, i64>(1)? as u64,
            bytes: r.get::<_, i64>(2)? as u64,
            kept_pending: r.get::<_, i64>(3)? as u64,
            already_purged: r.get::<_, i64>(4)? as u64,
        })
    })?)
}

/// What a purge (or one step of it) purged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Uploads whose body and result rows were purged.
    pub uploads: u64,
    /// Result rows deleted.
    pub result_rows: u64,
    /// Raw-body bytes freed.
    pub bytes: u64,
}

impl std::ops::AddAssign for Purged {
    fn add_assign(&mut self, o: Self) {
        self.uploads += o.uploads;
        self.result_rows += o.result_rows;
        self.bytes += o.bytes;
    }
}

/// Purges the uploads with ids in `(after, up_to]` that are not purged yet and
/// have no pending delivery: body emptied, `purged_at = now`, result rows
/// deleted. Run inside the caller's transaction.
pub fn purge_range(
    conn: &Connection,
    after: i64,
    up_to: i64,
    now: Timestamp,
) -> Result<Purged, rusqlite::Error> {
    let chosen = format!("u.id > ?1 AND u.id <= ?2 AND u.purged_at IS NULL AND NOT {PENDING}");
    let bytes: i64 = conn.query_row(
        &format!("SELECT coalesce(sum(length(u.raw_body)), 0) FROM uploads u WHERE {chosen}"),
        params![after, up_to],
        |r| r.get(0),
    )?;
    let uploads = conn.execute(
        &format!("UPDATE uploads AS u SET raw_body = X'', purged_at = ?3 WHERE {chosen}"),
        params![after, up_to, now],
    )?;
    let result_rows = conn.execute(
        "DELETE FROM upload_results WHERE upload_id > ?1 AND upload_id <= ?2
           AND upload_id IN (SELECT id FROM uploads WHERE id > ?1 AND id <= ?2 AND purged_at = ?3)",
        params![after, up_to, now],
    )?;
    Ok(Purged {
        uploads: uploads as u64,
        result_rows: result_rows as u64,
        bytes: bytes as u64,
    })
}

/// The highest upload id any recorded purge covered (0: none): a purged entry
/// above it was not purged by sms-audit.
pub fn purged_up_to(conn: &Connection) -> Result<i64, StorageError> {
    if !super::has_table(conn, "admin_log")? {
        return Ok(0);
    }
    Ok(conn.query_row(
        "SELECT coalesce(max(up_to_id), 0) FROM admin_log WHERE action = 'purge'",
        [],
        |r| r.get(0),
    )?)
}

/// An administrative action, as recorded.
#[derive(Debug, Clone)]
pub struct AdminEntry {
    /// The entry's id.
    pub id: i64,
    /// When the action started.
    pub started_at: Timestamp,
    /// Who started it.
    pub actor: String,
    /// What it was (`purge`, …).
    pub action: String,
    /// Uploads received before this were its candidates.
    pub before_time: Option<Timestamp>,
    /// The newest upload it covered.
    pub up_to_id: Option<i64>,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// How it ended.
    pub outcome: Option<String>,
    /// Uploads it purged.
    pub uploads: Option<i64>,
    /// Result rows it deleted.
    pub result_rows: Option<i64>,
    /// Bytes it freed.
    pub bytes: Option<i64>,
    /// Uploads kept because a delivery of them was pending.
    pub kept_pending: Option<i64>,
    /// Anything else worth knowing.
    pub detail: Option<String>,
}

/// A new action's row; its outcome comes with [`finish`].
pub struct NewAdminEntry<'a> {
    /// When the action starts.
    pub started_at: Timestamp,
    /// Who starts it.
    pub actor: &'a str,
    /// What it is.
    pub action: &'a str,
    /// Uploads received before this are its candidates.
    pub before_time: Option<Timestamp>,
    /// The newest upload it covers.
    pub up_to_id: Option<i64>,
    /// Anything else worth knowing.
    pub detail: Option<&'a str>,
}

/// Records an action's start; returns its id.
pub fn start(conn: &Connection, e: &NewAdminEntry<'_>) -> Result<i64, rusqlite::Error> {
    conn.execute(
        "INSERT INTO admin_log (started_at, actor, action, before_time, up_to_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            e.started_at,
            e.actor,
            e.action,
            e.before_time,
            e.up_to_id,
            e.detail
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Records how an action ended (once; the log refuses a second outcome).
pub fn finish(
    conn: &Connection,
    id: i64,
    finished_at: Timestamp,
    outcome: &str,
    purged: Option<Purged>,
    kept_pending: Option<u64>,
) -> Result<(), rusqlite::Error> {
    conn.execute(
        "UPDATE admin_log SET finished_at = ?2, outcome = ?3, uploads = ?4, result_rows = ?5,
                bytes = ?6, kept_pending = ?7
         WHERE id = ?1",
        params![
            id,
            finished_at,
            outcome,
            purged.map(|p| p.uploads as i64),
            purged.map(|p| p.result_rows as i64),
            purged.map(|p| p.bytes as i64),
            kept_pending.map(|k| k as i64)
        ],
    )?;
    Ok(())
}

/// Records an action that is over (a backup, a restore) in one go.
pub fn record(
    conn: &Connection,
    e: &NewAdminEntry<'_>,
    finished_at: Timestamp,
    outcome: &str,
) -> Result<i64, rusqlite::Error> {
    let id = start(conn, e)?;
    finish(conn, id, finished_at, outcome, None, None)?;
    Ok(id)
}

/// Purges left unfinished (the process ended during one) are marked so.
pub fn mark_interrupted(conn: &Connection, now: Timestamp) -> Result<usize, rusqlite::Error> {
    conn.execute(
        "UPDATE admin_log SET finished_at = ?1, outcome = 'interrupted'
         WHERE finished_at IS NULL AND action = 'purge'",
        [now],
    )
}

/// Uploads purged by all recorded purges together.
pub fn purged_total(conn: &Connection) -> Result<i64, StorageError> {
    if !super::has_table(conn, "admin_log")? {
        return Ok(0);
    }
    Ok(conn.query_row(
        "SELECT coalesce(sum(uploads), 0) FROM admin_log WHERE action = 'purge'",
        [],
        |r| r.get(0),
    )?)
}

/// The newest actions first.
pub fn recent(conn: &Connection, limit: u32) -> Result<Vec<AdminEntry>, StorageError> {
    if !super::has_table(conn, "admin_log")? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ADMIN_COLUMNS} FROM admin_log ORDER BY id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit], admin_entry)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The latest finished action of a kind (`backup`, `purge`).
pub fn last_done(conn: &Connection, action: &str) -> Result<Option<AdminEntry>, StorageError> {
    if !super::has_table(conn, "admin_log")? {
        return Ok(None);
    }
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ADMIN_COLUMNS} FROM admin_log WHERE action = ?1 AND outcome = 'done'
             ORDER BY id DESC LIMIT 1"
        ))?
        .query_row([action], admin_entry)
        .optional()?)
}

const ADMIN_COLUMNS: &str = "id, started_at, actor, action, before_time, up_to_id, finished_at,
    outcome, uploads, result_rows, bytes, kept_pending, detail";

/// An admin log row selected as [`ADMIN_COLUMNS`].
fn admin_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<AdminEntry> {
    Ok(AdminEntry {
        id: r.get(0)?,
        started_at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        before_time: r.get(4)?,
        up_to_id: r.get(5)?,
        finished_at: r.get(6)?,
        outcome: r.get(7)?,
        uploads: r.get(8)?,
        result_rows: r.get(9)?,
        bytes: r.get(10)?,
        kept_pending: r.get(11)?,
        detail: r.get(12)?,
    })
}

/// Returns up to `pages` free pages to the file system (in an
/// incremental-vacuum database; elsewhere nothing); how many it returned.
pub fn vacuum_step(conn: &Connection, pages: u32) -> Result<u64, rusqlite::Error> {
    let before: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    // A pragma that returns rows for each page freed: step through them.
    let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    drop(rows);
    let after: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    Ok((before - after).max(0) as u64)
}

/// How much disk the database takes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiskUse {
    /// The database file, its WAL (both in bytes).
    pub database_bytes: u64,
    /// Bytes in the write-ahead log.
    pub wal_bytes: u64,
    /// The database's page size.
    pub page_size: u64,
    /// Pages in the database, and of those the free ones.
    pub pages: u64,
    /// Pages free inside the file.
    pub free_pages: u64,
    /// Free pages go back to the file system after a purge (a database created
    /// by a version with retention); otherwise new uploads reuse them.
    pub incremental_vacuum: bool,
}

/// Whether freed pages can be handed back a step at a time.
pub fn incremental_vacuum(conn: &Connection) -> Result<bool, StorageError> {
    Ok(conn.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0))? == 2)
}

/// How much room the database at `path` takes.
pub fn disk_use(conn: &Connection, path: &std::path::Path) -> Result<DiskUse, StorageError> {
    let pragma = |name: &str| -> Result<i64, StorageError> {
        Ok(conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?)
    };
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    Ok(DiskUse {
        database_bytes: size(path.to_path_buf()),
        wal_bytes: size(std::path::PathBuf::from(format!("{}-wal", path.display()))),
        page_size: pragma("page_size")? as u64,
        pages: pragma("page_count")? as u64,
        free_pages: pragma("freelist_count")? as u64,
        incremental_vacuum: incremental_vacuum(conn)?,
    })
}

/// Whether the upload's body and results were purged, and when.
pub fn purged_at(conn: &Connection, upload_id: i64) -> Result<Option<Timestamp>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT purged_at FROM uploads WHERE id = ?1",
            [upload_id],
            |r| r.get::<_, Option<Timestamp>>(0),
        )
        .optional()?
        .flatten())
}
