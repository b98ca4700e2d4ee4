//! The pass-through to SMS (`serve --proxy`): every `/v3/` call other than the
//! consistency-result upload goes on to the configured SMS endpoint, signed with
//! the service's own credentials, is never retried, and is recorded in the proxy
//! log. The HTTP side (who may call, reading and answering bodies) is in
//! `http::routes::proxy`; which paths and headers may pass is in `domain::proxy`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::web::Bytes;

use crate::domain::now_ms;
use crate::domain::proxy::ProxyPath;
use crate::domain::signing::sha256_hex;
use crate::services::reconcile::{PassiveReconciliation, PASSIVE_ANSWER_LIMIT};
use crate::services::upstream::{describe, UpstreamAuth};
use crate::storage::proxy_log::{self, ProxyCall};
use crate::storage::writer::WriterHandle;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The most of each body kept in the log with `--proxy-log-bodies`.
pub const LOGGED_BODY_BYTES: usize = 16 * 1024;
/// Calls recorded between two trims of the log to its retention.
const TRIM_EVERY: u64 = 4096;

/// How the pass-through was configured.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The largest request body passed on (`--proxy-max-body-bytes`).
    pub max_body_bytes: usize,
    /// Keep the start of each body in the log (`--proxy-log-bodies`).
    pub log_bodies: bool,
    /// How long calls stay in the log.
    pub retention: Duration,
}

impl ProxySettings {
    /// The defaults of the `--proxy-*` flags.
    pub const DEFAULT: ProxySettings = ProxySettings {
        max_body_bytes: 10 * 1024 * 1024,
        log_bodies: false,
        retention: Duration::from_secs(90 * 24 * 3600),
    };
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A request body on its way to SMS.
pub enum OutgoingBody {
    /// The agent sent none: none goes on (not an empty chunked one).
    Empty,
    /// Read whole first (it had to be hashed for a signature).
    Buffered(Bytes),
    /// Passed on as it arrives; `length` is the agent's `Content-Length`, and
    /// `deadline` the time the agent has to send it all.
    Streamed {
        /// The body as it streams in.
        stream: reqwest::Body,
        /// Its `Content-Length`, if the client sent one.
        length: Option<u64>,
        /// How long the client may take to send it.
        deadline: Duration,
    },
}

/// One call to pass on; `headers` are already the ones that may go on.
pub struct OutgoingRequest<'a> {
    /// The client's method.
    pub method: reqwest::Method,
    /// The SMS path, checked.
    pub path: &'a ProxyPath,
    /// The query, as the client sent it.
    pub raw_query: &'a str,
    /// The headers passed on (never the client's credentials).
    pub headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    /// The body.
    pub body: OutgoingBody,
    /// The agent sent `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`: the body is not
    /// signed on the way on either.
    pub unsigned_payload: bool,
}

/// Why a call got no answer from SMS.
#[derive(Debug, thiserror::Error)]
pub enum ProxyFailure {
    /// SMS could not be reached.
    #[error("SMS could not be reached: {0}")]
    Unreachable(String),
    /// SMS did not answer within this many seconds.
    #[error("SMS did not answer within {0} s")]
    Timeout(u64),
    /// The HTTP client would send the path or query (`.0`) other than received.
    #[error("{0}: it has characters that would have to be re-encoded on the way on; percent-encode them")]
    NotVerbatim(&'static str),
}

/// The upstream side of the pass-through: one per HTTP worker, so each worker's
/// connections to SMS stay on its own event loop.
pub struct Proxy {
    /// The configured endpoint, parsed once; each call's URL is a copy with the
    /// path and query set.
    endpoint: reqwest::Url,
    auth: UpstreamAuth,
    client: reqwest::Client,
    timeout: Duration,
}

/// Headers the outgoing signature covers when they are present.
const SIGNED_WHEN_PRESENT: &[&str] = &["content-type", "x-project-id", "x-domain-id"];

impl Proxy {
    /// A pass-through to `endpoint`, signing with `auth`.
    pub fn new(endpoint: String, auth: UpstreamAuth, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("sms-audit/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with rustls");
        Self {
            endpoint: reqwest::Url::parse(&endpoint).expect("the endpoint was validated"),
            auth,
            client,
            timeout,
        }
    }

    /// How long an answer's body may stall between two chunks.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the service's own signature covers the body's hash, so the body
    /// must be read whole before the call starts.
    pub fn signs_bodies(&self) -> bool {
        self.auth.signs_bodies()
    }

