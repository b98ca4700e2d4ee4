//! The pass-through (`serve --proxy`): every `/v3/` call but the consistency-result
//! upload goes on to SMS. The agent is authenticated here with its own credential
//! (role and task scope applied); SMS sees only the service's credentials. The
//! answer streams back to the agent as it comes, and the call is recorded in the
//! proxy log once the answer has been passed on (or the exchange broke off).

use crate::http::Access;
use crate::storage::tasks;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::SizedStream;
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::{Future, Stream, StreamExt};

use super::authenticated::{authenticate_with_body, Authorize, BodyRules};
use crate::domain::proxy::{
    connection_tokens, is_request_header_dropped, is_response_header_dropped, OperationRefusal,
    ProxyPath, Subject,
};
use crate::domain::{now_ms, AuthMethod, Credential};
use crate::http::auth::{self, header as header_value};
use crate::http::body_budget::BodyHold;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::middleware::RequestId;
use crate::http::IngestSettings;
use crate::services::proxy::{
    BodyTap, OutgoingBody, OutgoingRequest, Proxy, ProxyFailure, ProxyLog,
};
use crate::storage::proxy_log::{CallOutcome, ProxyCall};
use crate::storage::ReadPool;

/// What the pass-through works with; only there with `serve --proxy`, so a
/// handler taking `Option<PassThrough>` gets `None` without it.
pub struct PassThrough {
    proxy: web::Data<Proxy>,
    log: web::Data<ProxyLog>,
    access: web::Data<Access>,
    reads: web::Data<ReadPool>,
    ingest: web::Data<IngestSettings>,
}

impl FromRequest for PassThrough {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = || {
            Some(PassThrough {
                proxy: req.app_data::<web::Data<Proxy>>()?.clone(),
                log: req.app_data::<web::Data<ProxyLog>>()?.clone(),
                access: req.app_data::<web::Data<Access>>()?.clone(),
                reads: req.app_data::<web::Data<ReadPool>>()?.clone(),
                ingest: req.app_data::<web::Data<IngestSettings>>()?.clone(),
            })
        };
        std::future::ready(state().ok_or_else(|| {
            actix_web::error::ErrorNotFound("the pass-through is off (serve without --proxy)")
        }))
    }
}

/// Who may have SMS do things: agents and operators, within their task scope. A
/// credential limited to some tasks may not call what is about every task or
/// source of the project (`/v3/tasks` lists and creates them all), and reaches a
/// source only when `tasks sync` found it to be the source of one of its tasks.
struct CallTo<'a> {
    path: &'a ProxyPath,
    subject: &'a Subject<'a>,
    reads: &'a ReadPool,
}

impl Authorize for CallTo<'_> {
    async fn authorize(&self, credential: &Credential) -> Result<(), ApiError> {
        authorize(credential, self.path, self.subject, self.reads).await
    }
}

async fn authorize(
    credential: &Credential,
    path: &ProxyPath,
    subject: &Subject<'_>,
    reads: &ReadPool,
) -> Result<(), ApiError> {
    if !credential.role.may_upload() {
        return Err(ApiError::Forbidden(format!(
            "credential {:?} is an {} credential; calls to SMS need an agent or operator",
            credential.name, credential.role
        )));
    }
    let allowed = match subject {
        Subject::Task(task) => credential.may_upload_to(task),
        Subject::Project => credential.task_scope.is_none(),
        Subject::Source(source) if credential.task_scope.is_some() => {
            let source = source.to_string();
            let tasks = reads
                .with_blocking(move |conn| tasks::tasks_of_source(conn, &source))
                .await?;
            tasks.iter().any(|t| credential.may_upload_to(t))
        }
        Subject::Source(_) | Subject::NewSource | Subject::Unscoped => true,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "credential {:?} may not call {} (outside its tasks{})",
            credential.name,
            path.as_str(),
            if matches!(subject, Subject::Source(_)) {
                "; a source is reached once `tasks sync` links it to one of them"
            } else {
                ""
            }
        )))
    }
}

/// What is known of a call before SMS answers, for its log entry.
struct CallStart {
    started: Instant,
    call: ProxyCall,
}

impl CallStart {
    fn finish(mut self, log: &ProxyLog, outcome: CallOutcome, status: u16, error: Option<String>) {
        self.call.outcome = outcome;
        self.call.status = status;
        self.call.error = error;
        if self.call.latency_us == 0 {
            self.call.latency_us = self.started.elapsed().as_micros() as u64;
        }
        log.record(self.call);
    }
}

