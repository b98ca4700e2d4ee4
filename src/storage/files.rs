//! Files sms-audit writes beside the database and where its operator points it
//! (lock and token files, checkpoints, exports, keys): never through a symbolic
//! link planted at the name, owner-only (0600), and replaced whole — written
//! under a random temporary name created exclusively, then renamed over the
//! name (a link there is replaced, not followed).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `options` open `path` only if it is not a symbolic link (then `ELOOP`).
pub fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    options.custom_flags(libc::O_NOFOLLOW).mode(0o600)
}

/// Creates `path`, owner-only; fails if anything (a link too) is there.
pub fn create_new_private(path: &Path) -> std::io::Result<File> {
    no_follow(OpenOptions::new().write(true).create_new(true)).open(path)
}

/// A file being written under a temporary name beside `path`; it takes `path`'s
/// name only on [`Replacement::commit`] (dropped before, it is removed).
pub struct Replacement {
    file: Option<File>,
    temporary: PathBuf,
    path: PathBuf,
}

impl Replacement {
    /// A temporary file beside `path`, to replace it with.
    pub fn new(path: &Path) -> std::io::Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::other("not a file name"))?
            .to_string_lossy();
        let temporary =
            path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::now_v7().simple()));
        Ok(Self {
            file: Some(create_new_private(&temporary)?),
            temporary,
            path: path.to_path_buf(),
        })
    }

    /// The temporary file, to write.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("not committed yet")
    }

    /// Flushes to disk and renames over `path`.
    pub fn commit(mut self) -> std::io::Result<()> {
        let file = self.file.take().expect("committed once");
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.temporary, &self.path)
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// Writes `bytes` as the whole new content of `path` (see [`Replacement`]).
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut replacement = Replacement::new(path)?;
    replacement.file().write_all(bytes)?;
    replacement.commit()
}

/// Whether `path` (a key, a file holding secrets) lets others than its owner in:
/// a warning, or with `strict` (`--strict-permissions`) a refusal, naming `what`.
pub fn check_private(path: &Path, what: &str, strict: bool) -> Result<(), PrivateRefused> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let why = NotPrivate {
        what: what.to_string(),
        path: path.to_path_buf(),
        mode,
    };
    if strict {
        return Err(PrivateRefused(why));
    }
    tracing::warn!("{why}");
    Ok(())
}

/// [`NotPrivate`] under `--strict-permissions`.
#[derive(Debug, thiserror::Error)]
#[error("{0} (--strict-permissions refuses it)")]
pub struct PrivateRefused(pub NotPrivate);

/// A file others than its owner may read or change.
#[derive(Debug, thiserror::Error)]
#[error("{what} {} may be read or changed by others than its owner (mode {mode:04o}): `chmod 600` it", path.display())]
pub struct NotPrivate {
    /// What the file is (`the database`, `the key`, …).
    pub what: String,
    /// Its path.
    pub path: std::path::PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_link_is_replaced_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("out");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        replace(&link, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "new");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&link).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Exclusive creation refuses a link, and no-follow opens refuse one.
        std::os::unix::fs::symlink(&target, dir.path().join("lnk")).unwrap();
        assert!(create_new_private(&dir.path().join("lnk")).is_err());
        assert!(no_follow(OpenOptions::new().read(true))
            .open(dir.path().join("lnk"))
            .is_err());
        // Nothing left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 3);
    }
}
