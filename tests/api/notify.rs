//! Notifications to a local receiver: one message per event (a regressed upload,
//! a failed delivery, a damaged ledger, SMS failing for a while), each with a
//! `text`, retried when the receiver fails, shown on /deliveries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sms_audit::domain::Role;
use sms_audit::services::notify::NotifySettings;
use sms_audit::services::outbox::policy::RetryPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::fake_upstream::{Answer, FakeUpstream};
use crate::forwarding::settings;
use crate::helpers::{body_with_problems, eventually, TestApp, PATIENCE, TASK};

/// A webhook receiver: records each JSON body with the status it answered; the
/// first `fail_first` requests get 500.
#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<(u16, serde_json::Value)>>>,
}

impl Receiver {
    pub(crate) async fn start(fail_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/sms-audit", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<(u16, serde_json::Value)>>> = Arc::default();
        let shared = got.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() < end + 4 + length {
                            continue;
                        }
                        let body: serde_json::Value =
                            serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap();
                        let status = {
                            let mut got = shared.lock().unwrap();
                            let status = if got.len() < fail_first { 500 } else { 200 };
                            got.push((status, body));
                            status
                        };
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        let _ = stream.write_all(answer.as_bytes()).await;
                        return;
                    }
                });
            }
        });
        Receiver { url, got }
    }

    pub(crate) fn delivered(&self) -> Vec<serde_json::Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

#[tokio::test]
async fn each_event_is_announced_once_with_retries_and_shown_on_deliveries() {
    let receiver = Receiver::start(1).await;
    let fake = FakeUpstream::start().await;
    // The first delivery is refused for good; every later attempt fails.
    fake.script([Answer::ApiError(400, "SMS.6501")]);
    fake.set_default(Answer::Status(503));
    let upstream = settings(&fake);
    let url = receiver.url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.upstream = Some(upstream);
        c.notify = Some(NotifySettings {
            urls: vec![url],
            upstream_after: Duration::from_millis(300),
            policy: RetryPolicy {
                first: Duration::from_millis(50),
                cap: Duration::from_millis(200),
                max_age: Duration::from_secs(3600),
            },
            timeout: Duration::from_secs(2),
        });
    })
    .await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    // Upload 1 (delivery refused: failed), upload 2 of another task with more
    // problems than its first (regressed) whose delivery keeps failing.
    assert_eq!(
        app.upload(TASK, &agent, &body_with_problems("/d", 1))
            .await
            .status,
        200
    );
    assert_eq!(
        app.upload("task-b", &agent, &body_with_problems("/d", 1))
            .await
            .status,
        200
    );
    assert_eq!(
        app.upload("task-b", &agent, &body_with_problems("/d", 9))
            .await
            .status,
        200
    );
    // Damage, then a verification from the page finds it.
    let conn = app.write_conn();
    conn.execute_batch("DROP TRIGGER uploads_no_update")
        .unwrap();
    conn.execute("UPDATE uploads SET task_id = 'moved' WHERE id = 1", [])
        .unwrap();
    drop(conn);
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let csrf = browser.csrf.clone();
    browser
        .post("/audit/verify", &[("csrf_token", &csrf)])
        .await;

    let kinds = [
        "regressed",
        "delivery_failed",
        "verification_broken",
        "upstream_down",
    ];
    let delivered = eventually("one message of each kind", PATIENCE, || {
        let delivered = receiver.delivered();
        let all = kinds
            .iter()
            .all(|k| delivered.iter().any(|m| m["kind"] == *k));
        std::future::ready(all.then_some(delivered))
    })
    .await;
    for k in kinds {
        let of_kind: Vec<_> = delivered.iter().filter(|m| m["kind"] == k).collect();
        assert_eq!(of_kind.len(), 1, "{k}: {delivered:#?}");
        let text = of_kind[0]["text"].as_str().unwrap();
        assert!(text.starts_with("sms-audit: "), "{text}");
    }
    let regressed = delivered.iter().find(|m| m["kind"] == "regressed").unwrap();
    assert_eq!(regressed["task_id"], "task-b");
    assert_eq!(regressed["upload_id"], 3);
    let failed = delivered
        .iter()
        .find(|m| m["kind"] == "delivery_failed")
        .unwrap();
    assert!(failed["text"].as_str().unwrap().contains("400"), "{failed}");
    let broken = delivered
        .iter()
        .find(|m| m["kind"] == "verification_broken")
        .unwrap();
    assert_eq!(broken["first_bad_id"], 1);
    // The receiver's first answer (500) was retried: one more request than messages.
    let all = receiver.got.lock().unwrap().len();
    assert!(
        all > delivered.len(),
        "{all} requests for {} messages",
        delivered.len()
    );
    // Still once each after more scans: a later regression (upload 4) is
    // announced only by a scan that also saw the events above again.
    assert_eq!(
        app.upload("task-b", &agent, &body_with_problems("/d", 20))
            .await
            .status,
        200
    );
    let again = eventually("the later regression", PATIENCE, || {
        let got = receiver.delivered();
        let seen = got.iter().any(|m| m["upload_id"] == 4);
        std::future::ready(seen.then_some(got))
    })
    .await;
    for k in kinds {
        let expected = if k == "regressed" { 2 } else { 1 };
        assert_eq!(
            again.iter().filter(|m| m["kind"] == k).count(),
            expected,
            "{k}"
        );
    }
    let page = browser.get("/deliveries").await;
    assert!(page.text.contains("id=\"notifications\""), "{}", page.text);
    assert!(page.text.contains("verification_broken"));
    // The webhook's path (often its secret) is not shown, to auditors either.
    let shown = receiver
        .url
        .trim_end_matches("/hooks/sms-audit")
        .to_string()
        + "/…";
    assert!(page.text.contains(&shown), "{}", page.text);
    assert!(!page.text.contains("/hooks/sms-audit"));
}

#[tokio::test]
async fn a_stored_url_that_is_not_configured_is_never_sent_to() {
    let receiver = Receiver::start(0).await;
    let planted = Receiver::start(0).await;
    let url = receiver.url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.notify = Some(NotifySettings {
            urls: vec![url],
            upstream_after: Duration::from_secs(60),
            policy: RetryPolicy::default(),
            timeout: Duration::from_secs(2),
        });
    })
    .await;
    let conn = app.write_conn();
    conn.execute_batch(&format!(
        "INSERT INTO notifications (id, event, kind, text, payload, created_at)
           VALUES (1, 'planted', 'regressed', 'x', '{{\"text\":\"x\"}}', 0);
         INSERT INTO notification_sends (notification_id, url, state, created_at, next_attempt_at)
           VALUES (1, '{}', 'pending', 0, 0), (1, '{}', 'pending', 0, 0);",
        planted.url, receiver.url
    ))
    .unwrap();
    let state_of = |url: &str| -> (String, Option<String>) {
        conn.query_row(
            "SELECT state, last_error FROM notification_sends WHERE url = ?1",
            [url],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    eventually("both sends to be settled", PATIENCE, || {
        let settled =
            state_of(&planted.url).0 != "pending" && state_of(&receiver.url).0 != "pending";
        std::future::ready(settled.then_some(()))
    })
    .await;
    let (state, error) = state_of(&planted.url);
    assert_eq!(state, "failed");
    assert!(error.unwrap().contains("--notify-url"));
    assert!(planted.got.lock().unwrap().is_empty());
    assert_eq!(state_of(&receiver.url).0, "delivered");
    assert_eq!(receiver.delivered().len(), 1);
}
