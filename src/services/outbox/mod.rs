//! The durable outbox: deliveries of stored uploads to SMS, sent by a background
//! worker with bounded concurrency, in order per task, retried with backoff, every
//! attempt recorded. A delivery is only marked done after its attempt is committed,
//! so one in flight during a crash is simply sent again after the restart.
//!
//! The policy is in [`policy`], the loop in [`sender`], the SQL in
//! `storage::outbox`.

pub mod policy;
pub mod sender;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

pub use policy::RetryPolicy;
pub use sender::Sender;

use crate::domain::{lock, Outcome, Runner};
use crate::storage::outbox::{record, record_all};
use crate::storage::writer::WriterHandle;

/// Where recorded outcomes go: the service's writer thread, or the replay
/// command's own connection.
pub trait Recorder: Send + Sync + 'static {
    /// Stores outcomes, all in one transaction.
    fn record(
        &self,
        outcomes: Vec<Outcome>,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

impl Recorder for WriterHandle {
    async fn record(&self, outcomes: Vec<Outcome>) -> Result<(), String> {
        // Inside the writer's own transaction.
        self.execute(move |conn| outcomes.iter().try_for_each(|o| record(conn, o)))
            .await
            .map_err(|e| e.to_string())
    }
}

/// Records outcomes through a connection of the caller's own (the replay command
/// is a process of its own, next to a running service).
pub struct DirectRecorder(pub Arc<Mutex<Connection>>);

impl Recorder for DirectRecorder {
    async fn record(&self, outcomes: Vec<Outcome>) -> Result<(), String> {
        let conn = self.0.clone();
        tokio::task::spawn_blocking(move || record_all(&lock(&conn), &outcomes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// Options of one sender.
#[derive(Clone)]
pub struct SenderConfig {
    pub runner: Runner,
    pub concurrency: usize,
    /// Send every upload instead of only each task's newest (live deliveries).
    pub deliver_all: bool,
    pub policy: RetryPolicy,
    /// Most attempts started per second (replays); `None` is unlimited.
    pub rate: Option<std::num::NonZeroU32>,
}

/// Counts of what a sender did, for progress bars and summaries.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub retrying: AtomicU64,
}

/// Where and how uploads go to SMS, as the person running `serve` configured it.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub endpoint: String,
    pub auth: crate::services::upstream::UpstreamAuth,
    pub timeout: Duration,
    pub concurrency: usize,
    /// Add a delivery for every upload as it is stored (`serve --forward`).
    pub forward: bool,
    pub deliver_all: bool,
    pub policy: RetryPolicy,
}

impl UpstreamSettings {
    pub fn client_for(&self, endpoint: &str) -> crate::services::upstream::Upstream {
        crate::services::upstream::Upstream::new(
            endpoint.to_string(),
            self.auth.clone(),
            self.timeout,
        )
    }
}
