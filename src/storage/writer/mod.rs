//! The one writer thread. It owns the write connection and commits every job
//! waiting in its queue in one transaction (group commit), answering each upload
//! only after that commit. A bounded queue keeps memory bounded: when it is full,
//! callers get [`SubmitError::Full`] at once.
//!
//! [`WriterHandle`] is what the rest of the service holds; the batching loop is in
//! `batch`, the statements it runs in `storage::uploads`.

mod batch;
mod checkpoint;
mod handoff;
mod logs;
mod metrics;
mod null;

use std::path::Path;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::domain::{now_ms, Timestamp};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::uploads::{NewUpload, Receipt, Rejection};
use super::{prepare, StorageError, SyncMode, WalCheckpoints};
use logs::LogBuffer;

pub use metrics::WriterMetrics;
pub use null::spawn_null;

/// Rejection-log rows kept; older ones are trimmed.
pub const REJECTIONS_KEPT: i64 = 10_000;

use handoff::UploadReply;
/// A write other than an upload (sessions, verification results), run inside the
/// writer's transaction. `Fn`, not `FnOnce`: a failed batch is stored again.
pub type WriteFn = Box<dyn Fn(&Connection) -> Result<(), rusqlite::Error> + Send>;
type ExecReply = oneshot::Sender<Result<(), String>>;

enum Job {
    Upload(Box<NewUpload>, UploadReply),
    /// The uploads one HTTP worker gathered (see `handoff`).
    Uploads(Vec<(Box<NewUpload>, UploadReply)>),
    /// Answers whether a write transaction can be opened right now.
    Ping(oneshot::Sender<Result<(), String>>),
    Exec(WriteFn, ExecReply),
    /// Commit what came before, then stop.
    Shutdown,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the write queue is full; retry shortly")]
    Full,
    #[error("the service is shutting down")]
    Closed,
    #[error("storage failed: {0}")]
    Failed(String),
}

/// The handle request handlers use; cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    tx: SyncSender<Job>,
    /// Tells this writer's uploads apart in a worker's hand-off list.
    id: u64,
    /// Most uploads waiting (`--queue-capacity`).
    capacity: usize,
    rejections: Arc<LogBuffer>,
    trouble: Arc<Mutex<Option<String>>>,
    metrics: WriterMetrics,
}

/// The writer thread and its checkpointer.
pub struct WriterThread {
    writer: JoinHandle<()>,
    checkpointer: Option<checkpoint::Checkpointer>,
}

impl WriterThread {
    /// Waits until the writer has committed its queue and exited (after
    /// [`WriterHandle::shutdown`], or once every handle is dropped).
    pub fn join(self) {
        if let Some(checkpointer) = self.checkpointer {
            checkpointer.stop();
        }
        let _ = self.writer.join();
    }
}

impl WriterHandle {
    /// Queues `upload` and waits until it is committed (or refused).
    pub async fn submit(&self, upload: NewUpload) -> Result<Receipt, SubmitError> {
        self.enqueue(upload, false).await
    }

    /// [`submit`](Self::submit) for a request handler on an HTTP worker (inside a
    /// tokio `LocalSet`): the worker's uploads go to the writer together, and
    /// their answers come back together (`handoff`).
    pub async fn submit_on_worker(&self, upload: NewUpload) -> Result<Receipt, SubmitError> {
        self.enqueue(upload, true).await
    }

    async fn enqueue(&self, upload: NewUpload, on_worker: bool) -> Result<Receipt, SubmitError> {
        // Counted before it is sent, so that the writer never takes it first.
        if self.metrics.queued_uploads.inc() >= self.capacity as i64 {
            self.metrics.queued_uploads.dec();
            return Err(SubmitError::Full);
        }
        let answer = if on_worker {
            handoff::submit_on_worker(self.id, &self.tx, Box::new(upload))
        } else {
            let (reply, answer) = UploadReply::direct();
            match self.tx.try_send(Job::Upload(Box::new(upload), reply)) {
                Ok(()) => answer,
                Err(e) => {
                    self.metrics.queued_uploads.dec();
                    return Err(match e {
                        TrySendError::Full(_) => SubmitError::Full,
                        TrySendError::Disconnected(_) => SubmitError::Closed,
                    });
                }
            }
        };
        let result = answer.await.unwrap_or(Err(SubmitError::Closed));
        if matches!(result, Err(SubmitError::Full | SubmitError::Closed)) {
            self.metrics.queued_uploads.dec();
        }
        result
    }

    /// The writer's metrics, for `/metrics`.
    pub fn metrics(&self) -> &WriterMetrics {
        &self.metrics
    }

