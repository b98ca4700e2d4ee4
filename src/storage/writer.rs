//! The one writer thread. It owns the write connection and commits every job
//! waiting in its queue in one transaction (group commit), answering each upload
//! only after that commit. A bounded queue keeps memory bounded: when it is full,
//! callers get [`SubmitError::Full`] at once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use crate::domain::{AuthMethod, TaskId, Timestamp, UploadBody};
use crate::ledger::{EntryFields, Head};
use crate::signing::sha256_hex;
use crate::storage::{open_write, prepare, StorageError, SyncMode};

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 512;
/// How long the writer waits for more jobs before committing, at most
/// `LINGER_TIMES` times per batch.
const LINGER: std::time::Duration = std::time::Duration::from_micros(200);
const LINGER_TIMES: u32 = 1;
/// Rejection-log rows kept; older ones are trimmed.
pub const REJECTIONS_KEPT: i64 = 10_000;

/// An upload that passed every check, ready to be stored.
#[derive(Debug)]
pub struct NewUpload {
    pub request_id: String,
    pub task_id: TaskId,
    pub credential_name: String,
    pub auth_method: AuthMethod,
    pub project_id: Option<String>,
    pub peer_addr: String,
    pub forwarded_for: Option<String>,
    pub user_agent: Option<String>,
    pub raw_body: Vec<u8>,
    pub body: UploadBody,
}

/// What the writer answers for a stored upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub id: i64,
    pub entry_hash: String,
    pub body_sha256: String,
    pub received_at: Timestamp,
    pub duplicate_of: Option<i64>,
    /// Different + missing + extra files over all results.
    pub problems: i64,
    /// More problems than the task's previous upload.
    pub regressed: bool,
}

/// A refused request, for the bounded rejection log.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub at: Timestamp,
    pub peer_addr: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub error_code: String,
    pub credential_name: Option<String>,
    pub request_id: String,
}

type UploadReply = oneshot::Sender<Result<Receipt, String>>;
/// A write other than an upload (sessions, verification results), run inside the
/// writer's transaction. `Fn`, not `FnOnce`: a failed batch is stored again.
pub type WriteFn = Box<dyn Fn(&Connection) -> Result<(), rusqlite::Error> + Send>;
type ExecReply = oneshot::Sender<Result<(), String>>;

enum Job {
    Upload(Box<NewUpload>, UploadReply),
    Rejection(Rejection),
    /// Answers whether a write transaction can be opened right now.
    Ping(oneshot::Sender<Result<(), String>>),
    Exec(WriteFn, ExecReply),
    /// Commit what came before, then stop.
    Shutdown,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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
}

/// The writer thread and its checkpointer.
pub struct WriterThread {
    writer: JoinHandle<()>,
    checkpointer: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl WriterThread {
    /// Waits until the writer has committed its queue and exited (after
    /// [`WriterHandle::shutdown`], or once every handle is dropped).
    pub fn join(self) {
        if let Some((stop, thread)) = self.checkpointer {
            drop(stop);
            let _ = thread.join();
        }
        let _ = self.writer.join();
    }
}

/// How often WAL frames are copied back into the database file. Done off the
/// writer thread so that commits never wait for a checkpoint.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

fn spawn_checkpointer(
    path: &Path,
    sync: SyncMode,
) -> Result<(mpsc::Sender<()>, JoinHandle<()>), StorageError> {
    let conn = open_write(path, sync)?;
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("sms-audit-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY)
            {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "checkpoint failed");
                }
            }
        })
        .expect("spawning the checkpoint thread");
    Ok((stop, thread))
}

