//! The command line: one module per command, each with its clap arguments next
//! to its code. `run` dispatches; every command reports failures as [`CliError`]
//! (exit status 2).

/// `println!` for a command's output: a reader that went away (`| head`) ends
/// the command quietly instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::cli::output_error)
    }};
}

mod backup;
mod changes;
mod config;
mod credentials;
#[cfg(feature = "dev")]
mod dev;
mod evidence;
mod export;
pub mod logging;
mod purge;
mod reconcile;
mod replay;
mod restore;
mod serve;
mod shell;
mod status;
mod tasks;
mod tls;
mod verify;
mod witness;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::services::outbox::UpstreamSettings;
use crate::services::upstream;
use crate::storage::{self, SyncMode};

pub use config::{parse, ParseError};
pub use serve::ServeArgs;
pub use shell::markdown_reference;

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

    /// Log lines on stderr as text for people, or as one JSON object each for a
    /// log collector (`RUST_LOG` filters either).
    #[arg(
        long,
        global = true,
        env = "SMS_AUDIT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// A TOML file with the same keys as `serve`'s flags (and `db`,
    /// `log-format`); a flag or environment variable wins over it.
    #[arg(long, global = true, env = "SMS_AUDIT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Refuse (exit 2) a config file, signing key or TLS key that others than
    /// its owner may read or change, instead of warning.
    #[arg(long, global = true, env = "SMS_AUDIT_STRICT_PERMISSIONS")]
    pub strict_permissions: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service.
    Serve(Box<serve::ServeArgs>),
    /// Manage credentials (tokens and AK/SK pairs).
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
    /// Manage the task registry.
    #[command(subcommand)]
    Tasks(tasks::TasksCommand),
    /// Check the whole ledger: exit 0 when intact, 1 naming the first bad entry, 2
    /// when it cannot be checked (no such database, unreadable).
    Verify(verify::VerifyArgs),
    /// Evidence an auditor checks offline: export a task's bundle, verify one.
    #[command(subcommand)]
    Evidence(evidence::EvidenceCommand),
    /// sms-audit as a C2SP tlog-witness, run by an auditor: serve, key, status.
    #[command(subcommand)]
    Witness(witness::WitnessCommand),
    /// What changed in the fleet between two moments: every task's latest upload
    /// at each, its change in problems, and a verdict (new, improved, regressed,
    /// unchanged; clean when it has no problems).
    Changes(changes::ChangesArgs),
    /// Copy the database while the service writes (SQLite's online backup), then
    /// check the copy's ledger: exit 0 with its entries and head, 1 when the copy's
    /// ledger is broken, 2 when no copy could be made.
    Backup(backup::BackupArgs),
    /// Put a backup in place of the database: the backup's ledger is checked
    /// first, no service may hold the database, and the database it replaces is
    /// kept as `<db>.replaced-<time>`. Exit 0 restored, 1 the backup's ledger is
    /// broken (nothing changed), 2 not done.
    Restore(restore::RestoreArgs),
    /// Retention: empty the raw bodies and delete the result rows of uploads
    /// received before a time, keeping their ledger entries (so `verify` still
    /// passes); uploads with a pending delivery stay. Recorded in the admin log.
    Purge(purge::PurgeArgs),
    /// One screen on the database: entries and head, tasks, pending deliveries,
    /// the last checkpoint, verification, backup and purge, and disk use.
    Status(status::StatusArgs),
    /// Export uploads for auditors (CSV: a row per result item; JSON lines: an
    /// object per upload with its raw body).
    Export(export::ExportArgs),
    /// Send stored uploads to SMS again (after an outage, or to another region or
    /// account). Credentials come from the environment as for `serve`.
    Replay(replay::ReplayArgs),
    /// Read tasks' results back from SMS and match them with the uploads here:
    /// each task matches, or SMS misses uploads delivered from here, holds rounds
    /// no upload matches (foreign), or holds other counts (differs). Exit 0 all
    /// match, 1 a task does not, 3 SMS stopped the run or a task was not checked.
    Reconcile(reconcile::ReconcileArgs),
    /// The configuration file: check it.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Shell completions (bash, zsh, fish, elvish, powershell) on standard output:
    /// e.g. `sms-audit completions bash > /etc/bash_completion.d/sms-audit`.
    Completions(shell::CompletionsArgs),
    /// The manual page (roff) on standard output, or every command's into a
    /// directory with `--out`.
    Man(shell::ManArgs),
    /// TLS helpers.
    #[command(subcommand)]
    Tls(tls::TlsCommand),
    /// Developer tools for the benchmarks (built with `--features dev`).
    #[cfg(feature = "dev")]
    #[command(subcommand, hide = true)]
    Dev(dev::DevCommand),
}

