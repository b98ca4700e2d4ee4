//! `reconcile`: what SMS holds against what the agents sent, read back from the
//! stand-in SMS, which keeps each task's rounds as SMS does.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use sms_audit::domain::Role;

use crate::fake_upstream::{command_for, output, Answer, FakeUpstream};
use crate::forwarding::forwarding_app;
use crate::helpers::{eventually, TestApp, EXAMPLE, PATIENCE};

/// Uploads the example to each task and waits until SMS accepted each.
async fn delivered_uploads(app: &TestApp, fake: &FakeUpstream, tasks: &[&str]) {
    let agent = app.add_credential("agent", Role::Agent, None, false);
    for task in tasks {
        assert_eq!(app.upload(task, &agent.token, EXAMPLE).await.status, 200);
    }
    fake.wait_for("every upload delivered", |r| r.len() >= tasks.len())
        .await;
    let conn = app.write_conn();
    eventually("the deliveries recorded", PATIENCE, || {
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        std::future::ready((n as usize == tasks.len()).then_some(()))
    })
    .await;
}

async fn reconcile(app: &TestApp, fake: &FakeUpstream, args: &[&str]) -> (i32, String) {
    let mut all = vec!["reconcile"];
    all.extend_from_slice(args);
    output(command_for(fake, &app.db_path, &all)).await
}

/// Exports run `id` and verifies the export offline (`evidence verify`), which
/// must succeed; its output.
async fn export_and_verify(app: &TestApp, fake: &FakeUpstream, id: i64) -> String {
    let file = app.db_path.with_file_name(format!("run-{id}.json"));
    let (id, file) = (id.to_string(), file.to_str().unwrap().to_string());
    let (code, out) = reconcile(app, fake, &["export", "--run", &id, "--out", &file]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = crate::helpers::sms_audit(&app.db_path, &["evidence", "verify", &file]);
    assert_eq!(code, 0, "{out}");
    out
}

fn task<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"] == id)
        .unwrap_or_else(|| panic!("{id} in {report:#}"))
}

#[tokio::test]
async fn each_verdict_is_found_and_the_summary_is_signed_by_the_log() {
    let fake = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |_| {}).await;
    let tasks = ["t-match", "t-missing", "t-foreign", "t-differs"];
    delivered_uploads(&app, &fake, &tasks).await;
    assert_eq!(
        fake.rounds("t-match").len(),
        1,
        "SMS keeps each accepted POST"
    );
    // SMS lost one, holds one more that nobody sent here, and holds other counts
    // for one.
    fake.lose_round("t-missing", 0);
    let foreign = json!({"finished_time": 1_900_000_000_000i64, "check_result": "success",
        "consistency_result": [{"dir_check": "/etc", "num_total_files": 7,
        "num_different_files": 0, "num_target_miss_files": 0, "num_target_more_files": 0}]});
    fake.seed_round("t-foreign", foreign);
    let mut changed = fake.lose_round("t-differs", 0);
    changed["consistency_result"][1]["num_different_files"] = json!(99);
    fake.seed_round("t-differs", changed);

    let (code, out) = reconcile(&app, &fake, &["--json"]).await;
    assert_eq!(code, 1, "a task does not match: {out}");
    let report: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(report["state"], "finished", "{report:#}");
    assert_eq!(
        report["counts"],
        json!({"match": 1, "missing-in-sms": 1, "foreign": 1, "differs": 1, "not-checked": 0})
    );
    assert_eq!(
        task(&report, "t-match")["findings"]["matched"],
        json!([[0, 1]])
    );
    assert_eq!(
        task(&report, "t-missing")["findings"]["missing_in_sms"],
        json!([2])
    );
    assert_eq!(
        task(&report, "t-foreign")["findings"]["foreign"],
        json!([1])
    );
    assert_eq!(
        task(&report, "t-differs")["findings"]["differs"],
        json!([[0, 4]])
    );

    // Every read reached SMS signed with the service's own key pair.
    let reads: Vec<_> = fake
        .received()
        .into_iter()
        .filter(|c| c.method == "GET")
        .collect();
    assert_eq!(reads.len(), 4);
    assert!(reads.iter().all(|c| c.signature_ok && c.body.is_empty()));

    // SMS's answers are kept byte for byte, with their hashes.
    let conn = app.write_conn();
    let (answer, hash): (Vec<u8>, String) = conn
        .query_row(
            "SELECT answer, answer_sha256 FROM reconciliation_tasks WHERE task_id = 't-foreign'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(hash, hex::encode(Sha256::digest(&answer)));
    let held: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(held["result_list"].as_array().unwrap().len(), 2);

    // The summary is a note signed by the log's key, with the counts.
    let note = report["summary_note"].as_str().unwrap();
    let key_text =
        std::fs::read_to_string(format!("{}.signing-key", app.db_path.display())).unwrap();
    let origin = sms_audit::services::checkpoints::default_origin();
    let key = sms_audit::domain::checkpoint::CheckpointKey::parse(&key_text, &origin).unwrap();
    let verifier = signed_note::StandardVerifier::new(&key.verifier_key()).unwrap();
    signed_note::Note::from_bytes(note.as_bytes())
        .unwrap()
        .verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
        .expect("signed by the log");
    for line in [
        "sms-audit reconciliation v1\n",
        "differs 1\n",
        "foreign 1\n",
        "tasks 4\n",
    ] {
        assert!(note.contains(line), "{line:?} in {note}");
    }

    // In words: each task that does not match, with what SMS holds.
    let (code, out) = reconcile(&app, &fake, &["--task", "t-foreign", "--task", "t-match"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("foreign        t-foreign"), "{out}");
    assert!(out.contains("/etc 7/0/0/0"), "{out}");
    assert!(
        !out.contains("t-match\n"),
        "matching tasks are not listed: {out}"
    );
    assert!(
        out.contains("2 tasks: 1 match, 0 missing-in-sms, 1 foreign"),
        "{out}"
    );
}

#[tokio::test]
async fn a_task_unknown_to_sms_is_not_checked_and_says_why() {
    let fake = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |_| {}).await;
    delivered_uploads(&app, &fake, &["t-known"]).await;
    let (code, out) = reconcile(
        &app,
        &fake,
        &["--task", "never-in-sms", "--task", "t-known"],
    )
    .await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("not-checked    never-in-sms"), "{out}");
    assert!(out.contains("task unknown to SMS (404 SMS.6503)"), "{out}");
    assert!(out.contains("1 match"), "{out}");
    // A task id that is not one is refused before SMS is asked.
    let (code, out) = reconcile(&app, &fake, &["--task", "../x"]).await;
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        fake.received().iter().filter(|c| c.method == "GET").count(),
        2
    );
}

