//! One process at a time: a lock file next to the database, held while a process
//! writes the chain (`serve`, `dev seed`) or sends a command-line replay. Two
//! writers would each keep their own chain head in memory and corrupt the chain;
//! two replays would send twice.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// What a lock is for; each has its own file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Writing the chain: `serve` and `dev seed`.
    Writer,
    /// Sending a command-line replay.
    Replay,
    /// Purging (`purge`, or `serve --retention`): one purge at a time.
    Purge,
}

impl LockKind {
    fn suffix(self) -> &'static str {
        match self {
            LockKind::Writer => "lock",
            LockKind::Replay => "replay.lock",
            LockKind::Purge => "purge.lock",
        }
    }

    fn holder(self) -> &'static str {
        match self {
            LockKind::Writer => "another sms-audit process writes it",
            LockKind::Replay => "another `sms-audit replay` is sending from it",
            LockKind::Purge => "a purge is running on it (`purge`, or `serve --retention`)",
        }
    }
}

/// Why the database could not be locked for this process.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{db} is in use: {holder} (PID {pid}); stop that process first")]
    Held {
        /// The database.
        db: PathBuf,
        /// What holds it (`serve`, `restore`, …).
        holder: &'static str,
        /// The holder's process id, as it recorded it.
        pid: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Held until dropped (or the process ends, when the OS releases it).
#[derive(Debug)]
pub struct ProcessLock {
    _file: File,
}

impl ProcessLock {
    /// Takes the lock at once or fails naming the holder's PID; never waits.
    pub fn acquire(db: &Path, kind: LockKind) -> Result<Self, LockError> {
        let path = PathBuf::from(format!("{}.{}", db.display(), kind.suffix()));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        // A link planted at the lock's name is refused, never written through.
        let mut file = super::files::no_follow(&mut options)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(LockError::Held {
                    db: db.to_path_buf(),
                    holder: kind.holder(),
                    pid: match pid.trim() {
                        "" => "unknown".into(),
                        p => p.to_string(),
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self { _file: file })
    }
}
