//! A real browser: headless Chromium driven through ChromeDriver (Debian's
//! `chromium` and `chromium-driver`) logs in and looks at the dashboard, a task, an
//! upload and a comparison, as a person would. Screenshots go to
//! `target/screenshots/`.
//!
//! Needs the two programs, so it is ignored by a plain `cargo test`; `.ci/run`
//! installs them and runs `cargo test --test browser -- --ignored`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use sms_audit::domain::{Role, TaskId};
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
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                     format!("--user-data-dir={}", profile.display())]
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
    let status = client
        .post(format!("{base}/v3/tasks/{task}/consistency-result"))
        .header("X-Auth-Token", token)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
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
    client
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(&auditor.token)
        .await
        .unwrap();
    click(&client, Locator::Css("form[action='/login'] button")).await;
    client
        .wait()
        .for_element(Locator::Id("tasks"))
        .await
        .unwrap();

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
        .for_element(Locator::Css("svg.chart"))
        .await
        .unwrap();
    assert_eq!(count(&client, "svg.chart polyline").await, 4);
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
    assert_eq!(count(&client, "svg.chart polyline").await, 4);
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
