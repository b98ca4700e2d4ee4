//! A writer that stores nothing, for benchmarks.

use std::sync::mpsc;

use super::{Job, WriterHandle, WriterThread};
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
            let mut id = 0;
            for job in rx {
                match job {
                    Job::Upload(upload, reply) => {
                        queued.dec();
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
                    Job::Exec(_, reply) => {
                        let _ = reply.send(Ok(()));
                    }
                    Job::Shutdown => break,
                }
            }
        })
        .expect("spawning the null writer thread");
    (
        WriterHandle {
            tx,
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
