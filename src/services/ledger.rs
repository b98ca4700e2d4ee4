//! Verifying the ledger: every body hash, entry hash, link and result row is
//! recomputed from what is stored, stopping at the first bad entry.

use std::ops::ControlFlow;

use crate::domain::chain::{BadEntry, EntryFields, Head, Verification};
use crate::domain::signing::sha256_hex;
use crate::domain::UploadBody;
use crate::storage::ledger::{self, StoredEntry, StoredResult, SummaryTotals};
use crate::storage::StorageError;

/// Recomputes every body hash, entry hash, link and result row, stopping at the
/// first bad entry. `progress` is called with the number of entries checked so far.
pub fn verify(
    conn: &rusqlite::Connection,
    mut progress: impl FnMut(u64),
) -> Result<Verification, StorageError> {
    let mut prev = Head::genesis();
    let mut entries = 0u64;
    let mut first_bad = None;
    let totals = ledger::scan(conn, |entry, results| {
        if let Some(problem) = check_entry(&entry, &prev, results)? {
            first_bad = Some(BadEntry {
                id: entry.id,
                problem,
            });
            return Ok(ControlFlow::Break(()));
        }
        prev = Head {
            id: entry.id,
            hash: entry.entry_hash,
            received_at: entry.received_at,
        };
        entries += 1;
        if entries.is_multiple_of(10_000) {
            progress(entries);
        }
        Ok(ControlFlow::Continue(()))
    })?;
    if first_bad.is_none() {
        first_bad = check_tail(&totals, &prev);
    }
    progress(entries);
    Ok(Verification {
        entries,
        head_hash: prev.hash,
        head_id: prev.id,
        first_bad,
    })
}

/// What is wrong with `e`, the entry after `prev`, if anything.
fn check_entry(
    e: &StoredEntry,
    prev: &Head,
    results: &mut dyn FnMut(i64) -> Result<Vec<StoredResult>, StorageError>,
) -> Result<Option<String>, StorageError> {
    let id = e.id;
    Ok(if id != prev.id + 1 {
        Some(format!(
            "entry {} is missing (ids jump from {} to {id})",
            prev.id + 1,
            prev.id
        ))
    } else if e.received_at < prev.received_at {
        Some(format!("received_at is earlier than entry {}'s", prev.id))
    } else if sha256_hex(&e.raw_body) != e.body_sha256 {
        Some("raw body does not match its stored SHA-256".into())
    } else if e.prev_hash != prev.hash {
        Some(format!(
            "prev_hash does not match the hash of entry {}",
            prev.id
        ))
    } else if (EntryFields {
        id,
        request_id: &e.request_id,
        task_id: &e.task_id,
        received_at: e.received_at,
        credential_name: &e.credential_name,
        auth_method: &e.auth_method,
        body_sha256: &e.body_sha256,
        prev_hash: &e.prev_hash,
    })
    .entry_hash()
        != e.entry_hash
    {
        Some("entry_hash does not match its recomputed value".into())
    } else {
        check_results(&results(id)?, &e.raw_body, e.totals)
    })
}

/// Compares stored result rows and totals with a re-parse of the raw body.
fn check_results(
    stored: &[StoredResult],
    raw_body: &[u8],
    stored_totals: [i64; 6],
) -> Option<String> {
    let Ok(body) = UploadBody::parse(raw_body, usize::MAX) else {
        return Some("raw body no longer parses as a valid upload".into());
    };
    let expected: Vec<StoredResult> = body
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
        return Some("result rows differ from the raw body".into());
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
        return Some("stored totals differ from the raw body".into());
    }
    None
}

/// A deleted last entry leaves no gap in the chain; the task summaries, kept in the
/// same transactions, still count it.
fn check_tail(totals: &SummaryTotals, head: &Head) -> Option<BadEntry> {
    let (counted, last) = (totals.uploads, totals.last_upload_id);
    (last > head.id || counted != head.id).then(|| BadEntry {
        id: head.id + 1,
        problem: format!(
            "entry {} is missing: task summaries count {counted} uploads up to id {last}, the chain ends at {}",
            head.id + 1,
            head.id
        ),
    })
}
