//! `export`: uploads for auditors, as CSV or JSON lines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::{fail, open_existing, output_error, CliError};
use crate::domain::TaskId;
use crate::services::export::{self, ExportFilter};

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// csv: a row per result item; jsonl: a JSON object per upload, with its raw body.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: export::Format,
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

pub fn run(db: &Path, args: ExportArgs) -> Result<ExitCode, CliError> {
    let conn = open_existing(db)?;
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
    crate::domain::check_range(args.since, args.until).map_err(fail)?;
    let written = match &args.out {
        None => export::write(
            &conn,
            &filter,
            args.format,
            std::io::stdout().lock(),
            |_| {},
        )
        .map_err(|e| match e {
            export::ExportError::Write(e) => output_error(e),
            other => fail(other),
        })?,
        Some(path) => {
            // Written under a temporary name, owner-only, and renamed into place
            // once whole: a link at `path` is replaced, never written through.
            let mut replacement = crate::storage::files::Replacement::new(path)
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            let bar = indicatif::ProgressBar::new(export::estimate(&conn, &filter).map_err(fail)?);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} uploads, {per_sec}, {eta} left",
                )
                .map_err(fail)?,
            );
            let n = export::write(&conn, &filter, args.format, replacement.file(), |n| {
                bar.set_position(n)
            })
            .map_err(fail)?;
            replacement
                .commit()
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            bar.finish_and_clear();
            eprintln!(
                "exported {} to {}",
                crate::domain::counted(n, "upload"),
                path.display()
            );
            n
        }
    };
    tracing::debug!(written, "export done");
    Ok(ExitCode::SUCCESS)
}
