//! The C2SP `tlog-witness` protocol's `add-checkpoint` exchange: the request
//! body (`old N`, at most 63 consistency proof lines, a blank line, the signed
//! checkpoint) and the checks a witness makes against the latest checkpoint it
//! cosigned for the log, with the HTTP status each refusal takes.

use base64::prelude::{Engine, BASE64_STANDARD};
use tlog_tiles::Hash;

/// The most consistency proof lines a request may carry.
pub const MAX_PROOF_LINES: usize = 63;

/// The `Content-Type` of a 409's body: the witness's size and a newline.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// An `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the client believes the witness cosigned last.
    pub old: u64,
    /// A consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as sent.
    pub checkpoint: Vec<u8>,
}

/// A request body that does not follow the protocol (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed add-checkpoint request: {0}")]
pub struct MalformedRequest(pub &'static str);

impl AddCheckpoint {
    /// Reads a request body.
    pub fn parse(body: &[u8]) -> Result<Self, MalformedRequest> {
        let mut rest = body;
        let mut next_line = || -> Result<&[u8], MalformedRequest> {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or(MalformedRequest("a line does not end in a newline"))?;
            let line = &rest[..end];
            rest = &rest[end + 1..];
            Ok(line)
        };
        let old_line = next_line()?;
        let old = old_line
            .strip_prefix(b"old ")
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(parse_decimal)
            .ok_or(MalformedRequest(
                "the first line must be `old N` (N in decimal, no leading zeroes)",
            ))?;
        let mut proof = Vec::new();
        loop {
            let line = next_line()?;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(MalformedRequest("more than 63 consistency proof lines"));
            }
            proof.push(parse_hash(line).ok_or(MalformedRequest(
                "a consistency proof line is not a base64 SHA-256 hash",
            ))?);
        }
        Ok(Self {
            old,
            proof,
            checkpoint: rest.to_vec(),
        })
    }

    /// The request body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = format!("old {}\n", self.old).into_bytes();
        for hash in &self.proof {
            body.extend_from_slice(BASE64_STANDARD.encode(hash.0).as_bytes());
            body.push(b'\n');
        }
        body.push(b'\n');
        body.extend_from_slice(&self.checkpoint);
        body
    }
}

/// ASCII decimal with no leading zeroes (`0` alone for zero).
fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn parse_hash(line: &[u8]) -> Option<Hash> {
    let bytes = BASE64_STANDARD.decode(line).ok()?;
    Some(Hash(bytes.try_into().ok()?))
}

/// The latest checkpoint a witness cosigned for a log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Witnessed {
    /// Its tree size.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
}

