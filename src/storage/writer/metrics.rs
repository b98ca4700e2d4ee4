//! What the writer tells `/metrics`: how many uploads each commit carries and how
//! long commits take (how many wait for one is read off the queue's room).

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Cheap to clone (the metrics share their values).
#[derive(Clone)]
pub struct WriterMetrics {
    /// Uploads per committed batch.
    pub batch_uploads: Histogram,
    /// Seconds from opening a batch's transaction to its commit (and fsync).
    pub commit_seconds: Histogram,
}

impl Default for WriterMetrics {
    fn default() -> Self {
        WriterMetrics {
            // 1, 2, 4, … 512 (the most a batch takes).
            batch_uploads: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            // 50 µs to about 3 s.
            commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        }
    }
}

impl WriterMetrics {
    /// Adds these metrics to `/metrics`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sms_audit_writer_batch_uploads",
            "Uploads per committed writer batch",
            self.batch_uploads.clone(),
        );
        registry.register(
            "sms_audit_writer_commit_seconds",
            "Time to store and commit (with fsync) one writer batch",
            self.commit_seconds.clone(),
        );
    }
}
