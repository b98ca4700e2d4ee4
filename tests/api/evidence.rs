//! Merkle proofs over the ledger, checked against an independent RFC 6962 /
//! RFC 9162 implementation written here from the RFC's text.

use sms_audit::domain::Role;

use crate::helpers::{eventually, TestApp, EXAMPLE, PATIENCE};

#[path = "../common/rfc6962.rs"]
mod rfc6962;
use rfc6962::{consistent, mth, root_from_inclusion, H};

fn leaf(entry_hash_hex: &str) -> H {
    rfc6962::leaf(&hex::decode(entry_hash_hex).unwrap())
}

fn b64(s: &serde_json::Value) -> H {
    tlog_tiles::Hash::parse_hash(s.as_str().unwrap()).unwrap().0
}

async fn store(app: &TestApp, n: usize) -> Vec<H> {
    let agent = app.add_credential("agent", Role::Agent, None, false);
    let mut leaves = Vec::new();
    for i in 0..n {
        let task = format!("task-{}", i % 3);
        assert_eq!(app.upload(&task, &agent.token, EXAMPLE).await.status, 200);
        let record = app
            .get(&format!("/api/v1/uploads/{}", i + 1), &app.admin_token)
            .await
            .json();
        leaves.push(leaf(record["entry_hash"].as_str().unwrap()));
    }
    leaves
}

#[tokio::test]
async fn every_inclusion_proof_leads_to_the_rfc_6962_root() {
    let app = TestApp::spawn().await;
    let leaves = store(&app, 11).await;
    for size in 1..=leaves.len() as u64 {
        for id in 1..=size {
            let proof = app
                .get(
                    &format!("/api/v1/uploads/{id}/proof?tree_size={size}"),
                    &app.admin_token,
                )
                .await;
            assert_eq!(proof.status, 200, "{}", proof.text);
            let p = proof.json();
            assert_eq!(p["leaf_index"], id - 1);
            assert_eq!(p["tree_size"], size);
            let expected_root = mth(&leaves[..size as usize]);
            assert_eq!(b64(&p["root_hash"]), expected_root, "root at {size}");
            assert_eq!(b64(&p["leaf_hash"]), leaves[id as usize - 1]);
            let path: Vec<H> = p["hashes"].as_array().unwrap().iter().map(b64).collect();
            assert_eq!(
                root_from_inclusion(id - 1, size, leaves[id as usize - 1], &path),
                Some(expected_root),
                "upload {id} in {size}"
            );
        }
    }
    // Without tree_size: the whole tree now.
    let p = app
        .get("/api/v1/uploads/3/proof", &app.admin_token)
        .await
        .json();
    assert_eq!(p["tree_size"], 11);
}

#[tokio::test]
async fn every_consistency_proof_holds() {
    let app = TestApp::spawn().await;
    let leaves = store(&app, 9).await;
    let n = leaves.len() as u64;
    for from in 1..=n {
        for to in from..=n {
            let reply = app
                .get(
                    &format!("/api/v1/checkpoints/consistency?from={from}&to={to}"),
                    &app.admin_token,
                )
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            let p = reply.json();
            let (fr, tr) = (b64(&p["from_root"]), b64(&p["to_root"]));
            assert_eq!(fr, mth(&leaves[..from as usize]));
            assert_eq!(tr, mth(&leaves[..to as usize]));
            let path: Vec<H> = p["hashes"].as_array().unwrap().iter().map(b64).collect();
            assert!(consistent(from, to, fr, tr, &path), "{from} → {to}");
            if from < to && path.len() > 1 {
                let mut broken = path.clone();
                broken.pop();
                assert!(
                    !consistent(from, to, fr, tr, &broken),
                    "a shortened proof fails"
                );
            }
        }
    }
}

#[tokio::test]
async fn bad_sizes_and_unknown_uploads_are_refused() {
    let app = TestApp::spawn().await;
    store(&app, 4).await;
    let token = &app.admin_token;
    for path in [
        "/api/v1/uploads/1/proof?tree_size=0",
        "/api/v1/uploads/1/proof?tree_size=5",
        "/api/v1/uploads/3/proof?tree_size=2",
        "/api/v1/uploads/1/proof?tree_size=-1",
        "/api/v1/checkpoints/consistency?from=0&to=4",
        "/api/v1/checkpoints/consistency?from=3&to=2",
        "/api/v1/checkpoints/consistency?from=1&to=5",
        "/api/v1/checkpoints/consistency?from=1",
    ] {
        app.get(path, token).await.assert_error(400, "SMS.9001");
    }
    app.get("/api/v1/uploads/9/proof", token)
        .await
        .assert_error(404, "APIGW.0101");
    let agent = app.add_credential("reader-agent", Role::Agent, None, false);
    app.get("/api/v1/uploads/1/proof", &agent.token)
        .await
        .assert_error(403, "SMS.9004");
}

