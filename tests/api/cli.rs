//! The real binary: serve (first start, port 0, graceful stop), credentials, tasks.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::helpers::{TestApp, EXAMPLE, TASK};

/// Runs `sms-audit ARGS` on `db` (given in the environment): the whole output.
fn sms_audit(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    crate::helpers::command()
        .args(args)
        .env("SMS_AUDIT_DB", db)
        .output()
        .unwrap()
}

/// The example upload to a served binary at `address`, with `token`.
pub fn upload(client: &reqwest::Client, address: &str, token: &str) -> reqwest::RequestBuilder {
    client
        .post(format!("{address}{}", TestApp::upload_path(TASK)))
        .header("X-Auth-Token", token)
        .header("Content-Type", "application/json")
        .body(EXAMPLE)
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub struct Served {
    pub child: Child,
    pub address: String,
    pub token: Option<String>,
    pub stderr: mpsc::Receiver<String>,
    /// The lines read from stderr while starting.
    pub startup_log: Vec<String>,
}

impl Drop for Served {
    /// A failing test must not leave a server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve --listen 127.0.0.1:0` and reads the bound address (and the admin
/// token, on a first start) from stderr.
fn serve(db: &std::path::Path) -> Served {
    serve_with(db, &[], &[])
}

/// `serve` with more flags and environment.
pub fn serve_with(db: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Served {
    let (tx, rx) = mpsc::channel();
    let mut served = Served {
        child: crate::helpers::command()
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(args)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        address: String::new(),
        token: None,
        stderr: rx,
        startup_log: Vec::new(),
    };
    let stderr = served.child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut expect_token = false;
    loop {
        let line = served
            .stderr
            .recv_timeout(Duration::from_secs(30))
            .expect("serve printed its address");
        served.startup_log.push(line.clone());
        if expect_token && !line.trim().is_empty() {
            served.token = Some(line.trim().to_string());
            expect_token = false;
        }
        if line.contains("shown only this once") {
            expect_token = true;
        }
        // Not on a terminal, the token goes to a file whose path is logged.
        if let Some(rest) = line.split("its token was written to ").nth(1) {
            let path = rest.split(" (").next().unwrap();
            served.token = Some(std::fs::read_to_string(path).unwrap().trim().to_string());
        }
        if let Some(rest) = line.split("listening on http://").nth(1) {
            // Text or JSON (where a quote follows the address).
            let address: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            served.address = format!("http://{address}");
            return served;
        }
    }
}

fn terminate(served: &mut Served) -> i32 {
    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    served
        .child
        .wait()
        .unwrap()
        .code()
        .expect("exited, not killed")
}

#[tokio::test]
async fn serve_creates_admin_once_stops_gracefully_and_keeps_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut first = serve(&db);
    let token = first
        .token
        .clone()
        .expect("first start prints the admin token");
    assert_eq!(token.len(), 64, "256-bit token");

    let client = reqwest::Client::new();
    let mut pending = Vec::new();
    for _ in 0..20 {
        pending.push(upload(&client, &first.address, &token).send());
    }
    for p in futures_util::future::join_all(pending).await {
        assert_eq!(p.unwrap().status(), 200);
    }
    assert_eq!(terminate(&mut first), 0);
    // The process has exited: read its stderr to the end.
    let rest: Vec<String> = first.stderr.iter().collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("every accepted upload is committed")),
        "{rest:?}"
    );
    assert!(!rest.iter().any(|l| l.contains(&token)), "token logged");

    let (code, out) = {
        let out = sms_audit(&db, &["verify"]);
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("20 entries"), "{out}");

    let mut second = serve(&db);
    assert!(
        second.token.is_none(),
        "the admin token is printed only once"
    );
    let tasks = client
        .get(format!("{}/api/v1/tasks", second.address))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    let tasks: serde_json::Value = tasks.json().await.unwrap();
    assert_eq!(tasks["tasks"][0]["upload_count"], 20);
    assert_eq!(terminate(&mut second), 0);
}

