//! RFC 6962 (section 2.1) and RFC 9162 (sections 2.1.3.2, 2.1.4.2) written from
//! the RFCs' text, independently of the service's code: the oracle the Merkle
//! tests check against. Included with `#[path]` by the tests that use it.
#![allow(dead_code)]

use sha2::{Digest, Sha256};

pub type H = [u8; 32];

/// SHA-256(0x00 ‖ input).
pub fn leaf(input: &[u8]) -> H {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(input)
        .finalize()
        .into()
}

pub fn node(left: &H, right: &H) -> H {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// MTH(D[n]) of RFC 6962 section 2.1, over leaf hashes.
pub fn mth(leaves: &[H]) -> H {
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
pub fn path(m: usize, leaves: &[H]) -> Vec<H> {
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
pub fn subproof(m: usize, leaves: &[H], complete: bool) -> Vec<H> {
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

/// RFC 9162 section 2.1.3.2: the root an inclusion proof leads to.
pub fn root_from_inclusion(index: u64, size: u64, leaf: H, path: &[H]) -> Option<H> {
    if index >= size {
        return None;
    }
    let (mut f, mut s, mut r) = (index, size - 1, leaf);
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// RFC 9162 section 2.1.4.2: whether a consistency proof holds.
pub fn consistent(first: u64, second: u64, first_root: H, second_root: H, path: &[H]) -> bool {
    if first == second {
        return path.is_empty() && first_root == second_root;
    }
    if path.is_empty() {
        return false;
    }
    let mut c: Vec<H> = path.to_vec();
    if first.is_power_of_two() {
        c.insert(0, first_root);
    }
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (c[0], c[0]);
    for p in &c[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node(p, &fr);
            sr = node(p, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node(&sr, p);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == first_root && sr == second_root && s == 0
}
