//! `backup`: a consistent, checked copy while the service writes.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use sms_audit::domain::Role;

use crate::helpers::{TestApp, EXAMPLE, TASK};

#[tokio::test]
async fn backup_under_load_holds_every_upload_acknowledged_before_it_started() {
    let app = Arc::new(TestApp::spawn().await);
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    for _ in 0..20 {
        assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    }
    let (stop, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(20)),
    );
    let load = {
        let (app, agent, stop, acked) = (app.clone(), agent.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if app.upload(TASK, &agent, EXAMPLE).await.status == 200 {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let acked_before = acked.load(Ordering::SeqCst);
    let run = {
        let (db, copy) = (app.db_path.clone(), copy.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(TestApp::binary())
                .arg("backup")
                .arg("--to")
                .arg(&copy)
                .arg("--db")
                .arg(&db)
                .output()
                .unwrap()
        })
    };
    let out = run.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ledger intact"), "{stdout}");

    let conn = rusqlite::Connection::open(&copy).unwrap();
    let copied: i64 = conn
        .query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))
        .unwrap();
    assert!(
        copied as usize >= acked_before,
        "{copied} uploads copied, {acked_before} acknowledged before the backup"
    );
    assert!(stdout.contains(&format!("{copied} entries")), "{stdout}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // `verify` on the copy agrees.
    let verify = Command::new(TestApp::binary())
        .arg("verify")
        .arg("--db")
        .arg(&copy)
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(0));

    // An existing file is never overwritten.
    let again = Command::new(TestApp::binary())
        .arg("backup")
        .arg("--to")
        .arg(&copy)
        .arg("--db")
        .arg(&app.db_path)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
}
