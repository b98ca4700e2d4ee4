//! The command line: flags (with environment fallbacks) and what each command does.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::credentials::{self, KeyPair, NewCredential};
use crate::domain::{Role, TaskId};
use crate::ledger;
use crate::outbox::RetryPolicy;
use crate::startup::{Application, ServeConfig, TaskPolicy, UpstreamSettings};
use crate::storage::{self, queries, SyncMode};
use crate::upstream;

#[derive(Parser, Debug)]
#[command(
    name = "sms-audit",
    version,
    about = "Append-only, hash-chained receiver for Huawei Cloud SMS consistency-verification uploads"
)]
pub struct Cli {
    /// SQLite database file (created on first use).
    #[arg(
        long,
        global = true,
        env = "SMS_AUDIT_DB",
        default_value = "./sms-audit.db"
    )]
    pub db: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Manage credentials (tokens and AK/SK pairs).
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// Manage the task registry.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Check the whole ledger: exit 0 when intact, 1 naming the first bad entry.
    Verify,
    /// Export uploads for auditors (CSV: a row per result item; JSON lines: an
    /// object per upload with its raw body).
    Export(ExportArgs),
    /// Send stored uploads to SMS again (after an outage, or to another region or
    /// account). Credentials come from the environment as for `serve`.
    Replay(ReplayArgs),
    /// Developer tools (benchmarks).
    #[command(subcommand, hide = true)]
    Dev(DevCommand),
}

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
    /// Send to this endpoint instead of the configured one.
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    /// Most uploads sent per second.
    #[arg(long)]
    pub rate: Option<std::num::NonZeroU32>,
    /// Uploads sent at the same time (each task's in order).
    #[arg(long, default_value_t = 8)]
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

#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Stores synthetic uploads through the real writer (group commit, ledger,
    /// summaries), for benchmarks.
    Seed {
        #[arg(long, default_value_t = 1_000_000)]
        uploads: u64,
        #[arg(long, default_value_t = 10_000)]
        tasks: u64,
        /// Also queue a live delivery of each upload to this endpoint.
        #[arg(long)]
        forward_to: Option<String>,
    },
    /// A stand-in SMS endpoint that answers every request 200 (drain benchmark).
    FakeUpstream {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    pub format: crate::export::Format,
    /// Only this task's uploads.
    #[arg(long = "task")]
    pub task: Option<String>,
    /// From this time on (RFC 3339 or a date), inclusive.
    #[arg(long, value_parser = crate::domain::parse_time_arg)]
    pub since: Option<i64>,
    /// Up to this time, exclusive.
    #[arg(long, value_parser = crate::domain::parse_time_arg)]
    pub until: Option<i64>,
    /// Write to this file (with a progress bar) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "SMS_AUDIT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// `open`: the first upload of a task registers it; `registered`: only tasks
    /// added with `tasks add` accept uploads.
    #[arg(
        long,
        env = "SMS_AUDIT_TASK_POLICY",
        value_enum,
        default_value = "open"
    )]
    pub task_policy: TaskPolicy,
    /// Largest accepted upload body, in bytes.
    #[arg(long, env = "SMS_AUDIT_MAX_BODY_BYTES", default_value_t = 65536)]
    pub max_body_bytes: usize,
    /// Most `consistency_result` items in one upload.
    #[arg(long, env = "SMS_AUDIT_MAX_RESULTS", default_value_t = 30)]
    pub max_results: usize,
    /// `full`: fsync every commit (survives power loss); `normal`: survives a
    /// crash of the process only.
    #[arg(long, env = "SMS_AUDIT_SYNC", value_enum, default_value = "full")]
    pub sync: SyncMode,
    /// Peer address whose X-Forwarded-For header is stored (repeatable).
    #[arg(long, env = "SMS_AUDIT_TRUSTED_PROXY", value_delimiter = ',')]
    pub trusted_proxy: Vec<IpAddr>,
    /// Uploads per second allowed per credential (429 APIGW.0308 beyond); unlimited
    /// when absent.
    #[arg(long, env = "SMS_AUDIT_RATE_LIMIT")]
    pub rate_limit: Option<NonZeroU32>,
    /// Uploads waiting for the writer before new ones get 503 SMS.0201.
    #[arg(long, env = "SMS_AUDIT_QUEUE_CAPACITY", default_value_t = 4096)]
    pub queue_capacity: usize,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "SMS_AUDIT_WORKERS")]
    pub workers: Option<usize>,
    /// How long, in milliseconds, a credential once looked up is trusted without
    /// reading it again: a revocation takes effect within this time (0: every
    /// request reads its credential).
    #[arg(long, env = "SMS_AUDIT_CREDENTIAL_CACHE_MS", default_value_t = 1000)]
    pub credential_cache_ms: u64,
    /// Forward every upload to SMS as it is stored (needs an upstream endpoint or
    /// region and credentials).
    #[arg(long, env = "SMS_AUDIT_FORWARD")]
    pub forward: bool,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    /// Send every upload, not only each task's newest (SMS keeps only the newest).
    #[arg(long, env = "SMS_AUDIT_DELIVER_ALL")]
    pub deliver_all: bool,
    /// Give a delivery up (`dead`) when it is still failing after this long
    /// (e.g. 72h, 30m, 3d).
    #[arg(long, env = "SMS_AUDIT_MAX_DELIVERY_AGE", default_value = "72h", value_parser = parse_duration)]
    pub max_delivery_age: std::time::Duration,
    /// Deliveries sent at the same time.
    #[arg(long, env = "SMS_AUDIT_FORWARD_CONCURRENCY", default_value_t = 16)]
    pub forward_concurrency: usize,
    /// How long a login to the pages lasts, in hours.
    #[arg(long, env = "SMS_AUDIT_SESSION_HOURS", default_value_t = 12)]
    pub session_hours: u64,
    /// Benchmarks only: answer uploads without storing them.
    #[arg(long, hide = true)]
    pub null_store: bool,
}

