use crate::helpers::{EXAMPLE, TASK};
use sms_audit::domain::Role;
use sms_audit::storage::lock::{LockKind, ProcessLock};
use sms_audit::{Application, ServeConfig};

use crate::helpers::{body_with_items, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_are_all_stored_and_the_chain_verifies() {
    const CLIENTS: usize = 32;
    const EACH: usize = 10;
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false);

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let client = reqwest::Client::new();
        let url = format!(
            "{}{}",
            app.address,
            TestApp::upload_path(&format!("task-{c}"))
        );
        let token = agent.token.clone();
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..EACH {
                let response = client
                    .post(&url)
                    .header("X-Auth-Token", &token)
                    .header("Content-Type", "application/json")
                    .body(body_with_items(i % 5))
                    .send()
                    .await
                    .unwrap();
                statuses.push(response.status().as_u16());
            }
            statuses
        }));
    }
    for c in clients {
        assert!(c.await.unwrap().iter().all(|s| *s == 200));
    }
    let total = (CLIENTS * EACH) as i64;
    assert_eq!(app.count("uploads"), total);
    let (min, max): (i64, i64) = app
        .write_conn()
        .query_row("SELECT min(id), max(id) FROM uploads", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((min, max), (1, total), "ids are contiguous");
    let tasks = app.get("/api/v1/tasks", &app.admin_token).await.json();
    let counted: i64 = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["upload_count"].as_i64().unwrap())
        .sum();
    assert_eq!(counted, total);
    let ledger = app.get("/api/v1/ledger", &app.admin_token).await.json();
    assert_eq!(ledger["status"], "intact", "{ledger}");
    assert_eq!(ledger["entries"], total);
}

#[tokio::test]
async fn a_second_writer_on_one_database_is_refused_naming_the_holder() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    let pid = std::process::id().to_string();

    // In this process: a second Application on the same file.
    let mut config = ServeConfig::new(&app.db_path);
    config.listen = "127.0.0.1:0".into();
    config.handle_signals = false;
    let refused = Application::build(config).await.err().expect("refused");
    assert!(refused.to_string().contains(&pid), "{refused}");

    // Another process: `serve` exits 2, naming this process.
    let out = crate::helpers::command()
        .args(["--db"])
        .arg(&app.db_path)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("PID {pid}")), "{stderr}");

    // A replay being sent holds its own lock.
    let held = ProcessLock::acquire(&app.db_path, LockKind::Replay).unwrap();
    let out = crate::helpers::command()
        .arg("--db")
        .arg(&app.db_path)
        .args([
            "replay",
            "--upstream-endpoint",
            "http://127.0.0.1:9",
            "--yes",
        ])
        .env("SMS_AUDIT_UPSTREAM_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("PID {pid}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(held);

    // The running service was not disturbed.
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    assert_eq!(app.count("uploads"), 2);
}
