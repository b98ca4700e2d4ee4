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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::{lock, Timestamp};
use crate::storage::proxy_log::ProxyCall;
use crate::storage::uploads::Rejection;

/// How often waiting rejections are stored when no other write comes.
pub(super) const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Rows waiting at most; more are counted but not kept.
const ROWS_WAITING: usize = 1000;
/// Proxied calls waiting at most.
pub const CALLS_WAITING: usize = 200_000;
/// Distinct (minute, peer, code) counts waiting at most; beyond, peers are
/// counted together as `*`.
const KEYS_WAITING: usize = 10_000;

/// What waits to be stored.
#[derive(Default)]
pub struct Waiting {
    pub rows: Vec<Rejection>,
    /// (minute, peer, error code) → refusals.
    pub counts: HashMap<(Timestamp, String, String), i64>,
    pub calls: Vec<ProxyCall>,
}

#[derive(Default)]
pub struct LogBuffer(Mutex<Waiting>);

impl LogBuffer {
    /// Never waits for the database, never fails.
    pub fn record(&self, r: Rejection) {
        let mut waiting = lock(&self.0);
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
    pub fn record_call(&self, call: ProxyCall) {
        let mut waiting = lock(&self.0);
        if waiting.calls.len() >= CALLS_WAITING {
            tracing::error!(path = %call.path, "a proxied call could not be recorded: the database has not taken the proxy log for too long");
            return;
        }
        waiting.calls.push(call);
    }

    /// Calls whose commit failed wait for the next one, in their order.
    pub(super) fn put_back_calls(&self, mut calls: Vec<ProxyCall>) {
        let mut waiting = lock(&self.0);
        let room = CALLS_WAITING.saturating_sub(waiting.calls.len());
        calls.truncate(room);
        calls.append(&mut waiting.calls);
        waiting.calls = calls;
    }

    pub(super) fn is_empty(&self) -> bool {
        let waiting = lock(&self.0);
        waiting.counts.is_empty() && waiting.calls.is_empty()
    }

    pub(super) fn take(&self) -> Waiting {
        std::mem::take(&mut *lock(&self.0))
    }
}
