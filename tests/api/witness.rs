//! `witness serve` over HTTP: a log (signed with sms-audit's own checkpoint key,
//! its tree built here with `tlog_tiles`) asks it to cosign, and every answer
//! the C2SP tlog-witness protocol lists comes back as specified.

use sha2::Digest;
use signed_note::{Note, VerifierList};
use sms_audit::domain::checkpoint::CheckpointKey;
use sms_audit::domain::cosignature::CosignatureVerifier;
use sms_audit::domain::witness::AddCheckpoint;
use sms_audit::startup::witness::{WitnessConfig, WitnessServer};
use tlog_tiles::{Hash, HashReader};

const ORIGIN: &str = "log.example/audit";

/// A log's tree in memory: its stored hashes, as `tlog_tiles` lays them out.
#[derive(Default)]
struct Tree {
    stored: Vec<Hash>,
    size: u64,
}

impl HashReader for Tree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        Ok(indexes.iter().map(|&i| self.stored[i as usize]).collect())
    }
}

impl Tree {
    fn grow_to(&mut self, size: u64) {
        while self.size < size {
            let hashes =
                tlog_tiles::stored_hashes(self.size, &self.size.to_be_bytes(), self).unwrap();
            self.stored.extend(hashes);
            self.size += 1;
        }
    }

    fn root(&self, size: u64) -> Hash {
        tlog_tiles::tree_hash(size, self).unwrap()
    }

    fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        if old == 0 {
            return vec![];
        }
        tlog_tiles::prove_tree(new, old, self).unwrap()
    }
}

struct Witnessing {
    base: String,
    vkey: String,
    http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
}

async fn start(log: &CheckpointKey) -> Witnessing {
    let dir = tempfile::tempdir().unwrap();
    let server = WitnessServer::build(WitnessConfig {
        db: dir.path().join("witness.db"),
        key: dir.path().join("witness.key"),
        name: "auditor.example/witness".into(),
        logs: vec![(ORIGIN.into(), log.verifier_key())],
        listen: "127.0.0.1:0".into(),
        handle_signals: false,
    })
    .unwrap();
    let base = format!("http://{}", server.address());
    let vkey = server.verifier_key().to_string();
    let handle = server.handle();
    tokio::spawn(server.run_until_stopped());
    Witnessing {
        base,
        vkey,
        http: reqwest::Client::new(),
        handle,
        _dir: dir,
    }
}

impl Witnessing {
    async fn add(&self, old: u64, proof: Vec<Hash>, checkpoint: &str) -> (u16, String, String) {
        let body = AddCheckpoint {
            old,
            proof,
            checkpoint: checkpoint.as_bytes().to_vec(),
        }
        .to_bytes();
        let answer = self
            .http
            .post(format!("{}/add-checkpoint", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let content_type = answer
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, content_type, answer.text().await.unwrap())
    }
}

fn signed(log: &CheckpointKey, tree: &Tree, size: u64) -> String {
    log.sign(size, tree.root(size), chrono::Utc::now()).unwrap()
}

/// The cosignature lines verify, with this witness's key, on the checkpoint.
fn assert_cosigned(checkpoint: &str, lines: &str, vkey: &str) -> u64 {
    assert!(
        lines.starts_with("\u{2014} auditor.example/witness "),
        "{lines}"
    );
    assert!(lines.ends_with('\n'));
    let verifier = CosignatureVerifier::new(vkey).unwrap();
    let note = Note::from_bytes(format!("{checkpoint}{lines}").as_bytes()).unwrap();
    let (verified, _) = note
        .verify(&VerifierList::new(vec![Box::new(verifier)]))
        .expect("the cosignature verifies");
    CosignatureVerifier::timestamp(verified[0].signature()).unwrap()
}

#[tokio::test]
async fn a_witness_cosigns_consistent_checkpoints_and_refuses_everything_else() {
    let log = CheckpointKey::generate(ORIGIN).unwrap();
    let witness = start(&log).await;
    let mut tree = Tree::default();
    tree.grow_to(10);

    // First contact: old 0, no proof.
    let first = signed(&log, &tree, 5);
    let (status, _, lines) = witness.add(0, vec![], &first).await;
    assert_eq!(status, 200, "{lines}");
    let when = assert_cosigned(&first, &lines, &witness.vkey);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(when.abs_diff(now) < 60, "timestamped now: {when}");

    // A client that does not know the witness's size learns it: 409, text/x.tlog.size.
    let next = signed(&log, &tree, 10);
    let (status, content_type, body) = witness.add(0, vec![], &next).await;
    assert_eq!(
        (status, content_type.as_str(), body.as_str()),
        (409, "text/x.tlog.size", "5\n")
    );

    // A proof that does not prove consistency: 422, and the state stays.
    let mut bad = tree.proof(5, 10);
    bad[0] = tlog_tiles::record_hash(b"forged");
    assert_eq!(witness.add(5, bad, &next).await.0, 422);
    // A fork: another tree of size 10 whose first 5 leaves are not the ones
    // cosigned (its own proof from 5 is valid, for its own tree).
    let mut fork = Tree::default();
    fork.grow_to(2);
    for i in 100..108u64 {
        let hashes = tlog_tiles::stored_hashes(fork.size, &i.to_be_bytes(), &fork).unwrap();
        fork.stored.extend(hashes);
        fork.size += 1;
    }
    let forked = log.sign(10, fork.root(10), chrono::Utc::now()).unwrap();
    assert_eq!(witness.add(5, fork.proof(5, 10), &forked).await.0, 422);

    // The good proof: cosigned, and the witness moves to 10.
    let (status, _, lines) = witness.add(5, tree.proof(5, 10), &next).await;
    assert_eq!(status, 200, "{lines}");
    assert_cosigned(&next, &lines, &witness.vkey);
    // Asked again from 5, it says 10; the same size again needs the same root.
    assert_eq!(witness.add(5, tree.proof(5, 10), &next).await.2, "10\n");
    assert_eq!(witness.add(10, vec![], &next).await.0, 200);
    assert_eq!(witness.add(10, vec![], &forked).await.0, 422);
    // An old size above the checkpoint's: 400.
    assert_eq!(witness.add(11, vec![], &next).await.0, 400);

    // An unknown origin: 404; a log key it does not trust, or a bad signature: 403.
    let stranger = CheckpointKey::generate("other.example/log").unwrap();
    assert_eq!(
        witness.add(0, vec![], &signed(&stranger, &tree, 3)).await.0,
        404
    );
    let impostor = CheckpointKey::generate(ORIGIN).unwrap();
    assert_eq!(
        witness
            .add(10, vec![], &signed(&impostor, &tree, 10))
            .await
            .0,
        403
    );
    let tampered = next.replacen("\n10\n", "\n11\n", 1);
    assert_eq!(witness.add(10, vec![], &tampered).await.0, 403);
    // Not the protocol at all: 400.
    assert_eq!(witness.add(0, vec![], "just text").await.0, 400);
    let raw = witness
        .http
        .post(format!("{}/add-checkpoint", witness.base))
        .body("old 01\n\n")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);

