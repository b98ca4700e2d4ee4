//! Room in the write queue: one permit per waiting upload, taken when it is
//! queued and given back when the writer takes it into a batch. Full means
//! refused at once (503), never waiting.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::SubmitError;

/// An upload's place in the queue; dropping it makes room.
pub(super) type Slot = OwnedSemaphorePermit;

#[derive(Clone, Debug)]
pub(super) struct QueueRoom {
    slots: Arc<Semaphore>,
    capacity: usize,
}

impl QueueRoom {
    pub(super) fn new(capacity: usize) -> Self {
        let capacity = capacity.min(Semaphore::MAX_PERMITS);
        QueueRoom {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    pub(super) fn take(&self) -> Result<Slot, SubmitError> {
        self.slots.clone().try_acquire_owned().map_err(|e| match e {
            TryAcquireError::NoPermits => SubmitError::Full,
            TryAcquireError::Closed => SubmitError::Closed,
        })
    }

    /// Uploads queued and not yet taken into a batch.
    pub(super) fn queued(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }
}

/// `sms_audit_writer_queued_uploads`, read from the permits at each scrape.
impl Collector for QueueRoom {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(self.queued() as i64);
        let metric = encoder.encode_descriptor(
            "sms_audit_writer_queued_uploads",
            "Uploads waiting in the write queue",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}
