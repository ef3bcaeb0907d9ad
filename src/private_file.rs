//! Files that hold or name secrets (the configuration, the token key, the
//! TLS private key): written so that only their owner may read them, and
//! refused when group or others may. A leaf module: the configuration, the
//! store and the TLS set-up all use it, and it uses none of them.

use std::path::{Path, PathBuf};

/// Why a file that must be private cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Group or others may read or write it.
    #[error(
        "{what} {} is readable or writable by group or others (mode {mode:04o}), so graphgate \
         refuses to use it; fix: chmod 600 {} (owned by the user graphgate runs as; a Docker \
         secret: mount it with mode 0400)",
        path.display(),
        path.display()
    )]
    NotPrivate {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
}

/// Refuse `path` when group or others may read or write it (mode bits,
/// so this holds for root too): the configuration names where secrets
/// are, and the key file is one. `what` names the file in the message.
pub fn check(path: &Path, what: &'static str) -> Result<(), PrivateFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| PrivateFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o066 != 0 {
            return Err(PrivateFileError::NotPrivate {
                what,
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}

/// Write a file only its owner may read (mode 0600, also when it existed
/// with a wider mode), fsync'ed.
pub fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(contents)?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path)?;
        file.write_all(contents)?;
        file.sync_all()
    }
}
