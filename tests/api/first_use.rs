//! What a newcomer meets in the first hour: nothing created by accident, nothing
//! shown differently from what was stored, every error in the user's terms.

use std::process::{Command, Output};

use crate::helpers::{TestApp, TASK};

fn run(db: &std::path::Path, args: &[&str]) -> Output {
    crate::helpers::command()
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("SMS_AUDIT_UPSTREAM_ENDPOINT")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_start_that_cannot_listen_creates_nothing_and_the_next_one_hands_over_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let out = run(&db, &["serve", "--listen", &port]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!db.exists(), "the failed start created the database");
    drop(busy);
    let served = crate::cli::serve_with(&db, &[], &[]);
    assert!(served.token.is_some(), "the admin token is handed over");

    // A port alone gets a hint.
    let out = run(
        &dir.path().join("other.db"),
        &["serve", "--listen", "18085"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("127.0.0.1:18085"), "{}", text(&out));
}

#[test]
fn commands_that_read_refuse_a_database_that_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo.db");
    for args in [
        &["verify"][..],
        &["export", "--format", "csv"],
        &["credentials", "list"],
        &["credentials", "revoke", "x"],
        &["tasks", "list"],
        &["replay", "--dry-run"],
        &["purge", "--before", "2030-01-01", "--dry-run"],
        &["status"],
    ] {
        let out = run(&db, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("no such database"),
            "{args:?}: {}",
            text(&out)
        );
        assert!(!db.exists(), "{args:?} created the database");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "{args:?} left a file behind"
        );
    }
}

#[tokio::test]
async fn the_upload_page_shows_the_stored_bytes_exactly_and_hidden_characters_visibly() {
    let app = TestApp::spawn().await;
    let exact =
        r#"{"big":123456789012345678901234567890,"f":1.10,"g":0.1e1,"consistency_result":[]}"#;
    assert_eq!(app.upload(TASK, &app.admin_token, exact).await.status, 200);
    let hidden = r#"{"consistency_result":[
        {"dir_check":"/a\u0000b","num_total_files":1,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0},
        {"dir_check":"/a\nb","num_total_files":1,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0},
        {"dir_check":"/a\u202egnp.exe","num_total_files":1,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0}]}"#;
    assert_eq!(app.upload(TASK, &app.admin_token, hidden).await.status, 200);
    let browser = app.login(&app.admin_token).await.ok().unwrap();

    let page = browser.get("/uploads/1").await;
    for token in ["123456789012345678901234567890", "1.10", "0.1e1"] {
        assert!(page.text.contains(token), "{token} changed on the page");
    }
    let page = browser.get("/uploads/2").await;
    for escaped in [r"/a\u0000b", r"/a\u000ab", r"/a\u202egnp.exe"] {
        assert!(
            page.text.contains(escaped),
            "{escaped} not shown: {}",
            page.text
        );
    }
    assert!(!page.text.contains('\u{0}') && !page.text.contains('\u{202e}'));
    let task = browser.get(&format!("/tasks/{TASK}")).await;
    assert!(
        !task.text.contains('\u{202e}'),
        "the task page shows a raw override"
    );

    let csv = app.get("/api/v1/export?format=csv", &app.admin_token).await;
    assert!(csv.text.contains(r"/a\u0000b") && csv.text.contains(r"/a\u202egnp.exe"));
    assert!(!csv.text.contains('\u{0}') && !csv.text.contains('\u{202e}'));
}

