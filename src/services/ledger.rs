//! Verifying the ledger: every body hash, entry hash, link and result row is
//! recomputed from what is stored, and the Merkle tree with it, stopping at the
//! first bad entry.

use std::ops::ControlFlow;

use sha2::{Digest, Sha256};
use tlog_tiles::{node_hash, Hash};

use crate::domain::chain::{BadEntry, EntryFields, Head, Verification};
use crate::domain::Timestamp;
use crate::domain::UploadBody;
use crate::storage::ledger::{
    self, ScanStart, ScannedBatch, ScannedEntry, ScannedResult, SummaryTotals,
};
use crate::storage::{tree, StorageError};

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

/// How a verification spreads its work.
#[derive(Debug, Clone, Copy)]
pub struct Parallelism {
    /// Threads that read and check entries (at least one).
    pub workers: usize,
    /// Entries one worker reads and checks at a time.
    pub batch: usize,
}

impl Parallelism {
    /// One worker (inside the service, which keeps the other cores for ingest).
    pub fn one() -> Self {
        Parallelism {
            workers: 1,
            batch: 2048,
        }
    }

    /// One worker per core (the command line: a verification has the machine).
    pub fn all_cores() -> Self {
        Parallelism {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ..Self::one()
        }
    }
}

/// Checked batches a worker may hold ready for the chain check (bounds memory:
/// a few MB per worker).
const READY_AHEAD: usize = 2;

/// What a verification checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every entry, from the first.
    Full,
    /// The entries after the checkpoint of this many uploads, starting from its
    /// signed root: the stored tree must give that root, and the entry before the
    /// first one checked must be its last leaf.
    SinceCheckpoint(u64),
}

/// Opens another read connection to the same database (for the workers after
/// the first).
pub type OpenReader<'a> = &'a (dyn Fn() -> Result<rusqlite::Connection, StorageError> + Sync);

/// A batch read and checked by a worker, waiting for the chain check.
struct CheckedBatch {
    batch: ScannedBatch,
    own: Vec<OwnChecks>,
}

/// Recomputes every body hash, entry hash, link and result row, and the Merkle
/// root at every stored checkpoint and of the stored tree, stopping at the first
/// bad entry. `progress` is called with the number of entries checked so far
/// (after each batch).
/// (Checkpoint signatures need the verifier key: `verify_signatures`.)
///
/// `parallelism.workers` threads each read every `workers`-th batch of entries
/// and check what each entry holds by itself: worker 0 on `conn` in the calling
/// thread, the others on connections from `open`. Another thread then
/// checks the links, order and tree in id order. All read the entries up to the
/// last id in `conn`'s snapshot, which the ledger's append-only tables keep the
/// same in every later snapshot. Memory stays bounded: nothing is read more
/// than a few batches ahead of the chain check.
pub fn verify(
    conn: &rusqlite::Connection,
    open: OpenReader<'_>,
    parallelism: Parallelism,
    scope: Scope,
    mut progress: impl FnMut(u64) + Send,
) -> Result<Verification, StorageError> {
    let snapshot = conn.unchecked_transaction()?;
    let start = ledger::scan_start(conn)?;
    let mut chain = match scope {
        Scope::Full => ChainCheck::new(&start),
        Scope::SinceCheckpoint(size) => match ChainCheck::at_checkpoint(conn, &start, size)? {
            Ok(chain) => chain,
            Err(broken) => return Ok(broken),
        },
    };
    let (from, last) = (chain.prev_id + 1, start.last_id);
    let read = Reading {
        tree: start.tree_size > 0,
        purge_column: start.purge_column,
    };
    let batch = parallelism.batch.max(1) as i64;
    let batches = (last - from + batch) / batch;
    let workers = parallelism.workers.clamp(1, batches.max(1) as usize);
    let verdict = std::thread::scope(|scope| -> Result<(), StorageError> {
        let mut ready = Vec::new();
        let mut helpers = Vec::new();
        let mut first = None;
        for worker in 0..workers {
            let (tx, rx) = std::sync::mpsc::sync_channel::<CheckedBatch>(READY_AHEAD);
            ready.push(rx);
            if worker == 0 {
                first = Some(tx);
                continue;
            }
            let share = (worker, workers, batch);
            helpers.push(spawn_helper(scope, open, share, (from, last), read, tx)?);
        }
        let (chain, progress) = (&mut chain, &mut progress);
        let sequencer = std::thread::Builder::new()
            .name("sms-audit-verify-chain".into())
            .spawn_scoped(scope, move || {
                for k in 0..batches {
                    // A worker that stopped early has failed: its error is reported.
                    let Ok(checked) = ready[(k as usize) % workers].recv() else {
                        return;
                    };
                    let stop = chain.check_batch(&checked.batch, &checked.own);
                    progress(chain.entries - chain.since.unwrap_or(0));
                    if stop.is_break() {
                        return; // dropping the receivers stops the workers
                    }
                }
            })
            .map_err(|e| StorageError::Background(e.to_string()))?;
        let own = match first {
            Some(tx) => read_and_check(conn, (0, workers, batch), (from, last), read, &tx),
            None => Ok(()),
        };
        let panicked = || StorageError::Background("a verification thread panicked".into());
        sequencer.join().map_err(|_| panicked())?;
        own?;
        for helper in helpers {
            helper.join().map_err(|_| panicked())??;
        }
        Ok(())
    });
    verdict?;
    snapshot.finish()?;
    if chain.first_bad.is_none() && chain.prev_id != last.max(from - 1) {
        return Err(StorageError::Background(
            "the verification stopped before the end of the ledger".into(),
        ));
    }
    Ok(chain.finish(&start.totals))
}

