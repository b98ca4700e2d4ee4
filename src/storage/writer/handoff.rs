//! Uploads go from the HTTP workers to the writer, and their answers come back, in
//! batches: a wake-up of another thread per upload each way cost more than a
//! quarter of the request path under load.
//!
//! An upload submitted on a worker waits in that worker's list until the worker's
//! event loop has run the other requests that are ready; then the whole list goes
//! to the writer as one job. After the commit the writer sends each worker its
//! answers in one message, and a task on that worker hands them to the waiting
//! requests, which wakes them without a system call.

use flume::{Sender, TrySendError};
use std::cell::RefCell;

use tokio::sync::{mpsc, oneshot};

use super::room::Slot;
use super::{Job, Queued, SubmitError};
use crate::storage::uploads::{NewUpload, Receipt};

pub(super) type Outcome = Result<Receipt, SubmitError>;
type Answers = Vec<(oneshot::Sender<Outcome>, Outcome)>;
type Inbox = mpsc::UnboundedSender<Answers>;

/// Where an upload's answer goes.
pub(super) struct UploadReply {
    tx: oneshot::Sender<Outcome>,
    /// The submitting worker's inbox; `None` for an upload submitted elsewhere.
    inbox: Option<Inbox>,
}

impl UploadReply {
    /// A reply sent straight to the waiting caller.
    pub(super) fn direct() -> (Self, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        (Self { tx, inbox: None }, rx)
    }
}

/// Answers every reply, one message per worker.
pub(super) fn answer(replies: impl IntoIterator<Item = (UploadReply, Outcome)>) {
    let mut by_worker: Vec<(Inbox, Answers)> = Vec::new();
    for (reply, outcome) in replies {
        let Some(inbox) = reply.inbox else {
            let _ = reply.tx.send(outcome);
            continue;
        };
        match by_worker.iter_mut().find(|(i, _)| i.same_channel(&inbox)) {
            Some((_, answers)) => answers.push((reply.tx, outcome)),
            None => by_worker.push((inbox, vec![(reply.tx, outcome)])),
        }
    }
    for (inbox, answers) in by_worker {
        // A worker whose loop has ended has no requests left waiting; answering
        // directly keeps this correct all the same.
        if let Err(mpsc::error::SendError(answers)) = inbox.send(answers) {
            for (tx, outcome) in answers {
                let _ = tx.send(outcome);
            }
        }
    }
}

/// Uploads waiting to be handed to one writer.
struct Pending {
    writer: u64,
    queue: Sender<Job>,
    uploads: Vec<Queued>,
}

struct Worker {
    inbox: Inbox,
    /// Usually one entry: a worker serves one service, with one writer.
    pending: Vec<Pending>,
}

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

/// Puts `upload` on this worker's list for the writer `writer` (fed by `queue`).
/// Must run inside a tokio `LocalSet`, as every actix-web worker does.
pub(super) fn submit_on_worker(
    writer: u64,
    queue: &Sender<Job>,
    upload: Box<NewUpload>,
    slot: Slot,
) -> oneshot::Receiver<Outcome> {
    let (tx, rx) = oneshot::channel();
    WORKER.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_some_and(|w| w.inbox.is_closed()) {
            *cell = None; // this thread's earlier event loop has ended
        }
        let worker = cell.get_or_insert_with(|| {
            let (inbox, mut answers) = mpsc::unbounded_channel::<Answers>();
            tokio::task::spawn_local(async move {
                while let Some(answers) = answers.recv().await {
                    for (tx, outcome) in answers {
                        let _ = tx.send(outcome);
                    }
                }
            });
            Worker {
                inbox,
                pending: Vec::new(),
            }
        });
        let queued = Queued {
            upload,
            reply: UploadReply {
                tx,
                inbox: Some(worker.inbox.clone()),
            },
            _slot: slot,
        };
        match worker.pending.iter_mut().find(|p| p.writer == writer) {
            Some(pending) => pending.uploads.push(queued),
            None => {
                worker.pending.push(Pending {
                    writer,
                    queue: queue.clone(),
                    uploads: vec![queued],
                });
                // Runs after the tasks already ready on this worker.
                tokio::task::spawn_local(async move { hand_over(writer) });
            }
        }
    });
    rx
}

