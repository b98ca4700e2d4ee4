//! `verify` recomputes the chain and names the first entry changed behind its back.

use crate::helpers::{output_text as text, run};
use sms_audit::domain::Role;
use std::process::Command;

use crate::helpers::{body_with_items, TestApp, EXAMPLE, TASK};

async fn app_with_uploads(n: usize) -> TestApp {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false);
    for i in 0..n {
        let body = if i % 2 == 0 {
            EXAMPLE.to_string()
        } else {
            body_with_items(i)
        };
        assert_eq!(app.upload(TASK, &agent.token, &body).await.status, 200);
    }
    app
}

fn verify(app: &TestApp) -> (i32, String) {
    let out = crate::helpers::command()
        .arg("verify")
        .arg("--db")
        .arg(&app.db_path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn tamper(app: &TestApp, sql: &str) {
    let conn = app.write_conn();
    conn.execute_batch(
        "DROP TRIGGER uploads_no_update; DROP TRIGGER uploads_no_delete;
         DROP TRIGGER upload_results_no_update; DROP TRIGGER upload_results_no_delete;",
    )
    .unwrap();
    conn.execute_batch(sql).unwrap();
}

#[tokio::test]
async fn intact_ledger_verifies_with_count_and_head() {
    let app = app_with_uploads(5).await;
    let head = app.get("/api/v1/uploads/5", &app.admin_token).await.json()["entry_hash"].clone();
    let (code, out) = verify(&app);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5 entries"), "{out}");
    assert!(out.contains(head.as_str().unwrap()), "{out}");
}

#[tokio::test]
async fn ledger_tables_refuse_updates_and_deletes() {
    let app = app_with_uploads(2).await;
    let conn = app.write_conn();
    for sql in [
        "UPDATE uploads SET task_id = 'x' WHERE id = 1",
        "DELETE FROM uploads WHERE id = 2",
        "UPDATE upload_results SET num_total_files = 0",
        "DELETE FROM upload_results",
    ] {
        let err = conn.execute(sql, []).unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(verify(&app).0, 0);
}

#[tokio::test]
async fn verify_detects_a_changed_result_row() {
    let app = app_with_uploads(4).await;
    tamper(
        &app,
        "UPDATE upload_results SET num_different_files = 0 WHERE upload_id = 3 AND ordinal = 0",
    );
    let (code, out) = verify(&app);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry 3"), "{out}");
    assert!(out.contains("result rows"), "{out}");
    let api = app.get("/api/v1/ledger", &app.admin_token).await.json();
    assert_eq!(api["status"], "broken");
    assert_eq!(api["first_bad"]["id"], 3);
}

#[tokio::test]
async fn verify_detects_a_changed_raw_body() {
    let app = app_with_uploads(4).await;
    tamper(&app, "UPDATE uploads SET raw_body = CAST(replace(CAST(raw_body AS TEXT), '1235', '1236') AS BLOB) WHERE id = 3");
    let (code, out) = verify(&app);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry 3"), "{out}");
    assert!(out.contains("SHA-256"), "{out}");
}

#[tokio::test]
async fn verify_detects_a_deleted_upload() {
    let app = app_with_uploads(5).await;
    tamper(&app, "PRAGMA foreign_keys = OFF; DELETE FROM upload_results WHERE upload_id = 3; DELETE FROM uploads WHERE id = 3;");
    let (code, out) = verify(&app);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry 3 is missing"), "{out}");
}

#[tokio::test]
async fn verify_detects_a_deleted_last_upload() {
    let app = app_with_uploads(3).await;
    tamper(
        &app,
        "DELETE FROM upload_results WHERE upload_id = 3; DELETE FROM uploads WHERE id = 3;",
    );
    let (code, out) = verify(&app);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry 3 is missing"), "{out}");
}

#[tokio::test]
async fn verify_detects_a_rewritten_chain_field() {
    let app = app_with_uploads(3).await;
    tamper(
        &app,
        "UPDATE uploads SET credential_name = 'someone-else' WHERE id = 2",
    );
    let (code, out) = verify(&app);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry 2: entry_hash"), "{out}");
}

#[tokio::test]
async fn verify_detects_time_going_backwards() {
    let app = app_with_uploads(3).await;
    tamper(
        &app,
        "UPDATE uploads SET received_at = received_at - 1000 WHERE id = 3",
    );
    let (code, out) = verify(&app);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry 3: received_at is earlier"), "{out}");
}

#[tokio::test]
async fn verify_checks_every_checkpoint_root_and_the_stored_tree() {
    // The stop makes a checkpoint of all 4 uploads.
    let app = app_with_uploads(4).await.restart().await;
    let (code, out) = verify(&app);
    assert_eq!(code, 0, "{out}");
    // Signatures, with the key file's verifier key, and with a stranger's.
    assert!(
        out.contains("1 checkpoint, each signed by sms-audit/"),
        "{out}"
    );
    let stranger = sms_audit::domain::checkpoint::CheckpointKey::generate("sms-audit/other")
        .unwrap()
        .verifier_key();
    let out = crate::helpers::command()
        .args(["verify", "--vkey", &stranger, "--db"])
        .arg(&app.db_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("checkpoint signature BROKEN"), "{text}");
    // A malformed key is a usage error, not a broken signature.
    for malformed in ["not-a-key", "sms-audit/x+12345678+AAAA", ""] {
        for command in [&["verify"][..], &["evidence", "verify", "bundle.json"]] {
            let out = crate::helpers::command()
                .args(command)
                .args(["--vkey", malformed, "--db"])
                .arg(&app.db_path)
                .output()
                .unwrap();
            let text = crate::helpers::output_text(&out);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{command:?} {malformed:?}: {text}"
            );
            assert!(text.contains("not a verifier key"), "{command:?}: {text}");
            assert!(!text.contains("BROKEN"), "{text}");
        }
    }
    let conn = app.write_conn();
    let root: Vec<u8> = conn
        .query_row(
            "SELECT root_hash FROM checkpoints WHERE tree_size = 4",
            [],
            |r| r.get(0),
        )
        .unwrap();

    let changed = conn
        .execute(
            "UPDATE checkpoints SET root_hash = zeroblob(32) WHERE tree_size = 4",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let (code, out) = verify(&app);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the checkpoint of 4 uploads has root"),
        "{out}"
    );
    conn.execute(
        "UPDATE checkpoints SET root_hash = ?1 WHERE tree_size = 4",
        [&root],
    )
    .unwrap();

    conn.execute(
        "INSERT INTO checkpoints (tree_size, root_hash, made_at, note) VALUES (9, zeroblob(32), 0, '')",
        [],
    )
    .unwrap();
    let (code, out) = verify(&app);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("a checkpoint covers 9 uploads, the chain has 4"),
        "{out}"
    );
    conn.execute("DELETE FROM checkpoints WHERE tree_size = 9", [])
        .unwrap();

    conn.execute(
        "UPDATE tree_hashes SET hash = zeroblob(32) WHERE idx = 1",
        [],
    )
    .unwrap();
    let (code, out) = verify(&app);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("stored Merkle tree differs from the chain at stored hash 1"),
        "{out}"
    );
}

