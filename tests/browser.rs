//! A real browser: headless Chromium driven through ChromeDriver (Debian's
//! `chromium` and `chromium-driver`) logs in and looks at the dashboard, a task, an
//! upload and a comparison, as a person would. Screenshots go to
//! `target/screenshots/`.
//!
//! A second test visits every page with data at 1400 and 390 px wide and
//! measures what a reader sees: no sideways scroll, no timestamp broken over two
//! lines, the dashboard's task table on the first screen, round chart ticks, and
//! no serious or critical WCAG 2.1 AA violation found by axe-core.
//!
//! Needs the two programs and axe-core (npm), so it is ignored by a plain
//! `cargo test`; `.ci/run` installs them and runs
//! `cargo test --test browser -- --ignored` (axe-core from `AXE_CORE_JS`, else
//! `target/axe/node_modules/axe-core/axe.min.js`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

#[path = "api/fake_upstream.rs"]
#[allow(dead_code)]
mod fake_upstream;
#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
use sms_audit::domain::{Role, TaskId};
use sms_audit::services::proxy::ProxySettings;
use sms_audit::storage::credentials::{self, KeyPair, NewCredential};
use sms_audit::{Application, ServeConfig};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn browser() -> (Driver, Client) {
    browser_with(&[]).await
}

/// A browser with more command-line switches (e.g. dark mode).
async fn browser_with(extra: &[&str]) -> (Driver, Client) {
    let port = free_port();
    let driver = Driver(
        Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (Debian package chromium-driver)"),
    );
    let profile = tempfile::tempdir().unwrap().keep();
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
    ]
    .iter()
    .chain(extra)
    .map(|a| a.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": args
        }
    });
    let caps: fantoccini::wd::Capabilities = caps.as_object().unwrap().clone();
    let mut last_error = None;
    for _ in 0..50 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("chromedriver did not start: {last_error:?}");
}

async fn upload(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    task: &str,
    body: serde_json::Value,
) {
    let answer = client
        .post(format!("{base}/v3/tasks/{task}/consistency-result"))
        .header("X-Auth-Token", token)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status();
    assert_eq!(status, 200, "{task}: {}", answer.text().await.unwrap());
}

fn result(dir: &str, total: u32, different: u32, missing: u32) -> serde_json::Value {
    serde_json::json!({"dir_check": dir, "num_total_files": total, "num_different_files": different,
                       "num_target_miss_files": missing, "num_target_more_files": 0})
}

