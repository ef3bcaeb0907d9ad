//! The state store: one SQLite database (WAL mode) in the data directory.
//!
//! Tables (see [`schema`]): accounts (local login, Argon2id password hash,
//! Microsoft mailbox, auth profile), tokens (sealed with XChaCha20-Poly1305,
//! see [`crypto`]), folders (remote id, UIDVALIDITY, UIDNEXT, delta link),
//! messages (the UID ↔ remote immutable id map with flags, size and date),
//! the message cache index, the SMTP spool, and failed logins per client
//! address and login ([`login_failures`]).
//!
//! Migrations are versioned with `PRAGMA user_version`; each runs in one
//! transaction, so a database is always at a known version. UIDs are assigned
//! here, in the same transaction that bumps UIDNEXT, so they are never reused
//! (RFC 3501 §2.3.1.1).
//!
//! The API is synchronous (SQLite calls take microseconds; commits fsync).
//! Async callers hold the lock only for one short call; bulk work goes through
//! `tokio::task::spawn_blocking`.

pub mod account_settings;
pub mod accounts;
pub mod cache;
pub mod console_admin;
pub mod crypto;
pub mod folder_tree;
pub mod folders;
pub mod login_failures;
pub mod modseq;
pub mod schema;
pub mod spool;
pub mod subscriptions;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

pub use accounts::{Account, AccountId, AccountState, AppCredential, AuthProfile, NewAccount};
pub use cache::CacheEntry;
pub use crypto::{KeySource, StoreKey};
pub use folders::{FolderId, FolderRecord, MessageRecord, Uid, UidValidity};
pub use spool::{
    DeliveryMethod, NewSpoolEntry, SpoolEntry, SpoolId, SpoolInsert, SpoolState, SpoolUpdate,
};

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the database {path} is at schema version {found}, newer than this graphgate knows ({known}); upgrade graphgate"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("no account named {0:?}; list them with `graphgate accounts list`")]
    NoSuchAccount(String),
    #[error("an account named {0:?} already exists")]
    AccountExists(String),
    #[error("stored tokens could not be decrypted: {0}")]
    Crypto(String),
    /// The key file is unusable as it stands (e.g. others may read it).
    #[error("{0}")]
    KeyFile(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A setting the store was given is unusable (the sentence names the
    /// configuration key).
    #[error("{0}")]
    Setting(String),
    #[error("the database lock was poisoned by a panic in another thread")]
    Poisoned,
}

/// A handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Store {
    /// The database file inside a data directory.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("graphgate.sqlite3")
    }

    /// Open (creating if needed) the database in `data_dir` and bring its
    /// schema up to date.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        restrict_dir_permissions(data_dir);
        let path = Store::path_in(data_dir);
        let conn = Connection::open(&path)?;
        restrict_file_permissions(&path);
        Store::init(conn, path)
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?, PathBuf::from(":memory:"))
    }

    fn init(mut conn: Connection, path: PathBuf) -> Result<Store, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is durable when it returns. The spool's promise
        // ("a 250 is never lost") depends on it.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&mut conn, &path)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let conn = self.lock()?;
        Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(unix)]
fn restrict_dir_permissions(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[cfg(unix)]
pub(crate) fn restrict_file_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_dir_permissions(_dir: &Path) {}

#[cfg(not(unix))]
pub(crate) fn restrict_file_permissions(_path: &Path) {}
