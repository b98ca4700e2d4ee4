//! The writer's loop: gather waiting jobs into a batch, store them in one
//! transaction, answer each after the commit.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;

use flume::{Receiver, RecvTimeoutError};
use lru::LruCache;
use parking_lot::Mutex;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::handoff::{self, UploadReply};
use super::logs::{self, LogBuffer, PendingLogs};
use super::{Forwarding, Job, SubmitError, WriteFailure, WriteFn, WriterConfig, REJECTIONS_KEPT};
use crate::domain::chain::Head;
use crate::storage::uploads::{self, LastUpload, NewUpload, Receipt, TaskDelta};
use crate::storage::{fleet, proxy_log, rejections, WalCheckpoints};

/// Most jobs (counting each upload) committed in one transaction, give or take
/// one worker's hand-off.
const MAX_BATCH: usize = 512;
/// Tasks whose latest upload the writer remembers (least recently used out).
const LAST_UPLOAD_CACHE: NonZeroUsize = NonZeroUsize::new(100_000).unwrap();

pub(super) struct Writer {
    conn: Connection,
    head: Head,
    /// The writer is the only one that adds uploads, so this never goes stale.
    last_upload: LruCache<String, LastUpload>,
    forwarding: Option<Forwarding>,
    logs: Arc<LogBuffer>,
    /// Why the last uploads could not be stored, until some are stored again.
    last_failure: Arc<Mutex<Option<WriteFailure>>>,
    clock: super::Clock,
    wal_checkpoints: WalCheckpoints,
    wal_too_long: super::checkpoint::WalTooLong,
    metrics: super::WriterMetrics,
}

/// The result of storing one batch: an outcome per upload, in order.
type Outcomes = Vec<Result<Receipt, WriteFailure>>;
type ExecOutcomes = Vec<Result<(), WriteFailure>>;

#[derive(Debug, thiserror::Error)]
enum StoreError {
    /// Storing one of the uploads failed: worth retrying them one by one.
    #[error("{0}")]
    Upload(rusqlite::Error),
    /// The transaction itself failed (locked, disk full, ...).
    #[error("{0}")]
    Transaction(#[from] rusqlite::Error),
}

impl StoreError {
    fn into_inner(self) -> rusqlite::Error {
        match self {
            StoreError::Upload(e) | StoreError::Transaction(e) => e,
        }
    }
}

/// What the writer shares with its handles.
pub(super) struct HandleState {
    pub logs: Arc<LogBuffer>,
    pub last_failure: Arc<Mutex<Option<WriteFailure>>>,
    pub metrics: super::WriterMetrics,
    pub wal_too_long: super::checkpoint::WalTooLong,
}

/// One batch's jobs, sorted by kind; each kind keeps its callers' order.
#[derive(Default)]
struct Batch {
    uploads: Vec<NewUpload>,
    replies: Vec<UploadReply>,
    execs: Vec<WriteFn>,
    exec_replies: Vec<super::ExecReply>,
    pings: Vec<tokio::sync::oneshot::Sender<Result<(), WriteFailure>>>,
}

impl Batch {
    /// Sorts `jobs`; taking an upload out of its job makes its room in the queue.
    fn of(jobs: Vec<Job>) -> Self {
        let mut batch = Batch::default();
        for job in jobs {
            match job {
                Job::Upload(queued) => batch.add_upload(queued),
                Job::Uploads(list) => list.into_iter().for_each(|q| batch.add_upload(q)),
                Job::Ping(reply) => batch.pings.push(reply),
                Job::Exec(write, reply) => {
                    batch.execs.push(write);
                    batch.exec_replies.push(reply);
                }
                // run() stops at Shutdown instead of batching it.
                Job::Shutdown => {}
            }
        }
        batch
    }

