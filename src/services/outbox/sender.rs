//! The sender: reads due deliveries, sends each to its SMS endpoint (one at a
//! time per task, in upload order, at most `concurrency` at once), and hands the
//! outcomes to a [`Recorder`] in batches.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify, Semaphore};

use super::policy::{self, RetryPolicy};
use super::{Recorder, SendCounts, SenderConfig};
use crate::domain::{now_ms, DeliveryState, Outcome, Trigger};
use crate::services::upstream::{TargetRefused, Upstream};
use crate::storage::outbox::{self, Due, DueRow, FETCH_BATCH};
use crate::storage::{ReadPool, StorageError};

/// How often the sender looks at every due delivery, not only new ones.
const FULL_SCAN_EVERY: Duration = Duration::from_millis(250);
/// The pause between being woken and reading the outbox: commits come many a
/// second, and one read after a short pause serves them all.
const GATHER: Duration = Duration::from_millis(25);
/// The longest wait for a wake-up before looking for retries anyway.
const POLL: Duration = Duration::from_millis(500);
/// Outcomes stored in one transaction at most.
const RECORD_BATCH: usize = 256;

/// The client for a stored delivery target, or why the target is refused.
pub type UpstreamFor = Arc<dyn Fn(&str) -> Result<Upstream, TargetRefused> + Send + Sync>;

/// Sends due deliveries until `stop` is set (or, with `until_idle`, until none are
/// left pending).
pub struct Sender<R: Recorder> {
    /// Where due deliveries and bodies are read.
    pub reads: ReadPool,
    /// Where outcomes are stored.
    pub recorder: Arc<R>,
    /// The client for a stored target, or why that target is refused: targets are
    /// checked at every send, since a database can be restored or edited.
    pub upstream: UpstreamFor,
    /// Concurrency, policy, rate and which deliveries.
    pub config: SenderConfig,
    /// Wakes the sender when deliveries are queued.
    pub wake: Arc<Notify>,
    /// Set to stop (sends in flight finish).
    pub stop: Arc<AtomicBool>,
    /// What it did, for progress and metrics.
    pub tally: Arc<SendCounts>,
}

impl<R: Recorder> Sender<R> {
    /// Runs until stopped; with `until_idle`, also returns once nothing it handles
    /// is pending. Waits for sends in flight before returning.
    pub async fn run(self, until_idle: bool) {
        let flight = Arc::new(Flight::default());
        let hurry = Arc::new(AtomicBool::new(false));
        let (recordings, recording) = self.start_recording(flight.clone(), hurry.clone());
        let launcher = Launcher::new(&self, recordings);
        let mut cursor = Cursor::default();
        while !self.stop.load(Ordering::SeqCst) {
            let fetched_at = Instant::now();
            flight.forget_finished_before(fetched_at);
            let after = cursor.start_read(fetched_at);
            let runner = self.config.runner;
            let rows = self.read(move |c| outbox::fetch_due(c, now_ms(), runner, after));
            let Some(rows) = rows.await else { continue };
            let more_due = rows.len() == FETCH_BATCH;
            let chosen = flight.choose(rows, &mut cursor);
            let ids: Vec<i64> = chosen.iter().map(|d| d.upload_id).collect();
            let Some(bodies) = self.read(move |c| outbox::raw_bodies(c, &ids)).await else {
                chosen.iter().for_each(|due| flight.release(due, None));
                continue;
            };
            let started = launcher.launch(chosen, bodies).await;
            // A full batch may have more due behind it: read on at once, unless some
            // rows must wait (the next read then starts at them, after a wake-up).
            if more_due && !cursor.revisiting() {
                continue;
            }
            cursor.finish_read();
            if started == 0 && until_idle && flight.is_idle() && self.nothing_pending().await {
                break;
            }
            let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
            if !hurry.swap(false, Ordering::SeqCst) {
                tokio::time::sleep(GATHER).await;
            }
        }
        flight.wait_until_idle().await;
        drop(launcher);
        let _ = recording.await;
    }

