//! Settings of an existing account that `graphgate accounts set` edits
//! without a remove and re-add (and so without a new sign-in): its From
//! aliases, the shared mailboxes it reads, and its sender policy.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, now_unix};

impl Store {
    /// Replace the From addresses `login` may use besides its mailbox.
    pub fn set_aliases(&self, login: &str, aliases: &[String]) -> Result<(), StoreError> {
        self.set_address_list(login, "aliases", aliases)
    }

    /// Replace the shared mailboxes `login` reads.
    pub fn set_shared_mailboxes(&self, login: &str, shared: &[String]) -> Result<(), StoreError> {
        self.set_address_list(login, "shared_mailboxes", shared)
    }

    fn set_address_list(
        &self,
        login: &str,
        column: &'static str,
        list: &[String],
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(list).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let conn = self.lock()?;
        let n = conn.execute(
            &format!("UPDATE accounts SET {column} = ?1, updated_at = ?2 WHERE login = ?3"),
            params![text, now_unix(), login],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchAccount(login.to_string()));
        }
        Ok(())
    }

    /// The sender policy of `login`'s submissions, as recorded (`None`:
    /// the default, keep).
    pub fn sender_policy(&self, login: &str) -> Result<Option<String>, StoreError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                "SELECT p.policy FROM sender_policies p JOIN accounts a ON a.id = p.account_id
                  WHERE a.login = ?1",
                params![login],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Record `login`'s sender policy (`None`: back to the default).
    pub fn set_sender_policy(&self, login: &str, policy: Option<&str>) -> Result<(), StoreError> {
        let conn = self.lock()?;
        let id: Option<i64> = conn
            .query_row(
                "SELECT id FROM accounts WHERE login = ?1",
                params![login],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else {
            return Err(StoreError::NoSuchAccount(login.to_string()));
        };
        match policy {
            Some(policy) => conn.execute(
                "INSERT INTO sender_policies (account_id, policy) VALUES (?1, ?2)
                 ON CONFLICT (account_id) DO UPDATE SET policy = excluded.policy",
                params![id, policy],
            )?,
            None => conn.execute(
                "DELETE FROM sender_policies WHERE account_id = ?1",
                params![id],
            )?,
        };
        Ok(())
    }
}

/// Count one more sign-out, inside the caller's transaction.
pub(super) fn bump_sign_outs(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO sign_out_generation (id, value) VALUES (1, 1)
         ON CONFLICT (id) DO UPDATE SET value = value + 1",
        [],
    )?;
    Ok(())
}

impl Store {
    /// How many sign-outs the store has seen (see `bump_sign_outs`): a
    /// running gateway drops the accounts it holds open when it changes.
    pub fn sign_out_generation(&self) -> Result<i64, StoreError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                "SELECT value FROM sign_out_generation WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }
}

impl Store {
    /// Make `account`'s queued mail due now (it signed in again: what
    /// waited for it need not wait out its backoff). A running gateway's
    /// spool worker looks at least every few seconds. Returns how many.
    pub fn spool_due_now(&self, account: super::AccountId) -> Result<usize, StoreError> {
        let conn = self.lock()?;
        Ok(conn.execute(
            "UPDATE spool SET next_attempt_at = ?2
              WHERE account_id = ?1 AND state = 'queued' AND next_attempt_at > ?2",
            params![account.0, now_unix()],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{NewAccount, Store};

    #[test]
    fn settings_of_an_existing_account_change_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = store
            .add_account(&NewAccount::delegated("a@example.com", "pw"))
            .unwrap();
        store
            .set_aliases("a@example.com", &["sales@example.com".into()])
            .unwrap();
        store
            .set_shared_mailboxes("a@example.com", &["support@example.com".into()])
            .unwrap();
        assert_eq!(store.sender_policy("a@example.com").unwrap(), None);
        store
            .set_sender_policy("a@example.com", Some("rewrite"))
            .unwrap();
        store
            .set_sender_policy("a@example.com", Some("reject"))
            .unwrap();
        let after = store.account("a@example.com").unwrap().unwrap();
        assert_eq!(after.id, before.id);
        assert_eq!(after.aliases, ["sales@example.com"]);
        assert_eq!(after.shared_mailboxes, ["support@example.com"]);
        assert_eq!(
            store.sender_policy("a@example.com").unwrap().as_deref(),
            Some("reject")
        );
        store.set_sender_policy("a@example.com", None).unwrap();
        assert_eq!(store.sender_policy("a@example.com").unwrap(), None);
        assert!(store.set_aliases("nobody@example.com", &[]).is_err());
        assert!(store.set_sender_policy("nobody@example.com", None).is_err());
    }

    #[test]
    fn a_sign_out_is_counted_and_rotated_tokens_are_not_saved_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = crate::store::StoreKey::from_bytes([7; 32]);
        let a = store
            .add_account(&NewAccount::delegated("a@example.com", "pw"))
            .unwrap();
        store.put_tokens(a.id, &key, b"first", None).unwrap();
        let before = store.sign_out_generation().unwrap();
        assert!(
            store
                .put_tokens_if_present(a.id, &key, b"rotated", None)
                .unwrap()
        );
        assert_eq!(store.sign_out_generation().unwrap(), before);
        store.delete_tokens(a.id).unwrap();
        assert_eq!(store.sign_out_generation().unwrap(), before + 1);
        // A refresh finishing after the sign-out writes nothing.
        assert!(
            !store
                .put_tokens_if_present(a.id, &key, b"late", None)
                .unwrap()
        );
        assert!(store.tokens(a.id, &key).unwrap().is_none());
        store.remove_account("a@example.com").unwrap();
        assert_eq!(store.sign_out_generation().unwrap(), before + 2);
    }

    #[test]
    fn queued_mail_of_an_account_becomes_due_now() {
        let store = Store::open_in_memory().unwrap();
        let a = store
            .add_account(&NewAccount::delegated("a@example.com", "p"))
            .unwrap();
        let later = crate::store::now_unix() + 3600;
        store
            .spool_insert(&crate::store::NewSpoolEntry {
                account: a.id,
                mail_from: "a@example.com",
                rcpt_to: &["b@example.com".into()],
                path: "/spool/1.eml",
                body: None,
                size: 1,
                message_id: Some("<x@y>"),
                prefix: "",
                not_before: Some(later),
                claimed_with: None,
                fingerprint: None,
            })
            .unwrap();
        assert_eq!(store.spool_next_due().unwrap(), Some(later));
        assert_eq!(store.spool_due_now(a.id).unwrap(), 1);
        let due = store.spool_next_due().unwrap().unwrap();
        assert!(due <= crate::store::now_unix(), "{due}");
        assert_eq!(store.spool_due_now(a.id).unwrap(), 0);
    }
}