/// The real SMS endpoint; credentials come from the environment
/// (HUAWEICLOUD_SDK_AK / _SK / _PROJECT_ID, CLOUD_SDK_AK / _SK, or
/// SMS_AUDIT_UPSTREAM_TOKEN).
#[derive(Args, Debug, Clone)]
pub struct UpstreamArgs {
    /// SMS endpoint URL, e.g. https://sms.ap-southeast-3.myhuaweicloud.com
    #[arg(
        long,
        env = "SMS_AUDIT_UPSTREAM_ENDPOINT",
        conflicts_with = "upstream_region"
    )]
    pub upstream_endpoint: Option<String>,
    /// SMS region from the SDK's table (cn-north-4, ap-southeast-3, my-kualalumpur-1,
    /// ru-moscow-1, ap-southeast-1).
    #[arg(long, env = "SMS_AUDIT_UPSTREAM_REGION")]
    pub upstream_region: Option<String>,
    /// Seconds before a request to SMS is given up (and retried later).
    #[arg(long, env = "SMS_AUDIT_UPSTREAM_TIMEOUT", default_value_t = 30)]
    pub upstream_timeout: u64,
}

impl UpstreamArgs {
    pub fn configured(&self) -> bool {
        self.upstream_endpoint.is_some() || self.upstream_region.is_some()
    }

    pub fn endpoint(&self) -> Result<String, CliError> {
        upstream::endpoint(
            self.upstream_endpoint.as_deref(),
            self.upstream_region.as_deref(),
        )
        .map_err(fail)
    }

    pub fn auth(&self) -> Result<upstream::UpstreamAuth, CliError> {
        upstream::UpstreamAuth::from_env(|k| std::env::var(k).ok()).map_err(fail)
    }
}

/// `72h`, `30m`, `45s`, `3d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 72h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Subcommand, Debug)]
pub enum CredentialsCommand {
    /// Create a credential and show its secrets once.
    Add(AddCredentialArgs),
    /// List credentials (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a credential: its token and AK/SK stop working at once.
    Revoke { name: String },
}

