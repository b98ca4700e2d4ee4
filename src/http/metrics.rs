//! `/metrics`: the Prometheus text format (prometheus-client). The request and
//! upload counters are kept here; the writer, the sender and the proxy log own
//! theirs and register them; what the database holds is read at each scrape.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::now_ms;
use crate::storage::overview::MetricsSnapshot;
use crate::storage::retention::DiskUse;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    /// The route's name (`/api/v1/uploads/:id`), never the path itself: the
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

/// A route's name, and its latency histogram per method, looked up once.
struct RouteEntry {
    name: Arc<str>,
    by_method: Vec<(&'static str, Histogram)>,
}

/// What the HTTP layer counts, and the gauges filled at each scrape.
pub struct HttpMetrics {
    pub requests: Family<RouteLabels, Histogram>,
    /// By actix's route pattern: each request finds its histogram without
    /// building label strings (the family is for encoding).
    routes: RwLock<HashMap<String, RouteEntry>>,
    pub uploads_accepted: Counter,
    pub uploads_refused: Family<CodeLabels, Counter>,
    entries: Gauge,
    deliveries: Family<StateLabels, Gauge>,
    oldest_pending_seconds: Gauge<f64, AtomicU64>,
    verifications: Family<ResultLabels, Gauge>,
    last_verification_intact: Gauge,
    reconciled_tasks: Family<VerdictLabels, Gauge>,
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
            routes: RwLock::default(),
            uploads_accepted: Counter::default(),
            uploads_refused: Family::default(),
            entries: Gauge::default(),
            deliveries: Family::default(),
            oldest_pending_seconds: Gauge::default(),
            verifications: Family::default(),
            last_verification_intact: Gauge::default(),
            reconciled_tasks: Family::default(),
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
            "sms_audit_reconciliation_tasks",
            "Tasks per verdict in the newest finished reconciliation with SMS",
            self.reconciled_tasks.clone(),
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

    /// Observes a request's latency under its route and method; returns the
    /// route's name (`/v3/tasks/:task_id/consistency-result`, `(none)`).
    pub fn observe_request(
        &self,
        pattern: Option<String>,
        method: &actix_web::http::Method,
        latency: std::time::Duration,
    ) -> Arc<str> {
        let method = method_label(method);
        let pattern = pattern.unwrap_or_default();
        {
            let routes = self.routes.read();
            if let Some(entry) = routes.get(pattern.as_str()) {
                if let Some((_, h)) = entry.by_method.iter().find(|(m, _)| *m == method) {
                    h.observe(latency.as_secs_f64());
                    return entry.name.clone();
                }
            }
        }
        let mut routes = self.routes.write();
        let entry = routes.entry(pattern).or_insert_with_key(|p| RouteEntry {
            name: if p.is_empty() {
                Arc::from("(none)")
            } else {
                Arc::from(route_name(p))
            },
            by_method: Vec::new(),
        });
        let histogram = match entry.by_method.iter().find(|(m, _)| *m == method) {
            Some((_, h)) => h.clone(),
            None => {
                let h = self.requests.get_or_create_owned(&RouteLabels {
                    method: method.to_string(),
                    route: entry.name.to_string(),
                });
                entry.by_method.push((method, h.clone()));
                h
            }
        };
        histogram.observe(latency.as_secs_f64());
        entry.name.clone()
    }

    /// Counts an upload request: accepted, or refused with its error code.
    pub fn count_upload(&self, error_code: Option<&'static str>, success: bool) {
        match error_code {
            None if success => self.uploads_accepted.inc(),
            Some(code) => self
                .uploads_refused
                .get_or_create(&CodeLabels {
                    error_code: code.to_string(),
                })
                .inc(),
            None => 0,
        };
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
        for (verdict, n) in &db.reconciled_tasks {
            self.reconciled_tasks
                .get_or_create(&VerdictLabels {
                    verdict: verdict.as_str(),
                })
                .set(*n as i64);
        }
        self.database_bytes.set(disk.database_bytes as i64);
        self.wal_bytes.set(disk.wal_bytes as i64);
        self.free_pages.set(disk.free_pages as i64);
    }
}

/// The registry `/metrics` encodes, and who may read it.
pub struct MetricsEndpoint {
    pub registry: Mutex<Registry>,
    /// SHA-256 of `--metrics-token`; none: open to anyone who can reach it.
    token_sha256: Option<[u8; 32]>,
}

impl MetricsEndpoint {
    pub fn new(registry: Registry, token: Option<&str>) -> Self {
        MetricsEndpoint {
            registry: Mutex::new(registry),
            token_sha256: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    /// Whether a request with this `Authorization` header may read the metrics:
    /// always without `--metrics-token`, else only `Bearer <token>` (compared in
    /// constant time, as hashes).
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(expected) = self.token_sha256 else {
            return true;
        };
        authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| Sha256::digest(t.trim().as_bytes()))
            .is_some_and(|p| bool::from(p.as_slice().ct_eq(&expected)))
    }
}

/// The methods a label may name; any other is `other` (a client's made-up
/// methods must not grow the series without bound).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A route's pattern with each parameter as `:name`, without its regular
/// expression (`/v3/tasks/:task_id/consistency-result`), as logs and metrics name
/// it (braces inside label values trip some Prometheus parsers).
pub fn route_name(pattern: &str) -> String {
    let mut name = String::with_capacity(pattern.len());
    let mut param = None::<bool>; // Some(in its regular expression)
    for c in pattern.chars() {
        match (param, c) {
            (None, '{') => {
                name.push(':');
                param = Some(false);
            }
            (Some(_), '}') => param = None,
            (Some(false), ':') => param = Some(true),
            (Some(true), _) => {}
            _ => name.push(c),
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::route_name;

    #[test]
    fn route_names_drop_the_parameters_regular_expressions() {
        assert_eq!(
            route_name("/v3/tasks/{task_id:[^/]*}/consistency-result"),
            "/v3/tasks/:task_id/consistency-result"
        );
        assert_eq!(route_name("/api/v1/uploads/{id}"), "/api/v1/uploads/:id");
        assert_eq!(route_name("/tile/{tail:.*}"), "/tile/:tail");
        assert_eq!(route_name("/healthz"), "/healthz");
    }
}