#[tokio::test]
async fn a_run_that_sms_stops_is_partial_and_resumes_where_it_stopped() {
    let fake = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |_| {}).await;
    delivered_uploads(&app, &fake, &["t-a", "t-b", "t-c"]).await;
    // The first read is answered; then SMS fails (three tries, as Retry-After 0
    // says); the run stops there.
    fake.script([
        Answer::Ok,
        Answer::RetryAfter(503, 0),
        Answer::RetryAfter(503, 0),
        Answer::RetryAfter(503, 0),
    ]);
    let (code, out) = reconcile(&app, &fake, &["--rate", "5"]).await;
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("is partial (stopped at task t-b: SMS is failing: 503 APIGW.0308)"),
        "{out}"
    );
    assert!(out.contains("1 task so far: 1 match"), "{out}");
    let (code, out) = reconcile(&app, &fake, &["--resume", "--json"]).await;
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(report["run"], 1, "the same run goes on");
    assert_eq!(report["state"], "finished");
    assert_eq!(report["counts"]["match"], 3);
    // t-a was not read again.
    let reads: Vec<String> = fake
        .received()
        .into_iter()
        .filter(|c| c.method == "GET")
        .map(|c| c.task().to_string())
        .collect();
    assert_eq!(reads.iter().filter(|t| *t == "t-a").count(), 1, "{reads:?}");
    let (code, out) = reconcile(&app, &fake, &["--resume"]).await;
    assert_eq!(code, 2, "nothing left to resume: {out}");
    assert!(out.contains("no stopped reconciliation to resume"), "{out}");
}

#[tokio::test]
async fn reads_are_paced_never_a_burst() {
    let fake = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |_| {}).await;
    let tasks = ["p-1", "p-2", "p-3", "p-4", "p-5", "p-6"];
    delivered_uploads(&app, &fake, &tasks).await;
    let (code, out) = reconcile(&app, &fake, &["--rate", "20"]).await;
    assert_eq!(code, 0, "{out}");
    let mut at: Vec<_> = fake
        .received()
        .into_iter()
        .filter(|c| c.method == "GET")
        .map(|c| c.at)
        .collect();
    at.sort();
    assert_eq!(at.len(), 6);
    // One read every 50 ms at the most (a read may arrive a little after its
    // slot, never before).
    let span = at[5] - at[0];
    assert!(span >= std::time::Duration::from_millis(240), "{span:?}");
}

