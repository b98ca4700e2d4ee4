//! The real SMS endpoint: where it is, how requests to it are authenticated, and
//! sending one stored upload to it byte for byte.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Deserialize;

use crate::domain::signing::{format_sdk_date, parse_query, sha256_hex, CanonicalRequest, Signer};
use crate::domain::AttemptResult;

/// The SDK's region table (docs/replay.md).
pub const REGIONS: &[(&str, &str)] = &[
    ("cn-north-4", "https://sms.cn-north-4.myhuaweicloud.com"),
    (
        "ap-southeast-3",
        "https://sms.ap-southeast-3.myhuaweicloud.com",
    ),
    (
        "my-kualalumpur-1",
        "https://sms.my-kualalumpur-1.myhuaweicloud.com",
    ),
    (
        "ru-moscow-1",
        "https://sms-api.ru-moscow-1.myhuaweicloud.com",
    ),
    (
        "ap-southeast-1",
        "https://sms.ap-southeast-1.myhuaweicloud.com",
    ),
];

/// The SMS endpoint of a Huawei Cloud region, if the region is known.
pub fn region_endpoint(region: &str) -> Option<&'static str> {
    REGIONS.iter().find(|(r, _)| *r == region).map(|(_, e)| *e)
}

/// How sms-audit authenticates to SMS: never with the agent's own credentials.
#[derive(Clone)]
pub enum UpstreamAuth {
    /// AK/SK signing.
    Aksk {
        /// Signs with the service's key pair.
        signer: Signer,
        /// The `X-Project-Id` to send, if configured.
        project_id: Option<String>,
    },
    /// A static `X-Auth-Token`.
    Token(String),
}

impl std::fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamAuth::Aksk { signer, project_id } => f
                .debug_struct("Aksk")
                .field("access_key", &signer.access_key)
                .field("project_id", project_id)
                .finish(),
            UpstreamAuth::Token(_) => f.write_str("Token(..)"),
        }
    }
}

/// Why the upstream settings cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamConfigError {
    /// A region with no known endpoint.
    #[error("unknown region {0:?}; known: cn-north-4, ap-southeast-3, my-kualalumpur-1, ru-moscow-1, ap-southeast-1")]
    UnknownRegion(String),
    /// An endpoint that is not a URL of scheme, host and port.
    #[error("upstream endpoint {0:?} must be an http:// or https:// URL")]
    BadEndpoint(String),
    /// Neither a key pair nor a token.
    #[error("no upstream credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK (and HUAWEICLOUD_SDK_PROJECT_ID), or SMS_AUDIT_UPSTREAM_TOKEN")]
    NoCredentials,
    /// Neither an endpoint nor a region.
    #[error("an upstream endpoint is needed: --upstream-endpoint URL or --upstream-region R")]
    NoEndpoint,
    /// A plain-HTTP endpoint that is not on loopback.
    #[error("replay target {0:?} must be an https:// URL (plain http:// only on loopback)")]
    InsecureTarget(String),
}

/// Why a replay or delivery target is refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetRefused {
    /// The target is not a usable endpoint.
    #[error(transparent)]
    Invalid(#[from] UpstreamConfigError),
    /// The target is not the configured upstream.
    #[error("{0:?} is not a replay target of this service: use the configured upstream, a region's endpoint, or a URL the service was started with (--replay-target)")]
    NotAllowed(String),
}

/// Why SMS's task list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListTasksError {
    /// No answer (connection, TLS, timeout); the text says which.
    #[error("{text}")]
    Transport {
        /// What was being done.
        text: String,
        /// The transport's error.
        #[source]
        source: reqwest::Error,
    },
    /// SMS answered with an error.
    #[error("SMS answered {status}{detail}")]
    Refused {
        /// Its HTTP status.
        status: reqwest::StatusCode,
        /// The start of its answer.
        detail: String,
    },
    /// SMS's answer was not the JSON expected.
    #[error("not a ListTasks answer: {0}")]
    NotAnAnswer(#[from] serde_json::Error),
}