    /// Queues a job without waiting for room, then waits for its answer.
    async fn request<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Job,
    ) -> Result<T, SubmitError> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send(job(tx)).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full,
            TrySendError::Disconnected(_) => SubmitError::Closed,
        })?;
        match rx.await {
            Ok(result) => result.map_err(SubmitError::Failed),
            Err(_) => Err(SubmitError::Closed),
        }
    }

    /// Records a rejection without waiting, never in the upload queue (see
    /// `rejections`): the log is lossy and must never slow the service down.
    pub fn log_rejection(&self, rejection: Rejection) {
        self.rejections.record(rejection);
    }

    /// Records a proxied call without waiting, never in the upload queue (see
    /// `logs`); dropped (and logged as an error) only when the database has been
    /// failing for so long that the calls waiting for it fill their buffer.
    pub fn log_proxy_call(&self, call: super::proxy_log::ProxyCall) {
        self.rejections.record_call(call)
    }

    /// [`execute`](Self::execute) for writes that must not be lost: when the queue
    /// is full, waits for room (checking every millisecond) instead of failing.
    pub async fn execute_when_room(
        &self,
        write: impl Fn(&Connection) -> Result<(), rusqlite::Error> + Send + 'static,
    ) -> Result<(), SubmitError> {
        let (tx, rx) = oneshot::channel();
        let mut job = Job::Exec(Box::new(write), tx);
        loop {
            match self.tx.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    job = back;
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                Err(TrySendError::Disconnected(_)) => return Err(SubmitError::Closed),
            }
        }
        match rx.await {
            Ok(result) => result.map_err(SubmitError::Failed),
            Err(_) => Err(SubmitError::Closed),
        }
    }

    /// Runs `write` in the writer's next transaction; answers after the commit.
    pub async fn execute(
        &self,
        write: impl Fn(&Connection) -> Result<(), rusqlite::Error> + Send + 'static,
    ) -> Result<(), SubmitError> {
        self.request(|reply| Job::Exec(Box::new(write), reply))
            .await
    }

    /// [`execute`](Self::execute) for threads outside the async runtime; waits for
    /// room in the queue.
    pub fn execute_blocking(
        &self,
        write: impl Fn(&Connection) -> Result<(), rusqlite::Error> + Send + 'static,
    ) -> Result<(), SubmitError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Exec(Box::new(write), tx))
            .map_err(|_| SubmitError::Closed)?;
        rx.blocking_recv()
            .map_err(|_| SubmitError::Closed)?
            .map_err(SubmitError::Failed)
    }

    /// Asks the writer to commit everything queued so far and stop. Blocks while
    /// the queue is full.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Job::Shutdown);
    }

    /// Whether a write transaction can be opened now, and the last uploads were
    /// stored (or why they were not: a full disk, say).
    pub async fn ping(&self) -> Result<(), SubmitError> {
        self.request(Job::Ping).await?;
        match self.trouble.lock().clone() {
            Some(why) => Err(SubmitError::Failed(why)),
            None => Ok(()),
        }
    }
}

fn next_writer_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Live forwarding: every stored upload gets a delivery to `target` in the same
/// transaction, and the sender is woken after the commit.
#[derive(Clone)]
pub struct Forwarding {
    pub target: String,
    pub wake: std::sync::Arc<tokio::sync::Notify>,
    /// Latest wins: a task's undelivered live delivery is superseded by the next
    /// upload of the task, in the same transaction.
    pub latest_wins: bool,
}

/// What the writer stamps uploads with (`received_at`, ms since the epoch); never
/// earlier than the entry before, whatever it says.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Starts the writer on `path` (already migrated by [`prepare`]).
pub fn spawn(
    path: &Path,
    sync: SyncMode,
    wal_checkpoints: WalCheckpoints,
    queue_capacity: usize,
    forwarding: Option<Forwarding>,
) -> Result<(WriterHandle, WriterThread), StorageError> {
    spawn_with_clock(
        path,
        sync,
        queue_capacity,
        forwarding,
        Arc::new(now_ms),
        wal_checkpoints,
    )
}

/// [`spawn`] with another clock (synthetic histories: `dev seed --span`, tests).
pub fn spawn_with_clock(
    path: &Path,
    sync: SyncMode,
    queue_capacity: usize,
    forwarding: Option<Forwarding>,
    clock: Clock,
    wal_checkpoints: WalCheckpoints,
) -> Result<(WriterHandle, WriterThread), StorageError> {
    let conn = prepare(path, sync)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // A database from before the Merkle tree gets its tree now, once.
    let added = {
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        let added = super::tree::catch_up(&tx)?;
        tx.commit()?;
        added
    };
    if added > 0 {
        tracing::info!(
            uploads = added,
            "added the existing uploads to the Merkle tree"
        );
    }
    // And one from before fleet history gets its trend and directories.
    let tx = rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
    if super::fleet::catch_up(&tx)? {
        tracing::info!("built the fleet's trend and directories from the existing uploads");
    }
    tx.commit()?;
    let head = super::ledger::head(&conn)?;
    let checkpointer = match wal_checkpoints {
        WalCheckpoints::Passive => Some(checkpoint::spawn(path, sync)?),
        WalCheckpoints::Off => None,
    };
    let (tx, rx) = mpsc::sync_channel(queue_capacity);
    let rejections = Arc::new(LogBuffer::default());
    let trouble = Arc::<Mutex<Option<String>>>::default();
    let (log, writer_trouble) = (rejections.clone(), trouble.clone());
    let metrics = WriterMetrics::default();
    let writer_metrics = metrics.clone();
    let thread = std::thread::Builder::new()
        .name("sms-audit-writer".into())
        .spawn(move || {
            let shared = batch::Shared {
                rejections: log,
                trouble: writer_trouble,
                metrics: writer_metrics,
            };
            batch::Writer::new(conn, head, forwarding, shared, clock, wal_checkpoints).run(rx)
        })
        .expect("spawning the writer thread");
    Ok((
        WriterHandle {
            tx,
            id: next_writer_id(),
            capacity: queue_capacity,
            rejections,
            trouble,
            metrics: metrics.clone(),
        },
        WriterThread {
            writer: thread,
            checkpointer,
        },
    ))
}
