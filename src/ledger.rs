//! The hash chain over uploads (spec section 5) and its verification.
//!
//! Canonical encoding of an entry: for each of the eight fields below, in this order,
//! the field's UTF-8 length as an 8-byte big-endian unsigned integer followed by its
//! bytes. `entry_hash` is the lower-case hex SHA-256 of that encoding.
//!
//! 1. `id` in decimal ASCII, 2. `request_id` (lower-case hyphenated UUID),
//! 3. `task_id`, 4. `received_at` as RFC 3339 UTC with milliseconds (`…T20:31:35.123Z`),
//! 5. credential name, 6. auth method (`token` or `aksk`),
//! 7. body SHA-256 (64 lower-case hex), 8. `prev_hash` (64 lower-case hex; the first
//!    entry's is 64 zeros).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::{format_timestamp, Timestamp, UploadBody};
use crate::signing::sha256_hex;
use crate::storage::StorageError;

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields an entry hash covers.
pub struct EntryFields<'a> {
    pub id: i64,
    pub request_id: &'a str,
    pub task_id: &'a str,
    pub received_at: Timestamp,
    pub credential_name: &'a str,
    pub auth_method: &'a str,
    pub body_sha256: &'a str,
    pub prev_hash: &'a str,
}

impl EntryFields<'_> {
    pub fn canonical_encoding(&self) -> Vec<u8> {
        let id = self.id.to_string();
        let received_at = format_timestamp(self.received_at);
        let fields: [&str; 8] = [
            &id,
            self.request_id,
            self.task_id,
            &received_at,
            self.credential_name,
            self.auth_method,
            self.body_sha256,
            self.prev_hash,
        ];
        let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 8).sum());
        for f in fields {
            out.extend_from_slice(&(f.len() as u64).to_be_bytes());
            out.extend_from_slice(f.as_bytes());
        }
        out
    }

    pub fn entry_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_encoding()))
    }
}

/// The last entry of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    pub id: i64,
    pub hash: String,
    pub received_at: Timestamp,
}

impl Head {
    pub fn genesis() -> Self {
        Head {
            id: 0,
            hash: GENESIS_HASH.to_string(),
            received_at: 0,
        }
    }

