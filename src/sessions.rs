//! Browser sessions for the HTML pages: a random cookie value (only its SHA-256 is
//! stored), an expiry, and a CSRF token that every POST form must carry back.

use rusqlite::{params, Connection, OptionalExtension};
use subtle::ConstantTimeEq;

use crate::credentials::{random_hex, token_hash, Credential};
use crate::domain::{Role, Timestamp};
use crate::storage::writer::{now_ms, SubmitError, WriterHandle};
use crate::storage::StorageError;

pub const COOKIE: &str = "sms_audit_session";
/// Double-submit cookie for the login form, which has no session yet.
pub const LOGIN_CSRF_COOKIE: &str = "sms_audit_login_csrf";

/// A logged-in user, as a page sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub credential: Credential,
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

impl Session {
    /// Constant-time check of a submitted CSRF token.
    pub fn csrf_matches(&self, submitted: &str) -> bool {
        csrf_equal(&self.csrf_token, submitted)
    }

    /// The refusal for a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), crate::pages::PageError> {
        if self.csrf_matches(submitted) {
            Ok(())
        } else {
            Err(crate::pages::PageError::Forbidden(
                "the form's CSRF token does not match your session".into(),
            ))
        }
    }
}

pub fn csrf_equal(expected: &str, submitted: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

/// Creates a session for `credential_name`; returns the cookie value.
pub async fn create(
    writer: &WriterHandle,
    credential_name: &str,
    lifetime_ms: i64,
) -> Result<String, SubmitError> {
    let cookie = random_hex(32);
    let id_hash = token_hash(&cookie);
    let csrf = random_hex(16);
    let name = credential_name.to_string();
    let now = now_ms();
    writer
        .execute(move |conn| {
            conn.execute("DELETE FROM sessions WHERE expires_at < ?1", params![now])?;
            conn.execute(
                "INSERT INTO sessions (id_sha256, credential_name, csrf_token, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id_hash, name, csrf, now, now + lifetime_ms],
            )?;
            Ok(())
        })
        .await?;
    Ok(cookie)
}

pub async fn delete(writer: &WriterHandle, cookie: &str) -> Result<(), SubmitError> {
    let id_hash = token_hash(cookie);
    writer
        .execute(move |conn| {
            conn.execute(
                "DELETE FROM sessions WHERE id_sha256 = ?1",
                params![id_hash],
            )?;
            Ok(())
        })
        .await
}

/// The live session for a cookie value: not expired, credential not revoked.
pub fn find(conn: &Connection, cookie: &str) -> Result<Option<Session>, StorageError> {
    let found = conn
        .prepare_cached(
            "SELECT c.name, c.role, c.task_scope, c.revoked_at, s.csrf_token, s.expires_at
             FROM sessions s JOIN credentials c ON c.name = s.credential_name
             WHERE s.id_sha256 = ?1",
        )?
        .query_row(params![token_hash(cookie)], |r| {
            let role: String = r.get(1)?;
            let scope: Option<String> = r.get(2)?;
            Ok(Session {
                credential: Credential {
                    name: r.get(0)?,
                    role: role.parse().unwrap_or(Role::Agent),
                    task_scope: scope.and_then(|s| serde_json::from_str(&s).ok()),
                    revoked: r.get::<_, Option<i64>>(3)?.is_some(),
                },
                csrf_token: r.get(4)?,
                expires_at: r.get(5)?,
            })
        })
        .optional()?;
    Ok(found.filter(|s| !s.credential.revoked && s.expires_at > now_ms()))
}
