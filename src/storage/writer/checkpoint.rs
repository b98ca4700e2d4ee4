//! Copying WAL frames back into the database file, on a thread and connection of
//! its own so that commits never wait for a checkpoint.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::storage::{open_write, StorageError, SyncMode};

/// How often WAL frames are copied back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The running checkpoint thread.
pub(super) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Stops the thread and waits for it.
    pub(super) fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

pub(super) fn spawn(path: &Path, sync: SyncMode) -> Result<Checkpointer, StorageError> {
    let conn = open_write(path, sync)?;
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("sms-audit-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY)
            {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "checkpoint failed");
                }
            }
        })
        .expect("spawning the checkpoint thread");
    Ok(Checkpointer { stop, thread })
}
