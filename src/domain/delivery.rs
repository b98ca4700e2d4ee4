//! Deliveries of stored uploads to SMS: their states, what made them, and who
//! sends them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a delivery stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// SMS answered 2xx.
    Delivered,
    /// SMS refused it for good (a 4xx that retrying cannot fix).
    Failed,
    /// Still failing after the maximum age: given up.
    Dead,
    /// Latest wins: a newer upload of the task is delivered instead.
    Superseded,
}

impl DeliveryState {
    /// The state's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Why a delivery exists (deliveries) or why an attempt was made (attempts).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Trigger {
    /// Forwarding as the upload was stored.
    Live,
    /// A replay asked for it.
    Replay,
    /// An attempt after a failed one (attempts only).
    Retry,
}

impl Trigger {
    /// The trigger's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Which deliveries a sender handles: the service's (live and web replays) or one
/// command-line replay's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// The service's own sender.
    Server,
    /// The `replay` command running this replay.
    Replay(i64),
}

/// Who sends a replay's deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum ReplayRunner {
    /// The running service sends it.
    Server,
    /// The `replay` command sends it.
    Cli,
}

impl ReplayRunner {
    /// The runner's name, as stored.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What one attempt to deliver an upload came to.
#[derive(Debug, Clone, Default)]
pub struct AttemptResult {
    /// Where it was sent.
    pub url: String,
    /// SMS's HTTP status, when it answered.
    pub status: Option<u16>,
    /// SMS's `X-Request-Id`, when it gave one.
    pub upstream_request_id: Option<String>,
    /// SMS's `error_code`, when its answer had one.
    pub error_code: Option<String>,
    /// SMS's `error_msg`, when its answer had one.
    pub error_msg: Option<String>,
    /// Why no answer came (connection, TLS, timeout).
    pub transport_error: Option<String>,
    /// The first 4 KiB of the response body.
    pub response_head: Option<String>,
    /// SMS's `Retry-After`, when it gave one.
    pub retry_after: Option<Duration>,
    /// How long the attempt took.
    pub latency: Duration,
}

/// What an attempt changes: the attempt row and the delivery's new state.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The delivery attempted.
    pub delivery_id: i64,
    /// When the attempt was made.
    pub at: super::Timestamp,
    /// Why it was made: live, replay or retry.
    pub attempt_trigger: Trigger,
    /// What came of it.
    pub result: AttemptResult,
    /// The delivery's state after it.
    pub state: DeliveryState,
    /// When the next attempt is due (for a pending delivery).
    pub next_attempt_at: super::Timestamp,
}

impl Outcome {
    /// What the delivery row shows as its last error.
    pub fn last_error(&self) -> Option<String> {
        let r = &self.result;
        r.transport_error
            .clone()
            .or_else(|| {
                r.error_code
                    .as_ref()
                    .map(|c| format!("{c}: {}", r.error_msg.clone().unwrap_or_default()))
            })
            .or_else(|| {
                r.status
                    .filter(|s| !(200..300).contains(s))
                    .map(|s| format!("HTTP {s}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_triggers_round_trip_through_their_names() {
        use strum::VariantArray;
        for state in DeliveryState::VARIANTS {
            assert_eq!(state.as_str().parse::<DeliveryState>(), Ok(*state));
        }
        assert!("any".parse::<DeliveryState>().is_err());
        for trigger in [Trigger::Live, Trigger::Replay, Trigger::Retry] {
            assert_eq!(trigger.as_str().parse::<Trigger>(), Ok(trigger));
        }
    }
}