pub async fn pass_through(
    req: HttpRequest,
    payload: web::Payload,
    state: PassThrough,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    req.extensions_mut()
        .insert(crate::http::middleware::Proxied);
    let at = now_ms();
    let path = ProxyPath::parse(req.uri().path())
        .map_err(|e| ApiError::bad_request(format!("path: {e}")))?;
    let subject = match path.operation(req.method().as_str()) {
        Ok((_, subject)) => subject,
        Err(refusal) => return refused(refusal),
    };
    let call = CallTo {
        path: &path,
        subject: &subject,
        reads: &state.reads,
    };
    // Bodies read whole are charged to the budget until the call is over.
    let mut hold = state.ingest.body_budget.hold();
    let (credential, body, request_tap) =
        authenticated_request(&req, payload, &state, &call, &mut hold).await?;
    let limit = state.log.settings().max_body_bytes;
    let unsigned_payload = auth::unsigned_payload(&req);
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| ApiError::bad_request("method: not a valid HTTP method"))?;
    let mut start = call_start(&req, &credential, &path, started, at);
    let sent = state
        .proxy
        .send(OutgoingRequest {
            method,
            path: &path,
            raw_query: req.query_string(),
            headers: outgoing_headers(&req),
            body,
            unsigned_payload,
        })
        .await;
    {
        let tap = request_tap.lock();
        start.call.request_bytes = tap.bytes;
        start.call.request_body = tap.kept.clone();
    }
    let too_large = start.call.request_bytes > limit as u64;
    let body_late = request_tap.lock().broken.is_some() && !too_large;
    let response = match sent {
        Ok(response) => response,
        Err(failure) => {
            let error = match failure {
                _ if too_large => (CallOutcome::TooLarge, ApiError::BodyTooLarge(limit)),
                _ if body_late => (
                    CallOutcome::Aborted,
                    ApiError::BodyTimeout(state.ingest.body_timeout.as_secs()),
                ),
                ProxyFailure::NotVerbatim(_) => {
                    return Err(ApiError::bad_request(failure.to_string()))
                }
                failure => unanswered(failure),
            };
            return Ok(not_sent(start, &state.log, error));
        }
    };
    start.call.latency_us = started.elapsed().as_micros() as u64;
    start.call.upstream_request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let reading = AnswerReading::of(&req, &path, &state);
    Ok(answer(&req, response, start, state.log, reading))
}

/// The answer to a call SMS has no such operation for: 404 for a path it does
/// not have, 405 with `Allow` for a method.
fn refused(refusal: OperationRefusal) -> Result<HttpResponse, ApiError> {
    let allow = match &refusal {
        OperationRefusal::UnknownPath(_) => return Err(ApiError::UnknownPath(refusal.to_string())),
        OperationRefusal::Method { allow, .. } => allow.clone(),
    };
    let mut answer = ApiError::MethodNotAllowed(refusal.to_string()).error_response();
    if let Ok(allow) = actix_web::http::header::HeaderValue::from_str(&allow) {
        answer
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, allow);
    }
    Ok(answer)
}

/// The caller, verified and authorized, and the body to send on: read whole
/// when under a signature (the agent's, or the service's own), streamed
/// otherwise. An unknown credential is refused before any byte is read.
async fn authenticated_request(
    req: &HttpRequest,
    payload: web::Payload,
    state: &PassThrough,
    call: &CallTo<'_>,
    hold: &mut BodyHold,
) -> Result<(Credential, OutgoingBody, Arc<Mutex<BodyTap>>), ApiError> {
    let presented = auth::presented(req, true)?;
    let found = auth::find(&presented, &state.access.credentials, &state.reads).await?;
    let found = auth::require_known(&presented, found)?;
    let settings = state.log.settings();
    let limit = settings.max_body_bytes;
    let tap = Arc::new(Mutex::new(BodyTap::new(settings.log_bodies)));
    let read_first = !auth::unsigned_payload(req)
        && (presented.method() == AuthMethod::Aksk || state.proxy.signs_bodies());
    if read_first {
        let rules = BodyRules {
            limit,
            timeout: state.ingest.body_timeout,
            budget: &state.ingest.body_budget,
        };
        let (credential, body) =
            authenticate_with_body(req, &presented, found, payload, rules, hold, call).await?;
        let body = body.ok_or(ApiError::BodyTooLarge(limit))?;
        tap.lock().see(&body);
        return Ok((credential, OutgoingBody::Buffered(Bytes::from(body)), tap));
    }
    // A token, or a signature that leaves the body out: known before the body.
    let credential = auth::authenticate(req, &presented, Some(found), Some(&[]))?;
    call.authorize(&credential).await?;
    let declared = header_value(req, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge(limit));
    }
    // HTTP/1 without Content-Length or Transfer-Encoding has no body at all.
    let no_body = declared == Some(0)
        || (declared.is_none()
            && req.version() < actix_web::http::Version::HTTP_2
            && !req.headers().contains_key("transfer-encoding"));
    let body = if no_body {
        OutgoingBody::Empty
    } else {
        let timeout = state.ingest.body_timeout;
        OutgoingBody::Streamed {
            stream: pump(payload, limit, timeout, tap.clone()),
            length: declared,
            deadline: timeout,
        }
    };
    Ok((credential, body, tap))
}

