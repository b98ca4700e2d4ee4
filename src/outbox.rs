//! The durable outbox: deliveries of stored uploads to SMS, sent by a background
//! worker with bounded concurrency, in order per task, retried with backoff, every
//! attempt recorded. A delivery is only marked done after its attempt is committed,
//! so one in flight during a crash is simply sent again after the restart.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rusqlite::{named_params, params, Connection};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};

use crate::domain::Timestamp;
use crate::storage::writer::{now_ms, WriterHandle};
use crate::storage::{ReadPool, StorageError};
use crate::upstream::{AttemptResult, Upstream, Verdict};

/// Retry policy: about 5 s doubling to a 1 h cap, with ±20 % jitter; give up
/// (`dead`) once a delivery is older than `max_age`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub first: Duration,
    pub cap: Duration,
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(5),
            cap: Duration::from_secs(3600),
            max_age: Duration::from_secs(72 * 3600),
        }
    }
}

/// The longest `Retry-After` honoured.
pub const RETRY_AFTER_LIMIT: Duration = Duration::from_secs(3600);

impl RetryPolicy {
    /// The wait before attempt `attempts + 1`, `attempts` (≥ 1) having failed.
    pub fn backoff(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            // SMS's word counts, but not beyond an hour.
            return after.min(RETRY_AFTER_LIMIT);
        }
        let exp = self
            .first
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
            .min(self.cap);
        let jitter = rand::rng().random_range(0.8..1.2);
        exp.mul_f64(jitter).min(self.cap)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
    Dead,
    Superseded,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Dead => "dead",
            DeliveryState::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryState::Pending,
            "delivered" => DeliveryState::Delivered,
            "failed" => DeliveryState::Failed,
            "dead" => DeliveryState::Dead,
            "superseded" => DeliveryState::Superseded,
            _ => return None,
        })
    }
}

/// A delivery ready to be attempted.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub upload_id: i64,
    pub task_id: String,
    pub target: String,
    pub trigger: String,
    pub attempts: u32,
    pub created_at: Timestamp,
}

/// Queues the live deliveries of the uploads `first..=last` just stored (inside the
/// writer's transaction, after the task summaries). Latest wins, once per batch: the
/// waiting live deliveries of these tasks from earlier batches are superseded, and an
/// upload of this batch already overtaken by a newer one of its task is queued as
/// superseded. A statement each for the whole batch: the writer pays for rows, not
/// for statements.
pub fn enqueue_live(
    conn: &Connection,
    first: i64,
    last: i64,
    target: &str,
    latest_wins: bool,
    now: Timestamp,
) -> rusqlite::Result<()> {
    if latest_wins {
        conn.prepare_cached(
            "UPDATE deliveries SET state = 'superseded', finished_at = :now,
                last_error = 'a newer upload of the task was delivered instead'
             WHERE state = 'pending' AND trigger = 'live' AND replay_id IS NULL
               AND target = :target AND upload_id < :first
               AND task_id IN (SELECT task_id FROM uploads WHERE id BETWEEN :first AND :last)",
        )?
        .execute(named_params! {
            ":now": now,
            ":target": target,
            ":first": first,
            ":last": last,
        })?;
    }
    conn.prepare_cached(
        "INSERT INTO deliveries (upload_id, task_id, target, trigger, state, created_at,
            next_attempt_at, finished_at, last_error)
         SELECT id, task_id, :target, 'live',
            CASE WHEN overtaken THEN 'superseded' ELSE 'pending' END, received_at, received_at,
            CASE WHEN overtaken THEN received_at END,
            CASE WHEN overtaken THEN 'a newer upload of the task was delivered instead' END
         FROM (SELECT u.id, u.task_id, u.received_at,
                 :latest_wins AND u.id < t.last_upload_id AS overtaken
               FROM uploads u JOIN tasks t ON t.task_id = u.task_id
               WHERE u.id BETWEEN :first AND :last)
         ORDER BY id",
    )?
    .execute(named_params! {
        ":target": target,
        ":latest_wins": latest_wins,
        ":first": first,
        ":last": last,
    })?;
    Ok(())
}

