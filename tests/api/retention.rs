//! Retention: `purge` and `serve --retention` empty old uploads' bodies and
//! result rows, keep their entries verifiable, leave pending deliveries, and
//! record every purge; the admin log and disk use on /audit; `status`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sms_audit::domain::Role;

use crate::helpers::{body_with_items, eventually, sms_audit, TestApp, EXAMPLE, PATIENCE, TASK};

fn query_i64(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// Marks upload `id` as waiting for delivery, as an SMS outage would leave it.
fn pend(db: &Path, id: i64) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute(
            "INSERT INTO deliveries (upload_id, task_id, target, trigger, state, created_at, next_attempt_at)
             SELECT id, task_id, 'https://sms.example', 'live', 'pending', 0, 0 FROM uploads WHERE id = ?1",
            [id],
        )
        .unwrap();
}

#[tokio::test]
async fn purge_empties_old_bodies_keeps_the_ledger_verifiable_and_records_itself() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    for _ in 0..4 {
        assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    }
    pend(&app.db_path, 2);
    let db = app.db_path.clone();
    let results_before = query_i64(&db, "SELECT count(*) FROM upload_results");

    // A dry run changes nothing.
    let (code, out, err) = sms_audit(&db, &["purge", "--before", "2100-01-01", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("would purge 3 uploads"), "{out}");
    assert!(
        out.contains("1 kept while a delivery of theirs is pending"),
        "{out}"
    );
    // Without --yes (and no terminal to ask on), nothing either.
    let (code, _, err) = sms_audit(&db, &["purge", "--before", "2100-01-01"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM uploads WHERE purged_at IS NOT NULL"
        ),
        0
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM upload_results"),
        results_before
    );

    // The service runs on meanwhile: the purge's steps interleave with its commits.
    let (code, out, err) = sms_audit(&db, &["purge", "--before", "2100-01-01", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("purged 3 uploads"), "{out}");
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM uploads WHERE purged_at IS NOT NULL AND length(raw_body) = 0"
        ),
        3
    );
    // The pending one keeps its body and rows; the others' rows are gone.
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM upload_results WHERE upload_id <> 2"
        ),
        0
    );
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM upload_results WHERE upload_id = 2"
        ),
        results_before / 4
    );

    let (code, out, _) = sms_audit(&db, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ledger intact: 4 entries"), "{out}");
    assert!(out.contains("3 entries pruned by retention"), "{out}");

    // Recorded: who, when, range, counts.
    let (actor, up_to, uploads, kept, outcome): (String, i64, i64, i64, String) =
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(
                "SELECT actor, up_to_id, uploads, kept_pending, outcome FROM admin_log WHERE action = 'purge'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
    assert!(actor.ends_with("(command line)"), "{actor}");
    assert_eq!((up_to, uploads, kept, outcome.as_str()), (4, 3, 1, "done"));
    // The log takes no other change.
    let conn = rusqlite::Connection::open(&db).unwrap();
    assert!(conn
        .execute("UPDATE admin_log SET uploads = 0", [])
        .is_err());
    assert!(conn.execute("DELETE FROM admin_log", []).is_err());

    // Pages and the API say what is gone.
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let audit = browser.get("/audit").await;
    assert!(audit.text.contains("id=\"admin-log\""), "{}", audit.text);
    assert!(audit.text.contains("(command line)"));
    assert!(audit
        .text
        .contains("before <time>2100-01-01T00:00:00.000Z</time> (ids up to 4)"));
    assert!(audit.text.contains("id=\"disk-use\""));
    let page = browser.get("/uploads/1").await;
    assert!(page.text.contains("id=\"purged\""), "{}", page.text);
    assert!(!page.text.contains("id=\"raw-body\""));
    let api = app.get("/api/v1/uploads/1", &app.admin_token).await.json();
    assert!(api["purged_at"].is_string(), "{api}");
    assert_eq!(api["raw_body"], "");
    let compare = browser.get("/compare?a=1&b=2").await;
    assert!(
        compare.text.contains("only the stored totals compare"),
        "{}",
        compare.text
    );

    // Exports mark purged uploads; a replay never selects them.
    let (code, out, _) = sms_audit(&db, &["export", "--format", "jsonl"]);
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0]["purged_at"].is_string() && lines[0]["raw_body"] == "");
    assert!(lines[1].get("purged_at").is_none() && lines[1]["raw_body"] != "");
    let (_, out, _) = sms_audit(&db, &["export", "--format", "csv"]);
    assert!(out.lines().next().unwrap().ends_with(",purged_at"), "{out}");
    // CSV unless asked otherwise, as the API.
    let (code, default, _) = sms_audit(&db, &["export"]);
    assert_eq!((code, default), (0, out));

    // Nothing left to purge the second time; the log says when it happened.
    let (code, out, _) = sms_audit(&db, &["purge", "--before", "2100-01-01", "--yes"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to purge"), "{out}");
    // The service went on taking uploads throughout.
    assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    let (code, out, _) = sms_audit(&db, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ledger            5 entries"), "{out}");
    assert!(out.contains("(3 uploads purged in all)"), "{out}");
    assert!(out.contains("1 pending"), "{out}");
}

#[tokio::test]
async fn only_a_recorded_purge_may_empty_a_body() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    for _ in 0..3 {
        assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    }
    let stopped = app.stop().await;
    let db = stopped.db_path.clone();
    let conn = rusqlite::Connection::open(&db).unwrap();
    // The triggers allow emptying a body and nothing else, and deleting only a
    // purged upload's rows.
    assert!(conn
        .execute("UPDATE uploads SET task_id = 'x' WHERE id = 1", [])
        .is_err());
    assert!(conn
        .execute(
            "UPDATE uploads SET raw_body = X'', purged_at = 1, task_id = 'x' WHERE id = 1",
            []
        )
        .is_err());
    assert!(conn
        .execute("DELETE FROM upload_results WHERE upload_id = 1", [])
        .is_err());
    // Done behind the log's back (as the trigger permits), verify notices.
    conn.execute(
        "UPDATE uploads SET raw_body = X'', purged_at = 1 WHERE id = 2",
        [],
    )
    .unwrap();
    conn.execute("DELETE FROM upload_results WHERE upload_id = 2", [])
        .unwrap();
    drop(conn);
    let (code, out, _) = sms_audit(&db, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("ledger BROKEN at entry 2: purged, but no recorded purge covers it"),
        "{out}"
    );
}

#[tokio::test]
async fn purged_uploads_evidence_still_verifies() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    for _ in 0..3 {
        assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    }
    let stopped = app.stop().await; // a checkpoint at shutdown
    let db = stopped.db_path.clone();
    let (code, out, err) = sms_audit(&db, &["purge", "--before", "2100-01-01", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.json");
    let (code, out, err) = sms_audit(
        &db,
        &[
            "evidence",
            "export",
            "--task",
            TASK,
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    assert!(json["entries"][0].get("raw_body_base64").is_none());
    assert!(json["entries"][0]["purged_at"].is_string());
    let (code, out, err) = sms_audit(&db, &["evidence", "verify", bundle.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 with their body purged"), "{out}");
    // Without a body and without saying it was purged, an entry fails.
    let mut tampered = json.clone();
    tampered["entries"][0]
        .as_object_mut()
        .unwrap()
        .remove("purged_at");
    std::fs::write(&bundle, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let (code, out, err) = sms_audit(&db, &["evidence", "verify", bundle.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
    assert!(
        format!("{out}{err}").contains("raw_body_base64 is missing"),
        "{out}{err}"
    );
}

#[tokio::test]
async fn serve_retention_purges_what_is_older_than_the_days_kept() {
    // Uploads received ten days ago (the writer's clock set back).
    let ten_days = 10 * 86_400_000;
    let app = TestApp::spawn_with(|c| {
        c.clock = sms_audit::startup::UploadClock(Arc::new(move || {
            sms_audit::domain::now_ms() - ten_days
        }))
    })
    .await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    for _ in 0..3 {
        assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    }
    let stopped = app.stop().await;
    let app = stopped
        .start_with(|c| {
            c.clock = sms_audit::startup::UploadClock(Arc::new(sms_audit::domain::now_ms));
            c.retention = Some(sms_audit::services::retention::RetentionSettings {
                keep: Duration::from_secs(7 * 86_400),
                step: Duration::from_millis(50),
            });
        })
        .await;
    assert_eq!(app.upload(TASK, &agent, EXAMPLE).await.status, 200);
    let done = eventually("the purge at start to finish", PATIENCE, || {
        let done = query_i64(
            &app.db_path,
            "SELECT count(*) FROM admin_log WHERE action = 'purge' AND outcome = 'done'",
        );
        std::future::ready((done > 0).then_some(done))
    })
    .await;
    assert_eq!(done, 1);
    // The three old ones purged, today's kept; the service says who did it.
    assert_eq!(
        query_i64(
            &app.db_path,
            "SELECT count(*) FROM uploads WHERE purged_at IS NOT NULL AND id <= 3"
        ),
        3
    );
    assert_eq!(
        query_i64(
            &app.db_path,
            "SELECT count(*) FROM uploads WHERE purged_at IS NULL"
        ),
        1
    );
    assert_eq!(
        query_i64(
            &app.db_path,
            "SELECT count(*) FROM admin_log WHERE actor = 'serve --retention 7'"
        ),
        1
    );
    let stopped = app.stop().await;
    let (code, out, _) = sms_audit(&stopped.db_path, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 entries pruned"), "{out}");
}

#[tokio::test]
async fn a_purge_hands_freed_pages_back_to_the_file_system() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    let big = body_with_items(30);
    for _ in 0..300 {
        assert_eq!(app.upload(TASK, &agent, &big).await.status, 200);
    }
    let stopped = app.stop().await;
    let db = stopped.db_path.clone();
    let size_before = std::fs::metadata(&db).unwrap().len();
    let (code, out, err) = sms_audit(&db, &["purge", "--before", "2100-01-01", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    let freed: u64 = out
        .lines()
        .find_map(|l| l.strip_suffix(" free pages handed back to the file system"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(freed > 0, "{out}");
    // Once the WAL is folded in, the file is smaller.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    let size_after = std::fs::metadata(&db).unwrap().len();
    assert!(size_after < size_before, "{size_before} -> {size_after}");
    assert_eq!(sms_audit(&db, &["verify"]).0, 0);

    // What is left of purged bodies inside their pages goes with a compacted
    // copy, which restores like any backup.
    let dir = tempfile::tempdir().unwrap();
    let (plain, compact) = (dir.path().join("plain.db"), dir.path().join("compact.db"));
    assert_eq!(
        sms_audit(&db, &["backup", "--to", plain.to_str().unwrap()]).0,
        0
    );
    let (code, out, err) = sms_audit(
        &db,
        &["backup", "--compact", "--to", compact.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ledger intact, 300 entries"), "{out}");
    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(
        len(&compact) < len(&plain),
        "{} vs {}",
        len(&compact),
        len(&plain)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&compact).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (code, out, err) = sms_audit(&db, &["restore", "--from", compact.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = sms_audit(&db, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("300 entries pruned"), "{out}");
}
