//! The Merkle tree against the RFC's own definitions, written here from the text
//! of RFC 6962 (section 2.1) and RFC 9162 (sections 2.1.3.2 and 2.1.4.2): every
//! root, every inclusion proof and every consistency proof for trees of 1 to 65
//! leaves, as `storage::tree` stores and proves them.

use sha2::{Digest, Sha256};
use sms_audit::storage::{prepare, tree, SyncMode};

type H = [u8; 32];

fn node(left: &H, right: &H) -> H {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

fn leaf(input: &[u8]) -> H {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(input)
        .finalize()
        .into()
}

/// MTH(D[n]), RFC 6962 section 2.1.
fn mth(leaves: &[H]) -> H {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]), RFC 6962 section 2.1.1.
fn path(m: usize, leaves: &[H]) -> Vec<H> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// PROOF(m, D[n]) = SUBPROOF(m, D[n], true), RFC 6962 section 2.1.2.
fn subproof(m: usize, leaves: &[H], complete: bool) -> Vec<H> {
    let n = leaves.len();
    if m == n {
        return if complete {
            Vec::new()
        } else {
            vec![mth(leaves)]
        };
    }
    let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
    if m <= k {
        let mut p = subproof(m, &leaves[..k], complete);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

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
