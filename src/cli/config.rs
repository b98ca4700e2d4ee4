//! `--config FILE`: the same keys as the flags, in TOML, under flags and the
//! environment (flag > env > file > default); and `config check`, which prints the
//! effective configuration and where each value came from.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use super::{fail, Cli, CliError};

/// Keys whose values `config check` never prints.
const SECRET_KEYS: &[&str] = &["metrics-token"];

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the configuration `serve` would run with (flags aside): each key,
    /// its value and where it comes from (env, file, default); secrets masked.
    /// Exit 2 naming the key and line of the first bad one.
    Check,
}

/// Why the command line could not be read.
pub enum ParseError {
    /// clap's own (also `--help` and `--version`): it prints and exits itself.
    Clap(clap::Error),
    Config(CliError),
}

/// Parses the command line, filling what neither a flag nor the environment set
/// from `--config FILE` (env `SMS_AUDIT_CONFIG`).
pub fn parse(argv: Vec<OsString>) -> Result<Cli, ParseError> {
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .map_err(ParseError::Clap)?;
    let Some(file) = matches.get_one::<PathBuf>("config").cloned() else {
        return Cli::from_arg_matches(&matches).map_err(ParseError::Clap);
    };
    let extra = from_file(&file, &matches).map_err(ParseError::Config)?;
    let mut argv = argv;
    argv.extend(extra);
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .map_err(ParseError::Clap)?;
    Cli::from_arg_matches(&matches).map_err(ParseError::Clap)
}

/// A value read from the file, with its line.
struct FileValue {
    line: usize,
    value: toml::Value,
}

fn read_file(path: &Path) -> Result<BTreeMap<String, FileValue>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(format!("--config {}: {e}", path.display())))?;
    let table: BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>> = toml::from_str(&text)
        .map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start].matches('\n').count() + 1)
                .unwrap_or(0);
            fail(format!(
                "--config {} line {line}: not valid TOML: {}",
                path.display(),
                e.message()
            ))
        })?;
    Ok(table
        .into_iter()
        .map(|(key, value)| {
            let line = text[..key.span().start].matches('\n').count() + 1;
            (
                key.into_inner().replace('_', "-"),
                FileValue {
                    line,
                    value: value.into_inner(),
                },
            )
        })
        .collect())
}

/// The arguments `serve` and the global flags take, by long name.
fn known_args() -> BTreeMap<String, clap::Arg> {
    let cli = Cli::command();
    let serve = cli
        .find_subcommand("serve")
        .expect("serve is a subcommand")
        .clone();
    cli.get_arguments()
        .chain(serve.get_arguments())
        .filter_map(|a| Some((a.get_long()?.to_string(), a.clone())))
        .filter(|(name, _)| !matches!(name.as_str(), "help" | "version" | "config"))
        .collect()
}

/// The file's values as `--key=value` arguments for the keys of the command being
/// run that no flag or environment variable set; every value checked by the
/// flag's own parser, errors naming the key and line.
fn from_file(path: &Path, matches: &ArgMatches) -> Result<Vec<OsString>, CliError> {
    let values = read_file(path)?;
    let known = known_args();
    let sub = matches.subcommand();
    let mut extra = Vec::new();
    for (key, FileValue { line, value }) in &values {
        let at = |what: String| {
            fail(format!(
                "--config {} line {line}: {key}: {what}",
                path.display()
            ))
        };
        let Some(arg) = known.get(key) else {
            return Err(at(
                "unknown key (the keys are serve's flags without --, and db, log-format)".into(),
            ));
        };
        // Each value as the flag it stands for (`false` stands for none), checked
        // by the flag's own parser whatever the command, so that a bad file is
        // found before the service restarts with it.
        let mut flags = Vec::new();
        for text in texts(value).map_err(at)? {
            let flag = if arg.get_action().takes_values() {
                format!("--{key}={text}")
            } else if text == "true" {
                format!("--{key}")
            } else if text == "false" {
                continue;
            } else {
                return Err(at(format!("must be true or false, not {text:?}")));
            };
            Cli::command()
                .try_get_matches_from(["sms-audit", "serve", flag.as_str()])
                .map_err(|e| at(first_line(&e.to_string())))?;
            flags.push(OsString::from(flag));
        }
        let id = arg.get_id().as_str();
        // Global flags are in the top-level matches, serve's in its own.
        let set_by = if arg.is_global_set() {
            matches.value_source(id)
        } else {
            match sub {
                Some(("serve", m)) => m.value_source(id),
                _ => continue, // another command: serve's keys do not apply
            }
        };
        if !matches!(
            set_by,
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            extra.extend(flags);
        }
    }
    Ok(extra)
}

