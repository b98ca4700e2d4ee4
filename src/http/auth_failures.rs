//! Per-peer backoff on failed authentication: every 401 (a wrong token or
//! signature, on the API, the SMS endpoint or the login form) costs its peer
//! one of [`FAILURES_ALLOWED`]; they come back at [`FAILURES_FORGIVEN_PER_SECOND`].
//! A peer with none left gets 429 `APIGW.0308` (with `Retry-After`) for any
//! request that presents credentials, before anything is looked up: guessing
//! tokens goes from thousands a second to one.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures a peer may have in a row before it must wait.
pub const FAILURES_ALLOWED: f64 = 30.0;
/// How fast a peer's failures are forgiven.
pub const FAILURES_FORGIVEN_PER_SECOND: f64 = 1.0;
/// Peers remembered at once; beyond it those with the fewest failures go first.
const PEERS_AT_MOST: usize = 100_000;

#[derive(Default)]
pub struct AuthFailures {
    /// Each peer's failures not yet forgiven, as of when they were last counted.
    peers: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

fn forgiven(failures: f64, since: Instant, now: Instant) -> f64 {
    (failures - now.duration_since(since).as_secs_f64() * FAILURES_FORGIVEN_PER_SECOND).max(0.0)
}

impl AuthFailures {
    /// How long `peer` must wait before presenting credentials again, if at all.
    pub fn wait(&self, peer: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let peers = self.peers.lock();
        let (failures, at) = peers.get(&peer)?;
        let left = forgiven(*failures, *at, now);
        // Past the last allowed failure until one is forgiven.
        let over = left - (FAILURES_ALLOWED - 1.0);
        (over > 0.0).then(|| Duration::from_secs_f64(over / FAILURES_FORGIVEN_PER_SECOND))
    }

    /// Counts one failed authentication of `peer`.
    pub fn failed(&self, peer: IpAddr) {
        let now = Instant::now();
        let mut peers = self.peers.lock();
        if peers.len() >= PEERS_AT_MOST && !peers.contains_key(&peer) {
            peers.retain(|_, (failures, at)| forgiven(*failures, *at, now) >= 1.0);
            if peers.len() >= PEERS_AT_MOST {
                peers.clear();
            }
        }
        let entry = peers.entry(peer).or_insert((0.0, now));
        *entry = (forgiven(entry.0, entry.1, now) + 1.0, now);
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
