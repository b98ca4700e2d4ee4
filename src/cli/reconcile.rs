//! `reconcile`: read tasks' results back from SMS and match them with the
//! ledger; print each task that does not match and the run's counts.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::{fail, open_existing, CliError, FlagDuration, UpstreamArgs};
use crate::domain::reconcile::{SmsRound, Verdict};
use crate::domain::{counted, TaskId};
use crate::services::checkpoints::{default_origin, load_or_create_key};
use crate::services::reconcile::{self, Ended, Reconciler, RunStorage, Settings};
use crate::services::upstream::Upstream;
use crate::storage::reconciliation::{self as store, Run, Scope, TaskOutcome};

/// The log's key, which signs a reconciliation's summary.
#[derive(Args, Debug, Clone)]
pub struct SigningKeyArgs {
    /// The log's name, in the signed summary (as `serve --log-origin`).
    #[arg(long, env = "SMS_AUDIT_LOG_ORIGIN", global = true)]
    pub log_origin: Option<String>,
    /// The key that signs the summary: the log's (as `serve --signing-key`;
    /// default `<db>.signing-key`).
    #[arg(long, env = "SMS_AUDIT_SIGNING_KEY", global = true)]
    pub signing_key: Option<PathBuf>,
}

impl SigningKeyArgs {
    /// The log's key, as `serve` finds it.
    pub fn load(&self, db: &Path) -> Result<crate::domain::checkpoint::CheckpointKey, CliError> {
        let key_path = self
            .signing_key
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.signing-key", db.display())));
        let origin = self.log_origin.clone().unwrap_or_else(default_origin);
        load_or_create_key(&key_path, &origin).map_err(fail)
    }
}

/// How to read SMS and what to print.
pub struct Reading {
    /// SMS.
    pub upstream: Upstream,
    /// Pace and patience.
    pub settings: Settings,
    /// One JSON object instead of lines.
    pub json: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum ReconcileCommand {
    /// Write a finished run to FILE (JSON): its summary signed by the log's key,
    /// the log's verifier key, and every task's outcome with SMS's answer, for
    /// `evidence verify` (or contrib/verify_evidence.py) to check offline.
    Export {
        /// The run (`reconcile --json` and /api/v1/reconciliation give its id).
        #[arg(long)]
        run: i64,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
#[command(subcommand_negates_reqs = true)]
pub struct ReconcileArgs {
    #[command(subcommand)]
    pub command: Option<ReconcileCommand>,
    /// Only this task (repeatable); by default every task with an upload here.
    #[arg(long = "task")]
    pub tasks: Vec<String>,
    /// Only uploads received, and SMS rounds finished, from this time on (RFC
    /// 3339 or a date); tasks without an upload since are not read.
    #[arg(long, value_parser = crate::domain::parse_time_arg)]
    pub since: Option<i64>,
    /// Go on with the last run SMS stopped (what was checked is not read again).
    #[arg(long, conflicts_with_all = ["tasks", "since"])]
    pub resume: bool,
    /// Most tasks read from SMS per second.
    #[arg(long, default_value_t = Settings::DEFAULT_RATE)]
    pub rate: NonZeroU32,
    /// How far SMS's finished_time may lie from the delivery of an upload that
    /// carries no finished_time of its own (clocks differ).
    #[arg(long, value_name = "D", default_value_t = FlagDuration(Settings::DEFAULT_TOLERANCE),
        value_parser = super::duration_in(std::time::Duration::from_secs(1), std::time::Duration::ZERO..=std::time::Duration::from_secs(86_400)))]
    pub tolerance: FlagDuration,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub key: SigningKeyArgs,
    /// One JSON object on standard output: the run, its counts and every task's
    /// outcome.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(db: &Path, args: ReconcileArgs) -> Result<ExitCode, CliError> {
    let conn = open_existing(db)?;
    if let Some(ReconcileCommand::Export { run, out }) = &args.command {
        let key = args.key.load(db)?;
        let export = reconcile::export(&conn, *run, &key.verifier_key()).map_err(fail)?;
        let json = serde_json::to_vec_pretty(&export).map_err(fail)?;
        crate::storage::files::replace(out, &json)
            .map_err(|e| fail(format!("{}: {e}", out.display())))?;
        say!(
            "wrote reconciliation {run} ({}) to {}",
            counted(export.tasks.len() as u64, "task"),
            out.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    for task in &args.tasks {
        TaskId::parse(task).map_err(fail)?;
    }
    let endpoint = args.upstream.endpoint()?;
    let key = args.key.load(db)?;
    let run = if args.resume {
        let run = store::resumable(&conn)
            .map_err(fail)?
            .ok_or_else(|| fail("no stopped reconciliation to resume"))?;
        if run.target != endpoint {
            return Err(fail(format!(
                "run {} read {}; resume it against the same endpoint (not {endpoint})",
                run.id, run.target
            )));
        }
        store::mark_running(&conn, run.id).map_err(fail)?;
        run
    } else {
        let scope = Scope {
            tasks: args.tasks.clone(),
            since: args.since,
        };
        store::start_run(&conn, &endpoint, &scope, crate::domain::now_ms()).map_err(fail)?
    };
    let reading = Reading {
        upstream: Upstream::new(
            endpoint,
            args.upstream.auth()?,
            args.upstream.upstream_timeout.0,
        ),
        settings: Settings {
            rate: args.rate,
            tolerance: args.tolerance.0,
            ..Settings::default()
        },
        json: args.json,
    };
    go(conn, run, key, reading).await
}

/// Runs `run` (new or resumed), printing each task that does not match and the
/// counts; the exit code says what was found.
pub async fn go(
    conn: rusqlite::Connection,
    run: Run,
    key: crate::domain::checkpoint::CheckpointKey,
    reading: Reading,
) -> Result<ExitCode, CliError> {
    let json = reading.json;
    if !json {
        say!(
            "reconciliation {}: reading SMS at {}",
            run.id,
            reading.upstream.endpoint
        )?;
    }
    let conn = std::sync::Mutex::new(conn);
    let reconciler = Reconciler {
        storage: RunStorage::Connection(&conn),
        upstream: reading.upstream,
        settings: reading.settings,
        key,
    };
    let mut printed = Ok(());
    let ended = reconciler
        .go(&run, &interrupted(), |outcome| {
            if !json && outcome.verdict != Verdict::Match && printed.is_ok() {
                printed = print_outcome(outcome);
            }
        })
        .await
        .map_err(fail)?;
    printed?;
    let conn = conn.into_inner().unwrap_or_else(|e| e.into_inner());
    report(&conn, &run, &ended, json)
}

/// Cancelled by Ctrl-C or SIGTERM: the run stops as partial, to be resumed.
fn interrupted() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    actix_web::rt::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        cancel.cancel();
    });
    token
}