#[test]
fn names_refuse_hidden_characters_and_auditors_refuse_a_task_scope() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    for name in ["bad\u{202e}name", "bad\tname", "bad\u{1}name"] {
        let out = run(
            &db,
            &["credentials", "add", "--name", name, "--role", "agent"],
        );
        assert_eq!(out.status.code(), Some(2), "{name:?}: {}", text(&out));
    }
    let out = run(
        &db,
        &[
            "credentials",
            "add",
            "--name",
            "aud",
            "--role",
            "auditor",
            "--tasks",
            "a",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("does not upload"), "{}", text(&out));
    let out = run(
        &db,
        &[
            "credentials",
            "add",
            "--name",
            "ag",
            "--role",
            "agent",
            "--tasks",
            "bad id!,ok",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("bad id!"), "{}", text(&out));
    for name in [
        "web\u{202e}01".to_string(),
        "x".repeat(201),
        "line\nbreak".into(),
    ] {
        let out = run(&db, &["tasks", "add", TASK, "--name", &name]);
        assert_eq!(out.status.code(), Some(2), "{name:?}: {}", text(&out));
    }
    let out = run(&db, &["tasks", "add", TASK]);
    assert!(text(&out).contains("registered"), "{}", text(&out));
    let out = run(&db, &["tasks", "add", TASK]);
    assert!(text(&out).contains("nothing changed"), "{}", text(&out));
}

#[test]
fn a_revoked_name_is_named_as_revoked_and_help_tells_how_long_revocation_takes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    assert!(run(
        &db,
        &["credentials", "add", "--name", "gone", "--role", "agent"]
    )
    .status
    .success());
    assert!(run(&db, &["credentials", "revoke", "gone"])
        .status
        .success());
    let out = run(
        &db,
        &["credentials", "add", "--name", "gone", "--role", "agent"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("revoked"), "{}", text(&out));
    let help = run(&db, &["credentials", "revoke", "--help"]);
    assert!(
        text(&help).contains("--credential-cache (1s"),
        "{}",
        text(&help)
    );
    assert!(!text(&help).contains("at once"), "{}", text(&help));
    let help = run(&db, &["verify", "--help"]);
    assert!(
        text(&help).contains("2 when it cannot be checked"),
        "{}",
        text(&help)
    );
}

#[tokio::test]
async fn a_dry_run_needs_no_upstream() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, crate::helpers::EXAMPLE)
            .await
            .status,
        200
    );
    let out = run(
        &app.db_path,
        &[
            "replay",
            "--dry-run",
            "--task",
            TASK,
            "--task",
            "never-uploaded",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("1 upload of 1 task"), "{}", text(&out));
    assert!(
        text(&out).contains("warning: task never-uploaded has no uploads"),
        "{}",
        text(&out)
    );
    let reply = app
        .send(
            app.client
                .post(format!("{}/api/v1/replays", app.address))
                .header("X-Auth-Token", &app.admin_token)
                .json(&serde_json::json!({"dry_run": true, "to": "https://sms.ap-southeast-3.myhuaweicloud.com"})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["count"], 1);
}

#[tokio::test]
async fn every_405_says_which_methods_the_path_takes() {
    let app = TestApp::spawn().await;
    let upload = app.get(&TestApp::upload_path(TASK), &app.admin_token).await;
    upload.assert_error(405, "SMS.2003");
    assert_eq!(upload.headers["allow"], "POST");
    let tasks = app
        .send(app.client.post(format!("{}/api/v1/tasks", app.address)))
        .await;
    assert_eq!(tasks.headers["allow"], "GET");
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let logout = browser.get("/logout").await;
    assert_eq!(logout.status, 405);
    assert_eq!(logout.headers["allow"], "POST");
    assert!(logout.text.contains("<html"), "{}", logout.text);
    // A form posted without a form says so in words.
    let verify = browser
        .client
        .post(format!("{}/audit/verify", browser.address))
        .header("Cookie", &browser.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status(), 400);
    assert!(verify.text().await.unwrap().contains("expected a form"));
}

#[tokio::test]
async fn upload_errors_explain_seconds_and_byte_order_marks() {
    let app = TestApp::spawn().await;
    let ms = app
        .upload(
            TASK,
            &app.admin_token,
            r#"{"finished_time": 1764400000000}"#,
        )
        .await
        .assert_error(400, "SMS.9001");
    assert!(
        ms["error_msg"].as_str().unwrap().contains("seconds"),
        "{ms}"
    );
    let bom = app
        .upload(
            TASK,
            &app.admin_token,
            "\u{feff}{\"consistency_result\":[]}",
        )
        .await
        .assert_error(400, "SMS.9001");
    assert!(
        bom["error_msg"]
            .as_str()
            .unwrap()
            .contains("byte order mark"),
        "{bom}"
    );
    app.assert_nothing_stored();
}

#[tokio::test]
async fn a_terminated_replay_finishes_its_sends_and_prints_its_summary() {
    use crate::fake_upstream::{Answer, FakeUpstream, AK, PROJECT, SK};
    let sms = FakeUpstream::start().await;
    sms.script([Answer::Hang(std::time::Duration::from_secs(3))]);
    let app = TestApp::spawn().await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, crate::helpers::EXAMPLE)
            .await
            .status,
        200
    );
    let child = crate::helpers::command()
        .arg("--db")
        .arg(&app.db_path)
        .args(["replay", "--yes", "--upstream-endpoint", &sms.url])
        .env("HUAWEICLOUD_SDK_AK", AK)
        .env("HUAWEICLOUD_SDK_SK", SK)
        .env("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Terminated while its send is on the way (SMS holds it for 3 s).
    sms.wait_for("the replay's send", |got| !got.is_empty())
        .await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out));
    assert!(text(&out).contains("1 delivered"), "{}", text(&out));
    assert!(text(&out).contains("--resume") || text(&out).contains("1 delivered, 0 failed"));
}

