//! Local accounts: what a legacy application logs in with (a login name and
//! a password, stored as an Argon2id hash), and the Microsoft mailbox and
//! auth profile behind it.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, password_hash::rand_core::OsRng};
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, now_unix};
use crate::secret::Secret;

/// Row id of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub i64);

/// How an account gets its Graph tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuthProfile {
    /// A user signed in (device code or browser); tokens refresh with a
    /// refresh token. Graph addresses the mailbox as `/me`.
    Delegated,
    /// Client credentials (application permissions). Graph addresses the
    /// mailbox as `/users/{mailbox}`; no refresh token exists.
    AppOnly,
}

/// ONLINE: the account has a usable grant. OFFLINE: it needs attention
/// (`last_error` says what and how to fix it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    Online,
    Offline,
}

impl AccountState {
    fn as_str(self) -> &'static str {
        match self {
            AccountState::Online => "online",
            AccountState::Offline => "offline",
        }
    }

    fn parse(s: &str) -> AccountState {
        if s == "online" {
            AccountState::Online
        } else {
            AccountState::Offline
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub login: String,
    /// The Microsoft mailbox (UPN / primary SMTP address).
    pub mailbox: String,
    pub auth_profile: AuthProfile,
    /// Other From addresses this account may use (aliases, Send As).
    pub aliases: Vec<String>,
    /// Shared mailboxes this account may read.
    pub shared_mailboxes: Vec<String>,
    pub state: AccountState,
    pub last_error: Option<String>,
    /// Keep a copy of what it sends through SMTP in Sent Items.
    pub save_to_sent_items: bool,
    /// An app-only account's own app registration, when it does not use
    /// the one of the `microsoft.*` configuration.
    pub app_credential: Option<AppCredential>,
    /// The folder IMAP presents as INBOX, by its IMAP name (e.g.
    /// `INBOX/Support`, `Shared/support@contoso.com/INBOX`); `None`: the
    /// mailbox's own Inbox.
    pub imap_inbox: Option<String>,
    /// Whether a message an IMAP session fetched in full stays on the
    /// server (`false`: it is deleted when the session closes the folder
    /// or logs out, as a POP3 client without "leave on server" would).
    pub keep_fetched: bool,
}

/// Where an app-only account's credential comes from. Secrets stay in
/// their files (a Docker secret, mode 0600): the store keeps only paths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCredential {
    /// Application (client) id; default: `microsoft.client_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Tenant id or domain; default: `microsoft.tenant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_file: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<std::path::PathBuf>,
    /// Sign the certificate assertion with RS256/`x5t` instead of
    /// PS256/`x5t#S256`.
    #[serde(default)]
    pub rs256: bool,
}

/// What `accounts add` supplies.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub login: String,
    pub password: Secret<String>,
    pub mailbox: String,
    pub auth_profile: AuthProfile,
    pub aliases: Vec<String>,
    pub shared_mailboxes: Vec<String>,
}

impl NewAccount {
    /// A delegated account whose login is its mailbox address, with no
    /// aliases or shared mailboxes (what `accounts add LOGIN` makes).
    pub fn delegated(login: &str, password: &str) -> NewAccount {
        NewAccount {
            login: login.to_string(),
            password: Secret::new(password.to_string()),
            mailbox: login.to_string(),
            auth_profile: AuthProfile::Delegated,
            aliases: Vec::new(),
            shared_mailboxes: Vec::new(),
        }
    }
}

const COLUMNS: &str = "id, login, mailbox, auth_profile, aliases, shared_mailboxes, state, last_error, \
     save_to_sent_items, app_credential, imap_inbox, keep_fetched";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    let json_err = |i: usize, e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    };
    let profile: String = row.get(3)?;
    let aliases: String = row.get(4)?;
    let shared: String = row.get(5)?;
    let state: String = row.get(6)?;
    Ok(Account {
        id: AccountId(row.get(0)?),
        login: row.get(1)?,
        mailbox: row.get(2)?,
        auth_profile: serde_json::from_str(&profile).map_err(|e| json_err(3, e))?,
        aliases: serde_json::from_str(&aliases).map_err(|e| json_err(4, e))?,
        shared_mailboxes: serde_json::from_str(&shared).map_err(|e| json_err(5, e))?,
        state: AccountState::parse(&state),
        last_error: row.get(7)?,
        save_to_sent_items: row.get(8)?,
        app_credential: match row.get::<_, Option<String>>(9)? {
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| json_err(9, e))?),
            None => None,
        },
        imap_inbox: row.get(10)?,
        keep_fetched: row.get(11)?,
    })
}

