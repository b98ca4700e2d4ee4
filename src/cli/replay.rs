//! `replay`: send stored uploads to SMS again, from this process, with a
//! progress bar; `--resume` continues an interrupted one.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;

use parking_lot::Mutex;

use clap::Args;

use super::{confirm, fail, open, open_existing, CliError, UpstreamArgs};
use crate::domain::{DeliveryState, ReplayFilter, ReplayRunner, Runner};
use crate::services::outbox::{DirectRecorder, RetryPolicy, Sender, SenderConfig, Tally};
use crate::services::upstream::{self, ReplayTargets};
use crate::storage::lock::{LockKind, ProcessLock};
use crate::storage::{self, replays};

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
    /// Only the newest selected upload of each task (what SMS keeps).
    #[arg(long)]
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
    /// Continue the last interrupted replay (what was delivered is not sent again).
    #[arg(long, conflicts_with_all = ["tasks", "since", "until", "latest_per_task", "dry_run"])]
    pub resume: bool,
}

/// What a dry run without an upstream says it would send to.
const NO_UPSTREAM: &str = "the upstream (none configured yet: a real replay needs --upstream-endpoint or --upstream-region)";

/// `1 upload`, `2 uploads`.
fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

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
        let target = match &args.to {
            Some(url) => allowed_targets(&args)?.check(url).map_err(fail)?,
            // A dry run sends nothing, so it needs no upstream.
            None if args.dry_run && !args.upstream.configured() => NO_UPSTREAM.to_string(),
            None => args.upstream.endpoint()?,
        };
        let filter = ReplayFilter::new(
            &args.tasks,
            args.since,
            args.until,
            Some(&args.state),
            args.latest_per_task,
        )
        .map_err(fail)?;
        let selection = replays::select(&conn, &filter).map_err(fail)?;
        say!(
            "{} of {} would be sent to {target}",
            counted(selection.uploads.len(), "upload"),
            counted(selection.per_task.len(), "task")
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
        if args.dry_run {
            say!("dry run: nothing sent")?;
            return Ok(ExitCode::SUCCESS);
        }
        if selection.uploads.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        // Before asking or storing anything: a replay that cannot be sent is no use.
        let auth = args.upstream.auth()?;
        if !args.yes && !confirm("Send them? [y/N] ")? {
            say!("nothing sent")?;
            return Ok(ExitCode::from(1));
        }
        let id = replays::create(
            &conn,
            &selection,
            &filter,
            &target,
            ReplayRunner::Cli,
            "cli",
        )
        .map_err(fail)?;
        (id, target, auth)
    };
    let timeout = std::time::Duration::from_secs(args.upstream.upstream_timeout.max(1));
    let total = replays::states(&conn, replay_id)
        .map_err(fail)?
        .get(DeliveryState::Pending);
    say!(
        "replay {replay_id}: sending {} to {target}",
        counted(total as usize, "upload")
    )?;

    // A resumed replay's target comes from the database: checked like a new one.
    let targets = allowed_targets(&args)?;
    targets.check(&target).map_err(fail)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tally: Arc<Tally> = Arc::default();
    let sender = Sender {
        reads: storage::ReadPool::new(db),
        recorder: Arc::new(DirectRecorder(Arc::new(Mutex::new(conn)))),
        upstream: Arc::new(move |target: &str| {
            let allowed = targets.check(target)?;
            Ok(upstream::Upstream::new(allowed, auth.clone(), timeout))
        }),
        config: SenderConfig {
            runner: Runner::Replay(replay_id),
            concurrency: args.concurrency.max(1),
            deliver_all: true,
            // A replay runs while someone watches: retry briefly, then report.
            policy: RetryPolicy {
                first: std::time::Duration::from_secs(1),
                cap: std::time::Duration::from_secs(30),
                max_age: std::time::Duration::from_secs(600),
            },
            rate: args.rate,
        },
        wake: Arc::default(),
        stop: stop.clone(),
        tally: tally.clone(),
    };
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} {per_sec}")
            .map_err(fail)?,
    );
    let mut run = tokio::spawn(sender.run(true));
    // SIGINT and SIGTERM both end the replay the same way: the sends in flight
    // finish and are recorded, the summary is printed; exit 130 or 143.
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(fail)?;
    let mut interrupted: Option<u8> = None;
    loop {
        tokio::select! {
            _ = &mut run => break,
            _ = tokio::signal::ctrl_c(), if interrupted.is_none() => {
                interrupted = Some(130);
                stop.store(true, SeqCst);
                bar.println("interrupted: letting the uploads in flight finish…");
            }
            _ = terminate.recv(), if interrupted.is_none() => {
                interrupted = Some(143);
                stop.store(true, SeqCst);
                bar.println("terminated: letting the uploads in flight finish…");
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                let (ok, failed) = (tally.delivered.load(Relaxed), tally.failed.load(Relaxed));
                bar.set_position(ok + failed);
                bar.set_message(format!("sent {} · ok {ok} · failed {failed} · retrying {}", tally.sent.load(Relaxed), tally.retrying.load(Relaxed)));
            }
        }
    }
    bar.finish_and_clear();
    let conn = open(db)?;
    let states = replays::states(&conn, replay_id).map_err(fail)?;
    let count = |state| states.get(state);
    say!(
        "replay {replay_id}: {} delivered, {} failed, {} dead, {} pending ({} attempts this run)",
        count(DeliveryState::Delivered),
        count(DeliveryState::Failed),
        count(DeliveryState::Dead),
        count(DeliveryState::Pending),
        tally.sent.load(Relaxed)
    )?;
    if count(DeliveryState::Pending) == 0 {
        replays::finish(&conn, replay_id).map_err(fail)?;
    } else {
        say!(
            "continue with: sms-audit --db {} replay --resume",
            db.display()
        )?;
    }
    Ok(if let Some(code) = interrupted {
        ExitCode::from(code)
    } else if count(DeliveryState::Failed)
        + count(DeliveryState::Dead)
        + count(DeliveryState::Pending)
        > 0
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
