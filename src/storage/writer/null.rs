//! A writer that stores nothing, for benchmarks.

use std::sync::mpsc;

use super::{handoff, Job, WriterHandle, WriterThread};
use crate::domain::now_ms;
use crate::domain::signing::sha256_hex;
use crate::storage::uploads::Receipt;

/// A writer that stores nothing: the ceiling in benchmarks (`serve --null-store`).
pub fn spawn_null(queue_capacity: usize) -> (WriterHandle, WriterThread) {
    let (tx, rx) = mpsc::sync_channel::<Job>(queue_capacity);
    let metrics = super::WriterMetrics::default();
    let queued = metrics.queued_uploads.clone();
    let thread = std::thread::Builder::new()
        .name("sms-audit-null-writer".into())
        .spawn(move || {
            // Like the real writer: every job waiting is taken, then answered
            // together, so that the hand-off costs what it costs with storage on.
            let mut id = 0;
            while let Ok(first) = rx.recv() {
                let mut uploads = Vec::new();
                let mut next = Some(first);
                while let Some(job) = next.take() {
                    match job {
                        Job::Upload(upload, reply) => uploads.push((upload, reply)),
                        Job::Uploads(list) => uploads.extend(list),
                        Job::Ping(reply) => {
                            let _ = reply.send(Ok(()));
                        }
                        Job::Exec(_, reply) => {
                            let _ = reply.send(Ok(()));
                        }
                        Job::Shutdown => return,
                    }
                    next = rx.try_recv().ok();
                }
                queued.dec_by(uploads.len() as i64);
                handoff::answer(uploads.into_iter().map(|(upload, reply)| {
                    id += 1;
                    let hash = sha256_hex(&upload.raw_body);
                    let receipt = Receipt {
                        id,
                        entry_hash: hash.clone(),
                        body_sha256: hash,
                        received_at: now_ms(),
                        duplicate_of: None,
                        problems: 0,
                        regressed: false,
                    };
                    (reply, Ok(receipt))
                }));
            }
        })
        .expect("spawning the null writer thread");
    (
        WriterHandle {
            tx,
            id: super::next_writer_id(),
            capacity: queue_capacity,
            rejections: Default::default(),
            trouble: Default::default(),
            metrics,
        },
        WriterThread {
            writer: thread,
            checkpointer: None,
        },
    )
}
