//! The ledger verification that operators start from the audit page: one at a
//! time, on its own thread, its progress readable while it runs and its result
//! recorded in the `verifications` table.

use crate::storage::verifications;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Instant;

use super::ledger::{self, Parallelism, Scope};
use crate::domain::chain::Verification;
use crate::domain::now_ms;

use crate::storage::writer::WriterHandle;
use crate::storage::{ReadPool, StorageError};

/// The ledger verification running in the background, if any, and the API's
/// verifications, run one at a time.
pub struct VerificationJob {
    reads: ReadPool,
    writer: WriterHandle,
    running: Mutex<Option<Progress>>,
    /// The API's last run: when it started, and what it found.
    last_api_run: tokio::sync::Mutex<Option<(Instant, Verification)>>,
}

#[derive(Clone)]
struct Progress {
    checked: Arc<AtomicU64>,
    total: i64,
}

impl VerificationJob {
    /// A job that verifies on `reads` and records its runs through `writer`.
    pub fn new(reads: ReadPool, writer: WriterHandle) -> Arc<Self> {
        Arc::new(Self {
            reads,
            writer,
            running: Mutex::new(None),
            last_api_run: tokio::sync::Mutex::new(None),
        })
    }

    /// Verifies the ledger for a caller that wants it checked now. One run at a
    /// time: callers that arrive while one runs wait for it, and share the next
    /// run that starts after they asked. So any number of callers cost at most
    /// one verification at once. The run is recorded (best effort).
    pub async fn verify_now(&self, requested_by: &str) -> Result<Verification, StorageError> {
        let asked = Instant::now();
        let mut last = self.last_api_run.lock().await;
        if let Some((started, v)) = &*last {
            if *started >= asked {
                return Ok(v.clone());
            }
        }
        let started = Instant::now();
        let started_ms = now_ms();
        let v = self
            .reads
            .with_blocking({
                let reads = self.reads.clone();
                move |conn| {
                    ledger::verify(
                        conn,
                        &|| reads.open(),
                        Parallelism::one(),
                        Scope::Full,
                        |_| {},
                    )
                }
            })
            .await?;
        let (record, by) = (v.clone(), requested_by.to_string());
        let _ = self
            .writer
            .execute(move |conn| verifications::record_verification(conn, &record, started_ms, &by))
            .await;
        *last = Some((started, v.clone()));
        Ok(v)
    }

    /// (entries checked, entries in the ledger) while a verification runs.
    pub fn progress(&self) -> Option<(u64, i64)> {
        self.running
            .lock()
            .as_ref()
            .map(|p| (p.checked.load(Ordering::Relaxed), p.total))
    }

    /// Starts a verification on its own thread unless one is running.
    pub fn start(self: &Arc<Self>, total: i64, requested_by: String) {
        let progress = {
            let mut running = self.running.lock();
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
                let result = job.reads.with(|conn| {
                    ledger::verify(
                        conn,
                        &|| job.reads.open(),
                        Parallelism::one(),
                        Scope::Full,
                        |n| checked.store(n, Ordering::Relaxed),
                    )
                });
                match result {
                    Ok(v) => {
                        if let Err(e) = job.writer.execute_blocking(move |conn| {
                            verifications::record_verification(conn, &v, started, &requested_by)
                        }) {
                            tracing::error!(error = %e, "recording a verification failed");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "ledger verification failed to run"),
                }
                *job.running.lock() = None;
            });
        if let Err(e) = spawned {
            *self.running.lock() = None;
            tracing::error!(error = %e, "could not start a verification");
        }
    }
}