    pub fn load(conn: &Connection) -> Result<Self, StorageError> {
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
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BadEntry {
    pub id: i64,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Entries checked.
    pub entries: u64,
    /// The last entry's hash (64 zeros for an empty ledger).
    pub head_hash: String,
    pub head_id: i64,
    pub first_bad: Option<BadEntry>,
}

impl Verification {
    pub fn intact(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Recomputes every body hash, entry hash, link and result row, stopping at the
/// first bad entry. `progress` is called with the number of entries checked so far.
pub fn verify(
    conn: &Connection,
    mut progress: impl FnMut(u64),
) -> Result<Verification, StorageError> {
    // One read transaction: every statement sees the same snapshot.
    let snapshot = conn.unchecked_transaction()?;
    let mut uploads = conn.prepare(
        "SELECT id, request_id, task_id, received_at, credential_name, auth_method,
                raw_body, body_sha256, prev_hash, entry_hash, result_count, total_files,
                different_files, target_miss_files, target_more_files, finished_time
         FROM uploads ORDER BY id",
    )?;
    let mut results = conn.prepare_cached(
        "SELECT ordinal, dir_check, num_total_files, num_different_files,
                num_target_miss_files, num_target_more_files
         FROM upload_results WHERE upload_id = ?1 ORDER BY ordinal",
    )?;
    let mut rows = uploads.query([])?;
    let mut prev = Head::genesis();
    let mut entries = 0u64;
    let mut first_bad = None;

    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let request_id: String = row.get(1)?;
        let task_id: String = row.get(2)?;
        let received_at: i64 = row.get(3)?;
        let credential_name: String = row.get(4)?;
        let auth_method: String = row.get(5)?;
        let raw_body: Vec<u8> = row.get(6)?;
        let body_sha256: String = row.get(7)?;
        let prev_hash: String = row.get(8)?;
        let entry_hash: String = row.get(9)?;
        let stored_totals: [i64; 6] = [
            row.get(10)?,
            row.get(11)?,
            row.get(12)?,
            row.get(13)?,
            row.get(14)?,
            row.get::<_, Option<i64>>(15)?.unwrap_or(-1),
        ];

        let bad = |problem: String| Some(BadEntry { id, problem });
        let problem = if id != prev.id + 1 {
            bad(format!(
                "entry {} is missing (ids jump from {} to {id})",
                prev.id + 1,
                prev.id
            ))
        } else if received_at < prev.received_at {
            bad(format!("received_at is earlier than entry {}'s", prev.id))
        } else if sha256_hex(&raw_body) != body_sha256 {
            bad("raw body does not match its stored SHA-256".into())
        } else if prev_hash != prev.hash {
            bad(format!(
                "prev_hash does not match the hash of entry {}",
                prev.id
            ))
        } else if (EntryFields {
            id,
            request_id: &request_id,
            task_id: &task_id,
            received_at,
            credential_name: &credential_name,
            auth_method: &auth_method,
            body_sha256: &body_sha256,
            prev_hash: &prev_hash,
        })
        .entry_hash()
            != entry_hash
        {
            bad("entry_hash does not match its recomputed value".into())
        } else {
            check_results(&mut results, id, &raw_body, stored_totals)?.and_then(bad)
        };
        if problem.is_some() {
            first_bad = problem;
            break;
        }
        prev = Head {
            id,
            hash: entry_hash,
            received_at,
        };
        entries += 1;
        if entries.is_multiple_of(10_000) {
            progress(entries);
        }
    }
    drop(rows);

    if first_bad.is_none() {
        first_bad = check_tail(conn, &prev)?;
    }
    progress(entries);
    drop(uploads);
    drop(results);
    snapshot.finish()?;
    Ok(Verification {
        entries,
        head_hash: prev.hash,
        head_id: prev.id,
        first_bad,
    })
}

/// Compares stored result rows and totals with a re-parse of the raw body.
fn check_results(
    stmt: &mut rusqlite::CachedStatement<'_>,
    id: i64,
    raw_body: &[u8],
    stored_totals: [i64; 6],
) -> Result<Option<String>, StorageError> {
    let Ok(body) = UploadBody::parse(raw_body, usize::MAX) else {
        return Ok(Some("raw body no longer parses as a valid upload".into()));
    };
    let stored: Vec<(i64, String, [i64; 4])> = stmt
        .query_map(params![id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
            ))
        })?
        .collect::<Result<_, _>>()?;
    let expected: Vec<(i64, String, [i64; 4])> = body
        .results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                i as i64,
                r.dir_check.as_str().to_string(),
                r.counts().map(|c| i64::from(c.get())),
            )
        })
        .collect();
    if stored != expected {
        return Ok(Some("result rows differ from the raw body".into()));
    }
    let t = body.totals();
    let expected_totals = [
        body.results.len() as i64,
        t[0],
        t[1],
        t[2],
        t[3],
        body.finished_time.unwrap_or(-1),
    ];
    if stored_totals != expected_totals {
        return Ok(Some("stored totals differ from the raw body".into()));
    }
    Ok(None)
}

/// A deleted last entry leaves no gap in the chain; the task summaries, kept in the
/// same transactions, still count it.
fn check_tail(conn: &Connection, head: &Head) -> Result<Option<BadEntry>, StorageError> {
    let (counted, last): (i64, Option<i64>) = conn.query_row(
        "SELECT coalesce(sum(upload_count), 0), max(last_upload_id) FROM tasks",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let last = last.unwrap_or(0);
    if last > head.id || counted != head.id {
        return Ok(Some(BadEntry {
            id: head.id + 1,
            problem: format!(
                "entry {} is missing: task summaries count {counted} uploads up to id {last}, the chain ends at {}",
                head.id + 1,
                head.id
            ),
        }));
    }
    Ok(None)
}