/// The agent's headers SMS gets: end-to-end ones, in the HTTP client's types
/// (actix and the client use different versions of the `http` crate).
fn outgoing_headers(
    req: &HttpRequest,
) -> Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)> {
    let tokens = connection_tokens(
        req.headers()
            .get_all("connection")
            .filter_map(|v| v.to_str().ok()),
    );
    req.headers()
        .iter()
        .filter(|(name, _)| !is_request_header_dropped(name.as_str(), &tokens))
        .filter_map(|(name, value)| {
            Some((
                reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()).ok()?,
                reqwest::header::HeaderValue::from_bytes(value.as_bytes()).ok()?,
            ))
        })
        .collect()
}

/// The call's log entry as far as it is known before SMS answers.
fn call_start(
    req: &HttpRequest,
    credential: &Credential,
    path: &ProxyPath,
    started: Instant,
    at: crate::domain::Timestamp,
) -> CallStart {
    CallStart {
        started,
        call: ProxyCall {
            at,
            request_id: req
                .extensions()
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            credential_name: credential.name.clone(),
            peer_addr: req.peer_addr().map(|p| p.to_string()).unwrap_or_default(),
            method: req.method().to_string(),
            path: path.as_str().to_string(),
            query: req.query_string().to_string(),
            status: 0,
            outcome: CallOutcome::Answered,
            error: None,
            latency_us: 0,
            upstream_request_id: None,
            request_bytes: 0,
            response_bytes: 0,
            response_sha256: None,
            request_body: None,
            response_body: None,
        },
    }
}

/// SMS could not be reached or did not answer in time.
fn unanswered(failure: ProxyFailure) -> (CallOutcome, ApiError) {
    match failure {
        ProxyFailure::Timeout(_) => (
            CallOutcome::Timeout,
            ApiError::UpstreamTimeout(failure.to_string()),
        ),
        _ => (
            CallOutcome::Unreachable,
            ApiError::UpstreamUnavailable(failure.to_string()),
        ),
    }
}

/// The agent's answer when SMS gave none, recorded in the proxy log (not as a
/// refusal in the rejection log).
fn not_sent(
    start: CallStart,
    log: &ProxyLog,
    (outcome, error): (CallOutcome, ApiError),
) -> HttpResponse {
    let status = error.status_code().as_u16();
    start.finish(log, outcome, status, Some(error.to_string()));
    let mut answer = error.error_response();
    answer.extensions_mut().remove::<ErrorCode>();
    answer
}

/// How an answer is read on its way: never kept when it carries secrets, given
/// up when SMS stalls, and read whole for the passive reconciliation when it
/// is a task's results.
struct AnswerReading {
    secret: bool,
    stall: Duration,
    results_of: Option<String>,
}

impl AnswerReading {
    fn of(req: &HttpRequest, path: &ProxyPath, state: &PassThrough) -> Self {
        Self {
            secret: path.answer_is_secret(),
            stall: state.proxy.timeout(),
            results_of: (req.method() == Method::GET)
                .then(|| path.consistency_result_task())
                .flatten()
                .filter(|_| state.log.reads_answers())
                .map(str::to_string),
        }
    }
}

