//! `replay`: send stored uploads to SMS again, from this process, with a
//! progress bar; `--resume` continues an interrupted one.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use clap::Args;
use rusqlite::Connection;

use super::{confirm, fail, open, open_existing, CliError, UpstreamArgs};
use crate::domain::{DeliveryState, ReplayFilter};
use crate::services::outbox::SendCounts;
use crate::services::replay::{self, DirectReplay, Sending};
use crate::services::upstream::{ReplayTargets, UpstreamAuth};
use crate::storage::lock::{LockKind, ProcessLock};
use crate::storage::replays;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Only this task's uploads (repeatable).
    #[arg(long = "task")]
    pub tasks: Vec<String>,
    /// Uploads received from this time on (RFC 3339 or a date).
    #[arg(long, value_parser = crate::domain::parse_time_arg)]
    pub since: Option<i64>,
    /// Uploads received before this time.
    #[arg(long, value_parser = crate::domain::parse_time_arg)]
    pub until: Option<i64>,
    /// Only uploads whose latest delivery is in this state.
    #[arg(long, default_value = "any", value_parser = ["pending", "failed", "dead", "delivered", "superseded", "any"])]
    pub state: String,
    /// Send every selected upload of each task, in order; by default only each
    /// task's newest selected upload is sent (what SMS keeps), as the web form does.
    #[arg(long)]
    pub every_upload: bool,
    /// The default (each task's newest selected upload), still accepted.
    #[arg(long, hide = true, conflicts_with = "every_upload")]
    pub latest_per_task: bool,
    /// Send to this endpoint instead of the configured one: a region's endpoint,
    /// or a URL also given with --replay-target.
    #[arg(long)]
    pub to: Option<String>,
    /// A URL --to may name besides the upstream and the SDK's regions (repeatable;
    /// HTTPS, or plain HTTP on loopback).
    #[arg(long, env = "SMS_AUDIT_REPLAY_TARGET", value_delimiter = ',')]
    pub replay_target: Vec<String>,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    /// Most uploads sent per second.
    #[arg(long)]
    pub rate: Option<std::num::NonZeroU32>,
    /// Uploads sent at the same time (each task's in order).
    #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub concurrency: usize,
    /// Show how many uploads of which tasks would be sent, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before sending.
    #[arg(long)]
    pub yes: bool,
    /// When the replay ends, read its tasks back from SMS and print the verdicts
    /// (docs/reconciliation.md): proof that SMS now holds what the agents sent.
    /// The exit code is then the reconciliation's (when every upload was delivered).
    #[arg(long, conflicts_with = "dry_run")]
    pub reconcile: bool,
    #[command(flatten)]
    pub key: super::reconcile::SigningKeyArgs,
    /// Continue the last interrupted replay (what was delivered is not sent again).
    #[arg(long, conflicts_with_all = ["tasks", "since", "until", "every_upload", "latest_per_task", "dry_run"])]
    pub resume: bool,
}

/// What a dry run without an upstream says it would send to.
const NO_UPSTREAM: &str = "the upstream (none configured yet: a real replay needs --upstream-endpoint or --upstream-region)";

/// Where this replay may send: the configured upstream, the SDK's regions and
/// `--replay-target`.
fn allowed_targets(args: &ReplayArgs) -> Result<ReplayTargets, CliError> {
    let upstream = args
        .upstream
        .configured()
        .then(|| args.upstream.endpoint())
        .transpose()?;
    ReplayTargets::new(upstream.as_deref(), &args.replay_target).map_err(fail)
}

pub async fn run(db: &Path, args: ReplayArgs) -> Result<ExitCode, CliError> {
    let conn = open_existing(db)?;
    // Two replays sending from one database would send twice.
    let _lock = (!args.dry_run)
        .then(|| ProcessLock::acquire(db, LockKind::Replay))
        .transpose()
        .map_err(fail)?;
    let (replay_id, target, auth) = if args.resume {
        let (id, target) = replays::resumable(&conn)
            .map_err(fail)?
            .ok_or_else(|| fail("no interrupted replay to resume"))?;
        (id, target, args.upstream.auth()?)
    } else {
        match create(&conn, &args)? {
            Created::Replay(id, target, auth) => (id, target, auth),
            Created::Nothing(code) => return Ok(code),
        }
    };
    let total = replays::states(&conn, replay_id)
        .map_err(fail)?
        .get(DeliveryState::Pending);
    say!(
        "replay {replay_id}: sending {} to {target}",
        crate::domain::counted(total, "upload")
    )?;
    // A resumed replay's target comes from the database: checked like a new one.
    let targets = allowed_targets(&args)?;
    targets.check(&target).map_err(fail)?;
    let replay = DirectReplay {
        replay_id,
        targets,
        auth,
        timeout: args.upstream.upstream_timeout.0,
        concurrency: args.concurrency,
        rate: args.rate,
    };
    let auth = replay.auth.clone();
    let sending = replay.start(db, conn);
    let counts = sending.counts.clone();
    let interrupted = watch(sending, total as u64).await?;
    let code = report(db, replay_id, &counts, interrupted)?;
    if !args.reconcile || interrupted.is_some() || code != ExitCode::SUCCESS {
        return Ok(code);
    }
    reconcile_replayed(db, &args, replay_id, &target, auth).await
}