    // The monitoring read: the latest cosigned checkpoint, with both signatures.
    let origin_hash = hex::encode(sha2::Sha256::digest(ORIGIN.as_bytes()));
    let monitored = witness
        .http
        .get(format!("{}/{origin_hash}/checkpoint", witness.base))
        .send()
        .await
        .unwrap();
    assert_eq!(monitored.status(), 200);
    let text = monitored.text().await.unwrap();
    assert!(text.starts_with(&format!("{ORIGIN}\n10\n")), "{text}");
    let note = Note::from_bytes(text.as_bytes()).unwrap();
    let log_verifier = signed_note::StandardVerifier::new(&log.verifier_key()).unwrap();
    let cosigner = CosignatureVerifier::new(&witness.vkey).unwrap();
    let (verified, unknown) = note
        .verify(&VerifierList::new(vec![
            Box::new(log_verifier),
            Box::new(cosigner),
        ]))
        .unwrap();
    assert_eq!(
        (verified.len(), unknown.len()),
        (2, 0),
        "the log's and the witness's"
    );
    let unknown_log = hex::encode(sha2::Sha256::digest(b"nobody"));
    let missing = witness
        .http
        .get(format!("{}/{unknown_log}/checkpoint", witness.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    witness.handle.stop(true).await;
}

#[tokio::test]
async fn two_requests_at_once_never_roll_the_witness_back() {
    let log = CheckpointKey::generate(ORIGIN).unwrap();
    let witness = start(&log).await;
    let mut tree = Tree::default();
    tree.grow_to(64);
    assert_eq!(witness.add(0, vec![], &signed(&log, &tree, 1)).await.0, 200);
    // From size 1, many clients race to sizes 2..=64: exactly one wins from 1;
    // every other learns the new size (409), and the state is never smaller.
    let mut racers = Vec::new();
    let witnessing = &witness;
    for size in 2..=64u64 {
        let checkpoint = signed(&log, &tree, size);
        let proof = tree.proof(1, size);
        racers.push(async move { (size, witnessing.add(1, proof, &checkpoint).await) });
    }
    let results = futures_util::future::join_all(racers).await;
    let winners: Vec<u64> = results
        .iter()
        .filter(|(_, (status, _, _))| *status == 200)
        .map(|(size, _)| *size)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (_, (status, _, body)) in &results {
        if *status != 200 {
            assert_eq!((*status, body.clone()), (409, format!("{}\n", winners[0])));
        }
    }
    witness.handle.stop(true).await;
}
