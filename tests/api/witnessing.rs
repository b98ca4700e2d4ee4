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
    first.handle.stop(true).await;
    second.handle.stop(true).await;
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
