//! Failed logins per (client address, login): the state behind
//! [`crate::login_guard`], kept here rather than in the gateway's memory so
//! that `graphgate accounts unlock` — another process — lifts a penalty
//! and the running gateway sees it at the next attempt.
//!
//! The store keeps the rows; the policy (when a pair is slowed or locked,
//! when an address is throttled) is the guard's. Times are unix
//! milliseconds of the wall clock (they outlive a restart); a row is
//! forgotten at its `expires_at`. Logins are stored as the guard gives
//! them (lower-cased).

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

/// One (address, login) pair's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PairFailures {
    pub failures: u32,
    /// Unix ms of the last failure.
    pub last_failure: i64,
    /// Unix ms until which attempts are refused unchecked.
    pub locked_until: Option<i64>,
    /// Unix ms when the row is forgotten.
    pub expires_at: i64,
}

/// A row as listed by [`Store::login_failures`] / [`Store::unlock_logins`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRow {
    pub address: String,
    pub login: String,
    pub failures: PairFailures,
}

fn pair_from(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<PairFailures> {
    Ok(PairFailures {
        failures: u32::try_from(r.get::<_, i64>(at)?).unwrap_or(u32::MAX),
        last_failure: r.get(at + 1)?,
        locked_until: r.get(at + 2)?,
        expires_at: r.get(at + 3)?,
    })
}

/// What a verified password of a login stands on ([`Store::credential_stamp`]):
/// the login guard's verified-credentials cache keys its entries by it, so
/// a changed password hash (`accounts passwd`), a removed account
/// (`accounts remove`), deleted tokens (`logout`) or tokens sealed under a
/// new key (`keys rotate`) each make a cached login miss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialStamp {
    pub account: super::AccountId,
    /// The stored Argon2id PHC string (a hash, never the password).
    pub password_hash: String,
    /// The key id the account's tokens are sealed under; `None`: no tokens.
    pub token_key: Option<String>,
}

impl Store {
    /// The [`CredentialStamp`] of `login` (case-insensitive), `None` for an
    /// unknown login.
    pub fn credential_stamp(&self, login: &str) -> Result<Option<CredentialStamp>, StoreError> {
        let conn = self.lock()?;
        conn.query_row(
            "SELECT a.id, a.password_hash, t.key_id FROM accounts a
             LEFT JOIN tokens t ON t.account_id = a.id WHERE a.login = ?1",
            [login],
            |r| {
                Ok(CredentialStamp {
                    account: super::AccountId(r.get(0)?),
                    password_hash: r.get(1)?,
                    token_key: r.get(2)?,
                })
            },
        )
        .optional()
        .map_err(Into::into)
    }

    /// The live failures of `login` from `address` (none once expired), and
    /// how many *other* logins have live failures from `address`.
    pub fn login_failures_of(
        &self,
        address: &str,
        login: &str,
        now: i64,
    ) -> Result<(Option<PairFailures>, u32), StoreError> {
        let conn = self.lock()?;
        let pair = conn
            .query_row(
                "SELECT failures, last_failure, locked_until, expires_at FROM login_failures
                 WHERE address = ?1 AND login = ?2 AND expires_at > ?3",
                params![address, login, now],
                |r| pair_from(r, 0),
            )
            .optional()?;
        let others: i64 = conn.query_row(
            "SELECT COUNT(*) FROM login_failures
             WHERE address = ?1 AND login <> ?2 AND expires_at > ?3 AND failures > 0",
            params![address, login, now],
            |r| r.get(0),
        )?;
        Ok((pair, u32::try_from(others).unwrap_or(u32::MAX)))
    }

    /// The earliest time one of `address`'s failing logins is forgotten.
    pub fn next_expiry_of(&self, address: &str, now: i64) -> Result<Option<i64>, StoreError> {
        let conn = self.lock()?;
        Ok(conn.query_row(
            "SELECT MIN(expires_at) FROM login_failures WHERE address = ?1 AND expires_at > ?2",
            params![address, now],
            |r| r.get(0),
        )?)
    }

