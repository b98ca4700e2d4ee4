//! A fake SMS endpoint: a real HTTP server (hyper) on loopback that checks each
//! request's AK/SK signature, records what it received byte for byte, and answers
//! as it is told (200, 400 with an SMS error, 429/503 with Retry-After, 500,
//! hanging, dropping the connection, or a body that never ends).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sms_audit::domain::signing::{self, AuthorizationHeader, ReceivedRequest};
use tokio::net::{TcpListener, TcpStream};

pub const AK: &str = "UPSTREAMAK0000000000";
pub const SK: &str = "upstream-secret-key-for-tests";
pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";
/// The static token the fake also accepts (`SMS_AUDIT_UPSTREAM_TOKEN`).
pub const UPSTREAM_TOKEN: &str = "upstream-static-token-for-tests";

#[derive(Debug, Clone)]
pub enum Answer {
    Ok,
    ApiError(u16, &'static str),
    RetryAfter(u16, u64),
    Status(u16),
    Hang(Duration),
    Drop,
    /// This status with a body that claims 1 GiB, sends 1 MiB and then stalls.
    Endless(u16),
    /// This status and body, with these extra headers.
    Custom(u16, String, Vec<(&'static str, String)>),
}

#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub signature_ok: bool,
    pub at: std::time::Instant,
    /// What the fake answered.
    pub answer: String,
}

impl Captured {
    pub fn task(&self) -> &str {
        self.path
            .trim_start_matches("/v3/tasks/")
            .trim_end_matches("/consistency-result")
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Answer>,
    /// Answer once the script is used up.
    default: Option<Answer>,
    received: Vec<Captured>,
    /// What `GET /v3/tasks` lists (paged by `limit` and `offset`).
    tasks: Vec<serde_json::Value>,
    /// Each task's verification rounds, as SMS keeps them: an accepted POST
    /// appends one; `GET .../consistency-result` lists them.
    rounds: HashMap<String, Vec<serde_json::Value>>,
}

#[derive(Clone)]
pub struct FakeUpstream {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeUpstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        FakeUpstream { url, state }
    }

    /// Upstream settings that forward to this fake with its AK/SK, retrying fast
    /// (the default starts at 5 s).
    pub fn settings(&self) -> sms_audit::services::outbox::UpstreamSettings {
        use sms_audit::services::outbox::{RetryPolicy, UpstreamSettings};
        use sms_audit::services::upstream::{ReplayTargets, UpstreamAuth};
        UpstreamSettings {
            endpoint: self.url.clone(),
            auth: UpstreamAuth::Aksk {
                signer: signing::Signer::new(AK, SK),
                project_id: Some(PROJECT.into()),
            },
            timeout: Duration::from_secs(1),
            concurrency: 4,
            forward: true,
            deliver_all: false,
            policy: RetryPolicy {
                first: Duration::from_millis(100),
                cap: Duration::from_millis(400),
                max_age: Duration::from_secs(3600),
            },
            replay_targets: ReplayTargets::new(Some(&self.url), &[]).unwrap(),
        }
    }

    /// The next answers, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.lock().unwrap().script.extend(answers);
    }

    /// The tasks `GET /v3/tasks` lists, as SMS's `ListTasks` does.
    pub fn set_tasks(&self, tasks: Vec<serde_json::Value>) {
        self.state.lock().unwrap().tasks = tasks;
    }

    /// A round SMS holds for `task` that no agent sent through sms-audit.
    pub fn seed_round(&self, task: &str, round: serde_json::Value) {
        let mut s = self.state.lock().unwrap();
        s.rounds.entry(task.to_string()).or_default().push(round);
    }

    /// SMS loses `task`'s round at `index`.
    pub fn lose_round(&self, task: &str, index: usize) -> serde_json::Value {
        self.state
            .lock()
            .unwrap()
            .rounds
            .get_mut(task)
            .unwrap()
            .remove(index)
    }

    /// `task`'s rounds, as `GET .../consistency-result` lists them.
    pub fn rounds(&self, task: &str) -> Vec<serde_json::Value> {
        let s = self.state.lock().unwrap();
        s.rounds.get(task).cloned().unwrap_or_default()
    }

    /// The answer after the script (200 when unset).
    pub fn set_default(&self, answer: Answer) {
        self.state.lock().unwrap().default = Some(answer);
    }

    pub fn received(&self) -> Vec<Captured> {
        self.state.lock().unwrap().received.clone()
    }

    /// Requests it answered 200.
    pub fn delivered(&self) -> Vec<Captured> {
        self.received()
            .into_iter()
            .filter(|c| c.answer == "200")
            .collect()
    }

    pub async fn wait_for(
        &self,
        what: &str,
        mut done: impl FnMut(&[Captured]) -> bool,
    ) -> Vec<Captured> {
        let what = format!("fake upstream: {what}");
        crate::helpers::eventually(&what, crate::helpers::PATIENCE, || {
            let got = self.received();
            std::future::ready(done(&got).then_some(got))
        })
        .await
    }
}

/// One connection, served by hyper; `Answer::Drop` ends it without an answer.
async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let service = service_fn(move |req| answer(req, state.clone()));
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Why the fake closed a connection without answering (`Answer::Drop`).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dropped by the script")
    }
}

