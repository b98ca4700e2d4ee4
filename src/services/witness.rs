//! sms-audit as a C2SP `tlog-witness`: checks an `add-checkpoint` request
//! against the logs it is configured for and the latest checkpoint it cosigned
//! for each, and cosigns (`cosignature/v1`). The check and the update of its
//! state happen in one `BEGIN IMMEDIATE` transaction, so two requests can never
//! roll a log back.

use std::collections::BTreeMap;

use rusqlite::{Connection, TransactionBehavior};
use signed_note::{Note, NoteError, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::Checkpoint;

use crate::domain::cosignature::WitnessKey;
use crate::domain::witness::{check_consistency, AddCheckpoint, Inconsistent, Witnessed};
use crate::domain::Timestamp;
use crate::storage::{witness as store, StorageError};

/// Why the witness did not cosign, with the protocol's status for each.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The request or its checkpoint does not parse (400).
    #[error("{0}")]
    Malformed(String),
    /// A log this witness is not configured for (404).
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// No valid signature of a trusted key for the origin, or a bad one (403).
    #[error("{0}")]
    Signature(String),
    /// Signed, but not consistent with what was cosigned before (400, 409, 422).
    #[error(transparent)]
    Inconsistent(#[from] Inconsistent),
    /// The witness's database failed (500).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Refusal {
    /// The HTTP status the protocol gives it.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) => 400,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Signature(_) => 403,
            Refusal::Inconsistent(i) => i.status(),
            Refusal::Storage(_) => 500,
        }
    }
}

impl From<rusqlite::Error> for Refusal {
    fn from(e: rusqlite::Error) -> Self {
        Refusal::Storage(e.into())
    }
}

/// A witness: its key and the logs it cosigns for.
pub struct Witness {
    key: WitnessKey,
    /// Each log's origin and the verifier keys it may sign with.
    logs: BTreeMap<String, Vec<String>>,
}

impl Witness {
    /// `logs`: (origin, the log's verifier key), one or more per origin.
    pub fn new(key: WitnessKey, logs: &[(String, String)]) -> Result<Self, String> {
        let mut by_origin: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (origin, vkey) in logs {
            let verifier = StandardVerifier::new(vkey)
                .map_err(|e| format!("--log {origin}={vkey}: not a log verifier key ({e})"))?;
            if verifier.name() != origin {
                return Err(format!(
                    "--log {origin}={vkey}: the key is named {:?}, not the origin",
                    verifier.name()
                ));
            }
            by_origin
                .entry(origin.clone())
                .or_default()
                .push(vkey.clone());
        }
        Ok(Self {
            key,
            logs: by_origin,
        })
    }

    /// The request, once its checkpoint is signed by a key trusted for its log:
    /// everything that needs no database, so that it runs before the state is
    /// locked.
    pub fn signed_request(&self, body: &[u8]) -> Result<SignedRequest, Refusal> {
        let request = AddCheckpoint::parse(body).map_err(|e| Refusal::Malformed(e.to_string()))?;
        let (note, checkpoint) = self.verified(&request.checkpoint)?;
        Ok(SignedRequest {
            request,
            note,
            checkpoint,
        })
    }

    /// Checks a signed request against the state and cosigns it, in one
    /// transaction.
    pub fn cosign(
        &self,
        conn: &mut Connection,
        signed: SignedRequest,
        now: u64,
    ) -> Result<String, Refusal> {
        let SignedRequest {
            request,
            note,
            checkpoint,
        } = signed;
        let origin = checkpoint.origin().to_string();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last = store::latest(&tx, &origin)?;
        let size = checkpoint.size();
        if let Err(inconsistent) = check_consistency(last, &request, size, *checkpoint.hash()) {
            drop(tx);
            // Signed by the log: kept, as possible proof of its misbehaviour.
            let text = String::from_utf8_lossy(&request.checkpoint);
            let at = crate::domain::now_ms();
            store::record_refusal(
                conn,
                &origin,
                inconsistent.status(),
                &inconsistent.to_string(),
                &text,
                at,
            )?;
            return Err(inconsistent.into());
        }
        let mut cosigned = note;
        cosigned
            .add_sigs(&[&self.key.signer(now)])
            .map_err(|e| Refusal::Malformed(e.to_string()))?;
        let stored = String::from_utf8_lossy(&cosigned.to_bytes()).into_owned();
        let witnessed = Witnessed {
            size,
            root: *checkpoint.hash(),
        };
        store::advance(&tx, &origin, witnessed, &stored, crate::domain::now_ms())?;
        tx.commit()?;
        Ok(own_lines(&stored, self.key.name()))
    }

