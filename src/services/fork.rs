//! Fork detection: the latest tree the signing key signed is kept beside the key
//! (`<signing-key>.signed`, written whole after each checkpoint), outside the
//! database. A database that does not extend it (restored from an older backup,
//! or another one put in its place) is a fork: the service then signs nothing
//! until an operator accepts the fork (`evidence accept-fork`), which is recorded
//! in the admin log and in the next checkpoint's extension lines.

use std::path::{Path, PathBuf};

use base64::prelude::{Engine, BASE64_STANDARD};
use rusqlite::Connection;
use tlog_tiles::Hash;

use crate::domain::counted;
use crate::storage::{checkpoints, retention, tree, StorageError};

/// The admin log's action for an accepted fork.
pub const ACCEPT_FORK: &str = "accept-fork";

/// The latest tree a key signed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignedHead {
    /// Its size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
}

impl std::fmt::Display for SignedHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "size {} root {}", self.size, self.root)
    }
}

/// Where the head signed with the key at `key_path` is kept.
pub fn head_path(key_path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.signed", key_path.display()))
}

/// The head last signed with this key, if one was recorded.
pub fn read_head(key_path: &Path) -> Result<Option<SignedHead>, String> {
    let path = head_path(key_path);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let bad = || format!("{}: not `size N` and `root BASE64` lines", path.display());
    let mut size = None;
    let mut root = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("size", n)) => size = n.parse::<u64>().ok(),
            Some(("root", r)) => {
                root = BASE64_STANDARD
                    .decode(r)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(Hash)
            }
            _ => return Err(bad()),
        }
    }
    match (size, root) {
        (Some(size), Some(root)) => Ok(Some(SignedHead { size, root })),
        _ => Err(bad()),
    }
}

/// Records the head just signed (written whole: never half a file).
pub fn write_head(key_path: &Path, head: SignedHead) -> std::io::Result<()> {
    let text = format!("size {}\nroot {}\n", head.size, head.root);
    crate::storage::files::replace(&head_path(key_path), text.as_bytes())
}

/// Why the database is not the history the key signed, if it is not: its tree
/// is smaller than the signed one, or has another root at that size.
pub fn fork_in(conn: &Connection, signed: SignedHead) -> Result<Option<String>, StorageError> {
    let size = tree::size(conn)?;
    if size < signed.size {
        return Ok(Some(format!(
            "this key last signed a tree of {} (root {}), but the database holds {}: it is an older copy or another database",
            counted(signed.size, "upload"),
            signed.root,
            counted(size, "upload")
        )));
    }
    let root = tree::root(conn, signed.size)?;
    if root != signed.root {
        return Ok(Some(format!(
            "this key signed a tree of {} with root {}, but the database's tree of that size has root {}: it is another history",
            counted(signed.size, "upload"),
            signed.root,
            root
        )));
    }
    Ok(None)
}

/// The extension line that records a fork accepted since the latest
/// checkpoint, if one was.
pub fn accepted_since_last_checkpoint(conn: &Connection) -> Result<Option<String>, StorageError> {
    let Some(accepted) = retention::last_done(conn, ACCEPT_FORK)? else {
        return Ok(None);
    };
    let latest = checkpoints::latest(conn)?.map_or(i64::MIN, |c| c.time);
    if accepted.finished_at.unwrap_or(accepted.started_at) <= latest {
        return Ok(None);
    }
    Ok(Some(format!(
        "accepted-fork {}",
        accepted.detail.unwrap_or_default()
    )))
}
