//! Faults from outside: a full disk, SIGTERM with uploads in flight, SIGKILL under
//! load with forwarding on. Whatever happens, an upload answered 200 is stored,
//! and one that is not answered 200 is not.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::{eventually, TestApp, PATIENCE, TASK};

/// A body of about `size` bytes, told apart by `marker`.
fn padded_body(marker: &str, size: usize) -> String {
    format!(
        r#"{{"marker":"{marker}","pad":"{}","consistency_result":[{{"dir_check":"/data","num_total_files":1,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0}}]}}"#,
        "x".repeat(size)
    )
}

/// Unmounts on drop, so that a failing test leaves nothing mounted.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with one file; returns that file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

fn stored_markers(app: &TestApp) -> Vec<String> {
    markers_in(&app.db_path)
}

/// The markers of the stored uploads, in id order.
fn markers_in(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut stmt = conn
        .prepare("SELECT raw_body FROM uploads ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_slice(&b.unwrap()).unwrap();
            v["marker"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_full_disk_refuses_uploads_cleanly_and_they_are_stored_again_once_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&small)
        .status();
    if !matches!(mounted, Ok(s) if s.success()) {
        eprintln!("SKIPPED: mounting a small tmpfs for a full disk needs root (CI runs as root)");
        return;
    }
    let _mounted = Mounted(small.clone());
    let db = small.join("audit.db");
    let app = TestApp::spawn_with(move |c| c.db = db).await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, &padded_body("before", 100))
            .await
            .status,
        200
    );
    let filler = fill(&small);

    let mut answers = Vec::new();
    for i in 0..60 {
        let marker = format!("full-{i}");
        let reply = app
            .upload(TASK, &app.admin_token, &padded_body(&marker, 40_000))
            .await;
        if reply.status != 200 {
            reply.assert_error(500, "SMS.2007");
        }
        answers.push((marker, reply.status));
    }
    assert!(
        answers.iter().any(|(_, s)| *s == 500),
        "the disk never filled up: {answers:?}"
    );
    let ready = app
        .send(app.client.get(format!("{}/readyz", app.address)))
        .await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert!(ready.text.contains("full"), "{}", ready.text);

    // Space returns: uploads are stored again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let mut attempt = 0;
    let back = eventually("uploads stored again once there is space", PATIENCE, || {
        attempt += 1;
        let marker = format!("after-{attempt}");
        let app = &app;
        async move {
            let reply = app
                .upload(TASK, &app.admin_token, &padded_body(&marker, 100))
                .await;
            (reply.status == 200).then_some(marker)
        }
    })
    .await;
    let ready = app
        .send(app.client.get(format!("{}/readyz", app.address)))
        .await;
    assert_eq!(ready.status, 200, "{}", ready.text);

    // Exactly what was answered 200 is stored, and the chain is whole.
    let stored = stored_markers(&app);
    for (marker, status) in &answers {
        assert_eq!(
            stored.contains(marker),
            *status == 200,
            "{marker}: {status}"
        );
    }
    assert!(stored.contains(&back));
    let ledger = app.get("/api/v1/ledger", &app.admin_token).await.json();
    assert_eq!(ledger["status"], "intact", "{ledger}");
}

