use sms_audit::domain::Role;

use crate::helpers::{body_with_items, TestApp, EXAMPLE, TASK};

#[tokio::test]
async fn example_upload_is_accepted_and_read_back() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent-1", Role::Agent, None, false);

    let reply = app.upload(TASK, &agent.token, EXAMPLE).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.text, "{}");
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let request_id = reply.headers["x-request-id"].to_str().unwrap().to_string();

    let record = app.get("/api/v1/uploads/1", &app.admin_token).await;
    assert_eq!(record.status, 200, "{}", record.text);
    let record = record.json();
    assert_eq!(record["id"], 1);
    assert_eq!(record["request_id"], request_id.as_str());
    assert_eq!(record["task_id"], TASK);
    assert_eq!(record["credential_name"], "agent-1");
    assert_eq!(record["auth_method"], "token");
    assert_eq!(record["raw_body"], EXAMPLE, "raw body kept byte for byte");
    assert_eq!(
        record["body_sha256"],
        sms_audit::domain::signing::sha256_hex(EXAMPLE.as_bytes())
    );
    assert_eq!(record["prev_hash"], sms_audit::domain::chain::GENESIS_HASH);
    assert_eq!(record["entry_hash"].as_str().unwrap().len(), 64);
    assert_eq!(record["results"].as_array().unwrap().len(), 2);
    assert_eq!(record["results"][0]["dir_check"], "/root/data");
    assert_eq!(record["results"][1]["dir_check"], "/var");
    assert_eq!(record["results"][1]["num_total_files"], 1235);
    assert_eq!(record["totals"]["num_different_files"], 24);
    assert!(record["peer_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1"));
    assert!(record["received_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(record["duplicate_of"], serde_json::Value::Null);
}

#[tokio::test]
async fn legacy_path_and_optional_fields_are_stored_identically() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false);
    let body =
        r#"{"finished_time": 1764270000, "consistency_result": null, "agent_version": "2.1"}"#;
    let reply = app
        .send(
            app.client
                .post(format!("{}/v3/{TASK}/consistency-result", app.address))
                .header("X-Auth-Token", &agent.token)
                .header("Content-Type", "application/json; charset=utf-8")
                .header("User-Agent", "migration-agent/2.1")
                .header("X-Project-Id", "p-123")
                .body(body),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let record = app.get("/api/v1/uploads/1", &app.admin_token).await.json();
    assert_eq!(record["task_id"], TASK);
    assert_eq!(record["finished_time"], 1_764_270_000i64);
    assert_eq!(record["raw_body"], body);
    assert_eq!(record["results"].as_array().unwrap().len(), 0);
    assert_eq!(record["user_agent"], "migration-agent/2.1");
    assert_eq!(record["project_id"], "p-123");
}

#[tokio::test]
async fn aksk_signed_upload_is_accepted() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("sdk-agent", Role::Agent, None, true);
    let (ak, sk) = (agent.access_key.unwrap(), agent.secret_key.unwrap());
    let reply = app.upload_signed(TASK, &ak, &sk, EXAMPLE, |_| {}).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let record = app.get("/api/v1/uploads/1", &app.admin_token).await.json();
    assert_eq!(record["auth_method"], "aksk");
    assert_eq!(record["credential_name"], "sdk-agent");
    assert_eq!(record["project_id"], "0123456789abcdef0123456789abcdef");

    // The Go SDK leaves content-type unsigned: also fine.
    let reply = app
        .upload_signed(TASK, &ak, &sk, EXAMPLE, |p| {
            p.signed.retain(|h| h != "content-type");
        })
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    // A token-only credential has no AK/SK, and the token of an AK/SK credential
    // works too.
    let reply = app.upload(TASK, &agent.token, EXAMPLE).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn identical_body_is_marked_duplicate_of_previous_upload() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    assert_eq!(app.upload(TASK, &t, EXAMPLE).await.status, 200);
    assert_eq!(app.upload(TASK, &t, EXAMPLE).await.status, 200);
    assert_eq!(app.upload(TASK, &t, &body_with_items(1)).await.status, 200);
    assert_eq!(app.upload("other-task", &t, EXAMPLE).await.status, 200);
    assert_eq!(
        app.get("/api/v1/uploads/2", &t).await.json()["duplicate_of"],
        1
    );
    assert_eq!(
        app.get("/api/v1/uploads/3", &t).await.json()["duplicate_of"],
        serde_json::Value::Null
    );
    assert_eq!(
        app.get("/api/v1/uploads/4", &t).await.json()["duplicate_of"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn uploads_survive_a_restart_and_the_chain_continues() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false);
    for _ in 0..3 {
        assert_eq!(app.upload(TASK, &agent.token, EXAMPLE).await.status, 200);
    }
    let before = app.get("/api/v1/uploads/3", &app.admin_token).await.json();

    let app = app.restart().await;
    let after = app.get("/api/v1/uploads/3", &app.admin_token).await.json();
    assert_eq!(before, after);
    assert_eq!(app.upload(TASK, &agent.token, EXAMPLE).await.status, 200);
    let fourth = app.get("/api/v1/uploads/4", &app.admin_token).await.json();
    assert_eq!(fourth["prev_hash"], before["entry_hash"]);
    let ledger = app.get("/api/v1/ledger", &app.admin_token).await.json();
    assert_eq!(ledger["status"], "intact");
    assert_eq!(ledger["entries"], 4);
    assert_eq!(ledger["head_hash"], fourth["entry_hash"]);
}

