//! The service asks witnesses to cosign its checkpoints: two of our own
//! `witness serve` instances cosign end to end, the cosignatures are verified
//! and served with the checkpoint, and a witness that is down neither blocks
//! ingest nor the quorum of the others.

use std::time::Duration;

use signed_note::{Note, StandardVerifier, VerifierList};
use sms_audit::domain::cosignature::CosignatureVerifier;
use sms_audit::services::witnessing::{WitnessSettings, WitnessTarget};
use sms_audit::startup::witness::{WitnessConfig, WitnessServer};

use crate::helpers::{eventually, TestApp, EXAMPLE, PATIENCE, TASK};

const ORIGIN: &str = "audit.example/witnessed";

struct RunningWitness {
    url: String,
    vkey: String,
    handle: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
}

/// A witness for the log whose signing key is `log_vkey`.
async fn witness(name: &str, log_vkey: &str) -> RunningWitness {
    let dir = tempfile::tempdir().unwrap();
    let server = WitnessServer::build(WitnessConfig {
        db: dir.path().join("w.db"),
        key: dir.path().join("w.key"),
        name: name.into(),
        logs: vec![(ORIGIN.into(), log_vkey.into())],
        listen: "127.0.0.1:0".into(),
        handle_signals: false,
    })
    .unwrap();
    let running = RunningWitness {
        url: format!("http://{}", server.address()),
        vkey: server.verifier_key().to_string(),
        handle: server.handle(),
        _dir: dir,
    };
    tokio::spawn(server.run_until_stopped());
    running
}

fn target(url: &str, vkey: &str) -> WitnessTarget {
    WitnessTarget {
        url: url.into(),
        verifier: CosignatureVerifier::new(vkey).unwrap(),
    }
}

/// The log's verifier key, known before the service starts: its key file is made
/// here, as an operator would keep it.
fn log_key(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let key = sms_audit::domain::checkpoint::CheckpointKey::generate(ORIGIN).unwrap();
    let path = dir.join("log.key");
    std::fs::write(&path, key.to_private_text()).unwrap();
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o600);
    std::fs::set_permissions(&path, permissions).unwrap();
    (path, key.verifier_key())
}

async fn start_witnessed(
    targets: Vec<WitnessTarget>,
    quorum: usize,
    key: std::path::PathBuf,
) -> TestApp {
    TestApp::spawn_with(move |c| {
        let checkpoints = c.checkpoints.as_mut().unwrap();
        checkpoints.interval = Duration::from_millis(150);
        checkpoints.origin = ORIGIN.into();
        checkpoints.dir = Some(key.with_file_name("checkpoints"));
        checkpoints.key_path = key;
        c.witnesses = Some(WitnessSettings {
            targets,
            quorum,
            timeout: Duration::from_secs(2),
        });
    })
    .await
}

