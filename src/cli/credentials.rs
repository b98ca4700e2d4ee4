//! `credentials add|list|revoke`.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{fail, open, open_existing, CliError};
use crate::domain::{format_timestamp, Role, TaskId};
use crate::http::json::{self, CredentialJson};
use crate::storage::credentials::{self, KeyPair, NewCredential};

#[derive(Subcommand, Debug)]
pub enum CredentialsCommand {
    /// Create a credential and show its secrets once.
    Add(AddCredentialArgs),
    /// List credentials (never their secrets).
    List {
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a credential: on a running service its token and AK/SK stop working
    /// within --credential-cache (1s by default), and its page sessions end.
    /// Its name stays taken.
    Revoke {
        /// The credential's name.
        name: String,
        /// Revoke the last active operator without asking.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct AddCredentialArgs {
    /// A name for the credential (1 to 128 printable characters), shown in the
    /// ledger with every upload it makes.
    #[arg(long)]
    pub name: String,
    /// agent: uploads; auditor: reads the pages and API; operator: both.
    #[arg(long, value_enum)]
    pub role: Role,
    /// Task ids this credential may upload to (comma-separated); any task if absent.
    /// Only for agents and operators: auditors do not upload.
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

pub fn run(db: &Path, cmd: CredentialsCommand) -> Result<ExitCode, CliError> {
    // Only `add` may create the database.
    let conn = match cmd {
        CredentialsCommand::Add(_) => open(db)?,
        _ => open_existing(db)?,
    };
    match cmd {
        CredentialsCommand::Add(args) => add(&conn, args)?,
        CredentialsCommand::List { json } => {
            let all = credentials::list(&conn).map_err(fail)?;
            if json {
                say!(
                    "{}",
                    serde_json::to_string(&json::all::<_, CredentialJson>(all)).map_err(fail)?
                )?;
            } else {
                say!(
                    "{:<24} {:<9} {:<22} {:<25} {:<25} {:<34} TASKS",
                    "NAME",
                    "ROLE",
                    "ACCESS KEY",
                    "CREATED",
                    "LAST USED",
                    "STATUS"
                )?;
                for c in all {
                    say!(
                        "{:<24} {:<9} {:<22} {:<25} {:<25} {:<34} {}",
                        c.name,
                        c.role,
                        c.access_key.as_deref().unwrap_or("-"),
                        format_timestamp(c.created_at),
                        c.last_used_at.map_or("never".into(), format_timestamp),
                        c.revoked_at.map_or("active".to_string(), |t| format!(
                            "revoked {}",
                            format_timestamp(t)
                        )),
                        c.tasks.map_or("any".into(), |t| t.join(","))
                    )?;
                }
            }
        }
        CredentialsCommand::Revoke { name, force } => {
            let last_operator = credentials::list(&conn)
                .map_err(fail)?
                .iter()
                .any(|c| c.name == name && c.role == "operator" && c.revoked_at.is_none())
                && credentials::active_operators(&conn).map_err(fail)? == 1;
            if last_operator && !force {
                eprintln!(
                    "{name} is the last active operator: without one, nobody can start replays or verifications on the pages and the API (until `credentials add --role operator`)"
                );
                if !super::confirm("Revoke it anyway? [y/N] ")? {
                    eprintln!("nothing revoked (--force revokes without asking)");
                    return Ok(ExitCode::from(2));
                }
            }
            credentials::revoke(&conn, &name).map_err(fail)?;
            say!("revoked {name}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `credentials add`: the new credential's secrets, shown once.
fn add(conn: &rusqlite::Connection, args: AddCredentialArgs) -> Result<(), CliError> {
    let tasks = args
        .tasks
        .map(|ids| {
            ids.iter()
                .map(|t| TaskId::parse(t.trim()).map_err(|e| format!("--tasks {t:?}: {e}")))
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
        conn,
        NewCredential {
            name: &args.name,
            role: args.role,
            tasks,
            key_pair,
        },
    )
    .map_err(fail)?;
    if args.json {
        say!("{}", serde_json::to_string(&issued).map_err(fail)?)?;
    } else {
        say!("name:       {}", issued.name)?;
        say!("role:       {}", issued.role)?;
        say!("token:      {}", issued.token)?;
        if let Some(ak) = &issued.access_key {
            say!("access key: {ak}")?;
        }
        if let Some(sk) = &issued.secret_key {
            say!("secret key: {sk}")?;
        }
        if issued.secret_key.is_some() {
            eprintln!(
                "These secrets are shown only now. sms-audit keeps the token only as its hash; \
                 the secret key is stored as is (checking a signature needs it), so guard the \
                 database as you guard the key."
            );
        } else {
            eprintln!("This token is shown only now; sms-audit keeps only its hash.");
        }
    }
    Ok(())
}
