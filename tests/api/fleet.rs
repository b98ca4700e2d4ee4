//! Fleet history over HTTP and on the command line: tasks as of a moment, what
//! changed between two moments, the daily trend, and one directory across tasks.

use sms_audit::domain::Role;

use crate::helpers::{body_with_problems, card_value, TestApp};

/// Three moments: task-a (2 problems) and task-b (5) by the first; then task-a
/// improves to 1, task-b regresses to 8 and task-c (0) is new by the second.
/// Returns (the app, the agent token, the first moment).
async fn two_rounds() -> (TestApp, String, String) {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    for (task, different) in [("task-a", 1), ("task-b", 4)] {
        let body = body_with_problems("/data", different);
        assert_eq!(app.upload(task, &agent, &body).await.status, 200);
    }
    let first = app.get("/api/v1/uploads/2", &app.admin_token).await.json()["received_at"]
        .as_str()
        .unwrap()
        .to_string();
    // Later uploads get later milliseconds: the clock has passed the first round.
    let first_ms = chrono::DateTime::parse_from_rfc3339(&first)
        .unwrap()
        .timestamp_millis();
    crate::helpers::eventually("a later millisecond", crate::helpers::PATIENCE, || {
        let later = chrono::Utc::now().timestamp_millis() > first_ms;
        std::future::ready(later.then_some(()))
    })
    .await;
    for (task, different) in [("task-a", 0), ("task-b", 7), ("task-c", 0)] {
        let body = if task == "task-c" {
            r#"{"consistency_result":[{"dir_check":"/data","num_total_files":9,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0}]}"#.to_string()
        } else {
            body_with_problems("/data", different)
        };
        assert_eq!(app.upload(task, &agent, &body).await.status, 200);
    }
    (app, agent, first)
}

fn enc(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn tasks_as_of_a_moment_show_their_latest_upload_then() {
    let (app, _, first) = two_rounds().await;
    let then = app
        .get(
            &format!("/api/v1/tasks?as_of={}", enc(&first)),
            &app.admin_token,
        )
        .await
        .json();
    assert_eq!(then["as_of"], first);
    let tasks = then["tasks"].as_array().unwrap();
    let ids: Vec<&str> = tasks
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["task-a", "task-b"], "task-c had not reported: {then}");
    assert_eq!(tasks[0]["last_upload_id"], 1);
    assert_eq!(tasks[0]["problems"], 2);
    assert_eq!(tasks[0]["upload_count"], 1);
    assert_eq!(tasks[1]["latest_totals"]["num_different_files"], 4);
    // One shape with and without as_of: the same fields, null where unknown.
    let now = app.get("/api/v1/tasks", &app.admin_token).await.json();
    let keys = |t: &serde_json::Value| {
        let mut k: Vec<String> = t.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&tasks[0]), keys(&now["tasks"][0]), "{then} / {now}");
    assert_eq!(now["tasks"][0]["problems"], 1, "task-a now: {now}");
    assert_eq!(now["tasks"][1]["regressed"], true, "task-b now: {now}");
    assert!(tasks[0]["sms_state"].is_null() && tasks[0]["registered_at"].is_string());

    let now = app
        .get("/api/v1/tasks?as_of=2999-01-01", &app.admin_token)
        .await
        .json();
    let tasks = now["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3);
    assert_eq!(tasks[0]["upload_count"], 2);
    assert_eq!(tasks[1]["problems"], 8);
    assert_eq!(tasks[1]["regressed"], true);

    // Pages by id, as without as_of.
    let page = app
        .get("/api/v1/tasks?as_of=2999-01-01&limit=2", &app.admin_token)
        .await
        .json();
    assert_eq!(page["next_after"], "task-b");
    let rest = app
        .get(
            "/api/v1/tasks?as_of=2999-01-01&after=task-b",
            &app.admin_token,
        )
        .await
        .json();
    assert_eq!(rest["tasks"][0]["task_id"], "task-c");
    assert!(rest["next_after"].is_null());

    let before = app
        .get("/api/v1/tasks?as_of=2001-01-01", &app.admin_token)
        .await
        .json();
    assert_eq!(before["tasks"].as_array().unwrap().len(), 0);
    app.get("/api/v1/tasks?as_of=yesterday", &app.admin_token)
        .await
        .assert_error(400, "SMS.9001");
}