#[tokio::test]
async fn a_database_from_before_the_tree_gets_it_on_start() {
    let app = TestApp::spawn().await;
    let leaves = store(&app, 6).await;
    let before = app
        .get("/api/v1/uploads/2/proof", &app.admin_token)
        .await
        .json();
    let app = {
        let app = app.restart().await;
        app.write_conn()
            .execute("DELETE FROM tree_hashes", [])
            .unwrap();
        app.restart().await
    };
    let after = app
        .get("/api/v1/uploads/2/proof", &app.admin_token)
        .await
        .json();
    assert_eq!(before, after);
    assert_eq!(b64(&after["root_hash"]), mth(&leaves));
}

async fn wait_for_checkpoint(app: &TestApp, size: u64) -> String {
    let what = format!("a checkpoint of size {size}");
    eventually(&what, PATIENCE, || async {
        let reply = app
            .get("/api/v1/checkpoints/latest", &app.admin_token)
            .await;
        let made = reply.status == 200 && reply.text.lines().nth(1) == Some(&size.to_string());
        made.then_some(reply.text)
    })
    .await
}

fn verifies(note: &str, vkey: &str) -> bool {
    use signed_note::{Note, StandardVerifier, VerifierList};
    let verifier = StandardVerifier::new(vkey).unwrap();
    Note::from_bytes(note.as_bytes())
        .unwrap()
        .verify(&VerifierList::new(vec![Box::new(verifier)]))
        .is_ok()
}

