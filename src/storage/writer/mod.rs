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
mod room;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use flume::{Sender, TrySendError};
use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::rejections::Rejection;
use super::uploads::{NewUpload, Receipt};
use super::{prepare, StorageError, SyncMode, WalCheckpoints};
use crate::domain::{now_ms, Timestamp};
use handoff::UploadReply;
use logs::LogBuffer;
use room::{QueueRoom, Slot};

pub use metrics::WriterMetrics;
pub use null::spawn_null;

/// Rejection-log rows kept; older ones are trimmed.
pub const REJECTIONS_KEPT: i64 = 10_000;

/// A write other than an upload (sessions, verification results), run inside the
/// writer's transaction. `Fn`, not `FnOnce`: a failed batch is stored again.
pub type WriteFn = Box<dyn Fn(&Connection) -> Result<(), rusqlite::Error> + Send>;
type ExecReply = oneshot::Sender<Result<(), WriteFailure>>;

/// An upload in the queue, holding its slot until the writer takes it.
struct Queued {
    upload: Box<NewUpload>,
    reply: UploadReply,
    _slot: Slot,
}

enum Job {
    Upload(Queued),
    /// The uploads one HTTP worker gathered (see `handoff`).
    Uploads(Vec<Queued>),
    /// Answers whether a write transaction can be opened right now.
    Ping(oneshot::Sender<Result<(), WriteFailure>>),
    Exec(WriteFn, ExecReply),
    /// Commit what came before, then stop.
    Shutdown,
}

/// Why a job given to the writer was not done.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// No room in the queue (`--queue-capacity`).
    #[error("the write queue is full; retry shortly")]
    Full,
    /// The writer has stopped.
    #[error("the service is shutting down")]
    Closed,
    /// The database refused it.
    #[error("storage failed: {0}")]
    Failed(#[from] WriteFailure),
}

/// Why the writer could not store a job: SQLite's error, and whether the whole
/// batch failed with it. Shared (`Arc`) because one failed commit answers every
/// job of its batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteFailure {
    /// The batch's transaction failed (the database locked, the disk full, …):
    /// nothing of the batch was kept.
    #[error("commit failed: {0}")]
    Commit(Arc<rusqlite::Error>),
    /// This job's own statements failed; the rest of its batch was kept.
    #[error("{0}")]
    Job(Arc<rusqlite::Error>),
}

impl WriteFailure {
    fn job(e: rusqlite::Error) -> Self {
        WriteFailure::Job(Arc::new(e))
    }
}

impl<T> From<TrySendError<T>> for SubmitError {
    fn from(e: TrySendError<T>) -> Self {
        match e {
            TrySendError::Full(_) => SubmitError::Full,
            TrySendError::Disconnected(_) => SubmitError::Closed,
        }
    }
}

/// The handle request handlers use; cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    tx: Sender<Job>,
    /// Tells this writer's uploads apart in a worker's hand-off list.
    id: u64,
    /// Room for `--queue-capacity` uploads waiting.
    room: QueueRoom,
    logs: Arc<LogBuffer>,
    last_failure: Arc<Mutex<Option<WriteFailure>>>,
    metrics: WriterMetrics,
}

/// The writer thread and its checkpointer.
pub struct WriterThread {
    writer: JoinHandle<()>,
    checkpointer: Option<checkpoint::Checkpointer>,
    #[cfg(test)]
    wal_too_long: checkpoint::WalTooLong,
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
        let slot = self.room.take()?;
        let upload = Box::new(upload);
        let answer = if on_worker {
            handoff::submit_on_worker(self.id, &self.tx, upload, slot)
        } else {
            let (reply, answer) = UploadReply::direct();
            let queued = Queued {
                upload,
                reply,
                _slot: slot,
            };
            self.tx.try_send(Job::Upload(queued))?;
            answer
        };
        answer.await.unwrap_or(Err(SubmitError::Closed))
    }

    /// Uploads waiting for the writer and not yet taken into a batch.
    pub fn queued_uploads(&self) -> usize {
        self.room.queued()
    }

    /// Adds the writer's metrics to `/metrics`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
        registry.register_collector(Box::new(self.room.clone()));
    }

    /// Queues a job without waiting for room, then waits for its answer.
    async fn request<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, WriteFailure>>) -> Job,
    ) -> Result<T, SubmitError> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send(job(tx))?;
        answer_of(rx.await)
    }

    /// Records a rejection without waiting, never in the upload queue (see
    /// `rejections`): the log is lossy and must never slow the service down.
    pub fn log_rejection(&self, rejection: Rejection) {
        self.logs.record(rejection);
    }

    /// Records a proxied call without waiting, never in the upload queue (see
    /// `logs`); dropped (and logged as an error) only when the database has been
    /// failing for so long that the calls waiting for it fill their buffer.
    pub fn log_proxy_call(&self, call: super::proxy_log::ProxyCall) {
        self.logs.record_call(call)
    }

    /// [`execute`](Self::execute) for writes that must not be lost: when the queue
    /// is full, waits for room instead of failing.
    pub async fn execute_when_room(
        &self,
        write: impl Fn(&Connection) -> Result<(), rusqlite::Error> + Send + 'static,
    ) -> Result<(), SubmitError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send_async(Job::Exec(Box::new(write), tx))
            .await
            .map_err(|_| SubmitError::Closed)?;
        answer_of(rx.await)
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
        Ok(rx.blocking_recv().map_err(|_| SubmitError::Closed)??)
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
        match self.last_failure.lock().clone() {
            Some(why) => Err(SubmitError::Failed(why)),
            None => Ok(()),
        }
    }
}