#[tokio::test]
async fn an_exported_run_verifies_offline_and_tampering_is_caught() {
    let fake = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |_| {}).await;
    delivered_uploads(&app, &fake, &["e-1", "e-2"]).await;
    fake.seed_round(
        "e-2",
        json!({"finished_time": 1_900_000_000_000i64,
        "check_result": "failed", "consistency_result": []}),
    );
    assert_eq!(reconcile(&app, &fake, &[]).await.0, 1);
    let file = app.db_path.with_file_name("run-1.json");
    let file_arg = file.to_str().unwrap();
    let (code, out) = reconcile(&app, &fake, &["export", "--run", "1", "--out", file_arg]).await;
    assert_eq!(code, 0, "{out}");
    let export: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(export["format"], "sms-audit-reconciliation/1");
    let vkey = export["verifier_key"].as_str().unwrap().to_string();
    let verify = |path: &std::path::Path| {
        crate::helpers::sms_audit(
            &app.db_path,
            &[
                "evidence",
                "verify",
                path.to_str().unwrap(),
                "--vkey",
                &vkey,
            ],
        )
    };
    let (code, out, err) = verify(&file);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("reconciliation intact: run 1"), "{out}");
    assert!(
        out.contains("2 tasks: 1 match, 0 missing-in-sms, 1 foreign"),
        "{out}"
    );

    // Each change an operator could make after the fact is caught.
    let tampered = |change: &dyn Fn(&mut Value)| {
        let mut copy = export.clone();
        change(&mut copy);
        let path = app.db_path.with_file_name("tampered.json");
        std::fs::write(&path, serde_json::to_vec(&copy).unwrap()).unwrap();
        let (code, out, _) = verify(&path);
        assert_eq!(code, 1, "{out}");
        out
    };
    let out = tampered(&|e| e["tasks"][1]["verdict"] = json!("match"));
    assert!(
        out.contains("summary: it counts 1 match, the export holds 2"),
        "{out}"
    );
    let out = tampered(&|e| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        e["tasks"][0]["answer_base64"] = json!(b64.encode(br#"{"result_list":[]}"#));
    });
    assert!(
        out.contains("task e-1: SMS's answer does not match its hash"),
        "{out}"
    );
    let out = tampered(&|e| {
        e["tasks"].as_array_mut().unwrap().remove(0);
    });
    assert!(out.contains("answers-sha256"), "{out}");
    let out = tampered(&|e| {
        let s = e["summary"]
            .as_str()
            .unwrap()
            .replace("foreign 1", "foreign 0");
        e["summary"] = json!(s);
    });
    assert!(out.contains("not signed by"), "{out}");
    // A run that did not finish has no summary to export.
    let (code, out) = reconcile(&app, &fake, &["export", "--run", "9", "--out", file_arg]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no reconciliation 9"), "{out}");
}

#[tokio::test]
async fn runs_show_in_the_api_as_csv_and_on_the_page_side_by_side() {
    let fake = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |_| {}).await;
    delivered_uploads(&app, &fake, &["v-match", "v-foreign", "v-missing"]).await;
    fake.seed_round(
        "v-foreign",
        json!({"finished_time": 1_900_000_000_000i64,
        "check_result": "failed", "consistency_result": [{"dir_check": "/etc",
        "num_total_files": 7, "num_different_files": 1, "num_target_miss_files": 0,
        "num_target_more_files": 0}]}),
    );
    fake.lose_round("v-missing", 0);
    assert_eq!(reconcile(&app, &fake, &[]).await.0, 1);

    let runs = app
        .get("/api/v1/reconciliation", &app.admin_token)
        .await
        .json();
    let run = &runs["runs"][0];
    assert_eq!(run["id"], 1);
    assert_eq!(run["state"], "finished");
    assert_eq!(run["counts"]["foreign"], 1);
    assert_eq!(run["counts"]["missing-in-sms"], 1);
    assert!(run["summary_note"]
        .as_str()
        .unwrap()
        .starts_with("sms-audit reconciliation v1\n"));

    let page = app
        .get(
            "/api/v1/reconciliation/1/tasks?verdict=foreign",
            &app.admin_token,
        )
        .await
        .json();
    let tasks = page["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{page:#}");
    assert_eq!(tasks[0]["task_id"], "v-foreign");
    let rounds = tasks[0]["sms_rounds"].as_array().unwrap();
    assert_eq!(rounds[0]["finding"], "match");
    assert_eq!(rounds[0]["upload_id"], 2);
    assert_eq!(rounds[1]["finding"], "foreign");
    assert_eq!(rounds[1]["finished_at"], "2030-03-17T17:46:40.000Z");
    assert_eq!(rounds[1]["dirs"][0]["counts"], json!([7, 1, 0, 0]));
    assert_eq!(tasks[0]["uploads"][0]["id"], 2);
    // Paged in task order.
    let first = app
        .get("/api/v1/reconciliation/1/tasks?limit=2", &app.admin_token)
        .await
        .json();
    assert_eq!(first["next_after"], "v-match");
    let rest = app
        .get(
            "/api/v1/reconciliation/1/tasks?limit=2&after=v-match",
            &app.admin_token,
        )
        .await
        .json();
    assert_eq!(rest["tasks"][0]["task_id"], "v-missing");
    assert_eq!(rest["tasks"][0]["uploads"][0]["finding"], "missing-in-sms");
    assert!(rest["next_after"].is_null());
    // Bad asks get clear refusals.
    app.get(
        "/api/v1/reconciliation/1/tasks?verdict=bogus",
        &app.admin_token,
    )
    .await
    .assert_error(400, "SMS.9001");
    app.get("/api/v1/reconciliation/9/tasks", &app.admin_token)
        .await
        .assert_error(404, "APIGW.0101");

    let csv = app
        .get(
            "/api/v1/reconciliation/1/tasks?format=csv",
            &app.admin_token,
        )
        .await;
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "run,task_id,verdict,reason,http_status,answer_sha256,matched,missing_in_sms,foreign,differs");
    assert_eq!(lines.len(), 4);
    assert!(
        lines[1].starts_with("1,v-foreign,foreign,,200,"),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with(",0:2,,1,"), "{}", lines[1]);

    let metrics = app.get("/metrics", &app.admin_token).await.text;
    for line in [
        "sms_audit_reconciliation_tasks{verdict=\"foreign\"} 1",
        "sms_audit_reconciliation_tasks{verdict=\"match\"} 1",
        "sms_audit_reconciliation_tasks{verdict=\"differs\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let html = browser.get("/reconciliation").await;
    assert_eq!(html.status, 200);
    assert!(html.text.contains("Run 1: finished"), "{}", html.text);
    assert!(
        html.text
            .contains("href=\"/reconciliation?run=1&#38;verdict=foreign\">1 foreign</a>"),
        "{}",
        html.text
    );
    assert!(
        html.text.contains("/etc 7/1/0/0"),
        "the foreign round, whole"
    );
    assert!(
        html.text.contains("delivered, not in SMS"),
        "the missing upload"
    );
    let filtered = browser.get("/reconciliation?run=1&verdict=match").await;
    assert!(filtered.text.contains("v-match") && !filtered.text.contains("v-foreign</a>"));
    // The dashboard has a column of the newest run's verdicts.
    let dashboard = browser.get("/").await.text;
    assert!(dashboard.contains(">In SMS</a></th>"), "{dashboard}");
    assert!(
        dashboard.contains("<span class=\"verdict foreign\">foreign</span>"),
        "{dashboard}"
    );
    assert!(dashboard.contains("<span class=\"verdict missing-in-sms\">missing-in-sms</span>"));
    // The task page says where the task stands against SMS.
    let task = browser.get("/tasks/v-missing").await.text;
    assert!(task.contains("id=\"reconciled\""), "{task}");
    assert!(
        task.contains("<span class=\"verdict missing-in-sms\">missing-in-sms</span>"),
        "{task}"
    );
    assert!(task.contains("reconciliation 1</a>"), "{task}");
    let never = browser.get("/tasks/v-match").await.text;
    assert!(never.contains("verdict match"), "{never}");
    assert_eq!(browser.get("/reconciliation?run=7").await.status, 404);
    assert_eq!(
        browser.get("/reconciliation?verdict=nope").await.status,
        400
    );
}

