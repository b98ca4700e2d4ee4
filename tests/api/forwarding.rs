//! Live forwarding to a fake SMS endpoint: exact bodies and signatures, order,
//! latest-wins, every retry rule, outages and restarts.

use std::time::Duration;

use rusqlite::Connection;

use sms_audit::domain::Role;
use sms_audit::services::outbox::UpstreamSettings;
use sms_audit::services::upstream::UpstreamAuth;

use crate::fake_upstream::{Answer, FakeUpstream, AK, PROJECT, SK};
use crate::helpers::{body_with_problems, eventually, TestApp, EXAMPLE, PATIENCE, TASK};

pub fn settings(fake: &FakeUpstream) -> UpstreamSettings {
    fake.settings()
}

pub async fn forwarding_app(
    fake: &FakeUpstream,
    adjust: impl FnOnce(&mut UpstreamSettings),
) -> TestApp {
    let mut s = settings(fake);
    adjust(&mut s);
    TestApp::spawn_with(move |c| c.upstream = Some(s)).await
}

/// The deliveries of an upload, as the API shows them.
async fn deliveries(app: &TestApp, id: i64) -> serde_json::Value {
    app.get(&format!("/api/v1/uploads/{id}"), &app.admin_token)
        .await
        .json()["deliveries"]
        .clone()
}

async fn wait_state(app: &TestApp, id: i64, state: &str) -> serde_json::Value {
    let what = format!("upload {id}'s delivery to become {state}");
    eventually(&what, PATIENCE, || async {
        let d = deliveries(app, id).await;
        (d[0]["state"] == state).then_some(d)
    })
    .await
}

#[tokio::test]
async fn uploads_are_forwarded_byte_for_byte_and_signed() {
    let fake = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |_| {}).await;
    let agent = app.add_credential("agent", Role::Agent, None, false);
    let odd_body = "{ \"consistency_result\" : [ ] , \"note\" : \"spacing kept\"\n}";
    assert_eq!(app.upload(TASK, &agent.token, EXAMPLE).await.status, 200);
    assert_eq!(
        app.upload("task-2", &agent.token, odd_body).await.status,
        200
    );

    let got = fake.wait_for("two deliveries", |r| r.len() >= 2).await;
    let by_task = |t: &str| got.iter().find(|c| c.task() == t).unwrap().clone();
    let first = by_task(TASK);
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, format!("/v3/tasks/{TASK}/consistency-result"));
    assert_eq!(first.body, EXAMPLE.as_bytes(), "byte for byte");
    assert_eq!(by_task("task-2").body, odd_body.as_bytes());
    assert!(first.signature_ok, "valid SDK-HMAC-SHA256 signature");
    assert_eq!(
        first.headers["content-type"],
        "application/json;charset=UTF-8"
    );
    assert_eq!(first.headers["x-project-id"], PROJECT);
    assert_eq!(
        first.headers["user-agent"],
        format!("sms-audit/{}", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        !first.headers.contains_key("x-auth-token"),
        "the agent's token is never forwarded"
    );
    assert!(!format!("{:?}", first.headers).contains(&agent.token));

    let d = wait_state(&app, 1, "delivered").await;
    assert_eq!(d[0]["trigger"], "live");
    let attempt = &d[0]["attempts"][0];
    assert_eq!(attempt["http_status"], 200);
    assert_eq!(attempt["trigger"], "live");
    assert_eq!(
        attempt["target_url"],
        format!("{}/v3/tasks/{TASK}/consistency-result", fake.url)
    );
    assert!(attempt["upstream_request_id"]
        .as_str()
        .is_some_and(|s| s.len() == 36));
    assert_eq!(attempt["response_head"], "{}");
}