/// Pages of changes are kept per pair of upload ids: the same page asked again
/// is the same, and an upload after it (a later last upload at `to`) shows at once.
#[tokio::test]
async fn a_kept_page_of_changes_gives_way_to_a_new_upload() {
    let (app, agent, first) = two_rounds().await;
    let path = format!("/api/v1/changes?from={}&to=2999-01-01", enc(&first));
    let verdict_of_a = |changes: &serde_json::Value| {
        let rows = changes["tasks"].as_array().unwrap();
        let a = rows.iter().find(|r| r["task_id"] == "task-a").unwrap();
        (a["verdict"].clone(), a["to"]["upload_id"].clone())
    };
    let once = app.get(&path, &app.admin_token).await.json();
    let again = app.get(&path, &app.admin_token).await.json();
    assert_eq!(once, again);
    assert_eq!(verdict_of_a(&once), ("improved".into(), 3.into()));

    let body = body_with_problems("/data", 6);
    assert_eq!(app.upload("task-a", &agent, &body).await.status, 200);
    let after = app.get(&path, &app.admin_token).await.json();
    assert_eq!(verdict_of_a(&after), ("regressed".into(), 6.into()));
    assert_eq!(after["counts"]["regressed"], 2, "{after}");
}

#[tokio::test]
async fn changes_between_two_moments_give_each_task_a_verdict() {
    let (app, _, first) = two_rounds().await;
    let path = format!("/api/v1/changes?from={}&to=2999-01-01", enc(&first));
    let changes = app.get(&path, &app.admin_token).await.json();
    assert_eq!(
        changes["counts"],
        serde_json::json!({"new": 1, "improved": 1, "regressed": 1, "unchanged": 0, "no_results": 0, "clean": 1})
    );
    // By change: the largest increase first.
    let rows = changes["tasks"].as_array().unwrap();
    let order: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["task_id"].as_str().unwrap(),
                r["verdict"].as_str().unwrap(),
                r["problems_change"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("task-b", "regressed", 3),
            ("task-c", "new", 0),
            ("task-a", "improved", -1)
        ]
    );
    assert_eq!(rows[0]["from"]["upload_id"], 2);
    assert_eq!(rows[0]["to"]["upload_id"], 4);
    assert!(rows[1]["from"].is_null());
    assert_eq!(rows[2]["clean"], false, "task-a still misses a file");
    assert_eq!(rows[1]["clean"], true);
    assert_eq!(
        (changes["total"].as_i64(), changes["next_offset"].as_i64()),
        (Some(3), None)
    );

    // A page at a time, in the same order.
    let mut paged = Vec::new();
    let mut offset = Some(0);
    while let Some(at) = offset {
        let page = app
            .get(&format!("{path}&limit=2&offset={at}"), &app.admin_token)
            .await
            .json();
        assert_eq!(page["total"], 3);
        assert_eq!(
            page["counts"], changes["counts"],
            "the counts are of every task"
        );
        paged.extend(
            page["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["task_id"].clone()),
        );
        offset = page["next_offset"].as_u64();
    }
    let whole: Vec<_> = rows.iter().map(|r| r["task_id"].clone()).collect();
    assert_eq!(paged, whole);
    let past_the_end = app
        .get(&format!("{path}&offset=9"), &app.admin_token)
        .await
        .json();
    assert_eq!(past_the_end["tasks"], serde_json::json!([]));

    let only = app
        .get(&format!("{path}&verdict=clean&sort=task"), &app.admin_token)
        .await
        .json();
    let ids: Vec<&str> = only["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["task-c"]);
    let regressed = app
        .get(&format!("{path}&verdict=regressed"), &app.admin_token)
        .await
        .json();
    assert_eq!(regressed["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(regressed["counts"]["new"], 1, "counts are of every task");

    let csv = app
        .get(&format!("{path}&format=csv&sort=task"), &app.admin_token)
        .await;
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.text.lines().collect();
    assert!(lines[0].starts_with("task_id,name,verdict,clean,problems_change,from_upload_id"));
    assert!(
        lines[1].starts_with("task-a,,improved,false,-1,1,"),
        "{}",
        csv.text
    );
    assert!(
        lines[3].starts_with("task-c,,new,true,0,,,"),
        "{}",
        csv.text
    );

    for (query, problem) in [
        ("to=2999-01-01".to_string(), "from: required"),
        (
            format!("from=2999-01-01&to={}", enc(&first)),
            "from: must not be after to",
        ),
        (
            "from=2001-01-01&to=2999-01-01&verdict=worse".to_string(),
            "verdict: must be",
        ),
        (
            "from=2001-01-01&to=2999-01-01&sort=size".to_string(),
            "sort: must be",
        ),
        (
            "from=2001-01-01&to=2999-01-01&format=xml".to_string(),
            "format: must be",
        ),
        (
            "from=2001-01-01&to=2999-01-01&limit=1001".to_string(),
            "limit: must be",
        ),
        (
            "from=2001-01-01&to=2999-01-01&offset=-1".to_string(),
            "offset",
        ),
    ] {
        let reply = app
            .get(&format!("/api/v1/changes?{query}"), &app.admin_token)
            .await;
        let body = reply.assert_error(400, "SMS.9001");
        assert!(
            body["error_msg"].as_str().unwrap().contains(problem),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn the_trend_has_a_point_a_day_and_today_counts_every_task() {
    let (app, _, _) = two_rounds().await;
    let trend = app
        .get("/api/v1/fleet/trend", &app.admin_token)
        .await
        .json();
    let days = trend["days"].as_array().unwrap();
    assert_eq!(days.len(), 90);
    let today = days.last().unwrap();
    assert_eq!(today["tasks_reporting"], 3);
    assert_eq!(today["open_problems"], 1 + 8);
    assert_eq!(today["tasks_clean"], 1);
    assert_eq!(days[0]["tasks_reporting"], 0, "nothing 89 days ago");
    let one = app
        .get(
            "/api/v1/fleet/trend?since=2026-01-01&until=2026-01-01",
            &app.admin_token,
        )
        .await
        .json();
    assert_eq!(
        one["days"],
        serde_json::json!([{"date": "2026-01-01", "tasks_reporting": 0, "open_problems": 0, "tasks_clean": 0, "tasks_without_results": 0}])
    );
    app.get(
        "/api/v1/fleet/trend?since=2026-02-01&until=2026-01-01",
        &app.admin_token,
    )
    .await
    .assert_error(400, "SMS.9001");
}

#[tokio::test]
async fn a_directory_across_tasks_and_the_directories_by_prefix() {
    let (app, _, _) = two_rounds().await;
    let data = app
        .get("/api/v1/directories?path=/data", &app.admin_token)
        .await
        .json();
    let rows = data["tasks"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["task_id"], "task-b");
    assert_eq!(rows[1]["upload_id"], 4);
    assert_eq!(rows[1]["totals"]["num_different_files"], 7);
    assert_eq!(
        (data["total"].as_i64(), data["next_offset"].as_i64()),
        (Some(3), None)
    );
    // A page at a time, by task id.
    let first = app
        .get("/api/v1/directories?path=/data&limit=2", &app.admin_token)
        .await
        .json();
    assert_eq!(first["total"], 3);
    assert_eq!(first["next_offset"], 2);
    let second = app
        .get(
            "/api/v1/directories?path=/data&limit=2&offset=2",
            &app.admin_token,
        )
        .await
        .json();
    assert!(second["next_offset"].is_null());
    let paged: Vec<_> = first["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["tasks"].as_array().unwrap())
        .collect();
    assert_eq!(paged, rows.iter().collect::<Vec<_>>());
    app.get("/api/v1/directories?path=/data&limit=0", &app.admin_token)
        .await
        .assert_error(400, "SMS.9001");
    let var = app
        .get("/api/v1/directories?path=/var", &app.admin_token)
        .await
        .json();
    assert_eq!(
        var["tasks"].as_array().unwrap().len(),
        2,
        "task-c never reported /var"
    );
    let listed = app
        .get("/api/v1/directories?prefix=/", &app.admin_token)
        .await
        .json();
    assert_eq!(
        listed["directories"],
        serde_json::json!([{"path": "/data", "tasks": 3}, {"path": "/var", "tasks": 2}])
    );
    let none = app
        .get("/api/v1/directories?prefix=/v", &app.admin_token)
        .await
        .json();
    assert_eq!(none["directories"].as_array().unwrap().len(), 1);
    app.get("/api/v1/directories?path=/a&prefix=/", &app.admin_token)
        .await
        .assert_error(400, "SMS.9001");
}

#[tokio::test]
async fn changes_on_the_command_line() {
    let (app, _, first) = two_rounds().await;
    let run = |format: &str| {
        let out = crate::helpers::command()
            .args([
                "changes",
                "--from",
                &first,
                "--to",
                "2999-01-01",
                "--format",
                format,
                "--db",
            ])
            .arg(&app.db_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run("table");
    assert!(
        table.contains("1 new, 1 improved, 1 regressed, 0 unchanged; 1 clean"),
        "{table}"
    );
    let b = table.lines().nth(2).unwrap();
    assert!(
        b.starts_with("task-b") && b.contains("regressed") && b.contains("+3"),
        "{table}"
    );
    assert!(run("csv").starts_with("task_id,name,verdict"));
    let json: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(json["counts"]["regressed"], 1);
    // One shape: the command's JSON is the API's for the same query.
    let api = app
        .get(
            &format!("/api/v1/changes?from={}&to=2999-01-01", enc(&first)),
            &app.admin_token,
        )
        .await
        .json();
    assert_eq!(json, api);
    assert!(
        json["tasks"][0]["to"]["received_at"].is_string(),
        "RFC 3339: {json}"
    );
    // `--to` is now unless given, and `now` is a time wherever one is taken.
    for to in [&[][..], &["--to", "now"]] {
        let out = crate::helpers::command()
            .args(["changes", "--from", &first, "--format", "json"])
            .args(to)
            .arg("--db")
            .arg(&app.db_path)
            .output()
            .unwrap();
        let text = crate::helpers::output_text(&out);
        assert!(out.status.success(), "{to:?}: {text}");
        let now: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(now["counts"], json["counts"], "{to:?}");
    }
    let api_now = app
        .get(
            &format!("/api/v1/changes?from={}&to=now", enc(&first)),
            &app.admin_token,
        )
        .await;
    assert_eq!(api_now.status, 200, "{}", api_now.text);
    let out = crate::helpers::command()
        .args([
            "changes",
            "--from",
            "2999-01-01",
            "--to",
            "2001-01-01",
            "--db",
        ])
        .arg(&app.db_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from must not be after --to"));
}

#[tokio::test]
async fn pages_as_of_a_moment_keep_it_in_every_link() {
    let (app, _, first) = two_rounds().await;
    let browser = app
        .login(&app.admin_token)
        .await
        .unwrap_or_else(|r| panic!("{}", r.text));
    let as_of = enc(&first);
    let page = browser.get(&format!("/?as_of={as_of}")).await;
    assert_eq!(page.status, 200);
    let html = page.text;
    assert!(html.contains("id=\"as-of\""), "the banner");
    let kept = sms_audit::http::urlencode(&first);
    assert!(
        html.contains(&format!("/tasks/task-a?as_of={kept}")),
        "{html}"
    );
    assert!(!html.contains("/tasks/task-c"), "task-c had not reported");
    assert!(
        html.contains(&format!("&#38;as_of={kept}")),
        "sort links keep it: {html}"
    );
    assert!(html.contains("id=\"total-tasks\">2<"), "{html}");
    assert!(html.contains("<a href=\"/\">Back to now</a>"));
    // Every figure is as of the moment: the trend's last point ends there (not
    // at the end of its day, which today is now), and the head is the head then.
    let trend_last = html.split("id=\"trend-last\">").nth(1).unwrap();
    let trend_last = &trend_last[..trend_last.find("</p>").unwrap()];
    assert!(
        trend_last.contains(&format!(
            "{first}: 2 tasks reporting, 7 open problems, 0 tasks"
        )),
        "{trend_last}"
    );
    let hash_of = |id: i64| {
        let app = &app;
        async move {
            let upload = app
                .get(&format!("/api/v1/uploads/{id}"), &app.admin_token)
                .await
                .json();
            upload["entry_hash"].as_str().unwrap()[..16].to_string()
        }
    };
    assert!(html.contains(&hash_of(2).await), "the head then");
    assert!(!html.contains(&hash_of(5).await), "not today's head");

    let task = browser
        .get(&format!("/tasks/task-b?as_of={as_of}"))
        .await
        .text;
    assert!(task.contains("id=\"as-of\""));
    assert!(
        task.contains(">1 upload") && !task.contains(">1 uploads"),
        "one upload by then: {task}"
    );
    assert!(task.contains("name=\"as_of\""), "the filter form keeps it");

    let changes = browser
        .get(&format!("/changes?from={as_of}&to=2999-01-01"))
        .await;
    assert_eq!(changes.status, 200);
    assert!(
        changes.text.contains("/compare?a=2&#38;b=4"),
        "{}",
        changes.text
    );
    assert!(changes.text.contains("verdict-regressed"));
    let only = browser
        .get(&format!("/changes?from={as_of}&to=2999-01-01&verdict=new"))
        .await
        .text;
    assert_eq!(only.matches("<tr class=\"verdict-").count(), 1);
    let dirs = browser.get("/directories?path=%2Fdata").await.text;
    assert_eq!(dirs.matches("/tasks/task-").count(), 3);

    for path in [
        "/changes?from=2999-01-01&to=2001-01-01",
        "/changes?verdict=worse",
        "/?as_of=soon",
        "/?trend_since=2026-02-01&trend_until=2026-01-01",
        "/tasks/task-a?as_of=soon",
    ] {
        assert_eq!(browser.get(path).await.status, 400, "{path}");
    }
}

#[tokio::test]
async fn the_changes_page_shows_a_hundred_tasks_a_page() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    for i in 0..101 {
        let body = body_with_problems("/data", i % 3);
        let task = format!("task-{i:03}");
        assert_eq!(app.upload(&task, &agent, &body).await.status, 200);
    }
    let browser = app
        .login(&app.admin_token)
        .await
        .unwrap_or_else(|r| panic!("{}", r.text));
    let first = browser.get("/changes?sort=task").await.text;
    assert_eq!(first.matches("<tr class=\"verdict-new\"").count(), 100);
    assert!(first.contains("1–100 of 101"), "{first}");
    assert!(first.contains("rel=\"next\""));
    let second = browser.get("/changes?sort=task&page=2").await.text;
    assert_eq!(second.matches("<tr class=\"verdict-new\"").count(), 1);
    assert!(second.contains("/tasks/task-100"), "the last task by id");
    assert!(second.contains("101–101 of 101"));
    assert!(
        second.contains("id=\"count-new\""),
        "the counts stay those of all tasks"
    );
    assert_eq!(browser.get("/changes?page=0").await.status, 400);
}

/// An upload without results (`{}`, `[]`, `null`) is "no results" everywhere:
/// never clean, never "improved", a gap in the charts, counted apart.
#[tokio::test]
async fn an_upload_without_results_is_no_results_not_clean() {
    let (app, agent, first) = two_rounds().await;
    // task-a had 1 problem; now it sends nothing; task-b sends `[]`; task-c `null`.
    for (task, body) in [
        ("task-a", "{}"),
        ("task-b", r#"{"consistency_result":[]}"#),
        ("task-c", r#"{"consistency_result":null}"#),
    ] {
        assert_eq!(app.upload(task, &agent, body).await.status, 200, "{task}");
    }
    let path = format!("/api/v1/changes?from={}&to=2999-01-01", enc(&first));
    let changes = app.get(&path, &app.admin_token).await.json();
    assert_eq!(changes["counts"]["no_results"], 3, "{changes}");
    assert_eq!(changes["counts"]["improved"], 0, "not improved: {changes}");
    assert_eq!(changes["counts"]["clean"], 0, "not clean: {changes}");
    for t in changes["tasks"].as_array().unwrap() {
        assert_eq!(t["verdict"], "no_results", "{t}");
        assert_eq!(t["clean"], false, "{t}");
        assert_eq!(t["to"]["result_count"], 0, "{t}");
    }
    let only = format!("{path}&verdict=no_results");
    assert_eq!(
        app.get(&only, &app.admin_token).await.json()["tasks"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // The trend: today no task clean, three with no results.
    let trend = app
        .get("/api/v1/fleet/trend", &app.admin_token)
        .await
        .json();
    let today = trend["days"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(today["tasks_clean"], 0, "{today}");
    assert_eq!(today["tasks_without_results"], 3, "{today}");
    assert_eq!(today["open_problems"], 0, "{today}");
    // The API's tasks, the dashboard, the task page, the upload page and compare.
    let tasks = app.get("/api/v1/tasks", &app.admin_token).await.json();
    assert!(
        tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["latest_result_count"] == 0),
        "{tasks}"
    );
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let dashboard = browser.get("/").await.text;
    assert_eq!(
        dashboard
            .matches("title=\"the latest upload has no results")
            .count(),
        3
    );
    assert!(dashboard.contains("3 tasks with no results"), "{dashboard}");
    let task = browser.get("/tasks/task-a").await.text;
    assert!(
        task.contains(": no results</title>"),
        "a marked gap, not a zero: {task}"
    );
    let upload = browser.get("/uploads/6").await.text;
    assert!(
        upload.contains("badge same\">no results</span>"),
        "{upload}"
    );
    assert!(!upload.contains(">improved</span>"), "{upload}");
    let compare = app
        .get("/api/v1/compare?a=4&b=6", &app.admin_token)
        .await
        .json();
    assert!(compare["totals"]["verdict"].is_null(), "{compare}");
    // And the printed report says so.
    let report = browser.get("/tasks/task-a/report").await.text;
    assert!(
        report.contains("reported no results (an empty upload, not a clean one)"),
        "{report}"
    );
}

/// The task ids a dashboard page lists, in order.
fn listed_tasks(html: &str) -> Vec<String> {
    let rows = html.split("<tbody>").nth(1).unwrap_or_default();
    let rows = rows.split("</tbody>").next().unwrap_or_default();
    let mut ids: Vec<String> = rows
        .split("href=\"/tasks/")
        .skip(1)
        .map(|h| h.split(['"', '?']).next().unwrap().to_string())
        .collect();
    ids.dedup();
    ids
}

/// More tasks than a page (50), uploaded out of id order, some clean, some not.
async fn upload_57_tasks(app: &TestApp) {
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    for i in 0..57u32 {
        let n = (i * 37) % 57;
        let body = match n % 4 {
            0 => r#"{"consistency_result":[{"dir_check":"/data","num_total_files":9,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0}]}"#.to_string(),
            1 => r#"{"consistency_result":[]}"#.to_string(),
            k => body_with_problems("/data", k),
        };
        assert_eq!(
            app.upload(&format!("task-{n:02}"), &agent, &body)
                .await
                .status,
            200
        );
    }
}

/// A new moment's dashboard, newest first, is read without making the fleet
/// (counted where its states lie, its rows read back from the moment): the same
/// rows and cards as the live one, and as the fleet made by another order of
/// the same moment.
#[tokio::test]
async fn a_new_moments_dashboard_newest_first_lists_and_counts_as_the_live_one() {
    let app = TestApp::spawn().await;
    upload_57_tasks(&app).await;
    let browser = app
        .login(&app.admin_token)
        .await
        .unwrap_or_else(|r| panic!("{}", r.text));
    let cards = |html: &str| {
        ["problems", "regressed", "no_results", "clean"].map(|key| card_value(html, key))
    };
    let mut read_back = Vec::new();
    for page in [1, 2] {
        let live = browser.get(&format!("/?page={page}")).await;
        let then = browser
            .get(&format!("/?as_of=2999-01-01&page={page}"))
            .await;
        assert_eq!((live.status, then.status), (200, 200));
        assert_eq!(
            listed_tasks(&then.text),
            listed_tasks(&live.text),
            "page {page}"
        );
        assert_eq!(listed_tasks(&then.text).len(), [50, 7][page - 1]);
        assert_eq!(cards(&then.text), cards(&live.text), "page {page}");
        read_back.push(then.text);
    }
    assert_eq!(
        cards(&read_back[0]),
        ["28", "0", "14", "15"].map(String::from)
    );
    // Another order makes the fleet; newest first then pages it the same.
    let by_task = browser.get("/?as_of=2999-01-01&sort=task").await;
    assert_eq!(by_task.status, 200);
    for page in [1, 2] {
        let from_fleet = browser
            .get(&format!("/?as_of=2999-01-01&page={page}"))
            .await;
        let read_back = &read_back[page - 1];
        assert_eq!(listed_tasks(&from_fleet.text), listed_tasks(read_back));
        assert_eq!(cards(&from_fleet.text), cards(read_back), "page {page}");
    }
}

#[tokio::test]
async fn the_dashboard_as_of_after_every_upload_lists_as_the_live_one_in_every_order() {
    let app = TestApp::spawn().await;
    upload_57_tasks(&app).await;
    let browser = app
        .login(&app.admin_token)
        .await
        .unwrap_or_else(|r| panic!("{}", r.text));
    let mut seen = 0;
    // (By uploads, a moment sorts by the latest upload: counts as of then are
    // only counted for the rows shown.)
    for sort in ["last", "task"] {
        for dir in ["asc", "desc"] {
            for filter in [
                "",
                "&state=problems",
                "&state=clean",
                "&state=no_results",
                "&q=task-1",
            ] {
                for page in [1, 2] {
                    let query = format!("sort={sort}&dir={dir}{filter}&page={page}");
                    let live = browser.get(&format!("/?{query}")).await;
                    let then = browser.get(&format!("/?as_of=2999-01-01&{query}")).await;
                    assert_eq!((live.status, then.status), (200, 200), "{query}");
                    let listed = listed_tasks(&live.text);
                    assert_eq!(listed_tasks(&then.text), listed, "{query}");
                    seen += listed.len();
                }
            }
        }
    }
    // Every task once in each order: 57, 28 with problems, 15 clean, 14 without
    // results, 10 matching "task-1".
    assert_eq!(seen, 4 * (57 + 28 + 15 + 14 + 10));
    // By problems, the most first, then the latest upload first.
    let page = browser
        .get("/?as_of=2999-01-01&sort=problems&dir=desc")
        .await;
    let listed = listed_tasks(&page.text);
    assert_eq!(listed.len(), 50);
    let problems = |task: &str| match task[5..].parse::<u32>().unwrap() % 4 {
        0 | 1 => 0,
        k => k + 1,
    };
    assert!(
        listed
            .windows(2)
            .all(|w| problems(&w[0]) >= problems(&w[1])),
        "{listed:?}"
    );
}

#[tokio::test]
async fn a_comparison_asked_again_is_the_same_until_an_upload_changes_it() {
    let (app, agent, first) = two_rounds().await;
    let ask = |to: &str| format!("/api/v1/changes?from={}&to={to}", enc(&first));
    let before = app.get(&ask("2999-01-01"), &app.admin_token).await.json();
    // Other moments with the same uploads between them: the same comparison,
    // answered with the moments asked.
    let again = app.get(&ask("2998-01-01"), &app.admin_token).await.json();
    assert_eq!(again["to"], "2998-01-01T00:00:00.000Z");
    assert_eq!(
        (&again["counts"], &again["tasks"]),
        (&before["counts"], &before["tasks"])
    );
    // A new upload before the second moment: compared afresh.
    let body = body_with_problems("/data", 0);
    assert_eq!(app.upload("task-d", &agent, &body).await.status, 200);
    let after = app.get(&ask("2999-01-01"), &app.admin_token).await.json();
    assert_eq!(
        after["counts"]["new"],
        before["counts"]["new"].as_i64().unwrap() + 1
    );
    assert_eq!(after["total"], before["total"].as_i64().unwrap() + 1);
}

#[tokio::test]
async fn tasks_as_of_a_moment_carry_their_names_now() {
    let (app, _agent, first) = two_rounds().await;
    // Named after the uploads: a name is the task's, whatever the moment.
    for (task, name) in [("task-c", "gamma"), ("task-a", "alpha")] {
        let task = sms_audit::domain::TaskId::parse(task).unwrap();
        sms_audit::storage::tasks::register_task(&app.write_conn(), &task, Some(name)).unwrap();
    }
    let changes = app
        .get(
            &format!(
                "/api/v1/changes?from={}&to=2999-01-01&sort=task",
                enc(&first)
            ),
            &app.admin_token,
        )
        .await
        .json();
    let names: Vec<(&str, Option<&str>)> = changes["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["task_id"].as_str().unwrap(), t["name"].as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("task-a", Some("alpha")),
            ("task-b", None),
            ("task-c", Some("gamma"))
        ]
    );
    // The dashboard as of the first moment finds a task by its name.
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let page = browser
        .get(&format!("/?as_of={}&q=alph", enc(&first)))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("alpha") && page.text.contains("task-a"));
    assert!(
        !page.text.contains("/tasks/task-b"),
        "task-b has no such name"
    );
}
