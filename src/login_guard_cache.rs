//! The verified-credentials cache of [`super::LoginGuard`], shaped after
//! Dovecot's auth cache (doc.dovecot.org, "Authentication cache":
//! `auth_cache_size`, `auth_cache_ttl`; with `auth_cache_verify_password_with_worker`
//! a cached password is still checked against the cached hash): after an
//! Argon2id check succeeded, a repeat LOGIN / AUTH of the same login with
//! the same password is checked against a keyed fast hash for
//! `login_limit.verified_cache_s` seconds instead of running Argon2id again.
//!
//! - An entry is a tag, HMAC-SHA-256 (RFC 2104) under a random key made
//!   when the process starts and never stored, over the login, the
//!   account's [`CredentialStamp`] (id, stored password hash, token key id)
//!   and the password. The plain password is never kept; the key lives
//!   only in this process, so a memory dump of the tags alone does not
//!   allow an offline guess without it.
//! - A lookup recomputes the tag from the stamp read *now*: a password
//!   change (`accounts passwd`, a new salted hash), `accounts remove`,
//!   `logout` (tokens deleted) and `keys rotate` (tokens sealed under a new
//!   key id) — all done by other processes — make the next login miss and
//!   go through Argon2id.
//! - Only a success inserts; the guard drops the login's entry whenever it
//!   records a failure for it (any address), so a guess after a cached
//!   success is checked by Argon2id and counted, and lockouts, which
//!   follow failures, leave nothing cached. The guard's admission (waits,
//!   locks, budgets) runs before the cache is consulted.
//! - At most [`MAX_ENTRIES`] entries (one per login); expired ones are
//!   swept when it is full, and a full cache of live entries inserts
//!   nothing (the next login simply runs Argon2id).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::secret::Secret;
use crate::store::login_failures::CredentialStamp;

/// Entries kept at most (one per login).
pub const MAX_ENTRIES: usize = 10_000;

/// An entry's HMAC-SHA-256 tag.
pub type Tag = [u8; 32];

/// HMAC-SHA-256 (RFC 2104 §2; SHA-256's block is 64 bytes), over `parts`
/// each prefixed with its length so that no two inputs run together.
fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> Tag {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    for part in parts {
        inner.update((part.len() as u64).to_be_bytes());
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

struct Entry {
    tag: Tag,
    expires: Instant,
}

/// Verified logins of this process.
pub struct VerifiedCache {
    ttl: Duration,
    key: [u8; 32],
    entries: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("ttl", &self.ttl)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl VerifiedCache {
    /// A cache keeping a success for `ttl` (zero: off), with a fresh key.
    pub fn new(ttl: Duration) -> VerifiedCache {
        VerifiedCache {
            ttl,
            key: rand::random(),
            entries: Mutex::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The tag of `password` for `login` (a [`super::login_key`]) on
    /// `stamp`: computed once per attempt, looked up before the Argon2id
    /// check and inserted after it succeeded.
    pub fn tag(&self, login: &str, stamp: &CredentialStamp, password: &Secret<String>) -> Tag {
        let id = stamp.account.0.to_be_bytes();
        let token_key = stamp.token_key.as_deref().unwrap_or("\0none");
        hmac(
            &self.key,
            &[
                login.as_bytes(),
                &id,
                stamp.password_hash.as_bytes(),
                token_key.as_bytes(),
                password.expose().as_bytes(),
            ],
        )
    }

    /// Whether `login` was verified within the TTL with this `tag` (the
    /// same password on the same stamp).
    pub fn hit(&self, login: &str, tag: &Tag) -> bool {
        if !self.enabled() {
            return false;
        }
        let Ok(entries) = self.entries.lock() else {
            return false;
        };
        entries
            .get(login)
            .is_some_and(|e| e.expires > Instant::now() && bool::from(e.tag.ct_eq(tag)))
    }

    /// Remember a successful Argon2id check.
    pub fn insert(&self, login: &str, tag: Tag) {
        if !self.enabled() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let now = Instant::now();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(login) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(
            login.to_string(),
            Entry {
                tag,
                expires: now + self.ttl,
            },
        );
    }

    /// Drop `login`'s entry (a failure was recorded for it).
    pub fn forget(&self, login: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(login);
        }
    }

    /// Drop every entry.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AccountId;

    fn stamp(hash: &str, token_key: Option<&str>) -> CredentialStamp {
        CredentialStamp {
            account: AccountId(1),
            password_hash: hash.to_string(),
            token_key: token_key.map(str::to_string),
        }
    }

    fn pw(s: &str) -> Secret<String> {
        Secret::new(s.to_string())
    }

    #[test]
    fn hmac_matches_rfc_4231_shape() {
        // RFC 4231 test case 2 uses a 4-byte key; ours is always 32 bytes,
        // zero-padded to the block as RFC 2104 pads any shorter key, so
        // "Jefe" padded with zeros gives the same MAC. Our parts carry
        // length prefixes, so compare against the plain construction.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let msg = b"what do ya want for nothing?";
        let mut framed = (msg.len() as u64).to_be_bytes().to_vec();
        framed.extend_from_slice(msg);
        // Plain HMAC of the framed message, built by hand.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&key);
        let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(&framed)
            .finalize();
        let outer: Tag = Sha256::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize()
            .into();
        assert_eq!(hmac(&key, &[msg]), outer);
        // And the unframed construction gives RFC 4231's test case 2.
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(msg)
            .finalize();
        let plain: Tag = Sha256::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize()
            .into();
        assert_eq!(
            hex::encode(plain),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hits_only_the_same_password_stamp_and_time() {
        let cache = VerifiedCache::new(Duration::from_secs(60));
        let s = stamp("$argon2id$a", Some("k1"));
        let verified = |login: &str, s: &CredentialStamp, p: &str| {
            cache.hit(login, &cache.tag(login, s, &pw(p)))
        };
        let insert = |login: &str, s: &CredentialStamp, p: &str| {
            cache.insert(login, cache.tag(login, s, &pw(p)))
        };
        assert!(!verified("a", &s, "p"));
        insert("a", &s, "p");
        assert!(verified("a", &s, "p"));
        assert!(!verified("a", &s, "q"), "another password");
        assert!(!verified("b", &s, "p"), "another login");
        let changed = stamp("$argon2id$b", Some("k1"));
        assert!(!verified("a", &changed, "p"), "new hash");
        let signed_out = stamp("$argon2id$a", None);
        assert!(!verified("a", &signed_out, "p"), "logout");
        let rotated = stamp("$argon2id$a", Some("k2"));
        assert!(!verified("a", &rotated, "p"), "keys rotate");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!verified("a", &s, "p"), "expired");
        insert("a", &s, "p");
        cache.forget("a");
        assert!(!verified("a", &s, "p"), "forgotten");
    }

    #[test]
    fn zero_ttl_is_off_and_entries_are_bounded() {
        let off = VerifiedCache::new(Duration::ZERO);
        let s = stamp("h", None);
        off.insert("a", off.tag("a", &s, &pw("p")));
        assert!(off.is_empty());
        assert!(!off.hit("a", &off.tag("a", &s, &pw("p"))));
        let cache = VerifiedCache::new(Duration::from_secs(60));
        for i in 0..MAX_ENTRIES + 5 {
            let login = format!("u{i}");
            cache.insert(&login, cache.tag(&login, &s, &pw("p")));
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        // Two caches never share a key: a tag is worthless elsewhere.
        let other = VerifiedCache::new(Duration::from_secs(60));
        assert_ne!(cache.tag("a", &s, &pw("p")), other.tag("a", &s, &pw("p")));
    }
}
