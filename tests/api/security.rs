//! Holes found by trying to break the service, each closed: open redirects, fail-open
//! scopes, rate limits an attacker can use up, hostile query strings, slow clients,
//! planted links, guessed credentials and framework errors that skipped the error
//! shapes. (Formulas in CSV, two writers on one database and the web replay's
//! chunks are tested beside their features.)

use sms_audit::domain::Role;

use crate::helpers::{eventually, no_redirects, TestApp, EXAMPLE, PATIENCE, TASK};

#[tokio::test]
async fn login_next_is_always_a_path_on_this_site() {
    let app = TestApp::spawn().await;
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    for (next, expected) in [
        ("/%09/evil.example", "/"),
        ("/%0A/evil.example", "/"),
        ("%0A", "/"),
        ("%0D", "/"),
        ("//evil.example", "/"),
        ("/%5C/evil.example", "/"),
        ("%5C%5Cevil.example", "/"),
        ("https://evil.example", "/"),
        ("", "/"),
        ("%2F%2Fx", "/"),
        ("/%252F%252Fx", "/%2F%2Fx"),
        ("/%255Cx", "/%5Cx"),
        ("/tasks/t%3Fpage%3D2", "/tasks/t?page=2"),
    ] {
        let reply = browser.get(&format!("/login?next={next}")).await;
        assert_eq!(reply.status, 303, "{next}: {}", reply.text);
        let location = reply.headers["location"].to_str().unwrap();
        assert_eq!(location, expected, "next={next}");
    }
    // Logged out, the form carries a safe `next` too.
    let client = no_redirects();
    let form = app
        .send(client.get(format!("{}/login?next=%2F%09%2Fevil.example", app.address)))
        .await;
    assert_eq!(form.status, 200);
    assert!(
        form.text.contains(r#"name="next" value="/""#),
        "{}",
        form.text
    );
}

#[tokio::test]
async fn a_task_scope_that_cannot_be_read_allows_no_task() {
    let app = TestApp::spawn_with(|c| {
        c.http.credential_cache_ttl = std::time::Duration::from_millis(200)
    })
    .await;
    let agent = app.add_credential("scoped", Role::Agent, Some(&[TASK]), false);
    assert_eq!(app.upload(TASK, &agent.token, EXAMPLE).await.status, 200);
    app.write_conn()
        .execute(
            "UPDATE credentials SET task_scope = '[not json' WHERE name = 'scoped'",
            [],
        )
        .unwrap();
    // Past the credential cache: a body refused once authorised (400) shows when.
    eventually("the cached scope to expire", PATIENCE, || async {
        let probe = app.upload(TASK, &agent.token, "[]").await;
        (probe.status == 403).then_some(())
    })
    .await;
    app.upload(TASK, &agent.token, EXAMPLE)
        .await
        .assert_error(403, "SMS.9004");
    app.upload("another-task", &agent.token, EXAMPLE)
        .await
        .assert_error(403, "SMS.9004");
    assert_eq!(app.count("uploads"), 1);
}

#[tokio::test]
async fn oversize_bodies_with_a_bad_signature_do_not_use_up_the_key_rate_limit() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit = std::num::NonZeroU32::new(5);
        c.http.max_body_bytes = 2048;
    })
    .await;
    let agent = app.add_credential("signer", Role::Agent, None, true);
    let (ak, sk) = (
        agent.access_key.clone().unwrap(),
        agent.secret_key.clone().unwrap(),
    );
    let oversize = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4096));
    for _ in 0..30 {
        app.upload_signed(TASK, &ak, "a wrong secret", &oversize, |_| {})
            .await
            .assert_error(413, "SMS.2004");
    }
    let ok = app.upload_signed(TASK, &ak, &sk, EXAMPLE, |_| {}).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}