    fn add_upload(&mut self, queued: super::Queued) {
        self.uploads.push(*queued.upload);
        self.replies.push(queued.reply);
    }
}

/// What storing the uploads of a batch leaves for the steps after it.
#[derive(Default)]
struct StoredUploads<'a> {
    outcomes: Outcomes,
    /// Per task: what its summary row gains.
    deltas: HashMap<&'a str, TaskDelta>,
    fleet_changes: Vec<fleet::FleetChange>,
    /// Ids are given in order and only to stored uploads: one contiguous range.
    ids: Option<(i64, i64)>,
    /// Per credential: its newest stored upload's time (its last use).
    used: HashMap<&'a str, crate::domain::Timestamp>,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        head: Head,
        config: WriterConfig,
        shared: HandleState,
    ) -> Self {
        Self {
            conn,
            head,
            last_upload: LruCache::new(LAST_UPLOAD_CACHE),
            forwarding: config.forwarding,
            logs: shared.logs,
            last_failure: shared.last_failure,
            clock: config.clock,
            wal_checkpoints: config.settings.wal_checkpoints,
            wal_too_long: shared.wal_too_long,
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
                    self.flush_logs();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let jobs;
            (jobs, stopping) = gather(&rx, first);
            if !jobs.is_empty() {
                self.commit_batch(Batch::of(jobs));
            }
            if self.wal_too_long.take() {
                super::checkpoint::catch_up_wal(&self.conn);
            }
        }
        self.flush_logs();
        if self.wal_checkpoints == WalCheckpoints::Passive {
            // Never waits: another reader (Litestream's) keeps the WAL it reads.
            let _ = self.conn.busy_timeout(std::time::Duration::ZERO);
            if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
                tracing::debug!(error = %e, "the WAL was left as it is at shutdown");
            }
        }
        tracing::debug!("writer stopped with its queue committed");
    }

    /// Stores the logs waiting, when no job comes to carry them.
    fn flush_logs(&mut self) {
        if !self.logs.is_empty() {
            self.commit_batch(Batch::default());
        }
    }

    fn commit_batch(&mut self, batch: Batch) {
        let logs = self.logs.take();
        // Fast path: the whole batch in one go. Should any upload fail, store the
        // batch again with a savepoint per upload, so that one fails alone.
        let started = Instant::now();
        let result = match self.store(&batch, &logs, false) {
            Err(StoreError::Upload(_)) => self.store(&batch, &logs, true),
            other => other,
        }
        .map_err(|e| WriteFailure::Commit(Arc::new(e.into_inner())));
        if !batch.uploads.is_empty() {
            self.observe(&batch, &result, started);
        }
        match result {
            Ok((outcomes, exec_outcomes)) => {
                if let (Some(f), false) = (&self.forwarding, batch.uploads.is_empty()) {
                    f.wake.notify_one();
                }
                answer(batch, outcomes.into_iter(), exec_outcomes, Ok(()));
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed");
                self.logs.put_back_calls(logs.calls);
                let outcomes = std::iter::repeat_n(Err(e.clone()), batch.uploads.len());
                let exec_outcomes = vec![Err(e.clone()); batch.execs.len()];
                answer(batch, outcomes, exec_outcomes, Err(e));
            }
        }
    }

    /// Commit metrics, and what `/readyz` reports: whether uploads are being
    /// stored right now.
    fn observe(
        &self,
        batch: &Batch,
        result: &Result<(Outcomes, ExecOutcomes), WriteFailure>,
        started: Instant,
    ) {
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.commit_seconds.observe(seconds);
        self.metrics
            .batch_uploads
            .observe(batch.uploads.len() as f64);
        *self.last_failure.lock() = match result {
            Err(e) => Some(e.clone()),
            Ok((outcomes, _)) => outcomes.iter().find_map(|o| o.clone().err()),
        };
    }

    /// Stores a batch in one transaction. On error nothing is kept, in the database
    /// or in the writer's memory.
    fn store(
        &mut self,
        batch: &Batch,
        logs: &PendingLogs,
        isolate: bool,
    ) -> Result<(Outcomes, ExecOutcomes), StoreError> {
        let start_head = self.head.clone();
        let result = self.try_store(batch, logs, isolate);
        if result.is_err() {
            self.head = start_head;
            self.last_upload.clear();
        }
        result
    }

    /// The steps of one commit, over one transaction.
    fn try_store(
        &mut self,
        batch: &Batch,
        logs: &PendingLogs,
        isolate: bool,
    ) -> Result<(Outcomes, ExecOutcomes), StoreError> {
        let conn = &mut self.conn;
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut stored = StoredUploads::default();
        for upload in &batch.uploads {
            let outcome = store_upload(
                &mut tx,
                &mut self.head,
                &self.last_upload,
                upload,
                &self.clock,
                isolate,
            )?;
            if let Ok((receipt, previous)) = &outcome {
                stored
                    .used
                    .insert(upload.credential_name.as_str(), receipt.received_at);
                remember(
                    &mut self.last_upload,
                    &mut stored,
                    upload.task_id.as_str(),
                    receipt,
                    *previous,
                    !upload.body.results.is_empty(),
                );
            }
            stored.outcomes.push(outcome.map(|(receipt, _)| receipt));
        }
        update_summaries(&tx, &stored)?;
        fleet::record_changes(&tx, &stored.fleet_changes)?;
        queue_live_deliveries(
            &tx,
            self.forwarding.as_ref(),
            stored.ids,
            self.head.received_at,
        )?;
        let exec_outcomes = run_execs(&mut tx, &batch.execs)?;
        store_logs(&tx, logs)?;
        tx.commit()?;
        Ok((stored.outcomes, exec_outcomes))
    }
}