/// A worker on a connection of its own, in the same snapshot as the caller's
/// (the ledger's tables only grow, so every entry up to `last` is there).
fn spawn_helper<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    open: OpenReader<'scope>,
    share: (usize, usize, i64),
    (from, last): (i64, i64),
    read: Reading,
    tx: std::sync::mpsc::SyncSender<CheckedBatch>,
) -> Result<std::thread::ScopedJoinHandle<'scope, Result<(), StorageError>>, StorageError> {
    std::thread::Builder::new()
        .name(format!("sms-audit-verify-{}", share.0))
        .spawn_scoped(scope, move || -> Result<(), StorageError> {
            let conn = open()?;
            let _snapshot = conn.unchecked_transaction()?;
            if ledger::last_id(&conn)? < last {
                return Err(StorageError::Background(
                    "entries were removed while the ledger was being verified".into(),
                ));
            }
            read_and_check(&conn, share, (from, last), read, &tx)
        })
        .map_err(|e| StorageError::Background(e.to_string()))
}

/// Worker `worker` of `workers`: reads and checks batches `worker`,
/// `worker + workers`, … (of `batch` ids each) of the ids `from..=last` and
/// hands them to the chain check in that order.
fn read_and_check(
    conn: &rusqlite::Connection,
    (worker, workers, batch): (usize, usize, i64),
    (from, last): (i64, i64),
    read: Reading,
    ready: &std::sync::mpsc::SyncSender<CheckedBatch>,
) -> Result<(), StorageError> {
    let mut first = from + worker as i64 * batch;
    while first <= last {
        let batch_ids = (first, (first + batch - 1).min(last));
        first += workers as i64 * batch;
        let batch =
            ledger::read_batch(conn, batch_ids.0, batch_ids.1, read.tree, read.purge_column)?;
        let own = batch
            .entries
            .iter()
            .map(|e| OwnChecks::of(&batch, e))
            .collect();
        if ready.send(CheckedBatch { batch, own }).is_err() {
            break; // the chain check has stopped
        }
    }
    Ok(())
}

/// What the workers read besides the entries.
#[derive(Clone, Copy)]
struct Reading {
    /// The stored tree hashes (a database from before the tree has none).
    tree: bool,
    /// Whether entries were purged (a database from before retention has no column).
    purge_column: bool,
}

