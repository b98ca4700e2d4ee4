//! The proxy log: one row per call passed on to SMS (`serve --proxy`).

use rusqlite::{params, Connection};
use serde::Serialize;

use super::StorageError;
use crate::domain::Timestamp;

/// How a proxied call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum CallOutcome {
    /// SMS answered (whatever its status), and the answer was passed on whole.
    Answered,
    /// SMS could not be reached (502).
    Unreachable,
    /// SMS did not answer in time (504).
    Timeout,
    /// The agent's body was larger than the limit (413).
    TooLarge,
    /// The exchange broke off midway: the agent or SMS closed the connection
    /// while a body was still being passed on.
    Aborted,
}

impl CallOutcome {
    /// The outcome as stored.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One proxied call, as recorded.
#[derive(Debug, Clone)]
pub struct ProxyCall {
    /// When the call arrived.
    pub at: Timestamp,
    /// The `X-Request-Id` it was answered with.
    pub request_id: String,
    /// The credential that made it.
    pub credential_name: String,
    /// The TCP peer.
    pub peer_addr: String,
    /// The method.
    pub method: String,
    /// The SMS path.
    pub path: String,
    /// The query, as sent.
    pub query: String,
    /// The status the client got.
    pub status: u16,
    /// Answered by SMS, or why not.
    pub outcome: CallOutcome,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// How long the call took.
    pub latency_us: u64,
    /// SMS's `X-Request-Id`, if it answered.
    pub upstream_request_id: Option<String>,
    /// Bytes of the request's body.
    pub request_bytes: u64,
    /// Bytes of the answer's body.
    pub response_bytes: u64,
    /// The SHA-256 (hex) of the answer's body, when it passed whole.
    pub response_sha256: Option<String>,
    /// The kept start of the request's body (`--proxy-log-bodies`).
    pub request_body: Option<Vec<u8>>,
    /// The kept start of the answer's body (`--proxy-log-bodies`).
    pub response_body: Option<Vec<u8>>,
}

/// Adds a call to the proxy log.
pub fn insert(conn: &Connection, c: &ProxyCall) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO proxy_calls (at, request_id, credential_name, peer_addr, method, path,
            query, status, outcome, error, latency_us, upstream_request_id, request_bytes,
            response_bytes, request_body, response_body, response_sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        c.at,
        c.request_id,
        c.credential_name,
        c.peer_addr,
        c.method,
        c.path,
        c.query,
        c.status,
        c.outcome.as_str(),
        c.error,
        c.latency_us as i64,
        c.upstream_request_id,
        c.request_bytes as i64,
        c.response_bytes as i64,
        c.request_body,
        c.response_body,
        c.response_sha256,
    ])?;
    Ok(())
}

/// Deletes calls older than `before` (the log's retention).
pub fn trim(conn: &Connection, before: Timestamp) -> Result<usize, rusqlite::Error> {
    conn.prepare_cached("DELETE FROM proxy_calls WHERE at < ?1")?
        .execute(params![before])
}

/// Which calls to show; `None` fields match anything.
#[derive(Debug, Default, Clone)]
pub struct CallFilter {
    /// Only calls by this credential.
    pub credential_name: Option<String>,
    /// Only calls with this method.
    pub method: Option<String>,
    /// Calls whose path starts with this.
    pub path_prefix: Option<String>,
    /// Only calls answered with this status.
    pub status: Option<u16>,
    /// Only calls with this outcome.
    pub outcome: Option<CallOutcome>,
}

/// A proxy-log filter's field that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterFieldError {
    /// `status=` is not an HTTP status.
    #[error("status: {0:?} is not an HTTP status (100 to 599)")]
    Status(String),
    /// `outcome=` names no outcome.
    #[error("outcome: {0:?} is not one of answered, unreachable, timeout, too_large, aborted")]
    Outcome(String),
}

