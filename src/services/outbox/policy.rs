//! The sending policy, as pure functions: what an attempt's answer means, how long
//! to wait before the next one (backoff, jitter, `Retry-After`), when to give up,
//! and which of a task's deliveries may go now. Latest wins is applied when
//! deliveries are queued (`storage::outbox::enqueue_live`), in the writer's
//! transaction.

use std::time::Duration;

use crate::domain::{AttemptResult, DeliveryState, Outcome, Timestamp, Trigger};
use crate::storage::outbox::Due;

/// Retry policy: about 5 s doubling to a 1 h cap, with ±20 % jitter; give up
/// (`dead`) once a delivery is older than `max_age`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// The first retry's delay.
    pub first: Duration,
    /// The longest delay between retries.
    pub cap: Duration,
    /// A delivery still failing after this long is `dead`.
    pub max_age: Duration,
}

impl RetryPolicy {
    /// About 5 s doubling to 1 h; given up after 72 h.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        first: Duration::from_secs(5),
        cap: Duration::from_secs(3600),
        max_age: Duration::from_secs(72 * 3600),
    };
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The longest `Retry-After` honoured.
pub const RETRY_AFTER_LIMIT: Duration = Duration::from_secs(3600);

/// How far a wait is spread either way, so that retries after an outage do not
/// all arrive at once.
const JITTER: std::ops::Range<f64> = 0.8..1.2;

impl RetryPolicy {
    /// The wait before attempt `attempts + 1`, `attempts` (≥ 1) having failed, with
    /// random jitter.
    pub fn backoff(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        use rand::Rng;
        self.backoff_with_jitter(attempts, retry_after, rand::rng().random_range(JITTER))
    }

