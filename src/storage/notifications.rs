//! Notifications: events (deduplicated by their key), their sends to each
//! `--notify-url` with the delivery state machine's states, and the reads that
//! find new events.

use rusqlite::{params, Connection, OptionalExtension};

use super::StorageError;
use crate::domain::Timestamp;

/// An event to announce.
#[derive(Debug, Clone)]
pub struct Event {
    /// Unique per event: the same event found twice is stored once.
    pub key: String,
    /// What happened (the notification's kind).
    pub kind: &'static str,
    /// The message, as sent.
    pub text: String,
    /// The JSON object to POST (with `text`).
    pub payload: String,
}

/// Stores the event and a pending send to each URL, unless it is known already.
/// Returns whether it was new.
pub fn add(
    conn: &Connection,
    e: &Event,
    urls: &[String],
    now: Timestamp,
) -> rusqlite::Result<bool> {
    let added = conn.execute(
        "INSERT OR IGNORE INTO notifications (event, kind, text, payload, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![e.key, e.kind, e.text, e.payload, now],
    )?;
    if added == 0 {
        return Ok(false);
    }
    let id = conn.last_insert_rowid();
    let mut send = conn.prepare_cached(
        "INSERT INTO notification_sends (notification_id, url, state, created_at, next_attempt_at)
         VALUES (?1, ?2, 'pending', ?3, ?3)",
    )?;
    for url in urls {
        send.execute(params![id, url, now])?;
    }
    Ok(true)
}

/// A send that is due.
#[derive(Debug, Clone)]
pub struct DueSend {
    /// The send's id.
    pub id: i64,
    /// Where it goes.
    pub url: String,
    /// The JSON sent.
    pub payload: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When the notification was made.
    pub created_at: Timestamp,
}