#[tokio::test]
async fn a_static_token_can_be_used_instead_of_aksk() {
    let fake = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |s| {
        s.auth = UpstreamAuth::Token("static-upstream-token".into())
    })
    .await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    let got = fake.wait_for("one request", |r| !r.is_empty()).await;
    assert_eq!(got[0].headers["x-auth-token"], "static-upstream-token");
    assert!(!got[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn latest_wins_after_an_outage_and_uploads_keep_being_accepted() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Answer::Status(503));
    let app = forwarding_app(&fake, |_| {}).await;
    let t = app.admin_token.clone();
    // During the outage every upload still gets its 200.
    for d in [1, 2, 3] {
        assert_eq!(
            app.upload(TASK, &t, &body_with_problems("/data", d))
                .await
                .status,
            200
        );
    }
    assert_eq!(app.upload("other-task", &t, EXAMPLE).await.status, 200);
    fake.wait_for("attempts during the outage", |r| r.len() >= 2)
        .await;
    assert!(fake.delivered().is_empty());

    fake.set_default(Answer::Ok);
    fake.wait_for("delivery after recovery", |_| fake.delivered().len() >= 2)
        .await;
    let ok = fake.delivered();
    let ours: Vec<_> = ok.iter().filter(|c| c.task() == TASK).collect();
    assert_eq!(ours.len(), 1, "only the newest upload of the task goes out");
    assert_eq!(ours[0].body, body_with_problems("/data", 3).as_bytes());
    assert_eq!(
        wait_state(&app, 3, "delivered").await[0]["state"],
        "delivered"
    );
    let older = wait_state(&app, 1, "superseded").await;
    assert!(older[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("newer upload"));
    assert_eq!(
        wait_state(&app, 2, "superseded").await[0]["state"],
        "superseded"
    );
    assert_eq!(
        wait_state(&app, 4, "delivered").await[0]["state"],
        "delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_committed_together_go_out_latest_wins_in_order_per_task() {
    const TASKS: u32 = 3;
    const EACH: u32 = 20;
    let fake = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |_| {}).await;
    let t = app.admin_token.clone();
    // All at once, so that many are stored by the same group commit.
    let sends = (0..TASKS).flat_map(|task| {
        let (app, t) = (&app, &t);
        (0..EACH).map(move |d| async move {
            app.upload(&format!("task-{task}"), t, &body_with_problems("/data", d))
                .await
                .status
        })
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    let total = i64::from(TASKS * EACH);
    let mut uploads = Vec::new();
    for id in 1..=total {
        let what = format!("upload {id}'s delivery to leave pending");
        let record = eventually(&what, PATIENCE, || async {
            let record = app.get(&format!("/api/v1/uploads/{id}"), &t).await.json();
            (record["deliveries"][0]["state"] != "pending").then_some(record)
        })
        .await;
        assert_eq!(
            record["deliveries"].as_array().unwrap().len(),
            1,
            "{record}"
        );
        uploads.push(record);
    }
    let state = |u: &serde_json::Value| u["deliveries"][0]["state"].as_str().unwrap().to_string();
    assert!(
        uploads.iter().any(|u| state(u) == "superseded"),
        "some uploads were overtaken before they could be sent"
    );
    for task in 0..TASKS {
        let task_id = format!("task-{task}");
        let ours: Vec<_> = uploads.iter().filter(|u| u["task_id"] == task_id).collect();
        assert_eq!(ours.len(), EACH as usize);
        let newest = ours.iter().max_by_key(|u| u["id"].as_i64()).unwrap();
        assert_eq!(
            state(newest),
            "delivered",
            "the newest upload of {task_id} goes out"
        );
        // What SMS got for the task: each delivered upload once, oldest first.
        let sent: Vec<i64> = fake
            .received()
            .iter()
            .filter(|c| c.task() == task_id)
            .map(|c| {
                let body = String::from_utf8(c.body.clone()).unwrap();
                ours.iter().find(|u| u["raw_body"] == body).unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        let mut delivered: Vec<i64> = ours
            .iter()
            .filter(|u| state(u) == "delivered")
            .map(|u| u["id"].as_i64().unwrap())
            .collect();
        delivered.sort();
        assert_eq!(
            sent, delivered,
            "{task_id}: sent once each, in upload order"
        );
        for u in &ours {
            assert!(
                matches!(state(u).as_str(), "delivered" | "superseded"),
                "{u}"
            );
        }
    }
}

#[tokio::test]
async fn deliver_all_sends_every_upload_in_order_per_task() {
    let fake = FakeUpstream::start().await;
    // The first attempt fails: the later uploads of the task must wait for it.
    fake.script([Answer::Status(500)]);
    let app = forwarding_app(&fake, |s| s.deliver_all = true).await;
    for d in 0..5 {
        assert_eq!(
            app.upload(TASK, &app.admin_token, &body_with_problems("/data", d))
                .await
                .status,
            200
        );
    }
    fake.wait_for("five deliveries", |_| fake.delivered().len() >= 5)
        .await;
    let bodies: Vec<Vec<u8>> = fake.delivered().into_iter().map(|c| c.body).collect();
    let expected: Vec<Vec<u8>> = (0..5)
        .map(|d| body_with_problems("/data", d).into_bytes())
        .collect();
    assert_eq!(bodies, expected, "in upload order");
    let d = wait_state(&app, 1, "delivered").await;
    assert_eq!(d[0]["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(d[0]["attempts"][0]["http_status"], 500);
    assert_eq!(d[0]["attempts"][1]["trigger"], "retry");
}

#[tokio::test]
async fn each_retry_rule() {
    let fake = FakeUpstream::start().await;
    fake.script([
        Answer::Drop,
        Answer::Hang(Duration::from_secs(3)),
        Answer::Status(500),
        Answer::RetryAfter(429, 1),
        Answer::RetryAfter(503, 1),
        Answer::Ok,
    ]);
    let app = forwarding_app(&fake, |_| {}).await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    let d = wait_state(&app, 1, "delivered").await;
    let attempts = d[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 6, "{d}");
    assert!(
        attempts[0]["transport_error"].is_string() && attempts[0]["http_status"].is_null(),
        "dropped connection"
    );
    assert!(
        attempts[1]["transport_error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{}",
        attempts[1]
    );
    assert_eq!(attempts[2]["http_status"], 500);
    assert_eq!(attempts[3]["http_status"], 429);
    assert_eq!(attempts[4]["http_status"], 503);
    assert_eq!(attempts[5]["http_status"], 200);
    assert_eq!(attempts[0]["trigger"], "live");
    assert!(attempts[1..].iter().all(|a| a["trigger"] == "retry"));
    // Retry-After: 1 was honoured after the 429 and the 503.
    let got = fake.received();
    assert!(
        got[4].at - got[3].at >= Duration::from_millis(950),
        "{:?}",
        got[4].at - got[3].at
    );
    assert!(got[5].at - got[4].at >= Duration::from_millis(950));
}

#[tokio::test]
async fn client_errors_fail_at_once_keeping_the_sms_error() {
    let fake = FakeUpstream::start().await;
    fake.script([
        Answer::ApiError(400, "SMS.9001"),
        Answer::ApiError(404, "SMS.7703"),
    ]);
    let app = forwarding_app(&fake, |_| {}).await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    assert_eq!(
        app.upload("other", &app.admin_token, EXAMPLE).await.status,
        200
    );
    let a = wait_state(&app, 1, "failed").await;
    let b = wait_state(&app, 2, "failed").await;
    for d in [&a, &b] {
        assert_eq!(
            d[0]["attempts"].as_array().unwrap().len(),
            1,
            "no retry: {d}"
        );
        assert_eq!(d[0]["attempts"][0]["error_msg"], "refused by the fake SMS");
    }
    let codes = [
        a[0]["attempts"][0]["error_code"].clone(),
        b[0]["attempts"][0]["error_code"].clone(),
    ];
    assert!(
        codes.contains(&"SMS.9001".into()) && codes.contains(&"SMS.7703".into()),
        "{codes:?}"
    );
    assert!(a[0]["last_error"].as_str().unwrap().starts_with("SMS."));
    // `failed` is final: the sender reads pending deliveries only.
    assert_eq!(fake.received().len(), 2);
}

#[tokio::test]
async fn deliveries_older_than_the_max_age_are_dead() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Answer::Status(500));
    let app = forwarding_app(&fake, |s| s.policy.max_age = Duration::from_millis(700)).await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    let d = wait_state(&app, 1, "dead").await;
    assert!(d[0]["attempts"].as_array().unwrap().len() >= 2, "{d}");
    // Once dead, no attempt: a later upload's delivery is the sign that the
    // sender has gone round again since.
    let n = fake.received().len();
    assert_eq!(
        app.upload("marker", &app.admin_token, EXAMPLE).await.status,
        200
    );
    fake.wait_for("the later upload's attempt", |got| {
        got.iter().any(|c| c.task() == "marker")
    })
    .await;
    let for_task = fake.received().iter().filter(|c| c.task() == TASK).count();
    assert_eq!(for_task, n, "no more attempts once dead");
}

#[tokio::test]
async fn pending_deliveries_resume_after_a_restart() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Answer::Status(503));
    let app = forwarding_app(&fake, |s| s.deliver_all = true).await;
    for task in ["t-1", "t-2", "t-3"] {
        assert_eq!(
            app.upload(task, &app.admin_token, EXAMPLE).await.status,
            200
        );
    }
    fake.wait_for("attempts before the restart", |r| r.len() >= 3)
        .await;
    let app = app.restart().await;
    fake.set_default(Answer::Ok);
    fake.wait_for("all three after the restart", |_| {
        fake.delivered().len() >= 3
    })
    .await;
    let mut tasks: Vec<String> = fake
        .delivered()
        .iter()
        .map(|c| c.task().to_string())
        .collect();
    tasks.sort();
    assert_eq!(tasks, ["t-1", "t-2", "t-3"]);
    for id in 1..=3 {
        wait_state(&app, id, "delivered").await;
    }
}

#[tokio::test]
async fn without_forward_nothing_is_queued() {
    let fake = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |s| s.forward = false).await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    // Deliveries are queued in the upload's own transaction: none, so none goes.
    assert_eq!(deliveries(&app, 1).await, serde_json::json!([]));
    assert_eq!(app.count("deliveries"), 0);
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn operators_start_replays_through_the_api() {
    let fake = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |s| s.forward = false).await;
    let t = app.admin_token.clone();
    for (task, d) in [("a", 1), ("a", 2), ("b", 3)] {
        assert_eq!(
            app.upload(task, &t, &body_with_problems("/d", d))
                .await
                .status,
            200
        );
    }
    let auditor = app.add_credential("auditor", Role::Auditor, None, false);
    let url = format!("{}/api/v1/replays", app.address);
    let post = |token: String, body: serde_json::Value| {
        app.send(
            app.client
                .post(&url)
                .header("X-Auth-Token", token)
                .json(&body),
        )
    };
    post(auditor.token.clone(), serde_json::json!({}))
        .await
        .assert_error(403, "SMS.9004");
    post(t.clone(), serde_json::json!({"state": "bogus"}))
        .await
        .assert_error(400, "SMS.9001");
    post(t.clone(), serde_json::json!({"since": "yesterday"}))
        .await
        .assert_error(400, "SMS.9001");

    // A long list is refused at once; a repeated task counts once.
    let many: Vec<String> = (0..1001).map(|i| format!("t-{i}")).collect();
    let refused = post(t.clone(), serde_json::json!({"tasks": many}))
        .await
        .assert_error(400, "SMS.9001");
    assert!(refused["error_msg"]
        .as_str()
        .unwrap()
        .contains("at most 1000"));
    let repeated = post(
        t.clone(),
        serde_json::json!({"dry_run": true, "tasks": ["a", "a", "b", "a"]}),
    )
    .await;
    assert_eq!(repeated.status, 200, "{}", repeated.text);
    assert_eq!(
        repeated.json()["tasks"],
        serde_json::json!({"a": 2, "b": 1})
    );

    let preview = post(
        t.clone(),
        serde_json::json!({"dry_run": true, "latest_per_task": true}),
    )
    .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    let preview = preview.json();
    assert_eq!(preview["count"], 2);
    assert_eq!(preview["tasks"], serde_json::json!({"a": 1, "b": 1}));
    assert_eq!(preview["replay_id"], serde_json::Value::Null);
    // A dry run creates no delivery, so nothing can be sent.
    assert_eq!(app.count("deliveries"), 0, "a dry run queues nothing");
    assert!(fake.received().is_empty(), "a dry run sends nothing");

    let started = post(t.clone(), serde_json::json!({"tasks": ["a"]})).await;
    assert_eq!(started.status, 201, "{}", started.text);
    assert_eq!(started.json()["count"], 2);
    fake.wait_for("the replay", |_| fake.delivered().len() >= 2)
        .await;
    let bodies: Vec<Vec<u8>> = fake.delivered().into_iter().map(|c| c.body).collect();
    assert_eq!(
        bodies,
        [1, 2].map(|d| body_with_problems("/d", d).into_bytes()),
        "in order"
    );
    let record = wait_state(&app, 1, "delivered").await;
    assert_eq!(record[0]["trigger"], "replay");
    assert_eq!(record[0]["attempts"][0]["trigger"], "replay");

    // Without an upstream there is nothing to replay to.
    let plain = TestApp::spawn().await;
    let reply = plain
        .send(
            plain
                .client
                .post(format!("{}/api/v1/replays", plain.address))
                .header("X-Auth-Token", &plain.admin_token)
                .json(&serde_json::json!({})),
        )
        .await;
    reply.assert_error(400, "SMS.9001");
}

#[tokio::test]
async fn deliveries_page_shows_health_and_offers_replays_to_operators_only() {
    let fake = FakeUpstream::start().await;
    fake.script([Answer::ApiError(400, "SMS.9001")]);
    let app = forwarding_app(&fake, |_| {}).await;
    let t = app.admin_token.clone();
    assert_eq!(app.upload("a", &t, EXAMPLE).await.status, 200);
    wait_state(&app, 1, "failed").await;
    assert_eq!(app.upload("b", &t, EXAMPLE).await.status, 200);
    wait_state(&app, 2, "delivered").await;

    let browser = app.login(&t).await.ok().unwrap();
    let page = browser.get("/deliveries").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains(&fake.url) && page.text.contains("forwarding every upload"));
    assert!(
        page.text
            .contains("<span class=\"badge good\">healthy</span>"),
        "the last attempt succeeded"
    );
    assert!(page.text.contains("SMS.9001"));
    assert!(
        page.text.contains("id=\"replay\""),
        "operators get the replay form"
    );
    let failed_only = browser.get("/deliveries?state=failed").await;
    let table = &failed_only.text[failed_only.text.find("id=\"deliveries\"").unwrap()..];
    assert!(table.contains("href=\"/uploads/1\"") && !table.contains("href=\"/uploads/2\""));

    let upload_page = browser.get("/uploads/1").await;
    assert!(
        upload_page.text.contains("Deliveries to SMS")
            && upload_page.text.contains("refused by the fake SMS")
    );

    let preview = browser
        .get("/deliveries/replay?state=failed&latest_per_task=true")
        .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    assert!(
        preview
            .text
            .contains("<strong>1</strong> upload of <strong>1</strong> task"),
        "{}",
        preview.text
    );
    let forged = browser
        .post(
            "/deliveries/replay",
            &[
                ("csrf_token", "forged"),
                ("state", "failed"),
                ("latest_per_task", "true"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    let confirmed = browser
        .post(
            "/deliveries/replay",
            &[
                ("csrf_token", &browser.csrf),
                ("state", "failed"),
                ("latest_per_task", "true"),
            ],
        )
        .await;
    assert_eq!(confirmed.status, 303);
    fake.wait_for("the replayed upload", |_| fake.delivered().len() >= 2)
        .await;

    let auditor = app.add_credential("auditor", Role::Auditor, None, false);
    let reader = app.login(&auditor.token).await.ok().unwrap();
    let page = reader.get("/deliveries").await;
    assert_eq!(page.status, 200);
    assert!(
        !page.text.contains("id=\"replay\""),
        "no replay form for auditors"
    );
    assert_eq!(reader.get("/deliveries/replay?state=any").await.status, 403);
}

#[tokio::test]
async fn deliveries_page_counts_failures_since_the_last_success_during_an_outage() {
    let fake = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |_| {}).await;
    let t = app.admin_token.clone();
    let browser = app.login(&t).await.ok().unwrap();
    let health = |page: &str| {
        // The cards, up to the table of deliveries.
        let start = page.find("Oldest pending").expect("the health cards");
        let end = start + page[start..].find("id=\"deliveries\"").expect("the table");
        page[start..end].to_string()
    };
    assert_eq!(app.upload("a", &t, EXAMPLE).await.status, 200);
    wait_state(&app, 1, "delivered").await;

    fake.set_default(Answer::Status(503));
    assert_eq!(app.upload("b", &t, EXAMPLE).await.status, 200);
    assert_eq!(app.upload("c", &t, EXAMPLE).await.status, 200);
    fake.wait_for("failed attempts", |r| r.len() >= 4).await;
    let during = health(&browser.get("/deliveries").await.text);
    let failures: u64 = during
        .split("<span class=\"badge bad\">")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failure count in {during}"));
    assert!(failures >= 2, "{during}");
    assert!(!during.contains("last success never"), "{during}");
    assert!(
        !during.contains("Oldest pending</div><div class=\"value\">none"),
        "{during}"
    );

    fake.set_default(Answer::Ok);
    wait_state(&app, 2, "delivered").await;
    wait_state(&app, 3, "delivered").await;
    let after = health(&browser.get("/deliveries").await.text);
    assert!(after.contains("badge good\">healthy"), "{after}");
    assert!(
        after.contains("Oldest pending</div><div class=\"value\">none"),
        "{after}"
    );
}

#[tokio::test]
async fn a_delivery_in_flight_during_a_crash_is_sent_after_the_restart() {
    let fake = FakeUpstream::start().await;
    fake.set_default(Answer::Hang(Duration::from_secs(30)));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let envs = [
        ("HUAWEICLOUD_SDK_AK", AK),
        ("HUAWEICLOUD_SDK_SK", SK),
        ("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT),
    ];
    let args = ["--forward", "--upstream-endpoint", fake.url.as_str()];
    let mut first = crate::cli::serve_with(&db, &args, &envs);
    let token = first.token.clone().unwrap();
    let client = reqwest::Client::new();
    let status = client
        .post(format!("{}{}", first.address, TestApp::upload_path(TASK)))
        .header("X-Auth-Token", &token)
        .header("Content-Type", "application/json")
        .body(EXAMPLE)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    fake.wait_for("the delivery in flight", |r| !r.is_empty())
        .await;
    first.child.kill().unwrap(); // SIGKILL: a crash, nothing recorded
    first.child.wait().unwrap();

    fake.set_default(Answer::Ok);
    let second = crate::cli::serve_with(&db, &args, &envs);
    fake.wait_for("the delivery after the restart", |_| {
        !fake.delivered().is_empty()
    })
    .await;
    assert_eq!(fake.delivered()[0].body, EXAMPLE.as_bytes());
    let record: serde_json::Value = client
        .get(format!("{}/api/v1/uploads/1", second.address))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let delivery = &record["deliveries"][0];
    assert_eq!(delivery["state"], "delivered", "{record}");
    assert_eq!(
        delivery["attempts"].as_array().unwrap().len(),
        1,
        "the crashed attempt left no record"
    );
}

#[tokio::test]
async fn a_stored_target_that_is_not_configured_is_never_sent_to() {
    // A restored or edited database names a target of its own: without --forward
    // the service still sends pending deliveries, but never to that target.
    let fake = FakeUpstream::start().await;
    let exfil = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |s| s.forward = false).await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    let app = app.stop().await;
    Connection::open(&app.db_path)
        .unwrap()
        .execute(
            "INSERT INTO deliveries (upload_id, task_id, target, trigger, state, created_at, next_attempt_at)
             VALUES (1, ?1, ?2, 'live', 'pending', 0, 0)",
            [TASK, exfil.url.as_str()],
        )
        .unwrap();
    let app = app.start().await;
    let d = wait_state(&app, 1, "failed").await;
    assert!(
        d[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not sent") && e.contains("not a replay target")),
        "{d}"
    );
    assert!(exfil.received().is_empty(), "the planted target got a call");
    assert!(fake.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_outcomes_are_never_dropped_for_a_full_write_queue() {
    use crate::fake_upstream::FakeUpstream;
    use futures_util::StreamExt;

    let sms = FakeUpstream::start().await;
    // A queue of two: uploads and recorded outcomes fight for every slot.
    let app = {
        let mut s = crate::forwarding::settings(&sms);
        s.deliver_all = true;
        s.concurrency = 16;
        TestApp::spawn_with(move |c| {
            c.upstream = Some(s);
            c.writer.queue_capacity = 2;
        })
        .await
    };
    const UPLOADS: usize = 300;
    futures_util::stream::iter(0..UPLOADS)
        .for_each_concurrent(16, |i| {
            let app = &app;
            async move {
                let body = format!(
                    r#"{{"marker":{i},"consistency_result":[{{"dir_check":"/d","num_total_files":1,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0}}]}}"#
                );
                // A full queue answers 503: try again, as an agent would.
                loop {
                    let status = app.upload(&format!("q-{}", i % 10), &app.admin_token, &body).await.status;
                    if status == 200 {
                        break;
                    }
                    assert_eq!(status, 503);
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            }
        })
        .await;
    // Every delivery settled: from then on nothing more is sent.
    eventually(
        "every delivery settled",
        std::time::Duration::from_secs(30),
        || {
            let pending: i64 = app
                .write_conn()
                .query_row(
                    "SELECT count(*) FROM deliveries WHERE state = 'pending'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            let done = pending == 0 && app.count("deliveries") == UPLOADS as i64;
            std::future::ready(done.then_some(()))
        },
    )
    .await;
    let mut bodies: Vec<Vec<u8>> = sms.received().into_iter().map(|c| c.body).collect();
    let sent = bodies.len();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), UPLOADS, "every upload delivered");
    assert_eq!(sent, UPLOADS, "none sent twice");
}
