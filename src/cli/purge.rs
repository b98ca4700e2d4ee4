//! `purge`: retention by hand (what `serve --retention` does every hour).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::{confirm, duration_in, fail, open_existing, CliError, FlagDuration};
use crate::domain::{format_timestamp, now_ms, Timestamp};
use crate::services::retention::{
    self, PurgeReport, PurgeSettings, RetentionSettings, Step, WriteError,
};
use crate::storage::lock::{LockKind, ProcessLock};
use crate::storage::{self, SyncMode};

#[derive(clap::Args, Debug)]
pub struct PurgeArgs {
    /// Purge the raw bodies and result rows of uploads received before this
    /// time (RFC 3339 or a date); their ledger entries stay.
    #[arg(long, value_parser = crate::domain::parse_time_arg)]
    pub before: Timestamp,
    /// Show what would be purged, and purge nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before purging.
    #[arg(long)]
    pub yes: bool,
    /// The longest one step may hold the database's write lock (a running
    /// service's uploads wait at most that long), e.g. 50ms; a bare number is seconds.
    #[arg(long, env = "SMS_AUDIT_PURGE_STEP", value_name = "D",
        default_value_t = FlagDuration(RetentionSettings::DEFAULT_STEP),
        value_parser = duration_in(Duration::from_secs(1), Duration::from_millis(1)..=Duration::from_secs(60)))]
    pub step: FlagDuration,
    /// The older spelling of --step, in milliseconds.
    #[arg(long, env = "SMS_AUDIT_PURGE_STEP_MS", hide = true, conflicts_with = "step",
        value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub step_ms: Option<u64>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(db: &Path, args: PurgeArgs) -> Result<ExitCode, CliError> {
    let read = open_existing(db)?;
    let _purging = ProcessLock::acquire(db, LockKind::Purge).map_err(fail)?;
    let mut settings = PurgeSettings {
        before: args.before,
        actor: super::operator(),
        step: args.step_ms.map_or(args.step.0, Duration::from_millis),
        dry_run: true,
    };
    let nothing = |_: Step| Err(WriteError::DryRun);
    let plan = retention::purge(&read, &nothing, &settings, &now_ms).map_err(fail)?;
    if args.dry_run || plan.plan.uploads == 0 {
        print(&plan, &args)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        print(&plan, &args)?;
        if !confirm("Purge them? [y/N] ")? {
            eprintln!("nothing purged (--yes purges without asking)");
            return Ok(ExitCode::from(2));
        }
    }
    // Each step is a transaction of its own on this connection; SQLite's lock
    // orders them with a running service's commits. A service waiting for the
    // lock sleeps in SQLite's busy handler (up to 100 ms at a time), so after
    // each step the command pauses long enough for it to get in and commit.
    let write = storage::open_write(db, SyncMode::Full).map_err(fail)?;
    let pause = (settings.step * 2).max(Duration::from_millis(100));
    let writes = |step: Step| -> Result<(), WriteError> {
        let immediate = rusqlite::TransactionBehavior::Immediate;
        let tx = rusqlite::Transaction::new_unchecked(&write, immediate)?;
        step(&tx)?;
        tx.commit()?;
        std::thread::sleep(pause);
        Ok(())
    };
    settings.dry_run = false;
    let report = retention::purge(&read, &writes, &settings, &now_ms).map_err(fail)?;
    print(&report, &args)?;
    Ok(ExitCode::SUCCESS)
}

fn print(r: &PurgeReport, args: &PurgeArgs) -> Result<(), CliError> {
    if args.json {
        return say!("{}", serde_json::to_string(r).map_err(fail)?);
    }
    let before = format_timestamp(r.before);
    let p = &r.plan;
    if p.uploads == 0 {
        return say!(
            "nothing to purge before {before}: {} purged before, {} kept while a delivery of theirs is pending",
            crate::domain::counted(p.already_purged, "upload"),
            p.kept_pending
        );
    }
    if r.dry_run {
        return say!(
            "would purge {} received before {before} (ids up to {}): {}, {} of raw bodies; {} kept while a delivery of theirs is pending, {} purged before",
            crate::domain::counted(p.uploads, "upload"),
            r.up_to_id,
            crate::domain::counted(p.result_rows, "result row"),
            crate::domain::counted(p.bytes, "byte"),
            p.kept_pending,
            p.already_purged
        );
    }
    let d = &r.purged;
    say!(
        "purged {} received before {before} (ids up to {}): {}, {} of raw bodies; {} kept while a delivery of theirs is pending; ledger entries kept (admin log entry {})",
        crate::domain::counted(d.uploads, "upload"),
        r.up_to_id,
        crate::domain::counted(d.result_rows, "result row"),
        crate::domain::counted(d.bytes, "byte"),
        p.kept_pending,
        r.log_id.unwrap_or_default()
    )?;
    if r.incremental_vacuum {
        say!(
            "{} free pages handed back to the file system",
            r.freed_pages
        )
    } else {
        say!("the database was created before incremental vacuum: new uploads reuse the freed space, the file does not shrink")
    }
}
