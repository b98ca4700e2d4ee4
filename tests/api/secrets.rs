//! No secret ever shows: with `RUST_LOG=trace`, every command and route is used,
//! and the logs, pages, API answers, rejection log and error messages are searched
//! for every token, secret key, signature, session cookie and the upstream token.

use std::process::Command;

use crate::cli::serve_with;
use crate::fake_upstream::FakeUpstream;
use crate::helpers::{no_redirects, TestApp, EXAMPLE, TASK};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_appears_in_logs_pages_answers_or_errors() {
    let sms = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let upstream_token = "UPSTREAM-TOKEN-0f9e8d7c6b5a49382716";
    let mut served = serve_with(
        &db,
        &[
            "--forward",
            "--upstream-endpoint",
            &sms.url,
            "--rate-limit",
            "1000",
        ],
        &[
            ("RUST_LOG", "trace"),
            ("SMS_AUDIT_UPSTREAM_TOKEN", upstream_token),
        ],
    );
    let admin = served.token.clone().expect("admin token");
    let cli = |args: &[&str]| {
        let out = crate::helpers::command()
            .arg("--db")
            .arg(&db)
            .args(args)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let (agent, agent_log) = cli(&[
        "credentials",
        "add",
        "--name",
        "agent",
        "--role",
        "agent",
        "--aksk",
        "--json",
    ]);
    let agent = json(&agent);
    let (auditor, auditor_log) = cli(&[
        "credentials",
        "add",
        "--name",
        "auditor",
        "--role",
        "auditor",
        "--json",
    ]);
    let auditor = json(&auditor);
    let agent_token = agent["token"].as_str().unwrap().to_string();
    let (ak, sk) = (
        agent["access_key"].as_str().unwrap().to_string(),
        agent["secret_key"].as_str().unwrap().to_string(),
    );
    let auditor_token = auditor["token"].as_str().unwrap().to_string();

    let mut seen = vec![agent_log, auditor_log];
    let client = no_redirects();
    let base = served.address.clone();
    let upload = |token: &str| {
        client
            .post(format!("{base}{}", TestApp::upload_path(TASK)))
            .header("X-Auth-Token", token)
            .header("Content-Type", "application/json")
            .body(EXAMPLE)
    };
    let mut signatures = Vec::new();
    // Uploads: good and bad tokens, signed with the right and a wrong key.
    for request in [
        upload(&agent_token),
        upload(&admin),
        upload("not-a-token-at-all"),
    ] {
        seen.push(request.send().await.unwrap().text().await.unwrap());
    }
    for secret in [sk.as_str(), "a-wrong-secret-key"] {
        let date = sms_audit::domain::signing::format_sdk_date(chrono::Utc::now());
        let host = base.trim_start_matches("http://").to_string();
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("host".to_string(), host),
            ("x-sdk-date".to_string(), date.clone()),
        ];
        let path = TestApp::upload_path(TASK);
        let authorization = sms_audit::domain::signing::Signer::new(&ak, secret).authorization(
            &sms_audit::domain::signing::CanonicalRequest {
                method: "POST",
                path: &path,
                query: &[],
                headers: &headers,
                payload_hash: &sms_audit::domain::signing::sha256_hex(EXAMPLE.as_bytes()),
            },
            &date,
        );
        signatures.push(
            authorization
                .rsplit("Signature=")
                .next()
                .unwrap()
                .to_string(),
        );
        let reply = client
            .post(format!("{base}{path}"))
            .header("Authorization", authorization)
            .header("X-Sdk-Date", date)
            .header("Content-Type", "application/json")
            .body(EXAMPLE)
            .send()
            .await
            .unwrap();
        seen.push(reply.text().await.unwrap());
    }
    // Pages, logged in.
    let app_like = LoggedIn::login(&base, &auditor_token).await;
    for page in [
        "/",
        &format!("/tasks/{TASK}"),
        "/uploads/1",
        "/compare?a=1&b=2",
        "/audit",
        "/deliveries",
        "/login",
    ] {
        seen.push(app_like.get(page).await);
    }
    // The API, with a token and with none.
    for path in [
        "/api/v1/tasks".to_string(),
        format!("/api/v1/tasks/{TASK}/uploads"),
        "/api/v1/uploads/1".into(),
        "/api/v1/ledger".into(),
        "/api/v1/rejections".into(),
        "/api/v1/rejections/counts".into(),
        "/api/v1/export?format=csv".into(),
        "/api/v1/export?format=jsonl".into(),
        "/api/v1/compare?a=1&b=2".into(),
        "/readyz".into(),
    ] {
        for token in [admin.as_str(), "wrong-token"] {
            let reply = client
                .get(format!("{base}{path}"))
                .header("X-Auth-Token", token)
                .send()
                .await
                .unwrap();
            seen.push(reply.text().await.unwrap());
        }
    }
    let replay = client
        .post(format!("{base}/api/v1/replays"))
        .header("X-Auth-Token", &admin)
        .json(&serde_json::json!({"tasks": [TASK], "dry_run": true}))
        .send()
        .await
        .unwrap();
    seen.push(replay.text().await.unwrap());
    // Let the forwarded uploads go out, then stop.
    sms.wait_for("a forwarded upload", |got| !got.is_empty())
        .await;
    Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    let _ = served.child.wait();
    seen.extend(served.startup_log.iter().cloned());
    seen.extend(served.stderr.iter());
    // Every command, at trace level.
    for args in [
        &["credentials", "list"][..],
        &["credentials", "list", "--json"],
        &["tasks", "list", "--json"],
        &["verify"],
        &["export", "--format", "jsonl"],
        &["export", "--format", "csv"],
        &["replay", "--task", TASK, "--dry-run"],
        &["credentials", "add", "--name", "agent", "--role", "agent"],
        &["credentials", "revoke", "nobody"],
    ] {
        let (out, err) = cli(args);
        seen.push(out);
        seen.push(err);
    }

    let all = seen.join("\n");
    assert!(all.contains("listening on"), "the log was captured");
    assert!(all.len() > 10_000, "trace logging ran");
    // Not secret, and shown by `credentials list`: proof that outputs were read.
    assert!(all.contains(&ak), "the access key is listed");
    for (what, secret) in [
        ("the admin token", admin.as_str()),
        ("an agent token", agent_token.as_str()),
        ("an auditor token", auditor_token.as_str()),
        ("a secret key", sk.as_str()),
        ("the upstream token", upstream_token),
        ("a session cookie", app_like.session.as_str()),
        ("a signature", signatures[0].as_str()),
        ("a wrong signature", signatures[1].as_str()),
    ] {
        assert!(!all.contains(secret), "{what} appeared");
    }
}

/// A browser session against a server in another process.
struct LoggedIn {
    client: reqwest::Client,
    base: String,
    session: String,
}

impl LoggedIn {
    async fn login(base: &str, token: &str) -> Self {
        let client = no_redirects();
        let form = client.get(format!("{base}/login")).send().await.unwrap();
        let login_cookie = form
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .find(|c| c.starts_with("sms_audit_login_csrf="))
            .unwrap();
        let html = form.text().await.unwrap();
        let csrf = crate::helpers::form_value(&html, "csrf_token").unwrap();
        let reply = client
            .post(format!("{base}/login"))
            .header("Cookie", login_cookie)
            .form(&[
                ("token", token),
                ("csrf_token", csrf.as_str()),
                ("next", "/"),
            ])
            .send()
            .await
            .unwrap();
        let session = reply
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .find(|c| c.starts_with("sms_audit_session="))
            .unwrap();
        Self {
            client,
            base: base.to_string(),
            session: session.trim_start_matches("sms_audit_session=").to_string(),
        }
    }

    async fn get(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.base))
            .header("Cookie", format!("sms_audit_session={}", self.session))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}
