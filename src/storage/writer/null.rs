//! A writer that stores nothing, for benchmarks.

use super::room::QueueRoom;
use super::{handoff, Job, WriterHandle, WriterThread};
use crate::domain::now_ms;
use crate::domain::signing::sha256_hex;
use crate::storage::uploads::Receipt;

/// A writer that stores nothing: the ceiling in benchmarks (`serve --null-store`).
pub fn spawn_null(queue_capacity: usize) -> (WriterHandle, WriterThread) {
    let (tx, rx) = flume::bounded::<Job>(queue_capacity);
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
                        Job::Upload(queued) => uploads.push((queued.upload, queued.reply)),
                        Job::Uploads(list) => {
                            uploads.extend(list.into_iter().map(|q| (q.upload, q.reply)))
                        }
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
            room: QueueRoom::new(queue_capacity),
            logs: Default::default(),
            last_failure: Default::default(),
            metrics: Default::default(),
        },
        WriterThread {
            writer: thread,
            checkpointer: None,
            #[cfg(test)]
            wal_too_long: Default::default(),
        },
    )
}