/// `--reconcile`: a reconciliation of the replay's tasks against its target.
async fn reconcile_replayed(
    db: &Path,
    args: &ReplayArgs,
    replay_id: i64,
    target: &str,
    auth: UpstreamAuth,
) -> Result<ExitCode, CliError> {
    use crate::services::reconcile::Settings;
    use crate::storage::reconciliation::{self as store, Scope};
    let conn = open_existing(db)?;
    let scope = Scope {
        tasks: replays::tasks_of(&conn, replay_id).map_err(fail)?,
        since: None,
    };
    let run = store::start_run(&conn, target, &scope, crate::domain::now_ms()).map_err(fail)?;
    let reading = super::reconcile::Reading {
        upstream: crate::services::upstream::Upstream::new(
            target.to_string(),
            auth,
            args.upstream.upstream_timeout.0,
        ),
        settings: Settings {
            rate: args.rate.unwrap_or(Settings::DEFAULT_RATE),
            ..Settings::default()
        },
        json: false,
    };
    super::reconcile::go(conn, run, args.key.load(db)?, reading).await
}

/// What choosing a new replay came to.
enum Created {
    Replay(i64, String, UpstreamAuth),
    /// A dry run, nothing selected, or the question answered no.
    Nothing(ExitCode),
}

/// Selects what the flags ask for, says what would be sent, asks, and creates
/// the replay.
fn create(conn: &Connection, args: &ReplayArgs) -> Result<Created, CliError> {
    let target = match &args.to {
        Some(url) => allowed_targets(args)?.check(url).map_err(fail)?,
        // A dry run sends nothing, so it needs no upstream.
        None if args.dry_run && !args.upstream.configured() => NO_UPSTREAM.to_string(),
        None => args.upstream.endpoint()?,
    };
    let filter = ReplayFilter::new(
        &args.tasks,
        args.since,
        args.until,
        Some(&args.state),
        !args.every_upload,
    )
    .map_err(fail)?;
    let selection = replays::select(conn, &filter).map_err(fail)?;
    describe(&selection, &filter, &target)?;
    if args.dry_run {
        say!("dry run: nothing sent")?;
        return Ok(Created::Nothing(ExitCode::SUCCESS));
    }
    if selection.uploads.is_empty() {
        return Ok(Created::Nothing(ExitCode::SUCCESS));
    }
    // Before asking or storing anything: a replay that cannot be sent is no use.
    let auth = args.upstream.auth()?;
    if !args.yes && !confirm("Send them? [y/N] ")? {
        // As `purge`: a question not answered yes is a usage matter (exit 2).
        eprintln!("nothing sent (--yes sends without asking)");
        return Ok(Created::Nothing(ExitCode::from(2)));
    }
    let id = replay::create_direct(conn, &selection, &filter, &target).map_err(fail)?;
    Ok(Created::Replay(id, target, auth))
}

/// How many uploads of which tasks would be sent.
fn describe(
    selection: &replays::Selection,
    filter: &ReplayFilter,
    target: &str,
) -> Result<(), CliError> {
    say!(
        "{} of {} would be sent to {target}",
        crate::domain::counted(selection.uploads.len() as u64, "upload"),
        crate::domain::counted(selection.per_task.len() as u64, "task")
    )?;
    for task in &filter.tasks {
        if !selection.per_task.contains_key(task.as_str()) {
            eprintln!("warning: task {task} has no uploads that match");
        }
    }
    for (task, n) in selection.per_task.iter().take(20) {
        say!("  {task}: {n}")?;
    }
    if selection.per_task.len() > 20 {
        say!("  … and {} more tasks", selection.per_task.len() - 20)?;
    }
    Ok(())
}

/// Shows progress until the replay ends. SIGINT and SIGTERM both end it the same
/// way: the sends in flight finish and are recorded; the exit code (130 or 143)
/// is returned.
async fn watch(mut sending: Sending, total: u64) -> Result<Option<u8>, CliError> {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} {per_sec}")
            .map_err(fail)?,
    );
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(fail)?;
    let mut interrupted: Option<u8> = None;
    let counts = sending.counts.clone();
    loop {
        tokio::select! {
            _ = &mut sending.done => break,
            _ = tokio::signal::ctrl_c(), if interrupted.is_none() => {
                interrupted = Some(130);
                sending.stop.store(true, SeqCst);
                bar.println("interrupted: letting the uploads in flight finish…");
            }
            _ = terminate.recv(), if interrupted.is_none() => {
                interrupted = Some(143);
                sending.stop.store(true, SeqCst);
                bar.println("terminated: letting the uploads in flight finish…");
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                let (ok, failed) = (counts.delivered.load(Relaxed), counts.failed.load(Relaxed));
                bar.set_position(ok + failed);
                bar.set_message(format!("sent {} · ok {ok} · failed {failed} · retrying {}", counts.sent.load(Relaxed), counts.retrying.load(Relaxed)));
            }
        }
    }
    bar.finish_and_clear();
    Ok(interrupted)
}

/// The summary, and the exit code: 0 when all was delivered, 1 when some was
/// not (or is left to `--resume`).
fn report(
    db: &Path,
    replay_id: i64,
    counts: &SendCounts,
    interrupted: Option<u8>,
) -> Result<ExitCode, CliError> {
    let states = replay::conclude(&open(db)?, replay_id).map_err(fail)?;
    let count = |state| states.get(state);
    say!(
        "replay {replay_id}: {} delivered, {} failed, {} dead, {} pending ({} this run)",
        count(DeliveryState::Delivered),
        count(DeliveryState::Failed),
        count(DeliveryState::Dead),
        count(DeliveryState::Pending),
        crate::domain::counted(counts.sent.load(Relaxed), "attempt")
    )?;
    if count(DeliveryState::Pending) > 0 {
        say!(
            "continue with: sms-audit --db {} replay --resume",
            db.display()
        )?;
    }
    let undelivered =
        count(DeliveryState::Failed) + count(DeliveryState::Dead) + count(DeliveryState::Pending);
    Ok(match interrupted {
        Some(code) => ExitCode::from(code),
        None if undelivered > 0 => ExitCode::from(1),
        None => ExitCode::SUCCESS,
    })
}
