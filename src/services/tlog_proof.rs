//! Proofs an auditor keeps: an upload's C2SP `tlog-proof@v1` (its index,
//! inclusion proof and the cosigned checkpoint, with the entry hash as the
//! extra data), and the checks of a checkpoint's cosignatures against a
//! `tlog-policy` (or `--witness` keys and a quorum), shared with bundles.

use rusqlite::Connection;

use crate::domain::policy::Policy;
use crate::domain::tlog_proof::TlogProof;
use crate::services::evidence::{checked_checkpoint, BundleError, EvidenceError};
use crate::services::witnessing::cosigned_note;
use crate::storage::{checkpoints, tree, uploads, StorageError};

/// Upload `id`'s proof against the latest checkpoint, with its cosignatures.
pub fn for_upload(conn: &Connection, id: i64) -> Result<TlogProof, EvidenceError> {
    let entry_hash = uploads::read::entry_hash(conn, id)?.ok_or(EvidenceError::NoSuchUpload(id))?;
    let latest = checkpoints::latest(conn)?.ok_or(EvidenceError::NoCheckpoint)?;
    let index = id as u64 - 1;
    if index >= latest.tree_size {
        return Err(EvidenceError::BadSize(format!(
            "upload {id} is newer than the latest checkpoint (of {}): the next one will include it",
            crate::domain::counted(latest.tree_size, "upload")
        )));
    }
    let entry = tree::entry_bytes(&entry_hash).map_err(StorageError::from)?;
    Ok(TlogProof {
        extra: Some(entry.to_vec()),
        index,
        proof: tree::inclusion_proof(conn, latest.tree_size, index)?,
        checkpoint: cosigned_note(conn, &latest.note, latest.tree_size)?,
    })
}

/// Checks a `tlog-proof` of an sms-audit upload: the checkpoint (signature and
/// policy), then the leaf from the entry hash in `extra`, proven into its root.
pub fn verify(
    text: &str,
    vkey: Option<&str>,
    policy: Option<&Policy>,
) -> Result<String, BundleError> {
    let proof = TlogProof::parse(text).map_err(BundleError::Checkpoint)?;
    let (checkpoint, signer, witnessed) = checked_checkpoint(&proof.checkpoint, vkey, policy)?;
    let entry: [u8; 32] = proof
        .extra
        .as_deref()
        .and_then(|e| e.try_into().ok())
        .ok_or_else(|| BundleError::Entry {
            id: proof.index as i64 + 1,
            why: "the extra line must hold the upload's entry hash (32 bytes)".into(),
        })?;
    let leaf = tree::leaf_hash(&entry);
    tlog_tiles::check_record(
        &proof.proof,
        checkpoint.size(),
        *checkpoint.hash(),
        proof.index,
        leaf,
    )
    .map_err(|_| BundleError::Entry {
        id: proof.index as i64 + 1,
        why: format!(
            "the inclusion proof does not lead to the checkpoint's root (tree of {})",
            checkpoint.size()
        ),
    })?;
    Ok(format!(
        "proof intact: upload {} (entry hash {}) is in the checkpoint of {} signed by {signer}{witnessed}",
        proof.index + 1,
        hex::encode(entry),
        crate::domain::counted(checkpoint.size(), "upload")
    ))
}
