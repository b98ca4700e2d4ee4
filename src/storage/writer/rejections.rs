//! The rejection log's way to the database: lossy, and apart from the upload
//! queue, so that a flood of refused requests never takes a slot an upload needs.
//! Rows wait in a small buffer (beyond it they are dropped); every refusal is
//! also counted per minute, peer and error code, so a flood stays visible after
//! its rows roll over. The writer stores what waits with its next commit, or
//! every [`FLUSH_EVERY`] when no upload comes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::{lock, Timestamp};
use crate::storage::uploads::Rejection;

/// How often waiting rejections are stored when no other write comes.
pub(super) const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Rows waiting at most; more are counted but not kept.
const ROWS_WAITING: usize = 1000;
/// Distinct (minute, peer, code) counts waiting at most; beyond, peers are
/// counted together as `*`.
const KEYS_WAITING: usize = 10_000;

/// What waits to be stored.
#[derive(Default)]
pub struct Waiting {
    pub rows: Vec<Rejection>,
    /// (minute, peer, error code) → refusals.
    pub counts: HashMap<(Timestamp, String, String), i64>,
}

#[derive(Default)]
pub struct RejectionLog(Mutex<Waiting>);

impl RejectionLog {
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

    pub(super) fn is_empty(&self) -> bool {
        lock(&self.0).counts.is_empty()
    }

    pub(super) fn take(&self) -> Waiting {
        std::mem::take(&mut *lock(&self.0))
    }
}
