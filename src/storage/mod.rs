//! The storage layer: the embedded SQLite database. Opening connections (pragmas
//! on every one), migrations, a small pool of read-only connections, the writer
//! thread, and every SQL statement the service runs, one module per concern.
//!
//! Every write of the running service goes through [`writer`]; reads use
//! [`ReadPool`] from blocking threads, never from an actix worker.

pub mod backup;
pub mod checkpoints;
pub mod credentials;
pub mod export;
pub mod files;
pub mod fleet;
pub mod ledger;
pub mod lock;
pub mod notifications;
pub mod outbox;
pub mod overview;
pub mod proxy_log;
pub mod reconciliation;
pub mod rejections;
pub mod replays;
pub mod retention;
pub mod schema;
pub mod sessions;
pub mod tasks;
pub mod tree;
pub mod uploads;
pub mod verifications;
pub mod witness;
pub mod witnesses;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// How hard a commit waits for the disk (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// fsync on every commit: a committed upload survives power loss.
    Full,
    /// WAL-safe against crashes of the process, may lose the last commits on power loss.
    Normal,
}

impl SyncMode {
    fn pragma(self) -> &'static str {
        match self {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        }
    }
}

/// Who copies the WAL back into the database file (`--checkpoint-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WalCheckpoints {
    /// sms-audit does, twice a second, without ever waiting for a reader
    /// (PASSIVE); it starts the WAL over whenever it passes 64 MiB (its file kept
    /// at most 128 MiB) and truncates it at shutdown when no one else reads it.
    #[default]
    Passive,
    /// sms-audit never does: another program holding the database open does
    /// (Litestream). Without one, the WAL grows.
    Off,
}

/// Why the database could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    /// A blocking task failed.
    #[error("a background task failed: {0}")]
    Background(String),
    /// The database's directory could not be created.
    #[error("cannot create database file {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// For reads inside the writer's transaction (which speaks `rusqlite::Error`).
impl From<StorageError> for rusqlite::Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Sqlite(e) => e,
            // Not raised by reads; carried as an opaque error all the same.
            other => rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(
                other.to_string(),
            ))),
        }
    }
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates the database file readable by its owner only (before SQLite does, so it
/// never exists with looser permissions), and applies pending migrations.
pub fn prepare(path: &Path, sync: SyncMode) -> Result<Connection, StorageError> {
    create_owner_only(path)?;
    let mut conn = open_write(path, sync)?;
    embedded::migrations::runner().run(&mut conn)?;
    Ok(conn)
}

/// Creates a database file readable by its owner only, in WAL mode with
/// incremental auto-vacuum, unless it exists.
pub(crate) fn create_owner_only(path: &Path) -> Result<(), StorageError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(source) => {
            return Err(StorageError::Create {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    // Only possible before the database's first page is written (so before
    // WAL mode): a purge then hands freed pages back a step at a time.
    let fresh = Connection::open(path)?;
    fresh.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    fresh.pragma_update(None, "journal_mode", "WAL")?;
    Ok(())
}

/// Whether the database has this table (a database from an older version, read
/// without migrating, may not).
pub fn has_table(conn: &Connection, name: &str) -> Result<bool, StorageError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )? > 0)
}

/// The newest schema version this build migrates to.
pub fn known_schema_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// The schema version of an opened database (None: not an sms-audit database).
pub fn schema_version(conn: &Connection) -> Result<Option<i64>, StorageError> {
    if !has_table(conn, "refinery_schema_history")? {
        return Ok(None);
    }
    Ok(conn.query_row(
        "SELECT max(version) FROM refinery_schema_history",
        [],
        |r| r.get(0),
    )?)
}

/// A read-write connection with the per-connection pragmas set.
pub fn open_write(path: &Path, sync: SyncMode) -> Result<Connection, StorageError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// How much of the database a read connection maps into memory: all of it (1
/// TiB; only address space). SQLite caps it at its build's `SQLITE_MAX_MMAP_SIZE`,
/// which `.cargo/config.toml` raises from 2 GB to this.
pub const READ_MMAP_BYTES: i64 = 1 << 40;

/// A read-only connection (WAL lets it read while the writer commits).
pub fn open_read(path: &Path) -> Result<Connection, StorageError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "query_only", "ON")?;
    // Pages come straight from the OS cache instead of being copied into a small
    // per-connection cache: history pages read rows spread over the whole file,
    // and the as-of views seek an index once or twice per task.
    conn.pragma_update(None, "mmap_size", READ_MMAP_BYTES)?;
    conn.pragma_update(None, "cache_size", -8192)?;
    Ok(conn)
}

/// A read-only copy of a database (evidence handed to an auditor, on read-only
/// media): opened as immutable, so SQLite needs to create nothing next to it.
pub fn open_immutable(path: &Path) -> Result<Connection, StorageError> {
    // In a URI the path's own `%`, `?` and `#` must be escaped.
    const URI_PATH: &percent_encoding::AsciiSet = &percent_encoding::AsciiSet::EMPTY
        .add(b'%')
        .add(b'?')
        .add(b'#');
    let uri = format!(
        "file:{}?immutable=1",
        percent_encoding::utf8_percent_encode(&path.display().to_string(), URI_PATH)
    );
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

/// Read-only connections kept for reuse by blocking tasks.
#[derive(Clone)]
pub struct ReadPool {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
    /// Async callers reading at once: a flood of requests (say, with unknown
    /// credentials, each looked up) waits here instead of taking a blocking
    /// thread and a connection with its page cache each.
    readers: Arc<tokio::sync::Semaphore>,
}

const MAX_IDLE_READERS: usize = 16;

impl ReadPool {
    /// A pool of read-only connections to the database at `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: Arc::new(path.to_path_buf()),
            idle: Arc::new(Mutex::new(Vec::new())),
            readers: Arc::new(tokio::sync::Semaphore::new(MAX_IDLE_READERS)),
        }
    }

    /// [`with`](Self::with) on a blocking thread, for async callers; at most
    /// `MAX_IDLE_READERS` (16) at once.
    pub async fn with_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let permit = self
            .readers
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StorageError::Background(e.to_string()))?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            pool.with(f)
        })
        .await
        .map_err(|e| StorageError::Background(e.to_string()))?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new read connection of its own (for work that reads on several threads).
    pub fn open(&self) -> Result<Connection, StorageError> {
        open_read(&self.path)
    }

    /// Runs `f` with a read connection. Blocking: call from a blocking thread.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let taken = self.idle.lock().pop();
        let conn = match taken {
            Some(c) => c,
            None => open_read(&self.path)?,
        };
        let result = f(&conn);
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    /// The build lets SQLite map the whole database (`.cargo/config.toml`): a
    /// build without it would quietly map only the first 2 GB.
    #[test]
    fn read_connections_map_the_whole_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mapped.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let conn = crate::storage::open_read(&path).unwrap();
        let mapped: i64 = conn
            .query_row("PRAGMA mmap_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mapped, crate::storage::READ_MMAP_BYTES);
    }
}