/// A TOML value as the text(s) a flag would take: an array for a repeatable flag.
fn texts(value: &toml::Value) -> Result<Vec<String>, String> {
    match value {
        toml::Value::String(s) => Ok(vec![s.clone()]),
        toml::Value::Integer(n) => Ok(vec![n.to_string()]),
        toml::Value::Float(f) => Ok(vec![f.to_string()]),
        toml::Value::Boolean(b) => Ok(vec![b.to_string()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|v| match v {
                toml::Value::Array(_) | toml::Value::Table(_) => {
                    Err("an array may hold only strings, numbers and booleans".to_string())
                }
                v => texts(v).map(|mut t| t.remove(0)),
            })
            .collect(),
        toml::Value::Datetime(d) => Ok(vec![d.to_string()]),
        toml::Value::Table(_) => Err("a table is not a value (keys are at the top level)".into()),
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or(s)
        .trim_start_matches("error: ")
        .to_string()
}

/// `config check`: what `serve` would run with, and where each value comes from.
pub fn check(argv0: OsString, config: Option<&Path>) -> Result<ExitCode, CliError> {
    let mut argv = vec![argv0, OsString::from("serve")];
    let mut from_file = std::collections::BTreeSet::new();
    if let Some(path) = config {
        let empty = Cli::command()
            .try_get_matches_from(&argv)
            .map_err(|e| fail(first_line(&e.to_string())))?;
        let extra = self::from_file(path, &empty)?;
        for a in &extra {
            let text = a.to_string_lossy();
            let key = text
                .trim_start_matches("--")
                .split('=')
                .next()
                .unwrap_or_default()
                .to_string();
            from_file.insert(key);
        }
        argv.extend(extra);
    }
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .map_err(|e| fail(first_line(&e.to_string())))?;
    let (_, serve) = matches.subcommand().expect("serve");
    say!("{:<28} {:<9} VALUE", "KEY", "FROM")?;
    for (key, arg) in known_args() {
        let id = arg.get_id().as_str();
        let m = if arg.is_global_set() { &matches } else { serve };
        let mut source = match m.value_source(id) {
            Some(ValueSource::CommandLine) if from_file.contains(&key) => "file",
            Some(ValueSource::EnvVariable) => "env",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let mut raw: Vec<String> = m
            .get_raw(id)
            .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        if let (true, Some(value)) = (raw.is_empty(), computed_default(&key, &matches)) {
            (source, raw) = ("default", vec![value]);
        }
        let shown = if raw.is_empty() {
            match m.get_flag_safe(id) {
                Some(true) => "true".to_string(),
                Some(false) => "false".to_string(),
                None => "-".to_string(),
            }
        } else if SECRET_KEYS.contains(&key.as_str()) {
            "******** (set)".to_string()
        } else if key == "notify-url" {
            let shown: Vec<String> = raw
                .iter()
                .flat_map(|v| v.split(','))
                .map(crate::domain::without_path)
                .collect();
            shown.join(",")
        } else if key == "upstream-endpoint" {
            crate::domain::without_userinfo(&raw.join(","))
        } else {
            raw.join(",")
        };
        say!("{key:<28} {source:<9} {shown}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The defaults `serve` works out when it starts rather than writes in its
/// flags: what it would use, so that `config check` shows it.
fn computed_default(key: &str, matches: &ArgMatches) -> Option<String> {
    match key {
        "workers" => Some(format!(
            "{} (one per core)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        )),
        "log-origin" => Some(crate::services::checkpoints::default_origin()),
        "signing-key" => {
            let db = matches.get_one::<PathBuf>("db")?;
            Some(format!("{}.signing-key", db.display()))
        }
        _ => None,
    }
}

trait FlagSafe {
    fn get_flag_safe(&self, id: &str) -> Option<bool>;
}

impl FlagSafe for ArgMatches {
    /// A `SetTrue` flag's value; none for arguments of other kinds.
    fn get_flag_safe(&self, id: &str) -> Option<bool> {
        self.try_get_one::<bool>(id).ok().flatten().copied()
    }
}