fn hand_over(writer: u64) {
    let pending = WORKER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let worker = cell.as_mut()?;
        let at = worker.pending.iter().position(|p| p.writer == writer)?;
        Some(worker.pending.swap_remove(at))
    });
    let Some(pending) = pending else { return };
    let refused = match pending.queue.try_send(Job::Uploads(pending.uploads)) {
        Ok(()) => return,
        Err(TrySendError::Full(job)) => (job, SubmitError::Full),
        Err(TrySendError::Disconnected(job)) => (job, SubmitError::Closed),
    };
    if let (Job::Uploads(uploads), why) = refused {
        for queued in uploads {
            let _ = queued.reply.tx.send(Err(why.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;
    use crate::domain::signing::sha256_hex;
    use crate::storage::uploads::NewUpload;
    use crate::storage::writer::{spawn, SubmitError, WriterConfig, WriterHandle, WriterSettings};
    use crate::storage::SyncMode;

    fn upload(n: usize) -> NewUpload {
        let task = format!("task-{}", n % 7);
        NewUpload::for_test(n, &task, &format!("/d{n}"), [n as u32, 0, 0, 0])
    }

    /// Submits uploads `0..count` at once from one worker (a `LocalSet`, as on an
    /// actix-web worker) to a writer with room for `capacity`; each with its
    /// outcome, once the writer has stopped.
    fn submit_together(count: usize, capacity: usize) -> (Vec<(Vec<u8>, Outcome)>, WriterHandle) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("d.db");
        let config = WriterConfig {
            settings: WriterSettings {
                sync: SyncMode::Normal,
                queue_capacity: capacity,
                ..WriterSettings::DEFAULT
            },
            ..WriterConfig::default()
        };
        let (handle, thread) = spawn(&db, config).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let outcomes = local.block_on(&runtime, async {
            let waiting: Vec<_> = (0..count)
                .map(|n| {
                    let handle = handle.clone();
                    tokio::task::spawn_local(async move {
                        let body = upload(n).raw_body;
                        (body, handle.submit_on_worker(upload(n)).await)
                    })
                })
                .collect();
            let mut outcomes = Vec::new();
            for w in waiting {
                outcomes.push(w.await.unwrap());
            }
            outcomes
        });
        handle.shutdown();
        thread.join();
        (outcomes, handle)
    }

    /// Uploads submitted together on one worker go to the writer as one list, and
    /// each caller gets the receipt of its own upload, whatever the batching.
    #[test]
    fn each_upload_on_a_worker_gets_its_own_answer() {
        let (receipts, handle) = submit_together(300, 4096);
        let mut registry = prometheus_client::registry::Registry::default();
        handle.register_metrics(&mut registry);
        let mut scrape = String::new();
        prometheus_client::encoding::text::encode(&mut scrape, &registry).unwrap();
        let commits: f64 = scrape
            .lines()
            .find_map(|l| l.strip_prefix("sms_audit_writer_batch_uploads_count "))
            .unwrap()
            .parse()
            .unwrap();
        let mut ids: Vec<i64> = receipts
            .iter()
            .map(|(body, receipt)| {
                let receipt = receipt.as_ref().unwrap();
                assert_eq!(receipt.body_sha256, sha256_hex(body));
                receipt.id
            })
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 300);
        // Submitted in one turn of the event loop: far fewer commits than uploads.
        assert!(commits < 30.0, "{commits} commits for 300 uploads");
    }

    /// Past `--queue-capacity` an upload is refused at once, on a worker too, and
    /// the ones admitted are stored.
    #[test]
    fn a_full_queue_refuses_on_a_worker() {
        let (results, handle) = submit_together(25, 10);
        let results: Vec<_> = results.into_iter().map(|(_, r)| r).collect();
        let stored = results.iter().filter(|r| r.is_ok()).count();
        let full = results
            .iter()
            .filter(|r| matches!(r, Err(SubmitError::Full)))
            .count();
        assert_eq!((stored, full), (10, 15));
        assert_eq!(handle.queued_uploads(), 0);
    }
}