/// SMS's answer, passed on: status, end-to-end headers, and the body as it comes.
fn answer(
    req: &HttpRequest,
    response: reqwest::Response,
    start: CallStart,
    log: web::Data<ProxyLog>,
    reading: AnswerReading,
) -> HttpResponse {
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    let tokens = connection_tokens(
        response
            .headers()
            .get_all("connection")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    for (name, value) in response.headers() {
        if is_response_header_dropped(name.as_str(), &tokens) {
            continue;
        }
        if let Ok(value) = actix_web::http::header::HeaderValue::from_bytes(value.as_bytes()) {
            builder.append_header((name.as_str(), value));
        }
    }
    let length = response.content_length();
    let bodiless = req.method() == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        start.finish(&log, CallOutcome::Answered, status.as_u16(), None);
        return builder.finish();
    }
    let encoding = response
        .headers()
        .get(reqwest::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let keep = log.settings().log_bodies && !reading.secret;
    let stall = reading.stall;
    let tracked = Tracked {
        inner: Box::pin(response.bytes_stream()),
        tap: BodyTap::answer(keep, reading.results_of.is_some()),
        pending: Some((start, log)),
        status: status.as_u16(),
        stall,
        idle: Box::pin(tokio::time::sleep(stall)),
        results_of: reading.results_of.map(|task| (task, encoding)),
    };
    match length {
        Some(n) => builder.body(SizedStream::new(n, tracked)),
        None => builder.streaming(tracked),
    }
}

/// SMS's answer on its way to the agent; records the call when it has passed
/// whole, or when the exchange breaks off (also when SMS sends nothing for
/// `stall`).
struct Tracked {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>>>>,
    tap: BodyTap,
    pending: Option<(CallStart, web::Data<ProxyLog>)>,
    status: u16,
    stall: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    /// The task whose results this answer is, for the passive reconciliation,
    /// and its `Content-Encoding`.
    results_of: Option<(String, Option<String>)>,
}

impl Tracked {
    fn finish(&mut self, outcome: CallOutcome, error: Option<String>) {
        if let Some((mut start, log)) = self.pending.take() {
            start.call.response_bytes = self.tap.bytes;
            start.call.response_body = self.tap.kept.take();
            if outcome == CallOutcome::Answered {
                start.call.response_sha256 = self.tap.sha256();
                let whole = self.tap.captured();
                if let (Some((task, encoding)), Some(body)) = (self.results_of.take(), whole) {
                    log.read_back(task, start.call.at, self.status, (body, encoding));
                }
            }
            start.finish(&log, outcome, self.status, error);
        }
    }
}

impl Stream for Tracked {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.tap.see(&chunk);
                let next = tokio::time::Instant::now() + self.stall;
                self.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                let why = format!("SMS's answer broke off: {e}");
                self.finish(CallOutcome::Aborted, Some(why.clone()));
                Poll::Ready(Some(Err(std::io::Error::other(why))))
            }
            Poll::Ready(None) => {
                self.finish(CallOutcome::Answered, None);
                Poll::Ready(None)
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let why = format!("SMS's answer stalled for {} s", self.stall.as_secs());
                    self.finish(CallOutcome::Aborted, Some(why.clone()));
                    Poll::Ready(Some(Err(std::io::Error::other(why))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.finish(
            CallOutcome::Aborted,
            Some("the agent closed the connection before the whole answer was passed on".into()),
        );
    }
}

/// Passes the agent's body on as it arrives. actix's payload lives on its worker
/// thread, the HTTP client wants a `Send` stream: a local task feeds a channel.
/// More than `limit` bytes, or a body slower than `deadline`, ends the stream
/// with an error, which aborts the call to SMS (it never sees a whole request).
fn pump(
    mut payload: web::Payload,
    limit: usize,
    deadline: Duration,
    tap: Arc<Mutex<BodyTap>>,
) -> reqwest::Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    actix_web::rt::spawn(async move {
        let feed = async {
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
                let seen = {
                    let mut tap = tap.lock();
                    tap.see(&chunk);
                    tap.bytes
                };
                if seen > limit as u64 {
                    return Err(std::io::Error::other("the body is larger than the limit"));
                }
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
            }
            Ok(())
        };
        let result = match tokio::time::timeout(deadline, feed).await {
            Ok(result) => result,
            Err(_) => {
                tap.lock().broken = Some("the body did not arrive in time".into());
                Err(std::io::Error::other("the body did not arrive in time"))
            }
        };
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
        }
    });
    reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}
