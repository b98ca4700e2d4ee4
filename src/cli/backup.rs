//! `backup`: a consistent copy of the database while `serve` writes, checked.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{fail, CliError};
use crate::domain::now_ms;
use crate::services::ledger::{self, Parallelism, Scope};
use crate::storage;

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The copy to write (must not exist yet; created readable by its owner only).
    #[arg(long)]
    pub to: PathBuf,
    /// Write a compacted copy (`VACUUM INTO`): without the space purged bodies
    /// left in their pages. Slower, no progress bar; restore it to compact the
    /// database itself.
    #[arg(long)]
    pub compact: bool,
}

pub fn run(db: &Path, args: BackupArgs) -> Result<ExitCode, CliError> {
    super::existing_database(db)?;
    // Created here, empty and 0600, so the copy never exists with looser
    // permissions and an existing file is never overwritten.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&args.to)
        .map_err(|e| fail(format!("--to {}: {e}", args.to.display())))?;
    let started = now_ms();
    if let Err(e) = copy(db, &args) {
        let _ = std::fs::remove_file(&args.to);
        return Err(fail(format!("backup failed (nothing kept): {e}")));
    }
    // The copy is checked as an auditor would check it: the whole ledger.
    let conn = storage::open_read(&args.to).map_err(fail)?;
    let open = || storage::open_read(&args.to);
    let result = ledger::verify(&conn, &open, Parallelism::all_cores(), Scope::Full, |_| {})
        .map_err(fail)?;
    let outcome = match &result.first_bad {
        None => "done".to_string(),
        Some(bad) => format!("copy's ledger broken at entry {}", bad.id),
    };
    super::record_admin_action(
        db,
        started,
        "backup",
        &format!(
            "to {}: {}, head {}",
            args.to.display(),
            crate::domain::counted(result.entries, "entry"),
            result.head_hash
        ),
        &outcome,
    );
    match &result.first_bad {
        None => {
            say!(
                "backup written to {}: ledger intact, {}, head {} (id {})",
                args.to.display(),
                crate::domain::counted(result.entries, "entry"),
                result.head_hash,
                result.head_id
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Some(bad) => {
            say!(
                "backup written to {}, but its ledger is BROKEN at entry {}: {} (so is the database's)",
                args.to.display(),
                bad.id,
                bad.problem
            )?;
            Ok(ExitCode::from(1))
        }
    }
}

/// The copy: SQLite's online backup (with a progress bar on a terminal), or
/// `VACUUM INTO` with `--compact`.
fn copy(db: &Path, args: &BackupArgs) -> Result<(), storage::StorageError> {
    if args.compact {
        return storage::backup::compact_copy(db, &args.to);
    }
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| indicatif::ProgressBar::new(0));
    let copied = storage::backup::online_copy(db, &args.to, |done, total| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    copied
}