fn verify_args(app: &TestApp, args: &[&str]) -> (i32, String) {
    let out = crate::helpers::command()
        .arg("verify")
        .args(args)
        .arg("--db")
        .arg(&app.db_path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn verify_since_checkpoint_checks_what_was_added_after_a_verified_checkpoint() {
    // The stop makes a checkpoint of the first 4 uploads.
    let app = app_with_uploads(4).await.restart().await;
    let agent = app.add_credential("agent-2", Role::Agent, None, false);

    let (code, out) = verify_args(&app, &["--since-checkpoint"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no full verification"), "{out}");

    assert_eq!(verify(&app).0, 0);
    for i in 0..3 {
        let body = body_with_items(i + 1);
        assert_eq!(app.upload(TASK, &agent.token, &body).await.status, 200);
    }
    let (code, out) = verify_args(&app, &["--since-checkpoint"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ledger intact since the checkpoint of 4 uploads: 3 entries checked"),
        "{out}"
    );
    assert!(out.contains("(id 7)"), "{out}");
    let browser = app
        .login(&app.admin_token)
        .await
        .unwrap_or_else(|r| panic!("{}", r.text));
    let audit = browser.get("/audit").await.text;
    assert!(
        audit.contains("3 entries up to #7 (only those after the checkpoint of 4 uploads"),
        "{audit}"
    );

    // An entry the checkpoint covers is not read again (a full run finds it)...
    tamper(
        &app,
        "UPDATE upload_results SET num_total_files = 7 WHERE upload_id = 2",
    );
    assert_eq!(verify_args(&app, &["--since-checkpoint"]).0, 0);
    // ...and once a full run has found damage, only a full run will do.
    let (code, out) = verify(&app);
    assert_eq!(code, 1, "{out}");
    let (code, out) = verify_args(&app, &["--since-checkpoint"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("found the ledger broken at entry 2"), "{out}");
}

#[tokio::test]
async fn verify_since_checkpoint_catches_new_damage_and_a_tree_that_lost_its_root() {
    let app = app_with_uploads(4).await.restart().await;
    let agent = app.add_credential("agent-2", Role::Agent, None, false);
    assert_eq!(verify(&app).0, 0);
    for i in 0..3 {
        let body = body_with_items(i + 1);
        assert_eq!(app.upload(TASK, &agent.token, &body).await.status, 200);
    }
    tamper(
        &app,
        "UPDATE upload_results SET num_total_files = 7 WHERE upload_id = 6",
    );
    let (code, out) = verify_args(&app, &["--since-checkpoint"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ledger BROKEN at entry 6"), "{out}");

    // The subtree root over the first 4 leaves (stored hash 6) is what the
    // checkpoint's root is rebuilt from.
    app.write_conn()
        .execute(
            "UPDATE tree_hashes SET hash = zeroblob(32) WHERE idx = 6",
            [],
        )
        .unwrap();
    let (code, out) = verify_args(&app, &["--since-checkpoint"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("does not give the root of the checkpoint of 4 uploads"),
        "{out}"
    );
}

/// Every worker count and batch size finds the same verdict as one worker
/// reading everything at once, wherever the damage is relative to the batches.
#[tokio::test]
async fn parallel_verification_agrees_with_a_sequential_one() {
    use sms_audit::services::ledger::{self, Parallelism, Scope};
    use sms_audit::storage;

    let app = app_with_uploads(13).await.restart().await;
    let agent = app.add_credential("agent-2", Role::Agent, None, false);
    for i in 0..4 {
        let body = body_with_items(i + 1);
        assert_eq!(app.upload(TASK, &agent.token, &body).await.status, 200);
    }
    let mut cases = vec![String::new()];
    for id in [1, 2, 6, 7, 12, 13, 14, 17] {
        cases.push(format!(
            "UPDATE upload_results SET num_total_files = 99 WHERE upload_id = {id} AND ordinal = 0"
        ));
        cases.push(format!(
            "UPDATE uploads SET raw_body = CAST(replace(CAST(raw_body AS TEXT), '1', '2') AS BLOB) WHERE id = {id}"
        ));
        cases.push(format!(
            "UPDATE uploads SET received_at = received_at - 100000 WHERE id = {id}"
        ));
    }
    for id in [2, 7, 16] {
        cases.push(format!(
            "DELETE FROM upload_results WHERE upload_id = {id}; DELETE FROM uploads WHERE id = {id}"
        ));
    }
    for idx in [0, 5, 21, 30] {
        cases.push(format!(
            "UPDATE tree_hashes SET hash = zeroblob(32) WHERE idx = {idx}"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let source = app.write_conn();
    for (n, sql) in cases.iter().enumerate() {
        let copy = dir.path().join(format!("case-{n}.db"));
        source
            .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
            .unwrap();
        let conn = rusqlite::Connection::open(&copy).unwrap();
        conn.execute_batch(
            "DROP TRIGGER uploads_no_update; DROP TRIGGER uploads_no_delete;
             DROP TRIGGER upload_results_no_update; DROP TRIGGER upload_results_no_delete;",
        )
        .unwrap();
        conn.execute_batch(sql).unwrap();
        drop(conn);
        let run = |workers, batch| {
            let conn = storage::open_read(&copy).unwrap();
            let open = || storage::open_read(&copy);
            let v = ledger::verify(
                &conn,
                &open,
                Parallelism { workers, batch },
                Scope::Full,
                |_| {},
            )
            .unwrap();
            serde_json::to_value(v).unwrap()
        };
        let expected = run(1, 2048);
        assert_eq!(
            expected["first_bad"].is_null(),
            sql.is_empty(),
            "{sql}: {expected}"
        );
        for (workers, batch) in [(2, 1), (3, 2), (2, 3), (4, 5), (3, 16)] {
            assert_eq!(
                run(workers, batch),
                expected,
                "{sql}: {workers} workers, batches of {batch}"
            );
        }
    }
}

#[tokio::test]
async fn verify_checks_a_read_only_copy_without_recording() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        assert_eq!(
            app.upload(TASK, &app.admin_token, crate::helpers::EXAMPLE)
                .await
                .status,
            200
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir(&media).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&media)
        .status();
    if !matches!(mounted, Ok(s) if s.success()) {
        eprintln!("SKIPPED: mounting read-only media needs root (CI runs as root)");
        return;
    }
    let copy = media.join("evidence.db");
    app.write_conn()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let ro = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&media)
        .status()
        .unwrap();
    assert!(ro.success());
    let out = run(&copy, &["verify"]);
    let _ = Command::new("umount").arg("-l").arg(&media).status();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("ledger intact: 3 entries"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("not recorded"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ledger_checks_share_runs() {
    let app = TestApp::spawn().await;
    for _ in 0..300 {
        assert_eq!(
            app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
            200
        );
    }
    let before = app.count("verifications");
    let answers = futures_util::future::join_all(
        (0..32).map(|_| app.get("/api/v1/ledger", &app.admin_token)),
    )
    .await;
    for a in &answers {
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["status"], "intact");
        assert_eq!(a.json()["entries"], 300);
    }
    let runs = app.count("verifications") - before;
    assert!(
        (1..=16).contains(&runs),
        "{runs} verifications for 32 callers"
    );
}