fn answer_of<T>(
    answer: Result<Result<T, WriteFailure>, oneshot::error::RecvError>,
) -> Result<T, SubmitError> {
    match answer {
        Ok(result) => result.map_err(SubmitError::Failed),
        Err(_) => Err(SubmitError::Closed),
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
    /// The endpoint deliveries go to.
    pub target: String,
    /// Wakes the sender after a commit.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
    /// Latest wins: a task's undelivered live delivery is superseded by the next
    /// upload of the task, in the same transaction.
    pub latest_wins: bool,
}

/// What the writer stamps uploads with (`received_at`, ms since the epoch); never
/// earlier than the entry before, whatever it says.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The writer's flags, with their defaults (`serve`'s too).
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    /// `--sync`.
    pub sync: SyncMode,
    /// `--checkpoint-mode`.
    pub wal_checkpoints: WalCheckpoints,
    /// Most uploads waiting for a commit (`--queue-capacity`).
    pub queue_capacity: usize,
}

impl WriterSettings {
    /// Full sync, passive WAL checkpoints, room for 4,096 waiting uploads.
    pub const DEFAULT: WriterSettings = WriterSettings {
        sync: SyncMode::Full,
        wal_checkpoints: WalCheckpoints::Passive,
        queue_capacity: 4096,
    };
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How the writer stores: its settings, live forwarding and the clock.
#[derive(Clone)]
pub struct WriterConfig {
    /// Durability and queue settings.
    pub settings: WriterSettings,
    /// Live forwarding, if on.
    pub forwarding: Option<Forwarding>,
    /// Synthetic histories (`dev seed --span`, tests) bring their own.
    pub clock: Clock,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            settings: WriterSettings::DEFAULT,
            forwarding: None,
            clock: Arc::new(now_ms),
        }
    }
}

/// Starts the writer on `path` (already migrated by [`prepare`]).
pub fn spawn(
    path: &Path,
    config: WriterConfig,
) -> Result<(WriterHandle, WriterThread), StorageError> {
    let WriterSettings {
        sync,
        wal_checkpoints,
        queue_capacity,
    } = config.settings;
    let conn = prepare(path, sync)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // A WAL started over is cut back to twice the length that starts it over:
    // under steady writes its file keeps its pages, which commits overwrite.
    conn.pragma_update(None, "journal_size_limit", checkpoint::WAL_FILE_LIMIT)?;
    catch_up(&conn)?;
    let head = super::ledger::head(&conn)?;
    let wal_too_long = checkpoint::WalTooLong::default();
    let checkpointer = match wal_checkpoints {
        WalCheckpoints::Passive => Some(checkpoint::spawn(path, sync, wal_too_long.clone())?),
        WalCheckpoints::Off => None,
    };
    let (tx, rx) = flume::bounded(queue_capacity);
    let handle = WriterHandle {
        tx,
        id: next_writer_id(),
        room: QueueRoom::new(queue_capacity),
        logs: Arc::default(),
        last_failure: Arc::default(),
        metrics: WriterMetrics::default(),
    };
    let shared = batch::HandleState {
        logs: handle.logs.clone(),
        last_failure: handle.last_failure.clone(),
        metrics: handle.metrics.clone(),
        wal_too_long: wal_too_long.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("sms-audit-writer".into())
        .spawn(move || batch::Writer::new(conn, head, config, shared).run(rx))
        .expect("spawning the writer thread");
    let thread = WriterThread {
        writer: thread,
        checkpointer,
        #[cfg(test)]
        wal_too_long,
    };
    Ok((handle, thread))
}

/// Brings what older versions did not keep up to date: the Merkle tree, the
/// fleet's trend and directories.
fn catch_up(conn: &Connection) -> Result<(), StorageError> {
    let immediate = rusqlite::TransactionBehavior::Immediate;
    let tx = rusqlite::Transaction::new_unchecked(conn, immediate)?;
    let added = super::tree::catch_up(&tx)?;
    tx.commit()?;
    if added > 0 {
        tracing::info!(
            uploads = added,
            "added the existing uploads to the Merkle tree"
        );
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, immediate)?;
    if super::fleet::catch_up(&tx)? {
        tracing::info!("built the fleet's trend and directories from the existing uploads");
    }
    tx.commit()?;
    Ok(())
}