/// The Argon2id parameters of new hashes (`login_limit.argon2_*`). A
/// hash carries its own in its PHC string (`$argon2id$v=19$m=…,t=…,p=…$`),
/// so changing these never breaks an existing password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordParams {
    /// The argon2 crate's defaults, OWASP's first Argon2id choice
    /// (Password Storage Cheat Sheet: m=19 MiB, t=2, p=1).
    fn default() -> Self {
        PasswordParams {
            memory_kib: argon2::Params::DEFAULT_M_COST,
            iterations: argon2::Params::DEFAULT_T_COST,
            parallelism: argon2::Params::DEFAULT_P_COST,
        }
    }
}

impl PasswordParams {
    fn argon2(self) -> Result<Argon2<'static>, StoreError> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| {
                StoreError::Setting(format!(
                    "login_limit.argon2_memory_kib / argon2_iterations / argon2_parallelism \
                     (m={}, t={}, p={}) are not valid Argon2id parameters: {e}",
                    self.memory_kib, self.iterations, self.parallelism
                ))
            })?;
        Ok(Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

static PASSWORD_PARAMS: std::sync::RwLock<Option<PasswordParams>> = std::sync::RwLock::new(None);

/// Use `params` for the hashes this process makes from now on (and for the
/// dummy hash an unknown login is verified against); refused, with the
/// keys to fix, when Argon2id does not accept them.
pub fn set_password_params(params: PasswordParams) -> Result<(), StoreError> {
    params.argon2()?;
    if let Ok(mut p) = PASSWORD_PARAMS.write() {
        *p = Some(params);
    }
    Ok(())
}

fn password_params() -> PasswordParams {
    PASSWORD_PARAMS
        .read()
        .ok()
        .and_then(|p| *p)
        .unwrap_or_default()
}

/// Hash a password with Argon2id ([`set_password_params`]; by default
/// 19 MiB, 2 passes, 1 lane).
pub fn hash_password(password: &Secret<String>) -> Result<String, StoreError> {
    hash_with(password_params(), password)
}

fn hash_with(params: PasswordParams, password: &Secret<String>) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut OsRng);
    params
        .argon2()?
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Crypto(format!("cannot hash password: {e}")))
}

/// Verify with the parameters the PHC string carries; counted on
/// `/metrics` (`known`: the login exists) when Argon2id really ran.
fn verify_hash(hash: &str, password: &Secret<String>, known: bool) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => {
            crate::metrics::get().password_check(known);
            Argon2::default()
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok()
        }
        Err(_) => false,
    }
}