/// Due deliveries the given runner should send, oldest first. `oldest_pending`
/// keeps each task's uploads in order. (Latest wins is applied by the writer: an
/// overtaken live delivery is already superseded.)
pub struct DueRow {
    pub due: Due,
    /// The oldest pending upload of this task in the same group (live, or the
    /// same replay) and target.
    pub oldest_pending: i64,
}

/// The stored bodies of the given uploads (only of those about to be sent).
pub fn raw_bodies(
    conn: &Connection,
    upload_ids: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<u8>>, StorageError> {
    let mut stmt = conn.prepare_cached("SELECT raw_body FROM uploads WHERE id = ?1")?;
    let mut bodies = std::collections::HashMap::with_capacity(upload_ids.len());
    for id in upload_ids {
        bodies.insert(*id, stmt.query_row(params![id], |r| r.get(0))?);
    }
    Ok(bodies)
}

/// A due delivery and the oldest pending upload of its task in its group (live, or
/// the same replay): the start of both of `fetch_due`'s statements.
macro_rules! select_due {
    () => {
        "SELECT d.id, d.upload_id, d.task_id, d.target, d.trigger, d.attempts, d.created_at,
           (SELECT min(n.upload_id) FROM deliveries n
             WHERE n.task_id = d.task_id AND n.target = d.target AND n.state = 'pending'
               AND n.replay_id IS d.replay_id)
         FROM deliveries d "
    };
}

// The batch size (FETCH_BATCH) is written into the SQL, and there is one statement
// per runner rather than `CASE WHEN :replay IS NULL`: SQLite plans around a bound
// LIMIT or such a parameter, and then re-prepares the statement on every use.
const DUE_FOR_SERVER: &str = concat!(
    select_due!(),
    "LEFT JOIN replays r ON r.id = d.replay_id
     WHERE d.state = 'pending' AND d.next_attempt_at <= :now AND d.id > :after
       AND (d.replay_id IS NULL OR r.runner = 'server')
     ORDER BY d.id LIMIT 512"
);
const DUE_FOR_REPLAY: &str = concat!(
    select_due!(),
    "WHERE d.state = 'pending' AND d.next_attempt_at <= :now AND d.id > :after
       AND d.replay_id = :replay
     ORDER BY d.id LIMIT 512"
);

fn due_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DueRow> {
    Ok(DueRow {
        due: Due {
            id: r.get(0)?,
            upload_id: r.get(1)?,
            task_id: r.get(2)?,
            target: r.get(3)?,
            trigger: r.get(4)?,
            attempts: r.get(5)?,
            created_at: r.get(6)?,
        },
        oldest_pending: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
    })
}

/// Due deliveries with an id above `after`, oldest first.
pub fn fetch_due(
    conn: &Connection,
    now: Timestamp,
    runner: Runner,
    after: i64,
) -> Result<Vec<DueRow>, StorageError> {
    let rows = match runner {
        Runner::Server => conn
            .prepare_cached(DUE_FOR_SERVER)?
            .query_map(named_params! { ":now": now, ":after": after }, due_row)?
            .collect::<Result<_, _>>(),
        Runner::Replay(id) => conn
            .prepare_cached(DUE_FOR_REPLAY)?
            .query_map(
                named_params! { ":now": now, ":after": after, ":replay": id },
                due_row,
            )?
            .collect::<Result<_, _>>(),
    };
    Ok(rows?)
}

/// Which deliveries a sender handles: the service's (live and web replays) or one
/// command-line replay's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    Server,
    Replay(i64),
}

/// What an attempt changes: the attempt row and the delivery's new state.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: i64,
    pub at: Timestamp,
    pub attempt_trigger: &'static str,
    pub result: AttemptResult,
    pub state: DeliveryState,
    pub next_attempt_at: Timestamp,
}

