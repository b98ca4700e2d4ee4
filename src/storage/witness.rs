//! The witness's own database (`witness serve --db`): per log, the latest
//! checkpoint it cosigned, and the checkpoints it refused. Its schema is its
//! own (`witness-migrations/`), apart from the service's.

use std::path::Path;

use base64::prelude::{Engine, BASE64_STANDARD};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tlog_tiles::Hash;

use super::{create_owner_only, open_write, StorageError, SyncMode};
use crate::domain::witness::Witnessed;
use crate::domain::Timestamp;

mod embedded {
    refinery::embed_migrations!("witness-migrations");
}

/// The refusals kept; older ones are deleted as new ones come.
const KEEP_REFUSALS: i64 = 10_000;

/// Opens (creating it owner-only if need be) and migrates a witness database.
pub fn prepare(path: &Path) -> Result<Connection, StorageError> {
    create_owner_only(path)?;
    let mut conn = open_write(path, SyncMode::Full)?;
    embedded::migrations::runner().run(&mut conn)?;
    Ok(conn)
}

fn decode_root(text: &str) -> Hash {
    let bytes = BASE64_STANDARD.decode(text).unwrap_or_default();
    Hash(bytes.try_into().unwrap_or([0; 32]))
}

/// The latest checkpoint cosigned for `origin`, read inside the transaction that
/// will replace it.
pub fn latest(tx: &Transaction, origin: &str) -> Result<Option<Witnessed>, StorageError> {
    let row = tx
        .query_row(
            "SELECT size, root FROM witnessed_logs WHERE origin = ?1",
            [origin],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()?;
    Ok(row.map(|(size, root)| Witnessed {
        size: size as u64,
        root: decode_root(&root),
    }))
}

/// Records `checkpoint` (with this witness's cosignature) as the latest for its log.
pub fn advance(
    tx: &Transaction,
    origin: &str,
    witnessed: Witnessed,
    checkpoint: &str,
    at: Timestamp,
) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO witnessed_logs (origin, size, root, checkpoint, cosigned_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root,
             checkpoint = excluded.checkpoint, cosigned_at = excluded.cosigned_at",
        params![
            origin,
            witnessed.size as i64,
            BASE64_STANDARD.encode(witnessed.root.0),
            checkpoint,
            at
        ],
    )?;
    Ok(())
}

/// Keeps a refused checkpoint whose log signature verified.
pub fn record_refusal(
    conn: &Connection,
    origin: &str,
    status: u16,
    reason: &str,
    checkpoint: &str,
    at: Timestamp,
) -> Result<(), StorageError> {
    conn.execute(
        "INSERT INTO witness_refusals (at, origin, status, reason, checkpoint) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at, origin, status, reason, checkpoint],
    )?;
    conn.execute(
        "DELETE FROM witness_refusals WHERE id <= (SELECT max(id) FROM witness_refusals) - ?1",
        [KEEP_REFUSALS],
    )?;
    Ok(())
}

/// A log as `witness status` lists it.
pub struct WitnessedLog {
    /// Its origin.
    pub origin: String,
    /// The size last cosigned.
    pub size: u64,
    /// When.
    pub cosigned_at: Timestamp,
    /// Checkpoints refused since the witness began.
    pub refusals: i64,
}

/// Every log the witness cosigned, by origin.
pub fn logs(conn: &Connection) -> Result<Vec<WitnessedLog>, StorageError> {
    let mut statement = conn.prepare(
        "SELECT origin, size, cosigned_at,
                (SELECT count(*) FROM witness_refusals r WHERE r.origin = w.origin)
         FROM witnessed_logs w ORDER BY origin",
    )?;
    let rows = statement.query_map([], |r| {
        Ok(WitnessedLog {
            origin: r.get(0)?,
            size: r.get::<_, i64>(1)? as u64,
            cosigned_at: r.get(2)?,
            refusals: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The latest cosigned checkpoint of the log whose origin hashes to `origin_hash`
/// (lower-case hex SHA-256), for the monitoring read.
pub fn checkpoint_by_origin_hash(
    conn: &Connection,
    origin_hash: &str,
) -> Result<Option<String>, StorageError> {
    use sha2::Digest;
    let mut statement = conn.prepare_cached("SELECT origin, checkpoint FROM witnessed_logs")?;
    let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (origin, checkpoint) = row?;
        if hex::encode(sha2::Sha256::digest(origin.as_bytes())) == origin_hash {
            return Ok(Some(checkpoint));
        }
    }
    Ok(None)
}
