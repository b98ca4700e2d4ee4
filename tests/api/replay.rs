//! `sms-audit replay`, the real binary, next to a running service, against the
//! fake SMS endpoint: filters, dry run, confirmation, rate, `--to`, failures, and a
//! crash in the middle followed by `--resume`.

use crate::helpers::{eventually, output_text as text, run as run_command, EXAMPLE, TASK};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fake_upstream::{command_for, output, Answer, FakeUpstream};
use crate::helpers::{body_with_problems, TestApp};

fn replay_command(app: &TestApp, fake: &FakeUpstream, args: &[&str]) -> Command {
    let args: Vec<&str> = std::iter::once("replay")
        .chain(args.iter().copied())
        .collect();
    command_for(fake, &app.db_path, &args)
}

async fn run(app: &TestApp, fake: &FakeUpstream, args: &[&str]) -> (i32, String) {
    let cmd = replay_command(app, fake, args);
    output(cmd).await
}

/// Six uploads: tasks a (3), b (2), c (1); ids 1..=6 in that order a,b,a,c,a,b.
async fn seeded() -> TestApp {
    let app = TestApp::spawn().await;
    for (task, d) in [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 5), ("b", 6)] {
        assert_eq!(
            app.upload(task, &app.admin_token, &body_with_problems("/d", d))
                .await
                .status,
            200
        );
    }
    app
}

fn delivered_bodies(fake: &FakeUpstream) -> Vec<Vec<u8>> {
    fake.delivered().into_iter().map(|c| c.body).collect()
}

