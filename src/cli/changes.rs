//! `changes`: what changed in the fleet between two moments.

use std::path::Path;
use std::process::ExitCode;

use super::{fail, open_existing, output_error, CliError};
use crate::domain::{format_timestamp, parse_time_arg};
use crate::services::fleet::{self, ChangeFilter, ChangeSort};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangesFormat {
    Table,
    Csv,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct ChangesArgs {
    /// The first moment: RFC 3339, or a date meaning 00:00 UTC.
    #[arg(long)]
    pub from: String,
    /// The second moment (not before --from); `now` by default.
    #[arg(long, default_value = "now")]
    pub to: String,
    /// Only tasks with this verdict: new, improved, regressed, unchanged, or clean.
    #[arg(long)]
    pub verdict: Option<String>,
    /// change (largest increase in problems first) or task (by id).
    #[arg(long, default_value = "change")]
    pub sort: String,
    /// How to print: a table for people, CSV for spreadsheets, JSON for programs.
    #[arg(long, value_enum, default_value_t = ChangesFormat::Table)]
    pub format: ChangesFormat,
}

pub fn run(db: &Path, args: ChangesArgs) -> Result<ExitCode, CliError> {
    let from = parse_time_arg(&args.from).map_err(|e| fail(format!("--from: {e}")))?;
    let to = parse_time_arg(&args.to).map_err(|e| fail(format!("--to: {e}")))?;
    if from > to {
        return Err(fail("--from must not be after --to"));
    }
    let filter = ChangeFilter::parse(args.verdict.as_deref()).map_err(fail)?;
    let sort = ChangeSort::parse(Some(&args.sort)).map_err(fail)?;
    let conn = open_existing(db)?;
    let changes = fleet::changes(&conn, from, to).map_err(fail)?;
    let rows = changes.select(filter, sort).all(&conn).map_err(fail)?;
    let stdout = std::io::stdout().lock();
    match args.format {
        ChangesFormat::Csv => {
            fleet::write_changes_csv(&rows, stdout).map_err(|e| match e.into_kind() {
                csv::ErrorKind::Io(io) => output_error(io),
                other => fail(format!("{other:?}")),
            })?
        }
        ChangesFormat::Json => {
            say!(
                "{}",
                crate::http::json::changes(
                    from,
                    to,
                    &changes.counts,
                    &crate::http::json::ChangesPage {
                        total: rows.len(),
                        next_offset: None,
                        rows,
                    }
                )
            )?;
        }
        ChangesFormat::Table => {
            let c = &changes.counts;
            say!(
                "from {} to {}: {} new, {} improved, {} regressed, {} unchanged; {} clean",
                format_timestamp(from),
                format_timestamp(to),
                c.new,
                c.improved,
                c.regressed,
                c.unchanged,
                c.clean
            )?;
            say!(
                "{:<38} {:<10} {:>9} {:>9} {:>9}  CLEAN",
                "TASK",
                "VERDICT",
                "PROBLEMS",
                "WAS",
                "CHANGE"
            )?;
            for r in &rows {
                say!(
                    "{:<38} {:<10} {:>9} {:>9} {:>+9}  {}",
                    r.task_id,
                    r.verdict.as_str(),
                    r.to.problems,
                    r.from
                        .as_ref()
                        .map_or("-".to_string(), |s| s.problems.to_string()),
                    r.problems_change,
                    if r.clean { "yes" } else { "" }
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