#[derive(Args, Debug)]
pub struct AddCredentialArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum)]
    pub role: Role,
    /// Task ids this credential may upload to (comma-separated); any task if absent.
    #[arg(long, value_delimiter = ',')]
    pub tasks: Option<Vec<String>>,
    /// Also generate an AK/SK pair for SDK-HMAC-SHA256 signing.
    #[arg(long, conflicts_with = "access_key")]
    pub aksk: bool,
    /// Register an existing access key; its secret key is read from stdin.
    #[arg(long, requires = "secret_key_stdin")]
    pub access_key: Option<String>,
    /// Read the secret key for --access-key from stdin (never from the command line).
    #[arg(long, requires = "access_key")]
    pub secret_key_stdin: bool,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum TasksCommand {
    /// Register a task (or rename a registered one).
    Add {
        id: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List tasks with their upload counts.
    List {
        #[arg(long)]
        json: bool,
    },
}

impl ServeArgs {
    pub fn into_config(self, db: PathBuf) -> Result<ServeConfig, CliError> {
        if self.forward && !self.upstream.configured() {
            return Err(fail(
                "--forward needs --upstream-endpoint URL or --upstream-region R",
            ));
        }
        let upstream = if self.upstream.configured() {
            Some(UpstreamSettings {
                endpoint: self.upstream.endpoint()?,
                auth: self.upstream.auth()?,
                timeout: std::time::Duration::from_secs(self.upstream.upstream_timeout.max(1)),
                concurrency: self.forward_concurrency.max(1),
                forward: self.forward,
                deliver_all: self.deliver_all,
                policy: RetryPolicy {
                    max_age: self.max_delivery_age,
                    ..RetryPolicy::default()
                },
            })
        } else {
            None
        };
        Ok(ServeConfig {
            upstream,
            listen: self.listen,
            task_policy: self.task_policy,
            max_body_bytes: self.max_body_bytes,
            max_results: self.max_results,
            sync: self.sync,
            trusted_proxies: self.trusted_proxy,
            rate_limit: self.rate_limit,
            queue_capacity: self.queue_capacity.max(1),
            null_store: self.null_store,
            workers: self.workers,
            handle_signals: true,
            credential_cache_ttl: std::time::Duration::from_millis(self.credential_cache_ms),
            session_lifetime: std::time::Duration::from_secs(self.session_hours.max(1) * 3600),
            ..ServeConfig::new(db)
        })
    }
}

/// A failure a command reports on stderr, with exit status 2 (1 means "ledger broken").
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(String);

fn fail(e: impl std::fmt::Display) -> CliError {
    CliError(e.to_string())
}

pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Serve(args) => serve(args.into_config(cli.db)?).await,
        Command::Credentials(cmd) => credentials_command(&cli.db, cmd),
        Command::Tasks(cmd) => tasks_command(&cli.db, cmd),
        Command::Verify => verify(&cli.db),
        Command::Export(args) => export(&cli.db, args),
        Command::Replay(args) => replay(&cli.db, args).await,
        Command::Dev(DevCommand::Seed {
            uploads,
            tasks,
            forward_to,
        }) => seed(&cli.db, uploads, tasks, forward_to).await,
        Command::Dev(DevCommand::FakeUpstream { listen }) => fake_upstream(&listen).await,
    }
}

async fn serve(config: ServeConfig) -> Result<ExitCode, CliError> {
    let db = config.db.clone();
    if let Some(u) = &config.upstream {
        // The endpoint and how we sign in, never the secrets.
        tracing::info!(endpoint = %u.endpoint, auth = ?u.auth, forward = u.forward, deliver_all = u.deliver_all,
            "upstream SMS configured{}", if u.forward { ": forwarding every upload" } else { " for replays" });
    }
    let app = Application::build(config).await.map_err(fail)?;
    if let Some(token) = app.admin_token() {
        // Printed once, on stderr, never logged.
        eprintln!(
            "Created operator credential \"admin\". Its token, shown only this once:\n\n    {token}\n\n\
             Make more with: sms-audit --db {} credentials add --name NAME --role agent|auditor|operator [--aksk]\n",
            db.display()
        );
    }
    tracing::info!(address = %app.address(), db = %db.display(), "listening on http://{}", app.address());
    app.run_until_stopped().await.map_err(fail)?;
    tracing::info!("stopped; every accepted upload is committed");
    Ok(ExitCode::SUCCESS)
}

fn open(db: &std::path::Path) -> Result<rusqlite::Connection, CliError> {
    storage::prepare(db, SyncMode::Full).map_err(fail)
}

