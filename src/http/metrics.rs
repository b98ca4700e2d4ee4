//! `/metrics`: the Prometheus text format (prometheus-client). The request and
//! upload counters are kept here; the writer, the sender and the proxy log own
//! theirs and register them; what the database holds is read at each scrape.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::domain::now_ms;
use crate::storage::history::MetricsSnapshot;
use crate::storage::retention::DiskUse;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    /// The route's pattern (`/api/v1/uploads/{id}`), never the path itself: the
    /// label's values stay few.
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub error_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// What the HTTP layer counts, and the gauges filled at each scrape.
pub struct HttpMetrics {
    pub requests: Family<RouteLabels, Histogram>,
    pub uploads_accepted: Counter,
    pub uploads_refused: Family<CodeLabels, Counter>,
    entries: Gauge,
    deliveries: Family<StateLabels, Gauge>,
    oldest_pending_seconds: Gauge<f64, AtomicU64>,
    verifications: Family<ResultLabels, Gauge>,
    last_verification_intact: Gauge,
    database_bytes: Gauge,
    wal_bytes: Gauge,
    free_pages: Gauge,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            // 100 µs to about 6.5 s.
            requests: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_1, 2.0, 17))
            }),
            uploads_accepted: Counter::default(),
            uploads_refused: Family::default(),
            entries: Gauge::default(),
            deliveries: Family::default(),
            oldest_pending_seconds: Gauge::default(),
            verifications: Family::default(),
            last_verification_intact: Gauge::default(),
            database_bytes: Gauge::default(),
            wal_bytes: Gauge::default(),
            free_pages: Gauge::default(),
        }
    }
}

impl HttpMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sms_audit_http_request_duration_seconds",
            "Time to answer a request, by method and route",
            self.requests.clone(),
        );
        r.register(
            "sms_audit_uploads_accepted",
            "Uploads stored and answered 200",
            self.uploads_accepted.clone(),
        );
        r.register(
            "sms_audit_uploads_refused",
            "Uploads refused, by the SMS error code answered",
            self.uploads_refused.clone(),
        );
        r.register(
            "sms_audit_ledger_entries",
            "Entries in the ledger (uploads stored)",
            self.entries.clone(),
        );
        r.register(
            "sms_audit_deliveries",
            "Deliveries to SMS by state",
            self.deliveries.clone(),
        );
        r.register(
            "sms_audit_oldest_pending_delivery_seconds",
            "Age of the oldest delivery still pending (0: none)",
            self.oldest_pending_seconds.clone(),
        );
        r.register(
            "sms_audit_verification_runs",
            "Ledger verifications recorded, by result (intact or broken)",
            self.verifications.clone(),
        );
        r.register(
            "sms_audit_last_verification_intact",
            "1 when the newest ledger verification found it intact, 0 when broken, -1 never run",
            self.last_verification_intact.clone(),
        );
        r.register(
            "sms_audit_database_bytes",
            "Size of the database file",
            self.database_bytes.clone(),
        );
        r.register(
            "sms_audit_wal_bytes",
            "Size of the database's write-ahead log",
            self.wal_bytes.clone(),
        );
        r.register(
            "sms_audit_free_pages",
            "Free pages inside the database file",
            self.free_pages.clone(),
        );
    }

    /// Sets the gauges from what was read at this scrape.
    pub fn set_from(&self, db: &MetricsSnapshot, disk: &DiskUse) {
        self.entries.set(db.entries);
        self.deliveries.clear();
        for (state, n) in &db.deliveries {
            self.deliveries
                .get_or_create(&StateLabels {
                    state: state.clone(),
                })
                .set(*n);
        }
        let age = db
            .oldest_pending_created_at
            .map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
        self.oldest_pending_seconds.set(age);
        for result in ["intact", "broken"] {
            let runs = db
                .verifications
                .iter()
                .filter(|(intact, _)| *intact == (result == "intact"))
                .map(|(_, n)| n)
                .sum();
            self.verifications
                .get_or_create(&ResultLabels { result })
                .set(runs);
        }
        self.last_verification_intact
            .set(db.last_verification_intact.map_or(-1, i64::from));
        self.database_bytes.set(disk.database_bytes as i64);
        self.wal_bytes.set(disk.wal_bytes as i64);
        self.free_pages.set(disk.free_pages as i64);
    }
}

/// The registry `/metrics` encodes, and who may read it.
pub struct MetricsEndpoint {
    pub registry: Mutex<Registry>,
    /// SHA-256 of `--metrics-token`; none: open to anyone who can reach it.
    pub token_sha256: Option<[u8; 32]>,
}
