//! `verify`: check the whole ledger.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::{fail, open_existing, output_error, CliError};
use crate::domain::now_ms;
use crate::services::ledger;
use crate::storage::{self, history};

pub fn run(db: &Path) -> Result<ExitCode, CliError> {
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