    /// A read on a blocking thread; on failure, logs and pauses a second.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> Option<T> {
        match self.reads.with_blocking(f).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(error = %e, "reading the outbox failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
        }
    }

    async fn nothing_pending(&self) -> bool {
        let runner = self.config.runner;
        let pending = self
            .reads
            .with_blocking(move |c| outbox::count_pending(c, runner))
            .await;
        pending.unwrap_or(1) == 0
    }

    /// Stores outcomes in batches on a task of their own (fewer, larger
    /// transactions), then frees their tasks for the next send and wakes the loop.
    fn start_recording(
        &self,
        flight: Arc<Flight>,
        hurry: Arc<AtomicBool>,
    ) -> (
        mpsc::UnboundedSender<(Outcome, Due)>,
        tokio::task::JoinHandle<()>,
    ) {
        let (recordings, mut to_record) = mpsc::unbounded_channel::<(Outcome, Due)>();
        let (recorder, wake) = (self.recorder.clone(), self.wake.clone());
        let deliver_all = self.config.deliver_all;
        let task = tokio::spawn(async move {
            while let Some(first) = to_record.recv().await {
                let mut batch = vec![first];
                while batch.len() < RECORD_BATCH {
                    match to_record.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (outcomes, dues): (Vec<Outcome>, Vec<Due>) = batch.into_iter().unzip();
                if let Err(e) = recorder.record(outcomes).await {
                    tracing::error!(error = %e, "recording delivery attempts failed");
                }
                // A finished send may free the next upload of its task in a sequence
                // that must all go out (replays, `--deliver-all`): read it at once.
                // Live latest-wins deliveries wait for the gathering pause instead.
                if deliver_all || dues.iter().any(|d| d.trigger == Trigger::Replay) {
                    hurry.store(true, Ordering::SeqCst);
                }
                let now = Instant::now();
                dues.iter().for_each(|due| flight.release(due, Some(now)));
                wake.notify_one();
            }
        });
        (recordings, task)
    }
}

/// Starts sends: rate limit, concurrency permits, one client per endpoint.
struct Launcher {
    permits: Arc<Semaphore>,
    limiter: Option<governor::DefaultDirectRateLimiter>,
    upstreams: Mutex<HashMap<String, Result<Upstream, TargetRefused>>>,
    make_upstream: UpstreamFor,
    policy: RetryPolicy,
    tally: Arc<SendCounts>,
    recordings: mpsc::UnboundedSender<(Outcome, Due)>,
}

impl Launcher {
    fn new<R: Recorder>(
        sender: &Sender<R>,
        recordings: mpsc::UnboundedSender<(Outcome, Due)>,
    ) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(sender.config.concurrency.max(1))),
            // Evenly spaced, no bursts: SMS sees a steady rate.
            limiter: sender.config.rate.map(|n| {
                governor::RateLimiter::direct(
                    governor::Quota::per_second(n).allow_burst(std::num::NonZeroU32::MIN),
                )
            }),
            upstreams: Mutex::default(),
            make_upstream: sender.upstream.clone(),
            policy: sender.config.policy.clone(),
            tally: sender.tally.clone(),
            recordings,
        }
    }

    /// Sends each delivery on a task of its own; returns how many were started.
    async fn launch(&self, chosen: Vec<Due>, mut bodies: HashMap<i64, Vec<u8>>) -> usize {
        let started = chosen.len();
        for due in chosen {
            if let Some(l) = &self.limiter {
                l.until_ready().await;
            }
            let permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            let upstream = self
                .upstreams
                .lock()
                .entry(due.target.clone())
                .or_insert_with(|| (self.make_upstream)(&due.target))
                .clone();
            let body = bodies.remove(&due.upload_id).unwrap_or_default();
            let (policy, tally, recordings) = (
                self.policy.clone(),
                self.tally.clone(),
                self.recordings.clone(),
            );
            tokio::spawn(async move {
                let o = match upstream {
                    Ok(upstream) => {
                        let result = upstream.send(&due.task_id, body).await;
                        // The next send need not wait for this one's commit.
                        drop(permit);
                        policy::outcome(&due, result, &policy, now_ms())
                    }
                    Err(why) => {
                        drop(permit);
                        policy::refused_target(&due, why.to_string(), now_ms())
                    }
                };
                tally.count(&o);
                if o.state != DeliveryState::Delivered {
                    tracing::warn!(delivery = due.id, task_id = %due.task_id, state = o.state.as_str(),
                        status = o.result.status, error = o.result.transport_error.as_deref().or(o.result.error_code.as_deref()),
                        "delivery attempt did not succeed");
                }
                let _ = recordings.send((o, due));
            });
        }
        started
    }
}