impl std::error::Error for Dropped {}

type Body = BoxBody<Bytes, std::convert::Infallible>;

async fn answer(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Body>, Dropped> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    for (name, value) in req.headers() {
        headers.insert(
            name.as_str().to_string(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        );
    }
    // A request cut off before its end is never answered.
    let body = req.into_body().collect().await.map_err(|_| Dropped)?;
    let body = body.to_bytes().to_vec();
    let signature_ok = signed(&method, &path, &query, &headers, &body);
    let answer = {
        let mut s = state.lock().unwrap();
        let answer = if method == "GET" && path == "/v3/tasks" {
            list_tasks(&s.tasks, &query)
        } else {
            s.script
                .pop_front()
                .or_else(|| s.default.clone())
                .unwrap_or(Answer::Ok)
        };
        // A request with a bad signature is refused like SMS would.
        let answer = if signature_ok {
            answer
        } else {
            Answer::ApiError(401, "APIGW.0301")
        };
        let answer = results(&mut s, &method, &path, &body, answer);
        s.received.push(Captured {
            method,
            path,
            query,
            headers,
            body,
            signature_ok,
            at: std::time::Instant::now(),
            answer: answer.label(),
        });
        answer
    };
    respond(answer).await
}

/// Whether the request carries the upstream token or a valid AK/SK signature.
fn signed(
    method: &str,
    path: &str,
    query: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> bool {
    if headers.get("x-auth-token").map(String::as_str) == Some(UPSTREAM_TOKEN) {
        return true;
    }
    headers
        .get("authorization")
        .and_then(|a| AuthorizationHeader::parse(a).ok())
        .filter(|a| a.access_key == AK)
        .is_some_and(|auth| {
            let lookup = |name: &str| headers.get(name).cloned();
            let request = ReceivedRequest {
                method,
                path,
                raw_query: query,
                header: &lookup,
                body,
            };
            signing::check_date(&request, chrono::Utc::now()).is_ok()
                && signing::verify(&auth, &request, SK).is_ok()
        })
}

/// What SMS does with a task's results when it answers 200: a POST appends a
/// round (its `finished_time` the body's, or now in milliseconds; `check_result`
/// `success` without problems, `failed` with); a GET lists the rounds, and a task
/// SMS never heard of is 404.
fn results(s: &mut State, method: &str, path: &str, body: &[u8], answer: Answer) -> Answer {
    let Some(task) = path
        .strip_prefix("/v3/tasks/")
        .and_then(|p| p.strip_suffix("/consistency-result"))
    else {
        return answer;
    };
    if !matches!(answer, Answer::Ok) {
        return answer;
    }
    if method == "POST" {
        let Ok(sent) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Answer::ApiError(400, "SMS.9001");
        };
        let dirs = sent["consistency_result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let problems = dirs.iter().any(|d| {
            [
                "num_different_files",
                "num_target_miss_files",
                "num_target_more_files",
            ]
            .iter()
            .any(|k| d[*k].as_u64().unwrap_or(0) > 0)
        });
        let finished = sent["finished_time"]
            .as_i64()
            .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        s.rounds
            .entry(task.to_string())
            .or_default()
            .push(serde_json::json!({
                "finished_time": finished,
                "check_result": if problems { "failed" } else { "success" },
                "consistency_result": dirs,
            }));
        return answer;
    }
    match s.rounds.get(task) {
        Some(rounds) => Answer::Custom(
            200,
            serde_json::json!({"task_id": task, "result_list": rounds}).to_string(),
            Vec::new(),
        ),
        None => Answer::ApiError(404, "SMS.6503"),
    }
}