impl From<reqwest::Error> for ListTasksError {
    fn from(source: reqwest::Error) -> Self {
        ListTasksError::Transport {
            text: describe(&source),
            source,
        }
    }
}

impl UpstreamAuth {
    /// The project configured with the AK/SK pair, if any.
    pub fn project_id(&self) -> Option<&str> {
        match self {
            UpstreamAuth::Aksk { project_id, .. } => project_id.as_deref(),
            UpstreamAuth::Token(_) => None,
        }
    }

    /// Whether requests are signed over their body's hash (AK/SK), so the body
    /// must be known before the request starts.
    pub fn signs_bodies(&self) -> bool {
        matches!(self, UpstreamAuth::Aksk { .. })
    }

    /// The headers that authenticate one request to SMS: the static token, or
    /// `X-Sdk-Date` and an `Authorization` signature over `method`, `url` (path and
    /// query as they will be sent), the `signed` headers plus `host` and
    /// `x-sdk-date`, and `payload_hash`.
    pub fn headers_for(
        &self,
        method: &str,
        url: &reqwest::Url,
        signed: &[(String, String)],
        payload_hash: &str,
    ) -> Vec<(&'static str, String)> {
        let (signer, _) = match self {
            UpstreamAuth::Token(token) => return vec![("X-Auth-Token", token.clone())],
            UpstreamAuth::Aksk { signer, project_id } => (signer, project_id),
        };
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let date = format_sdk_date(Utc::now());
        let mut headers = signed.to_vec();
        headers.push(("host".to_string(), host));
        headers.push(("x-sdk-date".to_string(), date.clone()));
        let query = parse_query(url.query().unwrap_or(""));
        let authorization = signer.authorization(
            &CanonicalRequest {
                method,
                path: url.path(),
                query: &query,
                headers: &headers,
                payload_hash,
            },
            &date,
        );
        vec![("X-Sdk-Date", date), ("Authorization", authorization)]
    }

    /// From the environment, by the SDK's own names.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, UpstreamConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let ak = get("HUAWEICLOUD_SDK_AK").or_else(|| get("CLOUD_SDK_AK"));
        let sk = get("HUAWEICLOUD_SDK_SK").or_else(|| get("CLOUD_SDK_SK"));
        match (ak, sk, get("SMS_AUDIT_UPSTREAM_TOKEN")) {
            (Some(ak), Some(sk), _) => Ok(UpstreamAuth::Aksk {
                signer: Signer::new(ak, sk),
                project_id: get("HUAWEICLOUD_SDK_PROJECT_ID"),
            }),
            (_, _, Some(token)) => Ok(UpstreamAuth::Token(token)),
            _ => Err(UpstreamConfigError::NoCredentials),
        }
    }
}

/// `url` as scheme, host and port, without a trailing slash or path.
pub fn normalize_endpoint(url: &str) -> Result<String, UpstreamConfigError> {
    let trimmed = url.trim().trim_end_matches('/');
    let parsed =
        reqwest::Url::parse(trimmed).map_err(|_| UpstreamConfigError::BadEndpoint(url.into()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(UpstreamConfigError::BadEndpoint(url.into()));
    }
    Ok(trimmed.to_string())
}

/// Where replays may send the service's SMS credentials: the configured upstream,
/// the SDK's regions, and the URLs the person running the service listed
/// (`--replay-target`). Anything else would hand those credentials to whoever
/// asked for the replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayTargets {
    /// As configured (normalized), with their parsed form for comparison.
    allowed: Vec<(String, reqwest::Url)>,
}

fn parsed(url: &str) -> Result<(String, reqwest::Url), UpstreamConfigError> {
    let normalized = normalize_endpoint(url)?;
    let parsed = reqwest::Url::parse(&normalized)
        .map_err(|_| UpstreamConfigError::BadEndpoint(url.into()))?;
    Ok((normalized, parsed))
}