    /// [`backoff`](Self::backoff) with the jitter factor given.
    pub fn backoff_with_jitter(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Duration {
        if let Some(after) = retry_after {
            // SMS's word counts, but not beyond an hour.
            return after.min(RETRY_AFTER_LIMIT);
        }
        let exp = self
            .first
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
            .min(self.cap);
        exp.mul_f64(jitter).min(self.cap)
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// SMS took it (2xx).
    Delivered,
    /// Worth trying again (connection error, timeout, 429, 5xx).
    Retry,
    /// SMS refused it for good (400/401/403/404 and other 4xx).
    Failed,
}

/// What an attempt's HTTP status (none: no answer) means.
pub fn verdict(status: Option<u16>) -> Verdict {
    match status {
        None => Verdict::Retry,
        Some(s) if (200..300).contains(&s) => Verdict::Delivered,
        Some(429) | Some(500..=599) => Verdict::Retry,
        Some(_) => Verdict::Failed,
    }
}

/// Why an attempt is made: a delivery's first attempt by its trigger, later ones
/// are retries.
pub fn attempt_trigger(previous_attempts: u32, delivery_trigger: Trigger) -> Trigger {
    match (previous_attempts, delivery_trigger) {
        (0, Trigger::Replay) => Trigger::Replay,
        (0, _) => Trigger::Live,
        _ => Trigger::Retry,
    }
}

/// The delivery's state after an attempt and when it is next due: a retry that
/// would come after `max_age` (counted from the delivery's creation) is given up.
pub fn next_state(
    policy: &RetryPolicy,
    verdict: Verdict,
    wait: Duration,
    created_at: Timestamp,
    now: Timestamp,
) -> (DeliveryState, Timestamp) {
    match verdict {
        Verdict::Delivered => (DeliveryState::Delivered, now),
        Verdict::Failed => (DeliveryState::Failed, now),
        Verdict::Retry => {
            let next = now + wait.as_millis() as i64;
            if next - created_at > policy.max_age.as_millis() as i64 {
                (DeliveryState::Dead, now)
            } else {
                (DeliveryState::Pending, next)
            }
        }
    }
}

/// The state and next due time after an attempt that got `status` (none: no
/// answer) and perhaps a `Retry-After`, for something tried `previous_attempts`
/// times before and created at `created_at`: deliveries and notifications alike.
pub fn after_attempt(
    policy: &RetryPolicy,
    (status, retry_after): (Option<u16>, Option<Duration>),
    previous_attempts: u32,
    created_at: Timestamp,
    now: Timestamp,
) -> (DeliveryState, Timestamp) {
    let verdict = verdict(status);
    let wait = match verdict {
        Verdict::Retry => policy.backoff(previous_attempts + 1, retry_after),
        _ => Duration::ZERO,
    };
    next_state(policy, verdict, wait, created_at, now)
}

/// Order per task: a delivery goes only once it is the oldest pending upload of
/// its task in its group.
pub fn may_go_now(upload_id: i64, oldest_pending_of_task: i64) -> bool {
    oldest_pending_of_task >= upload_id
}

/// Decides what an attempt made at `now` means for the delivery.
pub fn outcome(due: &Due, result: AttemptResult, policy: &RetryPolicy, now: Timestamp) -> Outcome {
    let (state, next_attempt_at) = after_attempt(
        policy,
        (result.status, result.retry_after),
        due.attempts,
        due.created_at,
        now,
    );
    Outcome {
        delivery_id: due.id,
        at: now,
        attempt_trigger: attempt_trigger(due.attempts, due.trigger),
        result,
        state,
        next_attempt_at,
    }
}

/// A delivery whose stored target is not one this service may send to (a
/// restored or edited database): failed at once, nothing sent, the reason kept.
pub fn refused_target(due: &Due, why: String, now: Timestamp) -> Outcome {
    Outcome {
        delivery_id: due.id,
        at: now,
        attempt_trigger: attempt_trigger(due.attempts, due.trigger),
        result: AttemptResult {
            url: due.target.clone(),
            transport_error: Some(format!("not sent: {why}")),
            ..AttemptResult::default()
        },
        state: DeliveryState::Failed,
        next_attempt_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_an_hour_with_jitter() {
        let p = RetryPolicy::default();
        for (attempts, base) in [(1u32, 5.0), (2, 10.0), (3, 20.0), (6, 160.0)] {
            let d = p.backoff(attempts, None).as_secs_f64();
            assert!(d >= base * 0.8 && d <= base * 1.2, "{attempts}: {d}");
        }
        assert!(p.backoff(30, None) <= Duration::from_secs(3600));
        assert!(p.backoff(30, None) >= Duration::from_secs(2880));
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(42))),
            Duration::from_secs(42)
        );
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(99_999))),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn jitter_scales_the_wait_but_never_past_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_with_jitter(2, None, 1.0), Duration::from_secs(10));
        assert_eq!(p.backoff_with_jitter(2, None, 0.8), Duration::from_secs(8));
        assert_eq!(
            p.backoff_with_jitter(40, None, 1.2),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn statuses_mean_delivered_retry_or_failed() {
        assert_eq!(verdict(Some(200)), Verdict::Delivered);
        assert_eq!(verdict(Some(204)), Verdict::Delivered);
        assert_eq!(verdict(None), Verdict::Retry);
        assert_eq!(verdict(Some(429)), Verdict::Retry);
        assert_eq!(verdict(Some(503)), Verdict::Retry);
        assert_eq!(verdict(Some(400)), Verdict::Failed);
        assert_eq!(verdict(Some(401)), Verdict::Failed);
        assert_eq!(verdict(Some(404)), Verdict::Failed);
    }

    #[test]
    fn a_retry_past_the_maximum_age_is_dead() {
        let p = RetryPolicy {
            max_age: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let wait = Duration::from_secs(10);
        assert_eq!(
            next_state(&p, Verdict::Retry, wait, 0, 40_000),
            (DeliveryState::Pending, 50_000)
        );
        assert_eq!(
            next_state(&p, Verdict::Retry, wait, 0, 55_000),
            (DeliveryState::Dead, 55_000)
        );
        assert_eq!(
            next_state(&p, Verdict::Delivered, wait, 0, 55_000),
            (DeliveryState::Delivered, 55_000)
        );
        assert_eq!(
            next_state(&p, Verdict::Failed, wait, 0, 1),
            (DeliveryState::Failed, 1)
        );
    }

    #[test]
    fn first_attempts_carry_their_trigger_and_later_ones_are_retries() {
        assert_eq!(attempt_trigger(0, Trigger::Live), Trigger::Live);
        assert_eq!(attempt_trigger(0, Trigger::Replay), Trigger::Replay);
        assert_eq!(attempt_trigger(1, Trigger::Replay), Trigger::Retry);
        assert_eq!(attempt_trigger(3, Trigger::Live), Trigger::Retry);
    }

    #[test]
    fn only_the_oldest_pending_upload_of_a_task_goes() {
        assert!(may_go_now(5, 5));
        assert!(!may_go_now(6, 5));
    }
}
