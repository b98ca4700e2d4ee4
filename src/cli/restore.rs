//! `restore`: put a checked backup in place of the database, keeping the old one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::{fail, CliError};
use crate::domain::chain::{Head, Verification};
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
    let started = now_ms();
    if !args.from.is_file() {
        return Err(fail(format!(
            "--from {}: no such file",
            args.from.display()
        )));
    }
    // 1. The backup is checked before anything is touched, and before anything
    // of it is trusted.
    let checked = match check_backup(db, &args)? {
        Ok(checked) => checked,
        Err(why) => {
            say!("not restored: {why}; {} is unchanged", db.display())?;
            return Ok(ExitCode::from(1));
        }
    };
    // 2. No service, replay or purge may write to the database meanwhile.
    let _writer = ProcessLock::acquire(db, LockKind::Writer).map_err(fail)?;
    let _replay = ProcessLock::acquire(db, LockKind::Replay).map_err(fail)?;
    let _purge = ProcessLock::acquire(db, LockKind::Purge).map_err(fail)?;
    // 3. The copy is staged next to the database (so the final rename is atomic).
    let staged = stage(&args.from, db)
        .map_err(|e| fail(format!("restore failed, nothing changed: {e:#}")))?;
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
    let replaced = kept
        .as_ref()
        .map(|k| format!("; the database it replaced kept as {}", k.display()))
        .unwrap_or_default();
    let detail = format!(
        "from {}: {}, head {}{replaced}",
        args.from.display(),
        crate::domain::counted(checked.entries, "entry"),
        checked.head_hash,
    );
    super::record_admin_action(db, started, "restore", &detail, "done");
    say!(
        "restored {} into {}: ledger intact, {}, head {}",
        args.from.display(),
        db.display(),
        crate::domain::counted(checked.entries, "entry"),
        checked.head_hash
    )?;
    if let Some(kept) = kept {
        report_replaced(&kept, before, checked.head_id)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The backup's ledger when it may be restored; `Err` says why it is not (exit
/// 1), an error why it could not be checked (exit 2). Opened read-only and
/// defensively, its schema compared with the one its version makes, its log
/// the database's (unless `--other-log`), its whole ledger verified.
fn check_backup(db: &Path, args: &RestoreArgs) -> Result<Result<Verification, String>, CliError> {
    let from = args.from.display().to_string();
    let backup =
        storage::schema::open_untrusted(&args.from).with_context(|| format!("--from {from}"))?;
    let version = storage::schema_version(&backup).with_context(|| format!("--from {from}"))?;
    let known = storage::known_schema_version();
    let version = match version {
        None => return Err(fail(format!("--from {from}: not an sms-audit database"))),
        Some(v) if v > known => {
            return Err(fail(format!(
                "--from {from}: made by a newer sms-audit (schema {v}, this one knows {known}); restore it with that version"
            )))
        }
        Some(v) => v,
    };
    let difference = storage::schema::first_difference(&backup, version)
        .with_context(|| format!("--from {from}"))?;
    if let Some(difference) = difference {
        return Ok(Err(format!(
            "{from} is not an sms-audit database as sms-audit makes it: {difference}"
        )));
    }
    if db.exists() && !args.other_log {
        let here = storage::open_read(db).map_err(fail)?;
        if let (Some(theirs), Some(ours)) = (log_identity(&backup)?, log_identity(&here)?) {
            if theirs != ours {
                return Err(fail(format!(
                    "--from {from} is a backup of another log ({theirs}; this database's: {ours}); \
                     restore it with --other-log to continue that log here instead"
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
    Ok(match &checked.first_bad {
        Some(bad) => Err(format!(
            "the backup's ledger is BROKEN at entry {}: {}",
            bad.id, bad.problem
        )),
        None => Ok(checked),
    })
}

/// A copy of `from` beside `db`, owner-only, on disk in full; removed again when
/// anything fails.
fn stage(from: &Path, db: &Path) -> anyhow::Result<PathBuf> {
    let staged = PathBuf::from(format!("{}.restoring-{}", db.display(), std::process::id()));
    let _ = std::fs::remove_file(&staged);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&staged)
        .with_context(|| staged.display().to_string())?;
    let copied = (|| -> anyhow::Result<()> {
        storage::backup::online_copy(from, &staged, |_, _| {})?;
        // The copy's pages on disk before it takes the database's name.
        let conn = storage::open_write(&staged, SyncMode::Full)?;
        conn.pragma_update(None, "journal_mode", "DELETE")?;
        drop(conn);
        std::fs::File::open(&staged)?.sync_all()?;
        Ok(())
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    Ok(staged)
}

/// What became of the database the backup replaced.
fn report_replaced(
    kept: &Path,
    before: Option<Result<Head, storage::StorageError>>,
    restored_head: i64,
) -> Result<(), CliError> {
    match before {
        Some(Ok(old)) => {
            say!(
                "the database it replaced ({}, head {}) is kept as {}",
                crate::domain::counted(old.id, "entry"),
                old.hash,
                kept.display()
            )?;
            let missing = old.id - restored_head;
            if missing > 0 {
                say!(
                    "warning: {} newer than the backup {} only in {}; checkpoints published after the backup will not match the chain from here on",
                    crate::domain::counted(missing, "upload"),
                    if missing == 1 { "is" } else { "are" },
                    kept.display()
                )?;
            }
        }
        Some(Err(e)) => say!(
            "the database it replaced (unreadable: {e}) is kept as {}",
            kept.display()
        )?,
        None => {}
    }
    Ok(())
}
