//! Starts the real application on port 0 with a temporary database and talks HTTP
//! to it.

use std::path::PathBuf;

use actix_web::dev::ServerHandle;
use reqwest::header::HeaderMap;
use rusqlite::Connection;
use sms_audit::domain::signing::{format_sdk_date, sha256_hex, CanonicalRequest, Signer};
use sms_audit::domain::{Role, TaskId};
use sms_audit::storage::credentials::{self, IssuedCredential, KeyPair, NewCredential};
use sms_audit::{Application, ServeConfig};
use tempfile::TempDir;
use tokio::task::JoinHandle;

pub const TASK: &str = "137224b7-8d7c-4919-b33e-ed1597780000";
pub const EXAMPLE: &str = include_str!("../fixtures/example-upload.json");

pub struct TestApp {
    pub address: String,
    pub db_path: PathBuf,
    pub admin_token: String,
    pub client: reqwest::Client,
    dir: TempDir,
    config: ServeConfig,
    handle: ServerHandle,
    running: JoinHandle<std::io::Result<()>>,
}

/// A stopped [`TestApp`]: its database, and how to start it again.
pub struct StoppedApp {
    pub db_path: PathBuf,
    dir: TempDir,
    config: ServeConfig,
    admin_token: String,
}

impl StoppedApp {
    pub async fn start(self) -> TestApp {
        self.start_with(|_| {}).await
    }

    /// Starts again with some settings changed.
    pub async fn start_with(mut self, configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
        configure(&mut self.config);
        TestApp::start(self.dir, self.config, Some(self.admin_token)).await
    }
}