    /// The checkpoint, if a trusted key of its origin signed it: the note keeps
    /// only the log's verified signatures.
    fn verified(&self, bytes: &[u8]) -> Result<(Note, Checkpoint), Refusal> {
        let note = Note::from_bytes(bytes)
            .map_err(|e| Refusal::Malformed(format!("the checkpoint is not a signed note: {e}")))?;
        let checkpoint = Checkpoint::from_bytes(note.text())
            .map_err(|e| Refusal::Malformed(format!("not a checkpoint: {e}")))?;
        let origin = checkpoint.origin();
        let vkeys = self
            .logs
            .get(origin)
            .ok_or_else(|| Refusal::UnknownOrigin(origin.to_string()))?;
        let verifiers: Vec<Box<dyn Verifier>> = vkeys
            .iter()
            .map(|v| {
                Box::new(StandardVerifier::new(v).expect("checked in new")) as Box<dyn Verifier>
            })
            .collect();
        let (verified, _unknown) =
            note.verify(&VerifierList::new(verifiers))
                .map_err(|e| match e {
                    NoteError::UnverifiedNote => {
                        Refusal::Signature(format!("no signature of a key trusted for {origin}"))
                    }
                    other => {
                        Refusal::Signature(format!("the log's signature does not verify: {other}"))
                    }
                })?;
        let note =
            Note::new(note.text(), &verified).map_err(|e| Refusal::Malformed(e.to_string()))?;
        Ok((note, checkpoint))
    }
}

/// An `add-checkpoint` request whose checkpoint a trusted log key signed.
pub struct SignedRequest {
    request: AddCheckpoint,
    note: Note,
    checkpoint: Checkpoint,
}

/// The signature lines of `name` in a note, each with its newline.
fn own_lines(note: &str, name: &str) -> String {
    let prefix = format!("\u{2014} {name} ");
    note.lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The latest cosigned checkpoint of a log, by the hex SHA-256 of its origin.
pub fn monitoring_checkpoint(
    conn: &Connection,
    origin_hash: &str,
) -> Result<Option<String>, StorageError> {
    store::checkpoint_by_origin_hash(conn, origin_hash)
}

/// Now, as a cosignature's timestamp.
pub fn posix_now() -> u64 {
    let ms: Timestamp = crate::domain::now_ms();
    (ms / 1000) as u64
}

/// `sms-audit-witness/<hostname>`: a new witness key's name unless given.
pub fn default_name() -> String {
    crate::services::checkpoints::default_origin().replacen("sms-audit/", "sms-audit-witness/", 1)
}

/// Reads the witness key file, or creates it (owner-only, never over another
/// file) with a new key named `name`.
pub fn load_or_create_key(path: &std::path::Path, name: &str) -> Result<WitnessKey, String> {
    let bad = |why: String| format!("witness key {}: {why}", path.display());
    match std::fs::read_to_string(path) {
        Ok(text) => WitnessKey::parse(&text).map_err(|e| bad(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            let key = WitnessKey::generate(name).map_err(|e| bad(e.to_string()))?;
            crate::storage::files::create_new_private(path)
                .and_then(|mut f| f.write_all(key.to_private_text().as_bytes()))
                .map_err(|e| bad(e.to_string()))?;
            tracing::info!(path = %path.display(), verifier_key = %key.verifier_key(), "created the witness key");
            Ok(key)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}
