//! The hash chain over uploads: how an entry is hashed, the head, and what a
//! verification found. README section "The ledger" describes it for users.
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

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields an entry hash covers.
pub struct EntryFields<'a> {
    pub id: i64,
    pub request_id: &'a str,
    pub task_id: &'a str,
    pub received_at: Timestamp,
    pub credential_name: &'a str,
    pub auth_method: &'a str,
    pub body_sha256: &'a str,
    pub prev_hash: &'a str,
}

impl EntryFields<'_> {
    pub fn canonical_encoding(&self) -> Vec<u8> {
        let id = self.id.to_string();
        let received_at = format_timestamp(self.received_at);
        canonical_encoding([
            &id,
            self.request_id,
            self.task_id,
            &received_at,
            self.credential_name,
            self.auth_method,
            self.body_sha256,
            self.prev_hash,
        ])
    }

    pub fn entry_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_encoding()))
    }
}

/// The eight fields as text (`id` in decimal, `received_at` as stored in RFC 3339),
/// each preceded by its byte length as an 8-byte big-endian integer.
pub fn canonical_encoding(fields: [&str; 8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 8).sum());
    for f in fields {
        out.extend_from_slice(&(f.len() as u64).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out
}

/// The entry hash of the eight fields as text (as an evidence bundle has them).
pub fn entry_hash_of(fields: [&str; 8]) -> String {
    hex::encode(Sha256::digest(canonical_encoding(fields)))
}

/// The last entry of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    pub id: i64,
    pub hash: String,
    pub received_at: Timestamp,
}

impl Head {
    pub fn genesis() -> Self {
        Head {
            id: 0,
            hash: GENESIS_HASH.to_string(),
            received_at: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BadEntry {
    pub id: i64,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Entries checked.
    pub entries: u64,
    /// The last entry's hash (64 zeros for an empty ledger).
    pub head_hash: String,
    pub head_id: i64,
    pub first_bad: Option<BadEntry>,
}

impl Verification {
    pub fn intact(&self) -> bool {
        self.first_bad.is_none()
    }
}