fn credentials_command(
    db: &std::path::Path,
    cmd: CredentialsCommand,
) -> Result<ExitCode, CliError> {
    let conn = open(db)?;
    match cmd {
        CredentialsCommand::Add(args) => {
            let tasks = args
                .tasks
                .map(|ids| {
                    ids.iter()
                        .map(|t| TaskId::parse(t.trim()))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
                .map_err(fail)?;
            let key_pair = match (args.aksk, args.access_key) {
                (true, _) => KeyPair::Generate,
                (false, Some(access_key)) => {
                    let mut secret = String::new();
                    std::io::stdin().read_to_string(&mut secret).map_err(fail)?;
                    KeyPair::Existing {
                        access_key,
                        secret_key: secret.trim_end_matches(['\r', '\n']).to_string(),
                    }
                }
                (false, None) => KeyPair::None,
            };
            let issued = credentials::add(
                &conn,
                NewCredential {
                    name: &args.name,
                    role: args.role,
                    tasks,
                    key_pair,
                },
            )
            .map_err(fail)?;
            if args.json {
                println!("{}", serde_json::to_string(&issued).map_err(fail)?);
            } else {
                println!("name:       {}", issued.name);
                println!("role:       {}", issued.role);
                println!("token:      {}", issued.token);
                if let Some(ak) = &issued.access_key {
                    println!("access key: {ak}");
                }
                if let Some(sk) = &issued.secret_key {
                    println!("secret key: {sk}");
                }
                eprintln!(
                    "These secrets are shown only now; sms-audit keeps only the token's hash."
                );
            }
        }
        CredentialsCommand::List { json } => {
            let all = credentials::list(&conn).map_err(fail)?;
            if json {
                println!("{}", serde_json::to_string(&all).map_err(fail)?);
            } else {
                println!(
                    "{:<24} {:<9} {:<22} {:<25} STATUS",
                    "NAME", "ROLE", "ACCESS KEY", "CREATED"
                );
                for c in all {
                    println!(
                        "{:<24} {:<9} {:<22} {:<25} {}",
                        c.name,
                        c.role,
                        c.access_key.as_deref().unwrap_or("-"),
                        c.created_at,
                        c.revoked_at
                            .map_or("active".to_string(), |t| format!("revoked {t}"))
                    );
                }
            }
        }
        CredentialsCommand::Revoke { name } => {
            credentials::revoke(&conn, &name).map_err(fail)?;
            println!("revoked {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn tasks_command(db: &std::path::Path, cmd: TasksCommand) -> Result<ExitCode, CliError> {
    let conn = open(db)?;
    match cmd {
        TasksCommand::Add { id, name } => {
            let task_id = TaskId::parse(&id).map_err(fail)?;
            let created = queries::register_task(&conn, &task_id, name.as_deref()).map_err(fail)?;
            println!(
                "{} task {task_id}",
                if created { "registered" } else { "updated" }
            );
        }
        TasksCommand::List { json } => {
            let tasks = queries::list_tasks(&conn).map_err(fail)?;
            if json {
                println!("{}", serde_json::to_string(&tasks).map_err(fail)?);
            } else {
                println!("{:<38} {:>8} {:<25} NAME", "TASK", "UPLOADS", "LAST UPLOAD");
                for t in tasks {
                    println!(
                        "{:<38} {:>8} {:<25} {}",
                        t.task_id,
                        t.upload_count,
                        t.last_received_at.as_deref().unwrap_or("-"),
                        t.name.as_deref().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn export(db: &std::path::Path, args: ExportArgs) -> Result<ExitCode, CliError> {
    use crate::export::{self, ExportFilter};
    let conn = open(db)?;
    let filter = ExportFilter {
        task_id: args
            .task
            .as_deref()
            .map(TaskId::parse)
            .transpose()
            .map_err(fail)?,
        since: args.since,
        until: args.until,
    };
    let written = match &args.out {
        None => export::write(
            &conn,
            &filter,
            args.format,
            std::io::stdout().lock(),
            |_| {},
        )
        .map_err(fail)?,
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            let bar = indicatif::ProgressBar::new(export::estimate(&conn, &filter).map_err(fail)?);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} uploads, {per_sec}, {eta} left",
                )
                .map_err(fail)?,
            );
            let n = export::write(&conn, &filter, args.format, file, |n| bar.set_position(n))
                .map_err(fail)?;
            bar.finish_and_clear();
            eprintln!("exported {n} uploads to {}", path.display());
            n
        }
    };
    tracing::debug!(written, "export done");
    Ok(ExitCode::SUCCESS)
}

async fn replay(db: &std::path::Path, args: ReplayArgs) -> Result<ExitCode, CliError> {
    use crate::outbox::{Runner, Sender, SenderConfig};
    use crate::replay::{self, DirectRecorder, ReplayFilter, ReplayRunner};
    use std::sync::atomic::Ordering::{Relaxed, SeqCst};
    use std::sync::{Arc, Mutex};

    let conn = open(db)?;
    let (replay_id, target, auth) = if args.resume {
        let (id, target) = replay::resumable(&conn)
            .map_err(fail)?
            .ok_or_else(|| fail("no interrupted replay to resume"))?;
        (id, target, args.upstream.auth()?)
    } else {
        let target = match &args.to {
            Some(url) => upstream::normalize_endpoint(url).map_err(fail)?,
            None => args.upstream.endpoint()?,
        };
        let filter = ReplayFilter {
            tasks: args.tasks.clone(),
            since: args.since,
            until: args.until,
            state: Some(args.state.clone()),
            latest_per_task: args.latest_per_task,
        };
        filter.validate().map_err(fail)?;
        let selection = replay::select(&conn, &filter).map_err(fail)?;
        println!(
            "{} uploads of {} tasks would be sent to {target}",
            selection.uploads.len(),
            selection.per_task.len()
        );
        for (task, n) in selection.per_task.iter().take(20) {
            println!("  {task}: {n}");
        }
        if selection.per_task.len() > 20 {
            println!("  … and {} more tasks", selection.per_task.len() - 20);
        }
        if args.dry_run {
            println!("dry run: nothing sent");
            return Ok(ExitCode::SUCCESS);
        }
        if selection.uploads.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        // Before asking or storing anything: a replay that cannot be sent is no use.
        let auth = args.upstream.auth()?;
        if !args.yes && !confirm("Send them? [y/N] ")? {
            println!("nothing sent");
            return Ok(ExitCode::from(1));
        }
        let id = replay::create(
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
    let total = replay::states(&conn, replay_id)
        .map_err(fail)?
        .get("pending")
        .copied()
        .unwrap_or(0);
    println!("replay {replay_id}: sending {total} uploads to {target}");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tally: Arc<crate::outbox::Tally> = Arc::default();
    let sender = Sender {
        reads: storage::ReadPool::new(db),
        recorder: Arc::new(DirectRecorder(Arc::new(Mutex::new(conn)))),
        upstream: Arc::new(move |endpoint: &str| {
            upstream::Upstream::new(endpoint.to_string(), auth.clone(), timeout)
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
    let mut interrupted = false;
    loop {
        tokio::select! {
            _ = &mut run => break,
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                stop.store(true, SeqCst);
                bar.println("interrupted: letting the uploads in flight finish…");
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
    let states = replay::states(&conn, replay_id).map_err(fail)?;
    let count = |s: &str| states.get(s).copied().unwrap_or(0);
    println!(
        "replay {replay_id}: {} delivered, {} failed, {} dead, {} pending ({} attempts this run)",
        count("delivered"),
        count("failed"),
        count("dead"),
        count("pending"),
        tally.sent.load(Relaxed)
    );
    if count("pending") == 0 {
        replay::finish(&conn, replay_id).map_err(fail)?;
    } else {
        println!("continue with: sms-audit replay --resume");
    }
    Ok(if interrupted {
        ExitCode::from(130)
    } else if count("failed") + count("dead") + count("pending") > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn confirm(question: &str) -> Result<bool, CliError> {
    use std::io::BufRead;
    eprint!("{question}");
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(fail)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

async fn fake_upstream(listen: &str) -> Result<ExitCode, CliError> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let server = HttpServer::new(|| {
        // The body is read so that the connection is kept alive, as SMS does (actix
        // closes a connection whose request body was left unread).
        App::new().default_service(web::to(|_body: web::Bytes| async {
            HttpResponse::Ok()
                .content_type("application/json")
                .insert_header(("X-Request-Id", uuid::Uuid::now_v7().to_string()))
                .body("{}")
        }))
    })
    .bind(listen)
    .map_err(fail)?;
    for addr in server.addrs() {
        eprintln!("fake upstream listening on http://{addr}");
    }
    server.run().await.map_err(fail)?;
    Ok(ExitCode::SUCCESS)
}

async fn seed(
    db: &std::path::Path,
    uploads: u64,
    tasks: u64,
    forward_to: Option<String>,
) -> Result<ExitCode, CliError> {
    use crate::domain::{AuthMethod, UploadBody};
    use crate::storage::writer::{self, NewUpload};
    use futures_util::stream::{self, StreamExt};

    // Seeding trades power-loss safety for speed; the data is synthetic.
    let forwarding = forward_to
        .map(|url| upstream::normalize_endpoint(&url).map_err(fail))
        .transpose()?
        .map(|target| writer::Forwarding {
            target,
            wake: Default::default(),
            latest_wins: true,
        });
    let (handle, thread) = writer::spawn(db, SyncMode::Normal, 8192, forwarding).map_err(fail)?;
    let bar = indicatif::ProgressBar::new(uploads);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} uploads, {per_sec}, {eta} left",
        )
        .map_err(fail)?,
    );
    let tasks = tasks.max(1);
    {
        let results = stream::iter(0..uploads)
        .map(|i| {
            let handle = handle.clone();
            async move {
                // A deterministic spread of counts: most uploads clean, some not.
                let task = i % tasks;
                let round = i / tasks;
                let noise = (i.wrapping_mul(2_654_435_761) >> 7) % 50;
                let different = noise.saturating_sub(35);
                let body = format!(
                    r#"{{"consistency_result":[{{"dir_check":"/srv/data","num_total_files":{},"num_different_files":{different},"num_target_miss_files":{},"num_target_more_files":0}},{{"dir_check":"/etc","num_total_files":420,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":{}}},{{"dir_check":"/var/lib/app","num_total_files":{},"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0}}]}}"#,
                    10_000 + round * 3,
                    noise % 3,
                    noise % 2,
                    5_000 + task % 1000
                );
                let parsed = UploadBody::parse(body.as_bytes(), 30).expect("seed bodies are valid");
                handle
                    .submit(NewUpload {
                        request_id: uuid::Uuid::now_v7().to_string(),
                        task_id: TaskId::parse(&format!("task-{task:05}")).expect("valid id"),
                        credential_name: "seed".into(),
                        auth_method: AuthMethod::Token,
                        project_id: None,
                        peer_addr: "127.0.0.1".into(),
                        forwarded_for: None,
                        user_agent: Some("sms-audit-seed".into()),
                        raw_body: body.into_bytes(),
                        body: parsed,
                    })
                    .await
            }
        })
        .buffer_unordered(2048);
        let mut results = std::pin::pin!(results);
        while let Some(result) = results.next().await {
            result.map_err(fail)?;
            bar.inc(1);
        }
    }
    bar.finish();
    handle.shutdown();
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(fail)?;
    Ok(ExitCode::SUCCESS)
}

fn verify(db: &std::path::Path) -> Result<ExitCode, CliError> {
    let conn = open(db)?;
    let started = crate::storage::writer::now_ms();
    let result = ledger::verify(&conn, |n| {
        if n > 0 && n % 100_000 == 0 {
            eprintln!("checked {n} entries");
        }
    })
    .map_err(fail)?;
    crate::storage::history::record_verification(&conn, &result, started, "cli").map_err(fail)?;
    let mut out = std::io::stdout().lock();
    match &result.first_bad {
        None => {
            writeln!(
                out,
                "ledger intact: {} entries, head {} (id {})",
                result.entries, result.head_hash, result.head_id
            )
            .map_err(fail)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(bad) => {
            writeln!(out, "ledger BROKEN at entry {}: {}", bad.id, bad.problem).map_err(fail)?;
            writeln!(
                out,
                "{} entries before it are intact; last good head {}",
                result.entries, result.head_hash
            )
            .map_err(fail)?;
            Ok(ExitCode::from(1))
        }
    }
}