/// `GET /v3/tasks?limit=&offset=` as SMS's `ListTasks` answers it.
fn list_tasks(tasks: &[serde_json::Value], query: &str) -> Answer {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let (limit, offset) = (param("limit").unwrap_or(50), param("offset").unwrap_or(0));
    let page: Vec<_> = tasks.iter().skip(offset).take(limit).cloned().collect();
    let body = serde_json::json!({"count": tasks.len(), "tasks": page}).to_string();
    Answer::Custom(200, body, Vec::new())
}

impl Answer {
    /// What `Captured::answer` records.
    fn label(&self) -> String {
        match self {
            Answer::Ok => "200".into(),
            Answer::ApiError(s, _)
            | Answer::RetryAfter(s, _)
            | Answer::Status(s)
            | Answer::Endless(s)
            | Answer::Custom(s, _, _) => s.to_string(),
            Answer::Hang(_) => "hang".into(),
            Answer::Drop => "drop".into(),
        }
    }
}

async fn respond(answer: Answer) -> Result<Response<Body>, Dropped> {
    let response = match answer {
        Answer::Ok => http(200, &[], "{}"),
        Answer::ApiError(status, code) => http(
            status,
            &[],
            &format!(r#"{{"error_code":"{code}","error_msg":"refused by the fake SMS"}}"#),
        ),
        Answer::RetryAfter(status, secs) => http(
            status,
            &[("Retry-After", secs.to_string())],
            r#"{"error_code":"APIGW.0308","error_msg":"slow down"}"#,
        ),
        Answer::Status(status) => http(status, &[], "upstream trouble"),
        Answer::Hang(d) => {
            tokio::time::sleep(d).await;
            http(200, &[], "{}")
        }
        Answer::Drop => return Err(Dropped),
        Answer::Custom(status, body, extra) => http(status, &extra, &body),
        Answer::Endless(status) => endless(status),
    };
    Ok(response)
}

/// This status with a body that claims 1 GiB, sends 1 MiB and then stalls for 5 s.
fn endless(status: u16) -> Response<Body> {
    let first = futures_util::stream::once(async {
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'x'; 1 << 20])))
    });
    let stall = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(Frame::data(Bytes::new()))
    });
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header("Content-Length", (1u64 << 30).to_string())
        .header("X-Request-Id", uuid::Uuid::now_v7().to_string())
        .body(BodyExt::boxed(StreamBody::new(first.chain(stall))))
        .unwrap()
}

fn http(status: u16, extra: &[(&str, String)], body: &str) -> Response<Body> {
    let mut response = Response::builder()
        .status(status)
        .header("X-Request-Id", uuid::Uuid::now_v7().to_string());
    if !extra
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        response = response.header("Content-Type", "application/json");
    }
    for (k, v) in extra {
        response = response.header(*k, v);
    }
    response
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

/// A command of the binary on `db`, with the upstream credentials and this fake as
/// the endpoint in its environment.
pub fn command_for(
    fake: &FakeUpstream,
    db: &std::path::Path,
    args: &[&str],
) -> std::process::Command {
    let mut cmd = crate::helpers::command();
    cmd.args(args)
        .arg("--db")
        .arg(db)
        .env("HUAWEICLOUD_SDK_AK", AK)
        .env("HUAWEICLOUD_SDK_SK", SK)
        .env("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
        .env("SMS_AUDIT_UPSTREAM_ENDPOINT", &fake.url);
    cmd
}

/// Runs a command off the async runtime: its exit code, and stdout then stderr.
pub async fn output(mut cmd: std::process::Command) -> (i32, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
