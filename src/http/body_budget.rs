//! The bytes of request bodies held in memory at once, across every request
//! (`--max-buffered-bytes`): uploads and bodies the pass-through must read whole.
//! A body is charged as its bytes arrive, and a request that would go over the
//! budget gets 503 `SMS.0201` at once, so many slow or large bodies cannot take
//! the process's memory.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

#[derive(Clone, Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    limit: usize,
    buffered: Gauge,
    refused: Counter,
}

/// What one request holds of the budget; given back when dropped.
#[derive(Debug)]
pub struct BodyHold {
    permit: Option<OwnedSemaphorePermit>,
    buffered: Gauge,
}

impl BodyBudget {
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(limit)),
            limit,
            buffered: Gauge::default(),
            refused: Counter::default(),
        }
    }

    /// Nothing held yet.
    pub fn hold(&self) -> BodyHold {
        BodyHold {
            permit: None,
            buffered: self.buffered.clone(),
        }
    }

    /// Charges `n` more bytes to `hold`, or refuses with 503 without waiting.
    pub fn charge(&self, hold: &mut BodyHold, n: usize) -> Result<(), ApiError> {
        if n == 0 {
            return Ok(());
        }
        let permit = u32::try_from(n)
            .ok()
            .and_then(|n| self.bytes.clone().try_acquire_many_owned(n).ok());
        let Some(permit) = permit else {
            self.refused.inc();
            return Err(ApiError::Unavailable(format!(
                "the service holds as many request bodies as it may ({}, \
                 --max-buffered-bytes); try again shortly",
                crate::domain::counted(self.limit as u64, "byte")
            )));
        };
        self.buffered.inc_by(n as i64);
        match &mut hold.permit {
            Some(held) => held.merge(permit),
            None => hold.permit = Some(permit),
        }
        Ok(())
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sms_audit_buffered_body_bytes",
            "Bytes of request bodies held in memory now (uploads, and bodies the pass-through reads whole)",
            self.buffered.clone(),
        );
        registry.register(
            "sms_audit_body_budget_refusals",
            "Requests refused with 503 because --max-buffered-bytes was reached",
            self.refused.clone(),
        );
    }
}

impl Drop for BodyHold {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.buffered.dec_by(permit.num_permits() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_charged_until_dropped_and_refused_beyond_the_limit() {
        let budget = BodyBudget::new(100);
        let mut a = budget.hold();
        budget.charge(&mut a, 60).unwrap();
        budget.charge(&mut a, 30).unwrap();
        let mut b = budget.hold();
        assert!(matches!(
            budget.charge(&mut b, 20),
            Err(ApiError::Unavailable(_))
        ));
        assert_eq!(budget.buffered.get(), 90);
        assert_eq!(budget.refused.get(), 1);
        drop(a);
        assert_eq!(budget.buffered.get(), 0);
        budget.charge(&mut b, 100).unwrap();
    }
}
