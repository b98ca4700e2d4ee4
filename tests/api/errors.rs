//! Every row of the manual's error table (docs/agents.md, from `http::refusals`), and that nothing
//! is stored for any of them.

use std::time::Duration;

use sms_audit::domain::Role;
use sms_audit::TaskPolicy;

use crate::helpers::{body_with_items, eventually, TestApp, EXAMPLE, PATIENCE, TASK};

#[tokio::test]
async fn unauthenticated_requests_get_401() {
    let app = TestApp::spawn().await;
    let url = format!("{}{}", app.address, TestApp::upload_path(TASK));

    let none = app
        .send(
            app.client
                .post(&url)
                .header("Content-Type", "application/json")
                .body(EXAMPLE),
        )
        .await;
    none.assert_error(401, "APIGW.0301");
    app.upload(TASK, "not-a-token", EXAMPLE)
        .await
        .assert_error(401, "APIGW.0301");
    app.upload(TASK, &"x".repeat(16385), EXAMPLE)
        .await
        .assert_error(401, "APIGW.0301");
    let bearer = app
        .send(
            app.client
                .post(&url)
                .header("Authorization", "Bearer abc")
                .header("Content-Type", "application/json")
                .body(EXAMPLE),
        )
        .await;
    bearer.assert_error(401, "APIGW.0301");

    let agent = app.add_credential("agent", Role::Agent, None, false);
    sms_audit::storage::credentials::revoke(&app.write_conn(), "agent").unwrap();
    let revoked = app.upload(TASK, &agent.token, EXAMPLE).await;
    let body = revoked.assert_error(401, "APIGW.0301");
    assert!(body["error_msg"].as_str().unwrap().contains("revoked"));
    app.assert_nothing_stored();
}

#[tokio::test]
async fn bad_signatures_get_401() {
    let app =
        TestApp::spawn_with(|c| c.http.credential_cache_ttl = Duration::from_millis(200)).await;
    let agent = app.add_credential("sdk", Role::Agent, None, true);
    let (ak, sk) = (agent.access_key.unwrap(), agent.secret_key.unwrap());

    let wrong_secret = app
        .upload_signed(TASK, &ak, &sk, EXAMPLE, |p| p.secret_key = "wrong".into())
        .await;
    let body = wrong_secret.assert_error(401, "APIGW.0301");
    assert!(body["error_msg"].as_str().unwrap().contains("signature"));

    let unknown_ak = app
        .upload_signed(TASK, "NOSUCHKEY", &sk, EXAMPLE, |_| {})
        .await;
    unknown_ak.assert_error(401, "APIGW.0301");

    let tampered_body = app
        .upload_signed(TASK, &ak, &sk, EXAMPLE, |p| {
            p.sent_body = body_with_items(1)
        })
        .await;
    tampered_body.assert_error(401, "APIGW.0301");

    let skewed = app
        .upload_signed(TASK, &ak, &sk, EXAMPLE, |p| {
            p.date -= chrono::TimeDelta::minutes(16)
        })
        .await;
    let body = skewed.assert_error(401, "APIGW.0301");
    assert!(body["error_msg"].as_str().unwrap().contains("15 minutes"));

    let within_window = app
        .upload_signed(TASK, &ak, &sk, EXAMPLE, |p| {
            p.date -= chrono::TimeDelta::minutes(14)
        })
        .await;
    assert_eq!(within_window.status, 200, "{}", within_window.text);
    let mut stored = app.count("uploads");
    assert_eq!(stored, 1);

    for unsigned in ["host", "x-sdk-date"] {
        let reply = app
            .upload_signed(TASK, &ak, &sk, EXAMPLE, |p| {
                p.signed.retain(|h| h != unsigned)
            })
            .await;
        let body = reply.assert_error(401, "APIGW.0301");
        assert!(body["error_msg"]
            .as_str()
            .unwrap()
            .contains("host and x-sdk-date"));
    }
    // A signed header the request does not carry.
    let missing = app
        .upload_signed(TASK, &ak, &sk, EXAMPLE, |p| {
            p.unsent.push("x-project-id".into())
        })
        .await;
    missing.assert_error(401, "APIGW.0301");

    // A credential in use is trusted until its cache entry expires (here 200 ms):
    // a body that is refused once authenticated shows when that has happened.
    sms_audit::storage::credentials::revoke(&app.write_conn(), "sdk").unwrap();
    eventually("the revocation to take effect", PATIENCE, || async {
        let probe = app.upload_signed(TASK, &ak, &sk, "[]", |_| {}).await;
        (probe.status == 401).then_some(())
    })
    .await;
    let revoked = app.upload_signed(TASK, &ak, &sk, EXAMPLE, |_| {}).await;
    revoked.assert_error(401, "APIGW.0301");
    stored = app.count("uploads");
    assert_eq!(stored, 1, "no rejected upload was stored");
}

