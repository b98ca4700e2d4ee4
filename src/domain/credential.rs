//! Who is calling: credentials as stored, login sessions, and the secrets behind
//! them (random tokens, kept only as hashes).

use subtle::ConstantTimeEq;

use super::signing::sha256_hex;
use super::{Role, Timestamp};

/// An authenticated caller, as stored.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Unique; shown in logs and pages, never secret.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Task ids the credential may upload to; `None` means any task.
    pub task_scope: Option<Vec<String>>,
    /// Revoked credentials are kept (their uploads name them) but never accepted.
    pub revoked: bool,
}

impl Credential {
    /// Whether it may upload to `task_id`: an agent or operator, within its task scope.
    pub fn may_upload_to(&self, task_id: &str) -> bool {
        self.role.may_upload()
            && self
                .task_scope
                .as_ref()
                .is_none_or(|scope| scope.iter().any(|t| t == task_id))
    }
}

/// A logged-in user of the pages.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who is logged in.
    pub credential: Credential,
    /// What every form of the session must send back.
    pub csrf_token: String,
    /// When the session ends (ms since the epoch).
    pub expires_at: Timestamp,
}

impl Session {
    /// Constant-time check of a submitted CSRF token.
    pub fn csrf_matches(&self, submitted: &str) -> bool {
        csrf_equal(&self.csrf_token, submitted)
    }
}

/// Whether an upload may register its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TaskPolicy {
    /// The first upload of a task registers it.
    #[default]
    Open,
    /// Only tasks registered with tasks add accept uploads.
    Registered,
}

/// Constant-time comparison of an expected CSRF token (never empty) with a submitted one.
pub fn csrf_equal(expected: &str, submitted: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

/// `len` random bytes from the OS, hex encoded.
pub fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    hex::encode(bytes)
}

/// What is stored of a token (and looked up by): its SHA-256.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}
