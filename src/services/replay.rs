//! Replays: sending stored uploads to SMS again, after an outage or to another
//! region or account. A replay is a set of deliveries created in one transaction;
//! whoever runs it (the command line, or the service for web replays) sends them
//! with the same sender as live forwarding. Delivered ones are never sent again,
//! so an interrupted replay is continued with `--resume`.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use serde::Serialize;
use tokio::sync::Notify;

use rusqlite::Connection;

use super::outbox::{
    DirectRecorder, RetryPolicy, SendCounts, Sender, SenderConfig, UpstreamSettings,
};
use super::upstream::{self, ReplayTargets, Upstream, UpstreamAuth};
use crate::domain::{DeliveryState, ReplayFilter, ReplayRunner, Runner};
use crate::storage::replays::{self, StateCounts};
use crate::storage::writer::WriterHandle;
use crate::storage::{ReadPool, StorageError};

/// Deliveries a web replay writes per writer job.
const REPLAY_CHUNK: usize = 2_000;

/// What a replay request selected, and, unless it was a dry run, the replay made.
#[derive(Debug, Serialize)]
pub struct ReplayAnswer {
    /// The replay run's id (none for a dry run).
    pub replay_id: Option<i64>,
    /// Where it sends.
    pub target: String,
    /// Uploads selected.
    pub count: usize,
    /// Uploads per task.
    pub tasks: BTreeMap<String, usize>,
    /// Nothing was queued, only counted.
    pub dry_run: bool,
}

/// Why a replay was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The request cannot be served as asked (the caller's mistake).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("{0}")]
    Storage(String),
}

impl From<StorageError> for ReplayError {
    fn from(e: StorageError) -> Self {
        ReplayError::Storage(e.to_string())
    }
}

/// Where the service's replays go: `to` when it is one of the allowed replay
/// targets, or the configured upstream.
pub fn target(
    upstream: Option<&UpstreamSettings>,
    to: Option<&str>,
    dry_run: bool,
) -> Result<String, ReplayError> {
    let to = to.filter(|t| !t.trim().is_empty());
    if upstream.is_none() && dry_run {
        // Nothing is sent: name the target, checked only as a URL.
        return match to {
            Some(url) => upstream::normalize_endpoint(url)
                .map_err(|e| ReplayError::Invalid(format!("to: {e}"))),
            None => Ok("the upstream (none is configured yet)".into()),
        };
    }
    let settings = upstream.ok_or_else(|| {
        ReplayError::Invalid(
            "no upstream is configured: start serve with --upstream-endpoint or --upstream-region"
                .into(),
        )
    })?;
    match to {
        Some(url) => settings
            .replay_targets
            .check(url)
            .map_err(|e| ReplayError::Invalid(format!("to: {e}"))),
        None => Ok(settings.endpoint.clone()),
    }
}

/// The service's replays: selected on a read connection for a dry run, else
/// selected and created in the writer's transaction (what is counted is sent),
/// then handed to the service's sender.
pub struct ServerReplays {
    /// Where replays read the uploads they select.
    pub reads: ReadPool,
    /// Where they queue deliveries.
    pub writer: WriterHandle,
    /// Wakes the server's sender.
    pub wake: Arc<Notify>,
}

impl ServerReplays {
    /// Selects uploads and queues a delivery of each (or only counts them).
    pub async fn start(
        &self,
        filter: ReplayFilter,
        target: String,
        dry_run: bool,
        requested_by: &str,
    ) -> Result<ReplayAnswer, ReplayError> {
        if dry_run {
            let selection = self
                .reads
                .with_blocking(move |conn| replays::select(conn, &filter))
                .await?;
            let count = selection.uploads.len();
            return Ok(answer(None, target, count, selection.per_task, true));
        }
        // Selected on a read connection and written in bounded chunks, each a
        // writer job of its own: uploads arriving meanwhile are committed between
        // chunks instead of waiting for the whole replay.
        let selection = {
            let filter = filter.clone();
            self.reads
                .with_blocking(move |conn| replays::select(conn, &filter))
                .await?
        };
        let created: Arc<Mutex<Option<i64>>> = Arc::default();
        let (out, by, to, total) = (
            created.clone(),
            requested_by.to_string(),
            target.clone(),
            selection.uploads.len(),
        );
        self.writer
            .execute_when_room(move |conn| {
                let id =
                    replays::create_replay(conn, total, &filter, &to, ReplayRunner::Server, &by)?;
                *out.lock() = Some(id);
                Ok(())
            })
            .await
            .map_err(|e| ReplayError::Storage(e.to_string()))?;
        let id = created
            .lock()
            .take()
            .ok_or_else(|| ReplayError::Storage("the replay was not created".into()))?;
        let uploads = Arc::new(selection.uploads);
        for start in (0..uploads.len()).step_by(REPLAY_CHUNK) {
            let (uploads, to) = (uploads.clone(), target.clone());
            let end = (start + REPLAY_CHUNK).min(uploads.len());
            self.writer
                .execute_when_room(move |conn| {
                    replays::add_deliveries(conn, id, &to, &uploads[start..end])
                })
                .await
                .map_err(|e| ReplayError::Storage(e.to_string()))?;
            self.wake.notify_one();
        }
        tracing::info!(replay = id, count = total, target = %target, by = requested_by, "replay started");
        Ok(answer(Some(id), target, total, selection.per_task, false))
    }
}

