//! Evidence an auditor can check without trusting this service: RFC 6962
//! inclusion proofs of uploads and consistency proofs between tree sizes, over the
//! Merkle tree `storage::tree` keeps with the ledger.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::storage::{checkpoints, tree, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{0}")]
    BadSize(String),
    #[error("no upload with id {0}")]
    NoSuchUpload(i64),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// That upload `id` is leaf `leaf_index` of the tree of `tree_size` leaves whose
/// root is `root_hash`: hash `leaf_hash` up the audit path `hashes` (base64,
/// RFC 6962 section 2.1.1).
#[derive(Debug, Serialize)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub root_hash: String,
    pub hashes: Vec<String>,
}

/// That the tree of `to` leaves extends the tree of `from` leaves (RFC 6962
/// section 2.1.2).
#[derive(Debug, Serialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
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
            "tree_size: upload {id} is not in the tree of {tree_size} uploads{}",
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