/// Decides what an attempt means for the delivery.
pub fn outcome(due: &Due, result: AttemptResult, policy: &RetryPolicy) -> Outcome {
    let now = now_ms();
    let attempts = due.attempts + 1;
    let attempt_trigger = match (due.attempts, due.trigger.as_str()) {
        (0, "replay") => "replay",
        (0, _) => "live",
        _ => "retry",
    };
    let (state, next_attempt_at) = match result.verdict() {
        Verdict::Delivered => (DeliveryState::Delivered, now),
        Verdict::Failed => (DeliveryState::Failed, now),
        Verdict::Retry => {
            let wait = policy.backoff(attempts, result.retry_after);
            let next = now + wait.as_millis() as i64;
            if next - due.created_at > policy.max_age.as_millis() as i64 {
                (DeliveryState::Dead, now)
            } else {
                (DeliveryState::Pending, next)
            }
        }
    };
    Outcome {
        delivery_id: due.id,
        at: now,
        attempt_trigger,
        result,
        state,
        next_attempt_at,
    }
}

/// Stores an attempt and the delivery's new state (one transaction with others).
pub fn record(conn: &Connection, o: &Outcome) -> rusqlite::Result<()> {
    let r = &o.result;
    conn.prepare_cached(
        "INSERT INTO delivery_attempts (delivery_id, at, target_url, trigger, http_status,
            upstream_request_id, error_code, error_msg, transport_error, response_head, latency_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        o.delivery_id,
        o.at,
        r.url,
        o.attempt_trigger,
        r.status,
        r.upstream_request_id,
        r.error_code,
        r.error_msg,
        r.transport_error,
        r.response_head,
        r.latency.as_millis() as i64
    ])?;
    let last_error = r
        .transport_error
        .clone()
        .or_else(|| {
            r.error_code
                .as_ref()
                .map(|c| format!("{c}: {}", r.error_msg.clone().unwrap_or_default()))
        })
        .or_else(|| {
            r.status
                .filter(|s| !(200..300).contains(s))
                .map(|s| format!("HTTP {s}"))
        });
    let finished = (o.state != DeliveryState::Pending).then_some(o.at);
    conn.prepare_cached(
        "UPDATE deliveries SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3,
            last_status = ?4, last_error = ?5, finished_at = ?6
         WHERE id = ?1 AND (state = 'pending'
           -- Overtaken while in flight, but it did reach SMS: say so.
           OR (state = 'superseded' AND ?2 = 'delivered'))",
    )?
    .execute(params![
        o.delivery_id,
        o.state.as_str(),
        o.next_attempt_at,
        r.status,
        last_error,
        finished
    ])?;
    Ok(())
}

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
        self.execute(move |conn| outcomes.iter().try_for_each(|o| record(conn, o)))
            .await
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
    pub sent: std::sync::atomic::AtomicU64,
    pub delivered: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    pub retrying: std::sync::atomic::AtomicU64,
}

/// Sends due deliveries until `stop` is set (or, with `until_idle`, until none are
/// left pending).
pub struct Sender<R: Recorder> {
    pub reads: ReadPool,
    pub recorder: Arc<R>,
    pub upstream: Arc<dyn Fn(&str) -> Upstream + Send + Sync>,
    pub config: SenderConfig,
    pub wake: Arc<Notify>,
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    pub tally: Arc<Tally>,
}

