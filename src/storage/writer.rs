//! The one writer thread. It owns the write connection and commits every job
//! waiting in its queue in one transaction (group commit), answering each upload
//! only after that commit. A bounded queue keeps memory bounded: when it is full,
//! callers get [`SubmitError::Full`] at once.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use crate::domain::{AuthMethod, TaskId, Timestamp, UploadBody};
use crate::ledger::{EntryFields, Head};
use crate::signing::sha256_hex;
use crate::storage::{prepare, StorageError, SyncMode};

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 512;
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
    pub received_at: Timestamp,
    pub duplicate_of: Option<i64>,
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

enum Job {
    Upload(Box<NewUpload>, UploadReply),
    Rejection(Rejection),
    /// Answers whether a write transaction can be opened right now.
    Ping(oneshot::Sender<Result<(), String>>),
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

/// Joins the writer thread once every handle is dropped.
pub struct WriterThread(Option<JoinHandle<()>>);

impl WriterThread {
    /// Waits until the queue is drained and the thread has exited.
    pub fn join(mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

impl WriterHandle {
    pub async fn submit(&self, upload: NewUpload) -> Result<Receipt, SubmitError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .try_send(Job::Upload(Box::new(upload), tx))
            .map_err(|e| match e {
                TrySendError::Full(_) => SubmitError::Full,
                TrySendError::Disconnected(_) => SubmitError::Closed,
            })?;
        match rx.await {
            Ok(result) => result.map_err(SubmitError::Failed),
            Err(_) => Err(SubmitError::Failed("the writer stopped".into())),
        }
    }

    /// Records a rejection without waiting; dropped when the queue is full, since
    /// the log is best effort and must never slow the service down.
    pub fn log_rejection(&self, rejection: Rejection) {
        let _ = self.tx.try_send(Job::Rejection(rejection));
    }

    /// Asks the writer to commit everything queued so far and stop. Blocks while
    /// the queue is full.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Job::Shutdown);
    }

    pub async fn ping(&self) -> Result<(), SubmitError> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send(Job::Ping(tx)).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full,
            TrySendError::Disconnected(_) => SubmitError::Closed,
        })?;
        match rx.await {
            Ok(result) => result.map_err(SubmitError::Failed),
            Err(_) => Err(SubmitError::Closed),
        }
    }
}

/// Starts the writer on `path` (already migrated by [`prepare`]).
pub fn spawn(
    path: &Path,
    sync: SyncMode,
    queue_capacity: usize,
) -> Result<(WriterHandle, WriterThread), StorageError> {
    let conn = prepare(path, sync)?;
    let head = Head::load(&conn)?;
    let (tx, rx) = mpsc::sync_channel(queue_capacity);
    let thread = std::thread::Builder::new()
        .name("sms-audit-writer".into())
        .spawn(move || Writer { conn, head }.run(rx))
        .expect("spawning the writer thread");
    Ok((WriterHandle { tx }, WriterThread(Some(thread))))
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
                        let _ = reply.send(Ok(Receipt {
                            id,
                            entry_hash: sha256_hex(&upload.raw_body),
                            received_at: now_ms(),
                            duplicate_of: None,
                        }));
                    }
                    Job::Ping(reply) => {
                        let _ = reply.send(Ok(()));
                    }
                    Job::Rejection(_) => {}
                    Job::Shutdown => break,
                }
            }
        })
        .expect("spawning the null writer thread");
    (WriterHandle { tx }, WriterThread(Some(thread)))
}

pub fn now_ms() -> Timestamp {
    chrono::Utc::now().timestamp_millis()
}

struct Writer {
    conn: Connection,
    head: Head,
}