/// Loopback hosts may be reached over plain HTTP (a stand-in SMS, a tunnel).
fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl ReplayTargets {
    /// The upstream (if any), every region, and `listed`, each of which must be
    /// HTTPS or on loopback.
    pub fn new(upstream: Option<&str>, listed: &[String]) -> Result<Self, UpstreamConfigError> {
        let mut allowed = Vec::new();
        for url in upstream.into_iter().chain(REGIONS.iter().map(|(_, e)| *e)) {
            allowed.push(parsed(url)?);
        }
        for url in listed {
            let (normalized, url) = parsed(url)?;
            if url.scheme() != "https" && !is_loopback(&url) {
                return Err(UpstreamConfigError::InsecureTarget(normalized));
            }
            allowed.push((normalized, url));
        }
        Ok(Self { allowed })
    }

    /// The allowed target `to` names, as configured; or why it is refused.
    pub fn check(&self, to: &str) -> Result<String, TargetRefused> {
        let (_, wanted) = parsed(to)?;
        self.allowed
            .iter()
            .find(|(_, url)| *url == wanted)
            .map(|(normalized, _)| normalized.clone())
            .ok_or_else(|| TargetRefused::NotAllowed(to.to_string()))
    }
}

/// Endpoint from `--upstream-endpoint` or `--upstream-region`.
pub fn endpoint(url: Option<&str>, region: Option<&str>) -> Result<String, UpstreamConfigError> {
    match (url, region) {
        (Some(url), _) => normalize_endpoint(url),
        (None, Some(region)) => region_endpoint(region)
            .map(str::to_string)
            .ok_or_else(|| UpstreamConfigError::UnknownRegion(region.into())),
        (None, None) => Err(UpstreamConfigError::NoEndpoint),
    }
}

/// Sends stored uploads to one SMS endpoint.
#[derive(Clone)]
pub struct Upstream {
    /// SMS's endpoint.
    pub endpoint: String,
    auth: UpstreamAuth,
    client: reqwest::Client,
}

/// How much of an answer an attempt records.
pub const RESPONSE_HEAD_BYTES: usize = 4096;
/// The most of an upstream answer that is read: an SMS error body is small; a
/// misbehaving upstream must not make the sender buffer without bound.
pub const RESPONSE_READ_LIMIT: usize = 64 * 1024;

/// The body of a response, up to `limit` bytes (the rest is not read).
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// The most bytes of one task's results read back from SMS (10,000 rounds of 30
/// directories are about 6 MiB).
pub const ANSWER_READ_LIMIT: usize = 16 * 1024 * 1024;

/// SMS's answer to reading a task's results back.
#[derive(Debug, Clone)]
pub struct SmsReadBack {
    /// Its HTTP status.
    pub status: u16,
    /// Its body, byte for byte.
    pub body: Vec<u8>,
    /// The `error_code` of an error answer.
    pub error_code: Option<String>,
    /// How long SMS asked to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
}

/// The `error_code` of an SMS error answer.
pub fn error_code_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<SmsErrorBody>(body)
        .ok()
        .and_then(|e| e.error_code)
}

/// The most bytes of one task-list page read (100 tasks are far less).
const TASK_LIST_READ_LIMIT: usize = 16 * 1024 * 1024;

/// A page of SMS's `ListTasks` answer: `count` (all tasks) and the page's tasks.
/// Only what sms-audit keeps is read; the rest of each task is ignored.
#[derive(Debug, Deserialize)]
pub struct TaskPage {
    /// Tasks SMS has in all.
    pub count: u64,
    /// This page's tasks.
    #[serde(default)]
    pub tasks: Vec<SmsTask>,
}

