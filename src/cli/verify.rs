//! `verify`: check the whole ledger.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::{fail, open_existing, output_error, CliError};
use crate::domain::checkpoint::CheckpointKey;
use crate::domain::now_ms;
use crate::services::{evidence, ledger};
use crate::storage::{self, history};

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Check the checkpoints' signatures with this verifier key (default: the one
    /// of the signing key file, when there is one).
    #[arg(long)]
    pub vkey: Option<String>,
    /// The checkpoint signing key file (default `<db>.signing-key`).
    #[arg(long, env = "SMS_AUDIT_SIGNING_KEY")]
    pub signing_key: Option<std::path::PathBuf>,
}

/// The verifier key to check checkpoints with: given, or the key file's under
/// the latest checkpoint's origin.
fn verifier_key(db: &Path, args: &VerifyArgs, conn: &rusqlite::Connection) -> Option<String> {
    if let Some(vkey) = &args.vkey {
        return Some(vkey.clone());
    }
    let path = args
        .signing_key
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(format!("{}.signing-key", db.display())));
    let text = std::fs::read_to_string(path).ok()?;
    let latest = crate::storage::checkpoints::latest(conn).ok()??;
    let origin = latest.note.lines().next()?.to_string();
    CheckpointKey::parse(&text, &origin)
        .ok()
        .map(|k| k.verifier_key())
}

pub fn run(db: &Path, args: VerifyArgs) -> Result<ExitCode, CliError> {
    // Auditors verify read-only copies: when the file cannot be written, it is
    // checked as it is, and the run is not recorded in it.
    let (conn, writable) = match open_existing(db) {
        Ok(conn) => (conn, true),
        Err(CliError::Failed(why)) if db.exists() => {
            let conn = storage::open_immutable(db)
                .map_err(|e| fail(format!("{why}; read-only, it cannot be opened either: {e}")))?;
            (conn, false)
        }
        Err(e) => return Err(e),
    };
    let started = now_ms();
    let result = ledger::verify(&conn, |n| {
        if n > 0 && n % 100_000 == 0 {
            eprintln!("checked {n} entries");
        }
    })
    .map_err(fail)?;
    if writable {
        history::record_verification(&conn, &result, started, "cli").map_err(fail)?;
    } else {
        eprintln!("the database is read-only: this run is not recorded in it");
    }
    let mut out = std::io::stdout().lock();
    match &result.first_bad {
        None => {
            writeln!(
                out,
                "ledger intact: {} entries, head {} (id {})",
                result.entries, result.head_hash, result.head_id
            )
            .map_err(output_error)?;
            let has_checkpoints =
                crate::storage::checkpoints::latest(&conn).is_ok_and(|c| c.is_some());
            match verifier_key(db, &args, &conn) {
                Some(vkey) => match evidence::verify_checkpoint_signatures(&conn, &vkey).map_err(fail)? {
                    Ok(n) => writeln!(out, "{n} checkpoints, each signed by {vkey}").map_err(output_error)?,
                    Err(failure) => {
                        writeln!(out, "checkpoint signature BROKEN: {failure}").map_err(output_error)?;
                        return Ok(ExitCode::from(1));
                    }
                },
                None if has_checkpoints => eprintln!(
                    "checkpoint signatures not checked: pass --vkey (or --signing-key) to check them"
                ),
                None => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(bad) => {
            writeln!(out, "ledger BROKEN at entry {}: {}", bad.id, bad.problem)
                .map_err(output_error)?;
            writeln!(
                out,
                "{} entries before it are intact; last good head {}",
                result.entries, result.head_hash
            )
            .map_err(output_error)?;
            Ok(ExitCode::from(1))
        }
    }
}
