//! The hash chain over uploads: how an entry is hashed, the head, and what a
//! verification found. docs/evidence.md ("The ledger") describes it for users.
//!
//! Canonical encoding of an entry: for each of the eight fields below, in this order,
//! the field's UTF-8 length as an 8-byte big-endian unsigned integer followed by its
//! bytes. `entry_hash` is the lower-case hex SHA-256 of that encoding.
//!
//! 1. `id` in decimal ASCII, 2. `request_id` (lower-case hyphenated UUID),
//! 3. `task_id`, 4. `received_at` as RFC 3339 UTC with milliseconds (`…T20:31:35.123Z`),
//! 5. credential name, 6. auth method (`token` or `aksk`),
//! 7. body SHA-256 (64 lower-case hex), 8. `prev_hash` (64 lower-case hex; the first
//!    entry's is 64 zeros).

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{format_timestamp, Timestamp};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields an entry hash covers; the text ones as their UTF-8 bytes (as
/// stored: a verification hashes what it reads, without decoding it first).
pub struct EntryFields<'a> {
    /// The entry's position, from 1.
    pub id: i64,
    /// The request's `X-Request-Id`.
    pub request_id: &'a [u8],
    /// The SMS task id.
    pub task_id: &'a [u8],
    /// When it was stored (ms since the epoch).
    pub received_at: Timestamp,
    /// Who uploaded it.
    pub credential_name: &'a [u8],
    /// `token` or `aksk`.
    pub auth_method: &'a [u8],
    /// SHA-256 of the raw body, hex.
    pub body_sha256: &'a [u8],
    /// The entry before's hash (or the genesis hash).
    pub prev_hash: &'a [u8],
}

impl EntryFields<'_> {
    /// The SHA-256 of the canonical encoding.
    pub fn digest(&self) -> [u8; 32] {
        use std::io::Write;
        let mut id = [0u8; 20];
        let id_len = {
            let mut out = &mut id[..];
            // An i64 has at most 20 characters: this cannot fail.
            let _ = write!(out, "{}", self.id);
            20 - out.len()
        };
        let received_at = format_timestamp(self.received_at);
        digest_of([
            &id[..id_len],
            self.request_id,
            self.task_id,
            received_at.as_bytes(),
            self.credential_name,
            self.auth_method,
            self.body_sha256,
            self.prev_hash,
        ])
    }

    /// SHA-256 over the fields, each length-prefixed, hex: the entry's hash.
    pub fn entry_hash(&self) -> String {
        super::signing::hex_digest(&self.digest())
    }
}

/// The SHA-256 of the canonical encoding of the eight fields as text (each
/// preceded by its byte length as an 8-byte big-endian integer), hashed as it is
/// encoded.
fn digest_of(fields: [&[u8]; 8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for f in fields {
        hasher.update((f.len() as u64).to_be_bytes());
        hasher.update(f);
    }
    hasher.finalize().into()
}

/// The entry hash of the eight fields as text (as an evidence bundle has them).
pub fn entry_hash_of(fields: [&str; 8]) -> String {
    super::signing::hex_digest(&digest_of(fields.map(str::as_bytes)))
}

/// The last entry of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    /// The last entry's id (0 for an empty ledger).
    pub id: i64,
    /// Its hash (the genesis hash for an empty ledger).
    pub hash: String,
    /// When it was stored.
    pub received_at: Timestamp,
}

impl Head {
    /// The head of an empty ledger.
    pub fn genesis() -> Self {
        Head {
            id: 0,
            hash: GENESIS_HASH.to_string(),
            received_at: 0,
        }
    }
}

/// The first entry that does not check out.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BadEntry {
    /// Its id.
    pub id: i64,
    /// What is wrong with it.
    pub problem: String,
}

/// What a verification of the chain found.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Entries checked.
    pub entries: u64,
    /// Set when only the entries after the checkpoint of this many uploads were
    /// checked (`verify --since-checkpoint`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_checkpoint: Option<u64>,
    /// The newest checkpoint whose root this run recomputed from the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_verified: Option<u64>,
    /// The last entry's hash (64 zeros for an empty ledger).
    pub head_hash: String,
    /// The last entry's id.
    pub head_id: i64,
    /// The first bad entry; `None` when the ledger is intact.
    pub first_bad: Option<BadEntry>,
    /// Entries checked whose body and result rows were purged (retention): their
    /// hashes and links are checked, their bodies are gone.
    #[serde(skip_serializing_if = "is_zero")]
    pub pruned: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Verification {
    /// Whether no entry was bad.
    pub fn intact(&self) -> bool {
        self.first_bad.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_hash_is_the_sha256_of_the_length_prefixed_fields() {
        let (request_id, body_sha256) = ("0b7c5a1e-7f4e-4c1a-9d7e-2f0a8b6c4d3e", "ab".repeat(32));
        let fields = EntryFields {
            id: 42,
            request_id: request_id.as_bytes(),
            task_id: b"task-1",
            received_at: 1_764_000_000_123,
            credential_name: b"agent",
            auth_method: b"token",
            body_sha256: body_sha256.as_bytes(),
            prev_hash: GENESIS_HASH.as_bytes(),
        };
        let text = [
            "42",
            request_id,
            "task-1",
            "2025-11-24T16:00:00.123Z",
            "agent",
            "token",
            &body_sha256,
            GENESIS_HASH,
        ];
        let mut encoding = Vec::new();
        for f in text {
            encoding.extend_from_slice(&(f.len() as u64).to_be_bytes());
            encoding.extend_from_slice(f.as_bytes());
        }
        let expected = hex::encode(Sha256::digest(&encoding));
        assert_eq!(fields.entry_hash(), expected);
        assert_eq!(entry_hash_of(text), expected);
    }
}
