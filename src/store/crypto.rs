//! Encryption at rest for tokens: XChaCha20-Poly1305 with a 256-bit key.
//!
//! The key never derives from the password a legacy client uses (that is
//! where DavMail and email-oauth2-proxy users lose their tokens when a
//! password changes). It comes from, in order:
//! 1. `GRAPHGATE_KEY`: 32 bytes as 64 hex digits or base64;
//! 2. `GRAPHGATE_KEY_FILE`: a file holding the same (a Docker secret);
//! 3. `<data dir>/graphgate.key`, created with mode 0600 on first use.
//!
//! A key file that group or others may read or write is refused, with the
//! `chmod` that fixes it.
//!
//! A sealed blob is `version (1) || nonce (24) || ciphertext+tag`; the
//! associated data binds it to its purpose and account, so a blob copied to
//! another row does not open.

use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::secret::Secret;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// The token-encryption key.
#[derive(Clone)]
pub struct StoreKey {
    key: Secret<[u8; 32]>,
    source: KeySource,
    /// The key before an interrupted `graphgate keys rotate`
    /// (`<key file>.old`): it still opens rows sealed before the rotation.
    previous: Option<Secret<[u8; 32]>>,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreKey")
            .field("id", &self.id())
            .field("source", &self.source)
            .field("previous", &self.previous.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Where the key came from (for `status` and `doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
    Given,
}

impl StoreKey {
    pub fn from_bytes(bytes: [u8; 32]) -> StoreKey {
        StoreKey {
            key: Secret::new(bytes),
            source: KeySource::Given,
            previous: None,
        }
    }

    /// Parse 64 hex digits or base64 of 32 bytes.
    pub fn parse(text: &str) -> Result<[u8; 32], StoreError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|e| StoreError::Crypto(e.to_string()))?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
                .map_err(|_| {
                    StoreError::Crypto(
                        "the key must be 32 bytes written as 64 hex digits or base64 \
                         (make one with `openssl rand -hex 32`)"
                            .into(),
                    )
                })?
        };
        bytes.try_into().map_err(|b: Vec<u8>| {
            StoreError::Crypto(format!(
                "the key is {} bytes long; it must be 32 (make one with `openssl rand -hex 32`)",
                b.len()
            ))
        })
    }

    /// Find the key as described in the module documentation, creating the
    /// key file in `data_dir` if no other source is set.
    pub fn load(data_dir: &Path) -> Result<StoreKey, StoreError> {
        if let Ok(text) = std::env::var("GRAPHGATE_KEY") {
            let key = StoreKey::parse(&text)
                .map_err(|e| StoreError::Crypto(format!("GRAPHGATE_KEY is not usable: {e}")))?;
            return Ok(StoreKey {
                key: Secret::new(key),
                source: KeySource::Environment,
                previous: None,
            });
        }
        if let Ok(path) = std::env::var("GRAPHGATE_KEY_FILE") {
            let path = PathBuf::from(path);
            private(&path, "the key file (GRAPHGATE_KEY_FILE)")?;
            let text = std::fs::read_to_string(&path).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
            let key = StoreKey::parse(&text).map_err(|e| {
                StoreError::Crypto(format!("GRAPHGATE_KEY_FILE {}: {e}", path.display()))
            })?;
            return Ok(StoreKey {
                key: Secret::new(key),
                source: KeySource::File(path),
                previous: None,
            });
        }
        let path = data_dir.join("graphgate.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                private(&path, "the key file")?;
                let key = StoreKey::parse(&text)
                    .map_err(|e| StoreError::Crypto(format!("{}: {e}", path.display())))?;
                let previous = previous_key(&path)?;
                Ok(StoreKey {
                    key: Secret::new(key),
                    source: KeySource::File(path),
                    previous,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                write_new_key_file(&path, &hex::encode(key))?;
                Ok(StoreKey {
                    key: Secret::new(key),
                    source: KeySource::Generated(path),
                    previous: None,
                })
            }
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// A key that opens rows sealed under `key_id`: this one, or the one
    /// before an interrupted rotation.
    pub fn opener(&self, key_id: &str) -> Option<StoreKey> {
        if key_id == self.id() {
            return Some(StoreKey::from_bytes(*self.key.expose()));
        }
        let previous = StoreKey::from_bytes(*self.previous.as_ref()?.expose());
        (previous.id() == key_id).then_some(previous)
    }

    /// The key's bytes as written in a key file (64 hex digits). For
    /// `keys rotate` only, which writes them.
    pub fn to_hex(&self) -> Secret<String> {
        Secret::new(hex::encode(self.key.expose()))
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// A short fingerprint of the key (not secret: a hash prefix), stored
    /// beside each sealed blob so a wrong key is named as such.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.key.expose());
        hex::encode(&digest[..6])
    }

    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, StoreError> {
        let cipher = XChaCha20Poly1305::new(self.key.expose().into());
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let ciphertext = cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Crypto("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Secret<Vec<u8>>, StoreError> {
        let Some((&version, rest)) = sealed.split_first() else {
            return Err(StoreError::Crypto("empty sealed blob".into()));
        };
        if version != VERSION || rest.len() < NONCE_LEN + 16 {
            return Err(StoreError::Crypto(format!(
                "unknown sealed blob format (version {version})"
            )));
        }
        let (nonce_bytes, ciphertext) = rest.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(self.key.expose().into());
        cipher
            .decrypt(
                XNonce::from_slice(nonce_bytes),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map(Secret::new)
            .map_err(|_| {
                StoreError::Crypto(
                    "wrong key or tampered data: the tokens were sealed with another key \
                     (check GRAPHGATE_KEY / GRAPHGATE_KEY_FILE / <data dir>/graphgate.key), \
                     or sign in again with `graphgate login`"
                        .into(),
                )
            })
    }
}

/// `<key file>.old`, left by a `graphgate keys rotate` that was
/// interrupted after it installed the new key and before its re-sealing
/// committed (see `cli/keys.rs` for the ordering).
fn previous_key(path: &Path) -> Result<Option<Secret<[u8; 32]>>, StoreError> {
    let old = old_key_path(path);
    match std::fs::read_to_string(&old) {
        Ok(text) => {
            private(&old, "the previous key file")?;
            let key = StoreKey::parse(&text)
                .map_err(|e| StoreError::Crypto(format!("{}: {e}", old.display())))?;
            Ok(Some(Secret::new(key)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io { path: old, source }),
    }
}

/// Where the key before a rotation is kept until the rotation commits.
pub fn old_key_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".old");
    PathBuf::from(name)
}

/// Refuse a key file others may read (see [`crate::private_file::check`]).
fn private(path: &Path, what: &'static str) -> Result<(), StoreError> {
    crate::private_file::check(path, what).map_err(|e| match e {
        crate::private_file::PrivateFileError::Read { path, source } => {
            StoreError::Io { path, source }
        }
        other => StoreError::KeyFile(other.to_string()),
    })
}

fn write_new_key_file(path: &Path, contents: &str) -> Result<(), StoreError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

impl super::Store {
    /// Store an account's sealed token set (replacing the previous one in
    /// one statement: a crash leaves either the old or the new set).
    pub fn put_tokens(
        &self,
        account: super::AccountId,
        key: &StoreKey,
        plaintext: &[u8],
        expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let sealed = key.seal(plaintext, &token_context(account))?;
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO tokens (account_id, key_id, sealed, expires_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (account_id) DO UPDATE SET key_id = excluded.key_id,
                 sealed = excluded.sealed, expires_at = excluded.expires_at,
                 updated_at = excluded.updated_at",
            rusqlite::params![account.0, key.id(), sealed, expires_at, super::now_unix()],
        )?;
        Ok(())
    }

    /// An account's token set, decrypted; `None` if it never signed in.
    pub fn tokens(
        &self,
        account: super::AccountId,
        key: &StoreKey,
    ) -> Result<Option<Secret<Vec<u8>>>, StoreError> {
        use rusqlite::OptionalExtension;
        let row: Option<(String, Vec<u8>)> = {
            let conn = self.lock()?;
            conn.query_row(
                "SELECT key_id, sealed FROM tokens WHERE account_id = ?1",
                [account.0],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
        };
        let Some((key_id, sealed)) = row else {
            return Ok(None);
        };
        let Some(opener) = key.opener(&key_id) else {
            return Err(StoreError::Crypto(format!(
                "the tokens were sealed with key {key_id}, but the key in use is {}; \
                 set GRAPHGATE_KEY (or GRAPHGATE_KEY_FILE) to the original key, \
                 or sign in again with `graphgate login`",
                key.id()
            )));
        };
        opener.open(&sealed, &token_context(account)).map(Some)
    }

    /// Re-seal every stored token set with `new`, opening each with
    /// `current` (or its previous key), in one transaction: a crash leaves
    /// all rows as they were or all re-sealed. Returns how many rows.
    pub fn reseal_tokens(&self, current: &StoreKey, new: &StoreKey) -> Result<usize, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let rows: Vec<(i64, String, Vec<u8>)> = {
            let mut stmt = tx.prepare("SELECT account_id, key_id, sealed FROM tokens")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?
        };
        for (account, key_id, sealed) in &rows {
            let context = token_context(super::AccountId(*account));
            let opener = current.opener(key_id).ok_or_else(|| {
                StoreError::Crypto(format!(
                    "the tokens of account {account} were sealed with key {key_id}, which is \
                     neither the key in use ({}) nor the one before it; nothing was changed",
                    current.id()
                ))
            })?;
            let plain = opener.open(sealed, &context)?;
            let resealed = new.seal(plain.expose(), &context)?;
            tx.execute(
                "UPDATE tokens SET key_id = ?1, sealed = ?2 WHERE account_id = ?3",
                rusqlite::params![new.id(), resealed, account],
            )?;
        }
        tx.commit()?;
        Ok(rows.len())
    }

    pub fn delete_tokens(&self, account: super::AccountId) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM tokens WHERE account_id = ?1", [account.0])?;
        super::account_settings::bump_sign_outs(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Replace an account's sealed tokens only if it still has some (a
    /// refresh by a running gateway): false, and nothing written, when it
    /// was signed out meanwhile — one statement, so a sign-out between the
    /// check and the write cannot be undone.
    pub fn put_tokens_if_present(
        &self,
        account: super::AccountId,
        key: &StoreKey,
        plaintext: &[u8],
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let sealed = key.seal(plaintext, &token_context(account))?;
        let conn = self.lock()?;
        let n = conn.execute(
            "UPDATE tokens SET key_id = ?2, sealed = ?3, expires_at = ?4, updated_at = ?5
              WHERE account_id = ?1",
            rusqlite::params![account.0, key.id(), sealed, expires_at, super::now_unix()],
        )?;
        Ok(n > 0)
    }
}

fn token_context(account: super::AccountId) -> String {
    format!("graphgate tokens v1; account {}", account.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_bind_context() {
        let key = StoreKey::from_bytes([7; 32]);
        let sealed = key.seal(b"refresh-token", "a").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"refresh"));
        assert_eq!(key.open(&sealed, "a").unwrap().expose(), b"refresh-token");
        assert!(key.open(&sealed, "b").is_err());
        let other = StoreKey::from_bytes([8; 32]);
        assert!(other.open(&sealed, "a").is_err());
        assert!(key.open(&[], "a").is_err());
        assert!(key.open(&[1, 2, 3], "a").is_err());
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graphgate.key");
        let old = [0xab; 32];
        std::fs::write(old_key_path(&path), hex::encode(old)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let private = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(old_key_path(&path), private).unwrap();
        }
        let previous = previous_key(&path).unwrap().unwrap();
        let key = StoreKey {
            key: Secret::new([0xcd; 32]),
            source: KeySource::File(path),
            previous: Some(previous),
        };
        let shown = format!("{key:?} {:?} {}", key.to_hex(), key.to_hex());
        assert!(
            !shown.contains("abab") && !shown.contains("cdcd"),
            "{shown}"
        );
        assert!(shown.contains("[redacted]"), "{shown}");
        // The previous key opens what it sealed.
        let sealed = StoreKey::from_bytes(old).seal(b"t", "c").unwrap();
        let id = StoreKey::from_bytes(old).id();
        assert_eq!(
            key.opener(&id)
                .unwrap()
                .open(&sealed, "c")
                .unwrap()
                .expose(),
            b"t"
        );
        assert!(key.opener("000000000000").is_none());
    }

    #[test]
    fn parses_hex_and_base64_keys() {
        let hex_key = "00".repeat(32);
        assert_eq!(StoreKey::parse(&hex_key).unwrap(), [0; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert_eq!(StoreKey::parse(&b64).unwrap(), [9; 32]);
        assert!(StoreKey::parse("short").is_err());
    }

    #[test]
    fn generated_key_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        // Only when neither variable is set in this test process.
        if std::env::var_os("GRAPHGATE_KEY").is_some()
            || std::env::var_os("GRAPHGATE_KEY_FILE").is_some()
        {
            return;
        }
        let key = StoreKey::load(dir.path()).unwrap();
        assert!(matches!(key.source(), KeySource::Generated(_)));
        let again = StoreKey::load(dir.path()).unwrap();
        assert_eq!(key.id(), again.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("graphgate.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
