//! The Merkle tree against RFC 6962's own definitions (`common/rfc6962.rs`,
//! written from the RFC's text): every root, every inclusion proof and every
//! consistency proof for trees of 1 to 65 leaves, as `storage::tree` stores and
//! proves them.

use sha2::{Digest, Sha256};
use sms_audit::storage::{prepare, tree, SyncMode};

#[path = "common/rfc6962.rs"]
mod rfc6962;
use rfc6962::{leaf, mth, path, subproof, H};

#[test]
fn roots_and_proofs_match_rfc_6962_for_every_size_up_to_65() {
    let dir = tempfile::tempdir().unwrap();
    let conn = prepare(&dir.path().join("tree.db"), SyncMode::Normal).unwrap();
    let inputs: Vec<[u8; 32]> = (0..65u8).map(|i| Sha256::digest([i]).into()).collect();
    let leaves: Vec<H> = inputs.iter().map(|i| leaf(i)).collect();
    for (i, input) in inputs.iter().enumerate() {
        tree::append(&conn, i as u64, input).unwrap();
        assert_eq!(tree::leaf_hash(input).0, leaves[i]);
    }
    assert_eq!(tree::size(&conn).unwrap(), 65);
    for n in 1..=65usize {
        assert_eq!(
            tree::root(&conn, n as u64).unwrap().0,
            mth(&leaves[..n]),
            "root of {n}"
        );
        for m in 0..n {
            let proof: Vec<H> = tree::inclusion_proof(&conn, n as u64, m as u64)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect();
            assert_eq!(proof, path(m, &leaves[..n]), "inclusion of {m} in {n}");
        }
        for m in 1..=n {
            let proof: Vec<H> = tree::consistency_proof(&conn, n as u64, m as u64)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect();
            assert_eq!(
                proof,
                subproof(m, &leaves[..n], true),
                "consistency {m} → {n}"
            );
        }
    }
}
