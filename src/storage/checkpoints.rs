//! Signed checkpoints of the Merkle tree, as made (the key is never stored here).

use rusqlite::{params, Connection, OptionalExtension};

use super::StorageError;
use crate::domain::Timestamp;

/// A checkpoint as the API shows it.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    /// How many uploads it covers.
    pub tree_size: u64,
    /// Standard base64.
    pub root_hash: String,
    /// When it was signed.
    pub time: Timestamp,
    /// The signed note, as served at `/api/v1/checkpoints/latest`.
    pub note: String,
}

/// Stores a checkpoint (once per tree size).
pub fn insert(
    conn: &Connection,
    tree_size: u64,
    root_hash: &[u8; 32],
    made_at: Timestamp,
    note: &str,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO checkpoints (tree_size, root_hash, made_at, note)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![tree_size as i64, &root_hash[..], made_at, note])?;
    Ok(())
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCheckpoint> {
    let root: Vec<u8> = r.get(1)?;
    Ok(StoredCheckpoint {
        tree_size: r.get::<_, i64>(0)? as u64,
        root_hash: root
            .try_into()
            .map(|h: [u8; 32]| tlog_tiles::Hash(h).to_string())
            .unwrap_or_default(),
        time: r.get(2)?,
        note: r.get(3)?,
    })
}

/// The newest checkpoint, if any.
pub fn latest(conn: &Connection) -> Result<Option<StoredCheckpoint>, StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT tree_size, root_hash, made_at, note FROM checkpoints
             ORDER BY tree_size DESC LIMIT 1",
        )?
        .query_row([], from_row)
        .optional()?)
}

/// The newest checkpoints of trees smaller than `before`, at most `limit`.
pub fn list(
    conn: &Connection,
    limit: u32,
    before: Option<u64>,
) -> Result<Vec<StoredCheckpoint>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT tree_size, root_hash, made_at, note FROM checkpoints
         WHERE tree_size < ?1 ORDER BY tree_size DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        // Beyond i64 every checkpoint is below: clamp rather than wrap negative.
        params![
            before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            limit
        ],
        from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The size of the first checkpoint that covers upload `id`, if any does yet.
pub fn covering(conn: &Connection, id: i64) -> Result<Option<u64>, StorageError> {
    let size: Option<i64> = conn
        .prepare_cached("SELECT min(tree_size) FROM checkpoints WHERE tree_size >= ?1")?
        .query_row(params![id], |r| r.get(0))?;
    Ok(size.map(|s| s as u64))
}

/// The checkpoint of exactly `tree_size` uploads, if one was made.
pub fn at(conn: &Connection, tree_size: u64) -> Result<Option<StoredCheckpoint>, StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT tree_size, root_hash, made_at, note FROM checkpoints WHERE tree_size = ?1",
        )?
        .query_row([tree_size as i64], from_row)
        .optional()?)
}