/// The real SMS endpoint; credentials come from the environment
/// (HUAWEICLOUD_SDK_AK / _SK / _PROJECT_ID, CLOUD_SDK_AK / _SK, or
/// SMS_AUDIT_UPSTREAM_TOKEN).
#[derive(Args, Debug, Clone)]
#[allow(rustdoc::bare_urls)] // the text is `--help` output, where a bare URL reads best
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
    /// How long before a request to SMS is given up (and retried later), e.g.
    /// 30s; a bare number is seconds.
    #[arg(long, env = "SMS_AUDIT_UPSTREAM_TIMEOUT", value_name = "D",
        default_value_t = FlagDuration(UpstreamSettings::DEFAULT_TIMEOUT),
        value_parser = duration_in(Duration::from_secs(1), Duration::from_secs(1)..=Duration::from_secs(3600)))]
    pub upstream_timeout: FlagDuration,
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

/// The longest duration a flag takes: 100 years.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A duration flag's value: `72h`, `30m`, `45s`, `500ms`, `3d`, `1h 30m`
/// (humantime's units), or a bare number in the flag's own unit (seconds for most;
/// days for `--retention`, as it always took).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagDuration(pub Duration);

/// Shown as the largest unit that says it exactly (`90d`, `12h`, `50ms`): the
/// defaults in `--help` and `config check`.
impl std::fmt::Display for FlagDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
        ];
        match units
            .iter()
            .find(|(size, _)| ms > 0 && ms.is_multiple_of(*size))
        {
            Some((size, unit)) => write!(f, "{}{unit}", ms / size),
            None => write!(f, "{ms}ms"),
        }
    }
}

/// A parser for a duration flag: a bare number counts in `bare` units; the value
/// must lie in `range`.
pub fn duration_in(
    bare: Duration,
    range: std::ops::RangeInclusive<Duration>,
) -> impl Fn(&str) -> Result<FlagDuration, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let s = s.trim();
        let duration = match s.parse::<u64>() {
            Ok(n) => u32::try_from(n)
                .ok()
                .and_then(|n| bare.checked_mul(n))
                .unwrap_or(Duration::MAX),
            Err(_) => humantime::parse_duration(s)
                .map_err(|e| format!("{s:?} is not a duration like 72h, 30m, 45s or 500ms: {e}"))?,
        };
        let shown = |d: &Duration| FlagDuration(*d).to_string();
        if duration > MAX_DURATION.min(*range.end()) {
            return Err(format!("{s:?} is longer than {}", shown(range.end())));
        }
        if duration < *range.start() {
            return Err(format!("{s:?} is shorter than {}", shown(range.start())));
        }
        Ok(FlagDuration(duration))
    }
}

/// `72h`, `30m`, `45s`, `3d`, or plain seconds; up to 100 years.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    duration_in(Duration::from_secs(1), Duration::ZERO..=MAX_DURATION)(s).map(|d| d.0)
}

/// Why a command stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reported on stderr, with exit status 2 (1 means "ledger broken").
    #[error("{0}")]
    Failed(String),
    /// Whoever read the output went away (`| head -c 0`): the command ends quietly
    /// with exit status 0, as its reader wanted no more.
    #[error("the output was closed")]
    OutputClosed,
}

/// anyhow's chain of contexts, outermost first: `--from b.db: not a database`.
impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Failed(format!("{e:#}"))
    }
}