#[tokio::test]
async fn framework_errors_answer_in_the_shape_of_their_side_and_are_logged() {
    let app = TestApp::spawn().await;
    let before = app.count("rejections");
    // JSON side.
    let bad_json = app
        .send(
            app.client
                .post(format!("{}/api/v1/replays", app.address))
                .header("X-Auth-Token", &app.admin_token)
                .header("Content-Type", "application/json")
                .body("{not json"),
        )
        .await;
    bad_json.assert_error(400, "SMS.9001");
    app.get("/api/v1/uploads/abc", &app.admin_token)
        .await
        .assert_error(404, "APIGW.0101");
    app.get("/api/v1/tasks/x/uploads?limit=abc", &app.admin_token)
        .await
        .assert_error(400, "SMS.9001");

    // Pages.
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    for (path, status) in [("/?page=-1", 400), ("/tasks/", 404), ("/uploads/1/", 404)] {
        let page = browser.get(path).await;
        assert_eq!(page.status, status, "{path}: {}", page.text);
        assert!(
            page.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert!(page.text.contains("<html"), "{path}: {}", page.text);
    }
    let no_form = browser
        .client
        .post(format!("{}/audit/verify", browser.address))
        .header("Cookie", &browser.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(no_form.status(), 400);
    assert!(no_form.text().await.unwrap().contains("<html"));
    let get_logout = browser.get("/logout").await;
    assert_eq!(get_logout.status, 405);
    assert!(get_logout.text.contains("<html"), "{}", get_logout.text);

    // Every one of them is in the rejection log (stored within 0.2 s, or with the
    // writer's next commit).
    eventually("8 rejections logged", PATIENCE, || {
        std::future::ready((app.count("rejections") - before >= 8).then_some(()))
    })
    .await;
}

#[tokio::test]
async fn output_commands_end_quietly_when_their_reader_goes_away() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    for args in [
        &["credentials", "list", "--json"][..],
        &["credentials", "list"],
        &["tasks", "list"],
        &["verify"],
        &["export", "--format", "csv"],
        &["export", "--format", "jsonl"],
    ] {
        // A pipe whose reading end is already closed: the first write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = crate::helpers::command()
            .arg("--db")
            .arg(&app.db_path)
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
            .wait_with_output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn the_upstream_secret_goes_only_to_the_targets_the_service_was_given() {
    use crate::fake_upstream::FakeUpstream;
    use crate::forwarding::forwarding_app;
    use sms_audit::services::upstream::ReplayTargets;

    let sms = FakeUpstream::start().await;
    let listed = FakeUpstream::start().await;
    let attacker = FakeUpstream::start().await;
    let app = forwarding_app(&sms, |s| {
        s.forward = false;
        s.auth = sms_audit::services::upstream::UpstreamAuth::Token("the-upstream-token".into());
        s.replay_targets =
            ReplayTargets::new(Some(&sms.url), std::slice::from_ref(&listed.url)).unwrap();
    })
    .await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    let replay = |to: &str, dry_run: bool| {
        let body = serde_json::json!({"tasks": [TASK], "to": to, "dry_run": dry_run});
        app.send(
            app.client
                .post(format!("{}/api/v1/replays", app.address))
                .header("X-Auth-Token", &app.admin_token)
                .json(&body),
        )
    };
    for to in [
        attacker.url.clone(),
        format!("{}/", attacker.url.replace("127.0.0.1", "localhost")),
        "https://evil.example".into(),
        "ftp://127.0.0.1/".into(),
    ] {
        replay(&to, false).await.assert_error(400, "SMS.9001");
        replay(&to, true).await.assert_error(400, "SMS.9001");
    }
    // The page's form says no the same way.
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let preview = browser
        .get(&format!(
            "/deliveries/replay?task={TASK}&to={}",
            sms_audit::http::urlencode(&attacker.url)
        ))
        .await;
    assert_eq!(preview.status, 400, "{}", preview.text);

    // The command line too: exit 2, nothing sent.
    let out = crate::helpers::command()
        .arg("--db")
        .arg(&app.db_path)
        .args(["replay", "--task", TASK, "--yes", "--to", &attacker.url])
        .env("SMS_AUDIT_UPSTREAM_ENDPOINT", &sms.url)
        .env("SMS_AUDIT_UPSTREAM_TOKEN", "the-upstream-token")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A plain-HTTP target that is not on loopback cannot even be listed.
    let out = crate::helpers::command()
        .arg("--db")
        .arg(&app.db_path)
        .args([
            "replay",
            "--task",
            TASK,
            "--yes",
            "--to",
            "http://sms.example",
        ])
        .args(["--replay-target", "http://sms.example"])
        .env("SMS_AUDIT_UPSTREAM_ENDPOINT", &sms.url)
        .env("SMS_AUDIT_UPSTREAM_TOKEN", "the-upstream-token")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // What the service was given works.
    let ok = replay(&listed.url, false).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    listed.wait_for("the replay", |got| !got.is_empty()).await;
    assert_eq!(listed.received().len(), 1);
    // Refused targets were refused before any delivery was queued for them.
    let queued: i64 = app
        .write_conn()
        .query_row(
            "SELECT count(*) FROM deliveries WHERE target = ?1",
            [attacker.url.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(queued, 0);
    assert!(attacker.received().is_empty(), "the attacker got a request");
}

/// Query values worth trying on any parameter: bounds, overflows, odd numbers,
/// times, printable junk, and raw bytes (often not UTF-8 once decoded).
fn hostile_value() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        prop::sample::select(vec![
            "",
            "-1",
            "0",
            "1",
            "+1",
            "4294967295",
            "4294967296",
            "18446744073709551616",
            "-9223372036854775808",
            "9223372036854775807",
            "1e400",
            "NaN",
            "0x10",
            "2026-11-28",
            "2026-11-28T10:00:00+08:00",
            "2026-11-28T10:00:00 08:00",
            "true",
            "any",
            "csv",
            "jsonl",
            "desc",
            "problems",
        ])
        .prop_map(sms_audit::http::urlencode),
        "[ -~]{0,24}".prop_map(|s| sms_audit::http::urlencode(&s)),
        prop::collection::vec(any::<u8>(), 0..16)
            .prop_map(|b| b.iter().map(|x| format!("%{x:02X}")).collect::<String>()),
    ]
}

#[test]
fn arbitrary_query_strings_on_every_get_route_never_get_a_5xx() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (app, browser) = rt.block_on(async {
        let app = TestApp::spawn().await;
        assert_eq!(
            app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
            200
        );
        let browser = app.login(&app.admin_token).await.ok().unwrap();
        (app, browser)
    });
    let routes: Vec<String> = [
        "/",
        "/tasks/TASK",
        "/uploads/1",
        "/compare",
        "/audit",
        "/deliveries",
        "/deliveries/replay",
        "/login",
        "/api/v1/tasks",
        "/api/v1/tasks/TASK/uploads",
        "/api/v1/uploads/1",
        "/api/v1/ledger",
        "/api/v1/rejections",
        "/api/v1/export",
        "/api/v1/compare",
        "/healthz",
        "/readyz",
        "/assets/app.css",
    ]
    .iter()
    .map(|r| r.replace("TASK", TASK))
    .collect();
    let names = vec![
        "page",
        "limit",
        "before_id",
        "since",
        "until",
        "a",
        "b",
        "status",
        "format",
        "task_id",
        "state",
        "regressed",
        "sort",
        "dir",
        "q",
        "next",
        "error_code",
        "credential",
        "dir_check",
        "x",
    ];
    let query = prop::collection::vec((prop::sample::select(names), hostile_value()), 0..5);
    let config = ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(route in prop::sample::select(routes), query in query)| {
        let query: Vec<String> = query.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let url = format!("{}{route}?{}", app.address, query.join("&"));
        let status = rt.block_on(async {
            browser
                .client
                .get(&url)
                .header("Cookie", &browser.cookie)
                .header("X-Auth-Token", &app.admin_token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        let status = status.map_err(|e| TestCaseError::fail(format!("{url}: no answer: {e}")))?;
        prop_assert!(status < 500, "{url} answered {status}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_refused_requests_does_not_crowd_out_uploads_and_stays_visible() {
    use futures_util::StreamExt;
    const FLOOD: u64 = 20_000;
    let app = TestApp::spawn_with(|c| c.writer.queue_capacity = 2).await;
    let agent = app.add_credential("agent", Role::Agent, None, false);
    let url = format!("{}{}", app.address, TestApp::upload_path(TASK));
    let client = app.client.clone();
    let flood = tokio::spawn(async move {
        futures_util::stream::iter(0..FLOOD)
            .for_each_concurrent(64, |_| {
                let request = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(EXAMPLE);
                async move {
                    let status = request.send().await.unwrap().status().as_u16();
                    assert_eq!(status, 401);
                }
            })
            .await;
    });
    let mut failed = Vec::new();
    for _ in 0..200 {
        let reply = app.upload(TASK, &agent.token, EXAMPLE).await;
        if reply.status != 200 {
            failed.push(reply.status);
        }
    }
    flood.await.unwrap();
    assert!(
        failed.is_empty(),
        "uploads refused during the flood: {failed:?}"
    );
    assert_eq!(app.count("uploads"), 200);

    // Every refusal is counted, although the log keeps only the newest rows.
    eventually("every refusal counted", PATIENCE, || async {
        let counts = app
            .get("/api/v1/rejections/counts", &app.admin_token)
            .await
            .json();
        let counted = counts["counts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["error_code"] == "APIGW.0301")
            .map(|c| c["count"].as_u64().unwrap())
            .sum::<u64>();
        assert!(counted <= FLOOD, "{counted}");
        (counted == FLOOD).then_some(())
    })
    .await;
    assert!(app.count("rejections") <= 10_000);
}

#[tokio::test]
async fn an_endless_upstream_answer_is_read_only_so_far() {
    use crate::fake_upstream::{Answer, FakeUpstream};
    use crate::forwarding::forwarding_app;

    let sms = FakeUpstream::start().await;
    sms.script([Answer::Endless(500)]);
    // The tests' upstream timeout is 1 s: reading the whole claimed gigabyte would
    // end in a timeout instead of the 500 SMS sent.
    let app = forwarding_app(&sms, |_| {}).await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    let attempt = eventually("a delivery attempt", PATIENCE, || async {
        let record = app.get("/api/v1/uploads/1", &app.admin_token).await.json();
        let attempt = record["deliveries"][0]["attempts"][0].clone();
        (!attempt.is_null()).then_some(attempt)
    })
    .await;
    assert_eq!(attempt["http_status"], 500, "{attempt}");
    assert!(attempt["transport_error"].is_null(), "{attempt}");
    assert!(attempt["response_head"].as_str().unwrap().len() <= 4096);
}

#[test]
fn numbers_out_of_range_in_flags_stop_the_command_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flags.db");
    for flags in [
        &["--workers", "0"][..],
        &["--max-results", "0"],
        &["--queue-capacity", "18446744073709551615"],
        &["--max-body-bytes", "0"],
        &["--session-hours", "0"],
        &["--session-hours", "18446744073709551615"],
        &["--max-delivery-age", "99999999999999999d"],
        &["--max-delivery-age", "18446744073709551615"],
        &["--forward-concurrency", "0"],
        &["--upstream-timeout", "0"],
        &["--session-lifetime", "0s"],
        &["--credential-cache", "2h"],
        &["--retention", "0"],
        &["--purge-step", "61s"],
        &["--upstream-timeout", "2h"],
        &["--proxy-max-body-bytes", "0"],
        &["--proxy-log-retention", "99999999999999999d"],
        // --proxy without an upstream to pass calls on to.
        &["--proxy"],
    ] {
        let out = crate::helpers::command()
            .arg("--db")
            .arg(&db)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(flags[0]), "{flags:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flags:?}: {stderr}");
    }
    assert!(!db.exists(), "nothing was created");
}

/// Sends `head` a byte at a time every `pause`, until the server answers or closes;
/// returns what it answered and how long that took.
async fn trickle(
    address: &str,
    head: &[u8],
    pause: std::time::Duration,
) -> (String, std::time::Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    for byte in head.iter().cycle().take(10_000) {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        match tokio::time::timeout(pause, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {} // nothing yet: send the next byte
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn slow_and_oversized_clients_are_cut_off() {
    let app = TestApp::spawn_with(|c| {
        c.http.header_timeout = std::time::Duration::from_secs(1);
        c.http.body_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let pause = std::time::Duration::from_millis(200);

    // Headers a byte at a time, never finished: dropped after the header timeout.
    let (answer, took) = trickle(
        &app.address,
        b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa",
        pause,
    )
    .await;
    assert!(
        took < std::time::Duration::from_secs(10),
        "still connected after {took:?}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // A whole head, then the body a byte at a time: 408 in the SMS shape.
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n",
        TestApp::upload_path(TASK),
        app.admin_token
    );
    let (answer, took) = {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
            .await
            .unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let started = std::time::Instant::now();
        tokio::spawn(async move {
            loop {
                if write.write_all(b" ").await.is_err() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        });
        let mut answer = String::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 4096];
            while let Ok(n) = read.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                answer.push_str(&String::from_utf8_lossy(&buf[..n]));
                if answer.contains("error_code") {
                    break;
                }
            }
        })
        .await;
        (answer, started.elapsed())
    };
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("SMS.9001"), "{answer}");
    app.assert_nothing_stored();

    // Headers larger than the limit: 431 in the SMS shape; just below it is fine.
    let big = app
        .send(
            app.client
                .get(format!("{}/healthz", app.address))
                .header("X-Big", "a".repeat(64 * 1024)),
        )
        .await;
    big.assert_error(431, "SMS.9001");
    let fine = app
        .send(
            app.client
                .get(format!("{}/healthz", app.address))
                .header("X-Big", "a".repeat(15 * 1024)),
        )
        .await;
    assert_eq!(fine.status, 200);
}

/// A file an attacker wants overwritten, and a link to it planted at `at`.
fn plant_link(dir: &std::path::Path, at: &std::path::Path) -> std::path::PathBuf {
    let victim = dir.join(format!(
        "victim-of-{}",
        at.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, at).unwrap();
    victim
}

#[tokio::test]
async fn files_are_never_written_through_a_planted_link_and_keys_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (db, checkpoints) = (dir.path().join("audit.db"), dir.path().join("cp"));
    std::fs::create_dir(&checkpoints).unwrap();
    let token_victim = plant_link(dir.path(), &dir.path().join("audit.db.admin-token"));
    let latest_victim = plant_link(dir.path(), &checkpoints.join("latest"));
    let tmp_victim = plant_link(dir.path(), &checkpoints.join(".latest.tmp"));
    let served = crate::cli::serve_with(
        &db,
        &[
            "--checkpoint-dir",
            checkpoints.to_str().unwrap(),
            "--checkpoint-interval",
            "1s",
        ],
        &[],
    );
    let token = served.token.clone().expect("the token file was written");
    let client = reqwest::Client::new();
    let upload = crate::cli::upload(&client, &served.address, &token);
    assert_eq!(upload.send().await.unwrap().status(), 200);
    eventually("a checkpoint of the upload in the folder", PATIENCE, || {
        let written =
            std::fs::read_to_string(checkpoints.join("latest")).is_ok_and(|t| t.contains("\n1\n"));
        std::future::ready(written.then_some(()))
    })
    .await;
    drop(served);
    for victim in [&token_victim, &latest_victim, &tmp_victim] {
        assert_eq!(
            std::fs::read_to_string(victim).unwrap(),
            "precious",
            "{victim:?}"
        );
    }
    let latest = checkpoints.join("latest");
    assert!(!latest.symlink_metadata().unwrap().file_type().is_symlink());
    assert!(std::fs::read_to_string(&latest).unwrap().contains("\n1\n"));

    // A lock file that is a link: refused, not truncated.
    let other = dir.path().join("other.db");
    let lock_victim = plant_link(dir.path(), &dir.path().join("other.db.lock"));
    // (Under `timeout`: were the link followed, serve would start and run on.)
    let refused = std::process::Command::new("timeout")
        .args([
            "20",
            TestApp::binary(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
        ])
        .arg(&other)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(err.contains("other.db.lock"), "{err}");
    assert_eq!(std::fs::read_to_string(&lock_victim).unwrap(), "precious");

    // Outputs replace a link at their name, owner-only.
    for (args, name) in [
        (vec!["export", "--format", "jsonl", "--out"], "export.jsonl"),
        (
            vec!["evidence", "export", "--task", TASK, "--out"],
            "bundle.json",
        ),
    ] {
        let out = dir.path().join(name);
        let victim = plant_link(dir.path(), &out);
        let mut args = args.clone();
        args.push(out.to_str().unwrap());
        let (code, stdout, stderr) = crate::helpers::sms_audit(&db, &args);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let meta = out.symlink_metadata().unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
    }
    // A range with no upload is an error, not an empty bundle that passes for
    // evidence.
    let empty = dir.path().join("empty.json");
    let args = [
        "evidence",
        "export",
        "--task",
        TASK,
        "--since",
        "2999-01-01",
        "--out",
    ];
    let mut args = args.to_vec();
    args.push(empty.to_str().unwrap());
    let (code, stdout, stderr) = crate::helpers::sms_audit(&db, &args);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("nothing to export, no file written"),
        "{stderr}"
    );
    assert!(!empty.exists());

    // `tls self-signed` never overwrites a key (or its certificate).
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    std::fs::write(tls.join("key.pem"), "old key").unwrap();
    let (code, _, err) = crate::helpers::sms_audit(
        &db,
        &[
            "tls",
            "self-signed",
            "--host",
            "localhost",
            "--out",
            tls.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(tls.join("key.pem")).unwrap(),
        "old key"
    );
    assert!(!tls.join("cert.pem").exists());
}

#[tokio::test]
async fn guessing_credentials_is_slowed_per_address_and_keys_are_not_told_apart() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, true);
    let (ak, sk) = (agent.access_key.unwrap(), agent.secret_key.unwrap());
    // An unknown access key and a known one with a wrong signature: one message.
    let unknown = app
        .upload_signed(TASK, "NOSUCHACCESSKEY00000", &sk, EXAMPLE, |_| {})
        .await;
    let wrong = app
        .upload_signed(TASK, &ak, &sk, EXAMPLE, |p| {
            p.secret_key = "not-the-key".into()
        })
        .await;
    assert_eq!(
        unknown.assert_error(401, "APIGW.0301")["error_msg"],
        wrong.assert_error(401, "APIGW.0301")["error_msg"]
    );
    // 30 failures in a row are answered 401; then the address waits.
    let mut statuses = Vec::new();
    for i in 0..40 {
        statuses.push(
            app.upload(TASK, &format!("guess-{i}"), EXAMPLE)
                .await
                .status,
        );
    }
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(refused >= 8, "{statuses:?}");
    assert!(statuses[..25].iter().all(|s| *s == 401), "{statuses:?}");
    let slowed = app.upload(TASK, &app.admin_token, EXAMPLE).await;
    let body = slowed.assert_error(429, "APIGW.0308");
    assert!(body["error_msg"]
        .as_str()
        .unwrap()
        .contains("failed authentications"));
    assert!(slowed.headers.contains_key("retry-after"));
    let login = no_redirects()
        .post(format!("{}/login", app.address))
        .form(&[("token", "guess"), ("csrf_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 429);
    // What needs no credentials is not slowed.
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await;
    assert_eq!(health.unwrap().status(), 200);
    assert_eq!(app.count("uploads"), 0);
    // Failures are forgiven at one a second: the right token gets through soon.
    eventually("the right token to get through", PATIENCE, || async {
        let status = app.upload(TASK, &app.admin_token, EXAMPLE).await.status;
        assert!(status == 200 || status == 429, "{status}");
        (status == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn expired_sessions_are_deleted_without_waiting_for_a_login() {
    let app = TestApp::spawn().await;
    let stopped = app.stop().await;
    rusqlite::Connection::open(&stopped.db_path)
        .unwrap()
        .execute(
            "INSERT INTO sessions (id_sha256, credential_name, csrf_token, created_at, expires_at)
             VALUES ('old', 'admin', 'x', 0, 1)",
            [],
        )
        .unwrap();
    let app = stopped.start().await;
    eventually("the expired session swept", PATIENCE, || {
        std::future::ready((app.count("sessions") == 0).then_some(()))
    })
    .await;
}
