//! Evidence an auditor can check without trusting this service: RFC 6962
//! inclusion proofs of uploads and consistency proofs between tree sizes, over the
//! Merkle tree `storage::tree` keeps with the ledger.

use base64::prelude::{Engine, BASE64_STANDARD};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

use crate::domain::chain::entry_hash_of;
use crate::domain::policy::Policy;
use crate::domain::signing::sha256_hex;
use crate::domain::{format_timestamp, Timestamp};
use crate::storage::{checkpoints, ledger, tree, StorageError};
use std::collections::BTreeSet;

/// The `format` of an evidence bundle.
pub const BUNDLE_FORMAT: &str = "sms-audit-evidence/1";

/// Why evidence could not be given.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A tree size that does not fit.
    #[error("{0}")]
    BadSize(String),
    /// No upload with this id.
    #[error("no upload with id {0}")]
    NoSuchUpload(i64),
    /// No task with this id.
    #[error("no task {0:?}")]
    NoSuchTask(String),
    /// No checkpoint has been signed yet.
    #[error("no checkpoint yet: evidence needs one (the first is made once an upload is stored)")]
    NoCheckpoint,
    /// The bundle would exceed its size limit.
    #[error("the bundle would hold {} of upload bodies, more than the {limit} one request may: narrow it with since and until, or use `sms-audit evidence export`", crate::domain::counted(*bytes, "byte"))]
    TooLarge {
        /// Bytes of bodies it would hold.
        bytes: u64,
        /// The most one request may hold.
        limit: u64,
    },
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// That upload `id` is leaf `leaf_index` of the tree of `tree_size` leaves whose
/// root is `root_hash`: hash `leaf_hash` up the audit path `hashes` (base64,
/// RFC 6962 section 2.1.1).
#[derive(Debug, Serialize)]
pub struct InclusionProof {
    /// The upload's place in the tree (its id minus one).
    pub leaf_index: u64,
    /// The tree's size the proof leads to.
    pub tree_size: u64,
    /// The leaf's hash (hex).
    pub leaf_hash: String,
    /// The tree's root (hex).
    pub root_hash: String,
    /// The sibling hashes, leaf to root (hex).
    pub hashes: Vec<String>,
}

/// That the tree of `to` leaves extends the tree of `from` leaves (RFC 6962
/// section 2.1.2).
#[derive(Debug, Serialize)]
pub struct ConsistencyProof {
    /// The smaller tree's size.
    pub from: u64,
    /// The larger tree's size.
    pub to: u64,
    /// The smaller tree's root (hex).
    pub from_root: String,
    /// The larger tree's root (hex).
    pub to_root: String,
    /// The proof's hashes (hex).
    pub hashes: Vec<String>,
}

/// A tree size asked for: 1 to the current size (the empty tree proves nothing).
fn check_size(name: &str, size: u64, current: u64) -> Result<(), EvidenceError> {
    if size == 0 || size > current {
        return Err(EvidenceError::BadSize(format!(
            "{name}: must be from 1 to the tree's size, {current}"
        )));
    }
    Ok(())
}