/// Takes `first` and every job already waiting behind it, up to [`MAX_BATCH`]
/// uploads; says whether a Shutdown came.
fn gather(rx: &Receiver<Job>, first: Job) -> (Vec<Job>, bool) {
    let mut jobs = Vec::new();
    let mut size = 0;
    let mut next = Some(first);
    while let Some(job) = next.take() {
        if matches!(job, Job::Shutdown) {
            return (jobs, true);
        }
        size += match &job {
            Job::Uploads(list) => list.len(),
            _ => 1,
        };
        jobs.push(job);
        // Never waits for more: the uploads arriving during this commit
        // make the next batch (waiting here cost 20 % of durable ingest).
        if size < MAX_BATCH {
            next = rx.try_recv().ok();
        }
    }
    (jobs, false)
}

/// Answers every caller of the batch: uploads and writes with their outcomes,
/// pings with whether the transaction committed.
fn answer(
    batch: Batch,
    outcomes: impl Iterator<Item = Result<Receipt, WriteFailure>>,
    exec_outcomes: ExecOutcomes,
    committed: Result<(), WriteFailure>,
) {
    let outcomes = outcomes.map(|o| o.map_err(SubmitError::Failed));
    handoff::answer(batch.replies.into_iter().zip(outcomes));
    for (reply, outcome) in batch.exec_replies.into_iter().zip(exec_outcomes) {
        let _ = reply.send(outcome);
    }
    for reply in batch.pings {
        let _ = reply.send(committed.clone());
    }
}

/// An upload's chain entry, result rows and Merkle leaf, and its results as the
/// task's latest counts per directory.
fn insert_entry(
    conn: &Connection,
    head: &Head,
    previous: Option<&LastUpload>,
    upload: &NewUpload,
    at: crate::domain::Timestamp,
) -> Result<Receipt, rusqlite::Error> {
    let receipt = uploads::insert_upload(conn, head, previous, upload, at)?;
    let task_id = upload.task_id.as_str();
    fleet::record_directories(conn, task_id, receipt.id, &upload.body.results)?;
    Ok(receipt)
}

