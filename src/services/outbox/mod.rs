//! The durable outbox: deliveries of stored uploads to SMS, sent by a background
//! worker with bounded concurrency, in order per task, retried with backoff, every
//! attempt recorded. A delivery is only marked done after its attempt is committed,
//! so one in flight during a crash is simply sent again after the restart.
//!
//! The policy is in [`policy`], the loop in [`sender`], the SQL in
//! `storage::outbox`.

pub mod policy;
pub mod sender;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use rusqlite::Connection;
use tokio::sync::Notify;

pub use policy::RetryPolicy;
pub use sender::Sender;

use crate::domain::{Outcome, Runner};
use crate::services::upstream::{ReplayTargets, Upstream, UpstreamAuth};
use crate::storage::outbox::{record, record_all};
use crate::storage::writer::WriterHandle;
use crate::storage::ReadPool;

/// Why outcomes could not be recorded (they are sent again later).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The writer refused or failed.
    #[error(transparent)]
    Writer(#[from] crate::storage::writer::SubmitError),
    /// A statement failed.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    /// The blocking task that recorded it panicked or was cancelled.
    #[error("recording stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

/// Where recorded outcomes go: the service's writer thread, or the replay
/// command's own connection.
pub trait Recorder: Send + Sync + 'static {
    /// Stores outcomes, all in one transaction.
    fn record(
        &self,
        outcomes: Vec<Outcome>,
    ) -> impl std::future::Future<Output = Result<(), RecordError>> + Send;
}

impl Recorder for WriterHandle {
    async fn record(&self, outcomes: Vec<Outcome>) -> Result<(), RecordError> {
        // Inside the writer's own transaction. An outcome is never dropped for a
        // full queue: it would be sent again.
        let write = move |conn: &Connection| outcomes.iter().try_for_each(|o| record(conn, o));
        Ok(self.execute_when_room(write).await?)
    }
}

/// Records outcomes through a connection of the caller's own (the replay command
/// is a process of its own, next to a running service).
pub struct DirectRecorder(pub Arc<Mutex<Connection>>);

impl Recorder for DirectRecorder {
    async fn record(&self, outcomes: Vec<Outcome>) -> Result<(), RecordError> {
        let conn = self.0.clone();
        tokio::task::spawn_blocking(move || record_all(&conn.lock(), &outcomes)).await??;
        Ok(())
    }
}

/// Options of one sender.
#[derive(Clone)]
pub struct SenderConfig {
    /// Which deliveries this sender takes (the server's or one replay's).
    pub runner: Runner,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Send every upload instead of only each task's newest (live deliveries).
    pub deliver_all: bool,
    /// When to retry and when to give up.
    pub policy: RetryPolicy,
    /// Most attempts started per second (replays); `None` is unlimited.
    pub rate: Option<std::num::NonZeroU32>,
}

/// Counts of what a sender did, for progress bars and summaries, and its metrics.
#[derive(Debug, Default)]
pub struct SendCounts {
    /// Attempts made.
    pub sent: AtomicU64,
    /// Deliveries SMS accepted.
    pub delivered: AtomicU64,
    /// Deliveries given up.
    pub failed: AtomicU64,
    /// Attempts that will be retried.
    pub retrying: AtomicU64,
    /// The same, for `/metrics`.
    pub metrics: SenderMetrics,
}

/// The labels of an attempt in `/metrics`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct AttemptLabels {
    /// The delivery's state after the attempt: delivered, pending (retried), failed, dead.
    pub outcome: &'static str,
}

/// Delivery attempts by outcome, and how long SMS took to answer them.
#[derive(Debug, Clone)]
pub struct SenderMetrics {
    /// Attempts by outcome.
    pub attempts: Family<AttemptLabels, Counter>,
    /// How long SMS took to answer.
    pub upstream_seconds: Histogram,
}

impl Default for SenderMetrics {
    fn default() -> Self {
        SenderMetrics {
            attempts: Family::default(),
            // 1 ms to about 65 s.
            upstream_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
        }
    }
}

impl SenderMetrics {
    /// Adds these metrics to `/metrics`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sms_audit_delivery_attempts",
            "Delivery attempts to SMS by the delivery's state after them",
            self.attempts.clone(),
        );
        registry.register(
            "sms_audit_upstream_seconds",
            "Time SMS took to answer a delivery attempt (or to fail)",
            self.upstream_seconds.clone(),
        );
    }
}

/// The service's own sender (live deliveries and web replays), on a runtime of
/// its own with two threads: sending and recording deliveries must not compete
/// with the HTTP workers' event loops.
pub struct ServiceSender {
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
    thread: std::thread::JoinHandle<()>,
    tally: Arc<SendCounts>,
}

impl ServiceSender {
    /// Starts the sender; it runs until `stop` is cancelled.
    pub fn spawn(
        settings: UpstreamSettings,
        reads: ReadPool,
        writer: WriterHandle,
        wake: Arc<Notify>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(SendCounts::default());
        let sender = Sender {
            reads,
            recorder: Arc::new(writer),
            config: SenderConfig {
                runner: Runner::Server,
                concurrency: settings.concurrency,
                deliver_all: settings.deliver_all,
                policy: settings.policy.clone(),
                rate: None,
            },
            upstream: Arc::new(move |target: &str| {
                let allowed = settings.replay_targets.check(target)?;
                Ok(settings.client_for(&allowed))
            }),
            wake: wake.clone(),
            stop: stop.clone(),
            tally: tally.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("sms-audit-outbox".into())
            .spawn(move || {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("sms-audit-outbox")
                    .enable_all()
                    .build()
                    .expect("a runtime for the outbox")
                    .block_on(sender.run(false))
            })
            .expect("spawning the outbox thread");
        Self {
            stop,
            wake,
            thread,
            tally,
        }
    }

    /// The sender's metrics, for `/metrics`.
    pub fn metrics(&self) -> &SenderMetrics {
        &self.tally.metrics
    }

    /// Stops reading the outbox and waits until the sends in flight are recorded.
    /// Blocking.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let _ = self.thread.join();
    }
}

/// Where and how uploads go to SMS, as the person running `serve` configured it.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// SMS's endpoint (scheme, host and port).
    pub endpoint: String,
    /// How requests to SMS are signed.
    pub auth: UpstreamAuth,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Add a delivery for every upload as it is stored (`serve --forward`).
    pub forward: bool,
    /// Deliver every upload, not only each task's latest (`--deliver-all`).
    pub deliver_all: bool,
    /// When to retry and when to give up.
    pub policy: RetryPolicy,
    /// Where web replays may go.
    pub replay_targets: ReplayTargets,
}

impl UpstreamSettings {
    /// `--upstream-timeout`'s default.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    /// `--forward-concurrency`'s default.
    pub const DEFAULT_CONCURRENCY: usize = 16;

    /// A client for `endpoint` with these credentials and timeout.
    pub fn client_for(&self, endpoint: &str) -> Upstream {
        Upstream::new(endpoint.to_string(), self.auth.clone(), self.timeout)
    }
}