impl Store {
    /// Give an app-only account its own app registration (or `None`: the
    /// configuration's).
    pub fn set_app_credential(
        &self,
        login: &str,
        credential: Option<&AppCredential>,
    ) -> Result<(), StoreError> {
        let text = credential
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let conn = self.lock()?;
        let n = conn.execute(
            "UPDATE accounts SET app_credential = ?1, updated_at = ?2 WHERE login = ?3",
            params![text, now_unix(), login],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchAccount(login.to_string()));
        }
        Ok(())
    }

    /// Set one per-account setting column (a fixed name, never input).
    fn set_account_column(
        &self,
        login: &str,
        column: &'static str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<(), StoreError> {
        let conn = self.lock()?;
        let n = conn.execute(
            &format!("UPDATE accounts SET {column} = ?1, updated_at = ?2 WHERE login = ?3"),
            params![value, now_unix(), login],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchAccount(login.to_string()));
        }
        Ok(())
    }

    /// The folder IMAP shows `login` as INBOX (`None`: its Inbox).
    pub fn set_imap_inbox(&self, login: &str, folder: Option<&str>) -> Result<(), StoreError> {
        self.set_account_column(login, "imap_inbox", &folder)
    }

    /// Whether messages `login` fetched over IMAP stay on the server.
    pub fn set_keep_fetched(&self, login: &str, keep: bool) -> Result<(), StoreError> {
        self.set_account_column(login, "keep_fetched", &keep)
    }

    /// Whether SMTP submissions of `login` leave a copy in Sent Items.
    pub fn set_save_to_sent_items(&self, login: &str, save: bool) -> Result<(), StoreError> {
        self.set_account_column(login, "save_to_sent_items", &save)
    }

    pub fn add_account(&self, new: &NewAccount) -> Result<Account, StoreError> {
        let hash = hash_password(&new.password)?;
        let now = now_unix();
        let conn = self.lock()?;
        let profile = serde_json::to_string(&new.auth_profile)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let aliases = serde_json::to_string(&new.aliases).unwrap_or_else(|_| "[]".into());
        let shared = serde_json::to_string(&new.shared_mailboxes).unwrap_or_else(|_| "[]".into());
        let inserted = conn.execute(
            "INSERT INTO accounts (login, password_hash, mailbox, auth_profile, aliases,
                 shared_mailboxes, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'offline', ?7, ?7)",
            params![new.login, hash, new.mailbox, profile, aliases, shared, now],
        );
        match inserted {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::AccountExists(new.login.clone()));
            }
            Err(e) => return Err(e.into()),
        }
        let id = conn.last_insert_rowid();
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM accounts WHERE id = ?1"),
            [id],
            from_row,
        )
        .map_err(Into::into)
    }

    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM accounts ORDER BY login"))?;
        let rows = stmt.query_map([], from_row)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }

    /// The account with this login name (case-insensitive).
    pub fn account(&self, login: &str) -> Result<Option<Account>, StoreError> {
        let conn = self.lock()?;
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM accounts WHERE login = ?1"),
            [login],
            from_row,
        )
        .optional()
        .map_err(Into::into)
    }

    pub fn account_by_id(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        let conn = self.lock()?;
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM accounts WHERE id = ?1"),
            [id.0],
            from_row,
        )
        .optional()
        .map_err(Into::into)
    }

    /// Check a login and password. `None` for an unknown login or a wrong
    /// password, without saying which. The hash is computed even for an
    /// unknown login, so timing does not tell the two apart.
    pub fn authenticate(
        &self,
        login: &str,
        password: &Secret<String>,
    ) -> Result<Option<Account>, StoreError> {
        let found: Option<(String, i64)> = {
            let conn = self.lock()?;
            conn.query_row(
                "SELECT password_hash, id FROM accounts WHERE login = ?1",
                [login],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
        };
        match found {
            Some((hash, id)) if verify_hash(&hash, password, true) => {
                self.account_by_id(AccountId(id))
            }
            Some(_) => Ok(None),
            None => {
                // Equalise timing with a real verification.
                let _ = verify_hash(&dummy_hash(), password, false);
                Ok(None)
            }
        }
    }

    pub fn set_password(&self, login: &str, password: &Secret<String>) -> Result<(), StoreError> {
        let hash = hash_password(password)?;
        let conn = self.lock()?;
        let n = conn.execute(
            "UPDATE accounts SET password_hash = ?1, updated_at = ?2 WHERE login = ?3",
            params![hash, now_unix(), login],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchAccount(login.to_string()));
        }
        Ok(())
    }

    /// Record ONLINE/OFFLINE and the last error (a sentence with the fix).
    pub fn set_account_state(
        &self,
        id: AccountId,
        state: AccountState,
        last_error: Option<&str>,
    ) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE accounts SET state = ?1, last_error = ?2, updated_at = ?3 WHERE id = ?4",
            params![state.as_str(), last_error, now_unix(), id.0],
        )?;
        Ok(())
    }

    /// Remove an account and everything that belongs to it except spooled
    /// mail (which must still be delivered or bounced).
    pub fn remove_account(&self, login: &str) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let pending: i64 = tx.query_row(
            "SELECT COUNT(*) FROM spool s JOIN accounts a ON a.id = s.account_id
             WHERE a.login = ?1 AND s.state NOT IN ('delivered', 'bounced', 'rejected', 'dropped')",
            [login],
            |r| r.get(0),
        )?;
        if pending > 0 {
            return Err(StoreError::Corrupt(format!(
                "account {login:?} still has {pending} message(s) in the spool; \
                 deliver or drop them first (`graphgate queue list`)"
            )));
        }
        tx.execute(
            "DELETE FROM spool WHERE account_id IN (SELECT id FROM accounts WHERE login = ?1)",
            [login],
        )?;
        let n = tx.execute("DELETE FROM accounts WHERE login = ?1", [login])?;
        if n == 0 {
            return Err(StoreError::NoSuchAccount(login.to_string()));
        }
        super::account_settings::bump_sign_outs(&tx)?;
        tx.commit()?;
        Ok(())
    }
}