#[tokio::test]
async fn forbidden_uploads_get_403_with_the_upstream_body_shape() {
    let app = TestApp::spawn().await;
    let auditor = app.add_credential("auditor", Role::Auditor, None, false);
    let scoped = app.add_credential("scoped", Role::Agent, Some(&["task-a", "task-b"]), false);

    let reply = app.upload(TASK, &auditor.token, EXAMPLE).await;
    let body = reply.assert_error(403, "SMS.9004");
    assert_eq!(body["encoded_authorization_message"], "");
    assert_eq!(body["error_param"], serde_json::json!([]));
    assert_eq!(body["details"][0]["error_code"], "SMS.9004");
    assert!(body["details"][0]["error_msg"].is_string());

    app.upload(TASK, &scoped.token, EXAMPLE)
        .await
        .assert_error(403, "SMS.9004");
    app.assert_nothing_stored();
    assert_eq!(
        app.upload("task-b", &scoped.token, EXAMPLE).await.status,
        200
    );
}

#[tokio::test]
async fn bad_task_ids_get_400() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    for bad in ["x".repeat(37).as_str(), "a.b", "t%C3%A2che", "a%20b", ""] {
        let reply = app.upload(bad, &t, EXAMPLE).await;
        let body = reply.assert_error(400, "SMS.9001");
        assert!(
            body["error_msg"].as_str().unwrap().starts_with("task_id:"),
            "{bad}: {}",
            reply.text
        );
    }
    app.assert_nothing_stored();
}

#[tokio::test]
async fn unknown_task_gets_404_under_the_registered_policy() {
    let app = TestApp::spawn_with(|c| c.task_policy = TaskPolicy::Registered).await;
    let t = app.admin_token.clone();
    app.upload(TASK, &t, EXAMPLE)
        .await
        .assert_error(404, "SMS.7703");
    app.assert_nothing_stored();

    let task = sms_audit::domain::TaskId::parse(TASK).unwrap();
    sms_audit::storage::tasks::register_task(&app.write_conn(), &task, Some("web-01")).unwrap();
    assert_eq!(app.upload(TASK, &t, EXAMPLE).await.status, 200);
    let tasks = app.get("/api/v1/tasks", &t).await.json();
    assert_eq!(tasks["tasks"][0]["name"], "web-01");
    assert_eq!(tasks["tasks"][0]["upload_count"], 1);
}

#[tokio::test]
async fn content_type_must_be_json() {
    let app = TestApp::spawn().await;
    let url = format!("{}{}", app.address, TestApp::upload_path(TASK));
    let missing = app
        .send(
            app.client
                .post(&url)
                .header("X-Auth-Token", &app.admin_token)
                .body(EXAMPLE),
        )
        .await;
    missing.assert_error(400, "SMS.2005");
    let wrong = app
        .send(
            app.client
                .post(&url)
                .header("X-Auth-Token", &app.admin_token)
                .header("Content-Type", "text/plain")
                .body(EXAMPLE),
        )
        .await;
    wrong.assert_error(400, "SMS.2006");
    app.assert_nothing_stored();
    let with_charset = app
        .send(
            app.client
                .post(&url)
                .header("X-Auth-Token", &app.admin_token)
                .header("Content-Type", "Application/JSON;charset=UTF-8")
                .body(EXAMPLE),
        )
        .await;
    assert_eq!(with_charset.status, 200, "{}", with_charset.text);
}