fn signal(served: &crate::cli::Served, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &served.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Uploads `bodies` all at once; the status of each, or `None` without an answer.
/// Sends every body at once; `answered` is notified as each answer comes.
async fn upload_all(
    address: &str,
    token: &str,
    bodies: Vec<(String, String)>,
    answered: Arc<tokio::sync::Notify>,
) -> Vec<(String, Option<u16>)> {
    let client = reqwest::Client::new();
    let url = format!("{address}{}", TestApp::upload_path(TASK));
    let sends: Vec<_> = bodies
        .into_iter()
        .map(|(marker, body)| {
            let request = client
                .post(&url)
                .header("X-Auth-Token", token)
                .header("Content-Type", "application/json")
                .body(body);
            let answered = answered.clone();
            tokio::spawn(async move {
                let status = request.send().await.ok().map(|r| r.status().as_u16());
                answered.notify_one();
                (marker, status)
            })
        })
        .collect();
    let mut out = Vec::new();
    for s in sends {
        out.push(s.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_64_uploads_in_flight_answers_200_only_for_stored_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut served = crate::cli::serve_with(&db, &[], &[]);
    let token = served.token.clone().expect("admin token");
    let bodies: Vec<(String, String)> = (0..64)
        .map(|i| (format!("term-{i}"), padded_body(&format!("term-{i}"), 2000)))
        .collect();
    let address = served.address.clone();
    let answered = Arc::new(tokio::sync::Notify::new());
    let first = answered.clone();
    let uploads = tokio::spawn(async move { upload_all(&address, &token, bodies, answered).await });
    // The first answer: the others are on their way.
    first.notified().await;
    signal(&served, "-TERM");
    let answers = uploads.await.unwrap();
    let exit = tokio::task::spawn_blocking(move || served.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    let stored = markers_in(&db);
    for (marker, status) in &answers {
        match status {
            Some(200) => assert!(stored.contains(marker), "{marker} answered 200, not stored"),
            _ => assert!(
                !stored.contains(marker),
                "{marker} stored, answered {status:?}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_with_forwarding_loses_nothing_acknowledged() {
    use crate::fake_upstream::{FakeUpstream, AK, PROJECT, SK};
    let sms = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let args = ["--forward", "--upstream-endpoint", sms.url.as_str()];
    let envs = [
        ("HUAWEICLOUD_SDK_AK", AK),
        ("HUAWEICLOUD_SDK_SK", SK),
        ("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT),
    ];
    let tasks = ["kill-a", "kill-b", "kill-c", "kill-d"];
    let mut token: Option<String> = None;
    let mut acknowledged = Vec::new();
    for round in 0..3 {
        let served = crate::cli::serve_with(&db, &args, &envs);
        let t = token
            .get_or_insert_with(|| served.token.clone().expect("admin token"))
            .clone();
        // Load from 8 clients until the kill.
        let mut loads = Vec::new();
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for client_no in 0..8 {
            let (address, t, answered) = (served.address.clone(), t.clone(), answered.clone());
            loads.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acked = Vec::new();
                for n in 0.. {
                    let marker = format!("r{round}-c{client_no}-{n}");
                    let task = tasks[n % tasks.len()];
                    let reply = client
                        .post(format!("{address}{}", TestApp::upload_path(task)))
                        .header("X-Auth-Token", &t)
                        .header("Content-Type", "application/json")
                        .body(padded_body(&marker, 200))
                        .send()
                        .await;
                    match reply {
                        Ok(r) if r.status() == 200 => acked.push(marker),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                acked
            }));
        }
        // Killed under load, with some uploads already acknowledged.
        eventually("a round's load under way", PATIENCE, || {
            let n = answered.load(std::sync::atomic::Ordering::SeqCst);
            std::future::ready((n >= 100).then_some(()))
        })
        .await;
        signal(&served, "-KILL");
        for load in loads {
            acknowledged.extend(load.await.unwrap());
        }
        drop(served);
    }
    assert!(
        acknowledged.len() > 50,
        "too little load: {}",
        acknowledged.len()
    );

    // A last start delivers what is pending.
    let served = crate::cli::serve_with(&db, &args, &envs);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    eventually("no delivery left pending", Duration::from_secs(30), || {
        let pending: i64 = conn
            .query_row(
                "SELECT count(*) FROM deliveries WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        std::future::ready((pending == 0).then_some(()))
    })
    .await;
    signal(&served, "-TERM");
    drop(served);

    let stored = markers_in(&db);
    for marker in &acknowledged {
        assert!(
            stored.contains(marker),
            "{marker} was acknowledged and is lost"
        );
    }
    let verify = crate::helpers::command()
        .arg("--db")
        .arg(&db)
        .arg("verify")
        .output()
        .unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    // Latest wins: each task's newest upload reached SMS.
    let delivered: Vec<String> = sms
        .delivered()
        .iter()
        .map(|c| String::from_utf8_lossy(&c.body).into_owned())
        .collect();
    for task in tasks {
        let newest: Vec<u8> = conn
            .query_row(
                "SELECT raw_body FROM uploads WHERE task_id = ?1 ORDER BY id DESC LIMIT 1",
                [task],
                |r| r.get(0),
            )
            .unwrap();
        let newest = String::from_utf8(newest).unwrap();
        assert!(
            delivered.contains(&newest),
            "the newest upload of {task} was not delivered"
        );
    }
}
