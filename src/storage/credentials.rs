//! The credentials table: who may upload and read. Tokens are random (256 bits)
//! and stored only as SHA-256 hashes; AK/SK pairs keep the secret key, which HMAC
//! verification needs (the database file is readable by its owner only).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::StorageError;
use crate::domain::{
    format_timestamp, now_ms, printable, random_hex, token_hash, Credential, Role, TaskId,
    Timestamp,
};

const CREDENTIAL_COLUMNS: &str = "name, role, task_scope, revoked_at";

/// A credential from `name, role, task_scope, revoked_at` at the start of a row.
pub(super) fn credential_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Credential> {
    let name: String = r.get(0)?;
    let role: String = r.get(1)?;
    let scope: Option<String> = r.get(2)?;
    Ok(Credential {
        role: role.parse().map_err(|e: strum::ParseError| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
        })?,
        task_scope: scope.map(|s| parse_scope(&name, &s)),
        revoked: r.get::<_, Option<i64>>(3)?.is_some(),
        name,
    })
}

/// A stored task scope. One that cannot be read allows no task at all (fail
/// closed), and says so in the log.
fn parse_scope(name: &str, stored: &str) -> Vec<String> {
    serde_json::from_str(stored).unwrap_or_else(|e| {
        tracing::error!(credential = name, error = %e, "the stored task scope cannot be read; the credential may upload to no task");
        Vec::new()
    })
}

/// Finds the credential whose token this is. The lookup goes by SHA-256 of the token
/// (its timing reveals nothing usable about the token); the hashes are then compared
/// in constant time.
pub fn find_by_token(conn: &Connection, token: &str) -> Result<Option<Credential>, StorageError> {
    let hash = token_hash(token);
    let found = conn
        .prepare_cached(&format!(
            "SELECT {CREDENTIAL_COLUMNS}, token_sha256 FROM credentials WHERE token_sha256 = ?1"
        ))?
        .query_row(params![hash], |r| {
            Ok((credential_from_row(r)?, r.get::<_, String>(4)?))
        })
        .optional()?;
    Ok(found
        .and_then(|(c, stored)| bool::from(stored.as_bytes().ct_eq(hash.as_bytes())).then_some(c)))
}

/// Finds the credential owning an access key, with its secret key.
pub fn find_by_access_key(
    conn: &Connection,
    access_key: &str,
) -> Result<Option<(Credential, String)>, StorageError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {CREDENTIAL_COLUMNS}, secret_key FROM credentials WHERE access_key = ?1"
        ))?
        .query_row(params![access_key], |r| {
            Ok((credential_from_row(r)?, r.get::<_, String>(4)?))
        })
        .optional()?)
}

/// Why a credential could not be added or revoked.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The name is in use.
    #[error("a credential named {0:?} already exists")]
    NameTaken(String),
    /// The name belonged to a revoked credential.
    #[error(
        "a credential named {name:?} was revoked on {}; names are not reused, choose another",
        format_timestamp(*.revoked_at)
    )]
    NameRevoked {
        /// The name.
        name: String,
        /// When its credential was revoked.
        revoked_at: Timestamp,
    },
    /// The access key is in use.
    #[error("access key {0:?} is already registered")]
    AccessKeyTaken(String),
    /// No credential has this name.
    #[error("no credential named {0:?}")]
    NotFound(String),
    /// A name, key or scope that is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<rusqlite::Error> for CredentialError {
    fn from(e: rusqlite::Error) -> Self {
        CredentialError::Storage(e.into())
    }
}

/// How a new credential gets an AK/SK pair, if at all.
pub enum KeyPair {
    /// Token only.
    None,
    /// A new access key and secret key.
    Generate,
    /// This key pair.
    Existing {
        /// The access key.
        access_key: String,
        /// The secret key.
        secret_key: String,
    },
}

/// A credential to add.
pub struct NewCredential<'a> {
    /// Its name (unique, never reused).
    pub name: &'a str,
    /// What it may do.
    pub role: Role,
    /// The tasks it may upload to (`None`: any).
    pub tasks: Option<Vec<TaskId>>,
    /// Its AK/SK key pair, if any.
    pub key_pair: KeyPair,
}

/// The secrets of a new credential, shown once.
#[derive(Debug, Serialize)]
pub struct IssuedCredential {
    /// Its name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Its bearer token (stored only hashed).
    pub token: String,
    /// Its access key, if it has a key pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// Its secret key (stored encrypted), if it has a key pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
}

