//! `backup`: a consistent, checked copy while the service writes; `restore`.

use crate::helpers::{output_text as text, run};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use sms_audit::domain::Role;

use crate::helpers::{sms_audit, TestApp, EXAMPLE, TASK};

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
    // The backup starts while uploads are being acknowledged.
    crate::helpers::eventually("uploads under way", crate::helpers::PATIENCE, || {
        std::future::ready((acked.load(Ordering::SeqCst) >= 30).then_some(()))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let acked_before = acked.load(Ordering::SeqCst);
    let run = {
        let (db, copy) = (app.db_path.clone(), copy.clone());
        tokio::task::spawn_blocking(move || {
            crate::helpers::command()
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
    let verify = crate::helpers::command()
        .arg("verify")
        .arg("--db")
        .arg(&copy)
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(0));

    // An existing file is never overwritten.
    let again = crate::helpers::command()
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

/// Changes a stored upload behind the triggers' back, as an attacker or a bad
/// disk would.
/// Changes upload `id` behind the append-only trigger's back, and puts the
/// trigger back, so the schema is as sms-audit makes it and only the chain shows it.
fn damage(db: &std::path::Path, id: i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let trigger: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'uploads_no_update'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute_batch("DROP TRIGGER uploads_no_update")
        .unwrap();
    conn.execute(
        "UPDATE uploads SET task_id = 'someone-else' WHERE id = ?1",
        [id],
    )
    .unwrap();
    conn.execute_batch(&trigger).unwrap();
}

fn replaced_files(db: &std::path::Path) -> Vec<String> {
    let name = db.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::read_dir(db.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{name}.replaced-")))
        .collect()
}

#[tokio::test]
async fn a_restore_drill_backs_up_restores_a_damaged_database_and_continues_the_chain() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    for _ in 0..5 {
        assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("backup.db");
    let (code, out, err) = sms_audit(&app.db_path, &["backup", "--to", copy.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    // Three more, which only the database has.
    for _ in 0..3 {
        assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    }
    let stopped = app.stop().await;
    let db = stopped.db_path.clone();
    damage(&db, 2);
    assert_eq!(sms_audit(&db, &["verify"]).0, 1);

    let (code, out, err) = sms_audit(&db, &["restore", "--from", copy.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ledger intact, 5 entries"), "{out}");
    assert!(out.contains("(8 entries, head"), "{out}");
    assert!(
        out.contains("warning: 3 uploads newer than the backup"),
        "{out}"
    );
    let kept = replaced_files(&db);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(out.contains(&kept[0]), "{out}");
    // The replaced database is kept whole: its 8 uploads, its damage.
    let old = rusqlite::Connection::open(db.with_file_name(&kept[0])).unwrap();
    let old_count: i64 = old
        .query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(old_count, 8);
    let (code, out, _) = sms_audit(&db, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5 entries"), "{out}");

    // The service starts on it and continues the chain from the backup's head.
    let app = stopped.start().await;
    assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    let (prev, head_of_5): (String, String) = app
        .write_conn()
        .query_row(
            "SELECT (SELECT prev_hash FROM uploads WHERE id = 6), (SELECT entry_hash FROM uploads WHERE id = 5)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(prev, head_of_5);
    let stopped = app.stop().await;
    let (code, out, _) = sms_audit(&stopped.db_path, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("6 entries"), "{out}");
}

#[tokio::test]
async fn restore_refuses_while_the_service_holds_the_database() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("backup.db");
    assert_eq!(
        sms_audit(&app.db_path, &["backup", "--to", copy.to_str().unwrap()]).0,
        0
    );
    let (code, out, err) = sms_audit(&app.db_path, &["restore", "--from", copy.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("is in use"), "{err}");
    assert!(replaced_files(&app.db_path).is_empty());
    // The service goes on as before.
    assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    assert_eq!(app.count("uploads"), 2);
}

#[tokio::test]
async fn a_backup_whose_ledger_is_broken_is_not_restored() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    for _ in 0..3 {
        assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("backup.db");
    assert_eq!(
        sms_audit(&app.db_path, &["backup", "--to", copy.to_str().unwrap()]).0,
        0
    );
    damage(&copy, 3);
    let stopped = app.stop().await;
    let before = std::fs::read(&stopped.db_path).unwrap();
    let (code, out, err) = sms_audit(
        &stopped.db_path,
        &["restore", "--from", copy.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("BROKEN at entry 3"), "{out}");
    assert!(out.contains("is unchanged"), "{out}");
    assert_eq!(std::fs::read(&stopped.db_path).unwrap(), before);
    assert!(replaced_files(&stopped.db_path).is_empty());

    // Not a database at all, or no such file: exit 2, nothing changed.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not sqlite").unwrap();
    let (code, _, err) = sms_audit(
        &stopped.db_path,
        &["restore", "--from", junk.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = sms_audit(&stopped.db_path, &["restore", "--from", "/nonexistent.db"]);
    assert_eq!(code, 2);
    assert!(err.contains("no such file"), "{err}");
    assert_eq!(std::fs::read(&stopped.db_path).unwrap(), before);
}

fn wal_len(db: &std::path::Path) -> u64 {
    std::fs::metadata(format!("{}-wal", db.display())).map_or(0, |m| m.len())
}

#[tokio::test]
async fn with_checkpoint_mode_off_sms_audit_leaves_the_wal_to_another_program() {
    for (mode, truncated) in [
        (sms_audit::storage::WalCheckpoints::Passive, true),
        (sms_audit::storage::WalCheckpoints::Off, false),
    ] {
        let app = TestApp::spawn_with(|c| c.writer.wal_checkpoints = mode).await;
        let agent = app.add_credential("agent", Role::Agent, None, false).token;
        for _ in 0..5 {
            assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
        }
        // A reader keeps the database open, as Litestream does (having read, it
        // holds the database, so the service's last connection is not the last).
        let reader = rusqlite::Connection::open(&app.db_path).unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))
            .unwrap();
        let stopped = app.stop().await;
        assert_eq!(wal_len(&stopped.db_path) == 0, truncated, "{mode:?}");
        drop(reader);
    }
}

#[tokio::test]
async fn a_backup_with_a_schema_of_its_own_is_refused_naming_the_difference() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let make_backup = |name: &str| {
        let copy = dir.path().join(name);
        assert_eq!(
            sms_audit(&app.db_path, &["backup", "--to", copy.to_str().unwrap()]).0,
            0
        );
        copy
    };
    let planted = make_backup("planted.db");
    rusqlite::Connection::open(&planted)
        .unwrap()
        .execute_batch(
            "DROP TRIGGER uploads_no_update;
             CREATE TRIGGER plant AFTER INSERT ON admin_log BEGIN
               INSERT INTO credentials (name, role, token_sha256, created_at)
               VALUES ('planted', 'operator', 'x', 0);
             END;",
        )
        .unwrap();
    let endless = make_backup("endless.db");
    rusqlite::Connection::open(&endless)
        .unwrap()
        .execute_batch(
            "CREATE VIEW forever AS WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n)
             SELECT x FROM n;",
        )
        .unwrap();
    let stopped = app.stop().await;
    let before = std::fs::read(&stopped.db_path).unwrap();
    for (copy, named) in [
        (&planted, "trigger \"plant\""),
        (&endless, "view \"forever\""),
    ] {
        let (code, out, err) = sms_audit(
            &stopped.db_path,
            &["restore", "--from", copy.to_str().unwrap()],
        );
        assert_eq!(code, 1, "{out}{err}");
        assert!(out.contains(named), "{out}");
        assert!(out.contains("is unchanged"), "{out}");
        assert_eq!(std::fs::read(&stopped.db_path).unwrap(), before);
    }
    assert!(replaced_files(&stopped.db_path).is_empty());
}

#[tokio::test]
async fn a_backup_of_another_log_needs_other_log() {
    // Two services, each with its own signing key: each stop makes a checkpoint.
    let ours = TestApp::spawn().await;
    assert_eq!(
        ours.upload(TASK, &ours.admin_token, EXAMPLE).await.status,
        200
    );
    let theirs = TestApp::spawn().await;
    assert_eq!(
        theirs
            .upload(TASK, &theirs.admin_token, EXAMPLE)
            .await
            .status,
        200
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("theirs.db");
    let theirs = theirs.stop().await;
    assert_eq!(
        sms_audit(&theirs.db_path, &["backup", "--to", copy.to_str().unwrap()]).0,
        0
    );
    let ours = ours.stop().await;
    let (code, out, err) = sms_audit(
        &ours.db_path,
        &["restore", "--from", copy.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("another log") && err.contains("--other-log"),
        "{err}"
    );
    assert!(replaced_files(&ours.db_path).is_empty());
    let (code, out, err) = sms_audit(
        &ours.db_path,
        &["restore", "--other-log", "--from", copy.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn backup_refuses_a_database_that_is_not_there_and_writes_no_copy() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let out = run(
        &dir.path().join("typo.db"),
        &["backup", "--to", copy.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no such database"), "{}", text(&out));
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}
