//! Copying WAL frames back into the database file, on a thread and connection of
//! its own so that commits never wait for a checkpoint.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crate::storage::{open_write, StorageError, SyncMode};

/// How often WAL frames are copied back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A WAL longer than this many frames (1 GiB of 4 KiB pages) is caught up by
/// the writer itself between two commits (see [`WalTooLong`]). The catch-up
/// holds the next commit for as long as it takes to copy and sync what the last
/// pass left (tens of ms under full load), so it is kept rare: at 25,000
/// uploads/s, once every ten seconds or so.
pub(super) const WAL_RESTART_FRAMES: i64 = 262_144;

/// The running checkpoint thread.
pub(super) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// Set by the checkpoint thread when the WAL has grown past
/// [`WAL_RESTART_FRAMES`]. SQLite starts the WAL over only when a commit finds
/// every frame copied back; under sustained writes this thread never catches the
/// last commit, so without the writer's help the WAL grows without end (30 GB
/// while seeding 10,000,000 uploads).
#[derive(Clone, Default)]
pub(super) struct WalTooLong(Arc<AtomicBool>);

impl WalTooLong {
    /// Whether the writer should catch the WAL up now; cleared by asking.
    pub(super) fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

impl Checkpointer {
    /// Stops the thread and waits for it.
    pub(super) fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

pub(super) fn spawn(
    path: &Path,
    sync: SyncMode,
    too_long: WalTooLong,
) -> Result<Checkpointer, StorageError> {
    let conn = open_write(path, sync)?;
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("sms-audit-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY)
            {
                if passive_checkpoint(&conn).is_some_and(|frames| frames > WAL_RESTART_FRAMES) {
                    too_long.0.store(true, Ordering::Relaxed);
                }
            }
        })
        .expect("spawning the checkpoint thread");
    Ok(Checkpointer { stop, thread })
}

/// Copies what is left of the WAL back, on the writer's own connection between
/// two commits, so that the next commit starts the WAL over (and
/// `journal_size_limit` truncates its file). Never waits for a reader: one still
/// reading old frames only postpones the start-over to a later call.
pub(super) fn catch_up_wal(conn: &rusqlite::Connection) {
    passive_checkpoint(conn);
}

/// Copies WAL frames back without waiting for anyone; the frames in the WAL
/// (none when the checkpoint failed, which is logged).
fn passive_checkpoint(conn: &rusqlite::Connection) -> Option<i64> {
    // The row is (busy, frames in the WAL, frames copied back).
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
        .inspect_err(|e| tracing::warn!(error = %e, "checkpoint failed"))
        .ok()
}

#[cfg(test)]
mod tests {
    use crate::storage::uploads::NewUpload;
    use crate::storage::writer::{spawn, WriterConfig, WriterSettings};
    use crate::storage::{SyncMode, WalCheckpoints};

    /// The WAL header's checkpoint sequence number: SQLite adds one each time
    /// it starts the WAL over.
    fn wal_starts(db: &std::path::Path) -> u32 {
        let wal = std::fs::read(db.with_extension("db-wal")).unwrap();
        u32::from_be_bytes(wal[12..16].try_into().unwrap())
    }

    #[test]
    fn a_wal_said_too_long_is_caught_up_between_commits_and_started_over() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("d.db");
        // No checkpoint thread: nothing else copies the WAL back, as under a load
        // that the thread never catches up with.
        let config = WriterConfig {
            settings: WriterSettings {
                sync: SyncMode::Normal,
                wal_checkpoints: WalCheckpoints::Off,
                ..WriterSettings::DEFAULT
            },
            ..WriterConfig::default()
        };
        let (handle, thread) = spawn(&db, config).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let submit = |n: usize| {
            let upload = NewUpload::for_test(n, "task-1", "/d", [n as u32, 0, 0, 0]);
            runtime.block_on(handle.submit(upload)).unwrap();
        };
        (0..20).for_each(submit);
        let before = wal_starts(&db);
        (20..22).for_each(submit);
        assert_eq!(
            wal_starts(&db),
            before,
            "nothing starts the WAL over unasked"
        );

        thread
            .wal_too_long
            .0
            .store(true, std::sync::atomic::Ordering::Relaxed);
        submit(22); // after this commit the writer catches the WAL up
        submit(23); // and this commit starts it over
        assert_eq!(wal_starts(&db), before + 1);
        assert!(!thread.wal_too_long.take(), "asked once, done once");

        handle.shutdown();
        thread.join();
        let conn = rusqlite::Connection::open(&db).unwrap();
        let stored: i64 = conn
            .query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 24);
    }
}
