//! The sessions table: browser logins to the HTML pages. A session is a random
//! cookie value (only its SHA-256 is stored), an expiry, and a CSRF token.

use rusqlite::{params, Connection, OptionalExtension};

use super::credentials::credential_from_row;
use super::writer::{SubmitError, WriterHandle};
use super::StorageError;
use crate::domain::{now_ms, random_hex, token_hash, Session};

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
            delete_expired(conn, now)?;
            conn.execute(
                "INSERT INTO sessions (id_sha256, credential_name, csrf_token, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id_hash, name, csrf, now, now + lifetime_ms],
            )?;
            super::credentials::record_use(conn, &name, now)
        })
        .await?;
    Ok(cookie)
}

/// Deletes every session expired before `now`.
pub fn delete_expired(conn: &Connection, now: i64) -> Result<(), rusqlite::Error> {
    conn.execute("DELETE FROM sessions WHERE expires_at < ?1", params![now])?;
    Ok(())
}

/// Ends a session (logout).
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
            Ok(Session {
                credential: credential_from_row(r)?,
                csrf_token: r.get(4)?,
                expires_at: r.get(5)?,
            })
        })
        .optional()?;
    Ok(found.filter(|s| !s.credential.revoked && s.expires_at > now_ms()))
}