/// Why a witness does not cosign a checkpoint whose signature it verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistent {
    /// `old` is above the checkpoint's size (400).
    #[error("old size {old} is above the checkpoint's size {size}")]
    OldAboveSize {
        /// The request's old size.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// `old` is not the size the witness cosigned last (409 with that size).
    #[error("old size {old} is not the size this witness cosigned last ({witnessed})")]
    Conflict {
        /// The request's old size.
        old: u64,
        /// The size the witness cosigned last.
        witnessed: u64,
    },
    /// A tree of size 0 whose root is not the empty tree's (422).
    #[error("a checkpoint of size 0 must have the empty tree's root")]
    EmptyTreeRoot,
    /// A proof where none can be (`old` 0) or one that does not verify (422).
    #[error("{0}")]
    Proof(&'static str),
}

impl Inconsistent {
    /// The HTTP status the protocol gives it.
    pub fn status(&self) -> u16 {
        match self {
            Inconsistent::OldAboveSize { .. } => 400,
            Inconsistent::Conflict { .. } => 409,
            Inconsistent::EmptyTreeRoot | Inconsistent::Proof(_) => 422,
        }
    }
}

/// The root of the empty tree: SHA-256 of the empty string (RFC 6962, 2.1).
pub fn empty_tree_root() -> Hash {
    use sha2::Digest;
    Hash(sha2::Sha256::digest(b"").into())
}

/// The protocol's checks of a checkpoint of `size` and `root` against what the
/// witness cosigned last (`None`: nothing yet, which is size 0).
pub fn check_consistency(
    last: Option<Witnessed>,
    request: &AddCheckpoint,
    size: u64,
    root: Hash,
) -> Result<(), Inconsistent> {
    let old = request.old;
    if old > size {
        return Err(Inconsistent::OldAboveSize { old, size });
    }
    let witnessed = last.map_or(0, |w| w.size);
    if old != witnessed {
        return Err(Inconsistent::Conflict { old, witnessed });
    }
    if size == 0 && root != empty_tree_root() {
        return Err(Inconsistent::EmptyTreeRoot);
    }
    let Some(last) = last.filter(|_| old > 0) else {
        return match request.proof.is_empty() {
            true => Ok(()),
            false => Err(Inconsistent::Proof(
                "a consistency proof from size 0 must be empty",
            )),
        };
    };
    // From the old tree to the new one; equal sizes need equal roots (and no proof).
    tlog_tiles::check_tree(&request.proof, size, root, old, last.root).map_err(|_| {
        Inconsistent::Proof("the consistency proof does not prove that the checkpoint extends the one cosigned before")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u8) -> Hash {
        tlog_tiles::record_hash(&[i])
    }

    #[test]
    fn requests_round_trip_and_malformed_ones_are_named() {
        let request = AddCheckpoint {
            old: 20,
            proof: vec![leaf(1), leaf(2)],
            checkpoint: b"log.example\n21\nAAAA\n\n\xe2\x80\x94 log.example sig\n".to_vec(),
        };
        assert_eq!(AddCheckpoint::parse(&request.to_bytes()), Ok(request));
        let empty = AddCheckpoint::parse(b"old 0\n\ncheckpoint").unwrap();
        assert_eq!((empty.old, empty.proof.len()), (0, 0));
        for bad in [
            &b"old 01\n\nx"[..],
            b"old -1\n\nx",
            b"old\n\nx",
            b"new 1\n\nx",
            b"old 1\nnot base64!\n\nx",
            b"old 1\nAAAA\n\nx",
            b"old 1",
            b"old 1\n",
        ] {
            assert!(
                AddCheckpoint::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!(
            "old 1\n{}\nx",
            format!("{}\n", BASE64_STANDARD.encode([0u8; 32])).repeat(64)
        );
        assert_eq!(
            AddCheckpoint::parse(many.as_bytes()),
            Err(MalformedRequest("more than 63 consistency proof lines"))
        );
    }

    #[test]
    fn the_checks_follow_the_protocol() {
        let request = |old, proof: Vec<Hash>| AddCheckpoint {
            old,
            proof,
            checkpoint: vec![],
        };
        let root1 = leaf(0);
        let root2 = tlog_tiles::node_hash(leaf(0), leaf(1));
        let at1 = Some(Witnessed {
            size: 1,
            root: root1,
        });
        // First contact: old 0, no proof.
        assert_eq!(
            check_consistency(None, &request(0, vec![]), 1, root1),
            Ok(())
        );
        assert_eq!(
            check_consistency(None, &request(0, vec![leaf(1)]), 1, root1)
                .unwrap_err()
                .status(),
            422
        );
        // A stale or future old size: 409 naming the witness's.
        assert_eq!(
            check_consistency(at1, &request(0, vec![]), 2, root2),
            Err(Inconsistent::Conflict {
                old: 0,
                witnessed: 1
            })
        );
        assert_eq!(
            check_consistency(at1, &request(3, vec![]), 2, root2)
                .unwrap_err()
                .status(),
            400
        );
        // A good proof from 1 to 2 is the second leaf.
        assert_eq!(
            check_consistency(at1, &request(1, vec![leaf(1)]), 2, root2),
            Ok(())
        );
        assert_eq!(
            check_consistency(at1, &request(1, vec![leaf(9)]), 2, root2)
                .unwrap_err()
                .status(),
            422
        );
        // Same size: same root, or 422.
        assert_eq!(
            check_consistency(at1, &request(1, vec![]), 1, root1),
            Ok(())
        );
        assert_eq!(
            check_consistency(at1, &request(1, vec![]), 1, leaf(5))
                .unwrap_err()
                .status(),
            422
        );
        // The empty tree has one root.
        assert_eq!(
            check_consistency(None, &request(0, vec![]), 0, empty_tree_root()),
            Ok(())
        );
        assert_eq!(
            check_consistency(None, &request(0, vec![]), 0, root1),
            Err(Inconsistent::EmptyTreeRoot)
        );
    }
}