/// What an entry's stored fields say about themselves, checked in parallel.
struct OwnChecks {
    body_hash_matches: bool,
    /// The entry hash recomputed, when the stored one is its lower-case hex.
    entry_hash: Option<[u8; 32]>,
    results_problem: Option<String>,
}

impl OwnChecks {
    fn of(batch: &ScannedBatch, e: &ScannedEntry) -> Self {
        let raw_body = batch.get(&e.raw_body);
        // A purged entry keeps its body's hash (which its entry hash covers), not
        // the body: there is nothing left to compare it with.
        let body_hash_matches =
            e.purged || hex_matches(&Sha256::digest(raw_body).into(), batch.get(&e.body_sha256));
        let digest = EntryFields {
            id: e.id,
            request_id: batch.get(&e.request_id),
            task_id: batch.get(&e.task_id),
            received_at: e.received_at,
            credential_name: batch.get(&e.credential_name),
            auth_method: batch.get(&e.auth_method),
            body_sha256: batch.get(&e.body_sha256),
            prev_hash: batch.get(&e.prev_hash),
        }
        .digest();
        OwnChecks {
            body_hash_matches,
            entry_hash: hex_matches(&digest, batch.get(&e.entry_hash)).then_some(digest),
            results_problem: if e.purged {
                (!raw_body.is_empty() || !e.results.is_empty())
                    .then(|| "purged, but its body or result rows remain".to_string())
            } else {
                check_results(&batch.results[e.results.clone()], batch, raw_body, e.totals)
            },
        }
    }
}

/// Whether `stored` is the lower-case hex of `digest`.
fn hex_matches(digest: &[u8; 32], stored: &[u8]) -> bool {
    let mut hex = [0u8; 64];
    // 32 bytes always fit 64 hex digits.
    let _ = hex::encode_to_slice(digest, &mut hex);
    hex[..] == *stored
}

/// The checks that follow the chain in order: ids, times, links, the tree.
struct ChainCheck {
    /// The last good entry's id, time and (lower-case hex) hash.
    prev_id: i64,
    prev_received_at: Timestamp,
    prev_hash: [u8; 64],
    /// Leaves of the tree so far (the entries before the first one checked, and
    /// those checked).
    entries: u64,
    /// Entries before the first one checked (a checkpoint's size, or 0).
    since: Option<u64>,
    /// The newest checkpoint whose root the chain gave.
    checkpoint_verified: Option<u64>,
    first_bad: Option<BadEntry>,
    /// Checkpoints not reached yet, largest first.
    pending: Vec<(u64, Hash)>,
    range: CompactRange,
    /// Leaves the stored tree covers; 0: not compared (a database from before the
    /// tree, until a service starts on it).
    tree_size: u64,
    made: Vec<Hash>,
    /// Entries above this id may not be purged (no recorded purge covered them).
    purged_up_to: i64,
    /// Purged entries seen.
    pruned: u64,
}

impl ChainCheck {
    fn new(start: &ScanStart) -> Self {
        let genesis = Head::genesis();
        let mut prev_hash = [0u8; 64];
        prev_hash.copy_from_slice(genesis.hash.as_bytes());
        ChainCheck {
            prev_id: genesis.id,
            prev_received_at: genesis.received_at,
            prev_hash,
            entries: 0,
            since: None,
            checkpoint_verified: None,
            first_bad: None,
            pending: start.checkpoint_roots.clone(),
            range: CompactRange::default(),
            tree_size: start.tree_size,
            made: Vec::new(),
            purged_up_to: start.purged_up_to,
            pruned: 0,
        }
    }

