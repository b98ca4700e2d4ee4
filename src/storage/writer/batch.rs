//! The writer's loop: gather waiting jobs into a batch, store them in one
//! transaction, answer each after the commit.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;

use parking_lot::Mutex;

use rusqlite::{Connection, TransactionBehavior};

use super::logs::{self, LogBuffer, Waiting};
use super::{handoff, Forwarding, Job, SubmitError, WriteFn, REJECTIONS_KEPT};
use crate::domain::chain::Head;
use crate::storage::uploads::{self, LastUpload};
use crate::storage::uploads::{NewUpload, Receipt};
use crate::storage::{fleet, proxy_log, WalCheckpoints};

/// Most jobs (counting each upload) committed in one transaction, give or take
/// one worker's hand-off.
const MAX_BATCH: usize = 512;
/// Tasks whose latest upload the writer remembers; cleared when it grows past this.
const LAST_UPLOAD_CACHE: usize = 100_000;

pub(super) struct Writer {
    conn: Connection,
    head: Head,
    /// The writer is the only one that adds uploads, so this never goes stale.
    last_upload: HashMap<String, LastUpload>,
    forwarding: Option<Forwarding>,
    rejections: Arc<LogBuffer>,
    /// Why the last uploads could not be stored, until some are stored again.
    trouble: Arc<Mutex<Option<String>>>,
    clock: super::Clock,
    wal_checkpoints: WalCheckpoints,
    metrics: super::WriterMetrics,
}

/// The result of storing one batch: an outcome per upload, in order.
type Outcomes = Vec<Result<Receipt, String>>;
type ExecOutcomes = Vec<Result<(), String>>;

#[derive(Debug, thiserror::Error)]
enum StoreError {
    /// Storing one of the uploads failed: worth retrying them one by one.
    #[error("{0}")]
    Upload(rusqlite::Error),
    /// The transaction itself failed (locked, disk full, ...).
    #[error("{0}")]
    Transaction(#[from] rusqlite::Error),
}

/// What the writer shares with its handles.
pub(super) struct Shared {
    pub rejections: Arc<LogBuffer>,
    pub trouble: Arc<Mutex<Option<String>>>,
    pub metrics: super::WriterMetrics,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        head: Head,
        forwarding: Option<Forwarding>,
        shared: Shared,
        clock: super::Clock,
        wal_checkpoints: WalCheckpoints,
    ) -> Self {
        Self {
            conn,
            head,
            last_upload: HashMap::new(),
            forwarding,
            rejections: shared.rejections,
            trouble: shared.trouble,
            clock,
            wal_checkpoints,
            metrics: shared.metrics,
        }
    }