#[tokio::test]
async fn dry_run_counts_and_sends_nothing() {
    let fake = FakeUpstream::start().await;
    let app = seeded().await;
    // By default each task's newest upload, as the web form and SMS.
    let (code, out) = run(&app, &fake, &["--dry-run"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 uploads of 3 tasks would be sent"), "{out}");
    let (code, out) = run(&app, &fake, &["--dry-run", "--every-upload"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("6 uploads of 3 tasks would be sent"), "{out}");
    assert!(
        out.contains("  a: 3") && out.contains("  b: 2") && out.contains("  c: 1"),
        "{out}"
    );
    assert!(out.contains("dry run: nothing sent"));
    let (code, out) = run(
        &app,
        &fake,
        &["--dry-run", "--task", "a", "--latest-per-task"],
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("1 upload of 1 task"), "{out}");
    // Without --yes and nobody to say yes, nothing is sent either: exit 2, as
    // purge.
    let (code, out) = run(&app, &fake, &[]).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("nothing sent (--yes sends without asking)"),
        "{out}"
    );
    // The command has exited: what it did not send, nobody sends.
    assert!(fake.received().is_empty());
    assert_eq!(app.count("replays"), 0);
}

#[tokio::test]
async fn without_upstream_credentials_a_replay_stores_nothing() {
    let fake = FakeUpstream::start().await;
    let app = seeded().await;
    let without_credentials = |args: &[&str]| {
        let mut cmd = replay_command(&app, &fake, args);
        cmd.env_remove("HUAWEICLOUD_SDK_AK")
            .env_remove("HUAWEICLOUD_SDK_SK")
            .env_remove("SMS_AUDIT_UPSTREAM_TOKEN");
        cmd.output().unwrap()
    };
    // Counting needs no credentials.
    let dry = without_credentials(&["--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    let out = without_credentials(&["--yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no upstream credentials"), "{stderr}");
    assert_eq!(app.count("replays"), 0);
    assert_eq!(app.count("deliveries"), 0);
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn filters_select_the_uploads_sent_in_order() {
    let fake = FakeUpstream::start().await;
    let app = seeded().await;
    let (code, out) = run(
        &app,
        &fake,
        &["--task", "a", "--task", "c", "--every-upload", "--yes"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("4 delivered, 0 failed, 0 dead, 0 pending"),
        "{out}"
    );
    let got = fake.received();
    assert!(got.iter().all(|c| c.signature_ok));
    let a: Vec<Vec<u8>> = got
        .iter()
        .filter(|c| c.task() == "a")
        .map(|c| c.body.clone())
        .collect();
    assert_eq!(
        a,
        [1, 3, 5].map(|d| body_with_problems("/d", d).into_bytes()),
        "task a in upload order"
    );
    assert_eq!(got.iter().filter(|c| c.task() == "c").count(), 1);

    // The latest of each task only.
    let fake2 = FakeUpstream::start().await;
    let (code, out) = run(&app, &fake2, &["--latest-per-task", "--yes"]).await;
    assert_eq!(code, 0, "{out}");
    let mut latest = delivered_bodies(&fake2);
    latest.sort();
    let mut expected = [5, 6, 4]
        .map(|d| body_with_problems("/d", d).into_bytes())
        .to_vec();
    expected.sort();
    assert_eq!(latest, expected);

    // By the state of each upload's last delivery: b's first upload (2) was never sent.
    let fake3 = FakeUpstream::start().await;
    let every = ["--every-upload", "--dry-run"];
    let (_, out) = run(
        &app,
        &fake3,
        &[&["--state", "delivered"][..], &every].concat(),
    )
    .await;
    assert!(
        out.contains("5 uploads of 3 tasks") && out.contains("  b: 1"),
        "{out}"
    );
    let (_, out) = run(&app, &fake3, &["--state", "failed", "--dry-run"]).await;
    assert!(out.contains("0 uploads of 0 tasks"), "{out}");
    // Time filters.
    let (_, out) = run(&app, &fake3, &["--until", "2000-01-01", "--dry-run"]).await;
    assert!(out.contains("0 uploads of 0 tasks"), "{out}");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let (_, out) = run(&app, &fake3, &[&["--since", &today][..], &every].concat()).await;
    assert!(out.contains("6 uploads of 3 tasks"), "{out}");
}

#[tokio::test]
async fn to_sends_elsewhere_and_failures_give_a_non_zero_exit() {
    let configured = FakeUpstream::start().await;
    let elsewhere = FakeUpstream::start().await;
    elsewhere.script([Answer::ApiError(400, "SMS.9001")]);
    let app = seeded().await;
    let (code, out) = run(
        &app,
        &configured,
        &[
            "--task",
            "b",
            "--every-upload",
            "--to",
            &elsewhere.url,
            "--replay-target",
            &elsewhere.url,
            "--yes",
            "--concurrency",
            "1",
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 delivered, 1 failed"), "{out}");
    assert!(configured.received().is_empty());
    assert_eq!(elsewhere.received().len(), 2);
    let record = app.get("/api/v1/uploads/2", &app.admin_token).await.json();
    assert_eq!(record["deliveries"][0]["trigger"], "replay");
    assert_eq!(record["deliveries"][0]["state"], "failed");
    assert_eq!(record["deliveries"][0]["target"], elsewhere.url);
    assert_eq!(record["deliveries"][0]["attempts"][0]["trigger"], "replay");
    assert_eq!(
        record["deliveries"][0]["attempts"][0]["error_code"],
        "SMS.9001"
    );
}

#[tokio::test]
async fn rate_limits_the_sending() {
    let fake = FakeUpstream::start().await;
    let app = seeded().await;
    let (code, out) = run(&app, &fake, &["--rate", "4", "--every-upload", "--yes"]).await;
    assert_eq!(code, 0, "{out}");
    let got = fake.received();
    assert_eq!(got.len(), 6);
    let first = got.iter().map(|c| c.at).min().unwrap();
    let last = got.iter().map(|c| c.at).max().unwrap();
    // 6 sends at 4 per second: at least 5 intervals of 250 ms after the first.
    assert!(
        last - first >= Duration::from_millis(1150),
        "{:?}",
        last - first
    );
}

#[tokio::test]
async fn an_interrupted_replay_resumes_without_sending_twice() {
    let fake = FakeUpstream::start().await;
    // The third upload hangs (past the client timeout) while we crash the replay.
    fake.script([
        Answer::Ok,
        Answer::Ok,
        Answer::Hang(Duration::from_secs(20)),
    ]);
    let app = seeded().await;
    let mut child = replay_command(
        &app,
        &fake,
        &[
            "--yes",
            "--every-upload",
            "--concurrency",
            "1",
            "--upstream-timeout",
            "30",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    fake.wait_for("the third request", |r| r.len() >= 3).await;
    // Both successes are recorded while the third hangs: outcomes are committed
    // in batches just after their sends, so wait for that commit (not a race with
    // the third send, which need not wait for it).
    let recorded = || -> i64 {
        app.write_conn()
            .query_row(
                "SELECT count(*) FROM deliveries WHERE state = 'delivered'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    crate::helpers::eventually("two outcomes recorded", crate::helpers::PATIENCE, || {
        std::future::ready((recorded() >= 2).then_some(()))
    })
    .await;
    assert_eq!(recorded(), 2);
    child.kill().unwrap(); // a crash: no chance to clean up
    child.wait().unwrap();

    let (code, out) = run(&app, &fake, &["--resume"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("6 delivered, 0 failed, 0 dead, 0 pending"),
        "{out}"
    );
    let delivered = delivered_bodies(&fake);
    assert_eq!(delivered.len(), 6, "every upload delivered exactly once");
    let mut unique = delivered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6);
    let (code, out) = run(&app, &fake, &["--resume"]).await;
    assert_eq!(code, 2, "nothing left to resume: {out}");
    assert!(out.contains("no interrupted replay"));
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
    let out = run_command(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_web_replay_is_written_in_chunks_and_sent_whole() {
    use crate::fake_upstream::FakeUpstream;
    use crate::forwarding::forwarding_app;
    use futures_util::StreamExt;

    let sms = FakeUpstream::start().await;
    let app = forwarding_app(&sms, |s| {
        s.forward = false;
        s.concurrency = 8;
    })
    .await;
    const UPLOADS: usize = 2_500; // more than one chunk of 2,000
    let statuses: Vec<u16> = futures_util::stream::iter(0..UPLOADS)
        .map(|i| {
            let app = &app;
            async move {
                app.upload(&format!("chunk-{}", i % 20), &app.admin_token, EXAMPLE)
                    .await
                    .status
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200));
    let reply = app
        .send(
            app.client
                .post(format!("{}/api/v1/replays", app.address))
                .header("X-Auth-Token", &app.admin_token)
                .json(&serde_json::json!({})),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json()["count"], UPLOADS);
    let replay_id = reply.json()["replay_id"].as_i64().unwrap();
    let conn = app.write_conn();
    let (total, created): (i64, i64) = conn
        .query_row(
            "SELECT total, (SELECT count(*) FROM deliveries WHERE replay_id = ?1) FROM replays WHERE id = ?1",
            [replay_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((total, created), (UPLOADS as i64, UPLOADS as i64));
    eventually(
        "every replayed upload delivered",
        std::time::Duration::from_secs(30),
        || std::future::ready((sms.delivered().len() >= UPLOADS).then_some(())),
    )
    .await;
    assert_eq!(sms.delivered().len(), UPLOADS);
}

#[tokio::test]
async fn after_a_replay_its_tasks_are_read_back_and_the_verdicts_printed() {
    let fake = FakeUpstream::start().await;
    let app = seeded().await;
    // SMS also holds a round of task c that nobody sent here.
    fake.seed_round(
        "c",
        serde_json::json!({"finished_time": 1_900_000_000_000i64, "check_result": "success",
            "consistency_result": []}),
    );
    let (code, out) = run(&app, &fake, &["--every-upload", "--yes", "--reconcile"]).await;
    assert_eq!(code, 1, "a task does not match: {out}");
    assert!(out.contains("replay 1: 6 delivered"), "{out}");
    assert!(out.contains("reconciliation 1: reading SMS at"), "{out}");
    assert!(out.contains("foreign        c"), "{out}");
    assert!(
        out.contains("reconciliation 1 finished: 3 tasks: 2 match, 0 missing-in-sms, 1 foreign"),
        "{out}"
    );
    // Only the replayed tasks were read, each once, after every upload was sent.
    let received = fake.received();
    let reads: Vec<&str> = received
        .iter()
        .filter(|c| c.method == "GET")
        .map(|c| c.task())
        .collect();
    assert_eq!(reads.len(), 3, "{reads:?}");
    let last_post = received.iter().rposition(|c| c.method == "POST").unwrap();
    let first_get = received.iter().position(|c| c.method == "GET").unwrap();
    assert!(first_get > last_post);
    // A second replay of a sends its latest upload again: SMS holds it twice, and
    // each delivery is expected once.
    let (code, out) = run(&app, &fake, &["--task", "a", "--yes", "--reconcile"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("reconciliation 2 finished: 1 task: 1 match"),
        "{out}"
    );
    assert_eq!(fake.rounds("a").len(), 4);
}