/// An Argon2id hash of a random string, made with the current
/// [`PasswordParams`], verified against when the login is unknown so that
/// a wrong login costs as much as a wrong password of a new hash.
fn dummy_hash() -> String {
    static HASH: std::sync::Mutex<Option<(PasswordParams, String)>> = std::sync::Mutex::new(None);
    let params = password_params();
    let Ok(mut cached) = HASH.lock() else {
        return String::new();
    };
    if let Some((p, hash)) = cached.as_ref()
        && *p == params
    {
        return hash.clone();
    }
    let random = uuid::Uuid::new_v4().to_string();
    let hash = hash_password(&Secret::new(random)).unwrap_or_default();
    *cached = Some((params, hash.clone()));
    hash
}

/// The console admin password check: Argon2id against `hash`, or
/// against the dummy hash when none is set (same time either way).
pub(super) fn verify_console_hash(hash: Option<&str>, password: &Secret<String>) -> bool {
    match hash {
        Some(hash) => verify_hash(hash, password, true),
        None => {
            let _ = verify_hash(&dummy_hash(), password, false);
            false
        }
    }
}

/// How long one password check takes with the current parameters here
/// (one dummy verification, timed; for the log at start).
pub fn time_one_check() -> std::time::Duration {
    let hash = dummy_hash();
    let started = std::time::Instant::now();
    if let Ok(parsed) = PasswordHash::new(&hash) {
        let _ = Argon2::default().verify_password(b"timing", &parsed);
    }
    started.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> NewAccount {
        NewAccount {
            login: "alice@example.com".into(),
            password: Secret::new("alice".into()),
            mailbox: "alice@example.com".into(),
            auth_profile: AuthProfile::Delegated,
            aliases: vec!["a@example.com".into()],
            shared_mailboxes: vec![],
        }
    }

    #[test]
    fn hashes_keep_their_own_parameters() {
        let cheap = PasswordParams {
            memory_kib: 8192,
            iterations: 1,
            parallelism: 1,
        };
        let pw = Secret::new("pw".to_string());
        let hash = hash_with(cheap, &pw).unwrap();
        assert!(hash.contains("m=8192,t=1,p=1"), "{hash}");
        // Verified with the parameters the PHC string carries, whatever
        // this process would hash with now.
        assert!(verify_hash(&hash, &pw, true));
        assert!(!verify_hash(&hash, &Secret::new("no".into()), true));
        let wrong = PasswordParams {
            memory_kib: 1,
            ..cheap
        };
        let e = set_password_params(wrong).unwrap_err().to_string();
        assert!(e.contains("login_limit.argon2_memory_kib"), "{e}");
        assert_eq!(password_params(), PasswordParams::default());
    }

    #[test]
    fn add_authenticate_and_remove() {
        let store = Store::open_in_memory().unwrap();
        let account = store.add_account(&alice()).unwrap();
        assert_eq!(account.state, AccountState::Offline);
        assert_eq!(account.aliases, vec!["a@example.com".to_string()]);
        assert!(matches!(
            store.add_account(&alice()),
            Err(StoreError::AccountExists(_))
        ));
        let ok = store
            .authenticate("ALICE@example.com", &Secret::new("alice".into()))
            .unwrap();
        assert_eq!(ok.map(|a| a.id), Some(account.id));
        assert!(
            store
                .authenticate("alice@example.com", &Secret::new("wrong".into()))
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .authenticate("nobody", &Secret::new("alice".into()))
                .unwrap()
                .is_none()
        );
        store
            .set_password("alice@example.com", &Secret::new("new".into()))
            .unwrap();
        assert!(
            store
                .authenticate("alice@example.com", &Secret::new("new".into()))
                .unwrap()
                .is_some()
        );
        store
            .set_account_state(account.id, AccountState::Online, None)
            .unwrap();
        assert_eq!(
            store.account("alice@example.com").unwrap().unwrap().state,
            AccountState::Online
        );
        store.remove_account("alice@example.com").unwrap();
        assert!(store.accounts().unwrap().is_empty());
        assert!(matches!(
            store.remove_account("alice@example.com"),
            Err(StoreError::NoSuchAccount(_))
        ));
    }

    #[test]
    fn password_hash_is_argon2id() {
        let hash = hash_password(&Secret::new("pw".into())).unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("pw$"));
    }
}
