//! The `sms-audit` binary: logging set up, then the command line in `cli`.

use std::io::IsTerminal;
use std::process::ExitCode;

use sms_audit::cli::logging::{Lingering, PlainFields, SecondCache, LOG_LINGER};
use sms_audit::cli::{parse, run, CliError, LogFormat, ParseError};
use tracing_subscriber::EnvFilter;

// glibc's allocator cost about a tenth of the request path's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    keep_memory_in_small_pages();
    let cli = match parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(ParseError::Clap(e)) => e.exit(),
        Err(ParseError::Config(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,refinery_core=warn"));
    // Lines are written by a thread of their own, in batches: a write(2) per
    // access line cost more than the rest of the request's logging. Never lossy
    // (a full buffer makes the caller wait); flushed when `flush` drops.
    let (log_writer, flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("sms-audit-log")
        .finish(Lingering::new(
            std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()),
            LOG_LINGER,
        ));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(SecondCache)
        .with_writer(log_writer);
    match cli.log_format {
        LogFormat::Text => logs
            .fmt_fields(PlainFields)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let result = run(cli).await;
    drop(flush); // the log's last lines before any error below
    match result {
        Ok(code) => code,
        Err(CliError::OutputClosed) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// mimalloc asks Linux for transparent huge pages on its arenas, so every 4 KiB
/// it touches makes 2 MiB resident: the idle service showed 50 MiB instead of
/// 25, and 150 bodies pushed at once took it past its 100 MB bound. Small pages
/// cost a few per cent of durable ingest at most (BENCHMARKS.md, issue 21).
fn keep_memory_in_small_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
