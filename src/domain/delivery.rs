//! Deliveries of stored uploads to SMS: their states, what made them, and who
//! sends them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
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
    pub const ALL: [DeliveryState; 5] = [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Failed,
        DeliveryState::Dead,
        DeliveryState::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Dead => "dead",
            DeliveryState::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s).ok_or_else(|| format!("unknown delivery state {s:?}"))
    }
}

/// Why a delivery exists (deliveries) or why an attempt was made (attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// Forwarding as the upload was stored.
    Live,
    /// A replay asked for it.
    Replay,
    /// An attempt after a failed one (attempts only).
    Retry,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Live => "live",
            Trigger::Replay => "replay",
            Trigger::Retry => "retry",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Trigger {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "live" => Ok(Trigger::Live),
            "replay" => Ok(Trigger::Replay),
            "retry" => Ok(Trigger::Retry),
            other => Err(format!("unknown trigger {other:?}")),
        }
    }
}

/// Which deliveries a sender handles: the service's (live and web replays) or one
/// command-line replay's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    Server,
    Replay(i64),
}

/// Who sends a replay's deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRunner {
    Server,
    Cli,
}

impl ReplayRunner {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayRunner::Server => "server",
            ReplayRunner::Cli => "cli",
        }
    }
}

/// What one attempt to deliver an upload came to.
#[derive(Debug, Clone, Default)]
pub struct AttemptResult {
    pub url: String,
    pub status: Option<u16>,
    pub upstream_request_id: Option<String>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub transport_error: Option<String>,
    /// The first 4 KiB of the response body.
    pub response_head: Option<String>,
    pub retry_after: Option<Duration>,
    pub latency: Duration,
}

/// What an attempt changes: the attempt row and the delivery's new state.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: i64,
    pub at: super::Timestamp,
    pub attempt_trigger: Trigger,
    pub result: AttemptResult,
    pub state: DeliveryState,
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
        for state in DeliveryState::ALL {
            assert_eq!(state.as_str().parse::<DeliveryState>(), Ok(state));
        }
        assert!(DeliveryState::parse("any").is_none());
        for trigger in [Trigger::Live, Trigger::Replay, Trigger::Retry] {
            assert_eq!(trigger.as_str().parse::<Trigger>(), Ok(trigger));
        }
    }
}
