//! The `verifications` table: every run of the chain check (`verify`, the API,
//! the scheduled check), what it found, and the newest runs.

use rusqlite::{params, Connection, OptionalExtension};

use super::StorageError;
use crate::domain::chain::Verification;
use crate::domain::{now_ms, Timestamp};

/// A verification run as the audit page shows it.
#[derive(Debug, Clone)]
pub struct VerificationRecord {
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Timestamp,
    /// Who asked for it (`cli`, `api:<credential>`, `schedule`, …).
    pub requested_by: String,
    /// How many entries it checked.
    pub entries: i64,
    /// The head it checked up to.
    pub head_id: i64,
    /// That head's hash.
    pub head_hash: String,
    /// The first entry that did not check out, if any.
    pub first_bad_id: Option<i64>,
    /// What was wrong with it.
    pub problem: Option<String>,
    /// Set for `verify --since-checkpoint`: the checkpoint it started after.
    pub since_checkpoint: Option<i64>,
}

/// Records a finished run.
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
    /// When it finished.
    pub finished_at: Timestamp,
    /// The first entry that did not check out, if any.
    pub first_bad_id: Option<i64>,
    /// The newest checkpoint it recomputed.
    pub checkpoint_verified: Option<u64>,
}

/// The newest run that checked the whole chain, if any.
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

/// The newest run, full or since a checkpoint, if any.
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
