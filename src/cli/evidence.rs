//! `evidence export` and `evidence verify`: a task's history as a bundle an auditor
//! checks offline, and that check.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::{fail, open_existing, CliError};
use crate::domain::checkpoint::CheckpointKey;
use crate::domain::{check_range, TaskId, Timestamp};
use crate::services::evidence::{self, Bundle};
use crate::storage::checkpoints;

#[derive(Subcommand, Debug)]
pub enum EvidenceCommand {
    /// Write a task's uploads (ledger fields, raw bodies, inclusion proofs) and the
    /// latest signed checkpoint to FILE as one JSON document.
    Export {
        /// The task whose uploads the bundle holds.
        #[arg(long = "task", value_parser = |s: &str| TaskId::parse(s))]
        task: TaskId,
        /// Uploads received at or after this time (RFC 3339 or a date).
        #[arg(long, value_parser = crate::domain::parse_time_arg)]
        since: Option<Timestamp>,
        /// Uploads received before this time.
        #[arg(long, value_parser = crate::domain::parse_time_arg)]
        until: Option<Timestamp>,
        /// The bundle file to write (JSON).
        #[arg(long)]
        out: PathBuf,
        /// The checkpoint signing key, for the bundle's verifier key (default
        /// `<db>.signing-key`).
        #[arg(long, env = "SMS_AUDIT_SIGNING_KEY")]
        signing_key: Option<PathBuf>,
    },
    /// Check a bundle offline: the checkpoint's signature, every body hash, entry
    /// hash and inclusion proof. Exit 0 when intact, 1 naming the first failure.
    Verify {
        /// The bundle to check.
        file: PathBuf,
        /// The log's verifier key to check against (default: the bundle's own,
        /// which proves only that the bundle is consistent with itself).
        #[arg(long, value_parser = crate::domain::checkpoint::parse_verifier_key)]
        vkey: Option<String>,
    },
}

pub fn run(db: &Path, cmd: EvidenceCommand) -> Result<ExitCode, CliError> {
    match cmd {
        EvidenceCommand::Export {
            task,
            since,
            until,
            out,
            signing_key,
        } => {
            check_range(since, until).map_err(fail)?;
            let conn = open_existing(db)?;
            let latest = checkpoints::latest(&conn).map_err(fail)?.ok_or_else(|| {
                fail("no checkpoint yet: start the service (it makes one within --checkpoint-interval of an upload, and when it stops)")
            })?;
            let origin = latest.note.lines().next().unwrap_or_default().to_string();
            let key_path = signing_key
                .unwrap_or_else(|| PathBuf::from(format!("{}.signing-key", db.display())));
            let key_text = std::fs::read_to_string(&key_path)
                .map_err(|e| fail(format!("signing key {}: {e}", key_path.display())))?;
            let vkey = CheckpointKey::parse(&key_text, &origin)
                .map_err(|e| fail(format!("signing key {}: {e}", key_path.display())))?
                .verifier_key();
            let (bundle, newer) =
                evidence::bundle(&conn, task.as_str(), since, until, vkey, None).map_err(fail)?;
            if bundle.entries.is_empty() {
                // An empty bundle proves nothing; written, it would pass for evidence.
                return Err(fail(format!(
                    "task {task} has no upload in a checkpoint{}: nothing to export, no file written{}",
                    if since.is_some() || until.is_some() { " in that time range" } else { "" },
                    if newer > 0 {
                        format!(" ({} not in a checkpoint yet: the service makes one within --checkpoint-interval)", crate::domain::counted(newer, "newer upload"))
                    } else {
                        String::new()
                    }
                )));
            }
            let json = serde_json::to_vec_pretty(&bundle).map_err(fail)?;
            crate::storage::files::replace(&out, &json)
                .map_err(|e| fail(format!("{}: {e}", out.display())))?;
            say!(
                "wrote {} of task {task} to {}, with the checkpoint of {}{}",
                crate::domain::counted(bundle.entries.len() as u64, "entry"),
                out.display(),
                crate::domain::counted(latest.tree_size, "upload"),
                if newer > 0 {
                    format!(
                        "; {} of the task {} not in a checkpoint yet",
                        crate::domain::counted(newer, "newer upload"),
                        if newer == 1 { "is" } else { "are" }
                    )
                } else {
                    String::new()
                }
            )?;
            Ok(ExitCode::SUCCESS)
        }
        EvidenceCommand::Verify { file, vkey } => {
            let text =
                std::fs::read(&file).map_err(|e| fail(format!("{}: {e}", file.display())))?;
            let bundle: Bundle = serde_json::from_slice(&text)
                .map_err(|e| fail(format!("{}: not an evidence bundle: {e}", file.display())))?;
            match evidence::verify_bundle(&bundle, vkey.as_deref()) {
                Ok(summary) => {
                    say!("{summary}")?;
                    if vkey.is_none() {
                        eprintln!("checked against the bundle's own key; pass --vkey with the log's key to pin it");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(failure) => {
                    say!("evidence BROKEN: {failure}")?;
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
