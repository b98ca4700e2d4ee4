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
    #[arg(long, conflicts_with = "markdown")]
    pub out: Option<PathBuf>,
    /// The whole command-line reference as one Markdown page instead (what
    /// `docs/cli.md` is: `sms-audit man --markdown > docs/cli.md`).
    #[arg(long)]
    pub markdown: bool,
}

/// The command-line reference as Markdown, from the same clap definitions as
/// the manual pages and `--help`.
pub fn markdown_reference() -> String {
    clap_markdown::help_markdown_command(&Cli::command())
}

pub fn completions(args: CompletionsArgs) -> Result<ExitCode, CliError> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "sms-audit", &mut out);
    write_stdout(&out)
}

pub fn man(args: ManArgs) -> Result<ExitCode, CliError> {
    if args.markdown {
        return write_stdout(markdown_reference().as_bytes());
    }
    let command = for_man(Cli::command());
    match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| fail(format!("--out {}: {e}", dir.display())))?;
            write_pages(command, &dir)
                .map_err(|e| fail(format!("--out {}: {e}", dir.display())))?;
            say!("manual pages written to {}", dir.display())?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let mut out = Vec::new();
            render(command, &mut out).map_err(fail)?;
            write_stdout(&out)
        }
    }
}

/// A page for the command and one for each visible subcommand, named as
/// clap_mangen names them (`sms-audit-serve.1`).
fn write_pages(command: clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    fn write(command: clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
        for sub in command
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
        {
            write(sub, dir)?;
        }
        let name = clap_mangen::Man::new(command.clone()).get_filename();
        let mut page = Vec::new();
        render(command, &mut page)?;
        std::fs::write(dir.join(name), page)
    }
    let mut command = command.disable_help_subcommand(true);
    command.build();
    write(command, dir)
}

/// clap_mangen's page, with a DESCRIPTION only when there is more to say than
/// the NAME line.
fn render(command: clap::Command, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut page = Vec::new();
    sections(command, &mut page)?;
    // Each section repeats roff's quote-string preamble: keep the first.
    let text = String::from_utf8_lossy(&page);
    let mut seen = std::collections::HashSet::new();
    for line in text.lines() {
        let preamble = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        if preamble && !seen.insert(line.to_string()) {
            continue;
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn sections(command: clap::Command, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    if command.get_long_about().is_some() {
        man.render_description_section(out)?;
    }
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(out)?;
    }
    if command.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(out)?;
    }
    if command.get_version().is_some() {
        man.render_version_section(out)?;
    }
    Ok(())
}

/// The help texts as a manual page shows them: no Markdown backticks (roff
/// prints them as they are), and a DESCRIPTION that does not repeat the NAME
/// line (clap's long help starts with the short one).
fn for_man(command: clap::Command) -> clap::Command {
    let plain = |s: &clap::builder::StyledStr| s.to_string().replace('`', "");
    let about = command.get_about().map(plain);
    let long_about = command.get_long_about().map(plain).and_then(|long| {
        let rest = match &about {
            Some(short) => long.strip_prefix(short.as_str()).unwrap_or(&long),
            None => &long,
        };
        let rest = rest.trim_start_matches(['.', '\n', ' ']).trim().to_string();
        (!rest.is_empty()).then_some(rest)
    });
    let ids: Vec<clap::Id> = command
        .get_arguments()
        .map(|a| a.get_id().clone())
        .collect();
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let mut command = match about {
        Some(about) => command.about(about),
        None => command,
    };
    command = match long_about {
        Some(long) => command.long_about(long),
        None => command.long_about(None::<&str>),
    };
    for id in ids {
        command = command.mut_arg(id, |a| {
            let help = a.get_help().map(plain);
            let long_help = a.get_long_help().map(plain);
            let a = match help {
                Some(h) => a.help(h),
                None => a,
            };
            match long_help {
                Some(h) => a.long_help(h),
                None => a,
            }
        });
    }
    for name in names {
        command = command.mut_subcommand(name, for_man);
    }
    command
}

fn write_stdout(bytes: &[u8]) -> Result<ExitCode, CliError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).map_err(output_error)?;
    stdout.flush().map_err(output_error)?;
    Ok(ExitCode::SUCCESS)
}