async fn screenshot(client: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn count(client: &Client, css: &str) -> usize {
    client.find_all(Locator::Css(css)).await.unwrap().len()
}

/// Types `token` into the open login page, submits it, and waits for the dashboard.
async fn submit_login(client: &Client, token: &str) {
    client
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    click(client, Locator::Css("form[action='/login'] button")).await;
    client
        .wait()
        .for_element(Locator::Id("tasks"))
        .await
        .unwrap();
}

async fn click(client: &Client, locator: Locator<'_>) {
    client.find(locator).await.unwrap().click().await.unwrap();
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver; run with --ignored"]
async fn a_person_logs_in_and_reads_the_history() {
    // A seeded service.
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new(dir.path().join("audit.db"));
    config.listen = "127.0.0.1:0".into();
    config.handle_signals = false;
    let app = Application::build(config.clone()).await.unwrap();
    let admin = app.admin_token().unwrap().to_string();
    let base = format!("http://{}", app.address());
    tokio::spawn(app.run_until_stopped());
    let conn = rusqlite::Connection::open(&config.db).unwrap();
    let auditor = credentials::add(
        &conn,
        NewCredential {
            name: "auditor-anna",
            role: Role::Auditor,
            tasks: None,
            key_pair: KeyPair::None,
        },
    )
    .unwrap();
    sms_audit::storage::tasks::register_task(
        &conn,
        &TaskId::parse("web-01").unwrap(),
        Some("Web server <01>"),
    )
    .unwrap();
    let http = reqwest::Client::new();
    for (different, missing) in [(9, 3), (5, 2), (2, 0), (0, 0)] {
        upload(
            &http,
            &base,
            &admin,
            "web-01",
            serde_json::json!({"consistency_result": [
            result("/srv/www", 1200, different, missing), result("/etc", 300, 0, 0),
            result("<script>alert(1)</script>", 1, 0, 0)]}),
        )
        .await;
    }
    for (different, missing) in [(0, 0), (4, 1)] {
        upload(
            &http,
            &base,
            &admin,
            "db-02",
            serde_json::json!({"consistency_result": [
            result("/var/lib/mysql", 800, different, missing)]}),
        )
        .await;
    }

    let (_driver, client) = browser().await;
    client.goto(&format!("{base}/")).await.unwrap();
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/login"),
        "sent to the login page"
    );
    submit_login(&client, &auditor.token).await;

    // Dashboard.
    assert_eq!(text_of(&client, "#total-tasks").await, "2");
    assert_eq!(text_of(&client, "#total-uploads").await, "6");
    let tasks = text_of(&client, "#tasks").await;
    assert!(
        tasks.contains("web-01") && tasks.contains("Web server <01>"),
        "{tasks}"
    );
    assert!(
        tasks.contains("db-02") && tasks.contains("regressed"),
        "{tasks}"
    );
    assert_eq!(count(&client, "#tasks svg.spark").await, 2);
    screenshot(&client, "dashboard").await;

    // Task page, reached by clicking.
    click(&client, Locator::LinkText("web-01")).await;
    client
        .wait()
        .for_element(Locator::Css("figure.chart"))
        .await
        .unwrap();
    assert_eq!(count(&client, "figure.chart polyline").await, 4);
    assert_eq!(count(&client, "#uploads tbody tr").await, 4);
    screenshot(&client, "task").await;

    // Pick two uploads and compare them.
    click(&client, Locator::Css("input[name='a'][value='1']")).await;
    click(&client, Locator::Css("input[name='b'][value='4']")).await;
    click(&client, Locator::Css("#compare-form button")).await;
    client
        .wait()
        .for_element(Locator::Id("comparison"))
        .await
        .unwrap();
    let comparison = text_of(&client, "#comparison").await;
    assert!(
        comparison.contains("/srv/www") && comparison.contains("improved"),
        "{comparison}"
    );
    assert!(
        comparison.contains("<script>alert(1)</script>"),
        "shown as text: {comparison}"
    );
    screenshot(&client, "compare").await;

    // Upload page.
    client.goto(&format!("{base}/uploads/4")).await.unwrap();
    let meta = text_of(&client, "#metadata").await;
    assert!(
        meta.contains("admin") && meta.contains("token") && meta.contains("127.0.0.1"),
        "{meta}"
    );
    let raw = text_of(&client, "#raw-body").await;
    // The bytes as stored, not re-formatted.
    assert!(
        raw.contains("{\"consistency_result\":[{\"dir_check\":\"/srv/www\""),
        "{raw}"
    );
    screenshot(&client, "upload").await;

    // The fleet: the trend on the dashboard, the dashboard as of a moment.
    client.goto(&format!("{base}/")).await.unwrap();
    // Open problems; tasks reporting, clean and with no results.
    assert_eq!(count(&client, "figure.chart polyline").await, 4);
    assert!(
        text_of(&client, "#trend-last")
            .await
            .contains("2 tasks reporting"),
        "today counts both tasks"
    );
    client
        .find(Locator::Css("input[name='as_of']"))
        .await
        .unwrap()
        .send_keys("2001-01-01")
        .await
        .unwrap();
    click(&client, Locator::Css("#task-filters button")).await;
    client
        .wait()
        .for_element(Locator::Id("as-of"))
        .await
        .unwrap();
    assert!(text_of(&client, "#as-of")
        .await
        .contains("2001-01-01T00:00:00.000Z"));
    assert_eq!(
        count(&client, "#tasks").await,
        1,
        "the task table, not the first-use help"
    );
    assert_eq!(
        count(&client, "#tasks tbody tr").await,
        0,
        "no task had reported"
    );
    screenshot(&client, "dashboard-as-of").await;

    // What changed over the last 7 days: both tasks are new.
    client.goto(&format!("{base}/changes")).await.unwrap();
    assert_eq!(count(&client, "#changes tbody tr").await, 2);
    assert!(text_of(&client, "#count-new").await.contains('2'));
    assert!(
        text_of(&client, "#count-clean").await.contains('1'),
        "web-01's latest is clean"
    );
    click(&client, Locator::Css("#count-regressed")).await;
    client
        .wait()
        .for_element(Locator::Id("no-changes"))
        .await
        .unwrap();
    screenshot(&client, "changes").await;

    // One directory across tasks, found by its prefix.
    client
        .goto(&format!("{base}/directories?prefix=%2Fsrv"))
        .await
        .unwrap();
    click(&client, Locator::LinkText("/srv/www")).await;
    client
        .wait()
        .for_element(Locator::Id("directory-tasks"))
        .await
        .unwrap();
    assert_eq!(count(&client, "#directory-tasks tbody tr").await, 1);
    assert!(text_of(&client, "#directory-tasks")
        .await
        .contains("web-01"));
    client
        .goto(&format!("{base}/directories?prefix=%3C"))
        .await
        .unwrap();
    assert!(
        text_of(&client, "#directory-list")
            .await
            .contains("<script>alert(1)</script>"),
        "shown as text"
    );
    screenshot(&client, "directories").await;

    // No script ran anywhere: there is no alert to read.
    assert!(client.get_alert_text().await.is_err());
    client.close().await.unwrap();
}

/// axe-core's source, to inject into each page.
fn axe_source() -> String {
    let path = std::env::var("AXE_CORE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/axe/node_modules/axe-core/axe.min.js")
        });
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core at {} ({e}): npm install --prefix target/axe axe-core@4",
            path.display()
        )
    })
}

