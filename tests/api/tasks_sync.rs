//! `tasks sync` against the stand-in SMS (signed, paged) and `tasks import` from a
//! saved answer: names and states stored, shown by the pages and the API.

use serde_json::json;

use crate::fake_upstream::{command_for, output, FakeUpstream, SK};
use crate::helpers::{TestApp, EXAMPLE, TASK};

async fn tasks(app: &TestApp, fake: &FakeUpstream, args: &[&str], sk: &str) -> (i32, String) {
    let args: Vec<&str> = std::iter::once("tasks")
        .chain(args.iter().copied())
        .collect();
    let mut cmd = command_for(fake, &app.db_path, &args);
    cmd.env("HUAWEICLOUD_SDK_SK", sk);
    output(cmd).await
}

#[tokio::test]
async fn tasks_sync_reads_every_page_of_the_task_list_and_stores_names_and_states() {
    let fake = FakeUpstream::start().await;
    // 250 tasks: three pages of 100; one with a name that is not shown text, one
    // whose id is not a task id.
    let mut listed: Vec<serde_json::Value> = (0..248)
        .map(|i| json!({"id": format!("task-{i:03}"), "name": format!("server {i}"), "state": "RUNNING", "type": "MIGRATE_FILE"}))
        .collect();
    listed.push(
        json!({"id": TASK, "name": "db\u{202e}01", "state": "FINISHED",
        "source_server": {"id": "src-0001", "name": "db01"}}),
    );
    listed.push(json!({"id": "not a task id!", "name": "x", "state": "READY"}));
    fake.set_tasks(listed);
    let app = TestApp::spawn().await;
    let agent = app
        .add_credential("agent", sms_audit::domain::Role::Agent, None, false)
        .token;
    assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);

    let (code, out) = tasks(&app, &fake, &["sync"], SK).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("stored 249 tasks"), "{out}");
    assert!(out.contains("(248 newly registered)"), "{out}");
    assert!(
        out.contains("skipped 1 whose id is not a valid task id"),
        "{out}"
    );
    assert!(out.contains("kept no name for 1"), "{out}");
    let calls = fake.received();
    assert_eq!(calls.len(), 3, "three pages");
    assert!(calls.iter().all(|c| c.method == "GET" && c.signature_ok));
    assert_eq!(calls[2].query, "limit=100&offset=200");

    // The pages and the API show them.
    let api = app
        .get("/api/v1/tasks?limit=500", &app.admin_token)
        .await
        .json();
    let tasks_json = api["tasks"].as_array().expect("a task list");
    let one = tasks_json
        .iter()
        .find(|t| t["task_id"] == "task-007")
        .unwrap();
    assert_eq!(one["name"], "server 7");
    assert_eq!(one["sms_state"], "RUNNING");
    let uploaded = tasks_json.iter().find(|t| t["task_id"] == TASK).unwrap();
    assert_eq!(uploaded["sms_state"], "FINISHED");
    assert!(uploaded["name"].is_null(), "{uploaded}");
    // Its source server, for the pass-through's task scopes.
    let source: Option<String> = app
        .write_conn()
        .query_row(
            "SELECT sms_source_id FROM tasks WHERE task_id = ?1",
            [TASK],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(source.as_deref(), Some("src-0001"));
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let page = browser.get("/tasks/task-007").await;
    assert!(page.text.contains("server 7"), "{}", page.text);
    assert!(page.text.contains("RUNNING"), "{}", page.text);

    // Wrong credentials: SMS refuses, the command says so and stores nothing new.
    let (code, out) = tasks(&app, &fake, &["sync"], "wrong-secret").await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("401"), "{out}");
}

#[tokio::test]
async fn tasks_import_reads_a_saved_answer() {
    let fake = FakeUpstream::start().await;
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tasks.json");
    std::fs::write(
        &file,
        json!({"count": 2, "tasks": [
            {"id": "t-1", "name": "web 1", "state": "MIGRATING", "source_server": {"id": "s"}},
            {"id": "t-2", "state": "READY"}
        ]})
        .to_string(),
    )
    .unwrap();
    let (code, out) = tasks(&app, &fake, &["import", file.to_str().unwrap()], SK).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("stored 2 tasks"), "{out}");
    let (code, out) = tasks(&app, &fake, &["list"], SK).await;
    assert_eq!(code, 0);
    assert!(out.contains("MIGRATING") && out.contains("web 1"), "{out}");
    assert!(fake.received().is_empty(), "import never calls SMS");
    std::fs::write(&file, "{\"tasks\": 5}").unwrap();
    let (code, out) = tasks(&app, &fake, &["import", file.to_str().unwrap()], SK).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not a ListTasks answer"), "{out}");
}

/// A name set by hand survives `tasks sync` unless `--overwrite-names`; names
/// from SMS follow SMS; every change is reported.
#[tokio::test]
async fn tasks_sync_keeps_names_set_by_hand_and_reports_what_it_renamed() {
    let fake = FakeUpstream::start().await;
    fake.set_tasks(vec![
        json!({"id": "t-hand", "name": "sms name 1", "state": "RUNNING"}),
        json!({"id": "t-sms", "name": "sms name 2", "state": "RUNNING"}),
    ]);
    let app = TestApp::spawn().await;
    let name_of = |task: &str| -> Option<String> {
        app.write_conn()
            .query_row("SELECT name FROM tasks WHERE task_id = ?1", [task], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let (code, out) = tasks(
        &app,
        &fake,
        &["add", "t-hand", "--name", "web-01 (CentOS 7) → ECS"],
        SK,
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = tasks(&app, &fake, &["sync"], SK).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        name_of("t-hand").as_deref(),
        Some("web-01 (CentOS 7) → ECS")
    );
    assert_eq!(name_of("t-sms").as_deref(), Some("sms name 2"));
    assert!(
        out.contains("kept the names set by hand of 1 task that SMS names otherwise"),
        "{out}"
    );

    // SMS renames its task: the next sync follows and says so.
    fake.set_tasks(vec![
        json!({"id": "t-hand", "name": "sms name 1", "state": "RUNNING"}),
        json!({"id": "t-sms", "name": "sms name 3", "state": "FINISHED"}),
    ]);
    let (code, out) = tasks(&app, &fake, &["sync"], SK).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("renamed task t-sms: \"sms name 2\" → \"sms name 3\""),
        "{out}"
    );
    assert!(!out.contains("renamed task t-hand"), "{out}");
    assert_eq!(
        name_of("t-hand").as_deref(),
        Some("web-01 (CentOS 7) → ECS")
    );

    // Asked to, it replaces the name set by hand too, and reports it.
    let (code, out) = tasks(&app, &fake, &["sync", "--overwrite-names"], SK).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("renamed task t-hand: \"web-01 (CentOS 7) → ECS\" → \"sms name 1\""),
        "{out}"
    );
    assert_eq!(name_of("t-hand").as_deref(), Some("sms name 1"));
    // Now SMS's name, it follows SMS from here on.
    fake.set_tasks(vec![json!({"id": "t-hand", "name": "sms name 4"})]);
    let (code, out) = tasks(&app, &fake, &["sync"], SK).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(name_of("t-hand").as_deref(), Some("sms name 4"), "{out}");
}