/// One task that does not match, with what SMS holds and what is missing.
fn print_outcome(o: &TaskOutcome) -> Result<(), CliError> {
    say!("{:<14} {}", o.verdict.as_str(), o.task_id)?;
    if let Some(reason) = &o.reason {
        say!("    {reason}")?;
    }
    let rounds = o
        .answer
        .as_deref()
        .and_then(|a| crate::domain::reconcile::parse_answer(a).ok())
        .unwrap_or_default();
    let round = |i: usize| rounds.get(i).map(show_round).unwrap_or_default();
    for &i in &o.findings.foreign {
        say!("    SMS holds, no upload here matches: {}", round(i))?;
    }
    for &(i, upload) in &o.findings.differs {
        say!("    SMS holds {}, upload {upload} differs", round(i))?;
    }
    for upload in &o.findings.missing_in_sms {
        say!("    upload {upload} was delivered; SMS does not hold it")?;
    }
    Ok(())
}

fn show_round(r: &SmsRound) -> String {
    let dirs: Vec<String> = r
        .dirs
        .iter()
        .map(|d| {
            let [t, diff, miss, more] = d.counts;
            format!("{} {t}/{diff}/{miss}/{more}", d.dir_check)
        })
        .collect();
    format!(
        "finished {}, check_result {}, {}",
        reconcile::show_finished_time(r.finished_time),
        r.check_result.as_deref().unwrap_or("-"),
        if dirs.is_empty() {
            "no directories".into()
        } else {
            dirs.join(", ")
        }
    )
}

/// The counts, and the exit code: 1 when a task does not match, 3 when SMS
/// stopped the run or a task could not be checked, 0 when all match.
fn report(
    conn: &rusqlite::Connection,
    run: &Run,
    ended: &Ended,
    json: bool,
) -> Result<ExitCode, CliError> {
    let counts = store::verdict_counts(conn, run.id).map_err(fail)?;
    let count = |v: Verdict| counts.iter().find(|(c, _)| *c == v).map_or(0, |(_, n)| *n);
    let tasks: u64 = counts.iter().map(|(_, n)| n).sum();
    let stored = store::run(conn, run.id).map_err(fail)?.expect("the run");
    if json {
        let outcomes = store::outcomes(conn, run.id, None, "", u32::MAX).map_err(fail)?;
        let value = serde_json::json!({
            "run": run.id,
            "state": stored.state.to_string(),
            "stopped_by": stored.stopped_by,
            "target": run.target,
            "ledger_size": run.ledger_size,
            "counts": counts.iter().map(|(v, n)| (v.as_str(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
            "summary_note": stored.summary_note,
            "tasks": outcomes.iter().map(|o| serde_json::json!({
                "task_id": o.task_id,
                "verdict": o.verdict.as_str(),
                "reason": o.reason,
                "http_status": o.http_status,
                "answer_sha256": o.answer_sha256,
                "findings": o.findings,
            })).collect::<Vec<_>>(),
        });
        say!("{value}")?;
    } else {
        let shown: Vec<String> = counts.iter().map(|(v, n)| format!("{n} {v}")).collect();
        match ended {
            Ended::Finished => say!(
                "reconciliation {} finished: {}: {}",
                run.id,
                counted(tasks, "task"),
                shown.join(", ")
            )?,
            Ended::Partial(why) => say!(
                "reconciliation {} is partial ({why}): {} so far: {}; `sms-audit reconcile --resume` goes on",
                run.id,
                counted(tasks, "task"),
                shown.join(", ")
            )?,
        }
    }
    let discrepant = [Verdict::MissingInSms, Verdict::Foreign, Verdict::Differs]
        .into_iter()
        .any(|v| count(v) > 0);
    Ok(if discrepant {
        ExitCode::from(1)
    } else if *ended != Ended::Finished || count(Verdict::NotChecked) > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