#[tokio::test]
async fn the_page_says_when_there_is_no_run_yet() {
    let app = TestApp::spawn().await;
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let html = browser.get("/reconciliation").await;
    assert_eq!(html.status, 200);
    assert!(html.text.contains("id=\"no-run\""), "{}", html.text);
    let dashboard = browser.get("/").await.text;
    assert!(
        !dashboard.contains("In SMS"),
        "no column before a first run"
    );
    let runs = app
        .get("/api/v1/reconciliation", &app.admin_token)
        .await
        .json();
    assert_eq!(runs["runs"], json!([]));
}

#[tokio::test]
async fn a_run_that_finds_tasks_not_matching_is_announced_once() {
    use sms_audit::services::notify::NotifySettings;
    use sms_audit::services::outbox::policy::RetryPolicy;
    let receiver = crate::notify::Receiver::start(0).await;
    let fake = FakeUpstream::start().await;
    let url = receiver.url.clone();
    let upstream = fake.settings();
    let app = TestApp::spawn_with(move |c| {
        c.upstream = Some(upstream);
        c.notify = Some(NotifySettings {
            urls: vec![url],
            upstream_after: std::time::Duration::from_secs(3600),
            policy: RetryPolicy {
                first: std::time::Duration::from_millis(50),
                cap: std::time::Duration::from_millis(200),
                max_age: std::time::Duration::from_secs(3600),
            },
            timeout: std::time::Duration::from_secs(2),
        });
    })
    .await;
    delivered_uploads(&app, &fake, &["n-match", "n-lost"]).await;
    // A run where everything matches is not announced.
    assert_eq!(reconcile(&app, &fake, &[]).await.0, 0);
    fake.lose_round("n-lost", 0);
    assert_eq!(reconcile(&app, &fake, &[]).await.0, 1);
    let got = eventually("the reconciliation announced", PATIENCE, || {
        let got: Vec<Value> = receiver
            .delivered()
            .into_iter()
            .filter(|m| m["kind"] == "reconciliation")
            .collect();
        std::future::ready((!got.is_empty()).then_some(got))
    })
    .await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["run"], 2);
    assert_eq!(got[0]["counts"]["missing-in-sms"], 1);
    assert_eq!(
        got[0]["tasks"],
        json!([{"task_id": "n-lost", "verdict": "missing-in-sms"}])
    );
    let text = got[0]["text"].as_str().unwrap();
    assert!(
        text.contains("reconciliation 2 with")
            && text.contains("found 1 missing-in-sms: n-lost (missing-in-sms)"),
        "{text}"
    );
    // Announced once, even across a restart.
    let app = app.restart().await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let again = receiver
        .delivered()
        .into_iter()
        .filter(|m| m["kind"] == "reconciliation")
        .count();
    assert_eq!(again, 1);
    drop(app);
}