/// A task as SMS's `ListTasks` gives it.
#[derive(Debug, Deserialize)]
pub struct SmsTask {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// Its state (`RUNNING`, `MIGRATE_SUCCESS`, …).
    pub state: Option<String>,
    /// The task's source server (`source_server.id`).
    pub source_server: Option<SmsSourceRef>,
}

/// A task's source server, as SMS names it.
#[derive(Debug, Deserialize)]
pub struct SmsSourceRef {
    /// Its id.
    pub id: Option<String>,
}

impl TaskPage {
    /// A page of `ListTasks`, from its JSON.
    pub fn parse(bytes: &[u8]) -> Result<Self, ListTasksError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[derive(Deserialize)]
struct SmsErrorBody {
    error_code: Option<String>,
    error_msg: Option<String>,
}

impl Upstream {
    /// A client for `endpoint`, signing with `auth`.
    pub fn new(endpoint: String, auth: UpstreamAuth, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .user_agent(concat!("sms-audit/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with rustls");
        Self {
            endpoint,
            auth,
            client,
        }
    }

    /// One page of SMS's task list (`GET /v3/tasks?limit=&offset=`), signed as
    /// the SDK signs it.
    pub async fn list_tasks(&self, limit: u32, offset: u32) -> Result<TaskPage, ListTasksError> {
        let url = format!("{}/v3/tasks?limit={limit}&offset={offset}", self.endpoint);
        let response = self
            .signed(reqwest::Method::GET, &url, Vec::new(), b"")
            .send()
            .await?;
        let status = response.status();
        let bytes = read_capped(response, TASK_LIST_READ_LIMIT).await?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<SmsErrorBody>(&bytes)
                .ok()
                .map(|e| {
                    format!(
                        " {} {}",
                        e.error_code.unwrap_or_default(),
                        e.error_msg.unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            return Err(ListTasksError::Refused { status, detail });
        }
        TaskPage::parse(&bytes)
    }

    /// A request to `url` (under the validated endpoint) with `headers`, the
    /// project id and the credentials' headers, signed over all of them and
    /// `payload` (or the static token).
    fn signed(
        &self,
        method: reqwest::Method,
        url: &str,
        mut headers: Vec<(String, String)>,
        payload: &[u8],
    ) -> reqwest::RequestBuilder {
        let parsed = reqwest::Url::parse(url).expect("endpoint was validated");
        if let Some(p) = self.auth.project_id() {
            headers.push(("x-project-id".to_string(), p.to_string()));
        }
        let auth = self
            .auth
            .headers_for(method.as_str(), &parsed, &headers, &sha256_hex(payload));
        let mut request = self.client.request(method, url);
        let auth = auth
            .into_iter()
            .map(|(name, value)| (name.to_string(), value));
        for (name, value) in headers.into_iter().chain(auth) {
            request = request.header(name, value);
        }
        request
    }

    /// A task's results as SMS holds them (`GET .../consistency-result`, the
    /// SDK's `ShowConsistencyResult`), signed as forwarding signs: SMS's status,
    /// its answer (at most `ANSWER_READ_LIMIT` bytes; longer is an error) and its
    /// `Retry-After`.
    pub async fn consistency_results(&self, task_id: &str) -> Result<SmsReadBack, String> {
        let url = self.url_for(task_id);
        let response = self
            .signed(reqwest::Method::GET, &url, Vec::new(), b"")
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = read_capped(response, ANSWER_READ_LIMIT + 1)
            .await
            .map_err(|e| describe(&e))?;
        if body.len() > ANSWER_READ_LIMIT {
            return Err(format!(
                "SMS's answer is longer than {}",
                crate::domain::counted(ANSWER_READ_LIMIT as u64, "byte")
            ));
        }
        let error_code = error_code_of(&body);
        Ok(SmsReadBack {
            status,
            body,
            error_code,
            retry_after,
        })
    }

    /// The consistency-result URL of a task.
    pub fn url_for(&self, task_id: &str) -> String {
        format!("{}/v3/tasks/{task_id}/consistency-result", self.endpoint)
    }

    /// POSTs `raw_body` exactly as stored, signed (or with the static token).
    pub async fn send(&self, task_id: &str, raw_body: Vec<u8>) -> AttemptResult {
        let url = self.url_for(task_id);
        let started = Instant::now();
        let request = self.signed(
            reqwest::Method::POST,
            &url,
            vec![(
                "content-type".to_string(),
                "application/json;charset=UTF-8".to_string(),
            )],
            &raw_body,
        );
        let mut result = AttemptResult {
            url,
            status: None,
            upstream_request_id: None,
            error_code: None,
            error_msg: None,
            transport_error: None,
            response_head: None,
            retry_after: None,
            latency: Duration::ZERO,
        };
        match request.body(raw_body).send().await {
            Err(e) => result.transport_error = Some(describe(&e)),
            Ok(response) => {
                result.status = Some(response.status().as_u16());
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                result.upstream_request_id = header("x-request-id");
                result.retry_after = header("retry-after").and_then(|v| parse_retry_after(&v));
                match read_capped(response, RESPONSE_READ_LIMIT).await {
                    Ok(bytes) => {
                        let head = &bytes[..bytes.len().min(RESPONSE_HEAD_BYTES)];
                        result.response_head = Some(String::from_utf8_lossy(head).into_owned());
                        if let Ok(err) = serde_json::from_slice::<SmsErrorBody>(&bytes) {
                            result.error_code = err.error_code;
                            result.error_msg = err.error_msg;
                        }
                    }
                    Err(e) => result.transport_error = Some(describe(&e)),
                }
            }
        }
        result.latency = started.elapsed();
        result
    }
}

/// A transport error in words, with its causes.
pub fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "transport error".to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_regions() {
        assert_eq!(
            endpoint(None, Some("ru-moscow-1")).unwrap(),
            "https://sms-api.ru-moscow-1.myhuaweicloud.com"
        );
        assert_eq!(
            endpoint(None, Some("ap-southeast-1")).unwrap(),
            "https://sms.ap-southeast-1.myhuaweicloud.com"
        );
        assert!(matches!(
            endpoint(None, Some("mars-1")),
            Err(UpstreamConfigError::UnknownRegion(_))
        ));
        assert_eq!(
            endpoint(Some("http://127.0.0.1:9/"), Some("cn-north-4")).unwrap(),
            "http://127.0.0.1:9"
        );
        assert!(endpoint(Some("ftp://x"), None).is_err());
        assert!(matches!(
            endpoint(None, None),
            Err(UpstreamConfigError::NoEndpoint)
        ));
    }

    #[test]
    fn credentials_from_the_sdk_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let auth = UpstreamAuth::from_env(env(&[
            ("HUAWEICLOUD_SDK_AK", "A"),
            ("HUAWEICLOUD_SDK_SK", "s3cr3t"),
            ("HUAWEICLOUD_SDK_PROJECT_ID", "P"),
        ]))
        .unwrap();
        assert!(
            matches!(auth, UpstreamAuth::Aksk { ref project_id, .. } if project_id.as_deref() == Some("P"))
        );
        assert!(matches!(
            UpstreamAuth::from_env(env(&[("CLOUD_SDK_AK", "A"), ("CLOUD_SDK_SK", "S")])).unwrap(),
            UpstreamAuth::Aksk { .. }
        ));
        assert!(matches!(
            UpstreamAuth::from_env(env(&[("SMS_AUDIT_UPSTREAM_TOKEN", "T")])).unwrap(),
            UpstreamAuth::Token(_)
        ));
        assert!(UpstreamAuth::from_env(env(&[("HUAWEICLOUD_SDK_AK", "A")])).is_err());
        assert!(
            !format!("{auth:?}").contains("s3cr3t"),
            "secrets are not printed"
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
