//! `tls self-signed`: a certificate and key for a quick start with HTTPS.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::{fail, CliError};

#[derive(Subcommand, Debug)]
pub enum TlsCommand {
    /// Write a self-signed certificate (`cert.pem`) and its key (`key.pem`, mode
    /// 0600) for the given host names, for `serve --tls-cert --tls-key`. Agents
    /// must then trust `cert.pem`.
    SelfSigned {
        /// A host name or IP address the certificate is for (repeatable).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// The folder to write into (created if needed).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: TlsCommand) -> Result<ExitCode, CliError> {
    let TlsCommand::SelfSigned { hosts, out } = cmd;
    let certified = rcgen::generate_simple_self_signed(hosts.clone()).map_err(fail)?;
    std::fs::create_dir_all(&out).map_err(|e| fail(format!("{}: {e}", out.display())))?;
    let (cert, key) = (out.join("cert.pem"), out.join("key.pem"));
    // Neither is written when either is there: a pair must stay a pair.
    if let Some(there) = [&cert, &key]
        .into_iter()
        .find(|p| p.symlink_metadata().is_ok())
    {
        return Err(fail(format!(
            "{} exists: remove it first, or write elsewhere with --out (a key is never overwritten)",
            there.display()
        )));
    }
    write_private(&cert, certified.cert.pem().as_bytes())?;
    write_private(&key, certified.key_pair.serialize_pem().as_bytes())?;
    say!(
        "wrote {} and {} for {}",
        cert.display(),
        key.display(),
        hosts.join(", ")
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Creates a file readable by its owner only; an existing file (a key above
/// all) or a link at the name is never overwritten.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let written =
        crate::storage::files::create_new_private(path).and_then(|mut f| f.write_all(bytes));
    written.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => fail(format!(
            "{} exists: remove it first, or write elsewhere with --out (a key is never overwritten)",
            path.display()
        )),
        _ => fail(format!("{}: {e}", path.display())),
    })
}