#[tokio::test]
async fn checkpoints_are_signed_stored_and_written_out() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("checkpoints");
    let in_config = dir.clone();
    let app = TestApp::spawn_with(move |c| {
        let settings = c.checkpoints.as_mut().unwrap();
        settings.interval = std::time::Duration::from_millis(200);
        settings.origin = "audit.example/sms".into();
        settings.dir = Some(in_config);
    })
    .await;
    app.get("/api/v1/checkpoints/latest", &app.admin_token)
        .await
        .assert_error(404, "APIGW.0101");
    let leaves = store(&app, 3).await;
    let note = wait_for_checkpoint(&app, 3).await;
    let lines: Vec<&str> = note.split('\n').collect();
    assert_eq!(lines[0], "audit.example/sms");
    assert_eq!(b64(&serde_json::json!(lines[2])), mth(&leaves));
    assert!(lines[3].starts_with("time 20"), "{note}");
    let list = app
        .get("/api/v1/checkpoints", &app.admin_token)
        .await
        .json();
    let vkey = list["verifier_key"].as_str().unwrap().to_string();
    assert!(vkey.starts_with("audit.example/sms+"), "{vkey}");
    assert!(verifies(&note, &vkey));
    let forged = note.replacen("\n3\n", "\n4\n", 1);
    assert!(!verifies(&forged, &vkey), "a changed size fails");
    assert_eq!(
        std::fs::read_to_string(dir.join("3.checkpoint")).unwrap(),
        note
    );
    assert_eq!(std::fs::read_to_string(dir.join("latest")).unwrap(), note);
    let key_file = app.db_path.with_file_name("audit.db.signing-key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let key_text = std::fs::read_to_string(&key_file).unwrap();
    for secret_place in [note.as_str(), &list.to_string()] {
        assert!(
            !secret_place.contains(key_text.trim()),
            "the private key stays in its file"
        );
    }

    let agent = app.add_credential("agent-2", Role::Agent, None, false);
    assert_eq!(
        app.upload("task-x", &agent.token, EXAMPLE).await.status,
        200
    );
    wait_for_checkpoint(&app, 4).await;
    let list = app
        .get("/api/v1/checkpoints", &app.admin_token)
        .await
        .json();
    let sizes: Vec<u64> = list["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tree_size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [4, 3], "newest first, one per size");
    // A `before` beyond any tree size lists them all (it once wrapped negative).
    for before in ["18446744073709551615", "9223372036854775808", "5"] {
        let all = app
            .get(
                &format!("/api/v1/checkpoints?before={before}"),
                &app.admin_token,
            )
            .await
            .json();
        assert_eq!(all["checkpoints"].as_array().unwrap().len(), 2, "{before}");
    }

    // A restart keeps the key; the stop made a checkpoint of everything.
    let app = app.restart().await;
    let again = app
        .get("/api/v1/checkpoints", &app.admin_token)
        .await
        .json();
    assert_eq!(again["verifier_key"], list["verifier_key"]);
}

#[tokio::test]
async fn the_last_checkpoint_is_made_at_shutdown() {
    let app = TestApp::spawn().await; // every 60 s: none while the test runs
    store(&app, 2).await;
    app.get("/api/v1/checkpoints/latest", &app.admin_token)
        .await
        .assert_error(404, "APIGW.0101");
    let app = app.restart().await;
    let note = app
        .get("/api/v1/checkpoints/latest", &app.admin_token)
        .await;
    assert_eq!(note.status, 200);
    assert_eq!(note.text.lines().nth(1), Some("2"));
    assert_eq!(note.headers["content-type"], "text/plain; charset=utf-8");
}

#[tokio::test]
async fn the_evidence_api_checkpoints_first_and_its_bundle_verifies() {
    let app = TestApp::spawn().await; // no checkpoint yet: the API makes one
    store(&app, 5).await; // tasks task-0, task-1, task-2
    let reply = app
        .get("/api/v1/evidence?task_id=task-1", &app.admin_token)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let bundle: sms_audit::services::evidence::Bundle = serde_json::from_str(&reply.text).unwrap();
    let ids: Vec<i64> = bundle.entries.iter().map(|e| e.id).collect();
    assert_eq!(ids, [2, 5]);
    let vkey = app
        .get("/api/v1/checkpoints", &app.admin_token)
        .await
        .json()["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(bundle.vkey, vkey);
    let summary = sms_audit::services::evidence::verify_bundle(&bundle, Some(&vkey)).unwrap();
    assert!(summary.contains("2 entries"), "{summary}");
    assert!(summary.contains("checkpoint of 5 uploads"), "{summary}");

    assert!(
        summary.contains("not that the log holds no other upload"),
        "{summary}"
    );
    let reparse =
        || -> sms_audit::services::evidence::Bundle { serde_json::from_str(&reply.text).unwrap() };
    // Each entry still proves itself, but a copy or a reordering is an edit.
    let mut duplicated = reparse();
    duplicated.entries.push(reparse().entries.remove(0));
    let mut reordered = reparse();
    reordered.entries.reverse();
    for edited in [duplicated, reordered] {
        let error = sms_audit::services::evidence::verify_bundle(&edited, Some(&vkey)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("unique and in ascending id order"),
            "{error}"
        );
    }

    let mut tampered = bundle;
    tampered.entries[1].inclusion_proof.pop();
    assert!(sms_audit::services::evidence::verify_bundle(&tampered, Some(&vkey)).is_err());

    // Bundles from the API hold a bounded amount of bodies.
    let conn = app.write_conn();
    let too_large =
        sms_audit::services::evidence::bundle(&conn, "task-1", None, None, vkey, Some(10));
    let error = too_large.unwrap_err().to_string();
    assert!(error.contains("narrow it with since and until"), "{error}");

    app.get("/api/v1/evidence?task_id=nope", &app.admin_token)
        .await
        .assert_error(404, "APIGW.0101");
    app.get("/api/v1/evidence?task_id=bad%20id", &app.admin_token)
        .await
        .assert_error(400, "SMS.9001");
    app.get("/api/v1/evidence", &app.admin_token)
        .await
        .assert_error(400, "SMS.9001");
}

#[tokio::test]
async fn the_pages_show_the_key_the_checkpoints_and_each_upload_s_proof() {
    let app = TestApp::spawn_with(|c| {
        c.checkpoints.as_mut().unwrap().interval = std::time::Duration::from_millis(200);
    })
    .await;
    store(&app, 2).await;
    wait_for_checkpoint(&app, 2).await;
    store_more(&app, 1).await;
    wait_for_checkpoint(&app, 3).await;
    let vkey = app
        .get("/api/v1/checkpoints", &app.admin_token)
        .await
        .json()["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    let browser = app
        .login(&app.admin_token)
        .await
        .unwrap_or_else(|r| panic!("{}", r.text));
    let audit = browser.get("/audit").await;
    assert_eq!(audit.status, 200);
    assert!(audit.text.contains(&vkey), "the verifier key, to copy");
    assert!(
        audit
            .text
            .contains("consistent</span> the checkpoint of 3 uploads extends the one of 2"),
        "{}",
        audit.text
    );
    let upload = browser.get("/uploads/3").await;
    assert!(
        upload.text.contains("/api/v1/uploads/3/proof?tree_size=3"),
        "{}",
        upload.text
    );
    let task = browser.get("/tasks/task-0").await;
    assert!(
        task.text.contains("/api/v1/evidence?task_id=task%2D0"),
        "{}",
        task.text
    );
    let upload = browser.get("/uploads/1").await;
    assert!(
        upload.text.contains("/api/v1/uploads/1/proof?tree_size=2"),
        "the first checkpoint that covers it"
    );
}

async fn store_more(app: &TestApp, n: usize) {
    let agent = app.add_credential(&format!("agent-more-{n}"), Role::Agent, None, false);
    for _ in 0..n {
        assert_eq!(
            app.upload("task-more", &agent.token, EXAMPLE).await.status,
            200
        );
    }
}

#[tokio::test]
async fn a_full_tile_is_read_once_and_then_served_from_memory() {
    let app = TestApp::spawn().await;
    store_more(&app, 256).await;
    let tile = |path: &'static str| {
        let app = &app;
        async move {
            let r = app
                .client
                .get(format!("{}{path}", app.address))
                .header("X-Auth-Token", &app.admin_token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let control = r.headers()["cache-control"].to_str().unwrap().to_string();
            (control, r.bytes().await.unwrap().to_vec())
        }
    };
    let hits = || async {
        let metrics = app.get("/metrics", &app.admin_token).await.text;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("sms_audit_tile_cache_hits_total "))
            .map(|n| n.trim().parse::<u64>().unwrap())
            .expect("the tile cache's metric")
    };
    // A partial tile is read afresh every time: it grows with the tree.
    let (control, partial) = tile("/tile/0/000.p/255").await;
    assert_eq!(control, "no-store");
    tile("/tile/0/000.p/255").await;
    assert_eq!(hits().await, 0);
    let (control, first) = tile("/tile/0/000").await;
    assert_eq!(control, "public, max-age=31536000, immutable");
    assert_eq!(first.len(), 256 * 32);
    assert_eq!(&first[..255 * 32], &partial[..]);
    assert_eq!(hits().await, 0, "read from the database the first time");
    let (_, again) = tile("/tile/0/000").await;
    assert_eq!(again, first);
    assert_eq!(hits().await, 1, "then from memory");
}

#[tokio::test]
async fn the_log_is_served_as_c2sp_tiles() {
    let app = TestApp::spawn().await;
    let leaves = store(&app, 3).await;
    let tile = |path: &str| {
        let url = format!("{}{path}", app.address);
        let client = app.client.clone();
        let token = app.admin_token.clone();
        async move {
            let r = client
                .get(url)
                .header("X-Auth-Token", token)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        }
    };
    let (status, data) = tile("/tile/0/000.p/3").await;
    assert_eq!(status, 200);
    assert_eq!(data, leaves.concat(), "the three leaf hashes");
    assert_eq!(tile("/tile/0/000.p/2").await.1, leaves[..2].concat());
    for missing in [
        "/tile/0/000",
        "/tile/0/000.p/4",
        "/tile/1/000.p/1",
        "/tile/0/1",
        "/tile/entries/000.p/3",
        "/tile/0/x001/000",
        // Tiles no tree can have: never a panic, a 500 or another level's hash.
        "/tile/0/000.p/0",
        "/tile/64/000.p/1",
        "/tile/100/000",
        "/tile/255/000",
        "/tile/8/000.p/1",
        "/tile/9/000.p/1",
        "/tile/16/000.p/1",
        "/tile/0/x072/057/594/037/927/935.p/1",
    ] {
        let (status, body) = tile(missing).await;
        assert_eq!(status, 404, "{missing}: {}", String::from_utf8_lossy(&body));
    }
    // For auditors and operators only, unless --public-log.
    let anonymous = app
        .client
        .get(format!("{}/tile/0/000.p/3", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let app = app.restart().await; // the stop made a checkpoint
    let checkpoint = app.get("/checkpoint", &app.admin_token).await;
    assert_eq!(checkpoint.status, 200);
    assert_eq!(checkpoint.text.lines().nth(1), Some("3"));
}

#[tokio::test]
async fn a_public_log_serves_full_tiles_to_anyone() {
    let app = TestApp::spawn_with(|c| c.public_log = true).await;
    let agent = app.add_credential("agent", Role::Agent, None, false);
    for _ in 0..257 {
        assert_eq!(
            app.upload("task-t", &agent.token, EXAMPLE).await.status,
            200
        );
    }
    let full = app
        .client
        .get(format!("{}/tile/0/000", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 200);
    assert!(full.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let data = full.bytes().await.unwrap();
    assert_eq!(data.len(), 256 * 32);
    let record = app
        .get("/api/v1/uploads/256", &app.admin_token)
        .await
        .json();
    assert_eq!(
        &data[255 * 32..],
        &leaf(record["entry_hash"].as_str().unwrap())[..]
    );
    let level1 = app
        .client
        .get(format!("{}/tile/1/000.p/1", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(level1.status(), 200, "the root of the first 256 leaves");
    let root: Vec<u8> = level1.bytes().await.unwrap().to_vec();
    let mut leaves = Vec::new();
    for id in 1..=256 {
        let r = app
            .get(&format!("/api/v1/uploads/{id}"), &app.admin_token)
            .await
            .json();
        leaves.push(leaf(r["entry_hash"].as_str().unwrap()));
    }
    assert_eq!(root, mth(&leaves).to_vec());
}
