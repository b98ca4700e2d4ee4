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

/// Creates (or replaces) a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(path).and_then(|mut f| {
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(bytes)
    });
    written.map_err(|e| fail(format!("{}: {e}", path.display())))
}
