//! `restore`: put a checked backup in place of the database, keeping the old one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{fail, output_error, CliError};
use crate::domain::{format_timestamp, now_ms};
use crate::services::ledger::{self, Parallelism, Scope};
use crate::storage::lock::{LockKind, ProcessLock};
use crate::storage::{self, SyncMode};

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup to restore (made by `backup`, or by `litestream restore`).
    #[arg(long)]
    pub from: PathBuf,
    /// Restore a backup of another log (its checkpoints are signed by another key
    /// or name another origin): the restored database then continues that log,
    /// not this one, and checkpoints this service published before no longer
    /// match it.
    #[arg(long)]
    pub other_log: bool,
}

/// Who signs a database's checkpoints: the origin line and each signature's
/// key name and key id (none when it has no checkpoint yet).
fn log_identity(conn: &rusqlite::Connection) -> Result<Option<String>, CliError> {
    let Some(latest) = storage::checkpoints::latest(conn).map_err(fail)? else {
        return Ok(None);
    };
    let origin = latest.note.lines().next().unwrap_or_default();
    let signers: Vec<String> = latest
        .note
        .lines()
        .filter_map(|l| signed_note::Signature::from_bytes(l.as_bytes()).ok())
        .map(|s| format!("{}+{:08x}", s.name(), s.id()))
        .collect();
    Ok(Some(format!(
        "origin {origin:?}, key {}",
        signers.join(", ")
    )))
}

pub fn run(db: &Path, args: RestoreArgs) -> Result<ExitCode, CliError> {
    let mut out = std::io::stdout().lock();
    let started = now_ms();
    if !args.from.is_file() {
        return Err(fail(format!(
            "--from {}: no such file",
            args.from.display()
        )));
    }
    // 1. The backup is checked before anything is touched, and before anything
    // of it is trusted: opened read-only and defensively, its schema compared.
    let backup = storage::schema::open_untrusted(&args.from)
        .map_err(|e| fail(format!("--from {}: {e}", args.from.display())))?;
    let version = match storage::schema_version(&backup)
        .map_err(|e| fail(format!("--from {}: {e}", args.from.display())))?
    {
        None => {
            return Err(fail(format!(
                "--from {}: not an sms-audit database",
                args.from.display()
            )))
        }
        Some(v) if v > storage::known_schema_version() => {
            return Err(fail(format!(
                "--from {}: made by a newer sms-audit (schema {v}, this one knows {}); restore it with that version",
                args.from.display(),
                storage::known_schema_version()
            )))
        }
        Some(v) => v,
    };
    let difference = storage::schema::first_difference(&backup, version)
        .map_err(|e| fail(format!("--from {}: {e}", args.from.display())))?;
    if let Some(difference) = difference {
        writeln!(
            out,
            "not restored: {} is not an sms-audit database as sms-audit makes it: {difference}; {} is unchanged",
            args.from.display(),
            db.display()
        )
        .map_err(output_error)?;
        return Ok(ExitCode::from(1));
    }
    if db.exists() && !args.other_log {
        let here = storage::open_read(db).map_err(fail)?;
        if let (Some(theirs), Some(ours)) = (log_identity(&backup)?, log_identity(&here)?) {
            if theirs != ours {
                return Err(fail(format!(
                    "--from {} is a backup of another log ({theirs}; this database's: {ours}); \
                     restore it with --other-log to continue that log here instead",
                    args.from.display()
                )));
            }
        }
    }
    let open = || storage::open_read(&args.from);
    let checked = ledger::verify(
        &backup,
        &open,
        Parallelism::all_cores(),
        Scope::Full,
        |_| {},
    )
    .map_err(fail)?;
    drop(backup);
    if let Some(bad) = &checked.first_bad {
        writeln!(
            out,
            "not restored: the backup's ledger is BROKEN at entry {}: {}; {} is unchanged",
            bad.id,
            bad.problem,
            db.display()
        )
        .map_err(output_error)?;
        return Ok(ExitCode::from(1));
    }
    // 2. No service, replay or purge may write to the database meanwhile.
    let _writer = ProcessLock::acquire(db, LockKind::Writer).map_err(fail)?;
    let _replay = ProcessLock::acquire(db, LockKind::Replay).map_err(fail)?;
    let _purge = ProcessLock::acquire(db, LockKind::Purge).map_err(fail)?;
    // 3. The copy is staged next to the database (so the final rename is atomic).
    let staged = PathBuf::from(format!("{}.restoring-{}", db.display(), std::process::id()));
    let _ = std::fs::remove_file(&staged);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&staged)
        .map_err(|e| fail(format!("{}: {e}", staged.display())))?;
    let staged_ok = storage::backup::online_copy(&args.from, &staged, |_, _| {}).and_then(|()| {
        // The copy's pages on disk before it takes the database's name.
        let conn = storage::open_write(&staged, SyncMode::Full)?;
        conn.pragma_update(None, "journal_mode", "DELETE")?;
        Ok(())
    });
    if let Err(e) = staged_ok.and_then(|()| {
        std::fs::File::open(&staged)
            .and_then(|f| f.sync_all())
            .map_err(|e| storage::StorageError::Background(e.to_string()))
    }) {
        let _ = std::fs::remove_file(&staged);
        return Err(fail(format!("restore failed, nothing changed: {e}")));
    }
    // 4. What the database held, with its WAL folded in (so the file kept is whole).
    let before = db.exists().then(|| {
        storage::open_write(db, SyncMode::Full).and_then(|conn| {
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            storage::ledger::head(&conn)
        })
    });
    let stamp = format_timestamp(now_ms()).replace([':', '-', '.'], "");
    let kept = storage::backup::replace_database(db, &staged, &stamp).map_err(|e| {
        let _ = std::fs::remove_file(&staged);
        fail(format!("restore failed: {e}"))
    })?;
    super::record_admin_action(
        db,
        started,
        "restore",
        &format!(
            "from {}: {} entries, head {}{}",
            args.from.display(),
            checked.entries,
            checked.head_hash,
            kept.as_ref()
                .map(|k| format!("; the database it replaced kept as {}", k.display()))
                .unwrap_or_default()
        ),
        "done",
    );
    writeln!(
        out,
        "restored {} into {}: ledger intact, {} entries, head {}",
        args.from.display(),
        db.display(),
        checked.entries,
        checked.head_hash
    )
    .map_err(output_error)?;
    if let Some(kept) = kept {
        match before {
            Some(Ok(old)) => {
                writeln!(
                    out,
                    "the database it replaced ({} entries, head {}) is kept as {}",
                    old.id,
                    old.hash,
                    kept.display()
                )
                .map_err(output_error)?;
                let missing = old.id - checked.head_id;
                if missing > 0 {
                    writeln!(
                        out,
                        "warning: {missing} uploads newer than the backup are only in {}; checkpoints published after the backup will not match the chain from here on",
                        kept.display()
                    )
                    .map_err(output_error)?;
                }
            }
            Some(Err(e)) => writeln!(
                out,
                "the database it replaced (unreadable: {e}) is kept as {}",
                kept.display()
            )
            .map_err(output_error)?,
            None => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}
