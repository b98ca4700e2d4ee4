//! A fake SMS endpoint: a real HTTP server on loopback that checks each request's
//! AK/SK signature, records what it received byte for byte, and answers as it is
//! told (200, 400 with an SMS error, 429/503 with Retry-After, 500, hanging, or
//! dropping the connection).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sms_audit::domain::signing::{self, AuthorizationHeader, ReceivedRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

    /// The next answers, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.lock().unwrap().script.extend(answers);
    }

    /// The tasks `GET /v3/tasks` lists, as SMS's `ListTasks` does.
    pub fn set_tasks(&self, tasks: Vec<serde_json::Value>) {
        self.state.lock().unwrap().tasks = tasks;
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

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        // Until the last chunk; a request cut off before it is never answered.
        loop {
            if let Some(body) = dechunk(&buf[header_end..]) {
                break body;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    } else {
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < header_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf[header_end..header_end + length].to_vec()
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let token_ok = headers.get("x-auth-token").map(String::as_str) == Some(UPSTREAM_TOKEN);
    let signature_ok = token_ok
        || headers
            .get("authorization")
            .and_then(|a| AuthorizationHeader::parse(a).ok())
            .filter(|a| a.access_key == AK)
            .is_some_and(|auth| {
                let lookup = |name: &str| headers.get(name).cloned();
                let request = ReceivedRequest {
                    method: &method,
                    path,
                    raw_query: query,
                    header: &lookup,
                    body: &body,
                };
                signing::check_date(&request, chrono::Utc::now()).is_ok()
                    && signing::verify(&auth, &request, SK).is_ok()
            });
    let answer = {
        let mut s = state.lock().unwrap();
        let answer = if method == "GET" && path == "/v3/tasks" {
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .and_then(|v| v.parse::<usize>().ok())
            };
            let (limit, offset) = (param("limit").unwrap_or(50), param("offset").unwrap_or(0));
            let page: Vec<_> = s.tasks.iter().skip(offset).take(limit).cloned().collect();
            let body = serde_json::json!({"count": s.tasks.len(), "tasks": page}).to_string();
            Answer::Custom(200, body, Vec::new())
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
        s.received.push(Captured {
            method: method.clone(),
            path: path.to_string(),
            query: query.to_string(),
            headers: headers.clone(),
            body,
            signature_ok,
            at: std::time::Instant::now(),
            answer: match &answer {
                Answer::Ok => "200".into(),
                Answer::ApiError(s, _) | Answer::RetryAfter(s, _) | Answer::Status(s) => {
                    s.to_string()
                }
                Answer::Hang(_) => "hang".into(),
                Answer::Drop => "drop".into(),
                Answer::Endless(s) => s.to_string(),
                Answer::Custom(s, _, _) => s.to_string(),
            },
        });
        answer
    };
    let request_id = uuid::Uuid::now_v7().to_string();
    let response = match answer {
        Answer::Ok => http(200, &request_id, &[], "{}"),
        Answer::ApiError(status, code) => http(
            status,
            &request_id,
            &[],
            &format!(r#"{{"error_code":"{code}","error_msg":"refused by the fake SMS"}}"#),
        ),
        Answer::RetryAfter(status, secs) => http(
            status,
            &request_id,
            &[("Retry-After", secs.to_string())],
            r#"{"error_code":"APIGW.0308","error_msg":"slow down"}"#,
        ),
        Answer::Status(status) => http(status, &request_id, &[], "upstream trouble"),
        Answer::Hang(d) => {
            tokio::time::sleep(d).await;
            http(200, &request_id, &[], "{}")
        }
        Answer::Drop => return,
        Answer::Custom(status, body, extra) => http(status, &request_id, &extra, &body),
        Answer::Endless(status) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Request-Id: {request_id}\r\n\r\n",
                1u64 << 30
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&vec![b'x'; 1 << 20]).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            return;
        }
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A whole chunked body, or `None` while its last chunk has not arrived.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if data.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn http(status: u16, request_id: &str, extra: &[(&str, String)], body: &str) -> String {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nX-Request-Id: {request_id}\r\nConnection: close\r\n",
        body.len()
    );
    if !extra
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        out.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
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
