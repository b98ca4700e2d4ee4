//! `witness serve`, `witness key`, `witness status`: sms-audit as a C2SP
//! tlog-witness that an auditor runs on their own machine, with a database and
//! key of its own.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{fail, CliError};
use crate::services::witness::{default_name, load_or_create_key};
use crate::startup::witness::{WitnessConfig, WitnessServer};
use crate::storage;

#[derive(Subcommand, Debug)]
pub enum WitnessCommand {
    /// Run a C2SP tlog-witness for the logs given with --log: it cosigns each
    /// checkpoint that is signed by the log's key and consistent with the latest
    /// one it cosigned (POST /add-checkpoint), and serves that latest checkpoint
    /// per log (GET /<sha256 of origin, hex>/checkpoint). Give it a database of
    /// its own with --db.
    Serve(WitnessServeArgs),
    /// Print the witness's verifier key (cosignature/v1), creating the key file
    /// when it is missing; give this key to the logs and auditors that trust it.
    Key(WitnessKeyArgs),
    /// The logs this witness cosigned: origin, the latest size and when, and how
    /// many checkpoints it refused.
    Status(WitnessStatusArgs),
}

#[derive(Args, Debug)]
pub struct WitnessKeyOptions {
    /// The witness's key file (`PRIVATE+KEY+name+id+key`, mode 0600); default
    /// `<db>.witness-key`.
    #[arg(long, env = "SMS_AUDIT_WITNESS_KEY")]
    key: Option<PathBuf>,
    /// The name of a key this creates; default `sms-audit-witness/<hostname>`.
    #[arg(long)]
    name: Option<String>,
}

impl WitnessKeyOptions {
    fn path(&self, db: &Path) -> PathBuf {
        self.key
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.witness-key", db.display())))
    }

    fn name(&self) -> String {
        self.name.clone().unwrap_or_else(default_name)
    }
}

#[derive(Args, Debug)]
pub struct WitnessServeArgs {
    #[command(flatten)]
    key: WitnessKeyOptions,
    /// A log to witness: its origin and its verifier key (repeatable; a log with
    /// two keys is given twice).
    #[arg(long = "log", value_name = "ORIGIN=VKEY", required = true, value_parser = parse_log)]
    logs: Vec<(String, String)>,
    /// Where to listen; port 0 picks a free port (the log line says which).
    #[arg(
        long,
        env = "SMS_AUDIT_WITNESS_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    listen: String,
}

#[derive(Args, Debug)]
pub struct WitnessKeyArgs {
    #[command(flatten)]
    key: WitnessKeyOptions,
}

#[derive(Args, Debug)]
pub struct WitnessStatusArgs {
    /// One JSON object: `{"logs": [{"origin", "size", "cosigned_at", "refusals"}]}`.
    #[arg(long)]
    json: bool,
}

fn parse_log(text: &str) -> Result<(String, String), String> {
    let (origin, vkey) = text
        .split_once('=')
        .ok_or("expected ORIGIN=VKEY (the log's origin, then its verifier key)")?;
    crate::domain::checkpoint::parse_verifier_key(vkey)?;
    Ok((origin.to_string(), vkey.to_string()))
}

/// A witness keeps its own database: never a service's.
fn refuse_service_database(db: &Path) -> Result<(), CliError> {
    if !db.exists() {
        return Ok(());
    }
    let conn = storage::open_read(db).map_err(fail)?;
    if storage::has_table(&conn, "uploads").map_err(fail)? {
        return Err(fail(format!(
            "{} is an sms-audit service's database; a witness keeps its own: give --db WITNESS.db",
            db.display()
        )));
    }
    Ok(())
}

pub async fn run(db: &Path, cmd: WitnessCommand) -> Result<ExitCode, CliError> {
    match cmd {
        WitnessCommand::Serve(args) => serve(db, args).await,
        WitnessCommand::Key(args) => {
            let key = load_or_create_key(&args.key.path(db), &args.key.name()).map_err(fail)?;
            say!("{}", key.verifier_key())?;
            Ok(ExitCode::SUCCESS)
        }
        WitnessCommand::Status(args) => status(db, args),
    }
}

async fn serve(db: &Path, args: WitnessServeArgs) -> Result<ExitCode, CliError> {
    refuse_service_database(db)?;
    let config = WitnessConfig {
        db: db.to_path_buf(),
        key: args.key.path(db),
        name: args.key.name(),
        logs: args.logs,
        listen: args.listen,
        handle_signals: true,
    };
    let server = WitnessServer::build(config).map_err(fail)?;
    server.run_until_stopped().await.map_err(fail)?;
    Ok(ExitCode::SUCCESS)
}

fn status(db: &Path, args: WitnessStatusArgs) -> Result<ExitCode, CliError> {
    super::existing_database(db)?;
    refuse_service_database(db)?;
    let conn = storage::open_read(db).map_err(fail)?;
    let logs = storage::witness::logs(&conn).map_err(fail)?;
    if args.json {
        let logs: Vec<serde_json::Value> = logs
            .iter()
            .map(|l| {
                serde_json::json!({
                    "origin": l.origin,
                    "size": l.size,
                    "cosigned_at": crate::domain::format_timestamp(l.cosigned_at),
                    "refusals": l.refusals,
                })
            })
            .collect();
        say!("{}", serde_json::json!({ "logs": logs }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if logs.is_empty() {
        say!("no checkpoint cosigned yet")?;
    }
    for l in &logs {
        say!(
            "{}  size {}  cosigned {}  {}",
            l.origin,
            l.size,
            crate::domain::format_timestamp(l.cosigned_at),
            crate::domain::counted(l.refusals as u64, "refusal")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
