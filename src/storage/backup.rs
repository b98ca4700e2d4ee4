//! Online backup: a consistent copy of the database while the service writes.

use std::path::Path;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;

use super::StorageError;

/// Pages copied per step (4 MB of 4 KB pages), between progress reports.
const PAGES_PER_STEP: i32 = 1024;

/// Copies the database at `from` into the empty file `to` with SQLite's online
/// backup, inside one read transaction, so the copy is the database as of its
/// start whatever the writer commits meanwhile (WAL lets both go on). `progress`
/// gets (pages copied, pages in all). The copy is left in rollback-journal mode,
/// a single self-contained file.
pub fn online_copy(
    from: &Path,
    to: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<(), StorageError> {
    let source = super::open_read(from)?;
    // One snapshot for the whole copy: the backup never restarts on the writer's
    // commits, and sees none of them.
    let snapshot = source.unchecked_transaction()?;
    source.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
    let mut copy = Connection::open(to)?;
    {
        let backup = Backup::new(&source, &mut copy)?;
        loop {
            let step = backup.step(PAGES_PER_STEP)?;
            let p = backup.progress();
            let total = p.pagecount.max(0) as u64;
            progress(total - p.remaining.max(0) as u64, total);
            match step {
                StepResult::Done => break,
                StepResult::More => {}
                // Another connection holds a lock the copy needs: wait a little.
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    }
    snapshot.finish()?;
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// Writes a compacted copy of the database at `from` into the empty file `to`
/// with `VACUUM INTO`, in one read snapshot: the space of purged bodies (holes in
/// their pages, which no later upload fills) is left out. Slower than
/// [`online_copy`] and without progress; the copy keeps the incremental vacuum.
pub fn compact_copy(from: &Path, to: &Path) -> Result<(), StorageError> {
    // Read-only, but not `query_only` (which refuses VACUUM INTO even though it
    // writes only the copy).
    let source = Connection::open_with_flags(
        from,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(std::time::Duration::from_secs(5))?;
    source.execute("VACUUM INTO ?1", [to.to_string_lossy()])?;
    let copy = Connection::open(to)?;
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// Puts the file `staged` (a checked copy, in the same directory) in place of the
/// database at `db`. An existing database is kept, with its WAL and shared-memory
/// files, under `<db>.replaced-<stamp>` (SQLite opens it there with its WAL), and
/// its path returned. The directory is synced so the swap survives a crash.
pub fn replace_database(
    db: &Path,
    staged: &Path,
    stamp: &str,
) -> std::io::Result<Option<std::path::PathBuf>> {
    let with =
        |p: &Path, suffix: &str| std::path::PathBuf::from(format!("{}{suffix}", p.display()));
    let kept = with(db, &format!(".replaced-{stamp}"));
    let replaced = if db.exists() {
        if kept.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists", kept.display()),
            ));
        }
        // The caller has folded the WAL in when it could; any left goes with its
        // database, and never stays to be read with the new one.
        let wal = with(db, "-wal");
        let wal_empty = std::fs::metadata(&wal).map_or(true, |m| m.len() == 0);
        for suffix in ["-wal", "-shm"] {
            let file = with(db, suffix);
            if !file.exists() {
                continue;
            }
            if wal_empty {
                // Nothing in them that the database file lacks.
                std::fs::remove_file(&file)?;
            } else {
                std::fs::rename(&file, with(&kept, suffix))?;
            }
        }
        std::fs::rename(db, &kept)?;
        Some(kept)
    } else {
        None
    };
    std::fs::rename(staged, db)?;
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()?;
    Ok(replaced)
}