#[cfg(unix)]
#[tokio::test]
async fn database_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn().await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    let mode = std::fs::metadata(&app.db_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let health = app
        .send(app.client.get(format!("{}/healthz", app.address)))
        .await;
    assert_eq!(health.status, 200);
    let ready = app
        .send(app.client.get(format!("{}/readyz", app.address)))
        .await;
    assert_eq!(ready.status, 200, "{}", ready.text);

    // While another connection holds the write lock, the database is not writable.
    let conn = app.write_conn();
    conn.busy_timeout(std::time::Duration::from_millis(1))
        .unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let ready = app
        .send(app.client.get(format!("{}/readyz", app.address)))
        .await;
    ready.assert_error(503, "SMS.0201");
    conn.execute_batch("ROLLBACK").unwrap();
    let ready = app
        .send(app.client.get(format!("{}/readyz", app.address)))
        .await;
    assert_eq!(ready.status, 200, "{}", ready.text);
}

async fn upload_via_proxy(app: &TestApp) -> crate::helpers::Reply {
    app.send(
        app.client
            .post(format!("{}{}", app.address, TestApp::upload_path(TASK)))
            .header("X-Auth-Token", &app.admin_token)
            .header("Content-Type", "application/json")
            .header("X-Forwarded-For", "203.0.113.7")
            .body(EXAMPLE),
    )
    .await
}

#[tokio::test]
async fn forwarded_for_is_stored_only_from_a_trusted_proxy() {
    let untrusted = TestApp::spawn().await;
    assert_eq!(upload_via_proxy(&untrusted).await.status, 200);
    let record = untrusted
        .get("/api/v1/uploads/1", &untrusted.admin_token)
        .await
        .json();
    assert_eq!(record["forwarded_for"], serde_json::Value::Null);

    let trusted =
        TestApp::spawn_with(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    assert_eq!(upload_via_proxy(&trusted).await.status, 200);
    let record = trusted
        .get("/api/v1/uploads/1", &trusted.admin_token)
        .await
        .json();
    assert_eq!(record["forwarded_for"], "203.0.113.7");
    assert!(record["peer_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1"));
}

#[tokio::test]
async fn bodies_beyond_the_buffered_budget_get_503_and_store_nothing() {
    let app = TestApp::spawn_with(|c| c.http.max_buffered_bytes = 16).await;
    let reply = app.upload(TASK, &app.admin_token, EXAMPLE).await;
    reply.assert_error(503, "SMS.0201");
    assert!(
        reply.text.contains("--max-buffered-bytes"),
        "{}",
        reply.text
    );
    app.assert_nothing_stored();
    let metrics = app.get("/metrics", "").await.text;
    assert!(
        metrics.contains("sms_audit_body_budget_refusals_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sms_audit_buffered_body_bytes 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_signed_upload_sent_again_is_refused_and_its_body_must_be_signed() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, true);
    let (ak, sk) = (agent.access_key.unwrap(), agent.secret_key.unwrap());
    let date = chrono::Utc::now();
    let fixed = |p: &mut crate::helpers::SignedParts| p.date = date;
    assert_eq!(
        app.upload_signed(TASK, &ak, &sk, EXAMPLE, fixed)
            .await
            .status,
        200
    );
    // The same request again (same date, so the same signature).
    let again = app.upload_signed(TASK, &ak, &sk, EXAMPLE, fixed).await;
    let error = again.assert_error(401, "APIGW.0301");
    assert!(error["error_msg"]
        .as_str()
        .unwrap()
        .contains("received before"));
    // The same signature in upper case is the same signature.
    let upper = app
        .upload_signed(TASK, &ak, &sk, EXAMPLE, |p| {
            p.date = date;
            p.upper_case_signature = true;
        })
        .await;
    upper.assert_error(401, "APIGW.0301");
    assert_eq!(app.count("uploads"), 1);
    // A new date signs anew.
    let later = date + chrono::Duration::seconds(1);
    assert_eq!(
        app.upload_signed(TASK, &ak, &sk, EXAMPLE, |p| p.date = later)
            .await
            .status,
        200
    );
    // UNSIGNED-PAYLOAD leaves the body out of the signature: refused for uploads.
    let unsigned = app
        .upload_signed(TASK, &ak, &sk, EXAMPLE, |p| {
            p.headers
                .push(("X-Sdk-Content-Sha256".into(), "UNSIGNED-PAYLOAD".into()));
            p.signed.push("x-sdk-content-sha256".into());
            p.signed_body = String::new();
        })
        .await;
    let error = unsigned.assert_error(401, "APIGW.0301");
    assert!(error["error_msg"]
        .as_str()
        .unwrap()
        .contains("UNSIGNED-PAYLOAD"));
    assert_eq!(app.count("uploads"), 2);
}
