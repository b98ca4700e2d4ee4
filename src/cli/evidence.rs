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
    /// Check a bundle, or an upload's tlog-proof, offline: the checkpoint's
    /// signature (and with --witness or --policy, its cosignatures against the
    /// quorum), every body hash, entry hash and inclusion proof; or an exported
    /// reconciliation: its signed summary against SMS's answers. Exit 0 when
    /// intact, 1 naming the first failure.
    Verify {
        /// The bundle or exported reconciliation (JSON), or tlog-proof (text), to check.
        file: PathBuf,
        /// The log's verifier key to check against (default: the bundle's own,
        /// which proves only that the bundle is consistent with itself).
        #[arg(long, value_parser = crate::domain::checkpoint::parse_verifier_key)]
        vkey: Option<String>,
        /// A witness's cosignature/v1 verifier key (repeatable): its cosignature
        /// counts toward --quorum.
        #[arg(long = "witness", value_name = "VKEY", conflicts_with = "policy")]
        witnesses: Vec<String>,
        /// How many of the --witness keys must have cosigned (default: all).
        #[arg(long, requires = "witnesses", value_parser = clap::value_parser!(u32).range(1..))]
        quorum: Option<u32>,
        /// A C2SP tlog-policy file: the logs accepted, the witnesses known and the
        /// quorum their cosignatures must meet.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Write upload ID's C2SP tlog-proof to FILE: its index, inclusion proof and
    /// the latest checkpoint with its cosignatures (the entry hash as the extra
    /// data, tying it to the raw body), for an auditor to keep.
    Proof {
        /// The upload.
        #[arg(long = "upload")]
        upload: i64,
        /// The proof file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Accept that the database is not the history the signing key signed last
    /// (a restore from an older backup, or another database): the service signs
    /// again, and the next checkpoint records the fork in an extension line.
    /// Recorded in the admin log with both heads and the reason.
    AcceptFork {
        /// Why (recorded in the admin log and the next checkpoint).
        #[arg(long)]
        reason: String,
        /// The checkpoint signing key (default `<db>.signing-key`).
        #[arg(long, env = "SMS_AUDIT_SIGNING_KEY")]
        signing_key: Option<PathBuf>,
    },
    /// Print the log's verifier key from the signing key file (no service needed).
    Vkey {
        /// The checkpoint signing key (default `<db>.signing-key`).
        #[arg(long, env = "SMS_AUDIT_SIGNING_KEY")]
        signing_key: Option<PathBuf>,
        /// The log's origin (default: the first line of the latest checkpoint, else
        /// `sms-audit/<hostname>`, as `serve` uses it).
        #[arg(long, env = "SMS_AUDIT_LOG_ORIGIN")]
        log_origin: Option<String>,
    },
}

fn key_path(db: &Path, given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| PathBuf::from(format!("{}.signing-key", db.display())))
}