#[tokio::test]
async fn oversized_bodies_get_413_also_when_streamed() {
    let app = TestApp::spawn_with(|c| c.http.max_body_bytes = 300).await;
    let t = app.admin_token.clone();
    let big = body_with_items(5);
    assert!(big.len() > 300);
    app.upload(TASK, &t, &big)
        .await
        .assert_error(413, "SMS.2004");

    // No Content-Length: the limit is enforced while reading.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(64)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let streamed = app
        .send(
            app.client
                .post(format!("{}{}", app.address, TestApp::upload_path(TASK)))
                .header("X-Auth-Token", &t)
                .header("Content-Type", "application/json")
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                ))),
        )
        .await;
    streamed.assert_error(413, "SMS.2004");
    app.assert_nothing_stored();
    assert_eq!(app.upload(TASK, &t, &body_with_items(1)).await.status, 200);
}

#[tokio::test]
async fn bad_bodies_get_400_naming_every_bad_path() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    let cases: &[(&str, &str)] = &[
        ("not json", "body: not valid JSON"),
        ("[1,2]", "body: must be a JSON object"),
        (
            r#"{"consistency_result": [], "consistency_result": null}"#,
            "consistency_result: duplicate key",
        ),
        (
            r#"{"consistency_result": {}}"#,
            "consistency_result: must be an array",
        ),
        (
            r#"{"consistency_result": [{"dir_check": "/", "num_total_files": 1.0, "num_different_files": 0, "num_target_miss_files": 0, "num_target_more_files": 0}]}"#,
            "consistency_result[0].num_total_files: must be an integer from 0 to 1000000",
        ),
        (
            r#"{"finished_time": "1"}"#,
            "finished_time: must be an integer",
        ),
    ];
    for (body, msg) in cases {
        let reply = app.upload(TASK, &t, body).await;
        let json = reply.assert_error(400, "SMS.9001");
        assert!(
            json["error_msg"].as_str().unwrap().starts_with(msg),
            "{body}: {}",
            reply.text
        );
    }
    let reply = app
        .send(
            app.client
                .post(format!("{}{}", app.address, TestApp::upload_path(TASK)))
                .header("X-Auth-Token", &t)
                .header("Content-Type", "application/json")
                .body(b"{\"a\":\"\xff\"}".to_vec()),
        )
        .await;
    assert!(reply.assert_error(400, "SMS.9001")["error_msg"]
        .as_str()
        .unwrap()
        .contains("UTF-8"));

    let many_bad = r#"{"consistency_result": [
        {"dir_check": "/ok", "num_total_files": 1, "num_different_files": 0, "num_target_miss_files": 0, "num_target_more_files": 0},
        {"dir_check": "/bad", "num_total_files": -1, "num_different_files": "5", "num_target_miss_files": true, "num_target_more_files": 1e3},
        {"num_total_files": 1000001}
    ]}"#;
    let json = app
        .upload(TASK, &t, many_bad)
        .await
        .assert_error(400, "SMS.9001");
    assert_eq!(
        json["error_msg"],
        "consistency_result[1].num_total_files: must be an integer from 0 to 1000000"
    );
    assert_eq!(
        json["error_param"],
        serde_json::json!([
            "consistency_result[1].num_total_files",
            "consistency_result[1].num_different_files",
            "consistency_result[1].num_target_miss_files",
            "consistency_result[1].num_target_more_files",
            "consistency_result[2].dir_check",
            "consistency_result[2].num_total_files",
            "consistency_result[2].num_different_files",
            "consistency_result[2].num_target_miss_files",
            "consistency_result[2].num_target_more_files",
        ])
    );
    let too_many = app.upload(TASK, &t, &body_with_items(31)).await;
    too_many.assert_error(400, "SMS.9001");
    app.assert_nothing_stored();
}

