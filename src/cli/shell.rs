//! `completions` and `man`: shell completions and manual pages, generated from
//! the same clap definitions the command line parses with.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;

use super::{fail, output_error, Cli, CliError};

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write a page per command (`sms-audit.1`, `sms-audit-serve.1`, …) into this
    /// directory instead of the main page to standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> Result<ExitCode, CliError> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "sms-audit", &mut out);
    write_stdout(&out)
}

pub fn man(args: ManArgs) -> Result<ExitCode, CliError> {
    let command = Cli::command();
    match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| fail(format!("--out {}: {e}", dir.display())))?;
            clap_mangen::generate_to(command, &dir)
                .map_err(|e| fail(format!("--out {}: {e}", dir.display())))?;
            say!("manual pages written to {}", dir.display())?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut out)
                .map_err(fail)?;
            write_stdout(&out)
        }
    }
}

fn write_stdout(bytes: &[u8]) -> Result<ExitCode, CliError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).map_err(output_error)?;
    stdout.flush().map_err(output_error)?;
    Ok(ExitCode::SUCCESS)
}
