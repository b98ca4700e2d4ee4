use sms_audit::domain::Role;

use crate::helpers::{body_with_items, TestApp, EXAMPLE, TASK};

#[tokio::test]
async fn readers_need_an_auditor_or_operator_token() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false);
    let auditor = app.add_credential("auditor", Role::Auditor, None, false);
    for path in [
        "/api/v1/tasks",
        "/api/v1/ledger",
        "/api/v1/uploads/1",
        &format!("/api/v1/tasks/{TASK}/uploads"),
    ] {
        app.get(path, &agent.token)
            .await
            .assert_error(403, "SMS.9004");
        app.get(path, "nope").await.assert_error(401, "APIGW.0301");
        let anonymous = app
            .send(app.client.get(format!("{}{path}", app.address)))
            .await;
        anonymous.assert_error(401, "APIGW.0301");
    }
    assert_eq!(app.get("/api/v1/tasks", &auditor.token).await.status, 200);
    assert_eq!(app.get("/api/v1/tasks", &app.admin_token).await.status, 200);
}

#[tokio::test]
async fn tasks_list_totals_of_the_latest_upload() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    assert_eq!(app.upload(TASK, &t, EXAMPLE).await.status, 200);
    assert_eq!(app.upload(TASK, &t, &body_with_items(3)).await.status, 200);
    assert_eq!(app.upload("task-2", &t, EXAMPLE).await.status, 200);
    let tasks = app.get("/api/v1/tasks", &t).await.json()["tasks"].clone();
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    let first = tasks.iter().find(|x| x["task_id"] == TASK).unwrap();
    assert_eq!(first["upload_count"], 2);
    assert_eq!(first["last_upload_id"], 2);
    // body_with_items(3): totals 100+101+102, different 0+1+2, missing 0, more 3.
    assert_eq!(
        first["latest_totals"],
        serde_json::json!({"num_total_files": 303, "num_different_files": 3,
                           "num_target_miss_files": 0, "num_target_more_files": 3})
    );
    assert!(
        first["first_received_at"].as_str().unwrap() <= first["last_received_at"].as_str().unwrap()
    );
}

#[tokio::test]
async fn task_uploads_page_newest_first_with_keyset_paging() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    for i in 0..7 {
        assert_eq!(
            app.upload(TASK, &t, &body_with_items(i % 3)).await.status,
            200
        );
        assert_eq!(app.upload("noise", &t, EXAMPLE).await.status, 200);
    }
    let mut seen = Vec::new();
    let mut next = format!("/api/v1/tasks/{TASK}/uploads?limit=3");
    loop {
        let page = app.get(&next, &t).await.json();
        let ids: Vec<i64> = page["uploads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_i64().unwrap())
            .collect();
        assert!(ids.len() <= 3);
        seen.extend(ids);
        match page["next_before_id"].as_i64() {
            Some(before) => {
                next = format!("/api/v1/tasks/{TASK}/uploads?limit=3&before_id={before}")
            }
            None => break,
        }
    }
    assert_eq!(seen, vec![13, 11, 9, 7, 5, 3, 1]);

    // Time filters: everything is from today, nothing from the future.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let page = app
        .get(&format!("/api/v1/tasks/{TASK}/uploads?since={today}"), &t)
        .await
        .json();
    assert_eq!(page["uploads"].as_array().unwrap().len(), 7);
    let page = app
        .get(&format!("/api/v1/tasks/{TASK}/uploads?until={today}"), &t)
        .await
        .json();
    assert_eq!(page["uploads"].as_array().unwrap().len(), 0);
    assert_eq!(page["next_before_id"], serde_json::Value::Null);

    app.get(&format!("/api/v1/tasks/{TASK}/uploads?since=yesterday"), &t)
        .await
        .assert_error(400, "SMS.9001");
    app.get(&format!("/api/v1/tasks/{TASK}/uploads?limit=0"), &t)
        .await
        .assert_error(400, "SMS.9001");
    app.get(&format!("/api/v1/tasks/{TASK}/uploads?before_id=x"), &t)
        .await
        .assert_error(400, "SMS.9001");
    app.get("/api/v1/tasks/unknown-task/uploads", &t)
        .await
        .assert_error(404, "SMS.7703");
}

#[tokio::test]
async fn unknown_upload_is_404() {
    let app = TestApp::spawn().await;
    app.get("/api/v1/uploads/99", &app.admin_token)
        .await
        .assert_error(404, "APIGW.0101");
    app.get("/api/v1/uploads/abc", &app.admin_token)
        .await
        .assert_error(404, "APIGW.0101");
}

#[tokio::test]
async fn tasks_come_a_page_at_a_time() {
    let app = TestApp::spawn().await;
    let names = ["t-a", "t-b", "t-c", "t-d", "t-e"];
    for t in names {
        assert_eq!(app.upload(t, &app.admin_token, EXAMPLE).await.status, 200);
    }
    let mut seen = Vec::new();
    let mut next = "/api/v1/tasks?limit=2".to_string();
    loop {
        let page = app.get(&next, &app.admin_token).await.json();
        let tasks = page["tasks"].as_array().unwrap();
        assert!(tasks.len() <= 2);
        seen.extend(
            tasks
                .iter()
                .map(|t| t["task_id"].as_str().unwrap().to_string()),
        );
        match page["next_after"].as_str() {
            Some(after) => next = format!("/api/v1/tasks?limit=2&after={after}"),
            None => break,
        }
    }
    assert_eq!(seen, names);
    for bad in ["limit=0", "limit=1001", "limit=-1", "limit=x"] {
        app.get(&format!("/api/v1/tasks?{bad}"), &app.admin_token)
            .await
            .assert_error(400, "SMS.9001");
    }
}

#[tokio::test]
async fn csv_export_neutralises_formulas_and_jsonl_keeps_the_bytes() {
    let app = TestApp::spawn().await;
    let dirs = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "/plain"];
    let items: Vec<String> = dirs
        .iter()
        .map(|d| {
            format!(
                r#"{{"dir_check":{},"num_total_files":1,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0}}"#,
                serde_json::to_string(d).unwrap()
            )
        })
        .collect();
    let body = format!(r#"{{"consistency_result":[{}]}}"#, items.join(","));
    assert_eq!(app.upload(TASK, &app.admin_token, &body).await.status, 200);

    let csv = app.get("/api/v1/export?format=csv", &app.admin_token).await;
    assert_eq!(csv.status, 200);
    let mut reader = csv::ReaderBuilder::new().from_reader(csv.text.as_bytes());
    let column = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "dir_check")
        .unwrap();
    let cells: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[column].to_string())
        .collect();
    // Tab and CR are shown as escapes (no spreadsheet runs those); the rest of the
    // formula starts get an apostrophe.
    let expected: Vec<String> = [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "\\u0009x",
        "\\u000dx",
        "/plain",
    ]
    .iter()
    .map(|d| d.to_string())
    .collect();
    assert_eq!(cells, expected);

    let jsonl = app
        .get("/api/v1/export?format=jsonl", &app.admin_token)
        .await;
    let line: serde_json::Value = serde_json::from_str(jsonl.text.lines().next().unwrap()).unwrap();
    assert_eq!(line["raw_body"], body, "JSON lines keep the body as stored");
    assert_eq!(line["results"][0]["dir_check"], "=1+1");
}