impl Writer {
    fn run(mut self, rx: Receiver<Job>) {
        // Ends on Shutdown, or when every handle is dropped and the queue is empty.
        let mut stopping = false;
        while !stopping {
            let Ok(first) = rx.recv() else { break };
            let mut batch = Vec::new();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                if matches!(job, Job::Shutdown) {
                    stopping = true;
                    break;
                }
                batch.push(job);
                if batch.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.commit_batch(batch);
            }
        }
        tracing::debug!("writer stopped with its queue committed");
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        let start_head = self.head.clone();
        let mut outcomes: Vec<(UploadReply, Result<Receipt, String>)> = Vec::new();
        let mut pings = Vec::new();
        let result = (|| -> Result<(), rusqlite::Error> {
            let mut tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut logged_rejection = false;
            for job in batch {
                match job {
                    Job::Upload(upload, reply) => {
                        // A savepoint per upload: one bad upload fails alone.
                        let mut sp = tx.savepoint()?;
                        let outcome = insert_upload(&sp, &mut self.head, &upload);
                        match outcome {
                            Ok(receipt) => {
                                sp.commit()?;
                                outcomes.push((reply, Ok(receipt)));
                            }
                            Err(e) => {
                                sp.rollback()?;
                                drop(sp);
                                tracing::error!(error = %e, task_id = %upload.task_id, "storing an upload failed");
                                outcomes.push((reply, Err(e.to_string())));
                            }
                        }
                    }
                    Job::Rejection(r) => {
                        insert_rejection(&tx, &r)?;
                        logged_rejection = true;
                    }
                    Job::Ping(reply) => pings.push(reply),
                    // run() stops at Shutdown instead of batching it.
                    Job::Shutdown => {}
                }
            }
            if logged_rejection {
                tx.execute(
                    "DELETE FROM rejections WHERE id <= (SELECT max(id) FROM rejections) - ?1",
                    params![REJECTIONS_KEPT],
                )?;
            }
            tx.commit()
        })();

        match result {
            Ok(()) => {
                for (reply, outcome) in outcomes {
                    let _ = reply.send(outcome);
                }
                for reply in pings {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed");
                self.head = start_head;
                for (reply, _) in outcomes {
                    let _ = reply.send(Err(format!("commit failed: {e}")));
                }
                for reply in pings {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

fn insert_upload(
    conn: &Connection,
    head: &mut Head,
    upload: &NewUpload,
) -> Result<Receipt, rusqlite::Error> {
    let id = head.id + 1;
    // Never earlier than the previous entry, so the chain reads in time order.
    let received_at = now_ms().max(head.received_at);
    let body_sha256 = sha256_hex(&upload.raw_body);
    let task_id = upload.task_id.as_str();

    let previous: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT u.id, u.body_sha256 FROM tasks t JOIN uploads u ON u.id = t.last_upload_id
             WHERE t.task_id = ?1",
        )?
        .query_row(params![task_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let duplicate_of = previous
        .filter(|(_, h)| *h == body_sha256)
        .map(|(id, _)| id);

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
    conn.prepare_cached(
        "INSERT INTO uploads (id, request_id, task_id, received_at, credential_name,
            auth_method, project_id, peer_addr, forwarded_for, user_agent, raw_body,
            body_sha256, finished_time, result_count, total_files, different_files,
            target_miss_files, target_more_files, duplicate_of, prev_hash, entry_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
            ?17, ?18, ?19, ?20, ?21)",
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

    conn.prepare_cached(
        "INSERT INTO tasks (task_id, registered_at, registered_by, upload_count,
            first_upload_at, last_upload_at, last_upload_id)
         VALUES (?1, ?2, 'upload', 1, ?2, ?2, ?3)
         ON CONFLICT (task_id) DO UPDATE SET
            upload_count = upload_count + 1,
            first_upload_at = coalesce(first_upload_at, excluded.first_upload_at),
            last_upload_at = excluded.last_upload_at,
            last_upload_id = excluded.last_upload_id",
    )?
    .execute(params![task_id, received_at, id])?;

    *head = Head {
        id,
        hash: entry_hash.clone(),
        received_at,
    };
    Ok(Receipt {
        id,
        entry_hash,
        received_at,
        duplicate_of,
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