#[tokio::test]
async fn the_service_reconciles_on_its_own_every_interval() {
    let fake = FakeUpstream::start().await;
    let upstream = fake.settings();
    let app = TestApp::spawn_with(move |c| {
        c.upstream = Some(upstream);
        c.reconcile = Some(sms_audit::services::reconcile::Schedule {
            interval: std::time::Duration::from_millis(300),
            settings: sms_audit::services::reconcile::Settings {
                rate: std::num::NonZeroU32::new(100).unwrap(),
                ..Default::default()
            },
        });
    })
    .await;
    delivered_uploads(&app, &fake, &["s-1", "s-2"]).await;
    fake.lose_round("s-2", 0);
    let run = eventually("a run that sees SMS lost s-2", PATIENCE, || async {
        let runs = app
            .get("/api/v1/reconciliation", &app.admin_token)
            .await
            .json();
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["state"] == "finished" && r["counts"]["missing-in-sms"] == 1)
            .cloned()
    })
    .await;
    assert_eq!(run["counts"]["match"], 1, "{run:#}");
    assert_eq!(run["scope"]["tasks"], json!([]));
    // The summary the service signed verifies as the command's does.
    let id = run["id"].as_i64().unwrap();
    export_and_verify(&app, &fake, id).await;
    // Reads reached SMS signed, and only at the pace asked.
    assert!(fake
        .received()
        .iter()
        .filter(|c| c.method == "GET")
        .all(|c| c.signature_ok));
}

#[test]
fn reconcile_interval_needs_an_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = crate::helpers::sms_audit(
        &dir.path().join("a.db"),
        &["serve", "--reconcile-interval", "1h"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--reconcile-interval needs --upstream-endpoint"),
        "{err}"
    );
}

