//! Per-peer backoff on failed authentication: every 401 (a wrong token or
//! signature, on the API, the SMS endpoint or the login form) costs its peer
//! one of [`FAILURES_ALLOWED`]; they come back at [`FAILURES_FORGIVEN_PER_SECOND`].
//! A peer with none left gets 429 `APIGW.0308` (with `Retry-After`) for any
//! request that presents credentials, before anything is looked up: guessing
//! tokens goes from thousands a second to one.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures a peer may have in a row before it must wait.
pub const FAILURES_ALLOWED: f64 = 30.0;
/// How fast a peer's failures are forgiven.
pub const FAILURES_FORGIVEN_PER_SECOND: f64 = 1.0;
/// Peers remembered at once; beyond it the least used go first.
const PEERS_AT_MOST: u64 = 100_000;

/// Each peer's failures not yet forgiven, as of when they were last counted; a
/// peer idle long enough to be forgiven all is forgotten.
pub struct AuthFailures(moka::sync::Cache<IpAddr, (f64, Instant)>);

impl Default for AuthFailures {
    fn default() -> Self {
        let all_forgiven = Duration::from_secs_f64(FAILURES_ALLOWED / FAILURES_FORGIVEN_PER_SECOND);
        Self(
            moka::sync::Cache::builder()
                .max_capacity(PEERS_AT_MOST)
                .time_to_idle(all_forgiven)
                .build(),
        )
    }
}

fn forgiven(failures: f64, since: Instant, now: Instant) -> f64 {
    (failures - now.duration_since(since).as_secs_f64() * FAILURES_FORGIVEN_PER_SECOND).max(0.0)
}

impl AuthFailures {
    /// How long `peer` must wait before presenting credentials again, if at all.
    pub fn wait(&self, peer: IpAddr) -> Option<Duration> {
        // Most callers have no failures: `contains_key` is not counted as a
        // read (no record for the eviction policy), so asking costs less.
        if !self.0.contains_key(&peer) {
            return None;
        }
        let (failures, at) = self.0.get(&peer)?;
        let left = forgiven(failures, at, Instant::now());
        // Past the last allowed failure until one is forgiven.
        let over = left - (FAILURES_ALLOWED - 1.0);
        (over > 0.0).then(|| Duration::from_secs_f64(over / FAILURES_FORGIVEN_PER_SECOND))
    }

    /// Counts one failed authentication of `peer`.
    pub fn failed(&self, peer: IpAddr) {
        let now = Instant::now();
        self.0.entry(peer).and_upsert_with(|counted| {
            let before = counted.map_or(0.0, |e| {
                let (failures, at) = *e.value();
                forgiven(failures, at, now)
            });
            (before + 1.0, now)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_waits_once_it_has_failed_too_often_and_others_do_not() {
        let failures = AuthFailures::default();
        let (guesser, other): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..FAILURES_ALLOWED as usize - 1 {
            failures.failed(guesser);
        }
        assert_eq!(failures.wait(guesser), None);
        failures.failed(guesser);
        let wait = failures.wait(guesser).expect("must wait");
        assert!(wait <= Duration::from_secs(2), "{wait:?}");
        assert_eq!(failures.wait(other), None);
    }
}
