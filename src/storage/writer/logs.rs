//! The logs' way to the database, apart from the upload queue: neither a flood of
//! refused requests nor a stream of proxied calls takes a slot an upload needs,
//! and neither wakes the writer per row. The writer stores what waits with its
//! next commit, or every [`FLUSH_EVERY`] when no upload comes.
//!
//! - The rejection log is lossy: rows wait in a small buffer (beyond it they are
//!   dropped), but every refusal is counted per minute, peer and error code, so a
//!   flood stays visible after its rows roll over.
//! - The proxy log keeps every call; only when [`CALLS_WAITING`] calls already
//!   wait (the database has been failing for a while) is a call dropped, and
//!   that is logged as an error.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

use crate::domain::Timestamp;
use crate::storage::proxy_log::ProxyCall;
use crate::storage::rejections::Rejection;

/// How often waiting rejections are stored when no other write comes.
pub(super) const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Rows waiting at most; more are counted but not kept.
const ROWS_WAITING: usize = 1000;
/// Proxied calls waiting at most.
pub const CALLS_WAITING: usize = 200_000;
/// Bytes of proxied calls (paths, queries, kept bodies) waiting at most: beyond
/// it a call waits without its bodies, and past that too it is dropped.
pub const CALL_BYTES_WAITING: usize = 64 * 1024 * 1024;

/// About what a waiting call holds in memory.
fn call_bytes(call: &ProxyCall) -> usize {
    let bodies = call.request_body.as_ref().map_or(0, Vec::len)
        + call.response_body.as_ref().map_or(0, Vec::len);
    256 + call.path.len() + call.query.len() + bodies
}
/// Distinct (minute, peer, code) counts waiting at most; beyond, peers are
/// counted together as `*`.
const KEYS_WAITING: usize = 10_000;

/// What waits to be stored.
#[derive(Default)]
pub struct PendingLogs {
    pub rows: Vec<Rejection>,
    /// (minute, peer, error code) → refusals.
    pub counts: HashMap<(Timestamp, String, String), i64>,
    pub calls: Vec<ProxyCall>,
    /// [`call_bytes`] of `calls`.
    pub call_bytes: usize,
}

#[derive(Default)]
pub struct LogBuffer(Mutex<PendingLogs>);

impl LogBuffer {
    /// Never waits for the database, never fails.
    pub fn record(&self, r: Rejection) {
        let mut waiting = self.0.lock();
        let minute = r.at - r.at.rem_euclid(60_000);
        let mut key = (minute, r.peer_addr.clone(), r.error_code.clone());
        if waiting.counts.len() >= KEYS_WAITING && !waiting.counts.contains_key(&key) {
            key.1 = "*".into();
        }
        *waiting.counts.entry(key).or_insert(0) += 1;
        if waiting.rows.len() < ROWS_WAITING {
            waiting.rows.push(r);
        }
    }

    /// Never waits for the database.
    pub fn record_call(&self, mut call: ProxyCall) {
        let mut waiting = self.0.lock();
        if waiting.call_bytes + call_bytes(&call) > CALL_BYTES_WAITING {
            call.request_body = None;
            call.response_body = None;
        }
        let bytes = call_bytes(&call);
        if waiting.calls.len() >= CALLS_WAITING || waiting.call_bytes + bytes > CALL_BYTES_WAITING {
            tracing::error!(path = %call.path, "a proxied call could not be recorded: the database has not taken the proxy log for too long");
            return;
        }
        waiting.call_bytes += bytes;
        waiting.calls.push(call);
    }

    /// Calls whose commit failed wait for the next one, in their order (as many
    /// as the bounds leave room for).
    pub(super) fn put_back_calls(&self, calls: Vec<ProxyCall>) {
        let mut waiting = self.0.lock();
        let newer = std::mem::take(&mut waiting.calls);
        waiting.call_bytes = 0;
        for call in calls.into_iter().chain(newer) {
            let bytes = call_bytes(&call);
            if waiting.calls.len() < CALLS_WAITING
                && waiting.call_bytes + bytes <= CALL_BYTES_WAITING
            {
                waiting.call_bytes += bytes;
                waiting.calls.push(call);
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        let waiting = self.0.lock();
        waiting.counts.is_empty() && waiting.calls.is_empty()
    }

    pub(super) fn take(&self) -> PendingLogs {
        std::mem::take(&mut *self.0.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::proxy_log::CallOutcome;

    fn call(body: usize) -> ProxyCall {
        ProxyCall {
            at: 0,
            request_id: String::new(),
            credential_name: String::new(),
            peer_addr: String::new(),
            method: "POST".into(),
            path: "/v3/tasks/t/log".into(),
            query: String::new(),
            status: 200,
            outcome: CallOutcome::Answered,
            error: None,
            latency_us: 0,
            upstream_request_id: None,
            request_bytes: body as u64,
            response_bytes: 0,
            response_sha256: None,
            request_body: Some(vec![b'x'; body]),
            response_body: None,
        }
    }

    #[test]
    fn waiting_calls_are_bounded_in_bytes_keeping_calls_before_bodies() {
        let buffer = LogBuffer::default();
        for _ in 0..(CALL_BYTES_WAITING / (16 * 1024)) + 100 {
            buffer.record_call(call(16 * 1024));
        }
        let waiting = buffer.take();
        assert!(waiting.call_bytes <= CALL_BYTES_WAITING);
        let kept: usize = waiting.calls.iter().map(call_bytes).sum();
        assert_eq!(kept, waiting.call_bytes);
        // The last calls came without their bodies rather than not at all.
        assert!(waiting.calls.last().unwrap().request_body.is_none());
        assert!(waiting.calls.first().unwrap().request_body.is_some());
        assert!(waiting.calls.len() > CALL_BYTES_WAITING / (16 * 1024 + 300));
        // Put back after a failed commit, they stay within the bounds.
        buffer.put_back_calls(waiting.calls);
        assert!(buffer.take().call_bytes <= CALL_BYTES_WAITING);
    }
}