#[tokio::test]
async fn two_witnesses_cosign_each_checkpoint_and_the_cosigned_note_is_served() {
    let keys = tempfile::tempdir().unwrap();
    let key_dir = keys.path().to_path_buf();
    let (key_path, log_vkey) = log_key(keys.path());
    let first = witness("witness-one.example/w", &log_vkey).await;
    let second = witness("witness-two.example/w", &log_vkey).await;
    let targets = vec![
        target(&first.url, &first.vkey),
        target(&second.url, &second.vkey),
    ];
    let app = start_witnessed(targets, 2, key_path).await;

    for round in 0..2 {
        for _ in 0..3 {
            assert_eq!(
                app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
                200
            );
        }
        let size = 3 * (round + 1);
        let note = eventually(
            "a witnessed checkpoint of the uploads",
            PATIENCE,
            || async {
                let reply = app
                    .get("/api/v1/checkpoints/latest?witnessed=1", &app.admin_token)
                    .await;
                (reply.status == 200 && reply.text.starts_with(&format!("{ORIGIN}\n{size}\n")))
                    .then_some(reply.text)
            },
        )
        .await;
        // The log's signature and both cosignatures, each verified independently.
        let verifiers = VerifierList::new(vec![
            Box::new(StandardVerifier::new(&log_vkey).unwrap()),
            Box::new(CosignatureVerifier::new(&first.vkey).unwrap()),
            Box::new(CosignatureVerifier::new(&second.vkey).unwrap()),
        ]);
        let (verified, unknown) = Note::from_bytes(note.as_bytes())
            .unwrap()
            .verify(&verifiers)
            .unwrap();
        assert_eq!((verified.len(), unknown.len()), (3, 0), "{note}");
    }
    // The tlog-tiles checkpoint carries them too; the list says who and when.
    let log = app.get("/checkpoint", &app.admin_token).await;
    assert_eq!(log.text.matches('\u{2014}').count(), 3, "{}", log.text);
    let list = app
        .get("/api/v1/checkpoints", &app.admin_token)
        .await
        .json();
    let newest = &list["checkpoints"][0];
    assert_eq!(newest["witnesses"]["state"], "witnessed", "{newest}");
    assert_eq!(
        newest["witnesses"]["cosignatures"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The checkpoint files carry the cosignatures too.
    let latest_file = key_dir.join("checkpoints").join("latest");
    eventually("the latest checkpoint file cosigned", PATIENCE, || async {
        let text = std::fs::read_to_string(&latest_file).unwrap_or_default();
        (text.starts_with(&format!("{ORIGIN}\n6\n")) && text.matches('\u{2014}').count() == 3)
            .then_some(())
    })
    .await;
    let metrics = app.get("/metrics", &app.admin_token).await.text;
    assert!(
        metrics.contains("sms_audit_witness_cosigned_size{witness=\"witness-one.example/w\"} 6"),
        "{metrics}"
    );
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let audit = browser.get("/audit").await.text;
    assert!(
        audit.contains("id=\"witnesses\"") && audit.contains("witness-two.example/w"),
        "{audit}"
    );
    assert!(audit.contains(">cosigning<"), "{audit}");
    proofs_and_bundles_carry_the_cosignatures(&app, &log_vkey, &first.vkey, &second.vkey).await;
    first.handle.stop(true).await;
    second.handle.stop(true).await;
}

/// `evidence verify` of a tlog-proof and of a bundle, against witnesses given
/// as keys or as a tlog-policy: the quorum holds or the check fails.
async fn proofs_and_bundles_carry_the_cosignatures(
    app: &TestApp,
    log_vkey: &str,
    w1: &str,
    w2: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let proof = app
        .get("/api/v1/uploads/2/tlog-proof", &app.admin_token)
        .await;
    assert_eq!(proof.status, 200, "{}", proof.text);
    assert!(
        proof.text.starts_with("c2sp.org/tlog-proof@v1\nextra "),
        "{}",
        proof.text
    );
    let proof_file = dir.path().join("upload-2.tlog-proof");
    std::fs::write(&proof_file, &proof.text).unwrap();
    let bundle = app
        .get(
            &format!("/api/v1/evidence?task_id={TASK}"),
            &app.admin_token,
        )
        .await;
    let bundle_file = dir.path().join("bundle.json");
    std::fs::write(&bundle_file, &bundle.text).unwrap();
    let stranger = sms_audit::domain::cosignature::WitnessKey::generate("stranger.example/w")
        .unwrap()
        .verifier_key();
    let policy_file = dir.path().join("policy");
    std::fs::write(
        &policy_file,
        format!("log {log_vkey}\nwitness one {w1}\nwitness two {w2}\nwitness three {stranger}\ngroup g 2 one two three\nquorum g\n"),
    )
    .unwrap();
    let strict_file = dir.path().join("strict-policy");
    std::fs::write(&strict_file, format!("log {log_vkey}\nwitness one {w1}\nwitness three {stranger}\ngroup g all one three\nquorum g\n")).unwrap();
    let verify = |file: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["evidence", "verify", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = crate::helpers::run(&app.db_path, &args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for file in [&proof_file, &bundle_file] {
        let (code, said) = verify(
            file,
            &["--vkey", log_vkey, "--witness", w1, "--witness", w2],
        );
        assert_eq!(code, Some(0), "{said}");
        assert!(said.contains("cosigned by 2 witnesses"), "{said}");
        let (code, said) = verify(file, &["--policy", policy_file.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{said}");
        let (code, said) = verify(
            file,
            &["--vkey", log_vkey, "--witness", w1, "--witness", &stranger],
        );
        assert_eq!(code, Some(1), "{said}");
        assert!(said.contains("quorum"), "{said}");
        let (code, _) = verify(
            file,
            &[
                "--vkey",
                log_vkey,
                "--witness",
                w1,
                "--witness",
                &stranger,
                "--quorum",
                "1",
            ],
        );
        assert_eq!(code, Some(0));
        let (code, said) = verify(file, &["--policy", strict_file.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{said}");
    }
    // A proof whose first inclusion hash was changed fails.
    let mut lines: Vec<String> = proof.text.lines().map(str::to_string).collect();
    let changed = format!("AA{}", &lines[3][2..]);
    assert_ne!(changed, lines[3]);
    lines[3] = changed;
    let tampered = dir.path().join("tampered");
    std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
    let (code, said) = verify(&tampered, &["--vkey", log_vkey]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("inclusion proof"), "{said}");
}

#[tokio::test]
async fn a_witness_that_is_down_neither_blocks_ingest_nor_the_quorum() {
    let keys = tempfile::tempdir().unwrap();
    let (key_path, log_vkey) = log_key(keys.path());
    let up = witness("witness-up.example/w", &log_vkey).await;
    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down_key =
        sms_audit::domain::cosignature::WitnessKey::generate("witness-down.example/w").unwrap();
    let targets = vec![
        target(&up.url, &up.vkey),
        target(&down_url, &down_key.verifier_key()),
    ];
    let app = start_witnessed(targets, 1, key_path).await;

    for _ in 0..5 {
        assert_eq!(
            app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
            200
        );
    }
    eventually(
        "a checkpoint witnessed by the one witness up",
        PATIENCE,
        || async {
            let reply = app
                .get("/api/v1/checkpoints/latest?witnessed=1", &app.admin_token)
                .await;
            (reply.status == 200 && reply.text.starts_with(&format!("{ORIGIN}\n5\n"))).then_some(())
        },
    )
    .await;
    let conn = app.write_conn();
    let error: String = eventually("the down witness's failure recorded", PATIENCE, || async {
        conn.query_row(
            "SELECT last_error FROM witnesses WHERE url = ?1",
            [&down_url],
            |r| r.get::<_, Option<String>>(0),
        )
        .ok()
        .flatten()
    })
    .await;
    assert!(error.contains("no answer"), "the reason is kept: {error}");
    let list = app
        .get("/api/v1/checkpoints", &app.admin_token)
        .await
        .json();
    assert_eq!(list["checkpoints"][0]["witnesses"]["quorum"], 1);
    let metrics = app.get("/metrics", &app.admin_token).await.text;
    assert!(
        metrics.contains("sms_audit_witness_failures_total{witness=\"witness-down.example/w\",reason=\"unreachable\"}"),
        "{metrics}"
    );
    up.handle.stop(true).await;
}

#[tokio::test]
async fn witnessed_is_a_flag_that_needs_witnesses() {
    let app = TestApp::spawn().await;
    app.get("/api/v1/checkpoints/latest?witnessed=1", &app.admin_token)
        .await
        .assert_error(400, "SMS.9001");
    app.get("/api/v1/checkpoints/latest?witnessed=yes", &app.admin_token)
        .await
        .assert_error(400, "SMS.9001");
}

/// The latest checkpoint's size, if any.
async fn latest_size(app: &TestApp) -> Option<u64> {
    let reply = app
        .get("/api/v1/checkpoints/latest", &app.admin_token)
        .await;
    (reply.status == 200).then(|| reply.text.lines().nth(1).unwrap().parse().unwrap())
}

#[tokio::test]
async fn a_restore_from_an_older_backup_is_a_fork_until_accepted_and_witnesses_refuse_it() {
    let keys = tempfile::tempdir().unwrap();
    let (key_path, log_vkey) = log_key(keys.path());
    let w = witness("witness-fork.example/w", &log_vkey).await;
    let targets = vec![target(&w.url, &w.vkey)];
    let app = start_witnessed(targets, 1, key_path.clone()).await;
    let witnessed = |size: u64| {
        let app = &app;
        async move {
            let reply = app
                .get("/api/v1/checkpoints/latest?witnessed=1", &app.admin_token)
                .await;
            (reply.status == 200 && reply.text.starts_with(&format!("{ORIGIN}\n{size}\n")))
                .then_some(())
        }
    };
    for _ in 0..3 {
        assert_eq!(
            app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
            200
        );
    }
    eventually("size 3 witnessed", PATIENCE, || witnessed(3)).await;
    let backup = keys.path().join("backup.db");
    let copied = crate::helpers::run(&app.db_path, &["backup", "--to", backup.to_str().unwrap()]);
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    for _ in 0..3 {
        assert_eq!(
            app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
            200
        );
    }
    eventually("size 6 witnessed", PATIENCE, || witnessed(6)).await;
    let stopped = app.stop().await;

    // The operator restores the older backup and starts again.
    let db = stopped.db_path.clone();
    let restored = crate::helpers::run(&db, &["restore", "--from", backup.to_str().unwrap()]);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let receiver = crate::notify::Receiver::start(0).await;
    let hook = receiver.url.clone();
    let app = stopped
        .start_with(move |c| {
            c.notify = Some(sms_audit::services::notify::NotifySettings {
                urls: vec![hook],
                upstream_after: Duration::from_secs(600),
                policy: sms_audit::services::outbox::RetryPolicy::DEFAULT,
                timeout: Duration::from_secs(2),
            })
        })
        .await;
    for _ in 0..2 {
        assert_eq!(
            app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
            200
        );
    }
    // Five uploads now, but the key signed six: nothing is signed.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        latest_size(&app).await,
        Some(3),
        "no checkpoint of the fork"
    );

    let accepted = crate::helpers::run(
        &db,
        &[
            "evidence",
            "accept-fork",
            "--reason",
            "restored the 3-upload backup",
            "--signing-key",
            key_path.to_str().unwrap(),
        ],
    );
    let said = String::from_utf8_lossy(&accepted.stdout).into_owned();
    assert!(
        accepted.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert!(
        said.contains("fork accepted") && said.contains("size 6"),
        "{said}"
    );
    assert!(
        accepted.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let note = eventually("the fork's first checkpoint", PATIENCE, || async {
        let reply = app
            .get("/api/v1/checkpoints/latest", &app.admin_token)
            .await;
        reply
            .text
            .starts_with(&format!("{ORIGIN}\n5\n"))
            .then_some(reply.text)
    })
    .await;
    assert!(
        note.contains("\naccepted-fork signed size 6 root "),
        "{note}"
    );
    assert!(
        note.contains("reason: restored the 3-upload backup\n"),
        "{note}"
    );
    let conn = app.write_conn();
    let logged: i64 = conn
        .query_row(
            "SELECT count(*) FROM admin_log WHERE action = 'accept-fork'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(logged, 1);
    // The witness, which cosigned 6, never cosigns the fork; the service says so.
    let (refused, error): (bool, String) =
        eventually("the witness's refusal", PATIENCE, || async {
            conn.query_row(
                "SELECT refused_inconsistent, last_error FROM witnesses",
                [],
                |r| Ok((r.get::<_, bool>(0)?, r.get::<_, Option<String>>(1)?)),
            )
            .ok()
            .and_then(|(refused, error)| refused.then_some((refused, error?)))
        })
        .await;
    assert!(refused && error.contains("fork"), "{error}");
    let audit = app
        .login(&app.admin_token)
        .await
        .ok()
        .unwrap()
        .get("/audit")
        .await
        .text;
    assert!(
        audit.contains("refused a checkpoint as inconsistent"),
        "{audit}"
    );
    let announced = eventually("the refusal announced", PATIENCE, || async {
        receiver
            .delivered()
            .into_iter()
            .find(|n| n["kind"] == "witness_refused")
    })
    .await;
    assert!(
        announced["text"].as_str().unwrap().contains("fork"),
        "{announced}"
    );
    w.handle.stop(true).await;
}

#[tokio::test]
async fn evidence_vkey_prints_the_logs_key_without_a_service() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
        200
    );
    let served = app
        .get("/api/v1/checkpoints", &app.admin_token)
        .await
        .json()["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    let stopped = app.stop().await;
    let printed = crate::helpers::run(&stopped.db_path, &["evidence", "vkey"]);
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim(), served);
    // Without a key file there is nothing to print.
    let elsewhere = tempfile::tempdir().unwrap();
    let missing = crate::helpers::run(&elsewhere.path().join("none.db"), &["evidence", "vkey"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[tokio::test]
async fn a_witness_that_answers_garbage_or_hangs_is_recorded_and_never_counted() {
    let keys = tempfile::tempdir().unwrap();
    let (key_path, log_vkey) = log_key(keys.path());
    let good = witness("witness-good.example/w", &log_vkey).await;
    let garbage = answering(false).await;
    let hanging = answering(true).await;
    let garbage_key =
        sms_audit::domain::cosignature::WitnessKey::generate("garbage.example/w").unwrap();
    let hanging_key =
        sms_audit::domain::cosignature::WitnessKey::generate("hanging.example/w").unwrap();
    let targets = vec![
        target(&good.url, &good.vkey),
        target(&garbage, &garbage_key.verifier_key()),
        target(&hanging, &hanging_key.verifier_key()),
    ];
    let app = start_witnessed(targets, 1, key_path).await;
    let started = std::time::Instant::now();
    for _ in 0..4 {
        assert_eq!(
            app.upload(TASK, &app.admin_token, EXAMPLE).await.status,
            200
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "uploads never wait for witnesses"
    );
    eventually("witnessed by the good witness", PATIENCE, || async {
        let reply = app
            .get("/api/v1/checkpoints/latest?witnessed=1", &app.admin_token)
            .await;
        (reply.status == 200 && reply.text.starts_with(&format!("{ORIGIN}\n4\n"))).then_some(())
    })
    .await;
    let conn = app.write_conn();
    let error_of = |url: String| {
        let conn = &conn;
        async move {
            conn.query_row(
                "SELECT last_error FROM witnesses WHERE url = ?1",
                [&url],
                |r| r.get::<_, Option<String>>(0),
            )
            .ok()
            .flatten()
        }
    };
    let said = eventually("the garbage recorded", PATIENCE, || {
        error_of(garbage.clone())
    })
    .await;
    assert!(said.contains("without a valid cosignature"), "{said}");
    let said = eventually("the hang recorded", PATIENCE, || error_of(hanging.clone())).await;
    assert!(said.contains("no answer"), "{said}");
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM cosignatures", [], |r| r.get(0))
        .unwrap();
    let good_cosigned: i64 = conn
        .query_row(
            "SELECT count(*) FROM cosignatures c JOIN witnesses w ON w.id = c.witness_id WHERE w.url = ?1",
            [&good.url],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        stored, good_cosigned,
        "only verified cosignatures are stored"
    );
    good.handle.stop(true).await;
}

/// A witness that is not one: it answers every request with 200 and lines that
/// are no cosignature, or (`hang`) never answers. Returns its URL.
async fn answering(hang: bool) -> String {
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().default_service(actix_web::web::to(move || async move {
            if hang {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            actix_web::HttpResponse::Ok()
                .body("\u{2014} garbage.example/w AAAA\nnot a cosignature\n")
        }))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    tokio::spawn(server.run());
    url
}
