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
