//! The web console's admin credential (`graphgate console passwd`): one
//! Argon2id hash, like the accounts' passwords. Without it the console is
//! closed, except through a one-time sign-in link the process printed.

use rusqlite::{OptionalExtension, params};

use super::accounts::{hash_password, verify_console_hash};
use super::{Store, StoreError, now_unix};
use crate::secret::Secret;

impl Store {
    /// Set (or replace) the console's admin password.
    pub fn set_console_password(&self, password: &Secret<String>) -> Result<(), StoreError> {
        let hash = hash_password(password)?;
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO console_admin (id, password_hash, updated_at) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET password_hash = ?1, updated_at = ?2",
            params![hash, now_unix()],
        )?;
        Ok(())
    }

    /// Remove the console's admin password (the console closes).
    pub fn clear_console_password(&self) -> Result<bool, StoreError> {
        let conn = self.lock()?;
        Ok(conn.execute("DELETE FROM console_admin", [])? > 0)
    }

    /// Whether a console admin password is set.
    pub fn console_password_set(&self) -> Result<bool, StoreError> {
        Ok(self.console_password_hash()?.is_some())
    }

    fn console_password_hash(&self) -> Result<Option<String>, StoreError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                "SELECT password_hash FROM console_admin WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Whether `password` is the console's admin password (Argon2id; a
    /// dummy hash is verified when none is set, so both take as long).
    pub fn verify_console_password(&self, password: &Secret<String>) -> Result<bool, StoreError> {
        let hash = self.console_password_hash()?;
        Ok(verify_console_hash(hash.as_deref(), password))
    }
}

impl Store {
    /// When any folder tree of `account` last finished a delta round
    /// (unix seconds), for the console's dashboard.
    pub fn last_sync(&self, account: super::AccountId) -> Result<Option<i64>, StoreError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                "SELECT MAX(synced_at) FROM folder_trees WHERE account_id = ?1",
                params![account.0],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()?
            .flatten())
    }
}