    /// Record one failure: `update` gets the live row (or `None`) and
    /// returns the new one, in one transaction. Expired rows everywhere
    /// are swept at the same time.
    pub fn record_login_failure(
        &self,
        address: &str,
        login: &str,
        now: i64,
        update: impl FnOnce(Option<PairFailures>) -> PairFailures,
    ) -> Result<PairFailures, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM login_failures WHERE expires_at <= ?1",
            params![now],
        )?;
        let old = tx
            .query_row(
                "SELECT failures, last_failure, locked_until, expires_at FROM login_failures
                 WHERE address = ?1 AND login = ?2",
                params![address, login],
                |r| pair_from(r, 0),
            )
            .optional()?;
        let new = update(old);
        tx.execute(
            "INSERT INTO login_failures
                 (address, login, failures, last_failure, locked_until, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (address, login) DO UPDATE SET
                 failures = excluded.failures, last_failure = excluded.last_failure,
                 locked_until = excluded.locked_until, expires_at = excluded.expires_at",
            params![
                address,
                login,
                i64::from(new.failures),
                new.last_failure,
                new.locked_until,
                new.expires_at
            ],
        )?;
        tx.commit()?;
        Ok(new)
    }

    /// A correct password: forget the pair's failures.
    pub fn clear_login_failures(&self, address: &str, login: &str) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute(
            "DELETE FROM login_failures WHERE address = ?1 AND login = ?2",
            params![address, login],
        )?;
        Ok(())
    }

    /// Live rows, matching `login` and/or `address` when given.
    pub fn login_failures(
        &self,
        login: Option<&str>,
        address: Option<&str>,
        now: i64,
    ) -> Result<Vec<FailureRow>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT address, login, failures, last_failure, locked_until, expires_at
             FROM login_failures
             WHERE expires_at > ?1 AND (?2 IS NULL OR login = ?2)
               AND (?3 IS NULL OR address = ?3)
             ORDER BY address, login",
        )?;
        let rows = stmt
            .query_map(params![now, login, address], |r| {
                Ok(FailureRow {
                    address: r.get(0)?,
                    login: r.get(1)?,
                    failures: pair_from(r, 2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// `graphgate accounts unlock`: forget the failures (and locks) of
    /// `login` and/or from `address` (everything when both are `None`).
    /// Returns the live rows removed.
    pub fn unlock_logins(
        &self,
        login: Option<&str>,
        address: Option<&str>,
        now: i64,
    ) -> Result<Vec<FailureRow>, StoreError> {
        let live = self.login_failures(login, address, now)?;
        let conn = self.lock()?;
        conn.execute(
            "DELETE FROM login_failures
             WHERE (?1 IS NULL OR login = ?1) AND (?2 IS NULL OR address = ?2)",
            params![login, address],
        )?;
        Ok(live)
    }

    /// For `/metrics`: pairs refused unchecked now, and pairs with live
    /// failures.
    pub fn login_failure_counts(&self, now: i64) -> Result<(u64, u64), StoreError> {
        let conn = self.lock()?;
        Ok(conn.query_row(
            "SELECT COUNT(*) FILTER (WHERE locked_until > ?1), COUNT(*)
             FROM login_failures WHERE expires_at > ?1",
            params![now],
            |r| {
                Ok((
                    u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                ))
            },
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(store: &Store, address: &str, login: &str, now: i64) -> PairFailures {
        store
            .record_login_failure(address, login, now, |old| {
                let failures = old.map_or(0, |o| o.failures) + 1;
                PairFailures {
                    failures,
                    last_failure: now,
                    locked_until: (failures >= 3).then_some(now + 50),
                    expires_at: now + 100,
                }
            })
            .unwrap()
    }

    #[test]
    fn rows_count_expire_and_unlock() {
        let s = Store::open_in_memory().unwrap();
        for _ in 0..3 {
            fail(&s, "127.0.0.1", "bob", 1_000);
        }
        fail(&s, "127.0.0.1", "nosuch", 1_000);
        fail(&s, "10.0.0.1", "bob", 1_000);
        let (pair, others) = s.login_failures_of("127.0.0.1", "alice", 1_010).unwrap();
        assert_eq!((pair, others), (None, 2));
        let (pair, others) = s.login_failures_of("127.0.0.1", "bob", 1_010).unwrap();
        assert_eq!(pair.unwrap().failures, 3);
        assert_eq!(pair.unwrap().locked_until, Some(1_050));
        assert_eq!(others, 1);
        assert_eq!(s.login_failure_counts(1_010).unwrap(), (1, 3));
        assert_eq!(s.next_expiry_of("127.0.0.1", 1_010).unwrap(), Some(1_100));
        // Expired: gone from every read, swept by the next write.
        assert_eq!(
            s.login_failures_of("127.0.0.1", "bob", 1_100).unwrap(),
            (None, 0)
        );
        fail(&s, "10.0.0.2", "x", 1_100);
        assert_eq!(s.login_failures(None, None, 0).unwrap().len(), 1);

        for _ in 0..3 {
            fail(&s, "127.0.0.1", "bob", 2_000);
        }
        fail(&s, "10.0.0.1", "bob", 2_000);
        fail(&s, "127.0.0.1", "carol", 2_000);
        let lifted = s
            .unlock_logins(Some("bob"), Some("127.0.0.1"), 2_001)
            .unwrap();
        assert_eq!(lifted.len(), 1);
        assert_eq!(
            s.login_failures_of("127.0.0.1", "bob", 2_001).unwrap().0,
            None
        );
        assert!(
            s.login_failures_of("10.0.0.1", "bob", 2_001)
                .unwrap()
                .0
                .is_some()
        );
        assert_eq!(s.unlock_logins(Some("bob"), None, 2_001).unwrap().len(), 1);
        assert_eq!(s.unlock_logins(None, None, 2_001).unwrap().len(), 1);
        assert!(s.login_failures(None, None, 2_001).unwrap().is_empty());
    }
}