impl<R: Recorder> Sender<R> {
    /// Runs until stopped; with `until_idle`, also returns once nothing it handles
    /// is pending. Waits for sends in flight before returning.
    pub async fn run(self, until_idle: bool) {
        use std::sync::atomic::Ordering::{Relaxed, SeqCst};
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let busy_tasks: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
        let in_flight: Arc<Mutex<HashSet<i64>>> = Arc::default();
        // Attempts recorded while a fetch may already have read its snapshot: such a
        // fetch still shows the delivery as due, and must not send it again.
        let finished: Arc<Mutex<std::collections::HashMap<i64, std::time::Instant>>> =
            Arc::default();
        // Outcomes are stored in batches by one task: fewer, larger transactions.
        let (recordings, mut to_record) = tokio::sync::mpsc::unbounded_channel::<(Outcome, Due)>();
        // Set when a finished send may free the next upload of its task in a
        // sequence that must all go out (replays, `--deliver-all`): that one is read
        // at once. Live latest-wins deliveries wait for the gathering pause instead.
        let hurry = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let recording = {
            let (recorder, busy_tasks, in_flight, finished, wake, hurry) = (
                self.recorder.clone(),
                busy_tasks.clone(),
                in_flight.clone(),
                finished.clone(),
                self.wake.clone(),
                hurry.clone(),
            );
            let deliver_all = self.config.deliver_all;
            tokio::spawn(async move {
                while let Some(first) = to_record.recv().await {
                    let mut batch = vec![first];
                    while batch.len() < 256 {
                        match to_record.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    let (outcomes, dues): (Vec<Outcome>, Vec<Due>) = batch.into_iter().unzip();
                    if let Err(e) = recorder.record(outcomes).await {
                        tracing::error!(error = %e, "recording delivery attempts failed");
                    }
                    let now = std::time::Instant::now();
                    if deliver_all || dues.iter().any(|d| d.trigger == "replay") {
                        hurry.store(true, SeqCst);
                    }
                    for due in dues {
                        lock(&finished).insert(due.id, now);
                        lock(&busy_tasks).remove(&(due.task_id.clone(), due.target.clone()));
                        lock(&in_flight).remove(&due.id);
                    }
                    wake.notify_one();
                }
            })
        };
        let limiter = self
            .config
            .rate
            // Evenly spaced, no bursts: SMS sees a steady rate.
            .map(|n| {
                governor::RateLimiter::direct(
                    governor::Quota::per_second(n).allow_burst(std::num::NonZeroU32::MIN),
                )
            });
        let mut upstreams: std::collections::HashMap<String, Upstream> = Default::default();
        // New deliveries come with growing ids: read on from a cursor, and look
        // at everything due (retries) only every FULL_SCAN_EVERY.
        let mut cursor = 0i64;
        let mut last_full_scan: Option<std::time::Instant> = None;
        while !self.stop.load(SeqCst) {
            let runner = self.config.runner;
            let fetched_at = std::time::Instant::now();
            lock(&finished).retain(|_, at| *at >= fetched_at);
            if last_full_scan.is_none_or(|t| t.elapsed() >= FULL_SCAN_EVERY) {
                last_full_scan = Some(fetched_at);
                cursor = 0;
            }
            let after = cursor;
            let rows = match self
                .reads
                .clone()
                .with_blocking(move |c| fetch_due(c, now_ms(), runner, after))
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "reading the outbox failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut started = 0;
            // A row that must wait (its task is busy, or an older upload goes first)
            // is read again: the cursor stops before it.
            let mut revisit: Option<i64> = None;
            if let Some(last) = rows.last() {
                cursor = last.due.id;
            }
            let more_due = rows.len() == FETCH_BATCH;
            let mut chosen = Vec::new();
            for row in rows {
                let due = row.due;
                if lock(&in_flight).contains(&due.id) || lock(&finished).contains_key(&due.id) {
                    continue;
                }
                if row.oldest_pending < due.upload_id {
                    // An older upload of this task goes first.
                    revisit = Some(revisit.map_or(due.id, |r| r.min(due.id)));
                    continue;
                }
                let key = (due.task_id.clone(), due.target.clone());
                if !lock(&busy_tasks).insert(key.clone()) {
                    revisit = Some(revisit.map_or(due.id, |r| r.min(due.id)));
                    continue;
                }
                lock(&in_flight).insert(due.id);
                chosen.push(due);
            }
            let ids: Vec<i64> = chosen.iter().map(|d| d.upload_id).collect();
            let mut bodies = if ids.is_empty() {
                Default::default()
            } else {
                match self
                    .reads
                    .clone()
                    .with_blocking(move |c| raw_bodies(c, &ids))
                    .await
                {
                    Ok(bodies) => bodies,
                    Err(e) => {
                        tracing::error!(error = %e, "reading uploads to forward failed");
                        for due in &chosen {
                            lock(&in_flight).remove(&due.id);
                            lock(&busy_tasks).remove(&(due.task_id.clone(), due.target.clone()));
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            };
            for due in chosen {
                if let Some(l) = &limiter {
                    l.until_ready().await;
                }
                let permit = permits.clone().acquire_owned().await.expect("never closed");
                let upstream = upstreams
                    .entry(due.target.clone())
                    .or_insert_with(|| (self.upstream)(&due.target))
                    .clone();
                let body = bodies.remove(&due.upload_id).unwrap_or_default();
                let (policy, tally, recordings) = (
                    self.config.policy.clone(),
                    self.tally.clone(),
                    recordings.clone(),
                );
                started += 1;
                tokio::spawn(async move {
                    {
                        let result = upstream.send(&due.task_id, body).await;
                        // The next send need not wait for this one's commit.
                        drop(permit);
                        tally.sent.fetch_add(1, Relaxed);
                        let o = outcome(&due, result, &policy);
                        match o.state {
                            DeliveryState::Delivered => tally.delivered.fetch_add(1, Relaxed),
                            DeliveryState::Pending => tally.retrying.fetch_add(1, Relaxed),
                            _ => tally.failed.fetch_add(1, Relaxed),
                        };
                        if o.state != DeliveryState::Delivered {
                            tracing::warn!(delivery = due.id, task_id = %due.task_id, state = o.state.as_str(),
                                status = o.result.status, error = o.result.transport_error.as_deref().or(o.result.error_code.as_deref()),
                                "delivery attempt did not succeed");
                        }
                        let _ = recordings.send((o, due));
                    }
                });
            }
            // A full batch may have more due behind it: read on at once, unless some
            // rows must wait (then the next read starts at them, after a wake-up,
            // instead of reading the same rows again and again).
            if more_due && revisit.is_none() {
                continue;
            }
            if let Some(r) = revisit {
                cursor = cursor.min(r - 1);
            }
            if started == 0 {
                let idle = in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty();
                if until_idle && idle {
                    let runner = self.config.runner;
                    let pending = self
                        .reads
                        .clone()
                        .with_blocking(move |c| count_pending(c, runner))
                        .await
                        .unwrap_or(1);
                    if pending == 0 {
                        break;
                    }
                }
            }
            // Woken by new uploads or finished sends; otherwise poll for retries.
            let _ = tokio::time::timeout(Duration::from_millis(500), self.wake.notified()).await;
            // Commits come many a second: one read after a short pause serves them
            // all, and leaves the CPU to ingest.
            if !hurry.swap(false, SeqCst) {
                tokio::time::sleep(GATHER).await;
            }
        }
        // Let sends in flight finish and record their outcome.
        while !lock(&in_flight).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(recordings);
        let _ = recording.await;
    }
}

/// How often the sender looks at every due delivery, not only new ones.
const FULL_SCAN_EVERY: Duration = Duration::from_millis(250);
/// Deliveries read from the outbox at a time (also in `fetch_due`'s SQL).
const FETCH_BATCH: usize = 512;
/// The pause between being woken and reading the outbox.
const GATHER: Duration = Duration::from_millis(25);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn count_pending(conn: &Connection, runner: Runner) -> Result<i64, StorageError> {
    Ok(match runner {
        Runner::Server => conn
            .prepare_cached(
                "SELECT count(*) FROM deliveries d LEFT JOIN replays r ON r.id = d.replay_id
                 WHERE d.state = 'pending' AND (d.replay_id IS NULL OR r.runner = 'server')",
            )?
            .query_row([], |r| r.get(0))?,
        Runner::Replay(id) => conn
            .prepare_cached(
                "SELECT count(*) FROM deliveries WHERE replay_id = ?1 AND state = 'pending'",
            )?
            .query_row(params![id], |r| r.get(0))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_an_hour_with_jitter() {
        let p = RetryPolicy::default();
        for (attempts, base) in [(1u32, 5.0), (2, 10.0), (3, 20.0), (6, 160.0)] {
            let d = p.backoff(attempts, None).as_secs_f64();
            assert!(d >= base * 0.8 && d <= base * 1.2, "{attempts}: {d}");
        }
        assert!(p.backoff(30, None) <= Duration::from_secs(3600));
        assert!(p.backoff(30, None) >= Duration::from_secs(2880));
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(42))),
            Duration::from_secs(42)
        );
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(99_999))),
            Duration::from_secs(3600)
        );
    }
}