    /// Sends one call and returns SMS's answer as it starts (status and headers;
    /// the body streams). Never retried: most of these calls change something.
    pub async fn send(
        &self,
        request: OutgoingRequest<'_>,
    ) -> Result<reqwest::Response, ProxyFailure> {
        let mut url = self.endpoint.clone();
        let base = self.endpoint.path().trim_end_matches('/');
        url.set_path(&format!("{base}{}", request.path.as_str()));
        url.set_query((!request.raw_query.is_empty()).then_some(request.raw_query));
        // The path was checked to need no normalising; both must come through
        // unchanged, or SMS would get (and the signature cover) something else.
        if !url.path().ends_with(request.path.as_str()) {
            return Err(ProxyFailure::NotVerbatim("path"));
        }
        if url.query().unwrap_or("") != request.raw_query {
            return Err(ProxyFailure::NotVerbatim("query"));
        }
        let mut signed: Vec<(String, String)> = Vec::new();
        for (name, value) in &request.headers {
            if SIGNED_WHEN_PRESENT.contains(&name.as_str()) {
                if let Ok(v) = value.to_str() {
                    signed.push((name.as_str().to_string(), v.to_string()));
                }
            }
        }
        let mut builder = self.client.request(request.method.clone(), url.clone());
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        if let Some(p) = self.auth.project_id() {
            if !signed.iter().any(|(n, _)| n == "x-project-id") {
                signed.push(("x-project-id".to_string(), p.to_string()));
                builder = builder.header("X-Project-Id", p);
            }
        }
        // A streamed body is not known before the call starts: it goes unsigned,
        // as the SDK signer does with `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`.
        let payload_hash = match &request.body {
            OutgoingBody::Buffered(body) if !request.unsigned_payload => sha256_hex(body.as_ref()),
            OutgoingBody::Empty if !request.unsigned_payload => sha256_hex(b""),
            _ => {
                if self.auth.signs_bodies() {
                    // Signed too, as the SDK signer signs every header it sends.
                    signed.push((
                        "x-sdk-content-sha256".to_string(),
                        "UNSIGNED-PAYLOAD".to_string(),
                    ));
                    builder = builder.header("X-Sdk-Content-Sha256", "UNSIGNED-PAYLOAD");
                }
                "UNSIGNED-PAYLOAD".to_string()
            }
        };
        for (name, value) in
            self.auth
                .headers_for(request.method.as_str(), &url, &signed, &payload_hash)
        {
            builder = builder.header(name, value);
        }
        // SMS's time to answer starts once it has the body; a streamed body
        // arrives at the agent's pace, within its own deadline.
        let wait = match &request.body {
            OutgoingBody::Empty | OutgoingBody::Buffered(_) => self.timeout,
            OutgoingBody::Streamed { deadline, .. } => self.timeout + *deadline,
        };
        builder = match request.body {
            OutgoingBody::Empty => builder,
            OutgoingBody::Buffered(body) => builder.body(body),
            OutgoingBody::Streamed { stream, length, .. } => {
                if let Some(n) = length {
                    builder = builder.header(reqwest::header::CONTENT_LENGTH, n);
                }
                builder.body(stream)
            }
        };
        match tokio::time::timeout(wait, builder.send()).await {
            Err(_) => Err(ProxyFailure::Timeout(self.timeout.as_secs())),
            Ok(Err(e)) if e.is_timeout() => Err(ProxyFailure::Timeout(self.timeout.as_secs())),
            Ok(Err(e)) => Err(ProxyFailure::Unreachable(describe(&e))),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// Records proxied calls through the writer's log buffer: never making the agent
/// wait, never taking a slot of the upload queue, stored with the writer's next
/// commit (within 0.2 s).
pub struct ProxyLog {
    writer: WriterHandle,
    settings: ProxySettings,
    recorded: AtomicU64,
    calls: Family<ProxiedLabels, Counter>,
    /// Never kept in a logged body: the service's upstream credential.
    hidden: Vec<Vec<u8>>,
    /// Reads the answers to the agents' `ShowConsistencyResult` calls.
    passive: Option<Arc<PassiveReconciliation>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ProxiedLabels {
    /// The status answered (0: the exchange broke off).
    status: u16,
}

/// Every occurrence of `secret` in `body` replaced by `[upstream credential]`.
fn hide(body: &mut Vec<u8>, secret: &[u8]) {
    const SHOWN: &[u8] = b"[upstream credential]";
    if secret.is_empty() || !body.windows(secret.len()).any(|w| w == secret) {
        return;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(secret) {
            out.extend_from_slice(SHOWN);
            i += secret.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    *body = out;
}

impl ProxyLog {
    /// A log of passed-on calls, written through `writer`.
    pub fn new(writer: WriterHandle, settings: ProxySettings) -> Self {
        Self {
            writer,
            settings,
            recorded: AtomicU64::new(0),
            calls: Family::default(),
            hidden: Vec::new(),
            passive: None,
        }
    }

    /// SMS's answers to `ShowConsistencyResult` go to `passive` too.
    pub fn reconciling(mut self, passive: Arc<PassiveReconciliation>) -> Self {
        self.passive = Some(passive);
        self
    }

    /// Whether answers to `ShowConsistencyResult` are read (passive
    /// reconciliation is on).
    pub fn reads_answers(&self) -> bool {
        self.passive.is_some()
    }

    /// Hands SMS's whole answer for `task`'s results, to a call that arrived
    /// at `read_at`, to the passive reconciliation (in the background; not when
    /// too many answers already wait).
    pub fn read_back(&self, task: String, read_at: i64, status: u16, answer: PassedAnswer) {
        let Some(place) = self.passive.as_ref().and_then(|p| p.enqueue()) else {
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = place.observe(task, read_at, status, answer).await {
                tracing::warn!("passive reconciliation: {e}");
            }
        });
    }

    /// The service's own upstream credential (a token, or the access key) is
    /// never kept in a logged body, should SMS or anything on the way echo it.
    pub fn hiding(mut self, auth: &UpstreamAuth) -> Self {
        let secret = match auth {
            UpstreamAuth::Token(token) => token.clone(),
            UpstreamAuth::Aksk { signer, .. } => signer.access_key.clone(),
        };
        if !secret.is_empty() {
            self.hidden.push(secret.into_bytes());
        }
        self
    }

    /// Proxied calls by status, for `/metrics`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sms_audit_proxied_calls",
            "Calls passed on to SMS, by the status answered",
            self.calls.clone(),
        );
    }

    /// What the log keeps.
    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    /// Records a call without waiting (bodies cut to the kept length).
    pub fn record(&self, mut call: ProxyCall) {
        for body in [&mut call.request_body, &mut call.response_body]
            .into_iter()
            .flatten()
        {
            for secret in &self.hidden {
                hide(body, secret);
            }
        }
        self.calls
            .get_or_create(&ProxiedLabels {
                status: call.status,
            })
            .inc();
        self.writer.log_proxy_call(call);
        // Now and then, calls past the retention go.
        if self.recorded.fetch_add(1, Ordering::Relaxed) % TRIM_EVERY == TRIM_EVERY - 1 {
            let before = now_ms() - self.settings.retention.as_millis() as i64;
            let writer = self.writer.clone();
            tokio::spawn(async move {
                let trimmed = writer
                    .execute_when_room(move |conn| proxy_log::trim(conn, before).map(|_| ()))
                    .await;
                if let Err(e) = trimmed {
                    tracing::warn!("the proxy log could not be trimmed: {e}");
                }
            });
        }
    }
}

/// SMS's answer as it passed, and its `Content-Encoding`.
pub type PassedAnswer = (Vec<u8>, Option<String>);

/// The start of a streamed body, kept for the log while it passes.
#[derive(Debug, Default)]
pub struct BodyTap {
    /// Bytes seen.
    pub bytes: u64,
    /// The start of the body, when bodies are kept.
    pub kept: Option<Vec<u8>>,
    /// Why the body stopped before its end (it came too slowly).
    pub broken: Option<String>,
    /// An answer's running SHA-256.
    hasher: Option<Sha256>,
    /// An answer the passive reconciliation reads, whole while it fits.
    captured: Option<Vec<u8>>,
}

impl BodyTap {
    /// A tap that keeps the body's start when `keep` is set.
    pub fn new(keep: bool) -> Self {
        Self {
            kept: keep.then(Vec::new),
            ..Self::default()
        }
    }

    /// A tap on SMS's answer: hashed too, and kept whole (up to
    /// `PASSIVE_ANSWER_LIMIT`) when `capture` is set.
    pub fn answer(keep: bool, capture: bool) -> Self {
        Self {
            hasher: Some(Sha256::new()),
            captured: capture.then(Vec::new),
            ..Self::new(keep)
        }
    }

    /// Counts a chunk, keeping what fits.
    pub fn see(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        if let Some(kept) = &mut self.kept {
            let room = LOGGED_BODY_BYTES.saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(chunk);
        }
        if let Some(captured) = &mut self.captured {
            if captured.len() + chunk.len() > PASSIVE_ANSWER_LIMIT {
                self.captured = None;
            } else {
                captured.extend_from_slice(chunk);
            }
        }
    }

    /// The answer's SHA-256 (hex), once it has passed whole.
    pub fn sha256(&mut self) -> Option<String> {
        self.hasher.take().map(|h| hex::encode(h.finalize()))
    }

    /// The whole answer, when it was captured and fitted.
    pub fn captured(&mut self) -> Option<Vec<u8>> {
        self.captured.take()
    }
}
