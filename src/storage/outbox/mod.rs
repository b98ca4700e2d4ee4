//! The outbox tables (`deliveries`, `delivery_attempts`): queueing live
//! deliveries in the writer's transaction, reading what is due, and recording
//! attempts. The sending policy and the sender are in `services::outbox`; the
//! reads for people (an upload's deliveries, the deliveries page) in [`read`].

pub mod read;

pub use read::*;

use std::collections::HashMap;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{named_params, params, Connection};

use super::StorageError;
use crate::domain::{DeliveryState, Outcome, Runner, Timestamp, Trigger};

impl ToSql for DeliveryState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for DeliveryState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: strum::ParseError| FromSqlError::Other(e.into()))
    }
}

impl ToSql for Trigger {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Trigger {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: strum::ParseError| FromSqlError::Other(e.into()))
    }
}

/// Why a live delivery was superseded (latest wins).
const SUPERSEDED_NOTE: &str = "a newer upload of the task was delivered instead";

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
            "UPDATE deliveries SET state = 'superseded', finished_at = :now, last_error = :note
             WHERE state = 'pending' AND trigger = 'live' AND replay_id IS NULL
               AND target = :target AND upload_id < :first
               AND task_id IN (SELECT task_id FROM uploads WHERE id BETWEEN :first AND :last)",
        )?
        .execute(named_params! {
            ":now": now,
            ":note": SUPERSEDED_NOTE,
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
            CASE WHEN overtaken THEN :note END
         FROM (SELECT u.id, u.task_id, u.received_at,
                 :latest_wins AND u.id < t.last_upload_id AS overtaken
               FROM uploads u JOIN tasks t ON t.task_id = u.task_id
               WHERE u.id BETWEEN :first AND :last)
         ORDER BY id",
    )?
    .execute(named_params! {
        ":target": target,
        ":note": SUPERSEDED_NOTE,
        ":latest_wins": latest_wins,
        ":first": first,
        ":last": last,
    })?;
    Ok(())
}

/// A delivery ready to be attempted.
#[derive(Debug, Clone)]
pub struct Due {
    /// The delivery's id.
    pub id: i64,
    /// The upload it delivers.
    pub upload_id: i64,
    /// That upload's task.
    pub task_id: String,
    /// The endpoint it goes to.
    pub target: String,
    /// Live forwarding or a replay.
    pub trigger: Trigger,
    /// Attempts so far.
    pub attempts: u32,
    /// When it was queued.
    pub created_at: Timestamp,
}

/// A due delivery and the oldest pending upload of its task in the same group
/// (live, or the same replay) and target: that one goes first.
pub struct DueRow {
    /// The delivery.
    pub due: Due,
    /// The oldest pending upload of its task in the same group and target.
    pub oldest_pending: i64,
}

/// The stored bodies of the given uploads (only of those about to be sent).
pub fn raw_bodies(
    conn: &Connection,
    upload_ids: &[i64],
) -> Result<HashMap<i64, Vec<u8>>, StorageError> {
    let mut stmt = conn.prepare_cached("SELECT raw_body FROM uploads WHERE id = ?1")?;
    let mut bodies = HashMap::with_capacity(upload_ids.len());
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

/// Deliveries read from the outbox at a time (also written into `fetch_due`'s SQL).
pub const FETCH_BATCH: usize = 512;

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

/// Due deliveries of `runner` with an id above `after`, oldest first, at most
/// [`FETCH_BATCH`].
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
        o.state,
        o.next_attempt_at,
        r.status,
        o.last_error(),
        finished
    ])?;
    Ok(())
}

/// Records a batch of outcomes in one transaction on a connection of its own
/// (the replay command runs next to a service that owns the writer).
pub fn record_all(conn: &Connection, outcomes: &[Outcome]) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    outcomes.iter().try_for_each(|o| record(&tx, o))?;
    tx.commit()
}

/// Every pending delivery (live, and of any replay), and the oldest one's creation.
pub fn pending_overall(conn: &Connection) -> Result<(i64, Option<i64>), StorageError> {
    Ok(conn
        .prepare_cached("SELECT count(*), min(created_at) FROM deliveries WHERE state = 'pending'")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Deliveries of `runner` still pending.
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
