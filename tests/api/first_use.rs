//! What a newcomer meets in the first hour: nothing created by accident, nothing
//! shown differently from what was stored, every error in the user's terms.

use crate::helpers::{output_text as text, run, TestApp, TASK};

#[test]
fn a_start_that_cannot_listen_creates_nothing_and_the_next_one_hands_over_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let out = run(&db, &["serve", "--listen", &port]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!db.exists(), "the failed start created the database");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the failed start left {left:?}");
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
        &["backup", "--to", "/nonexistent/b.db"],
    ] {
        let out = run(&db, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        // Every one with the same hint (status and backup lacked it).
        assert!(
            text(&out).contains("no such database (check --db or SMS_AUDIT_DB"),
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

/// A database that cannot be reached is not "no such database": the path and
/// the system's reason (a folder this user cannot enter, a file where a folder
/// should be).
#[test]
fn a_database_that_cannot_be_reached_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let db = file.join("audit.db");
    for args in [&["verify"][..], &["status"], &["credentials", "list"]] {
        let out = run(&db, args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(!said.contains("no such database"), "{args:?}: {said}");
        assert!(
            said.contains(&format!("{}: cannot be reached", db.display())),
            "{args:?}: {said}"
        );
    }
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