/// A response with its body already read.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// Asserts an SMS error response and returns its body.
    pub fn assert_error(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status, status, "body: {}", self.text);
        let body = self.json();
        assert_eq!(body["error_code"], code, "body: {}", self.text);
        assert!(
            body["error_msg"].as_str().is_some_and(|m| !m.is_empty()),
            "error_msg missing: {}",
            self.text
        );
        body
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServeConfig::new(dir.path().join("audit.db"));
        config.listen = "127.0.0.1:0".into();
        config.handle_signals = false;
        config.workers = Some(2);
        configure(&mut config);
        Self::start(dir, config, None).await
    }

    async fn start(dir: TempDir, config: ServeConfig, admin_token: Option<String>) -> Self {
        let mut tries = 0;
        let app = loop {
            match Application::build(config.clone()).await {
                Ok(app) => break app,
                // A child process another test is starting holds a copy of the
                // lock's descriptor from fork until exec: wait that moment out.
                Err(sms_audit::startup::StartError::Locked(_)) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the application starts: {e:?}"),
            }
        };
        let admin_token = app
            .admin_token()
            .map(str::to_string)
            .or(admin_token)
            .expect("a fresh database gets an admin token");
        let address = format!("http://{}", app.address());
        let handle = app.handle();
        let running = tokio::spawn(app.run_until_stopped());
        TestApp {
            address,
            db_path: config.db.clone(),
            admin_token,
            client: reqwest::Client::new(),
            dir,
            config,
            handle,
            running,
        }
    }

    /// Stops gracefully (waiting for the writer to commit) and starts again on the
    /// same database.
    pub async fn restart(self) -> Self {
        self.stop().await.start().await
    }

    /// Stops gracefully; the database stays, to be worked on and started again.
    pub async fn stop(self) -> StoppedApp {
        let TestApp {
            dir,
            config,
            handle,
            running,
            admin_token,
            db_path,
            ..
        } = self;
        handle.stop(true).await;
        running.await.unwrap().unwrap();
        StoppedApp {
            db_path,
            dir,
            config,
            admin_token,
        }
    }

    pub fn write_conn(&self) -> Connection {
        let conn = Connection::open(&self.db_path).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        conn
    }

    pub fn add_credential(
        &self,
        name: &str,
        role: Role,
        tasks: Option<&[&str]>,
        aksk: bool,
    ) -> IssuedCredential {
        credentials::add(
            &self.write_conn(),
            NewCredential {
                name,
                role,
                tasks: tasks.map(|t| t.iter().map(|id| TaskId::parse(id).unwrap()).collect()),
                key_pair: if aksk {
                    KeyPair::Generate
                } else {
                    KeyPair::None
                },
            },
        )
        .unwrap()
    }

    pub fn count(&self, table: &str) -> i64 {
        self.write_conn()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    /// Nothing of an upload was stored (rejections are logged elsewhere).
    pub fn assert_nothing_stored(&self) {
        assert_eq!(self.count("uploads"), 0, "an upload was stored");
        assert_eq!(self.count("upload_results"), 0, "result rows were stored");
        let with_uploads: i64 = self
            .write_conn()
            .query_row(
                "SELECT count(*) FROM tasks WHERE upload_count > 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(with_uploads, 0, "a task summary was changed");
    }

    pub fn upload_path(task: &str) -> String {
        format!("/v3/tasks/{task}/consistency-result")
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let request_id = headers
            .get("x-request-id")
            .unwrap_or_else(|| panic!("no X-Request-Id on a {status} response"));
        uuid::Uuid::parse_str(request_id.to_str().unwrap()).expect("X-Request-Id is a UUID");
        Reply {
            status,
            headers,
            text,
        }
    }

    pub async fn upload(&self, task: &str, token: &str, body: &str) -> Reply {
        self.send(
            self.client
                .post(format!("{}{}", self.address, Self::upload_path(task)))
                .header("X-Auth-Token", token)
                .header("Content-Type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// An upload signed with AK/SK as the SDK signs it, `adjust` may tamper with
    /// the pieces before sending.
    pub async fn upload_signed(
        &self,
        task: &str,
        ak: &str,
        sk: &str,
        body: &str,
        adjust: impl FnOnce(&mut SignedParts),
    ) -> Reply {
        let host = self.address.trim_start_matches("http://").to_string();
        let mut parts = SignedParts {
            path: Self::upload_path(task),
            date: chrono::Utc::now(),
            signed_body: body.to_string(),
            sent_body: body.to_string(),
            headers: vec![
                (
                    "Content-Type".into(),
                    "application/json;charset=UTF-8".into(),
                ),
                ("Host".into(), host),
                (
                    "X-Project-Id".into(),
                    "0123456789abcdef0123456789abcdef".into(),
                ),
            ],
            signed: vec![
                "content-type".into(),
                "host".into(),
                "x-project-id".into(),
                "x-sdk-date".into(),
            ],
            secret_key: sk.to_string(),
            unsent: Vec::new(),
            upper_case_signature: false,
        };
        adjust(&mut parts);
        let date = format_sdk_date(parts.date);
        let mut headers = parts.headers.clone();
        headers.push(("X-Sdk-Date".into(), date.clone()));
        let signed_headers: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| parts.signed.contains(&n.to_ascii_lowercase()))
            .cloned()
            .collect();
        let payload_hash =
            if parts.headers.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case("x-sdk-content-sha256") && v == "UNSIGNED-PAYLOAD"
            }) {
                "UNSIGNED-PAYLOAD".to_string()
            } else {
                sha256_hex(parts.signed_body.as_bytes())
            };
        let authorization = Signer::new(ak, &parts.secret_key).authorization(
            &CanonicalRequest {
                method: "POST",
                path: &parts.path,
                query: &[],
                headers: &signed_headers,
                payload_hash: &payload_hash,
            },
            &date,
        );
        let authorization = match authorization.rsplit_once("Signature=") {
            Some((head, signature)) if parts.upper_case_signature => {
                format!("{head}Signature={}", signature.to_ascii_uppercase())
            }
            _ => authorization,
        };
        let mut request = self
            .client
            .post(format!("{}{}", self.address, parts.path))
            .header("Authorization", authorization)
            .body(parts.sent_body.clone());
        let skipped = |n: &str| n == "Host" || parts.unsent.contains(&n.to_ascii_lowercase());
        for (name, value) in headers.iter().filter(|(n, _)| !skipped(n)) {
            request = request.header(name, value);
        }
        self.send(request).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(
            self.client
                .get(format!("{}{}", self.address, path))
                .header("X-Auth-Token", token),
        )
        .await
    }

    /// The binary the tests run: this build's, or `SMS_AUDIT_TEST_BINARY` (CI
    /// runs the memory test against the release build with it).
    pub fn binary() -> &'static str {
        static BINARY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        BINARY.get_or_init(|| {
            std::env::var("SMS_AUDIT_TEST_BINARY")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sms-audit").to_string())
        })
    }

    /// Whether the binary run is an optimized build (`SMS_AUDIT_TEST_BINARY`, or
    /// this build in release mode).
    pub fn binary_is_optimized() -> bool {
        std::env::var_os("SMS_AUDIT_TEST_BINARY").is_some() || !cfg!(debug_assertions)
    }
}

pub struct SignedParts {
    pub path: String,
    pub date: chrono::DateTime<chrono::Utc>,
    pub signed_body: String,
    pub sent_body: String,
    pub headers: Vec<(String, String)>,
    pub signed: Vec<String>,
    pub secret_key: String,
    /// Headers signed but then left out of the request.
    pub unsent: Vec<String>,
    /// Send the signature's hex digits in upper case.
    pub upper_case_signature: bool,
}