#[test]
fn credentials_add_json_list_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");

    let out = stdout(&sms_audit(
        &db,
        &[
            "credentials",
            "add",
            "--name",
            "agent-7",
            "--role",
            "agent",
            "--aksk",
            "--tasks",
            "t-1,t-2",
            "--json",
        ],
    ));
    assert_eq!(out.lines().count(), 1, "exactly one JSON object: {out}");
    // Creating a database is said (on stderr, the JSON stays alone on stdout),
    // so that a command run in the wrong folder does not start a second ledger.
    let made = sms_audit(
        &db,
        &["credentials", "add", "--name", "zz-2", "--role", "agent"],
    );
    assert!(
        !String::from_utf8_lossy(&made.stderr).contains("created a new database"),
        "only when it creates one"
    );
    let elsewhere = dir.path().join("elsewhere.db");
    let made = sms_audit(
        &elsewhere,
        &["credentials", "add", "--name", "zz-3", "--role", "agent"],
    );
    let err = String::from_utf8_lossy(&made.stderr);
    assert!(
        err.contains(&format!(
            "created a new database at {}",
            elsewhere.display()
        )),
        "{err}"
    );
    let issued: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = issued.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["name", "role", "token", "access_key", "secret_key"],
        "the spec's keys, in its order"
    );
    let positions: Vec<usize> = [
        "\"name\"",
        "\"role\"",
        "\"token\"",
        "\"access_key\"",
        "\"secret_key\"",
    ]
    .iter()
    .map(|k| out.find(k).unwrap())
    .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys in the spec's order: {out}"
    );
    assert_eq!(issued["name"], "agent-7");
    assert_eq!(issued["role"], "agent");
    assert!(
        issued["secret_key"].as_str().unwrap().len() >= 32,
        "≥128-bit secret"
    );

    let out = stdout(&sms_audit(
        &db,
        &[
            "credentials",
            "add",
            "--name",
            "reader",
            "--role",
            "auditor",
            "--json",
        ],
    ));
    let reader: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        reader.get("access_key").is_none() && reader.get("secret_key").is_none(),
        "{out}"
    );

    // Global --db accepted after the subcommand too.
    let list = crate::helpers::command()
        .args(["credentials", "list", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let list = stdout(&list);
    assert!(
        list.contains("agent-7") && list.contains("reader"),
        "{list}"
    );
    for secret in [&issued["token"], &issued["secret_key"], &reader["token"]] {
        assert!(
            !list.contains(secret.as_str().unwrap()),
            "list shows a secret"
        );
    }
    let json_list = stdout(&sms_audit(&db, &["credentials", "list", "--json"]));
    let json_list: serde_json::Value = serde_json::from_str(&json_list).unwrap();
    assert_eq!(json_list[0]["tasks"], serde_json::json!(["t-1", "t-2"]));
    assert!(!json_list
        .to_string()
        .contains(issued["token"].as_str().unwrap()));

    let duplicate = sms_audit(
        &db,
        &[
            "credentials",
            "add",
            "--name",
            "reader",
            "--role",
            "auditor",
        ],
    );
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));

    stdout(&sms_audit(&db, &["credentials", "revoke", "reader"]));
    let list = stdout(&sms_audit(&db, &["credentials", "list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("reader") && l.contains("revoked")),
        "{list}"
    );
    assert!(!sms_audit(&db, &["credentials", "revoke", "nobody"])
        .status
        .success());
}

#[tokio::test]
async fn existing_access_key_is_registered_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut child = crate::helpers::command()
        .args([
            "credentials",
            "add",
            "--name",
            "legacy",
            "--role",
            "agent",
            "--access-key",
            "MYEXISTINGAK",
            "--secret-key-stdin",
            "--json",
        ])
        .env("SMS_AUDIT_DB", &db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"my-existing-secret\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let out = stdout(&out);
    let issued: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(issued["access_key"], "MYEXISTINGAK");
    assert!(
        issued.get("secret_key").is_none(),
        "a secret given on stdin is not echoed: {out}"
    );

    let mut served = serve(&db);
    let app_like = SignedUploader {
        address: served.address.clone(),
    };
    assert_eq!(
        app_like.upload("MYEXISTINGAK", "my-existing-secret").await,
        200
    );
    assert_eq!(app_like.upload("MYEXISTINGAK", "other-secret").await, 401);
    assert_eq!(terminate(&mut served), 0);
}

struct SignedUploader {
    address: String,
}

impl SignedUploader {
    async fn upload(&self, ak: &str, sk: &str) -> u16 {
        use sms_audit::domain::signing::{format_sdk_date, sha256_hex, CanonicalRequest, Signer};
        let host = self.address.trim_start_matches("http://").to_string();
        let date = format_sdk_date(chrono::Utc::now());
        let path = TestApp::upload_path(TASK);
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("host".to_string(), host),
            ("x-sdk-date".to_string(), date.clone()),
        ];
        let hash = sha256_hex(EXAMPLE.as_bytes());
        let authorization = Signer::new(ak, sk).authorization(
            &CanonicalRequest {
                method: "POST",
                path: &path,
                query: &[],
                headers: &headers,
                payload_hash: &hash,
            },
            &date,
        );
        reqwest::Client::new()
            .post(format!("{}{path}", self.address))
            .header("Content-Type", "application/json")
            .header("X-Sdk-Date", date)
            .header("Authorization", authorization)
            .body(EXAMPLE)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[test]
fn tasks_add_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let out = stdout(&sms_audit(
        &db,
        &["tasks", "add", TASK, "--name", "web server 01"],
    ));
    assert!(out.contains("registered"), "{out}");
    let out = stdout(&sms_audit(&db, &["tasks", "add", TASK, "--name", "web-01"]));
    assert!(out.contains("updated"), "{out}");
    let bad = sms_audit(&db, &["tasks", "add", "bad id!"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("task_id"));

    let list = stdout(&sms_audit(&db, &["tasks", "list", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["task_id"], TASK);
    assert_eq!(list[0]["name"], "web-01");
    assert_eq!(list[0]["upload_count"], 0);
    let text = stdout(&sms_audit(&db, &["tasks", "list"]));
    assert!(text.contains(TASK) && text.contains("web-01"), "{text}");
}

#[tokio::test]
async fn the_first_token_is_kept_out_of_the_log_and_files_are_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut served = serve(&db);
    let token = served.token.clone().expect("the token was handed over");
    let token_file = dir.path().join("audit.db.admin-token");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&token_file), 0o600);
    let reply = upload(&reqwest::Client::new(), &served.address, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    for file in ["audit.db", "audit.db-wal", "audit.db-shm", "audit.db.lock"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
    assert_eq!(terminate(&mut served), 0);
    let mut log: Vec<String> = served.startup_log.clone();
    log.extend(served.stderr.iter());
    assert!(
        log.iter().any(|l| l.contains("audit.db.admin-token")),
        "{log:?}"
    );
    assert!(!log.iter().any(|l| l.contains(&token)), "token in the log");
}

#[test]
fn completions_and_manual_pages_come_from_the_command_line_itself() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none.db");
    let out = sms_audit(&db, &["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let script = stdout(&out);
    assert!(script.contains("--checkpoint-mode"), "{script}");
    // The script is valid bash.
    let file = dir.path().join("sms-audit.bash");
    std::fs::write(&file, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for shell in ["zsh", "fish"] {
        let out = sms_audit(&db, &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(stdout(&out).contains("purge"), "{shell}");
    }
    assert_eq!(
        sms_audit(&db, &["completions", "tcsh"]).status.code(),
        Some(2)
    );

    let page = stdout(&sms_audit(&db, &["man"]));
    assert!(page.contains(".TH sms-audit 1"), "{page}");
    let pages = dir.path().join("man");
    let out = sms_audit(&db, &["man", "--out", pages.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let serve = std::fs::read_to_string(pages.join("sms-audit-serve.1")).unwrap();
    assert!(serve.contains("checkpoint\\-mode"), "{serve}");
    assert!(pages.join("sms-audit-evidence-verify.1").exists());
    // Plain text for roff: no Markdown backticks, and no DESCRIPTION that only
    // repeats the NAME line.
    for entry in std::fs::read_dir(&pages).unwrap() {
        let path = entry.unwrap().path();
        let page = std::fs::read_to_string(&path).unwrap();
        assert!(!page.contains('`'), "{}: {page}", path.display());
        let section = |name: &str| {
            page.split(&format!(".SH {name}\n"))
                .nth(1)
                .map(|s| s.split(".SH").next().unwrap().trim().to_string())
        };
        let name = section("NAME").unwrap();
        let about = name.split(" \\- ").nth(1).unwrap_or(&name).to_string();
        if let Some(description) = section("DESCRIPTION") {
            assert!(
                !description.starts_with(&about),
                "{}: {page}",
                path.display()
            );
        }
        assert_eq!(
            page.matches(".ds Aq \\(aq").count(),
            1,
            "{}",
            path.display()
        );
    }
    // None of it needs or makes a database.
    assert!(!db.exists());
}

#[tokio::test]
async fn json_logs_have_a_line_per_request_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    // An upstream whose URL carries a password, and a webhook whose path is secret.
    let mut served = serve_with(
        &db,
        &[
            "--log-format",
            "json",
            "--upstream-endpoint",
            "http://agent:endpoint-secret-77@127.0.0.1:9",
            "--notify-url",
            "http://127.0.0.1:9/hook-secret-88",
        ],
        &[("SMS_AUDIT_UPSTREAM_TOKEN", "upstream-secret-99")],
    );
    let token = served.token.clone().expect("the token was handed over");
    let client = reqwest::Client::new();
    let post = |token: &str| upload(&client, &served.address, token).send();
    assert_eq!(post(&token).await.unwrap().status(), 200);
    let wrong = "wrong-token-0123456789abcdef0123456789abcdef";
    assert_eq!(post(wrong).await.unwrap().status(), 401);
    let read = client
        .get(format!(
            "{}/api/v1/tasks?token=query-secret-1234",
            served.address
        ))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(terminate(&mut served), 0);
    let mut log: Vec<String> = served.startup_log.clone();
    log.extend(served.stderr.iter());
    let lines: Vec<serde_json::Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "sms_audit::access")
        .collect();
    assert_eq!(access.len(), 3, "{access:#?}");
    let ok = access[0];
    assert_eq!(ok["method"], "POST");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["task_id"], TASK);
    assert_eq!(ok["credential"], "admin");
    assert_eq!(ok["route"], "/v3/tasks/:task_id/consistency-result");
    assert_eq!(ok["request_id"].as_str().unwrap().len(), 36);
    assert!(ok["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(access[1]["status"], 401);
    assert_eq!(access[1]["error_code"], "APIGW.0301");
    assert!(access[1].get("credential").is_none_or(|c| c.is_null()));
    assert_eq!(access[2]["route"], "/api/v1/tasks");
    for secret in [
        token.as_str(),
        wrong,
        "query-secret-1234",
        "endpoint-secret-77",
        "hook-secret-88",
        "upstream-secret-99",
    ] {
        assert!(
            !log.iter().any(|l| l.contains(secret)),
            "a secret in the log: {secret}"
        );
    }
}

#[tokio::test]
async fn a_config_file_fills_what_no_flag_or_environment_variable_sets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let config = dir.path().join("sms-audit.toml");
    std::fs::write(
        &config,
        "# a comment\nmax-body-bytes = 100\nsession_hours = 2\ntrusted-proxy = [\"10.0.0.1\", \"10.0.0.2\"]\nmetrics-token = \"file-secret-token\"\n",
    )
    .unwrap();
    let post = |address: String, token: String| async move {
        upload(&reqwest::Client::new(), &address, &token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // From the file: the example upload (316 bytes) is over 100.
    let mut served = serve_with(&db, &["--config", config.to_str().unwrap()], &[]);
    let token = served.token.clone().unwrap();
    assert_eq!(post(served.address.clone(), token.clone()).await, 413);
    assert_eq!(terminate(&mut served), 0);
    // The environment wins over the file, a flag over both.
    let mut served = serve_with(
        &db,
        &["--config", config.to_str().unwrap()],
        &[("SMS_AUDIT_MAX_BODY_BYTES", "65536")],
    );
    assert_eq!(post(served.address.clone(), token.clone()).await, 200);
    assert_eq!(terminate(&mut served), 0);
    let mut served = serve_with(
        &db,
        &[
            "--config",
            config.to_str().unwrap(),
            "--max-body-bytes",
            "65536",
        ],
        &[("SMS_AUDIT_MAX_BODY_BYTES", "50")],
    );
    assert_eq!(post(served.address.clone(), token.clone()).await, 200);
    assert_eq!(terminate(&mut served), 0);

    // `config check`: where each value comes from; the secret masked.
    let out = crate::helpers::command()
        .args(["config", "check", "--config"])
        .arg(&config)
        .env("SMS_AUDIT_SESSION_HOURS", "3")
        .env(
            "SMS_AUDIT_NOTIFY_URL",
            "https://hooks.example.com/services/T0/HOOK-SECRET,http://127.0.0.1:9/x?key=Q-SECRET",
        )
        .env(
            "SMS_AUDIT_UPSTREAM_ENDPOINT",
            "https://agent:PW-SECRET@sms.example.com",
        )
        .output()
        .unwrap();
    let text = stdout(&out);
    // Webhook paths and an endpoint's password are secrets too.
    assert!(!text.contains("SECRET"), "{text}");
    let row = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("max-body-bytes"), "file 100");
    assert_eq!(row("session-hours"), "env 3");
    assert_eq!(row("trusted-proxy"), "file 10.0.0.1,10.0.0.2");
    assert_eq!(row("sync"), "default full");
    // Defaults worked out at start are shown as what serve would use.
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(row("workers"), format!("default {cores} (one per core)"));
    assert!(
        row("log-origin").starts_with("default sms-audit/"),
        "{text}"
    );
    assert!(
        row("signing-key").starts_with("default ") && row("signing-key").ends_with(".signing-key"),
        "{text}"
    );
    assert_eq!(row("metrics-token"), "file ******** (set)");
    assert!(!text.contains("file-secret-token"));
    assert_eq!(
        row("notify-url"),
        "env https://hooks.example.com/…,http://127.0.0.1:9/…"
    );
    assert_eq!(row("upstream-endpoint"), "env https://***@sms.example.com");

    // A bad file names the key and its line, and nothing starts.
    for (content, expected) in [
        (
            "listen = \"127.0.0.1:0\"\n\nbogus = 1\n",
            "line 3: bogus: unknown key",
        ),
        (
            "max-body-bytes = 0\n",
            "line 1: max-body-bytes: invalid value '0'",
        ),
        (
            "forward = \"yes\"\n",
            "line 1: forward: must be true or false",
        ),
        ("[serve]\nlisten = \"x\"\n", "line 1: serve: unknown key"),
        ("listen = \n", "line 1: not valid TOML"),
    ] {
        std::fs::write(&config, content).unwrap();
        for args in [&["config", "check"][..], &["serve"][..]] {
            let out = crate::helpers::command()
                .args(args)
                .arg("--config")
                .arg(&config)
                .arg("--db")
                .arg(dir.path().join("never.db"))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{content}: {err}");
            assert!(err.contains(expected), "{content}: {err}");
        }
    }
    assert!(!dir.path().join("never.db").exists());
}

#[test]
fn the_example_config_in_deploy_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/sms-audit.toml");
    let out = crate::helpers::command()
        .args(["config", "check", "--config", example])
        .env_remove("SMS_AUDIT_LOG_FORMAT")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("log-format") && l.contains("file")),
        "{text}"
    );
}

#[tokio::test]
async fn files_others_may_read_are_warned_about_or_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let config = dir.path().join("sms-audit.toml");
    std::fs::write(&config, "metrics-token = \"config-secret\"\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let check = |strict: bool| {
        let mut cmd = crate::helpers::command();
        cmd.args(["config", "check", "--config"]).arg(&config);
        if strict {
            cmd.arg("--strict-permissions");
        }
        cmd.output().unwrap()
    };
    let warned = check(false);
    assert_eq!(warned.status.code(), Some(0));
    let err = String::from_utf8_lossy(&warned.stderr);
    assert!(
        err.contains("the config file") && err.contains("0666"),
        "{err}"
    );
    let refused = check(true);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--strict-permissions refuses it"));

    // A signing key others may read: a warning at start, a refusal when strict.
    let mut served = serve(&db);
    assert_eq!(terminate(&mut served), 0);
    let key = dir.path().join("audit.db.signing-key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut served = serve(&db);
    assert!(
        served
            .startup_log
            .iter()
            .any(|l| l.contains("the checkpoint signing key") && l.contains("0644")),
        "{:#?}",
        served.startup_log
    );
    assert_eq!(terminate(&mut served), 0);
    let refused = Command::new("timeout")
        .args([
            "20",
            TestApp::binary(),
            "--strict-permissions",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("signing key"));
}

/// The manual's `serve` flag table (docs/configuration.md) is the command line's:
/// every visible flag has a row naming its environment variable and (when it has
/// one) its default, and every row names a flag that exists.
#[test]
fn serve_flag_table_matches_the_serve_flags() {
    use clap::CommandFactory;
    let manual = include_str!("../../docs/configuration.md");
    let table = manual
        .split("### `serve` options")
        .nth(1)
        .expect("docs/configuration.md has the serve options table");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.split(" | ").map(|c| c.trim_matches(['|', ' '])).collect())
        .collect();
    let command = sms_audit::cli::Cli::command();
    let serve = command.find_subcommand("serve").unwrap();
    let flags: Vec<&clap::Arg> = serve
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_long().is_some_and(|l| l != "help"))
        .collect();
    let names_flag = |cell: &str, long: &str| {
        cell.contains(&format!("`--{long}`")) || cell.contains(&format!("`--{long} "))
    };
    for arg in &flags {
        let long = arg.get_long().unwrap();
        let row = rows
            .iter()
            .find(|r| names_flag(r[0], long))
            .unwrap_or_else(|| panic!("--{long} has no row in the manual's table"));
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy();
            let named = row[1]
                .split('`')
                .skip(1)
                .step_by(2)
                .any(|shown| shown.starts_with(['_', 'S']) && env.ends_with(shown));
            assert!(named, "--{long}: the manual names not {env} but {}", row[1]);
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if let [default] = &defaults[..] {
            assert!(
                row[2].starts_with(&format!("`{default}`")),
                "--{long}: the default is {default}, the manual says {}",
                row[2]
            );
        }
    }
    for row in &rows {
        let named: Vec<&str> = row[0]
            .split("`--")
            .skip(1)
            .map(|rest| rest.split([' ', '`']).next().unwrap())
            .collect();
        assert!(!named.is_empty(), "a row without a flag: {row:?}");
        for long in named {
            assert!(
                flags.iter().any(|a| a.get_long() == Some(long)),
                "the manual's table has --{long}, which serve does not take"
            );
        }
    }
}

/// Durations take units; the older spellings keep their own units.
#[test]
fn duration_flags_take_units_and_old_spellings_keep_theirs() {
    use clap::Parser;
    let args = |args: &[&str]| {
        let mut argv = vec!["sms-audit", "serve"];
        argv.extend(args);
        let sms_audit::cli::Command::Serve(serve) =
            sms_audit::cli::Cli::try_parse_from(argv).unwrap().command
        else {
            unreachable!()
        };
        serve
    };
    let parse = |given: &[&str]| args(given).into_config("/nonexistent/d.db".into()).unwrap();
    let hours = |n: u64| Duration::from_secs(n * 3600);
    assert_eq!(parse(&[]).http.session_lifetime, hours(12));
    assert_eq!(
        parse(&["--session-lifetime", "90m"]).http.session_lifetime,
        hours(3) / 2
    );
    assert_eq!(
        parse(&["--session-hours", "2"]).http.session_lifetime,
        hours(2)
    );
    assert_eq!(
        parse(&["--credential-cache", "250ms"])
            .http
            .credential_cache_ttl,
        Duration::from_millis(250)
    );
    assert_eq!(
        parse(&["--credential-cache-ms", "250"])
            .http
            .credential_cache_ttl,
        Duration::from_millis(250)
    );
    let retention = |given| parse(given).retention.unwrap();
    assert_eq!(retention(&["--retention", "30"]).keep, hours(30 * 24));
    assert_eq!(retention(&["--retention", "30d"]).keep, hours(30 * 24));
    assert_eq!(
        retention(&["--retention", "1d", "--purge-step-ms", "20"]).step,
        Duration::from_millis(20)
    );
    assert_eq!(
        retention(&["--retention", "1d", "--purge-step", "20ms"]).step,
        Duration::from_millis(20)
    );
    // Seconds, bare or not, for the upstream's timeout.
    let timeout = |t: &str| args(&["--upstream-timeout", t]).upstream.upstream_timeout.0;
    assert_eq!(timeout("45"), Duration::from_secs(45));
    assert_eq!(timeout("2m"), Duration::from_secs(120));
}

/// Storage cannot be switched off in a real build: `--null-store` exists only
/// with the `dev` feature, so the flag, the environment and a config file are
/// all refused, and `config check` never lists it.
#[cfg(not(feature = "dev"))]
#[test]
fn benchmark_switches_are_refused_outside_dev_builds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let config = dir.path().join("sms-audit.toml");
    std::fs::write(&config, "null-store = true\n").unwrap();
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let out = crate::helpers::command()
            .args(args)
            .arg("--db")
            .arg(&db)
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        (out.status.code(), crate::helpers::output_text(&out))
    };
    // An address nothing can bind: a build that took the switch fails to
    // listen instead of serving (and this test ends either way).
    let (code, text) = run(&["serve", "--null-store", "--listen", "nowhere:0"], &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("--null-store"), "{text}");
    let config_arg = config.to_str().unwrap();
    for args in [
        &["serve", "--listen", "nowhere:0", "--config", config_arg][..],
        &["config", "check", "--config", config_arg],
    ] {
        let (code, text) = run(args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {text}");
        assert!(
            text.contains("line 1: null-store: unknown key"),
            "{args:?}: {text}"
        );
    }
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\n").unwrap();
    let (code, text) = run(
        &["config", "check", "--config", config_arg],
        &[("SMS_AUDIT_NULL_STORE", "true")],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("null"), "{text}");
    assert!(!db.exists(), "nothing was created");
}

/// The manual's list of CSV columns (docs/api.md) is the export's header, in order.
#[test]
fn the_manual_lists_every_csv_column() {
    let manual = include_str!("../../docs/api.md");
    let start = manual
        .find("- CSV: one row per result item")
        .expect("the CSV section");
    let list = &manual[start..];
    let list = &list[list.find("item fields): `").unwrap() + "item fields): `".len()..];
    let list = &list[..list.find('`').unwrap()];
    let columns: Vec<&str> = list.split(',').map(str::trim).collect();
    assert_eq!(columns, sms_audit::services::export::CSV_HEADER);
}

/// What `credentials add` says it keeps is what it keeps: a token's hash, and
/// with `--aksk` the secret key as it is.
#[test]
fn credentials_add_says_what_it_stores() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let token_only = sms_audit(
        &db,
        &["credentials", "add", "--name", "t", "--role", "agent"],
    );
    let said = String::from_utf8_lossy(&token_only.stderr);
    assert!(
        said.contains("keeps only its hash") && !said.contains("secret key"),
        "{said}"
    );
    let aksk = sms_audit(
        &db,
        &[
            "credentials",
            "add",
            "--name",
            "k",
            "--role",
            "agent",
            "--aksk",
        ],
    );
    let said = String::from_utf8_lossy(&aksk.stderr);
    assert!(said.contains("the secret key is stored as is"), "{said}");
    assert!(!said.contains("keeps only the token's hash"), "{said}");
}

/// `credentials list` shows each credential's task scope and last use (its
/// last upload or login); revoking the last operator asks first.
#[tokio::test]
async fn credentials_list_shows_scope_and_last_use_and_the_last_operator_is_kept() {
    let app = TestApp::spawn().await;
    let scoped = app.add_credential(
        "scoped",
        sms_audit::domain::Role::Agent,
        Some(&[TASK]),
        false,
    );
    app.add_credential("idle", sms_audit::domain::Role::Agent, None, false);
    assert_eq!(app.upload(TASK, &scoped.token, EXAMPLE).await.status, 200);
    let browser = app.login(&app.admin_token).await;
    assert!(browser.is_ok());
    let list = stdout(&sms_audit(&app.db_path, &["credentials", "list"]));
    let line = |name: &str| {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name}: {list}"))
            .to_string()
    };
    assert!(line("scoped").ends_with(TASK), "{list}");
    assert!(
        line("idle").ends_with("any") && line("idle").contains("never"),
        "{list}"
    );
    let uploaded = app.get("/api/v1/uploads/1", &app.admin_token).await.json();
    let at = uploaded["received_at"].as_str().unwrap().to_string();
    assert!(
        line("scoped").contains(&at),
        "last use is its upload: {list}"
    );
    assert!(!line("admin").contains("never"), "the login counts: {list}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&sms_audit(
        &app.db_path,
        &["credentials", "list", "--json"],
    )))
    .unwrap();
    let scoped_json = json
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "scoped")
        .unwrap();
    assert_eq!(scoped_json["last_used_at"], at.as_str());

    // The last operator: asked (nobody answers here), not revoked; --force does.
    let kept = sms_audit(&app.db_path, &["credentials", "revoke", "admin"]);
    assert_eq!(kept.status.code(), Some(2));
    let said = String::from_utf8_lossy(&kept.stderr);
    assert!(said.contains("admin is the last active operator"), "{said}");
    assert!(
        said.contains("nothing revoked (--force revokes without asking)"),
        "{said}"
    );
    let forced = sms_audit(&app.db_path, &["credentials", "revoke", "admin", "--force"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    // Another agent is no operator: revoked without asking.
    assert!(sms_audit(&app.db_path, &["credentials", "revoke", "idle"])
        .status
        .success());
}