    /// The state after the checkpoint of `size` uploads, rebuilt from the stored
    /// tree and checked against the checkpoint's root; or, when they disagree,
    /// the verdict that says so.
    fn at_checkpoint(
        conn: &rusqlite::Connection,
        start: &ScanStart,
        size: u64,
    ) -> Result<Result<Self, Verification>, StorageError> {
        let Some(&(_, root)) = start.checkpoint_roots.iter().find(|(s, _)| *s == size) else {
            return Err(StorageError::Background(format!(
                "there is no checkpoint of {}",
                crate::domain::counted(size, "upload")
            )));
        };
        let broken = |problem: String| Verification {
            entries: 0,
            since_checkpoint: Some(size),
            checkpoint_verified: None,
            head_hash: String::new(),
            head_id: size as i64,
            first_bad: Some(BadEntry {
                id: size as i64,
                problem,
            }),
            pruned: 0,
        };
        let subtrees = tree::subtree_roots(conn, size)?;
        let range = CompactRange(subtrees);
        if range.root() != root {
            return Ok(Err(broken(format!(
                "the stored Merkle tree does not give the root of the checkpoint of {}",
                crate::domain::counted(size, "upload")
            ))));
        }
        let Some(last) = ledger::entry_head(conn, size as i64)? else {
            return Ok(Err(broken(format!("entry {size} is missing"))));
        };
        // The checkpoint's last leaf must be this entry: its proof checks against
        // the signed root.
        let proof = tree::inclusion_proof(conn, size, size - 1)?;
        let included = tree::entry_bytes(&last.hash).is_ok_and(|bytes| {
            tlog_tiles::check_record(&proof, size, root, size - 1, tree::leaf_hash(&bytes)).is_ok()
        });
        if !included || last.hash.len() != 64 {
            return Ok(Err(broken(format!(
                "entry {size} is not the last leaf of the checkpoint of {}",
                crate::domain::counted(size, "upload")
            ))));
        }
        let mut prev_hash = [0u8; 64];
        prev_hash.copy_from_slice(last.hash.as_bytes());
        Ok(Ok(ChainCheck {
            prev_id: last.id,
            prev_received_at: last.received_at,
            prev_hash,
            entries: size,
            since: Some(size),
            checkpoint_verified: None,
            first_bad: None,
            pending: start
                .checkpoint_roots
                .iter()
                .copied()
                .filter(|(s, _)| *s > size)
                .collect(),
            range,
            tree_size: start.tree_size,
            made: Vec::new(),
            purged_up_to: start.purged_up_to,
            pruned: 0,
        }))
    }

    fn check_batch(&mut self, batch: &ScannedBatch, own: &[OwnChecks]) -> ControlFlow<()> {
        let mut stored = batch.tree.iter().peekable();
        for (e, own) in batch.entries.iter().zip(own) {
            if let Some(problem) = self.check_entry(batch, e, own, &mut stored) {
                self.first_bad = Some(BadEntry { id: e.id, problem });
                return ControlFlow::Break(());
            }
            self.prev_id = e.id;
            self.prev_received_at = e.received_at;
            // Checked above: the stored hash is the 64 hex digits of the digest.
            self.prev_hash.copy_from_slice(batch.get(&e.entry_hash));
            self.entries += 1;
        }
        ControlFlow::Continue(())
    }