impl CallFilter {
    /// From query or form values; blank values match anything.
    pub fn parse(
        credential: Option<&str>,
        method: Option<&str>,
        path: Option<&str>,
        status: Option<&str>,
        outcome: Option<&str>,
    ) -> Result<Self, FilterFieldError> {
        let given = |v: Option<&str>| {
            v.map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let status = given(status)
            .map(|s| match s.parse::<u16>() {
                Ok(n) if (100..=599).contains(&n) => Ok(n),
                _ => Err(FilterFieldError::Status(s)),
            })
            .transpose()?;
        let outcome = given(outcome)
            .map(|o| {
                o.parse::<CallOutcome>()
                    .map_err(|_| FilterFieldError::Outcome(o))
            })
            .transpose()?;
        Ok(Self {
            credential_name: given(credential),
            method: given(method).map(|m| m.to_ascii_uppercase()),
            path_prefix: given(path),
            status,
            outcome,
        })
    }
}

/// A recorded call as the API and the page show it.
#[derive(Debug)]
pub struct CallRow {
    /// Its id.
    pub id: i64,
    /// When the call arrived.
    pub at: Timestamp,
    /// The `X-Request-Id` it was answered with.
    pub request_id: String,
    /// The credential that made it.
    pub credential_name: String,
    /// The TCP peer.
    pub peer_addr: String,
    /// The method.
    pub method: String,
    /// The SMS path.
    pub path: String,
    /// The query, as sent.
    pub query: String,
    /// The status the client got.
    pub status: u16,
    /// Answered by SMS, or why not.
    pub outcome: String,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// How long the call took.
    pub latency_ms: f64,
    /// SMS's `X-Request-Id`, if it answered.
    pub upstream_request_id: Option<String>,
    /// Bytes of the request's body.
    pub request_bytes: i64,
    /// Bytes of the answer's body.
    pub response_bytes: i64,
    /// The SHA-256 (hex) of the answer's body, when it passed whole.
    pub response_sha256: Option<String>,
    /// The kept start of each body (as text, lossily), with `--proxy-log-bodies`.
    pub request_body: Option<String>,
    /// The kept start of the answer's body (as text, lossily).
    pub response_body: Option<String>,
}

/// The newest matching calls with an id below `before_id` first, at most `limit`.
pub fn recent(
    conn: &Connection,
    limit: u32,
    before_id: Option<i64>,
    filter: &CallFilter,
) -> Result<Vec<CallRow>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, request_id, credential_name, peer_addr, method, path, query, status,
                outcome, error, latency_us, upstream_request_id, request_bytes, response_bytes,
                request_body, response_body, response_sha256
         FROM proxy_calls
         WHERE id < ?2
           AND (?3 IS NULL OR credential_name = ?3) AND (?4 IS NULL OR method = ?4)
           AND (?5 IS NULL OR substr(path, 1, length(?5)) = ?5) AND (?6 IS NULL OR status = ?6)
           AND (?7 IS NULL OR outcome = ?7)
         ORDER BY id DESC LIMIT ?1",
    )?;
    let text = |b: Option<Vec<u8>>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
    let rows = stmt.query_map(
        params![
            limit,
            before_id.unwrap_or(i64::MAX),
            filter.credential_name,
            filter.method,
            filter.path_prefix,
            filter.status,
            filter.outcome.map(CallOutcome::as_str),
        ],
        |r| {
            Ok(CallRow {
                id: r.get(0)?,
                at: r.get(1)?,
                request_id: r.get(2)?,
                credential_name: r.get(3)?,
                peer_addr: r.get(4)?,
                method: r.get(5)?,
                path: r.get(6)?,
                query: r.get(7)?,
                status: r.get(8)?,
                outcome: r.get(9)?,
                error: r.get(10)?,
                latency_ms: r.get::<_, i64>(11)? as f64 / 1000.0,
                upstream_request_id: r.get(12)?,
                request_bytes: r.get(13)?,
                response_bytes: r.get(14)?,
                request_body: text(r.get(15)?),
                response_body: text(r.get(16)?),
                response_sha256: r.get(17)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}
