//! `/metrics`: the Prometheus text format, parsed with a Prometheus text parser;
//! the optional bearer token.

use prometheus_parse::{Scrape, Value};
use sms_audit::domain::Role;

use crate::fake_upstream::FakeUpstream;
use crate::forwarding::settings;
use crate::helpers::{eventually, TestApp, EXAMPLE, PATIENCE, TASK};

const METRICS_TOKEN: &str = "metrics-token-0123456789abcdef0123456789abcdef";

async fn scrape(app: &TestApp, token: Option<&str>) -> (u16, String, String) {
    let mut request = app.client.get(format!("{}/metrics", app.address));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let reply = request.send().await.unwrap();
    let status = reply.status().as_u16();
    let content_type = reply
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, reply.text().await.unwrap())
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("the Prometheus text parses")
}

/// The value of the sample named `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test]
async fn metrics_count_uploads_requests_the_writer_and_the_database_behind_a_token() {
    let app = TestApp::spawn_with(|c| c.metrics_token = Some(METRICS_TOKEN.into())).await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    for _ in 0..3 {
        assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    }
    assert_eq!(app.upload(TASK, "not-a-token", EXAMPLE).await.status, 401);
    assert_eq!(app.upload(TASK, &agent, "{").await.status, 400);

    // Without the token, or with another, nothing.
    assert_eq!(scrape(&app, None).await.0, 401);
    assert_eq!(scrape(&app, Some("wrong")).await.0, 401);
    assert_eq!(scrape(&app, Some(&app.admin_token)).await.0, 401);
    let (status, content_type, text) = scrape(&app, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let m = parse(&text);

    assert_eq!(
        value(&m, "sms_audit_uploads_accepted_total", &[]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &m,
            "sms_audit_uploads_refused_total",
            &[("error_code", "APIGW.0301")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "sms_audit_uploads_refused_total",
            &[("error_code", "SMS.9001")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&m, "sms_audit_ledger_entries", &[]), Some(3.0));
    // Five upload requests went through the upload route.
    let route = "/v3/tasks/:task_id/consistency-result";
    assert_eq!(
        value(
            &m,
            "sms_audit_http_request_duration_seconds",
            &[("route", route), ("method", "POST")]
        ),
        Some(5.0),
        "{text}"
    );
    // Every stored upload went through a committed batch.
    assert!(value(&m, "sms_audit_writer_batch_uploads", &[]).unwrap() >= 1.0);
    assert!(value(&m, "sms_audit_writer_commit_seconds", &[]).unwrap() >= 1.0);
    assert_eq!(value(&m, "sms_audit_writer_queued_uploads", &[]), Some(0.0));
    assert!(value(&m, "sms_audit_database_bytes", &[]).unwrap() > 0.0);
    assert!(value(&m, "sms_audit_wal_bytes", &[]).is_some());
    assert_eq!(
        value(&m, "sms_audit_last_verification_intact", &[]),
        Some(-1.0)
    );
    assert!(!text.contains(METRICS_TOKEN) && !text.contains(&agent));
}

#[tokio::test]
async fn metrics_show_deliveries_attempts_and_verifications() {
    let fake = FakeUpstream::start().await;
    let s = settings(&fake);
    let app = TestApp::spawn_with(move |c| c.upstream = Some(s)).await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    fake.wait_for("the delivery", |r| !r.is_empty()).await;
    // A verification run, from the page's button.
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let csrf = browser.csrf.clone();
    browser
        .post("/audit/verify", &[("csrf_token", &csrf)])
        .await;
    let m = eventually(
        "a delivery and a verification counted",
        PATIENCE,
        || async {
            let (status, _, text) = scrape(&app, None).await;
            assert_eq!(status, 200, "open without --metrics-token");
            let parsed = parse(&text);
            let delivered = value(&parsed, "sms_audit_deliveries", &[("state", "delivered")]);
            let verified = value(
                &parsed,
                "sms_audit_verification_runs",
                &[("result", "intact")],
            );
            (delivered == Some(1.0) && verified == Some(1.0)).then_some(parsed)
        },
    )
    .await;
    assert_eq!(
        value(
            &m,
            "sms_audit_delivery_attempts_total",
            &[("outcome", "delivered")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&m, "sms_audit_upstream_seconds", &[]), Some(1.0));
    assert_eq!(
        value(&m, "sms_audit_oldest_pending_delivery_seconds", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&m, "sms_audit_last_verification_intact", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "sms_audit_verification_runs", &[("result", "broken")]),
        Some(0.0)
    );
}

#[tokio::test]
async fn metrics_count_proxied_calls_by_status() {
    let fake = FakeUpstream::start().await;
    let app = crate::proxy::proxy_app(&fake, |_| {}, |_| {}).await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    fake.script([crate::fake_upstream::Answer::Status(404)]);
    for _ in 0..2 {
        let reply = app
            .send(
                app.client
                    .get(format!("{}/v3/config", app.address))
                    .header("X-Auth-Token", &agent),
            )
            .await;
        assert!(reply.status == 404 || reply.status == 200, "{}", reply.text);
    }
    eventually("one call each answered 404 and 200", PATIENCE, || async {
        let (_, _, text) = scrape(&app, None).await;
        let m = parse(&text);
        let counted = (
            value(&m, "sms_audit_proxied_calls_total", &[("status", "404")]),
            value(&m, "sms_audit_proxied_calls_total", &[("status", "200")]),
        );
        (counted == (Some(1.0), Some(1.0))).then_some(())
    })
    .await;
}

/// Calls passed on to SMS are counted under `route="proxy"`, apart from paths
/// that name nothing (`(none)`).
#[tokio::test]
async fn proxied_calls_are_counted_as_proxy() {
    let fake = FakeUpstream::start().await;
    let app = crate::proxy::proxy_app(&fake, |_| {}, |_| {}).await;
    let reply = app
        .send(
            app.client
                .get(format!("{}/v3/tasks?limit=1", app.address))
                .header("X-Auth-Token", &app.admin_token),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let junk = app
        .client
        .get(format!("{}/nope", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(junk.status(), 404);
    let text = eventually("both requests in /metrics", PATIENCE, || async {
        let (_, _, text) = scrape(&app, None).await;
        let m = parse(&text);
        let proxied = value(
            &m,
            "sms_audit_http_request_duration_seconds",
            &[("route", "proxy")],
        );
        let none = value(
            &m,
            "sms_audit_http_request_duration_seconds",
            &[("route", "(none)")],
        );
        (proxied == Some(1.0) && none == Some(1.0)).then_some(text)
    })
    .await;
    assert!(
        !text.contains("route=\"/v3/"),
        "not under a pattern: {text}"
    );
}
