//! Verifying the ledger: every body hash, entry hash, link and result row is
//! recomputed from what is stored, stopping at the first bad entry.

use std::ops::ControlFlow;

use crate::domain::chain::{BadEntry, EntryFields, Head, Verification};
use crate::domain::signing::sha256_hex;
use crate::domain::UploadBody;
use crate::storage::ledger::{self, StoredEntry, StoredResult, SummaryTotals};
use crate::storage::{checkpoints, tree, StorageError};
use tlog_tiles::{node_hash, Hash};

/// The RFC 6962 root of the leaves seen so far, kept as the roots of their
/// complete subtrees (largest first).
#[derive(Default)]
struct CompactRange(Vec<(u64, Hash)>);

impl CompactRange {
    /// Adds a leaf; `made` gets the hashes the tree stores for it, in the order
    /// `tlog_tiles::stored_hashes` gives them (the leaf, then each completed node).
    fn push(&mut self, leaf: Hash, made: &mut Vec<Hash>) {
        let (mut size, mut hash) = (1u64, leaf);
        made.push(hash);
        while let Some(&(top_size, top)) = self.0.last() {
            if top_size != size {
                break;
            }
            self.0.pop();
            (size, hash) = (size * 2, node_hash(top, hash));
            made.push(hash);
        }
        self.0.push((size, hash));
    }

    fn root(&self) -> Hash {
        let mut subtrees = self.0.iter().rev().map(|(_, h)| *h);
        match subtrees.next() {
            None => tlog_tiles::EMPTY_HASH,
            Some(last) => subtrees.fold(last, |right, left| node_hash(left, right)),
        }
    }
}

/// Recomputes every body hash, entry hash, link and result row, and the Merkle
/// root at every stored checkpoint and of the stored tree, stopping at the first
/// bad entry. `progress` is called with the number of entries checked so far.
/// (Checkpoint signatures need the verifier key: `verify_signatures`.)
pub fn verify(
    conn: &rusqlite::Connection,
    mut progress: impl FnMut(u64),
) -> Result<Verification, StorageError> {
    let mut prev = Head::genesis();
    let mut entries = 0u64;
    let mut first_bad = None;
    // Largest first: the next to check (the smallest) is the last.
    let mut pending: Vec<(u64, Hash)> = stored_checkpoint_roots(conn)?;
    let mut range = CompactRange::default();
    // The stored tree is compared with the one the chain makes, a batch at a time
    // (a database from before the tree has none until a service starts on it).
    let tree_built = has_table(conn, "tree_hashes")? && tree::size(conn)? > 0;
    let mut made = Vec::new();
    let mut compared = 0u64;
    let totals = ledger::scan(conn, |entry, results| {
        if let Some(problem) = check_entry(&entry, &prev, results)? {
            first_bad = Some(BadEntry {
                id: entry.id,
                problem,
            });
            return Ok(ControlFlow::Break(()));
        }
        let Ok(leaf) = tree::entry_bytes(&entry.entry_hash) else {
            first_bad = Some(BadEntry {
                id: entry.id,
                problem: "entry_hash is not 64 hex digits".into(),
            });
            return Ok(ControlFlow::Break(()));
        };
        range.push(tree::leaf_hash(&leaf), &mut made);
        if tree_built && made.len() >= 4096 {
            if let Some(problem) = compare_stored(conn, &mut compared, &mut made)? {
                first_bad = Some(BadEntry {
                    id: entry.id,
                    problem,
                });
                return Ok(ControlFlow::Break(()));
            }
        }
        while let Some(&(size, root)) = pending.last() {
            if size != entries + 1 {
                break;
            }
            pending.pop();
            if root != range.root() {
                first_bad = Some(BadEntry {
                    id: entry.id,
                    problem: format!(
                        "the checkpoint of {size} uploads has root {root}, the chain gives {}",
                        range.root()
                    ),
                });
                return Ok(ControlFlow::Break(()));
            }
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
    if first_bad.is_none() && tree_built {
        if let Some(problem) = compare_stored(conn, &mut compared, &mut made)? {
            first_bad = Some(BadEntry {
                id: prev.id,
                problem,
            });
        }
    }
    if first_bad.is_none() {
        first_bad = check_tree(entries, pending.last().map(|(s, _)| *s));
    }
    progress(entries);
    Ok(Verification {
        entries,
        head_hash: prev.hash,
        head_id: prev.id,
        first_bad,
    })
}

/// Every stored checkpoint's size and root, largest first (none on a database
/// from before checkpoints, checked read-only as it is).
fn stored_checkpoint_roots(conn: &rusqlite::Connection) -> Result<Vec<(u64, Hash)>, StorageError> {
    if !has_table(conn, "checkpoints")? {
        return Ok(Vec::new());
    }
    Ok(checkpoints::list(conn, u32::MAX, None)?
        .into_iter()
        .map(|c| {
            (
                c.tree_size,
                Hash::parse_hash(&c.root_hash).unwrap_or_default(),
            )
        })
        .collect())
}

fn has_table(conn: &rusqlite::Connection, name: &str) -> Result<bool, StorageError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )? > 0)
}

/// A checkpoint beyond the end of the chain.
fn check_tree(entries: u64, unreached_checkpoint: Option<u64>) -> Option<BadEntry> {
    unreached_checkpoint.map(|size| BadEntry {
        id: entries as i64 + 1,
        problem: format!("a checkpoint covers {size} uploads, the chain has {entries}"),
    })
}

/// Compares the hashes the chain makes (`made`, from stored index `compared` on)
/// with the stored tree's; empties `made`.
fn compare_stored(
    conn: &rusqlite::Connection,
    compared: &mut u64,
    made: &mut Vec<Hash>,
) -> Result<Option<String>, StorageError> {
    let stored = tree::stored_range(conn, *compared, made.len())?;
    for (i, expected) in made.iter().enumerate() {
        if stored.get(i) != Some(&expected.0) {
            return Ok(Some(format!(
                "the stored Merkle tree differs from the chain at stored hash {} (changed or lost)",
                *compared + i as u64
            )));
        }
    }
    *compared += made.len() as u64;
    made.clear();
    Ok(None)
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