#[tokio::test]
async fn max_results_raises_the_item_cap() {
    let app = TestApp::spawn_with(|c| c.http.max_results = 40).await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, &body_with_items(40))
            .await
            .status,
        200
    );
    app.upload(TASK, &app.admin_token, &body_with_items(41))
        .await
        .assert_error(400, "SMS.9001");
    assert_eq!(app.count("upload_results"), 40);
}

#[tokio::test]
async fn storage_failure_gets_500_and_stores_nothing() {
    let app = TestApp::spawn().await;
    app.write_conn()
        .execute_batch(
            "CREATE TRIGGER fail_inserts BEFORE INSERT ON upload_results
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
        )
        .unwrap();
    app.upload(TASK, &app.admin_token, EXAMPLE)
        .await
        .assert_error(500, "SMS.2007");
    app.assert_nothing_stored();

    // The failed upload left no gap: the next one is entry 1.
    app.write_conn()
        .execute_batch("DROP TRIGGER fail_inserts")
        .unwrap();
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    let record = app.get("/api/v1/uploads/1", &app.admin_token).await.json();
    assert_eq!(record["prev_hash"], sms_audit::domain::chain::GENESIS_HASH);
}

#[tokio::test]
async fn full_write_queue_gets_503() {
    let app = TestApp::spawn_with(|c| c.writer.queue_capacity = 1).await;
    // Hold the write lock so the writer stalls and the queue fills.
    let blocker = app.write_conn();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let mut pending = Vec::new();
    for i in 0..4 {
        let client = app.client.clone();
        let url = format!(
            "{}{}",
            app.address,
            TestApp::upload_path(&format!("task-{i}"))
        );
        let token = app.admin_token.clone();
        pending.push(tokio::spawn(async move {
            client
                .post(url)
                .header("X-Auth-Token", token)
                .header("Content-Type", "application/json")
                .body(EXAMPLE)
                .send()
                .await
                .unwrap()
        }));
    }
    // While the writer is stalled nothing can be answered 200: the first answer
    // back is a refusal of the full queue.
    eventually("a refusal of the full queue", PATIENCE, || {
        std::future::ready(pending.iter().any(|p| p.is_finished()).then_some(()))
    })
    .await;
    blocker.execute_batch("ROLLBACK").unwrap();

    let mut statuses = Vec::new();
    for p in pending {
        let response = p.await.unwrap();
        let status = response.status().as_u16();
        if status == 503 {
            assert_eq!(response.headers()["retry-after"], "1");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error_code"], "SMS.0201");
        }
        statuses.push(status);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count() as i64;
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert_eq!(app.count("uploads"), ok);
}

#[tokio::test]
async fn throttled_credential_gets_429() {
    let app = TestApp::spawn_with(|c| c.rate_limit = std::num::NonZeroU32::new(1)).await;
    let agent = app.add_credential("agent", Role::Agent, None, false);
    assert_eq!(app.upload(TASK, &agent.token, EXAMPLE).await.status, 200);
    let reply = app.upload(TASK, &agent.token, EXAMPLE).await;
    reply.assert_error(429, "APIGW.0308");
    assert_eq!(reply.headers["retry-after"], "1");
    // Limits are per credential.
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    assert_eq!(app.count("uploads"), 2);
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_json_errors() {
    let app = TestApp::spawn().await;
    let unknown = app.get("/v3/tasks", &app.admin_token).await;
    unknown.assert_error(404, "APIGW.0101");
    let unknown = app.get("/no/such/page", "").await;
    unknown.assert_error(404, "APIGW.0101");
    let wrong = app.get(&TestApp::upload_path(TASK), &app.admin_token).await;
    wrong.assert_error(405, "SMS.2003");
    let put = app
        .send(
            app.client
                .put(format!("{}{}", app.address, TestApp::upload_path(TASK)))
                .header("X-Auth-Token", &app.admin_token)
                .header("Content-Type", "application/json")
                .body(EXAMPLE),
        )
        .await;
    put.assert_error(405, "SMS.2003");
    let post_read = app
        .send(app.client.post(format!("{}/api/v1/tasks", app.address)))
        .await;
    post_read.assert_error(405, "SMS.2003");
    app.assert_nothing_stored();
}

#[tokio::test]
async fn rejections_are_logged_without_bodies_or_secrets() {
    let app = TestApp::spawn().await;
    let auditor = app.add_credential("auditor-1", Role::Auditor, None, false);
    let secret_marker = "SECRET-DIR-NAME";
    let body = EXAMPLE.replace("/root/data", secret_marker);
    app.upload(TASK, &auditor.token, &body)
        .await
        .assert_error(403, "SMS.9004");
    app.upload(TASK, "wrong-token-value", &body)
        .await
        .assert_error(401, "APIGW.0301");

    // The log is written by the writer without waiting.
    let rows = eventually("two rows in the rejection log", PATIENCE, || async {
        let rows = app.get("/api/v1/rejections", &app.admin_token).await.json()["rejections"]
            .as_array()
            .unwrap()
            .clone();
        (rows.len() >= 2).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["status"], 401);
    assert_eq!(rows[0]["error_code"], "APIGW.0301");
    assert_eq!(rows[0]["credential_name"], serde_json::Value::Null);
    assert_eq!(rows[1]["status"], 403);
    assert_eq!(rows[1]["credential_name"], "auditor-1");
    assert_eq!(rows[1]["path"], TestApp::upload_path(TASK));
    assert_eq!(rows[1]["peer_addr"], "127.0.0.1");

    let dump: String = app
        .write_conn()
        .query_row(
            "SELECT group_concat(at || peer_addr || method || path || status || error_code
                 || coalesce(credential_name, '') || request_id) FROM rejections",
            [],
            |r| r.get(0),
        )
        .unwrap_or_default();
    for secret in [secret_marker, "wrong-token-value", auditor.token.as_str()] {
        assert!(!dump.contains(secret), "rejection log holds {secret}");
    }
}

/// Every path a browser opens gets the site's error page with its navigation,
/// and the message says what the value must be; programs keep SMS's JSON.
#[tokio::test]
async fn browsers_get_error_pages_in_words_and_programs_json() {
    let app = TestApp::spawn().await;
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    for path in [
        "/changes?page=abc",
        "/directories?page=abc",
        "/?page=abc",
        "/?page=0",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 400, "{path}");
        assert!(
            page.text.contains("<header class=\"top\">"),
            "{path}: {}",
            page.text
        );
        assert!(
            page.text
                .contains("page must be a whole number from 1 to 1,000,000"),
            "{path}: {}",
            page.text
        );
        assert!(!page.text.contains("invalid digit"), "{path}");
    }
    let nope = browser.get("/nope").await;
    assert_eq!(nope.status, 404);
    assert!(
        nope.text.contains("<header class=\"top\">"),
        "{}",
        nope.text
    );
    // Programs: the same mistakes answered as SMS answers them.
    let plain = reqwest::get(format!("{}/nope", app.address)).await.unwrap();
    assert_eq!(plain.status(), 404);
    let json: serde_json::Value = plain.json().await.unwrap();
    assert_eq!(json["error_code"], "APIGW.0101", "{json}");
    let api = browser.get("/api/v1/tasks?limit=abc").await;
    assert_eq!(api.status, 400);
    let json: serde_json::Value = serde_json::from_str(&api.text).unwrap();
    assert!(
        json["error_msg"]
            .as_str()
            .unwrap()
            .contains("limit must be a whole number"),
        "{json}"
    );
}
