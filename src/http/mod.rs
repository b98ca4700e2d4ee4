//! The HTTP layer: the SMS upload endpoint, the JSON API and the HTML pages, with
//! authentication, extractors, middleware and the one error type.
//!
//! Handlers take the shared state they use as extractors: `web::Data` of a few
//! pieces, one per subsystem (the read pool, the writer handle, and [`Access`],
//! [`Delivery`], [`Evidence`], [`Metrics`], [`IngestSettings`] below), registered
//! by `startup`; only extractors and middleware look state up themselves.

pub mod auth;
pub mod auth_failures;
pub mod body_budget;
pub mod error;
pub mod extract;
pub mod json;
pub mod layout;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod pages;
pub mod refusals;
pub mod routes;
pub mod witness;

use std::net::IpAddr;
use std::time::Duration;

use actix_web::web;
use governor::DefaultKeyedRateLimiter;

use serde::Deserialize;

use crate::domain::TaskPolicy;
use std::sync::Arc;

use crate::services::checkpoints::Checkpointer;
use crate::services::outbox::UpstreamSettings;
use crate::services::replay::ServerReplays;
use crate::services::verification::VerificationJob;
use crate::storage::proxy_log;

/// The HTTP side's limits and lifetimes, with their defaults (the flags' too).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest upload body (`--max-body-bytes`).
    pub max_body_bytes: usize,
    /// Bytes of request bodies held in memory at once (`--max-buffered-bytes`).
    pub max_buffered_bytes: usize,
    /// Most `consistency_result` items (`--max-results`).
    pub max_results: usize,
    /// The most bytes of headers a request may have, then 431 (`--max-header-bytes`).
    pub max_header_bytes: usize,
    /// How long a client may take to send a request's head, then it is disconnected.
    pub header_timeout: Duration,
    /// How long a client may take to send an upload's body, then 408.
    pub body_timeout: Duration,
    /// How long a login to the pages lasts.
    pub session_lifetime: Duration,
    /// How long a looked-up credential is trusted without reading it again (so a
    /// revocation takes effect within this time).
    pub credential_cache_ttl: Duration,
}

impl HttpSettings {
    pub const DEFAULT: HttpSettings = HttpSettings {
        max_body_bytes: 65_536,
        max_buffered_bytes: 256 * 1024 * 1024,
        max_results: crate::domain::upload_body::DEFAULT_MAX_RESULTS,
        max_header_bytes: 32 * 1024,
        header_timeout: Duration::from_secs(5),
        body_timeout: Duration::from_secs(30),
        session_lifetime: Duration::from_secs(12 * 3600),
        credential_cache_ttl: Duration::from_secs(1),
    };
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What the upload endpoint needs of the configuration.
pub struct IngestSettings {
    pub task_policy: TaskPolicy,
    pub max_body_bytes: usize,
    pub max_results: usize,
    /// Peers whose X-Forwarded-For header is stored.
    pub trusted_proxies: Vec<IpAddr>,
    /// Uploads per second per credential; `None` is unlimited.
    pub rate_limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// How long a client may take to send an upload's body.
    pub body_timeout: Duration,
    /// Bytes of bodies held in memory at once, across all requests.
    pub body_budget: body_budget::BodyBudget,
    /// Signatures of signed uploads received within their window.
    pub seen_signatures: auth::SeenSignatures,
}

/// Who may call, and how hard they may try: the credential cache, the backoff
/// after failed authentications, the limit on a request's head and how long a
/// login lasts.
pub struct Access {
    pub credentials: auth::AuthCache,
    pub failures: auth_failures::AuthFailures,
    /// The most bytes of headers (names, values, separators) a request may send.
    pub max_header_bytes: usize,
    pub session_lifetime: Duration,
    /// `--db PATH` naming the running database (absolute, quoted for a shell),
    /// for the commands the pages suggest: a credential made without it would go
    /// to another database.
    pub db_flag: String,
}

/// Sending to SMS: the upstream `serve` was given (if any) and the service's
/// replays.
pub struct Delivery {
    pub upstream: Option<UpstreamSettings>,
    pub replays: ServerReplays,
}

/// What auditors check: signed checkpoints (none with `--null-store`), whether
/// `/checkpoint` and `/tile/…` are open to anyone (`--public-log`), and the
/// ledger's verification.
pub struct Evidence {
    pub checkpointer: Option<Arc<Checkpointer>>,
    pub public_log: bool,
    /// `--public-url`: where people reach the service, for absolute links.
    pub public_url: Option<String>,
    pub verification: Arc<VerificationJob>,
    /// `--witness` and `--witness-quorum`, when witnesses cosign.
    pub witnesses: Option<crate::services::witnessing::WitnessSettings>,
    /// Full tiles, kept once read.
    pub tiles: Arc<crate::services::tiles::TileCache>,
}

impl Evidence {
    /// The checkpoints' verifier key, when this service makes checkpoints.
    pub fn verifier_key(&self) -> Option<String> {
        self.checkpointer.as_ref().map(|c| c.verifier_key())
    }
}

/// `/metrics`: the HTTP side's own metrics, and the endpoint that renders all.
pub struct Metrics {
    pub http: metrics::HttpMetrics,
    pub endpoint: metrics::MetricsEndpoint,
}

/// The proxy log's filters, shared with the `/proxy` page.
#[derive(Deserialize, Default)]
pub struct ProxyLogQuery {
    pub limit: Option<u32>,
    pub before_id: Option<i64>,
    pub credential: Option<String>,
    pub method: Option<String>,
    /// Calls whose path starts with this.
    pub path: Option<String>,
    pub status: Option<String>,
    pub outcome: Option<String>,
}

impl ProxyLogQuery {
    pub fn filter(&self) -> Result<proxy_log::CallFilter, proxy_log::FilterFieldError> {
        proxy_log::CallFilter::parse(
            self.credential.as_deref(),
            self.method.as_deref(),
            self.path.as_deref(),
            self.status.as_deref(),
            self.outcome.as_deref(),
        )
    }
}

/// Shown in every page's footer.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Percent-encodes everything but letters and digits, for query values.
pub fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Every route: the SMS endpoint first (every upload passes the routes before
/// it), then the pages, the API and health checks.
/// Input that actix's own extractors refuse is answered like every other error:
/// SMS-shaped JSON on the API's paths, the site's error page elsewhere.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PathConfig::default().error_handler(|_, req| {
        error::not_found(req, Some(&"there is nothing by that name or number here"))
    }))
    .app_data(web::FormConfig::default().error_handler(|e, req| match e {
        actix_web::error::UrlencodedError::ContentType => error::bad_input(
            req,
            "form",
            "expected a form (Content-Type: application/x-www-form-urlencoded)",
        ),
        e => error::bad_input(req, "form", e),
    }))
    .app_data(web::JsonConfig::default().error_handler(|e, req| match e {
        actix_web::error::JsonPayloadError::ContentType => error::bad_input(
            req,
            "body",
            "expected JSON (Content-Type: application/json)",
        ),
        e => error::bad_input(req, "body", e),
    }));
    routes::configure_upload(cfg);
    pages::configure(cfg);
    cfg.service(routes::get_resource(
        "/api/v1/openapi.json",
        openapi::openapi_json,
    ));
    routes::configure(cfg);
}
