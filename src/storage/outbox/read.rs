//! Reading the outbox tables (`deliveries`, `delivery_attempts`) for people: an
//! upload's deliveries with their attempts, the deliveries page, and how
//! forwarding is doing.

use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::{DeliveryState, Timestamp, Trigger};
use crate::storage::StorageError;

/// One attempt to deliver an upload to SMS.
#[derive(Debug)]
pub struct AttemptRow {
    /// When it was made.
    pub at: Timestamp,
    /// The URL it was sent to.
    pub target_url: String,
    /// Live forwarding or a replay.
    pub trigger: Trigger,
    /// SMS's HTTP status, if it answered.
    pub http_status: Option<u16>,
    /// SMS's `X-Request-Id`, if it answered.
    pub upstream_request_id: Option<String>,
    /// SMS's `error_code`, if it refused.
    pub error_code: Option<String>,
    /// SMS's `error_msg`, if it refused.
    pub error_msg: Option<String>,
    /// Why no answer came (connection refused, timeout, …).
    pub transport_error: Option<String>,
    /// The start of SMS's answer, as received.
    pub response_head: Option<String>,
    /// How long the attempt took.
    pub latency_ms: i64,
}

/// One delivery of an upload to SMS, with its attempts.
#[derive(Debug)]
pub struct DeliveryRecord {
    /// Its id.
    pub id: i64,
    /// The endpoint it goes to.
    pub target: String,
    /// Live forwarding or a replay.
    pub trigger: Trigger,
    /// The replay run that queued it, if any.
    pub replay_id: Option<i64>,
    /// Where it stands.
    pub state: DeliveryState,
    /// When it was queued.
    pub created_at: Timestamp,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<Timestamp>,
    /// When it was delivered, abandoned or superseded.
    pub finished_at: Option<Timestamp>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptRow>,
}