#[tokio::test]
async fn answers_agents_read_through_the_proxy_are_reconciled_passively() {
    let fake = FakeUpstream::start().await;
    let app = crate::proxy::proxy_app(&fake, |u| u.forward = true, |_| {}).await;
    delivered_uploads(&app, &fake, &["p-match", "p-foreign"]).await;
    let foreign = json!({"finished_time": 1_900_000_000_000i64, "check_result": "success",
        "consistency_result": []});
    fake.seed_round("p-foreign", foreign);
    let reader = app.add_credential("reader", Role::Agent, None, false);
    let read = |task: &str| {
        let url = format!("/v3/tasks/{task}/consistency-result");
        let token = reader.token.clone();
        let app = &app;
        async move { app.get(&url, &token).await }
    };
    let answer = read("p-match").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(read("p-foreign").await.status, 200);
    // A task nobody uploaded here is not reconciled (SMS says 404 anyway).
    assert_eq!(read("p-nobody").await.status, 404);

    let passive = |state: &'static str| {
        let app = &app;
        move || async move {
            let runs = app
                .get("/api/v1/reconciliation", &app.admin_token)
                .await
                .json();
            runs["runs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| {
                    r["kind"] == "passive"
                        && r["state"] == state
                        && r["counts"]["match"] == 1
                        && r["counts"]["foreign"] == 1
                })
                .cloned()
        }
    };
    let run = eventually(
        "a passive run with both reads",
        PATIENCE,
        passive("running"),
    )
    .await;
    assert_eq!(
        run["counts"]["not-checked"], 0,
        "p-nobody is left out: {run:#}"
    );
    assert!(
        run["summary_note"].is_null(),
        "signed only once its day is over"
    );

    // The proxy log keeps the hash of what the agent got, the same the
    // reconciliation stored.
    let calls = app
        .get("/api/v1/proxy-log?path=/v3/tasks/p-match", &app.admin_token)
        .await
        .json();
    let call = &calls["calls"][0];
    let got = hex::encode(Sha256::digest(answer.text.as_bytes()));
    assert_eq!(call["response_sha256"], got.as_str(), "{call:#}");
    assert_eq!(call["response_bytes"], answer.text.len());
    let stored: String = app
        .write_conn()
        .query_row(
            "SELECT answer_sha256 FROM reconciliation_tasks WHERE task_id = 'p-match'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, got);
    // Nothing more was asked of SMS than the agents asked.
    let gets = fake.received().iter().filter(|c| c.method == "GET").count();
    assert_eq!(gets, 3);

    // Once the day is over, the next answer closes the run (signed) and opens
    // the new day's.
    let id = run["id"].as_i64().unwrap();
    app.write_conn()
        .execute(
            "UPDATE reconciliation_runs SET started_at = started_at - 86400000 WHERE id = ?1",
            [id],
        )
        .unwrap();
    assert_eq!(read("p-match").await.status, 200);
    let closed = eventually("the passive run closed", PATIENCE, passive("finished")).await;
    assert_eq!(closed["id"], id);
    let note = closed["summary_note"].as_str().unwrap();
    assert!(note.contains("\nkind passive\n"), "{note}");
    let out = export_and_verify(&app, &fake, id).await;
    assert!(out.contains("1 foreign"), "{out}");
    // The read that closed it is the new day's run's first.
    let runs = app
        .get("/api/v1/reconciliation", &app.admin_token)
        .await
        .json();
    let open = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "passive" && r["state"] == "running")
        .cloned()
        .expect("today's passive run");
    assert_eq!(open["counts"]["match"], 1, "{open:#}");
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let page = browser.get(&format!("/reconciliation?run={id}")).await;
    assert!(
        page.text.contains(": finished, passive</h2>"),
        "{}",
        page.text
    );
    // `reconcile --resume` never takes the open passive run for its own.
    let (code, out) = reconcile(&app, &fake, &["--resume"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no stopped reconciliation to resume"), "{out}");
}

#[tokio::test]
async fn a_delivery_sms_accepted_after_it_was_read_is_not_expected_in_its_answer() {
    let fake = FakeUpstream::start().await;
    let app = forwarding_app(&fake, |_| {}).await;
    delivered_uploads(&app, &fake, &["r-late"]).await;
    fake.lose_round("r-late", 0);
    let conn = app.write_conn();
    let shift = |ms: i64| {
        conn.execute("UPDATE delivery_attempts SET at = at + ?1", [ms])
            .unwrap()
    };
    // As if SMS accepted it only after the read: SMS's answer could not hold it.
    shift(3_600_000);
    let (code, out) = reconcile(&app, &fake, &["--task", "r-late", "--json"]).await;
    assert_eq!(code, 0, "{out}");
    // Accepted before the read: SMS must hold it, and does not.
    shift(-3_600_000);
    let (code, out) = reconcile(&app, &fake, &["--task", "r-late", "--json"]).await;
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(report["counts"]["missing-in-sms"], 1, "{report:#}");
}
