//! `verify`: check the whole ledger.

use std::path::Path;
use std::process::ExitCode;

use super::{fail, open_existing, CliError};
use crate::domain::chain::Verification;
use crate::domain::checkpoint::CheckpointKey;
use crate::domain::now_ms;
use crate::services::{evidence, ledger};
use crate::storage::verifications;
use crate::storage::verifications::LastFullRun;
use crate::storage::{self};

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Check the checkpoints' signatures with this verifier key (default: the one
    /// of the signing key file, when there is one).
    #[arg(long, value_parser = crate::domain::checkpoint::parse_verifier_key)]
    pub vkey: Option<String>,
    /// The checkpoint signing key file (default `<db>.signing-key`).
    #[arg(long, env = "SMS_AUDIT_SIGNING_KEY")]
    pub signing_key: Option<std::path::PathBuf>,
    /// Check only the uploads added since the newest checkpoint that a full run
    /// verified, starting from that checkpoint's root (fast on a large ledger;
    /// run a full `verify` now and then).
    #[arg(long)]
    pub since_checkpoint: bool,
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
    let scope = if args.since_checkpoint {
        ledger::Scope::SinceCheckpoint(since_checkpoint(&conn)?)
    } else {
        ledger::Scope::Full
    };
    let started = now_ms();
    let mut reported = 0;
    let open = || {
        let conn = if writable {
            storage::open_read(db)?
        } else {
            storage::open_immutable(db)?
        };
        // Read once, in order: through the page cache, not mapped into memory.
        conn.pragma_update(None, "mmap_size", 0)?;
        Ok(conn)
    };
    let result = ledger::verify(&conn, &open, ledger::Parallelism::all_cores(), scope, |n| {
        if n >= reported + 100_000 {
            reported = n - n % 100_000;
            eprintln!("checked {}", crate::domain::counted(reported, "entry"));
        }
    })
    .map_err(fail)?;
    if writable {
        verifications::record_verification(&conn, &result, started, "cli").map_err(fail)?;
    } else {
        eprintln!("the database is read-only: this run is not recorded in it");
    }
    match &result.first_bad {
        None => report_intact(db, &args, &conn, &result),
        Some(bad) => {
            say!("ledger BROKEN at entry {}: {}", bad.id, bad.problem)?;
            if result.entries > 0 || result.since_checkpoint.is_none() {
                say!(
                    "{} checked before it are intact; last good head {}",
                    crate::domain::counted(result.entries, "entry"),
                    result.head_hash
                )?;
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// An intact ledger: what was checked, and the checkpoints' signatures when a
/// verifier key is at hand (exit 1 when one does not verify).
fn report_intact(
    db: &Path,
    args: &VerifyArgs,
    conn: &rusqlite::Connection,
    result: &Verification,
) -> Result<ExitCode, CliError> {
    match result.since_checkpoint {
        None => say!(
            "ledger intact: {}, head {} (id {})",
            crate::domain::counted(result.entries, "entry"),
            result.head_hash,
            result.head_id
        ),
        Some(size) => say!(
            "ledger intact since the checkpoint of {}: {} checked, head {} (id {})",
            crate::domain::counted(size, "upload"),
            crate::domain::counted(result.entries, "entry"),
            result.head_hash,
            result.head_id
        ),
    }?;
    if result.pruned > 0 {
        say!(
            "{} pruned by retention: their hashes and links are checked, their bodies and result rows are gone",
            crate::domain::counted(result.pruned, "entry")
        )?;
    }
    let has_checkpoints = crate::storage::checkpoints::latest(conn).is_ok_and(|c| c.is_some());
    match verifier_key(db, args, conn) {
        Some(vkey) => match evidence::verify_checkpoint_signatures(conn, &vkey).map_err(fail)? {
            Ok(n) => say!(
                "{}, each signed by {vkey}",
                crate::domain::counted(n as u64, "checkpoint")
            )?,
            Err(failure) => {
                say!("checkpoint signature BROKEN: {failure}")?;
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

/// Where `--since-checkpoint` starts: the newest checkpoint the newest full run
/// recomputed, when that run found the ledger intact.
fn since_checkpoint(conn: &rusqlite::Connection) -> Result<u64, CliError> {
    let run = verifications::last_full_verification(conn).map_err(fail)?;
    match run {
        None => Err(fail(
            "--since-checkpoint: no full verification has been run on this database yet; run `sms-audit verify` first",
        )),
        Some(run) if run.first_bad_id.is_some() => Err(fail(format!(
            "--since-checkpoint: the last full verification found the ledger broken at entry {}; run a full `sms-audit verify`",
            run.first_bad_id.unwrap_or_default()
        ))),
        Some(LastFullRun {
            checkpoint_verified: Some(size),
            ..
        }) => Ok(size),
        Some(_) => Err(fail(
            "--since-checkpoint: the last full verification covered no checkpoint yet (the service makes one every --checkpoint-interval); run a full `sms-audit verify`",
        )),
    }
}