/// What the page measures in the browser: sideways scroll, timestamps in tables
/// broken over lines, the chart ticks, where the task table starts.
const MEASURE: &str = r#"
const doc = document.documentElement;
const stamp = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g;
const wrapped = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const node = walker.currentNode;
  if (!node.parentElement.closest('td, th')) continue;
  for (const m of node.textContent.matchAll(stamp)) {
    const range = document.createRange();
    range.setStart(node, m.index);
    range.setEnd(node, m.index + m[0].length);
    const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
    if (tops.size > 1) wrapped.push(m[0]);
  }
}
const tasks = document.getElementById('tasks');
return {
  scroll_width: doc.scrollWidth,
  client_width: doc.clientWidth,
  wrapped,
  ticks: [...document.querySelectorAll('figure.chart')].map(f =>
    [...f.querySelectorAll('.y-tick')].map(t => t.textContent)),
  tasks_top: tasks ? tasks.getBoundingClientRect().top + window.scrollY : null,
};
"#;

/// Runs axe-core (WCAG 2.0/2.1 A and AA rules) on the page; its serious and
/// critical violations, as "rule: nodes".
const AXE_RUN: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
                    resultTypes: ['violations'] })
  .then(r => done(r.violations
      .filter(v => v.impact === 'serious' || v.impact === 'critical')
      .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' + n.failureSummary).join(' | '))))
  .catch(e => done(['axe failed: ' + e]));
"#;

/// Injects axe-core into the page and fails on any serious or critical violation.
async fn assert_axe_clean(client: &Client, axe: &str, page: &str) {
    client.execute(axe, vec![]).await.unwrap();
    let violations = client.execute_async(AXE_RUN, vec![]).await.unwrap();
    assert_eq!(
        violations.as_array().map(Vec::len),
        Some(0),
        "{page}: axe-core: {violations:#}"
    );
}

/// A tick label as a number: `2,500`, `250k`, `1.5M`.
fn tick_value(label: &str) -> f64 {
    let label = label.replace(',', "");
    let (number, unit) = match label.chars().last() {
        Some('k') => (&label[..label.len() - 1], 1e3),
        Some('M') => (&label[..label.len() - 1], 1e6),
        Some('B') => (&label[..label.len() - 1], 1e9),
        _ => (label.as_str(), 1.0),
    };
    number
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("{label}: a number"))
        * unit
}

/// The ticks of one chart start at 0 and rise by 1, 2, 2.5 or 5 times a power of ten.
fn assert_round_ticks(page: &str, labels: &[String]) {
    let values: Vec<f64> = labels.iter().map(|l| tick_value(l)).collect();
    assert!(values.len() >= 2, "{page}: ticks {labels:?}");
    assert_eq!(values[0], 0.0, "{page}: ticks {labels:?}");
    let step = values[1];
    let mut mantissa = step;
    while mantissa >= 10.0 {
        mantissa /= 10.0;
    }
    assert!(
        [1.0, 2.0, 2.5, 5.0]
            .iter()
            .any(|m| (m - mantissa).abs() < 1e-9),
        "{page}: step {step} of {labels:?}"
    );
    for (k, v) in values.iter().enumerate() {
        assert!((v - step * k as f64).abs() < 1e-6, "{page}: {labels:?}");
    }
}

#[tokio::test]
#[ignore = "needs chromium, chromedriver and axe-core; run with --ignored"]
async fn every_page_reads_at_a_glance_at_two_widths_and_passes_axe() {
    let axe = axe_source();
    // A fake SMS to forward to and pass calls on to: deliveries and the proxy
    // log have rows to show.
    let sms = fake_upstream::FakeUpstream::start().await;
    sms.script([fake_upstream::Answer::Status(503)]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new(dir.path().join("audit.db"));
    config.listen = "127.0.0.1:0".into();
    config.handle_signals = false;
    config.upstream = Some(sms.settings());
    config.proxy = Some(ProxySettings {
        log_bodies: true,
        ..ProxySettings::default()
    });
    let app = Application::build(config.clone()).await.unwrap();
    let admin = app.admin_token().unwrap().to_string();
    let base = format!("http://{}", app.address());
    tokio::spawn(app.run_until_stopped());

    // Many tasks, long paths, a million files, and series that coincide
    // (missing and extra equal in every upload).
    let http = reqwest::Client::new();
    let long = "/data/projects/2026/customer-migration-wave-03/application-servers/app-cluster-07/var/lib/storage";
    for t in 0..60u32 {
        let task = host(t);
        for (k, (different, both)) in [(40, 7), (25, 7), (t % 4 * 5, t % 3)].iter().enumerate() {
            let total = 940_000 + t * 1_000 + k as u32 * 33;
            let body = if t == 7 && k == 2 {
                serde_json::json!({"consistency_result": []})
            } else {
                serde_json::json!({"consistency_result": [
                    {"dir_check": long, "num_total_files": total, "num_different_files": different,
                     "num_target_miss_files": both, "num_target_more_files": both},
                    {"dir_check": format!("{long}/tenant-{t:03}/objects/archive"), "num_total_files": 12_345,
                     "num_different_files": 0, "num_target_miss_files": 0, "num_target_more_files": 0}]})
            };
            upload(&http, &base, &admin, &task, body).await;
        }
    }
    // Calls passed on to SMS: with a body and without, answered and refused.
    for (method, path, body) in [
        ("GET", "/v3/tasks?limit=10".to_string(), ""),
        (
            "PUT",
            format!("/v3/tasks/{}", host(1)),
            r#"{"name":"renamed"}"#,
        ),
        ("GET", "/v3/sources/no-such-server".to_string(), ""),
    ] {
        let answer = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("X-Auth-Token", &admin)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        // Passed on and answered by the fake (its first answer may be the 503
        // scripted for a delivery): never refused by sms-audit itself.
        assert_ne!(answer.status(), 401, "{method} {path}");
    }
    // A refused upload, for the rejection log.
    let refused = http
        .post(format!("{base}/v3/tasks/host-00/consistency-result"))
        .header("X-Auth-Token", "not-a-token")
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let (_driver, client) = browser().await;
    client.goto(&format!("{base}/login")).await.unwrap();
    assert_axe_clean(&client, &axe, "login").await;
    screenshot(&client, "login").await;
    submit_login(&client, &admin).await;

    // Keyboard focus is visible.
    client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("\u{E004}")
        .await
        .unwrap();
    let outline = client
        .execute(
            "const s = getComputedStyle(document.activeElement); return s.outlineStyle + ' ' + s.outlineWidth;",
            vec![],
        )
        .await
        .unwrap();
    let outline = outline.as_str().unwrap().to_string();
    assert!(
        !outline.starts_with("none") && !outline.ends_with(" 0px"),
        "the focused element shows a ring: {outline}"
    );

    seed_reconciliation(&config.db, &sms.url, long);

    let long_q = urlencode(long);
    let pages: Vec<(&str, String)> = vec![
        ("dashboard", "/".into()),
        ("dashboard-problems", "/?state=problems".into()),
        ("dashboard-as-of-2001", "/?as_of=2001-01-01".into()),
        ("task", format!("/tasks/{}", host(1))),
        ("task-dir", format!("/tasks/{}?dir={long_q}", host(2))),
        ("task-no-results", format!("/tasks/{}", host(7))),
        ("upload", "/uploads/5".into()),
        ("compare", "/compare?a=4&b=6".into()),
        ("compare-one-side", "/compare?a=4".into()),
        ("changes", "/changes".into()),
        ("directories", "/directories".into()),
        ("directory", format!("/directories?path={long_q}")),
        ("deliveries", "/deliveries".into()),
        ("proxy", "/proxy".into()),
        ("audit", "/audit".into()),
        ("reconciliation", "/reconciliation".into()),
        ("report", format!("/tasks/{}/report", host(1))),
        ("not-found", "/tasks/no-such-task".into()),
    ];
    for (width, height) in [(1400u32, 1000u32), (390, 844), (2560, 1440)] {
        client.set_window_size(width, height).await.unwrap();
        for (name, path) in &pages {
            client.goto(&format!("{base}{path}")).await.unwrap();
            let page = format!("{name} at {width} px");
            let m = client.execute(MEASURE, vec![]).await.unwrap();
            let (scroll, client_width) = (
                m["scroll_width"].as_u64().unwrap(),
                m["client_width"].as_u64().unwrap(),
            );
            assert!(
                scroll <= client_width,
                "{page}: the page scrolls sideways ({scroll} > {client_width} px)"
            );
            assert_eq!(
                m["wrapped"].as_array().unwrap().len(),
                0,
                "{page}: timestamps broken over two lines: {}",
                m["wrapped"]
            );
            for chart in m["ticks"].as_array().unwrap() {
                let labels: Vec<String> = chart
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l.as_str().unwrap().to_string())
                    .collect();
                assert_round_ticks(&page, &labels);
            }
            if *name == "dashboard" && width == 1400 {
                let top = m["tasks_top"].as_f64().expect("the task table");
                assert!(top < 1000.0, "{page}: the task table starts at {top} px");
            }
            if width == 1400 {
                assert_axe_clean(&client, &axe, &page).await;
            }
            screenshot(&client, &format!("{name}-{width}")).await;
            if name.starts_with("dashboard") || name.starts_with("task") {
                client
                    .execute(
                        "document.querySelector('.charts, #no-history')?.scrollIntoView()",
                        vec![],
                    )
                    .await
                    .unwrap();
                screenshot(&client, &format!("{name}-{width}-charts")).await;
            }
        }
    }

    // What a reader reads on some of them.
    client.set_window_size(1400, 1000).await.unwrap();
    client.goto(&format!("{base}/")).await.unwrap();
    for card in ["problems", "regressed", "no_results", "clean"] {
        assert_eq!(count(&client, &format!("#card-{card}")).await, 1, "{card}");
    }
    assert_eq!(text_of(&client, "#card-no_results .value").await, "1");
    click(&client, Locator::Css("#card-no_results")).await;
    client
        .wait()
        .for_element(Locator::Css("#card-no_results.selected"))
        .await
        .unwrap();
    assert_eq!(count(&client, "#tasks tbody tr").await, 1);
    assert!(text_of(&client, "#tasks").await.contains("host-07"));
    client
        .goto(&format!("{base}/tasks/{}", host(1)))
        .await
        .unwrap();
    let legend = text_of(&client, "figure.chart .legend").await;
    assert!(
        legend.contains("missing on target") && legend.contains("extra on target"),
        "{legend}"
    );
    let dashes: Vec<String> = {
        let mut found = Vec::new();
        for line in client
            .find_all(Locator::Css("figure.chart polyline"))
            .await
            .unwrap()
        {
            found.push(
                line.attr("stroke-dasharray")
                    .await
                    .unwrap()
                    .unwrap_or_default(),
            );
        }
        found
    };
    assert!(
        dashes.len() >= 3 && dashes[1] != dashes[2],
        "coinciding series differ in dash: {dashes:?}"
    );
    assert!(count(&client, "figure.chart rect.hover title").await > 0);
    client
        .goto(&format!("{base}/directories?path={long_q}"))
        .await
        .unwrap();
    assert_eq!(
        count(&client, "details.directories[open]").await,
        0,
        "the list folds away once a path is chosen"
    );
    client.goto(&format!("{base}/proxy")).await.unwrap();
    assert!(count(&client, "#proxy-calls .status").await >= 3);
    let request_bodies = client
        .find_all(Locator::XPath(
            "//table[@id='proxy-calls']//summary[text()='Request body']",
        ))
        .await
        .unwrap()
        .len();
    assert_eq!(
        request_bodies, 1,
        "a request body toggle only where there is a body (the PUT's)"
    );
    client.goto(&format!("{base}/audit")).await.unwrap();
    let rejections = text_of(&client, "#rejections tbody").await;
    assert!(
        rejections.contains("APIGW.0301") && rejections.len() > "APIGW.0301".len() + 40,
        "the message, not only the code: {rejections}"
    );
    client
        .goto(&format!("{base}/tasks/no-such-task"))
        .await
        .unwrap();
    assert_eq!(
        count(&client, "header.top nav").await,
        1,
        "an error page keeps the navigation"
    );
    client.goto(&format!("{base}/compare?a=4")).await.unwrap();
    assert!(text_of(&client, "main")
        .await
        .contains("Pick both uploads to compare"));
    doc_images(&client, &base).await;
    client.close().await.unwrap();

    // Dark mode, where the system asks for it: still AA.
    let (_dark_driver, dark) = browser_with(&[
        "--blink-settings=preferredColorScheme=0",
        "--window-size=1400,1000",
    ])
    .await;
    dark.goto(&format!("{base}/login")).await.unwrap();
    submit_login(&dark, &admin).await;
    let is_dark = dark
        .execute(
            "return matchMedia('(prefers-color-scheme: dark)').matches",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        is_dark,
        serde_json::json!(true),
        "the browser asks for dark"
    );
    for (name, path) in [
        ("dashboard", "/".to_string()),
        ("task", format!("/tasks/{}", host(1))),
    ] {
        dark.goto(&format!("{base}{path}")).await.unwrap();
        assert_axe_clean(&dark, &axe, &format!("{name} in dark mode")).await;
        screenshot(&dark, &format!("{name}-dark")).await;
    }
    dark.close().await.unwrap();
}

/// The manual's pictures (`docs/images/NAME.png`): each page with what its
/// picture shows and the manual's text says of it. The survey checks that every
/// page still shows that; `scripts/doc-screenshots.sh` takes the pictures again
/// (`SMS_AUDIT_DOC_IMAGES=write`).
fn doc_pages() -> Vec<(&'static str, String, &'static [&'static str])> {
    vec![
        (
            "dashboard",
            "/".into(),
            &[
                "Dashboard",
                "Tasks with problems",
                "Regressed",
                "No results",
                "Clean",
                "Tasks",
            ],
        ),
        (
            "task",
            format!("/tasks/{}", host(1)),
            &["Task", "Counts over time", "problems", "Uploads"],
        ),
        (
            "upload",
            "/uploads/5".into(),
            &["Upload #5", "Results", "Raw body", "SHA-256"],
        ),
        (
            "compare",
            "/compare?a=4&b=6".into(),
            &["Compare upload #4 with #6", "improved"],
        ),
        (
            "changes",
            "/changes".into(),
            &["What changed", "regressed", "improved"],
        ),
        (
            "audit",
            "/audit".into(),
            &["Audit", "Ledger", "Checkpoints", "Rejection log"],
        ),
    ]
}

async fn doc_images(client: &Client, base: &str) {
    let write = std::env::var("SMS_AUDIT_DOC_IMAGES").is_ok_and(|v| v == "write");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/images");
    client.set_window_size(1280, 800).await.unwrap();
    for (name, path, shows) in doc_pages() {
        client.goto(&format!("{base}{path}")).await.unwrap();
        // As rendered (CSS may change letter case).
        let text = text_of(client, "main").await.to_lowercase();
        for words in shows {
            assert!(
                text.contains(&words.to_lowercase()),
                "{path} no longer shows {words:?}, which docs/images/{name}.png shows: \
                 update the page, or the picture (scripts/doc-screenshots.sh) and the manual"
            );
        }
        let file = dir.join(format!("{name}.png"));
        if write {
            std::fs::write(&file, client.screenshot().await.unwrap()).unwrap();
        }
        assert!(
            file.exists(),
            "{} is missing: run scripts/doc-screenshots.sh",
            file.display()
        );
    }
}

/// The survey's task ids: some short, some long.
/// A finished reconciliation run as `reconcile` stores it: a task that matches,
/// one with a foreign round of long paths, and one whose upload SMS lost.
fn seed_reconciliation(db: &std::path::Path, sms: &str, long: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    conn.execute(
        "INSERT INTO reconciliation_runs (id, started_at, finished_at, target, scope, ledger_size, state, summary_note)
         VALUES (1, ?1, ?1, ?2, '{\"tasks\":[],\"since\":null}', 180, 'finished', 'sms-audit reconciliation v1\nrun 1\n')",
        rusqlite::params![now, sms],
    )
    .unwrap();
    let round = |t: i64, total: u32| {
        serde_json::json!({"finished_time": t, "check_result": "failed", "consistency_result": [
            {"dir_check": long, "num_total_files": total, "num_different_files": 40,
             "num_target_miss_files": 7, "num_target_more_files": 7}]})
    };
    let tasks = [
        (
            host(1),
            "match",
            vec![round(now, 941_000)],
            r#"{"matched":[[0,4]],"missing_in_sms":[],"foreign":[],"differs":[]}"#,
        ),
        (
            host(2),
            "foreign",
            vec![round(now, 942_000), round(1_900_000_000_000, 5)],
            r#"{"matched":[[0,7]],"missing_in_sms":[],"foreign":[1],"differs":[]}"#,
        ),
        (
            host(3),
            "missing-in-sms",
            vec![],
            r#"{"matched":[],"missing_in_sms":[10],"foreign":[],"differs":[]}"#,
        ),
    ];
    for (task, verdict, rounds, findings) in tasks {
        let answer = serde_json::json!({"task_id": task, "result_list": rounds}).to_string();
        conn.execute(
            "INSERT INTO reconciliation_tasks (run_id, task_id, verdict, checked_at, http_status, answer, answer_sha256, findings)
             VALUES (1, ?1, ?2, ?3, 200, ?4, 'x', ?5)",
            rusqlite::params![task, verdict, now, answer.as_bytes(), findings],
        )
        .unwrap();
    }
}

fn host(t: u32) -> String {
    format!("host-{t:02}-{}", "x".repeat(1 + (t % 3) as usize * 12))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