#[tokio::test]
async fn verify_checks_a_read_only_copy_without_recording() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        assert_eq!(
            app.upload(TASK, &app.admin_token, crate::helpers::EXAMPLE)
                .await
                .status,
            200
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir(&media).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&media)
        .status();
    if !matches!(mounted, Ok(s) if s.success()) {
        eprintln!("SKIPPED: mounting read-only media needs root (CI runs as root)");
        return;
    }
    let copy = media.join("evidence.db");
    app.write_conn()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let ro = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&media)
        .status()
        .unwrap();
    assert!(ro.success());
    let out = run(&copy, &["verify"]);
    let _ = Command::new("umount").arg("-l").arg(&media).status();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("ledger intact: 3 entries"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("not recorded"), "{}", text(&out));
}

#[tokio::test]
async fn the_task_page_lists_every_directory_and_exports_its_time_range() {
    let app = TestApp::spawn().await;
    let with_etc = crate::helpers::body_with_problems("/etc", 1);
    let without = crate::helpers::body_with_problems("/data", 0);
    assert_eq!(
        app.upload(TASK, &app.admin_token, &with_etc).await.status,
        200
    );
    assert_eq!(
        app.upload(TASK, &app.admin_token, &without).await.status,
        200
    );
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let page = browser
        .get(&format!("/tasks/{TASK}?since=2020-01-01"))
        .await;
    assert!(
        page.text.contains(r#"<option value="/etc""#),
        "{}",
        page.text
    );
    assert!(
        page.text.contains(r#"<option value="/data""#),
        "{}",
        page.text
    );
    let export_link = page
        .text
        .split("href=\"")
        .find(|h| h.starts_with("/api/v1/export?format=csv"))
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&");
    assert!(
        export_link.contains("since=2020%2D01%2D01"),
        "{export_link}"
    );
    let csv = app.get(&export_link, &app.admin_token).await;
    assert_eq!(csv.status, 200, "{}", csv.text);
}

#[tokio::test]
async fn one_rule_for_query_parameters() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, crate::helpers::EXAMPLE)
            .await
            .status,
        200
    );
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    // A parameter a page knows and cannot read: 400 naming it.
    for (path, name) in [
        ("/?page=abc".to_string(), "page"),
        ("/deliveries?state=bogus".to_string(), "state"),
        (format!("/tasks/{TASK}?regressed=yes"), "regressed"),
        (format!("/tasks/{TASK}?before_id=x"), "before_id"),
        ("/deliveries?since=garbage".to_string(), "since"),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, 400, "{path}");
        assert!(page.text.contains(name), "{path}: {}", page.text);
    }
    app.get("/api/v1/rejections?limit=abc", &app.admin_token)
        .await
        .assert_error(400, "SMS.9001");
    refused_naming(
        &app,
        &format!("/api/v1/tasks/{TASK}/uploads?before_id=x"),
        "before_id",
    )
    .await;
    // A reversed range is an error, not an empty answer.
    refused_naming(
        &app,
        "/api/v1/export?format=csv&since=2026-11-29&until=2026-11-28",
        "after",
    )
    .await;
    let page = browser
        .get(&format!("/tasks/{TASK}?since=2026-11-29&until=2026-11-28"))
        .await;
    assert_eq!(page.status, 400);
    let out = run(
        &app.db_path,
        &[
            "export",
            "--format",
            "csv",
            "--since",
            "2026-11-29",
            "--until",
            "2026-11-28",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A + that became a space gets a hint.
    refused_naming(
        &app,
        &format!("/api/v1/tasks/{TASK}/uploads?since=2026-11-28T10:00:00+08:00"),
        "%2B",
    )
    .await;
}

/// The API answers 400 `SMS.9001` with a message that mentions `word`.
async fn refused_naming(app: &TestApp, path: &str, word: &str) {
    let body = app
        .get(path, &app.admin_token)
        .await
        .assert_error(400, "SMS.9001");
    let message = body["error_msg"].as_str().unwrap();
    assert!(message.contains(word), "{path}: {message}");
}

#[tokio::test]
async fn finished_time_is_shown_as_a_time() {
    let app = TestApp::spawn().await;
    let body = r#"{"finished_time": 1764400000, "consistency_result": []}"#;
    assert_eq!(app.upload(TASK, &app.admin_token, body).await.status, 200);
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let page = browser.get("/uploads/1").await;
    assert!(
        page.text.contains("2025-11-29T07:06:40.000Z"),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn a_path_that_names_nothing_says_so_in_words() {
    let app = TestApp::spawn().await;
    let reply = app
        .get("/api/v1/uploads/abc", &app.admin_token)
        .await
        .assert_error(404, "APIGW.0101");
    let msg = reply["error_msg"].as_str().unwrap();
    assert!(msg.contains("nothing by that name or number"), "{msg}");
    assert!(!msg.contains("deserialize"), "{msg}");
}

#[test]
fn backup_refuses_a_database_that_is_not_there_and_writes_no_copy() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let out = run(
        &dir.path().join("typo.db"),
        &["backup", "--to", copy.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no such database"), "{}", text(&out));
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}
