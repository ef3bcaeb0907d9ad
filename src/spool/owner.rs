//! Which process delivers a data directory's spool.
//!
//! The spool's exactly-once argument assumes one deliverer per data
//! directory: within a process the `in_flight` set keeps the worker off an
//! entry a session is sending, but two processes know nothing of each
//! other's attempts — a second worker would take a `sending` row that is in
//! flight elsewhere for an interrupted one and resolve it. So whoever
//! attempts deliveries holds an advisory lock on `<data dir>/spool/owner.lock`
//! (`flock`, released by the kernel when the process dies, so a crash never
//! leaves it held):
//!
//! - a gateway (`serve`, `demo`) holds it for its whole life, and refuses to
//!   start while another gateway holds it;
//! - `graphgate send-test` holds it while it makes its own attempt when no
//!   gateway runs; when one does, it hands its message to that gateway's
//!   worker instead (a row due at once) and only watches.
//!
//! The file also says who holds it (`gateway pid 123`), for messages and
//! for `graphgate doctor`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What the holder is doing with the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerRole {
    /// `serve` or `demo`: the worker and the SMTP listeners.
    Gateway,
    /// `send-test`: one message of its own.
    SendTest,
    /// `keys rotate`: no gateway may seal tokens with the old key meanwhile.
    KeyRotation,
}

impl OwnerRole {
    fn as_str(self) -> &'static str {
        match self {
            OwnerRole::Gateway => "gateway",
            OwnerRole::SendTest => "send-test",
            OwnerRole::KeyRotation => "keys-rotate",
        }
    }
}

/// Who holds the lock, as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `None` when the file does not say (being written, or foreign).
    pub role: Option<OwnerRole>,
    pub pid: Option<u32>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.role {
            Some(OwnerRole::Gateway) => "a running graphgate gateway (serve or demo)",
            Some(OwnerRole::SendTest) => "a running `graphgate send-test`",
            Some(OwnerRole::KeyRotation) => "a running `graphgate keys rotate`",
            None => "another graphgate process",
        };
        match self.pid {
            Some(pid) => write!(f, "{what}, pid {pid}"),
            None => f.write_str(what),
        }
    }
}

/// The held lock; dropping it releases the spool.
#[derive(Debug)]
pub struct SpoolOwner {
    _file: File,
    path: PathBuf,
}

/// The lock file of `data_dir`.
pub fn owner_lock_path(data_dir: &Path) -> PathBuf {
    super::spool_dir(data_dir).join("owner.lock")
}

impl SpoolOwner {
    /// Take the spool of `data_dir` for `role`, or say who has it.
    pub fn try_acquire(data_dir: &Path, role: OwnerRole) -> std::io::Result<Result<Self, Holder>> {
        let path = owner_lock_path(data_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0)?;
                file.seek(SeekFrom::Start(0))?;
                writeln!(file, "{} pid {}", role.as_str(), std::process::id())?;
                file.flush()?;
                Ok(Ok(SpoolOwner { _file: file, path }))
            }
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.take(200).read_to_string(&mut text);
                Ok(Err(parse_holder(&text)))
            }
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Who holds the spool of `data_dir` now, if anyone (without taking it).
    pub fn holder(data_dir: &Path) -> std::io::Result<Option<Holder>> {
        let path = owner_lock_path(data_dir);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // A shared lock succeeds only when nobody holds the exclusive one.
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                Ok(None)
            }
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.take(200).read_to_string(&mut text);
                Ok(Some(parse_holder(&text)))
            }
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn parse_holder(text: &str) -> Holder {
    let mut words = text.split_whitespace();
    let word = words.next();
    let role = [
        OwnerRole::Gateway,
        OwnerRole::SendTest,
        OwnerRole::KeyRotation,
    ]
    .into_iter()
    .find(|r| Some(r.as_str()) == word);
    let pid = match (words.next(), words.next()) {
        (Some("pid"), Some(n)) => n.parse().ok(),
        _ => None,
    };
    Holder { role, pid }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SpoolOwner::holder(dir.path()).unwrap(), None);
        let owner = SpoolOwner::try_acquire(dir.path(), OwnerRole::Gateway)
            .unwrap()
            .unwrap();
        // flock locks belong to open file descriptions: a second open in
        // the same process conflicts as another process would.
        let held = SpoolOwner::try_acquire(dir.path(), OwnerRole::SendTest)
            .unwrap()
            .unwrap_err();
        assert_eq!(held.role, Some(OwnerRole::Gateway));
        assert_eq!(held.pid, Some(std::process::id()));
        assert_eq!(SpoolOwner::holder(dir.path()).unwrap(), Some(held));
        drop(owner);
        assert_eq!(SpoolOwner::holder(dir.path()).unwrap(), None);
        let again = SpoolOwner::try_acquire(dir.path(), OwnerRole::SendTest)
            .unwrap()
            .unwrap();
        assert_eq!(
            SpoolOwner::holder(dir.path()).unwrap().unwrap().role,
            Some(OwnerRole::SendTest)
        );
        drop(again);
    }

    #[test]
    fn unreadable_holder_text_is_someone_unknown() {
        assert_eq!(
            parse_holder(""),
            Holder {
                role: None,
                pid: None
            }
        );
        assert_eq!(
            parse_holder("send-test pid 42\n"),
            Holder {
                role: Some(OwnerRole::SendTest),
                pid: Some(42)
            }
        );
    }
}
