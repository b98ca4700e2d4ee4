//! The witnesses the service asks to cosign its checkpoints, and their
//! cosignatures (each verified before it is stored).

use rusqlite::{params, Connection, OptionalExtension};

use super::StorageError;
use crate::domain::Timestamp;

/// A witness as the service keeps it.
#[derive(Debug, Clone)]
pub struct WitnessRow {
    /// Its row id.
    pub id: i64,
    /// Its cosignature/v1 verifier key.
    pub vkey: String,
    /// Its submission prefix.
    pub url: String,
    /// The latest size it cosigned.
    pub cosigned_size: Option<u64>,
    /// When.
    pub cosigned_at: Option<Timestamp>,
    /// The latest failure, if it failed since.
    pub last_error: Option<String>,
    /// When.
    pub last_error_at: Option<Timestamp>,
    /// It refused a checkpoint as inconsistent (and has not cosigned since).
    pub refused_inconsistent: bool,
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WitnessRow> {
    Ok(WitnessRow {
        id: r.get(0)?,
        vkey: r.get(1)?,
        url: r.get(2)?,
        cosigned_size: r.get::<_, Option<i64>>(3)?.map(|s| s as u64),
        cosigned_at: r.get(4)?,
        last_error: r.get(5)?,
        last_error_at: r.get(6)?,
        refused_inconsistent: r.get(7)?,
    })
}

const COLUMNS: &str =
    "id, vkey, url, cosigned_size, cosigned_at, last_error, last_error_at, refused_inconsistent";

/// Registers a configured witness (by its key), or updates its URL.
pub fn ensure(conn: &Connection, vkey: &str, url: &str) -> Result<i64, rusqlite::Error> {
    conn.execute(
        "INSERT INTO witnesses (vkey, url) VALUES (?1, ?2)
         ON CONFLICT (vkey) DO UPDATE SET url = excluded.url",
        params![vkey, url],
    )?;
    conn.query_row("SELECT id FROM witnesses WHERE vkey = ?1", [vkey], |r| {
        r.get(0)
    })
}

/// The witnesses with these keys, in that order (those not registered left out).
pub fn by_vkeys(conn: &Connection, vkeys: &[String]) -> Result<Vec<WitnessRow>, StorageError> {
    let mut found = Vec::new();
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM witnesses WHERE vkey = ?1"))?;
    for vkey in vkeys {
        if let Some(row) = stmt.query_row([vkey], from_row).optional()? {
            found.push(row);
        }
    }
    Ok(found)
}

/// Stores a verified cosignature and moves the witness to that size.
pub fn record_cosignature(
    conn: &Connection,
    witness_id: i64,
    tree_size: u64,
    signed_at: u64,
    line: &str,
    at: Timestamp,
) -> Result<(), rusqlite::Error> {
    conn.execute(
        "INSERT OR REPLACE INTO cosignatures (tree_size, witness_id, signed_at, line, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![tree_size as i64, witness_id, signed_at as i64, line, at],
    )?;
    conn.execute(
        "UPDATE witnesses SET cosigned_size = max(coalesce(cosigned_size, 0), ?2), cosigned_at = ?3,
             last_error = NULL, last_error_at = NULL, refused_inconsistent = 0
         WHERE id = ?1",
        params![witness_id, tree_size as i64, at],
    )?;
    Ok(())
}

/// Records a failure; `inconsistent` when the witness refused the checkpoint as
/// not extending what it cosigned before.
pub fn record_failure(
    conn: &Connection,
    witness_id: i64,
    error: &str,
    inconsistent: bool,
    at: Timestamp,
) -> Result<(), rusqlite::Error> {
    conn.execute(
        "UPDATE witnesses SET last_error = ?2, last_error_at = ?3,
             refused_inconsistent = refused_inconsistent OR ?4
         WHERE id = ?1",
        params![witness_id, error, at, inconsistent],
    )?;
    Ok(())
}

/// A checkpoint's cosignature as the API lists it.
#[derive(Debug, Clone)]
pub struct CosignatureRow {
    /// The witness's verifier key.
    pub vkey: String,
    /// The cosignature's timestamp (POSIX seconds).
    pub signed_at: u64,
    /// Its signature line.
    pub line: String,
}

/// The cosignatures of the checkpoint of `tree_size` from these witnesses.
pub fn cosignatures(
    conn: &Connection,
    tree_size: u64,
) -> Result<Vec<CosignatureRow>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT w.vkey, c.signed_at, c.line FROM cosignatures c JOIN witnesses w ON w.id = c.witness_id
         WHERE c.tree_size = ?1 ORDER BY w.id",
    )?;
    let rows = stmt.query_map([tree_size as i64], |r| {
        Ok(CosignatureRow {
            vkey: r.get(0)?,
            signed_at: r.get::<_, i64>(1)? as u64,
            line: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The largest checkpoint that at least `quorum` of these witnesses cosigned.
pub fn latest_witnessed(
    conn: &Connection,
    vkeys: &[String],
    quorum: usize,
) -> Result<Option<u64>, StorageError> {
    let ids: Vec<i64> = by_vkeys(conn, vkeys)?.iter().map(|w| w.id).collect();
    if ids.is_empty() || quorum == 0 {
        return Ok(None);
    }
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let size: Option<i64> = conn
        .query_row(
            &format!(
                "SELECT tree_size FROM cosignatures WHERE witness_id IN ({list})
                 GROUP BY tree_size HAVING count(*) >= ?1 ORDER BY tree_size DESC LIMIT 1"
            ),
            [quorum as i64],
            |r| r.get(0),
        )
        .optional()?;
    Ok(size.map(|s| s as u64))
}

/// The witnesses whose latest refusal was of a checkpoint as inconsistent.
pub fn refused(conn: &Connection) -> Result<Vec<WitnessRow>, StorageError> {
    if !super::has_table(conn, "witnesses")? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM witnesses WHERE refused_inconsistent AND last_error_at IS NOT NULL"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
