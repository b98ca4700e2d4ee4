//! The rejection log (`rejections`, bounded) and per-minute refusal counts
//! (`rejection_counts`, kept 30 days): the writer's statements and the reads
//! behind the audit page and `/api/v1/rejections`.

use rusqlite::{params, Connection};

use super::StorageError;
use crate::domain::Timestamp;

/// A refused request, for the bounded rejection log.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// When it was refused.
    pub at: Timestamp,
    /// The TCP peer.
    pub peer_addr: String,
    /// The request's method.
    pub method: String,
    /// The request's path (never its query).
    pub path: String,
    /// The HTTP status it was answered with.
    pub status: u16,
    /// The SMS error code it was answered with.
    pub error_code: String,
    /// The message it was answered with, cut to [`MESSAGE_KEPT`] characters
    /// (none in rows logged before messages were kept).
    pub error_msg: Option<String>,
    /// The credential it named, if it named one.
    pub credential_name: Option<String>,
    /// The `X-Request-Id` it was answered with.
    pub request_id: String,
}

/// The most of a refusal's message the log keeps, in characters.
pub const MESSAGE_KEPT: usize = 300;

/// Adds a row to the rejection log.
pub fn insert_rejection(conn: &Connection, r: &Rejection) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO rejections (at, peer_addr, method, path, status, error_code,
            credential_name, request_id, error_msg) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        r.at,
        r.peer_addr,
        r.method,
        r.path,
        r.status,
        r.error_code,
        r.credential_name,
        r.request_id,
        r.error_msg
            .as_deref()
            .map(|m| m.chars().take(MESSAGE_KEPT).collect::<String>())
    ])?;
    Ok(())
}

/// Adds `n` refusals to a minute's count for a peer and error code.
pub fn count_rejections(
    conn: &Connection,
    minute: Timestamp,
    peer: &str,
    code: &str,
    n: i64,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO rejection_counts (minute, peer_addr, error_code, count)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (minute, peer_addr, error_code) DO UPDATE SET count = count + excluded.count",
    )?
    .execute(params![minute, peer, code, n])?;
    Ok(())
}

/// Drops per-minute rejection counts older than [`REJECTION_COUNTS_KEPT_MS`].
pub fn trim_rejection_counts(conn: &Connection, now: Timestamp) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("DELETE FROM rejection_counts WHERE minute < ?1")?
        .execute(params![now - REJECTION_COUNTS_KEPT_MS])?;
    Ok(())
}

/// How long per-minute rejection counts are kept: 30 days.
pub const REJECTION_COUNTS_KEPT_MS: i64 = 30 * 86_400_000;

/// Keeps the newest `kept` rows of the rejection log.
pub fn trim_rejections(conn: &Connection, kept: i64) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "DELETE FROM rejections WHERE id <= (SELECT max(id) FROM rejections) - ?1",
    )?
    .execute(params![kept])?;
    Ok(())
}

/// Which rejections to show; `None` fields match anything.
#[derive(Debug, Default, Clone)]
pub struct RejectionFilter {
    /// Only this HTTP status.
    pub status: Option<u16>,
    /// Only this SMS error code.
    pub error_code: Option<String>,
    /// Only requests that named this credential.
    pub credential_name: Option<String>,
}

/// Refusals of one peer with one error code in one minute.
#[derive(Debug)]
pub struct RejectionCount {
    /// The minute's start.
    pub minute: Timestamp,
    /// The TCP peer.
    pub peer_addr: String,
    /// The SMS error code.
    pub error_code: String,
    /// How many refusals.
    pub count: i64,
}

/// Per-minute refusal counts from `since` on, the largest first (at most `limit`).
pub fn rejection_counts(
    conn: &Connection,
    since: Timestamp,
    limit: u32,
) -> Result<Vec<RejectionCount>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT minute, peer_addr, error_code, count FROM rejection_counts
         WHERE minute >= ?1 ORDER BY count DESC, minute DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![since, limit], |r| {
        Ok(RejectionCount {
            minute: r.get(0)?,
            peer_addr: r.get(1)?,
            error_code: r.get(2)?,
            count: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest matching rejections first (the log is bounded, so this scan is too).
pub fn recent_rejections(
    conn: &Connection,
    limit: u32,
    filter: &RejectionFilter,
) -> Result<Vec<Rejection>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, peer_addr, method, path, status, error_code, credential_name, request_id,
            error_msg
         FROM rejections
         WHERE (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR error_code = ?3)
           AND (?4 IS NULL OR credential_name = ?4)
         ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(
        params![
            limit,
            filter.status,
            filter.error_code,
            filter.credential_name
        ],
        |r| {
            Ok(Rejection {
                at: r.get(0)?,
                peer_addr: r.get(1)?,
                method: r.get(2)?,
                path: r.get(3)?,
                status: r.get(4)?,
                error_code: r.get(5)?,
                credential_name: r.get(6)?,
                request_id: r.get(7)?,
                error_msg: r.get(8)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}