    /// What is wrong with `e`, the entry after the last good one, if anything;
    /// adds its leaf to the tree.
    fn check_entry<'a>(
        &mut self,
        batch: &ScannedBatch,
        e: &ScannedEntry,
        own: &OwnChecks,
        stored: &mut std::iter::Peekable<impl Iterator<Item = &'a (u64, Option<[u8; 32]>)>>,
    ) -> Option<String> {
        let (id, prev_id) = (e.id, self.prev_id);
        if id != prev_id + 1 {
            return Some(format!(
                "entry {} is missing (ids jump from {prev_id} to {id})",
                prev_id + 1,
            ));
        }
        if e.received_at < self.prev_received_at {
            return Some(format!("received_at is earlier than entry {prev_id}'s"));
        }
        if !own.body_hash_matches {
            return Some("raw body does not match its stored SHA-256".into());
        }
        if batch.get(&e.prev_hash) != self.prev_hash {
            return Some(format!(
                "prev_hash does not match the hash of entry {prev_id}"
            ));
        }
        let Some(entry_hash) = own.entry_hash else {
            return Some("entry_hash does not match its recomputed value".into());
        };
        if let Some(problem) = &own.results_problem {
            return Some(problem.clone());
        }
        if e.purged {
            if id > self.purged_up_to {
                return Some("purged, but no recorded purge covers it (admin log)".into());
            }
            self.pruned += 1;
        }
        let first = tlog_tiles::stored_hash_count(self.entries);
        self.made.clear();
        self.range
            .push(tree::leaf_hash(&entry_hash), &mut self.made);
        if self.tree_size > 0 {
            for (i, made) in self.made.iter().enumerate() {
                let index = first + i as u64;
                let matches = stored
                    .next_if(|(idx, _)| *idx == index)
                    .is_some_and(|(_, hash)| *hash == Some(made.0));
                if !matches {
                    return Some(format!(
                        "the stored Merkle tree differs from the chain at stored hash {index} (changed or lost)"
                    ));
                }
            }
        }
        let size = self.entries + 1;
        while let Some(&(checkpoint, root)) = self.pending.last() {
            if checkpoint != size {
                break;
            }
            self.pending.pop();
            let made = self.range.root();
            if root != made {
                return Some(format!(
                    "the checkpoint of {} has root {root}, the chain gives {made}",
                    crate::domain::counted(checkpoint, "upload")
                ));
            }
            self.checkpoint_verified = Some(checkpoint);
        }
        None
    }

    /// The verdict, with the checks only the end of the chain allows.
    fn finish(self, totals: &SummaryTotals) -> Verification {
        let entries = self.entries;
        let head = Head {
            id: self.prev_id,
            hash: String::from_utf8_lossy(&self.prev_hash).into_owned(),
            received_at: self.prev_received_at,
        };
        let first_bad = self
            .first_bad
            .or_else(|| check_tail(totals, &head))
            .or_else(|| {
                // A tree longer than the chain: entries were removed from its end.
                (self.tree_size > entries).then(|| BadEntry {
                    id: entries as i64 + 1,
                    problem: format!(
                        "the stored Merkle tree covers {}, the chain has {entries}",
                        crate::domain::counted(self.tree_size, "upload")
                    ),
                })
            })
            .or_else(|| {
                self.pending.last().map(|(size, _)| BadEntry {
                    id: entries as i64 + 1,
                    problem: format!(
                        "a checkpoint covers {}, the chain has {entries}",
                        crate::domain::counted(*size, "upload")
                    ),
                })
            });
        Verification {
            entries: entries - self.since.unwrap_or(0),
            since_checkpoint: self.since,
            checkpoint_verified: self.checkpoint_verified.filter(|_| first_bad.is_none()),
            head_hash: head.hash,
            head_id: head.id,
            first_bad,
            pruned: self.pruned,
        }
    }
}

/// Compares stored result rows and totals with a re-parse of the raw body.
fn check_results(
    stored: &[ScannedResult],
    batch: &ScannedBatch,
    raw_body: &[u8],
    stored_totals: [i64; 6],
) -> Option<String> {
    let Ok(body) = UploadBody::parse(raw_body, usize::MAX) else {
        return Some("raw body no longer parses as a valid upload".into());
    };
    let rows_match = stored.len() == body.results.len()
        && stored
            .iter()
            .zip(&body.results)
            .enumerate()
            .all(|(i, (row, r))| {
                row.ordinal == i as i64
                    && batch.get(&row.dir_check) == r.dir_check.as_str().as_bytes()
                    && row.counts == r.counts().map(|c| i64::from(c.get()))
            });
    if !rows_match {
        return Some("result rows differ from the raw body".into());
    }
    let t = body.totals();
    let expected_totals = [
        body.results.len() as i64,
        t.num_total_files,
        t.num_different_files,
        t.num_target_miss_files,
        t.num_target_more_files,
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
            "entry {} is missing: task summaries count {} up to id {last}, the chain ends at {}",
            head.id + 1,
            crate::domain::counted(counted, "upload"),
            head.id
        ),
    })
}
