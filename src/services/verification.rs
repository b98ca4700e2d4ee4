//! The ledger verification that operators start from the audit page: one at a
//! time, on its own thread, its progress readable while it runs and its result
//! recorded in the `verifications` table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::ledger;
use crate::domain::{lock, now_ms};
use crate::storage::history;
use crate::storage::writer::WriterHandle;
use crate::storage::ReadPool;

/// The ledger verification running in the background, if any.
pub struct VerificationJob {
    reads: ReadPool,
    writer: WriterHandle,
    running: Mutex<Option<Progress>>,
}

#[derive(Clone)]
struct Progress {
    checked: Arc<AtomicU64>,
    total: i64,
}

impl VerificationJob {
    pub fn new(reads: ReadPool, writer: WriterHandle) -> Arc<Self> {
        Arc::new(Self {
            reads,
            writer,
            running: Mutex::new(None),
        })
    }

    /// (entries checked, entries in the ledger) while a verification runs.
    pub fn progress(&self) -> Option<(u64, i64)> {
        lock(&self.running)
            .as_ref()
            .map(|p| (p.checked.load(Ordering::Relaxed), p.total))
    }

    /// Starts a verification on its own thread unless one is running.
    pub fn start(self: &Arc<Self>, total: i64, requested_by: String) {
        let progress = {
            let mut running = lock(&self.running);
            if running.is_some() {
                return;
            }
            let p = Progress {
                checked: Arc::new(AtomicU64::new(0)),
                total,
            };
            *running = Some(p.clone());
            p
        };
        let job = self.clone();
        let spawned = std::thread::Builder::new()
            .name("sms-audit-verify".into())
            .spawn(move || {
                let started = now_ms();
                let checked = progress.checked.clone();
                let result = job
                    .reads
                    .with(|conn| ledger::verify(conn, |n| checked.store(n, Ordering::Relaxed)));
                match result {
                    Ok(v) => {
                        if let Err(e) = job.writer.execute_blocking(move |conn| {
                            history::record_verification(conn, &v, started, &requested_by)
                        }) {
                            tracing::error!(error = %e, "recording a verification failed");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "ledger verification failed to run"),
                }
                *lock(&job.running) = None;
            });
        if let Err(e) = spawned {
            *lock(&self.running) = None;
            tracing::error!(error = %e, "could not start a verification");
        }
    }
}