/// An upload body with `n` result items.
pub fn body_with_items(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"dir_check":"/data/{i}","num_total_files":{},"num_different_files":{},"num_target_miss_files":0,"num_target_more_files":1}}"#,
                100 + i,
                i % 3
            )
        })
        .collect();
    format!(r#"{{"consistency_result":[{}]}}"#, items.join(","))
}

/// A logged-in browser: the session cookie and the page's CSRF token.
pub struct Browser {
    pub client: reqwest::Client,
    pub address: String,
    pub cookie: String,
    pub csrf: String,
}

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of `name="NAME" value="..."` in a page.
pub fn form_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// `name=value` of a Set-Cookie header for `name`.
pub fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

impl TestApp {
    /// Logs in through the form, as a person would.
    pub async fn login(&self, token: &str) -> Result<Browser, Reply> {
        let client = no_redirects();
        let form = self
            .send(client.get(format!("{}/login", self.address)))
            .await;
        assert_eq!(form.status, 200, "{}", form.text);
        let csrf = form_value(&form.text, "csrf_token").expect("login form has a CSRF token");
        let login_cookie =
            set_cookie(&form.headers, "sms_audit_login_csrf").expect("login CSRF cookie");
        let login_cookie = login_cookie.split(';').next().unwrap().to_string();
        let reply = self
            .send(
                client
                    .post(format!("{}/login", self.address))
                    .header("Cookie", login_cookie)
                    .form(&[
                        ("token", token),
                        ("csrf_token", csrf.as_str()),
                        ("next", "/"),
                    ]),
            )
            .await;
        if reply.status != 303 {
            return Err(reply);
        }
        let session = set_cookie(&reply.headers, "sms_audit_session").expect("session cookie");
        let cookie = session.split(';').next().unwrap().to_string();
        let page = self
            .send(
                client
                    .get(format!("{}/audit", self.address))
                    .header("Cookie", &cookie),
            )
            .await;
        let csrf =
            form_value(&page.text, "csrf_token").expect("pages carry the session CSRF token");
        Ok(Browser {
            client,
            address: self.address.clone(),
            cookie,
            csrf,
        })
    }
}

impl Browser {
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(format!("{}{path}", self.address)))
            .await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        self.send(
            self.client
                .post(format!("{}{path}", self.address))
                .form(form),
        )
        .await
    }

    /// Sends with the session cookie and a browser's `Accept`; redirects are
    /// not followed.
    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request
            .header("Cookie", &self.cookie)
            .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Reply {
            status,
            headers,
            text: response.text().await.unwrap(),
        }
    }
}

/// A body whose first directory has `different` different files.
pub fn body_with_problems(dir: &str, different: u32) -> String {
    serde_json::json!({"consistency_result": [
        {"dir_check": dir, "num_total_files": 100, "num_different_files": different,
         "num_target_miss_files": 1, "num_target_more_files": 0},
        {"dir_check": "/var", "num_total_files": 50, "num_different_files": 0,
         "num_target_miss_files": 0, "num_target_more_files": 0}
    ]})
    .to_string()
}

/// Runs the binary with `--db DB`: (exit code, stdout, stderr).
/// The binary, with no input: every test that runs it starts here.
/// Runs a command on `db` to its end, with no input and no upstream from the
/// environment.
pub fn run(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    command()
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("SMS_AUDIT_UPSTREAM_ENDPOINT")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// A finished command's standard output and error, one after the other.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn command() -> std::process::Command {
    let mut cmd = std::process::Command::new(TestApp::binary());
    cmd.stdin(std::process::Stdio::null());
    cmd
}

/// Runs `sms-audit ARGS --db DB`: its exit code, stdout and stderr.
pub fn sms_audit(db: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = command().args(args).arg("--db").arg(db).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How long [`eventually`] waits by default: generous, since it returns as soon
/// as the awaited thing happens.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);

/// Checks `check` every 20 ms until it gives `Some`, and returns that; panics
/// naming `what` (and the last thing seen) after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The figure on the dashboard's card `key` (`problems`, `clean`, ...).
pub fn card_value(html: &str, key: &str) -> String {
    let start = html.find(&format!("id=\"card-{key}\"")).unwrap();
    let value = &html[start..];
    let value = &value[value.find("class=\"value\">").unwrap() + 14..];
    value[..value.find('<').unwrap()].to_string()
}