/// The proof for upload `id` in the tree of `tree_size` leaves (default: the
/// latest checkpoint's, or the whole tree now before the first checkpoint).
pub fn inclusion(
    conn: &Connection,
    id: i64,
    tree_size: Option<u64>,
) -> Result<InclusionProof, EvidenceError> {
    let current = tree::size(conn).map_err(StorageError::from)?;
    let entry_hash: String = conn
        .query_row(
            "SELECT entry_hash FROM uploads WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()
        .map_err(StorageError::from)?
        .ok_or(EvidenceError::NoSuchUpload(id))?;
    let checkpointed = checkpoints::latest(conn)?.map(|c| c.tree_size);
    let tree_size = tree_size.or(checkpointed).unwrap_or(current);
    check_size("tree_size", tree_size, current)?;
    let leaf_index = id as u64 - 1;
    if leaf_index >= tree_size {
        return Err(EvidenceError::BadSize(format!(
            "tree_size: upload {id} is not in the tree of {}{}",
            crate::domain::counted(tree_size, "upload"),
            if Some(tree_size) == checkpointed {
                " (the latest checkpoint); the next checkpoint will include it, or pass a tree_size"
            } else {
                ""
            }
        )));
    }
    let entry = tree::entry_bytes(&entry_hash).map_err(StorageError::from)?;
    Ok(InclusionProof {
        leaf_index,
        tree_size,
        leaf_hash: tree::leaf_hash(&entry).to_string(),
        root_hash: tree::root(conn, tree_size)?.to_string(),
        hashes: tree::inclusion_proof(conn, tree_size, leaf_index)?
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
}

/// The consistency proof from tree size `from` to `to` (RFC 6962).
pub fn consistency(
    conn: &Connection,
    from: u64,
    to: u64,
) -> Result<ConsistencyProof, EvidenceError> {
    let current = tree::size(conn).map_err(StorageError::from)?;
    check_size("from", from, current)?;
    check_size("to", to, current)?;
    if from > to {
        return Err(EvidenceError::BadSize(format!(
            "from ({from}) must not be larger than to ({to})"
        )));
    }
    Ok(ConsistencyProof {
        from,
        to,
        from_root: tree::root(conn, from)?.to_string(),
        to_root: tree::root(conn, to)?.to_string(),
        hashes: tree::consistency_proof(conn, to, from)?
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
}

/// A task's history as evidence: its uploads (all the ledger fields, the raw
/// body, an inclusion proof each) and the signed checkpoint the proofs lead to.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bundle {
    /// The bundle's format and version.
    pub format: String,
    /// The log's verifier key (pin your own copy with `evidence verify --vkey`).
    pub vkey: String,
    /// The signed checkpoint (a C2SP signed note).
    pub checkpoint: String,
    /// The uploads it holds, by id.
    pub entries: Vec<BundleEntry>,
}

/// One upload in an evidence bundle: its chain entry and raw body.
#[derive(Debug, Serialize, Deserialize)]
pub struct BundleEntry {
    /// The upload's id.
    pub id: i64,
    /// The `X-Request-Id` it was answered with.
    pub request_id: String,
    /// Its task.
    pub task_id: String,
    /// When it arrived (RFC 3339).
    pub received_at: String,
    /// The credential that sent it.
    pub credential_name: String,
    /// How that credential signed.
    pub auth_method: String,
    /// SHA-256 of the raw body.
    pub body_sha256: String,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub entry_hash: String,
    /// Absent once retention purged the body (`purged_at` says when): the entry
    /// hash still covers `body_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_body_base64: Option<String>,
    /// When retention purged its body, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<String>,
    /// The audit path (base64) of leaf `id - 1` in the checkpoint's tree.
    pub inclusion_proof: Vec<String>,
}

/// The evidence of `task_id`'s uploads received in `[since, until)` that the
/// latest checkpoint covers; also returns how many newer ones it does not cover yet.
pub fn bundle(
    conn: &Connection,
    task_id: &str,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    vkey: String,
    max_body_bytes: Option<u64>,
) -> Result<(Bundle, u64), EvidenceError> {
    let known: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM tasks WHERE task_id = ?1",
            params![task_id],
            |r| r.get(0),
        )
        .map_err(StorageError::from)?;
    if !known {
        return Err(EvidenceError::NoSuchTask(task_id.to_string()));
    }
    let checkpoint = checkpoints::latest(conn)?.ok_or(EvidenceError::NoCheckpoint)?;
    let size = checkpoint.tree_size;
    if let Some(limit) = max_body_bytes {
        let bytes = ledger::task_body_bytes(conn, task_id, size as i64, since, until)?;
        if bytes > limit {
            return Err(EvidenceError::TooLarge { bytes, limit });
        }
    }
    let stored = ledger::task_entries(conn, task_id, size as i64, since, until)?;
    let newer: i64 = conn
        .query_row(
            "SELECT count(*) FROM uploads WHERE task_id = ?1 AND id > ?2",
            params![task_id, size as i64],
            |r| r.get(0),
        )
        .map_err(StorageError::from)?;
    let mut entries = Vec::with_capacity(stored.len());
    for e in stored {
        let proof = tree::inclusion_proof(conn, size, e.id as u64 - 1)?;
        entries.push(BundleEntry {
            id: e.id,
            request_id: e.request_id,
            task_id: e.task_id,
            received_at: format_timestamp(e.received_at),
            credential_name: e.credential_name,
            auth_method: e.auth_method,
            body_sha256: e.body_sha256,
            prev_hash: e.prev_hash,
            entry_hash: e.entry_hash,
            raw_body_base64: e
                .purged_at
                .is_none()
                .then(|| BASE64_STANDARD.encode(&e.raw_body)),
            purged_at: e.purged_at.map(format_timestamp),
            inclusion_proof: proof.iter().map(ToString::to_string).collect(),
        });
    }
    Ok((
        Bundle {
            format: BUNDLE_FORMAT.into(),
            vkey,
            checkpoint: crate::services::witnessing::cosigned_note(conn, &checkpoint.note, size)?,
            entries,
        },
        newer as u64,
    ))
}

/// Why a bundle does not check out: the first failure found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not a bundle this version reads.
    #[error("format is {0:?}, not {BUNDLE_FORMAT:?}")]
    Format(String),
    /// The verifier key given is not one.
    #[error("verifier key: {0}")]
    VerifierKey(String),
    /// The bundle's checkpoint does not verify.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The checkpoint's cosignatures do not meet the policy's quorum.
    #[error("witnesses: {0}")]
    Witnesses(String),
    /// An entry that does not verify, and why.
    #[error("entry {id}: {why}")]
    Entry {
        /// The entry's id.
        id: i64,
        /// What is wrong with it.
        why: String,
    },
}

/// Checks a bundle with nothing but itself and a verifier key (`vkey`, or the
/// bundle's own): the checkpoint's signature, then each entry's body hash, entry
/// hash and inclusion proof. Returns a summary, or the first failure.
pub fn verify_bundle(bundle: &Bundle, vkey: Option<&str>) -> Result<String, BundleError> {
    verify_bundle_with(bundle, vkey, None)
}

/// As [`verify_bundle`], and with a policy, that the checkpoint's cosignatures
/// meet its quorum (its log lines stand for `vkey` when none is given).
pub fn verify_bundle_with(
    bundle: &Bundle,
    vkey: Option<&str>,
    policy: Option<&Policy>,
) -> Result<String, BundleError> {
    if bundle.format != BUNDLE_FORMAT {
        return Err(BundleError::Format(bundle.format.clone()));
    }
    let (checkpoint, witnessed) = match policy {
        None => (
            signed_checkpoint(bundle, vkey.unwrap_or(&bundle.vkey))?,
            String::new(),
        ),
        Some(p) => {
            let key = vkey.or((p.logs.is_empty()).then_some(bundle.vkey.as_str()));
            let (checkpoint, _, witnessed) = checked_checkpoint(&bundle.checkpoint, key, Some(p))?;
            (checkpoint, witnessed)
        }
    };
    let mut purged = 0;
    let mut previous: Option<i64> = None;
    for e in &bundle.entries {
        let at = |why: String| BundleError::Entry { id: e.id, why };
        // Entries come once each, in the log's order: a copy or a reordering is
        // a bundle someone has edited.
        if let Some(p) = previous.filter(|p| e.id <= *p) {
            return Err(at(format!(
                "comes after entry {p}: entries must be unique and in ascending id order"
            )));
        }
        previous = Some(e.id);
        if verify_entry(e, &checkpoint).map_err(|why| at(why.to_string()))? == Body::Purged {
            purged += 1;
        }
    }
    let bodies = if purged > 0 {
        format!(" ({purged} with their body purged by retention: hashes and proofs checked)")
    } else {
        String::new()
    };
    Ok(format!(
        "evidence intact: {}{bodies}, each in the checkpoint of {} signed by {}{witnessed}; \
         this proves each entry is in the log, not that the log holds no other upload of the task \
         (an entry left out of a bundle goes unnoticed)",
        crate::domain::counted(bundle.entries.len() as u64, "entry"),
        crate::domain::counted(checkpoint.size(), "upload"),
        checkpoint.origin()
    ))
}

/// The bundle's checkpoint, once its signature verifies with `vkey`.
fn signed_checkpoint(bundle: &Bundle, vkey: &str) -> Result<Checkpoint, BundleError> {
    let verifier =
        StandardVerifier::new(vkey).map_err(|e| BundleError::VerifierKey(e.to_string()))?;
    let bad = |what: String| BundleError::Checkpoint(what);
    let note = Note::from_bytes(bundle.checkpoint.as_bytes())
        .map_err(|e| bad(format!("not a signed note: {e}")))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| bad(format!("the signature does not verify with {vkey}: {e}")))?;
    Checkpoint::from_bytes(note.text()).map_err(|e| bad(e.to_string()))
}

/// Whether an entry came with its body.
#[derive(PartialEq, Eq)]
enum Body {
    Present,
    Purged,
}

/// One entry: its body against `body_sha256` (unless purged), its entry hash
/// against its fields, and its inclusion proof against the checkpoint's root.
fn verify_entry(
    e: &BundleEntry,
    checkpoint: &Checkpoint,
) -> Result<Body, std::borrow::Cow<'static, str>> {
    let body = match (&e.raw_body_base64, &e.purged_at) {
        (Some(body), _) => {
            let raw = BASE64_STANDARD
                .decode(body)
                .map_err(|_| "raw_body_base64 is not base64")?;
            if sha256_hex(&raw) != e.body_sha256 {
                return Err("the raw body does not match body_sha256".into());
            }
            Body::Present
        }
        // Purged: the entry hash below still covers body_sha256.
        (None, Some(_)) => Body::Purged,
        (None, None) => return Err("raw_body_base64 is missing (and purged_at too)".into()),
    };
    let id = e.id.to_string();
    let recomputed = entry_hash_of([
        &id,
        &e.request_id,
        &e.task_id,
        &e.received_at,
        &e.credential_name,
        &e.auth_method,
        &e.body_sha256,
        &e.prev_hash,
    ]);
    if recomputed != e.entry_hash {
        return Err("entry_hash does not match the entry's fields".into());
    }
    let leaf_bytes =
        tree::entry_bytes(&e.entry_hash).map_err(|_| "entry_hash is not 64 hex digits")?;
    let (size, root) = (checkpoint.size(), *checkpoint.hash());
    if e.id < 1 || e.id as u64 > size {
        return Err(format!(
            "not in the checkpoint's tree of {}",
            crate::domain::counted(size, "upload")
        )
        .into());
    }
    let proof = e
        .inclusion_proof
        .iter()
        .map(|h| Hash::parse_hash(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "a proof hash is not base64 of 32 bytes")?;
    let leaf = tree::leaf_hash(&leaf_bytes);
    tlog_tiles::check_record(&proof, size, root, e.id as u64 - 1, leaf).map_err(|_| {
        format!("the inclusion proof does not lead to the checkpoint's root (tree of {size})")
    })?;
    Ok(body)
}

/// Checks every stored checkpoint's signature with `vkey`, and that its text
/// names the size and root it is stored with. Returns how many were checked, or
/// the first failure.
pub fn verify_checkpoint_signatures(
    conn: &Connection,
    vkey: &str,
) -> Result<Result<usize, String>, StorageError> {
    let stored = checkpoints::list(conn, u32::MAX, None)?;
    for c in &stored {
        let failure = |why: String| {
            Ok(Err(format!(
                "the checkpoint of {}: {why}",
                crate::domain::counted(c.tree_size, "upload")
            )))
        };
        let verifier = match StandardVerifier::new(vkey) {
            Ok(v) => v,
            Err(e) => return Ok(Err(format!("verifier key {vkey:?}: {e}"))),
        };
        let note = match Note::from_bytes(c.note.as_bytes()) {
            Ok(note) => note,
            Err(e) => return failure(format!("not a signed note: {e}")),
        };
        if let Err(e) = note.verify(&VerifierList::new(vec![Box::new(verifier)])) {
            return failure(format!("the signature does not verify with {vkey}: {e}"));
        }
        match Checkpoint::from_bytes(note.text()) {
            Ok(text) if text.size() == c.tree_size && text.hash().to_string() == c.root_hash => {}
            _ => return failure("its signed text does not match its stored size and root".into()),
        }
    }
    Ok(Ok(stored.len()))
}

/// Whether the newest checkpoint extends the one before it: the consistency proof
/// between their sizes, checked against their signed roots. `None` with fewer
/// than two checkpoints.
pub fn latest_two_consistent(conn: &Connection) -> Result<Option<(u64, u64, bool)>, EvidenceError> {
    let latest = checkpoints::list(conn, 2, None)?;
    let [to, from] = latest.as_slice() else {
        return Ok(None);
    };
    let proof = tree::consistency_proof(conn, to.tree_size, from.tree_size)?;
    let holds = match (
        Hash::parse_hash(&to.root_hash),
        Hash::parse_hash(&from.root_hash),
    ) {
        (Ok(to_root), Ok(from_root)) => {
            tlog_tiles::check_tree(&proof, to.tree_size, to_root, from.tree_size, from_root).is_ok()
        }
        _ => false,
    };
    Ok(Some((from.tree_size, to.tree_size, holds)))
}

/// The names (in `policy`) of the witnesses whose valid cosignature `note` carries.
pub fn cosigned_by(note: &str, policy: &Policy) -> BTreeSet<String> {
    let Ok(parsed) = Note::from_bytes(note.as_bytes()) else {
        return BTreeSet::new();
    };
    policy
        .witnesses
        .iter()
        .filter(|(_, verifier)| {
            parsed
                .verify(&VerifierList::new(vec![Box::new((*verifier).clone())]))
                .is_ok()
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The checkpoint, if the log key (`vkey`, else one of the policy's logs) signed
/// it and the policy's quorum of witnesses cosigned it; with what the
/// cosignatures came to, for the summary.
pub fn checked_checkpoint(
    note_text: &str,
    vkey: Option<&str>,
    policy: Option<&Policy>,
) -> Result<(Checkpoint, String, String), BundleError> {
    let bad = |what: String| BundleError::Checkpoint(what);
    let note = Note::from_bytes(note_text.as_bytes())
        .map_err(|e| bad(format!("not a signed note: {e}")))?;
    let candidates: Vec<String> = match (vkey, policy) {
        (Some(v), _) => vec![v.to_string()],
        (None, Some(p)) if !p.logs.is_empty() => p.logs.clone(),
        _ => {
            return Err(BundleError::VerifierKey(
                "give the log's verifier key (--vkey) or a policy with a log line".into(),
            ))
        }
    };
    let signer = candidates.iter().find(|v| {
        StandardVerifier::new(v).is_ok_and(|verifier| {
            note.verify(&VerifierList::new(vec![Box::new(verifier)]))
                .is_ok()
        })
    });
    let Some(signer) = signer else {
        return Err(bad(format!("not signed by {}", candidates.join(" or "))));
    };
    let checkpoint = Checkpoint::from_bytes(note.text()).map_err(|e| bad(e.to_string()))?;
    let witnessed = match policy {
        None => String::new(),
        Some(p) => {
            let names = cosigned_by(note_text, p);
            if !p.satisfied(&names) {
                return Err(BundleError::Witnesses(format!(
                    "the checkpoint's cosignatures do not meet the policy's quorum (valid cosignatures from: {})",
                    if names.is_empty() { "none".to_string() } else { names.into_iter().collect::<Vec<_>>().join(", ") }
                )));
            }
            match names.len() {
                0 => ", no cosignature needed by the policy".to_string(),
                n => format!(
                    ", cosigned by {} meeting the policy's quorum",
                    crate::domain::counted(n as u64, "witness")
                ),
            }
        }
    };
    Ok((checkpoint, signer.clone(), witnessed))
}
