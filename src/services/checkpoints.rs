//! Making signed checkpoints: every `--checkpoint-interval` when the tree has grown,
//! and at shutdown. Each is stored (through the writer) and, with
//! `--checkpoint-dir`, written as `<size>.checkpoint` and `latest` for any copy
//! tool to carry off the machine. Reading the root is O(log n) and signing takes
//! microseconds: ingest never waits for a checkpoint.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::domain::checkpoint::CheckpointKey;
use crate::domain::now_ms;
use crate::services::fork;
use crate::storage::writer::WriterHandle;
use crate::storage::{checkpoints, tree, ReadPool};

/// How checkpoints are made, as `serve` was configured.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// The log's name: line 1 of every checkpoint and the key's name.
    pub origin: String,
    /// The Ed25519 key file (created, mode 0600, when missing).
    pub key_path: PathBuf,
    /// How often a checkpoint is made when the tree has grown.
    pub interval: Duration,
    /// Where each checkpoint is also written (`<size>.checkpoint`, `latest`).
    pub dir: Option<PathBuf>,
}

impl CheckpointSettings {
    /// `--checkpoint-interval`'s default.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

    /// The defaults for a database: `sms-audit/<hostname>`, `<db>.signing-key`,
    /// every [`DEFAULT_INTERVAL`](Self::DEFAULT_INTERVAL), no directory.
    pub fn for_db(db: &Path) -> Self {
        Self {
            origin: default_origin(),
            key_path: PathBuf::from(format!("{}.signing-key", db.display())),
            interval: Self::DEFAULT_INTERVAL,
            dir: None,
        }
    }
}

/// `sms-audit/<hostname>`.
pub fn default_origin() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && !h.contains(['+', ' ']))
        .unwrap_or_else(|| "localhost".into());
    format!("sms-audit/{host}")
}

/// Why checkpoints could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The signing key could not be read, made or trusted.
    #[error("signing key {path}: {why}")]
    Key {
        /// The key file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// Making or storing a checkpoint failed.
    #[error("{0}")]
    Failed(String),
    /// The database is not the history the key signed: nothing is signed
    /// until the fork is accepted.
    #[error("not signing: {0}; if this is intended (a restore), run `sms-audit evidence accept-fork --reason TEXT`")]
    Fork(String),
}

/// Reads the key file, or creates it (readable by its owner only) with a new key.
pub fn load_or_create_key(path: &Path, origin: &str) -> Result<CheckpointKey, CheckpointError> {
    let bad = |why: String| CheckpointError::Key {
        path: path.display().to_string(),
        why,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => CheckpointKey::parse(&text, origin).map_err(|e| bad(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = CheckpointKey::generate(origin).map_err(|e| bad(e.to_string()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options
                .open(path)
                .and_then(|mut f| f.write_all(key.to_private_text().as_bytes()))
                .map_err(|e| bad(e.to_string()))?;
            tracing::info!(path = %path.display(), verifier_key = %key.verifier_key(), "created the checkpoint signing key");
            Ok(key)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Makes checkpoints for the running service.
pub struct Checkpointer {
    key: CheckpointKey,
    settings: CheckpointSettings,
    reads: ReadPool,
    writer: WriterHandle,
    /// One checkpoint at a time (the timer and the final one at shutdown).
    making: tokio::sync::Mutex<()>,
    last_error: parking_lot::Mutex<Option<String>>,
}

impl Checkpointer {
    /// A checkpointer signing with `key`, reading and writing through the service's storage.
    pub fn new(
        key: CheckpointKey,
        settings: CheckpointSettings,
        reads: ReadPool,
        writer: WriterHandle,
    ) -> Arc<Self> {
        Arc::new(Self {
            key,
            settings,
            reads,
            writer,
            making: tokio::sync::Mutex::new(()),
            last_error: Default::default(),
        })
    }

    /// The key's verifier key (`name+id+base64`), for auditors.
    pub fn verifier_key(&self) -> String {
        self.key.verifier_key()
    }

    /// A checkpoint of the tree as it is now, if it has grown since the last one;
    /// returns its size.
    pub async fn make_now(&self) -> Result<Option<u64>, CheckpointError> {
        let _one = self.making.lock().await;
        let signed = fork::read_head(&self.settings.key_path).map_err(CheckpointError::Failed)?;
        let (size, root, latest, fork_found, accepted) = self
            .reads
            .with_blocking(move |conn| {
                let size = tree::size(conn)?;
                let latest = checkpoints::latest(conn)?.map_or(0, |c| c.tree_size);
                let fork_found = match signed {
                    Some(head) => fork::fork_in(conn, head)?,
                    None => None,
                };
                let accepted = fork::accepted_since_last_checkpoint(conn)?;
                Ok((size, tree::root(conn, size)?, latest, fork_found, accepted))
            })
            .await
            .map_err(|e| CheckpointError::Failed(e.to_string()))?;
        if let Some(why) = fork_found {
            return Err(CheckpointError::Fork(why));
        }
        if size == 0 || size <= latest {
            return Ok(None);
        }
        let made_at = now_ms();
        let note = self
            .key
            .sign_with(
                size,
                root,
                Utc::now(),
                &accepted.into_iter().collect::<Vec<_>>(),
            )
            .map_err(|e| CheckpointError::Failed(e.to_string()))?;
        let stored_note = note.clone();
        self.writer
            .execute_when_room(move |conn| {
                checkpoints::insert(conn, size, &root.0, made_at, &stored_note)
            })
            .await
            .map_err(|e| CheckpointError::Failed(e.to_string()))?;
        fork::write_head(&self.settings.key_path, fork::SignedHead { size, root }).map_err(
            |e| {
                CheckpointError::Failed(format!(
                    "{}: {e}",
                    fork::head_path(&self.settings.key_path).display()
                ))
            },
        )?;
        if let Some(dir) = &self.settings.dir {
            write_files(dir, size, &note)
                .map_err(|e| CheckpointError::Failed(format!("{}: {e}", dir.display())))?;
        }
        Ok(Some(size))
    }

    /// Makes checkpoints every interval until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        loop {
            if super::background::pause(&stop, self.settings.interval).await {
                return;
            }
            let made = self.make_now().await;
            let mut last = self.last_error.lock();
            match made {
                Ok(_) => *last = None,
                Err(e) => {
                    // Said once per new trouble, not every interval.
                    if last.as_deref() != Some(&e.to_string()) {
                        tracing::error!("checkpoint not made: {e}");
                    }
                    *last = Some(e.to_string());
                }
            }
        }
    }
}

/// `<size>.checkpoint` and `latest`, each written whole (a temporary file with a
/// random name renamed over it: a link planted there is replaced, not followed).
pub(crate) fn write_files(dir: &Path, size: u64, note: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for name in [format!("{size}.checkpoint"), "latest".to_string()] {
        crate::storage::files::replace(&dir.join(name), note.as_bytes())?;
    }
    Ok(())
}