    pub(super) fn run(mut self, rx: Receiver<Job>) {
        // Ends on Shutdown, or when every handle is dropped and the queue is empty.
        let mut stopping = false;
        while !stopping {
            let first = match rx.recv_timeout(logs::FLUSH_EVERY) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    if !self.rejections.is_empty() {
                        self.commit_batch(Vec::new());
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = Vec::new();
            let mut size = 0;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                if matches!(job, Job::Shutdown) {
                    stopping = true;
                    break;
                }
                size += match &job {
                    Job::Uploads(list) => list.len(),
                    _ => 1,
                };
                batch.push(job);
                // Never waits for more: the uploads arriving during this commit
                // make the next batch (waiting here cost 20 % of durable ingest).
                if size < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.commit_batch(batch);
            }
        }
        if !self.rejections.is_empty() {
            self.commit_batch(Vec::new());
        }
        if self.wal_checkpoints == WalCheckpoints::Passive {
            // Never waits: another reader (Litestream's) keeps the WAL it reads.
            let _ = self.conn.busy_timeout(std::time::Duration::ZERO);
            if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
                tracing::debug!(error = %e, "the WAL was left as it is at shutdown");
            }
        }
        tracing::debug!("writer stopped with its queue committed");
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        let mut uploads = Vec::new();
        let mut replies = Vec::new();
        let rejections = self.rejections.take();
        let mut pings = Vec::new();
        let mut execs = Vec::new();
        let mut exec_replies = Vec::new();
        for job in batch {
            match job {
                Job::Upload(upload, reply) => {
                    uploads.push(upload);
                    replies.push(reply);
                }
                Job::Uploads(list) => {
                    for (upload, reply) in list {
                        uploads.push(upload);
                        replies.push(reply);
                    }
                }
                Job::Ping(reply) => pings.push(reply),
                Job::Exec(write, reply) => {
                    execs.push(write);
                    exec_replies.push(reply);
                }
                // run() stops at Shutdown instead of batching it.
                Job::Shutdown => {}
            }
        }
        self.metrics.queued_uploads.dec_by(uploads.len() as i64);
        // Fast path: the whole batch in one go. Should any upload fail, store the
        // batch again with a savepoint per upload, so that one fails alone.
        let started = std::time::Instant::now();
        let result = match self.store(&uploads, &execs, &rejections, false) {
            Err(StoreError::Upload(_)) => self.store(&uploads, &execs, &rejections, true),
            other => other,
        };
        if !uploads.is_empty() {
            self.metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.batch_uploads.observe(uploads.len() as f64);
        }
        if !uploads.is_empty() {
            // What `/readyz` reports: whether uploads are being stored right now.
            let failure = match &result {
                Err(e) => Some(e.to_string()),
                Ok((outcomes, _)) => outcomes.iter().find_map(|o| o.clone().err()),
            };
            *self.trouble.lock() = failure;
        }
        match result {
            Ok((outcomes, exec_outcomes)) => {
                if let (Some(f), false) = (&self.forwarding, uploads.is_empty()) {
                    f.wake.notify_one();
                }
                handoff::answer(
                    replies
                        .into_iter()
                        .zip(outcomes.into_iter().map(|o| o.map_err(SubmitError::Failed))),
                );
                for (reply, outcome) in exec_replies.into_iter().zip(exec_outcomes) {
                    let _ = reply.send(outcome);
                }
                for reply in pings {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed");
                self.rejections.put_back_calls(rejections.calls);
                let failed = SubmitError::Failed(format!("commit failed: {e}"));
                handoff::answer(replies.into_iter().map(|r| (r, Err(failed.clone()))));
                for reply in exec_replies {
                    let _ = reply.send(Err(format!("commit failed: {e}")));
                }
                for reply in pings {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }

    /// Stores a batch in one transaction. On error nothing is kept, in the database
    /// or in the writer's memory.
    fn store(
        &mut self,
        uploads: &[Box<NewUpload>],
        execs: &[WriteFn],
        rejections: &Waiting,
        isolate: bool,
    ) -> Result<(Outcomes, ExecOutcomes), StoreError> {
        let start_head = self.head.clone();
        let result = self.try_store(uploads, execs, rejections, isolate);
        if result.is_err() {
            self.head = start_head;
            self.last_upload.clear();
        }
        result
    }

    fn try_store(
        &mut self,
        uploads: &[Box<NewUpload>],
        execs: &[WriteFn],
        rejections: &Waiting,
        isolate: bool,
    ) -> Result<(Outcomes, ExecOutcomes), StoreError> {
        if self.last_upload.len() > LAST_UPLOAD_CACHE {
            self.last_upload.clear();
        }
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(uploads.len());
        let mut deltas: HashMap<&str, uploads::TaskDelta> = HashMap::new();
        let mut fleet_changes = Vec::with_capacity(uploads.len());
        // Ids are given in order and only to stored uploads: one contiguous range.
        let mut stored_ids: Option<(i64, i64)> = None;
        for upload in uploads {
            let task_id = upload.task_id.as_str();
            let previous = match self.last_upload.get(task_id) {
                Some(last) => Some(last.clone()),
                None => uploads::last_upload_of(&tx, task_id)?,
            };
            let stored = if isolate {
                let sp = tx.savepoint()?;
                match uploads::insert_upload(
                    &sp,
                    &self.head,
                    previous.as_ref(),
                    upload,
                    (self.clock)(),
                ) {
                    Ok(receipt) => sp.commit().map(|_| Ok(receipt))?,
                    Err(e) => {
                        drop(sp); // rolls back to the savepoint
                        tracing::error!(error = %e, task_id, "storing an upload failed");
                        Err(e.to_string())
                    }
                }
            } else {
                Ok(uploads::insert_upload(
                    &tx,
                    &self.head,
                    previous.as_ref(),
                    upload,
                    (self.clock)(),
                )
                .map_err(StoreError::Upload)?)
            };
            if let Ok(receipt) = &stored {
                fleet_changes.push(fleet::change_of(
                    receipt.received_at,
                    previous.as_ref().map(|p| p.problems),
                    receipt.problems,
                ));
                stored_ids = Some((
                    stored_ids.map_or(receipt.id, |(first, _)| first),
                    receipt.id,
                ));
                self.head = Head {
                    id: receipt.id,
                    hash: receipt.entry_hash.clone(),
                    received_at: receipt.received_at,
                };
                self.last_upload.insert(
                    task_id.to_string(),
                    LastUpload {
                        id: receipt.id,
                        body_sha256: receipt.body_sha256.clone(),
                        problems: receipt.problems,
                    },
                );
                let delta = deltas.entry(task_id).or_insert(uploads::TaskDelta {
                    count: 0,
                    first_at: receipt.received_at,
                    last_at: receipt.received_at,
                    last_id: receipt.id,
                    last_problems: receipt.problems,
                    last_regressed: receipt.regressed,
                });
                delta.count += 1;
                delta.last_at = receipt.received_at;
                delta.last_id = receipt.id;
                delta.last_problems = receipt.problems;
                delta.last_regressed = receipt.regressed;
            }
            outcomes.push(stored);
        }
        for (task_id, delta) in &deltas {
            uploads::update_task_summary(&tx, task_id, delta)?;
        }
        fleet::record_changes(&tx, &fleet_changes)?;
        if let (Some(f), Some((first, last))) = (&self.forwarding, stored_ids) {
            crate::storage::outbox::enqueue_live(
                &tx,
                first,
                last,
                &f.target,
                f.latest_wins,
                self.head.received_at,
            )?;
        }
        let mut exec_outcomes = Vec::with_capacity(execs.len());
        for write in execs {
            let sp = tx.savepoint()?;
            match write(&sp) {
                Ok(()) => {
                    sp.commit()?;
                    exec_outcomes.push(Ok(()));
                }
                Err(e) => exec_outcomes.push(Err(e.to_string())),
            }
        }
        for r in &rejections.rows {
            uploads::insert_rejection(&tx, r)?;
        }
        if !rejections.rows.is_empty() {
            uploads::trim_rejections(&tx, REJECTIONS_KEPT)?;
        }
        for ((minute, peer, code), n) in &rejections.counts {
            uploads::count_rejections(&tx, *minute, peer, code, *n)?;
        }
        if !rejections.counts.is_empty() {
            uploads::trim_rejection_counts(&tx, crate::domain::now_ms())?;
        }
        for call in &rejections.calls {
            proxy_log::insert(&tx, call)?;
        }
        tx.commit()?;
        Ok((outcomes, exec_outcomes))
    }
}