/// Adds a credential; its secrets are returned once.
pub fn add(conn: &Connection, new: NewCredential<'_>) -> Result<IssuedCredential, CredentialError> {
    let name = new.name.trim();
    if name.is_empty() || name.len() > 128 || !printable(name) {
        return Err(CredentialError::Invalid(
            "name must be 1 to 128 printable characters (no control or bidirectional characters)"
                .into(),
        ));
    }
    if new.tasks.is_some() && !new.role.may_upload() {
        return Err(CredentialError::Invalid(format!(
            "--tasks limits where a credential may upload; an {} does not upload",
            new.role
        )));
    }
    let token = random_hex(32);
    let Keys {
        access_key,
        secret_key,
        shown_secret,
    } = Keys::of(new.key_pair)?;
    let scope = new.tasks.map(|t| {
        serde_json::to_string(&t.iter().map(TaskId::as_str).collect::<Vec<_>>())
            .expect("strings serialize")
    });
    check_free(conn, name, access_key.as_deref())?;
    conn.execute(
        "INSERT INTO credentials (name, role, token_sha256, access_key, secret_key, task_scope, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            name,
            new.role.as_str(),
            token_hash(&token),
            access_key,
            secret_key,
            scope,
            now_ms()
        ],
    )?;
    Ok(IssuedCredential {
        name: name.to_string(),
        role: new.role,
        token,
        access_key,
        secret_key: shown_secret,
    })
}

/// The access key and secret to store, and the secret to show once (only one
/// generated here is shown).
#[derive(Default)]
struct Keys {
    access_key: Option<String>,
    secret_key: Option<String>,
    shown_secret: Option<String>,
}

impl Keys {
    fn of(pair: KeyPair) -> Result<Self, CredentialError> {
        Ok(match pair {
            KeyPair::None => Keys::default(),
            // 20 upper-case characters, like Huawei Cloud access keys; 256-bit secret.
            KeyPair::Generate => {
                let secret = random_hex(32);
                Keys {
                    access_key: Some(random_hex(10).to_ascii_uppercase()),
                    secret_key: Some(secret.clone()),
                    shown_secret: Some(secret),
                }
            }
            KeyPair::Existing {
                access_key,
                secret_key,
            } => {
                if access_key.is_empty() || secret_key.is_empty() {
                    return Err(CredentialError::Invalid(
                        "access key and secret key must not be empty".into(),
                    ));
                }
                Keys {
                    access_key: Some(access_key),
                    secret_key: Some(secret_key),
                    shown_secret: None,
                }
            }
        })
    }
}

/// Neither the name (even revoked) nor the access key is anyone's yet.
fn check_free(
    conn: &Connection,
    name: &str,
    access_key: Option<&str>,
) -> Result<(), CredentialError> {
    // Some(revoked_at) when the name is taken.
    let exists: Option<Option<i64>> = conn
        .query_row(
            "SELECT revoked_at FROM credentials WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(revoked_at) = exists {
        return Err(match revoked_at {
            Some(at) => CredentialError::NameRevoked {
                name: name.to_string(),
                revoked_at: at,
            },
            None => CredentialError::NameTaken(name.to_string()),
        });
    }
    if let Some(ak) = access_key {
        let taken: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM credentials WHERE access_key = ?1)",
            params![ak],
            |r| r.get(0),
        )?;
        if taken {
            return Err(CredentialError::AccessKeyTaken(ak.to_string()));
        }
    }
    Ok(())
}

/// A credential as listed: never its secrets.
#[derive(Debug)]
pub struct CredentialSummary {
    /// Its name.
    pub name: String,
    /// What it may do.
    pub role: String,
    /// Its access key, if it has a key pair.
    pub access_key: Option<String>,
    /// The tasks it may upload to (`None`: any).
    pub tasks: Option<Vec<String>>,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// Its last stored upload or page login.
    pub last_used_at: Option<Timestamp>,
}

/// Records that `name` was used at `at` (never moving its last use back).
pub fn record_use(conn: &Connection, name: &str, at: Timestamp) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "UPDATE credentials SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE name = ?1",
    )?
    .execute(params![name, at])?;
    Ok(())
}

/// How many active (not revoked) operators there are.
pub fn active_operators(conn: &Connection) -> Result<i64, StorageError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM credentials WHERE role = 'operator' AND revoked_at IS NULL",
        [],
        |r| r.get(0),
    )?)
}

/// Every credential, by name.
pub fn list(conn: &Connection) -> Result<Vec<CredentialSummary>, StorageError> {
    let mut stmt = conn.prepare(
        "SELECT name, role, access_key, task_scope, created_at, revoked_at, last_used_at
         FROM credentials ORDER BY name",
    )?;
    let rows = stmt.query_map([], |r| {
        let name: String = r.get(0)?;
        let scope: Option<String> = r.get(3)?;
        Ok(CredentialSummary {
            tasks: scope.map(|s| parse_scope(&name, &s)),
            name,
            role: r.get(1)?,
            access_key: r.get(2)?,
            created_at: r.get(4)?,
            revoked_at: r.get(5)?,
            last_used_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes a credential; its name stays taken.
pub fn revoke(conn: &Connection, name: &str) -> Result<(), CredentialError> {
    let changed = conn.execute(
        "UPDATE credentials SET revoked_at = coalesce(revoked_at, ?2) WHERE name = ?1",
        params![name, now_ms()],
    )?;
    if changed == 0 {
        return Err(CredentialError::NotFound(name.to_string()));
    }
    Ok(())
}

/// Whether no credential has ever been added.
pub fn is_empty(conn: &Connection) -> Result<bool, StorageError> {
    Ok(
        conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM credentials)", [], |r| {
            r.get(0)
        })?,
    )
}