/// `evidence accept-fork`.
fn accept_fork(
    db: &Path,
    reason: &str,
    signing_key: Option<PathBuf>,
) -> Result<ExitCode, CliError> {
    use crate::services::fork;
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    if reason.trim().is_empty() {
        return Err(fail("--reason: say why the fork is accepted"));
    }
    let key = key_path(db, signing_key);
    let conn = open_existing(db)?;
    let Some(signed) = fork::read_head(&key).map_err(fail)? else {
        return Err(fail(format!(
            "{}: no signed head recorded for this key: there is no fork to accept",
            fork::head_path(&key).display()
        )));
    };
    let Some(why) = fork::fork_in(&conn, signed).map_err(fail)? else {
        say!("no fork: the database extends the tree this key signed last ({signed}); nothing changed")?;
        return Ok(ExitCode::SUCCESS);
    };
    let size = crate::storage::tree::size(&conn).map_err(fail)?;
    let root = crate::storage::tree::root(&conn, size).map_err(fail)?;
    let now = fork::SignedHead { size, root };
    let detail = format!("signed {signed}; database {now}; reason: {}", reason.trim());
    super::record_admin_action(
        db,
        crate::domain::now_ms(),
        fork::ACCEPT_FORK,
        &detail,
        "done",
    );
    fork::write_head(&key, now)
        .map_err(|e| fail(format!("{}: {e}", fork::head_path(&key).display())))?;
    say!("fork accepted: {why}")?;
    say!(
        "the service signs again from {now}; the next checkpoint records: accepted-fork {detail}"
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `evidence vkey`.
fn vkey(
    db: &Path,
    signing_key: Option<PathBuf>,
    log_origin: Option<String>,
) -> Result<ExitCode, CliError> {
    let key = key_path(db, signing_key);
    let origin = match log_origin {
        Some(origin) => origin,
        None => db
            .exists()
            .then(|| crate::storage::open_read(db).ok())
            .flatten()
            .and_then(|conn| checkpoints::latest(&conn).ok().flatten())
            .and_then(|c| c.note.lines().next().map(str::to_string))
            .unwrap_or_else(crate::services::checkpoints::default_origin),
    };
    let text = std::fs::read_to_string(&key)
        .map_err(|e| fail(format!("signing key {}: {e}", key.display())))?;
    let parsed = CheckpointKey::parse(&text, &origin)
        .map_err(|e| fail(format!("signing key {}: {e}", key.display())))?;
    say!("{}", parsed.verifier_key())?;
    Ok(ExitCode::SUCCESS)
}

pub fn run(db: &Path, cmd: EvidenceCommand) -> Result<ExitCode, CliError> {
    match cmd {
        EvidenceCommand::AcceptFork {
            reason,
            signing_key,
        } => accept_fork(db, &reason, signing_key),
        EvidenceCommand::Vkey {
            signing_key,
            log_origin,
        } => vkey(db, signing_key, log_origin),
        EvidenceCommand::Export {
            task,
            since,
            until,
            out,
            signing_key,
        } => export(db, task, since, until, &out, signing_key),
        EvidenceCommand::Verify {
            file,
            vkey,
            witnesses,
            quorum,
            policy,
        } => verify(&file, vkey.as_deref(), witnesses, quorum, policy),
        EvidenceCommand::Proof { upload, out } => {
            let conn = open_existing(db)?;
            let proof = crate::services::tlog_proof::for_upload(&conn, upload).map_err(fail)?;
            crate::storage::files::replace(&out, proof.to_text().as_bytes())
                .map_err(|e| fail(format!("{}: {e}", out.display())))?;
            say!(
                "wrote the tlog-proof of upload {upload} to {}",
                out.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `evidence verify`: a bundle or a tlog-proof, with a policy if given.
fn verify(
    file: &Path,
    vkey: Option<&str>,
    witnesses: Vec<String>,
    quorum: Option<u32>,
    policy: Option<PathBuf>,
) -> Result<ExitCode, CliError> {
    use crate::domain::policy::Policy;
    let policy = match (policy, witnesses.is_empty()) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            Some(Policy::parse(&text).map_err(|e| fail(format!("{}: {e}", path.display())))?)
        }
        (None, false) => {
            let k = quorum.map_or(witnesses.len(), |q| q as usize);
            if k > witnesses.len() {
                return Err(fail(format!(
                    "--quorum {k} is more than the {} --witness given",
                    witnesses.len()
                )));
            }
            Some(
                Policy::k_of(&witnesses, k)
                    .map_err(|e| fail(e.replace("policy line", "--witness")))?,
            )
        }
        (None, true) => None,
    };
    let text = std::fs::read(file).map_err(|e| fail(format!("{}: {e}", file.display())))?;
    let checked = if text.starts_with(crate::domain::tlog_proof::HEADER.as_bytes()) {
        let text =
            String::from_utf8(text).map_err(|_| fail(format!("{}: not UTF-8", file.display())))?;
        crate::services::tlog_proof::verify(&text, vkey, policy.as_ref()).map_err(|e| e.to_string())
    } else if let Ok(export) = serde_json::from_slice::<crate::services::reconcile::Export>(&text)
        .map_err(drop)
        .and_then(|e| {
            (e.format == crate::services::reconcile::EXPORT_FORMAT)
                .then_some(e)
                .ok_or(())
        })
    {
        crate::services::reconcile::verify_export(&export, vkey)
    } else {
        let bundle: Bundle = serde_json::from_slice(&text).map_err(|e| {
            fail(format!(
                "{}: not an evidence bundle or a tlog-proof: {e}",
                file.display()
            ))
        })?;
        evidence::verify_bundle_with(&bundle, vkey, policy.as_ref()).map_err(|e| e.to_string())
    };
    match checked {
        Ok(summary) => {
            say!("{summary}")?;
            if vkey.is_none() && policy.as_ref().is_none_or(|p| p.logs.is_empty()) {
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

/// `evidence export`.
fn export(
    db: &Path,
    task: TaskId,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    out: &Path,
    signing_key: Option<PathBuf>,
) -> Result<ExitCode, CliError> {
    check_range(since, until).map_err(fail)?;
    let conn = open_existing(db)?;
    let latest = checkpoints::latest(&conn).map_err(fail)?.ok_or_else(|| {
        fail("no checkpoint yet: start the service (it makes one within --checkpoint-interval of an upload, and when it stops)")
    })?;
    let origin = latest.note.lines().next().unwrap_or_default().to_string();
    let key_path =
        signing_key.unwrap_or_else(|| PathBuf::from(format!("{}.signing-key", db.display())));
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
            if since.is_some() || until.is_some() {
                " in that time range"
            } else {
                ""
            },
            if newer > 0 {
                format!(" ({} not in a checkpoint yet: the service makes one within --checkpoint-interval)", crate::domain::counted(newer, "newer upload"))
            } else {
                String::new()
            }
        )));
    }
    let json = serde_json::to_vec_pretty(&bundle).map_err(fail)?;
    crate::storage::files::replace(out, &json)
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