impl WriterHandle {
    pub async fn submit(&self, upload: NewUpload) -> Result<Receipt, SubmitError> {
        self.request(|reply| Job::Upload(Box::new(upload), reply))
            .await
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

    /// Records a rejection without waiting; dropped when the queue is full, since
    /// the log is best effort and must never slow the service down.
    pub fn log_rejection(&self, rejection: Rejection) {
        let _ = self.tx.try_send(Job::Rejection(rejection));
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

    pub async fn ping(&self) -> Result<(), SubmitError> {
        self.request(Job::Ping).await
    }
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

/// Starts the writer on `path` (already migrated by [`prepare`]).
pub fn spawn(
    path: &Path,
    sync: SyncMode,
    queue_capacity: usize,
    forwarding: Option<Forwarding>,
) -> Result<(WriterHandle, WriterThread), StorageError> {
    let conn = prepare(path, sync)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let head = Head::load(&conn)?;
    let checkpointer = spawn_checkpointer(path, sync)?;
    let (tx, rx) = mpsc::sync_channel(queue_capacity);
    let thread = std::thread::Builder::new()
        .name("sms-audit-writer".into())
        .spawn(move || Writer::new(conn, head, forwarding).run(rx))
        .expect("spawning the writer thread");
    Ok((
        WriterHandle { tx },
        WriterThread {
            writer: thread,
            checkpointer: Some(checkpointer),
        },
    ))
}

/// A writer that stores nothing: the ceiling in benchmarks (`serve --null-store`).
pub fn spawn_null(queue_capacity: usize) -> (WriterHandle, WriterThread) {
    let (tx, rx) = mpsc::sync_channel::<Job>(queue_capacity);
    let thread = std::thread::Builder::new()
        .name("sms-audit-null-writer".into())
        .spawn(move || {
            let mut id = 0;
            for job in rx {
                match job {
                    Job::Upload(upload, reply) => {
                        id += 1;
                        let hash = sha256_hex(&upload.raw_body);
                        let _ = reply.send(Ok(Receipt {
                            id,
                            entry_hash: hash.clone(),
                            body_sha256: hash,
                            received_at: now_ms(),
                            duplicate_of: None,
                            problems: 0,
                            regressed: false,
                        }));
                    }
                    Job::Ping(reply) => {
                        let _ = reply.send(Ok(()));
                    }
                    Job::Rejection(_) => {}
                    Job::Exec(_, reply) => {
                        let _ = reply.send(Ok(()));
                    }
                    Job::Shutdown => break,
                }
            }
        })
        .expect("spawning the null writer thread");
    (
        WriterHandle { tx },
        WriterThread {
            writer: thread,
            checkpointer: None,
        },
    )
}

pub fn now_ms() -> Timestamp {
    chrono::Utc::now().timestamp_millis()
}

/// The latest upload of a task, as the writer last stored it.
#[derive(Clone)]
struct LastUpload {
    id: i64,
    body_sha256: String,
    problems: i64,
}

/// Upload-count and time changes to one task's summary row within a batch.
struct TaskDelta {
    count: i64,
    first_at: Timestamp,
    last_at: Timestamp,
    last_id: i64,
    last_problems: i64,
    last_regressed: bool,
}

/// Tasks whose latest upload the writer remembers; cleared when it grows past this.
const LAST_UPLOAD_CACHE: usize = 100_000;

struct Writer {
    conn: Connection,
    head: Head,
    /// The writer is the only one that adds uploads, so this never goes stale.
    last_upload: HashMap<String, LastUpload>,
    forwarding: Option<Forwarding>,
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

impl Writer {
    fn new(conn: Connection, head: Head, forwarding: Option<Forwarding>) -> Self {
        Self {
            conn,
            head,
            last_upload: HashMap::new(),
            forwarding,
        }
    }

    fn run(mut self, rx: Receiver<Job>) {
        // Ends on Shutdown, or when every handle is dropped and the queue is empty.
        let mut stopping = false;
        while !stopping {
            let Ok(first) = rx.recv() else { break };
            let mut batch = Vec::new();
            let mut lingered = 0;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                if matches!(job, Job::Shutdown) {
                    stopping = true;
                    break;
                }
                batch.push(job);
                if batch.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                    if next.is_none() && lingered < LINGER_TIMES {
                        // More uploads are usually on their way under load; a short
                        // wait makes each commit (and its fsync) serve more of them.
                        lingered += 1;
                        next = rx.recv_timeout(LINGER).ok();
                    }
                }
            }
            if !batch.is_empty() {
                self.commit_batch(batch);
            }
        }
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
            tracing::warn!(error = %e, "final checkpoint failed");
        }
        tracing::debug!("writer stopped with its queue committed");
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        let mut uploads = Vec::new();
        let mut replies = Vec::new();
        let mut rejections = Vec::new();
        let mut pings = Vec::new();
        let mut execs = Vec::new();
        let mut exec_replies = Vec::new();
        for job in batch {
            match job {
                Job::Upload(upload, reply) => {
                    uploads.push(upload);
                    replies.push(reply);
                }
                Job::Rejection(r) => rejections.push(r),
                Job::Ping(reply) => pings.push(reply),
                Job::Exec(write, reply) => {
                    execs.push(write);
                    exec_replies.push(reply);
                }
                // run() stops at Shutdown instead of batching it.
                Job::Shutdown => {}
            }
        }
        // Fast path: the whole batch in one go. Should any upload fail, store the
        // batch again with a savepoint per upload, so that one fails alone.
        let result = match self.store(&uploads, &execs, &rejections, false) {
            Err(StoreError::Upload(_)) => self.store(&uploads, &execs, &rejections, true),
            other => other,
        };
        if let (Ok(_), Some(f)) = (&result, &self.forwarding) {
            if !uploads.is_empty() {
                f.wake.notify_one();
            }
        }
        match result {
            Ok((outcomes, exec_outcomes)) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
                for (reply, outcome) in exec_replies.into_iter().zip(exec_outcomes) {
                    let _ = reply.send(outcome);
                }
                for reply in pings {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed");
                for reply in replies {
                    let _ = reply.send(Err(format!("commit failed: {e}")));
                }
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
        rejections: &[Rejection],
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
        rejections: &[Rejection],
        isolate: bool,
    ) -> Result<(Outcomes, ExecOutcomes), StoreError> {
        if self.last_upload.len() > LAST_UPLOAD_CACHE {
            self.last_upload.clear();
        }
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(uploads.len());
        let mut deltas: HashMap<&str, TaskDelta> = HashMap::new();
        // Ids are given in order and only to stored uploads: one contiguous range.
        let mut stored_ids: Option<(i64, i64)> = None;
        for upload in uploads {
            let task_id = upload.task_id.as_str();
            let previous = match self.last_upload.get(task_id) {
                Some(last) => Some(last.clone()),
                None => last_upload_of(&tx, task_id)?,
            };
            let stored = if isolate {
                let sp = tx.savepoint()?;
                match insert_upload(&sp, &self.head, previous.as_ref(), upload) {
                    Ok(receipt) => sp.commit().map(|_| Ok(receipt))?,
                    Err(e) => {
                        drop(sp); // rolls back to the savepoint
                        tracing::error!(error = %e, task_id, "storing an upload failed");
                        Err(e.to_string())
                    }
                }
            } else {
                Ok(insert_upload(&tx, &self.head, previous.as_ref(), upload)
                    .map_err(StoreError::Upload)?)
            };
            if let Ok(receipt) = &stored {
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
                let delta = deltas.entry(task_id).or_insert(TaskDelta {
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
            update_task_summary(&tx, task_id, delta)?;
        }
        if let (Some(f), Some((first, last))) = (&self.forwarding, stored_ids) {
            crate::outbox::enqueue_live(
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
        for r in rejections {
            insert_rejection(&tx, r)?;
        }
        if !rejections.is_empty() {
            tx.execute(
                "DELETE FROM rejections WHERE id <= (SELECT max(id) FROM rejections) - ?1",
                params![REJECTIONS_KEPT],
            )?;
        }
        tx.commit()?;
        Ok((outcomes, exec_outcomes))
    }
}

fn last_upload_of(conn: &Connection, task_id: &str) -> Result<Option<LastUpload>, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT u.id, u.body_sha256, u.different_files + u.target_miss_files + u.target_more_files
         FROM tasks t JOIN uploads u ON u.id = t.last_upload_id
         WHERE t.task_id = ?1",
    )?
    .query_row(params![task_id], |r| {
        Ok(LastUpload {
            id: r.get(0)?,
            body_sha256: r.get(1)?,
            problems: r.get(2)?,
        })
    })
    .optional()
}

fn update_task_summary(
    conn: &Connection,
    task_id: &str,
    d: &TaskDelta,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO tasks (task_id, registered_at, registered_by, upload_count,
            first_upload_at, last_upload_at, last_upload_id, last_problems, last_regressed)
         VALUES (?1, ?2, 'upload', ?3, ?2, ?4, ?5, ?6, ?7)
         ON CONFLICT (task_id) DO UPDATE SET
            upload_count = upload_count + excluded.upload_count,
            first_upload_at = coalesce(first_upload_at, excluded.first_upload_at),
            last_upload_at = excluded.last_upload_at,
            last_upload_id = excluded.last_upload_id,
            last_problems = excluded.last_problems,
            last_regressed = excluded.last_regressed",
    )?
    .execute(params![
        task_id,
        d.first_at,
        d.count,
        d.last_at,
        d.last_id,
        d.last_problems,
        d.last_regressed
    ])?;
    Ok(())
}

/// Inserts one upload and its result rows as the entry after `head`.
fn insert_upload(
    conn: &Connection,
    head: &Head,
    previous: Option<&LastUpload>,
    upload: &NewUpload,
) -> Result<Receipt, rusqlite::Error> {
    let id = head.id + 1;
    // Never earlier than the previous entry, so the chain reads in time order.
    let received_at = now_ms().max(head.received_at);
    let body_sha256 = sha256_hex(&upload.raw_body);
    let task_id = upload.task_id.as_str();
    let duplicate_of = previous
        .filter(|p| p.body_sha256 == body_sha256)
        .map(|p| p.id);

    let entry_hash = EntryFields {
        id,
        request_id: &upload.request_id,
        task_id,
        received_at,
        credential_name: &upload.credential_name,
        auth_method: upload.auth_method.as_str(),
        body_sha256: &body_sha256,
        prev_hash: &head.hash,
    }
    .entry_hash();

    let totals = upload.body.totals();
    let problems = totals[1] + totals[2] + totals[3];
    let regressed = previous.is_some_and(|p| problems > p.problems);
    conn.prepare_cached(
        "INSERT INTO uploads (id, request_id, task_id, received_at, credential_name,
            auth_method, project_id, peer_addr, forwarded_for, user_agent, raw_body,
            body_sha256, finished_time, result_count, total_files, different_files,
            target_miss_files, target_more_files, duplicate_of, prev_hash, entry_hash,
            regressed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
            ?17, ?18, ?19, ?20, ?21, ?22)",
    )?
    .execute(params![
        id,
        upload.request_id,
        task_id,
        received_at,
        upload.credential_name,
        upload.auth_method.as_str(),
        upload.project_id,
        upload.peer_addr,
        upload.forwarded_for,
        upload.user_agent,
        upload.raw_body,
        body_sha256,
        upload.body.finished_time,
        upload.body.results.len() as i64,
        totals[0],
        totals[1],
        totals[2],
        totals[3],
        duplicate_of,
        head.hash,
        entry_hash,
        regressed,
    ])?;

    let mut insert_result = conn.prepare_cached(
        "INSERT INTO upload_results (upload_id, ordinal, dir_check, num_total_files,
            num_different_files, num_target_miss_files, num_target_more_files)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (ordinal, r) in upload.body.results.iter().enumerate() {
        let [t, d, m, x] = r.counts().map(|c| c.get());
        insert_result.execute(params![
            id,
            ordinal as i64,
            r.dir_check.as_str(),
            t,
            d,
            m,
            x
        ])?;
    }

    Ok(Receipt {
        id,
        entry_hash,
        body_sha256,
        received_at,
        duplicate_of,
        problems,
        regressed,
    })
}

fn insert_rejection(conn: &Connection, r: &Rejection) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO rejections (at, peer_addr, method, path, status, error_code,
            credential_name, request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        r.at,
        r.peer_addr,
        r.method,
        r.path,
        r.status,
        r.error_code,
        r.credential_name,
        r.request_id
    ])?;
    Ok(())
}