fn answer(
    id: Option<i64>,
    target: String,
    count: usize,
    tasks: BTreeMap<String, usize>,
    dry_run: bool,
) -> ReplayAnswer {
    ReplayAnswer {
        replay_id: id,
        target,
        count,
        tasks,
        dry_run,
    }
}

/// A replay sent by this process (the `replay` command) rather than by the
/// service: the same sender, recording on a connection of its own.
pub struct DirectReplay {
    /// The replay run's id.
    pub replay_id: i64,
    /// Where it may send; its stored target is checked again at every send.
    pub targets: ReplayTargets,
    /// How requests to SMS are signed.
    pub auth: UpstreamAuth,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Most uploads sent per second.
    pub rate: Option<NonZeroU32>,
}

/// A direct replay on its way: set `stop` to let the sends in flight finish and
/// end it; `counts` says how far it got.
pub struct Sending {
    /// Ends when the replay's deliveries are done or it is stopped.
    pub done: tokio::task::JoinHandle<()>,
    /// Set to stop sending.
    pub stop: Arc<AtomicBool>,
    /// What has been sent so far.
    pub counts: Arc<SendCounts>,
}

impl DirectReplay {
    /// Starts sending on the current runtime; ends once nothing is pending.
    pub fn start(self, db: &Path, conn: Connection) -> Sending {
        let (stop, counts) = (
            Arc::new(AtomicBool::new(false)),
            Arc::<SendCounts>::default(),
        );
        let (targets, auth, timeout) = (self.targets, self.auth, self.timeout);
        let sender = Sender {
            reads: ReadPool::new(db),
            recorder: Arc::new(DirectRecorder(Arc::new(Mutex::new(conn)))),
            upstream: Arc::new(move |target: &str| {
                let allowed = targets.check(target)?;
                Ok(Upstream::new(allowed, auth.clone(), timeout))
            }),
            config: SenderConfig {
                runner: Runner::Replay(self.replay_id),
                concurrency: self.concurrency.max(1),
                deliver_all: true,
                // A replay runs while someone watches: retry briefly, then report.
                policy: RetryPolicy {
                    first: Duration::from_secs(1),
                    cap: Duration::from_secs(30),
                    max_age: Duration::from_secs(600),
                },
                rate: self.rate,
            },
            wake: Arc::default(),
            stop: stop.clone(),
            tally: counts.clone(),
        };
        let done = tokio::spawn(sender.run(true));
        Sending { done, stop, counts }
    }
}

/// Creates a replay of `selection` run from the command line; its id.
pub fn create_direct(
    conn: &Connection,
    selection: &replays::Selection,
    filter: &ReplayFilter,
    target: &str,
) -> Result<i64, StorageError> {
    Ok(replays::create(
        conn,
        selection,
        filter,
        target,
        ReplayRunner::Cli,
        "cli",
    )?)
}

/// Where a replay stands, by delivery state; marked finished once nothing of it
/// is pending.
pub fn conclude(conn: &Connection, replay_id: i64) -> Result<StateCounts, StorageError> {
    let states = replays::states(conn, replay_id)?;
    if states.get(DeliveryState::Pending) == 0 {
        replays::finish(conn, replay_id)?;
    }
    Ok(states)
}