pub(crate) fn fail(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

/// A failed write of a command's output: a closed pipe ends the command quietly.
pub(crate) fn output_error(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CliError::OutputClosed
    } else {
        fail(e)
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    if let Some(file) = &cli.config {
        // It may hold secrets (a metrics token, webhook URLs) and says where
        // uploads go: its owner's alone.
        crate::storage::files::check_private(file, "the config file", cli.strict_permissions)
            .map_err(fail)?;
    }
    match cli.command {
        Command::Serve(args) => {
            let mut config = args.into_config(cli.db)?;
            config.strict_permissions = cli.strict_permissions;
            serve::run(config).await
        }
        Command::Credentials(cmd) => credentials::run(&cli.db, cmd),
        Command::Tasks(cmd) => tasks::run(&cli.db, cmd).await,
        Command::Verify(args) => verify::run(&cli.db, args),
        Command::Export(args) => export::run(&cli.db, args),
        Command::Changes(args) => changes::run(&cli.db, args),
        Command::Backup(args) => backup::run(&cli.db, args),
        Command::Restore(args) => restore::run(&cli.db, args),
        Command::Purge(args) => purge::run(&cli.db, args),
        Command::Status(args) => status::run(&cli.db, args),
        Command::Evidence(cmd) => evidence::run(&cli.db, cmd),
        Command::Witness(cmd) => witness::run(&cli.db, cmd).await,
        Command::Replay(args) => replay::run(&cli.db, args).await,
        Command::Reconcile(args) => reconcile::run(&cli.db, args).await,
        Command::Tls(cmd) => tls::run(cmd),
        Command::Completions(args) => shell::completions(args),
        Command::Config(config::ConfigCommand::Check) => config::check(
            std::env::args_os().next().unwrap_or_default(),
            cli.config.as_deref(),
        ),
        Command::Man(args) => shell::man(args),
        #[cfg(feature = "dev")]
        Command::Dev(cmd) => dev::run(&cli.db, cmd).await,
    }
}

/// Who runs a command, for the admin log.
fn operator() -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .or_else(uid)
        .unwrap_or_else(|| "unknown user".into());
    format!("{user} (command line)")
}

#[cfg(unix)]
fn uid() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .ok()
        .map(|m| format!("uid {}", m.uid()))
}

#[cfg(not(unix))]
fn uid() -> Option<String> {
    None
}

/// Records a backup or restore in the database's admin log; a database that
/// cannot be written (read-only media) only gets a warning.
fn record_admin_action(db: &Path, started_at: i64, action: &str, detail: &str, outcome: &str) {
    let entry = storage::retention::NewAdminEntry {
        started_at,
        actor: &operator(),
        action,
        before_time: None,
        up_to_id: None,
        detail: Some(detail),
    };
    let written = storage::prepare(db, storage::SyncMode::Full).and_then(|conn| {
        Ok(storage::retention::record(
            &conn,
            &entry,
            crate::domain::now_ms(),
            outcome,
        )?)
    });
    if let Err(e) = written {
        eprintln!("warning: not recorded in the admin log: {e}");
    }
}

/// Asks on the terminal; anything but y/yes (or no answer at all) is no.
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

/// Opens (creating and migrating if needed) the database for a command.
fn open(db: &Path) -> Result<rusqlite::Connection, CliError> {
    let new = !db.exists();
    let conn = storage::prepare(db, SyncMode::Full).map_err(fail)?;
    if new {
        // Said, so that a command run in the wrong folder (or without the
        // service's --db) does not quietly start a second ledger.
        eprintln!(
            "created a new database at {}",
            std::path::absolute(db)
                .unwrap_or_else(|_| db.to_path_buf())
                .display()
        );
    }
    Ok(conn)
}

/// For commands that only read (or change what exists): a database that is not
/// there is a mistyped path, not an empty ledger, and is not created.
fn open_existing(db: &Path) -> Result<rusqlite::Connection, CliError> {
    existing_database(db)?;
    open(db)
}

/// That the database is there: "no such database" (with the hint) only when it
/// is not; a folder this user cannot enter says so, with the path.
fn existing_database(db: &Path) -> Result<(), CliError> {
    match db.try_exists() {
        Ok(true) => Ok(()),
        Ok(false) => Err(fail(format!(
            "{}: no such database (check --db or SMS_AUDIT_DB; `serve`, `credentials add` and `tasks add` create one)",
            db.display()
        ))),
        Err(e) => Err(fail(format!(
            "{}: cannot be reached: {e} (check the permissions of the file and its folders)",
            db.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag and argument of every command says what it is for (in `--help`,
    /// the completions and the manual pages).
    #[test]
    fn every_flag_and_command_has_a_help_text() {
        fn check(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name());
            if command.get_about().is_none() && path != " sms-audit" {
                missing.push(format!("{path} (the command)"));
            }
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_name() != "help" {
                    check(sub, &path, missing);
                }
            }
        }
        let mut missing = Vec::new();
        check(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