/// Sends due at `now`, oldest first (at most `limit`).
pub fn due(conn: &Connection, now: Timestamp, limit: u32) -> Result<Vec<DueSend>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.id, s.url, n.payload, s.attempts, s.created_at
         FROM notification_sends s JOIN notifications n ON n.id = s.notification_id
         WHERE s.state = 'pending' AND s.next_attempt_at <= ?1
         ORDER BY s.next_attempt_at LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, limit], |r| {
        Ok(DueSend {
            id: r.get(0)?,
            url: r.get(1)?,
            payload: r.get(2)?,
            attempts: r.get(3)?,
            created_at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An attempt's outcome: the send's new state (`pending` with its next time).
pub fn record(
    conn: &Connection,
    id: i64,
    state: &str,
    next_attempt_at: Timestamp,
    status: Option<u16>,
    error: Option<&str>,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE notification_sends SET state = ?2, next_attempt_at = ?3, attempts = attempts + 1,
             last_status = ?4, last_error = ?5,
             finished_at = CASE WHEN ?2 = 'pending' THEN NULL ELSE ?6 END
         WHERE id = ?1",
        params![id, state, next_attempt_at, status, error, now],
    )?;
    Ok(())
}

/// A notification and its sends, for `/deliveries`.
#[derive(Debug, Clone)]
pub struct SentNotification {
    /// The notification's id.
    pub id: i64,
    /// What happened.
    pub kind: String,
    /// The message.
    pub text: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// Where it was sent.
    pub url: String,
    /// Where the send stands (`pending`, `sent`, `failed`).
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// The last attempt's HTTP status.
    pub last_status: Option<i64>,
    /// The last attempt's error.
    pub last_error: Option<String>,
}

/// The newest sends (at most `limit`), with their notifications.
pub fn recent(conn: &Connection, limit: u32) -> Result<Vec<SentNotification>, StorageError> {
    if !super::has_table(conn, "notifications")? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT n.id, n.kind, n.text, n.created_at, s.url, s.state, s.attempts, s.last_status,
                s.last_error
         FROM notification_sends s JOIN notifications n ON n.id = s.notification_id
         ORDER BY s.id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok(SentNotification {
            id: r.get(0)?,
            kind: r.get(1)?,
            text: r.get(2)?,
            created_at: r.get(3)?,
            url: r.get(4)?,
            state: r.get(5)?,
            attempts: r.get(6)?,
            last_status: r.get(7)?,
            last_error: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A regressed upload.
pub struct Regressed {
    /// The upload's id.
    pub id: i64,
    /// Its task.
    pub task_id: String,
    /// Its problems.
    pub problems: i64,
}

/// Regressed uploads found per scan at most.
const REGRESSED_PER_SCAN: usize = 1000;

/// Regressed uploads with ids in `(after, up_to]`, and the id the scan reached
/// (`up_to`, or the last one returned when there were more): the next scan starts
/// there, so each scan reads only uploads stored since the last one.
pub fn regressed_between(
    conn: &Connection,
    after: i64,
    up_to: i64,
) -> Result<(Vec<Regressed>, i64), StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, task_id, different_files + target_miss_files + target_more_files
         FROM uploads WHERE id > ?1 AND id <= ?2 AND regressed = 1 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![after, up_to, REGRESSED_PER_SCAN as i64], |r| {
        Ok(Regressed {
            id: r.get(0)?,
            task_id: r.get(1)?,
            problems: r.get(2)?,
        })
    })?;
    let found: Vec<Regressed> = rows.collect::<Result<_, _>>()?;
    let reached = match found.last() {
        Some(last) if found.len() == REGRESSED_PER_SCAN => last.id,
        _ => up_to.max(after),
    };
    Ok((found, reached))
}

/// The newest verification run's id (0: none).
pub fn last_verification_id(conn: &Connection) -> Result<i64, StorageError> {
    Ok(
        conn.query_row("SELECT coalesce(max(id), 0) FROM verifications", [], |r| {
            r.get(0)
        })?,
    )
}

/// A delivery to SMS that was given up.
pub struct GivenUp {
    /// The delivery's id.
    pub id: i64,
    /// The upload it delivers.
    pub upload_id: i64,
    /// That upload's task.
    pub task_id: String,
    /// Where it was going.
    pub target: String,
    /// Its state (`dead`).
    pub state: String,
    /// The last attempt's HTTP status.
    pub last_status: Option<i64>,
    /// The last attempt's error.
    pub last_error: Option<String>,
}

/// Deliveries given up (failed or dead) since `since` (from their partial index:
/// a delivery's id says nothing of when it was given up).
pub fn given_up_since(conn: &Connection, since: Timestamp) -> Result<Vec<GivenUp>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, upload_id, task_id, target, state, last_status, last_error FROM deliveries
         WHERE state IN ('failed', 'dead') AND finished_at >= ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([since], |r| {
        Ok(GivenUp {
            id: r.get(0)?,
            upload_id: r.get(1)?,
            task_id: r.get(2)?,
            target: r.get(3)?,
            state: r.get(4)?,
            last_status: r.get(5)?,
            last_error: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A verification that found damage.
pub struct Broken {
    /// The verification run's id.
    pub id: i64,
    /// The first entry that did not check out.
    pub first_bad_id: i64,
    /// What was wrong with it.
    pub problem: String,
    /// Who asked for the run.
    pub requested_by: String,
}

/// Runs that found the chain broken, after run `after`.
pub fn broken_verifications_after(
    conn: &Connection,
    after: i64,
) -> Result<Vec<Broken>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, first_bad_id, coalesce(problem, ''), requested_by FROM verifications
         WHERE id > ?1 AND first_bad_id IS NOT NULL ORDER BY id",
    )?;
    let rows = stmt.query_map([after], |r| {
        Ok(Broken {
            id: r.get(0)?,
            first_bad_id: r.get(1)?,
            problem: r.get(2)?,
            requested_by: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Since when the latest delivery attempts to SMS have all failed (none: the
/// latest succeeded, or there are none); read from the newest 1,000 attempts.
pub fn upstream_failing_since(conn: &Connection) -> Result<Option<Timestamp>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, coalesce(http_status BETWEEN 200 AND 299, 0) FROM delivery_attempts
         ORDER BY id DESC LIMIT 1000",
    )?;
    let mut rows = stmt.query([])?;
    let mut since = None;
    while let Some(r) = rows.next()? {
        let (at, ok): (Timestamp, bool) = (r.get(0)?, r.get(1)?);
        if ok {
            break;
        }
        since = Some(at);
    }
    Ok(since)
}

/// The highest id of a kind's source rows already announced (from the event
/// keys `<prefix><id>…`), where the scans start after a restart.
pub fn announced_up_to(
    conn: &Connection,
    kind: &str,
    prefix: &str,
) -> Result<Option<i64>, StorageError> {
    let key: Option<String> = conn
        .query_row(
            "SELECT event FROM notifications WHERE kind = ?1 ORDER BY id DESC LIMIT 1",
            [kind],
            |r| r.get(0),
        )
        .optional()?;
    Ok(key.and_then(|k| k.strip_prefix(prefix)?.split(':').next()?.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::regressed_between;
    use crate::storage::uploads::NewUpload;
    use crate::storage::{open_read, writer};

    /// A scan reaches the head it was given even when nothing regressed, so the
    /// next one reads only newer uploads (not everything since the last regression).
    #[test]
    fn a_regression_scan_reaches_its_bound_with_or_without_finds() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("d.db");
        let (handle, thread) = writer::spawn(&db, Default::default()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Problems per upload of one task: 1, 1, 1, 3 (the fourth regressed), 3.
        for (n, different) in [0, 0, 0, 2, 2].into_iter().enumerate() {
            let upload = NewUpload::for_test(n, "task", "/d", [9, different, 1, 0]);
            runtime.block_on(handle.submit(upload)).unwrap();
        }
        handle.shutdown();
        thread.join();
        let conn = open_read(&db).unwrap();
        let (found, reached) = regressed_between(&conn, 0, 3).unwrap();
        assert!(found.is_empty());
        assert_eq!(reached, 3);
        let (found, reached) = regressed_between(&conn, reached, 5).unwrap();
        assert_eq!(found.iter().map(|r| r.id).collect::<Vec<_>>(), [4]);
        assert_eq!(found[0].problems, 3);
        assert_eq!(reached, 5);
    }
}