/// Stores one upload after `head`, and moves `head` to it. With `isolate`, a
/// failure is this upload's alone (its savepoint rolls back); otherwise it
/// fails the transaction. Gives the receipt and the task's previous health.
fn store_upload(
    tx: &mut Transaction,
    head: &mut Head,
    last_upload: &LruCache<String, LastUpload>,
    upload: &NewUpload,
    clock: &super::Clock,
    isolate: bool,
) -> Result<Result<(Receipt, Option<fleet::Health>), WriteFailure>, StoreError> {
    let task_id = upload.task_id.as_str();
    let previous = match last_upload.peek(task_id) {
        Some(last) => Some(last.clone()),
        None => uploads::last_upload_of(tx, task_id)?,
    };
    let stored = if isolate {
        let sp = tx.savepoint()?;
        match insert_entry(&sp, head, previous.as_ref(), upload, clock()) {
            Ok(receipt) => sp.commit().map(|_| Ok(receipt))?,
            Err(e) => {
                drop(sp); // rolls back to the savepoint
                tracing::error!(error = %e, task_id, "storing an upload failed");
                Err(WriteFailure::job(e))
            }
        }
    } else {
        let receipt = insert_entry(tx, head, previous.as_ref(), upload, clock());
        Ok(receipt.map_err(StoreError::Upload)?)
    };
    if let Ok(receipt) = &stored {
        *head = Head {
            id: receipt.id,
            hash: receipt.entry_hash.clone(),
            received_at: receipt.received_at,
        };
    }
    let before = previous.map(|p| fleet::Health {
        problems: p.problems,
        has_results: p.has_results,
    });
    Ok(stored.map(|receipt| (receipt, before)))
}

/// Notes a stored upload: the task's latest, its summary delta, the fleet's
/// change and the batch's id range.
fn remember<'a>(
    last_upload: &mut LruCache<String, LastUpload>,
    stored: &mut StoredUploads<'a>,
    task_id: &'a str,
    receipt: &Receipt,
    before: Option<fleet::Health>,
    has_results: bool,
) {
    let after = fleet::Health {
        problems: receipt.problems,
        has_results,
    };
    stored
        .fleet_changes
        .push(fleet::change_of(receipt.received_at, before, after));
    let first = stored.ids.map_or(receipt.id, |(first, _)| first);
    stored.ids = Some((first, receipt.id));
    last_upload.put(
        task_id.to_string(),
        LastUpload {
            id: receipt.id,
            body_sha256: receipt.body_sha256.clone(),
            problems: receipt.problems,
            has_results,
        },
    );
    let delta = stored.deltas.entry(task_id).or_insert(TaskDelta {
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

/// Each task's summary and each credential's last use, once per batch.
fn update_summaries(tx: &Transaction, stored: &StoredUploads) -> rusqlite::Result<()> {
    for (task_id, delta) in &stored.deltas {
        uploads::update_task_summary(tx, task_id, delta)?;
    }
    for (credential, at) in &stored.used {
        crate::storage::credentials::record_use(tx, credential, *at)?;
    }
    Ok(())
}

/// Live forwarding: a delivery for every upload stored in this transaction.
fn queue_live_deliveries(
    tx: &Transaction,
    forwarding: Option<&Forwarding>,
    ids: Option<(i64, i64)>,
    now: crate::domain::Timestamp,
) -> rusqlite::Result<()> {
    let (Some(f), Some((first, last))) = (forwarding, ids) else {
        return Ok(());
    };
    crate::storage::outbox::enqueue_live(tx, first, last, &f.target, f.latest_wins, now)
}

/// Runs each write in its own savepoint: one failing fails alone.
fn run_execs(tx: &mut Transaction, execs: &[WriteFn]) -> rusqlite::Result<ExecOutcomes> {
    let mut outcomes = Vec::with_capacity(execs.len());
    for write in execs {
        let sp = tx.savepoint()?;
        match write(&sp) {
            Ok(()) => {
                sp.commit()?;
                outcomes.push(Ok(()));
            }
            Err(e) => outcomes.push(Err(WriteFailure::job(e))),
        }
    }
    Ok(outcomes)
}

/// The rejection log, its per-minute counts and the proxy log.
fn store_logs(tx: &Transaction, logs: &PendingLogs) -> rusqlite::Result<()> {
    for r in &logs.rows {
        rejections::insert_rejection(tx, r)?;
    }
    if !logs.rows.is_empty() {
        rejections::trim_rejections(tx, REJECTIONS_KEPT)?;
    }
    for ((minute, peer, code), n) in &logs.counts {
        rejections::count_rejections(tx, *minute, peer, code, *n)?;
    }
    if !logs.counts.is_empty() {
        rejections::trim_rejection_counts(tx, crate::domain::now_ms())?;
    }
    for call in &logs.calls {
        proxy_log::insert(tx, call)?;
    }
    Ok(())
}