impl SendCounts {
    fn count(&self, o: &Outcome) {
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics
            .attempts
            .get_or_create(&super::AttemptLabels {
                outcome: o.state.as_str(),
            })
            .inc();
        self.metrics
            .upstream_seconds
            .observe(o.result.latency.as_secs_f64());
        self.sent.fetch_add(1, Relaxed);
        match o.state {
            DeliveryState::Delivered => self.delivered.fetch_add(1, Relaxed),
            DeliveryState::Pending => self.retrying.fetch_add(1, Relaxed),
            _ => self.failed.fetch_add(1, Relaxed),
        };
    }
}

/// Where the next read of the outbox starts. New deliveries come with growing
/// ids, so reads go on from the last id seen; every [`FULL_SCAN_EVERY`] a read
/// starts over, to find retries that came due. A row that must wait (its task is
/// busy, or an older upload goes first) is read again: the cursor stops before it.
#[derive(Default)]
struct Cursor {
    after: i64,
    last_full_scan: Option<Instant>,
    revisit: Option<i64>,
}

impl Cursor {
    fn start_read(&mut self, now: Instant) -> i64 {
        if self
            .last_full_scan
            .is_none_or(|t| now.duration_since(t) >= FULL_SCAN_EVERY)
        {
            self.last_full_scan = Some(now);
            self.after = 0;
        }
        self.revisit = None;
        self.after
    }

    fn read_up_to(&mut self, id: i64) {
        self.after = id;
    }

    fn must_wait(&mut self, id: i64) {
        self.revisit = Some(self.revisit.map_or(id, |r| r.min(id)));
    }

    fn revisiting(&self) -> bool {
        self.revisit.is_some()
    }

    /// After a read that is not followed at once by another.
    fn finish_read(&mut self) {
        if let Some(r) = self.revisit {
            self.after = self.after.min(r - 1);
        }
    }
}

/// Deliveries being sent, and their tasks.
#[derive(Default)]
struct Flight(Mutex<FlightState>);

#[derive(Default)]
struct FlightState {
    /// (task, target) pairs with a send in flight: one at a time per task.
    busy_tasks: HashSet<(String, String)>,
    in_flight: HashSet<i64>,
    /// Deliveries whose attempt was recorded, and when: a read that started before
    /// that may still show them due, and must not send them again.
    finished: HashMap<i64, Instant>,
}

impl Flight {
    fn forget_finished_before(&self, t: Instant) {
        self.0.lock().finished.retain(|_, at| *at >= t);
    }

    /// Takes what may be sent now from a read, moving the cursor past it.
    fn choose(&self, rows: Vec<DueRow>, cursor: &mut Cursor) -> Vec<Due> {
        if let Some(last) = rows.last() {
            cursor.read_up_to(last.due.id);
        }
        let mut state = self.0.lock();
        let mut chosen = Vec::new();
        for row in rows {
            let due = row.due;
            if state.in_flight.contains(&due.id) || state.finished.contains_key(&due.id) {
                continue;
            }
            if !policy::may_go_now(due.upload_id, row.oldest_pending)
                || !state
                    .busy_tasks
                    .insert((due.task_id.clone(), due.target.clone()))
            {
                cursor.must_wait(due.id);
                continue;
            }
            state.in_flight.insert(due.id);
            chosen.push(due);
        }
        chosen
    }

    /// A send is over (recorded at `finished`), or was never started (`None`).
    fn release(&self, due: &Due, finished: Option<Instant>) {
        let mut state = self.0.lock();
        if let Some(at) = finished {
            state.finished.insert(due.id, at);
        }
        state
            .busy_tasks
            .remove(&(due.task_id.clone(), due.target.clone()));
        state.in_flight.remove(&due.id);
    }

    fn is_idle(&self) -> bool {
        self.0.lock().in_flight.is_empty()
    }

    async fn wait_until_idle(&self) {
        while !self.is_idle() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