/// Every delivery of an upload, oldest first, with its attempts.
pub fn deliveries_of(
    conn: &Connection,
    upload_id: i64,
) -> Result<Vec<DeliveryRecord>, StorageError> {
    let mut deliveries: Vec<DeliveryRecord> = conn
        .prepare_cached(
            "SELECT id, target, trigger, replay_id, state, created_at, next_attempt_at,
                    finished_at, last_error
             FROM deliveries WHERE upload_id = ?1 ORDER BY id",
        )?
        .query_map(params![upload_id], |r| {
            let state: DeliveryState = r.get(4)?;
            Ok(DeliveryRecord {
                id: r.get(0)?,
                target: r.get(1)?,
                trigger: r.get(2)?,
                replay_id: r.get(3)?,
                next_attempt_at: (state == DeliveryState::Pending)
                    .then(|| r.get(6))
                    .transpose()?,
                state,
                created_at: r.get(5)?,
                finished_at: r.get(7)?,
                last_error: r.get(8)?,
                attempts: Vec::new(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut attempts = conn.prepare_cached(
        "SELECT at, target_url, trigger, http_status, upstream_request_id, error_code, error_msg,
                transport_error, response_head, latency_ms
         FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id",
    )?;
    for d in &mut deliveries {
        d.attempts = attempts
            .query_map(params![d.id], |r| {
                Ok(AttemptRow {
                    at: r.get(0)?,
                    target_url: r.get(1)?,
                    trigger: r.get(2)?,
                    http_status: r.get(3)?,
                    upstream_request_id: r.get(4)?,
                    error_code: r.get(5)?,
                    error_msg: r.get(6)?,
                    transport_error: r.get(7)?,
                    response_head: r.get(8)?,
                    latency_ms: r.get(9)?,
                })
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(deliveries)
}

/// A delivery as the deliveries page lists it.
#[derive(Debug)]
pub struct DeliveryRow {
    /// Its id.
    pub id: i64,
    /// The upload it delivers.
    pub upload_id: i64,
    /// That upload's task.
    pub task_id: String,
    /// The endpoint it goes to.
    pub target: String,
    /// Live forwarding or a replay.
    pub trigger: Trigger,
    /// The replay run that queued it, if any.
    pub replay_id: Option<i64>,
    /// Where it stands.
    pub state: DeliveryState,
    /// When it was queued.
    pub created_at: Timestamp,
    /// How many attempts it has had.
    pub attempts: i64,
    /// When the next attempt is due.
    pub next_attempt_at: Timestamp,
    /// The last attempt's HTTP status, if SMS answered.
    pub last_status: Option<i64>,
    /// The last attempt's error.
    pub last_error: Option<String>,
}

/// Which deliveries the deliveries page lists; `None` fields match anything.
#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    /// Only deliveries in this state.
    pub state: Option<DeliveryState>,
    /// Only deliveries of this task's uploads.
    pub task_id: Option<String>,
    /// Only deliveries queued at or after this time.
    pub since: Option<Timestamp>,
    /// Only deliveries queued before this time.
    pub until: Option<Timestamp>,
    /// Only deliveries older than this one (the next page).
    pub before_id: Option<i64>,
}

/// The newest matching deliveries (at most `limit`), and the next page's `before_id`.
pub fn deliveries(
    conn: &Connection,
    f: &DeliveryFilter,
    limit: u32,
) -> Result<(Vec<DeliveryRow>, Option<i64>), StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, upload_id, task_id, target, trigger, replay_id, state, created_at, attempts,
                next_attempt_at, last_status, last_error
         FROM deliveries
         WHERE id < ?1 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR task_id = ?3)
           AND created_at >= ?4 AND created_at < ?5
         ORDER BY id DESC LIMIT ?6",
    )?;
    let mut rows: Vec<DeliveryRow> = stmt
        .query_map(
            params![
                f.before_id.unwrap_or(i64::MAX),
                f.state,
                f.task_id,
                f.since.unwrap_or(i64::MIN),
                f.until.unwrap_or(i64::MAX),
                i64::from(limit) + 1
            ],
            |r| {
                Ok(DeliveryRow {
                    id: r.get(0)?,
                    upload_id: r.get(1)?,
                    task_id: r.get(2)?,
                    target: r.get(3)?,
                    trigger: r.get(4)?,
                    replay_id: r.get(5)?,
                    state: r.get(6)?,
                    created_at: r.get(7)?,
                    attempts: r.get(8)?,
                    next_attempt_at: r.get(9)?,
                    last_status: r.get(10)?,
                    last_error: r.get(11)?,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok((rows, next))
}

/// How forwarding is doing.
#[derive(Debug)]
pub struct OutboxHealth {
    /// Deliveries per state (pending, failed, dead).
    pub counts: Vec<(DeliveryState, i64)>,
    /// When the oldest pending delivery was queued.
    pub oldest_pending_at: Option<Timestamp>,
    /// When SMS last accepted a delivery.
    pub last_success_at: Option<Timestamp>,
    /// Failed attempts since the last success.
    pub consecutive_failures: i64,
}

/// How forwarding is doing, from indexed counts.
pub fn outbox_health(conn: &Connection) -> Result<OutboxHealth, StorageError> {
    let mut counts = Vec::new();
    let mut count = conn.prepare_cached("SELECT count(*) FROM deliveries WHERE state = ?1")?;
    // Pending, failed and dead are few and indexed; delivered and superseded
    // deliveries are not counted (that would read them all).
    for state in [
        DeliveryState::Pending,
        DeliveryState::Failed,
        DeliveryState::Dead,
    ] {
        counts.push((state, count.query_row(params![state], |r| r.get(0))?));
    }
    let oldest_pending_at = conn
        // The first queued is the oldest: ids grow with time. Read from the index of
        // pending deliveries instead of visiting each.
        .prepare_cached(
            "SELECT created_at FROM deliveries WHERE state = 'pending' ORDER BY id LIMIT 1",
        )?
        .query_row([], |r| r.get::<_, Timestamp>(0))
        .optional()?;
    // Attempts are recorded in order: the newest success is the last one by id.
    let last_success: Option<(i64, Timestamp)> = conn
        .prepare_cached(
            "SELECT id, at FROM delivery_attempts WHERE http_status BETWEEN 200 AND 299
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let consecutive_failures = conn
        .prepare_cached("SELECT count(*) FROM delivery_attempts WHERE id > ?1")?
        .query_row(params![last_success.map_or(0, |(id, _)| id)], |r| r.get(0))?;
    let last_success_at = last_success.map(|(_, at)| at);
    Ok(OutboxHealth {
        counts,
        oldest_pending_at,
        last_success_at,
        consecutive_failures,
    })
}
