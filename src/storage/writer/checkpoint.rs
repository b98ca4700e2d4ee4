//! Copying WAL frames back into the database file, on a thread and connection of
//! its own so that commits never wait for a checkpoint.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crate::storage::{open_write, StorageError, SyncMode};

/// How often WAL frames are copied back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A WAL longer than this many frames (64 MiB of 4 KiB pages) is started over:
/// the checkpoint thread copies it back until little is left, then the writer
/// copies that rest between two commits (see [`WalTooLong`]), and its next
/// commit starts the WAL from the beginning. Kept small so that the WAL's file
/// stays in the page cache: a commit that writes past its end makes the kernel
/// allocate and zero new pages, which cost a durable upload 10-15 % of its CPU.
pub(super) const WAL_RESTART_FRAMES: i64 = 16_384;

/// The bytes a WAL's file is cut back to when it is started over
/// (`journal_size_limit`): twice what starts it over, more than it grows
/// between two checkpoint turns, so that steady writes keep reusing its pages.
pub(super) const WAL_FILE_LIMIT: i64 = 2 * WAL_RESTART_FRAMES * 4096;

/// Before it hands a long WAL over to the writer, the checkpoint thread copies
/// again until a pass copies no more than this many frames: the writer's own
/// copy of the rest holds the next commit (about 1.5 ms at full load, where
/// handing over after one pass held it 20-30 ms).
const HAND_OVER_FRAMES: i64 = 128;

/// The most passes of one turn; a reader that holds old frames keeps a pass
/// from copying them, and the writer is then asked anyway.
const MAX_PASSES: usize = 16;

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
                if copy_back(&conn, WAL_RESTART_FRAMES, HAND_OVER_FRAMES) {
                    too_long.0.store(true, Ordering::Relaxed);
                }
            }
        })
        .expect("spawning the checkpoint thread");
    Ok(Checkpointer { stop, thread })
}

/// One checkpoint thread's turn: copies the WAL back, and when it is longer than
/// `restart_frames`, copies again while the pass before copied more than
/// `hand_over_frames` (each pass copies what was committed during the one
/// before, so what is left shrinks with each). Says whether the writer should
/// copy the rest and start the WAL over.
fn copy_back(conn: &rusqlite::Connection, restart_frames: i64, hand_over_frames: i64) -> bool {
    let mut copied_before = None;
    for _ in 0..MAX_PASSES {
        let Some(wal) = passive_checkpoint(conn) else {
            // Past the limit already: the writer may still manage.
            return copied_before.is_some();
        };
        if wal.frames <= restart_frames {
            return false; // short, or started over since the last pass
        }
        // A pass that copied little left little: what came in while it ran.
        if copied_before.is_some_and(|before| wal.copied - before <= hand_over_frames) {
            return true;
        }
        copied_before = Some(wal.copied);
    }
    true
}

/// Copies what is left of the WAL back, on the writer's own connection between
/// two commits, so that the next commit starts the WAL over (and
/// `journal_size_limit` truncates its file). Never waits for a reader: one still
/// reading old frames only postpones the start-over to a later call.
pub(super) fn catch_up_wal(conn: &rusqlite::Connection) {
    passive_checkpoint(conn);
}

/// The WAL after a checkpoint: its frames, and how many of them are copied back.
struct WalState {
    frames: i64,
    copied: i64,
}

/// Copies WAL frames back without waiting for anyone (None when the checkpoint
/// failed, which is logged).
fn passive_checkpoint(conn: &rusqlite::Connection) -> Option<WalState> {
    // The row is (busy, frames in the WAL, frames copied back).
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(WalState {
            frames: r.get(1)?,
            copied: r.get(2)?,
        })
    })
    .inspect_err(|e| tracing::warn!(error = %e, "checkpoint failed"))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::{copy_back, passive_checkpoint};
    use crate::storage::uploads::NewUpload;
    use crate::storage::writer::{spawn, WriterConfig, WriterSettings};
    use crate::storage::{open_write, SyncMode, WalCheckpoints};

    /// A connection to a new WAL-mode database that copies nothing back itself.
    fn open(dir: &std::path::Path) -> rusqlite::Connection {
        let path = dir.join("w.db");
        drop(rusqlite::Connection::open(&path).unwrap());
        let conn = open_write(&path, SyncMode::Normal).unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (x BLOB)")
            .unwrap();
        conn
    }

    fn commit(conn: &rusqlite::Connection, commits: usize) {
        for _ in 0..commits {
            conn.execute("INSERT INTO t VALUES (zeroblob(3000))", [])
                .unwrap();
        }
    }

    /// Frames in the WAL not yet copied back (a pass that copies them).
    fn not_copied(conn: &rusqlite::Connection) -> i64 {
        let wal = passive_checkpoint(conn).unwrap();
        wal.frames - wal.copied
    }

    #[test]
    fn a_long_wal_is_copied_back_whole_then_handed_to_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, checkpointer) = (open(dir.path()), open(dir.path()));
        commit(&writer, 40);
        assert!(
            copy_back(&checkpointer, 10, 0),
            "over 10 frames: the writer is asked"
        );
        assert_eq!(not_copied(&writer), 0, "the thread copied all it could");

        commit(&writer, 5);
        assert!(
            !copy_back(&checkpointer, 1_000, 0),
            "within the limit: not asked"
        );
        assert_eq!(not_copied(&writer), 0, "and copied back all the same");
    }

    #[test]
    fn frames_a_reader_holds_are_left_and_the_writer_is_asked_all_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, checkpointer, reader) = (open(dir.path()), open(dir.path()), open(dir.path()));
        commit(&writer, 20);
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        commit(&writer, 20);
        assert!(
            copy_back(&checkpointer, 10, 0),
            "asked though not all is copied"
        );
        assert!(
            not_copied(&writer) > 0,
            "the frames after the reader's snapshot were left"
        );
        reader.execute_batch("COMMIT").unwrap();
        assert_eq!(not_copied(&writer), 0);
    }

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
