//! Versioned migrations. Append a new entry to [`MIGRATIONS`] for every
//! change; never edit one that has shipped.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE accounts (
    id               INTEGER PRIMARY KEY,
    login            TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash    TEXT NOT NULL,
    mailbox          TEXT NOT NULL COLLATE NOCASE,
    auth_profile     TEXT NOT NULL,
    aliases          TEXT NOT NULL DEFAULT '[]',
    shared_mailboxes TEXT NOT NULL DEFAULT '[]',
    state            TEXT NOT NULL DEFAULT 'offline',
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE tokens (
    account_id  INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    key_id      TEXT NOT NULL,
    sealed      BLOB NOT NULL,
    expires_at  INTEGER,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE folders (
    id               INTEGER PRIMARY KEY,
    account_id       INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    mailbox          TEXT NOT NULL COLLATE NOCASE,
    remote_id        TEXT NOT NULL,
    name             TEXT NOT NULL,
    parent_remote_id TEXT,
    special_use      TEXT,
    uidvalidity      INTEGER NOT NULL,
    uidnext          INTEGER NOT NULL DEFAULT 1,
    delta_link       TEXT,
    subscribed       INTEGER NOT NULL DEFAULT 1,
    UNIQUE (account_id, mailbox, remote_id)
);
CREATE UNIQUE INDEX folders_by_name ON folders (account_id, name);

CREATE TABLE messages (
    folder_id     INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    uid           INTEGER NOT NULL,
    remote_id     TEXT NOT NULL,
    flags         INTEGER NOT NULL DEFAULT 0,
    keywords      TEXT NOT NULL DEFAULT '',
    size          INTEGER,
    internal_date INTEGER,
    content_hash  TEXT,
    PRIMARY KEY (folder_id, uid),
    UNIQUE (folder_id, remote_id)
) WITHOUT ROWID;

CREATE TABLE cache (
    content_hash TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,
    last_used    INTEGER NOT NULL,
    structure    BLOB
) WITHOUT ROWID;
CREATE INDEX cache_by_age ON cache (last_used);

CREATE TABLE spool (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL REFERENCES accounts(id),
    state           TEXT NOT NULL,
    mail_from       TEXT NOT NULL,
    rcpt_to         TEXT NOT NULL,
    path            TEXT NOT NULL,
    size            INTEGER NOT NULL,
    message_id      TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    accepted_at     INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX spool_due ON spool (state, next_attempt_at);
"#,
    // 2: the spool's delivery state machine (see smtp/spool.rs): how a
    // message is being sent, the draft that carries it, headers graphgate
    // adds in front of the client's bytes, when the current attempt began;
    // per-account choice of a Sent Items copy.
    r#"
ALTER TABLE spool ADD COLUMN method TEXT;
ALTER TABLE spool ADD COLUMN draft_id TEXT;
ALTER TABLE spool ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
ALTER TABLE spool ADD COLUMN sending_since INTEGER;
ALTER TABLE spool ADD COLUMN delivered_at INTEGER;
ALTER TABLE accounts ADD COLUMN save_to_sent_items INTEGER NOT NULL DEFAULT 1;
"#,
    // 3: an app-only account's own app registration (client id, tenant,
    // and the *files* holding its secret or certificate; never the secret).
    r#"
ALTER TABLE accounts ADD COLUMN app_credential TEXT;
"#,
    // 4: per-account IMAP settings for mail handlers: the folder IMAP
    // shows as INBOX (NULL: the mailbox's Inbox), and whether messages a
    // session fetched stay on the server.
    r#"
ALTER TABLE accounts ADD COLUMN imap_inbox TEXT;
ALTER TABLE accounts ADD COLUMN keep_fetched INTEGER NOT NULL DEFAULT 1;
"#,
    // 5: small spooled messages keep their bytes in the row (one WAL
    // commit makes them durable: no file, no file or directory fsync);
    // `path` is then ''. Rows from before keep their files (body NULL).
    // The bytes are cleared when the entry reaches a final state.
    r#"
ALTER TABLE spool ADD COLUMN body BLOB;
"#,
    // 6: failed logins per (client address, login), so that
    // `graphgate accounts unlock` (another process) lifts a penalty the
    // running gateway honours (see login_guard.rs). Times are unix
    // milliseconds; a row is forgotten at `expires_at`.
    r#"
CREATE TABLE IF NOT EXISTS login_failures (
    address      TEXT NOT NULL,
    login        TEXT NOT NULL,
    failures     INTEGER NOT NULL,
    last_failure INTEGER NOT NULL,
    locked_until INTEGER,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (address, login)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS login_failures_by_expiry ON login_failures (expires_at);
"#,
    // 7: a resubmission of a message already in the spool (a client that
    // lost the reply after its final dot sends it again) is recognised by
    // a fingerprint of its Message-ID, envelope and bytes (spool/mod.rs).
    r#"
ALTER TABLE spool ADD COLUMN fingerprint TEXT;
CREATE INDEX IF NOT EXISTS spool_by_fingerprint ON spool (fingerprint) WHERE fingerprint IS NOT NULL;
"#,
    // 8 (IMAP state Graph does not keep, issue 15): subscriptions by
    // name, per account (RFC 3501 §6.3.6: a name stays subscribed across
    // DELETE and may not exist); a folder with no row counts as
    // subscribed, as every folder was before. And per folder the lowest
    // UID no session has been told about yet (`\Recent`, RFC 3501
    // §2.3.2); no row until a session first selects the folder.
    // New tables only (no ALTER of a shared one), so the migration is
    // idempotent.
    r#"
CREATE TABLE IF NOT EXISTS subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    subscribed INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recent_floors (
    folder_id INTEGER PRIMARY KEY REFERENCES folders(id) ON DELETE CASCADE,
    floor     INTEGER NOT NULL
);
"#,
    // 9: (a) contents recorded empty (the SHA-256 of no bytes) by versions
    // that cached a broken `$value` answer are forgotten, so they are
    // fetched again instead of served as `RFC822.SIZE 0` for good; (b) the
    // remote folder hierarchy per mailbox, kept by `mailFolders/delta`
    // (store/folder_tree.rs), so that LOGIN does not walk the tree.
    r#"
UPDATE messages SET content_hash = NULL, size = NULL
 WHERE content_hash = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
DELETE FROM cache
 WHERE content_hash = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

CREATE TABLE IF NOT EXISTS folder_trees (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    mailbox    TEXT NOT NULL COLLATE NOCASE,
    delta_link TEXT,
    synced_at  INTEGER NOT NULL DEFAULT 0,
    well_known TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (account_id, mailbox)
);

CREATE TABLE IF NOT EXISTS remote_folders (
    account_id       INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    mailbox          TEXT NOT NULL COLLATE NOCASE,
    remote_id        TEXT NOT NULL,
    display_name     TEXT NOT NULL,
    parent_remote_id TEXT,
    hidden           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, mailbox, remote_id)
) WITHOUT ROWID;
"#,
    // The sender policy an account's SMTP submissions follow when it is not
    // `keep` (`graphgate accounts set LOGIN --sender-policy`); no row:
    // keep. A new table, so the migration is idempotent.
    r#"
CREATE TABLE IF NOT EXISTS sender_policies (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    policy     TEXT NOT NULL
);
"#,
    // How many sign-outs (`graphgate logout`, `accounts remove`) the store
    // has seen: a running gateway compares it before each use of an
    // account it holds open and drops what it held (runtime::Accounts).
    // One row; a new table, so the migration is idempotent.
    r#"
CREATE TABLE IF NOT EXISTS sign_out_generation (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO sign_out_generation (id, value) VALUES (1, 0);
"#,
    // CONDSTORE / QRESYNC (RFC 7162, store/modseq.rs): a message's
    // mod-sequence (no row: 1, what every message had before), a folder's
    // HIGHESTMODSEQ and the floor above which every expunge is remembered
    // (no row: 1 and 1), and the UIDs expunged with the mod-sequence of
    // their expunge (VANISHED (EARLIER)). New tables only, so the
    // migration is idempotent.
    r#"
CREATE TABLE IF NOT EXISTS modseqs (
    folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    uid       INTEGER NOT NULL,
    modseq    INTEGER NOT NULL,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS folder_modseqs (
    folder_id      INTEGER PRIMARY KEY REFERENCES folders(id) ON DELETE CASCADE,
    highest        INTEGER NOT NULL,
    vanished_floor INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS vanished (
    folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    uid       INTEGER NOT NULL,
    modseq    INTEGER NOT NULL,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vanished_by_modseq ON vanished (folder_id, modseq);
"#,
    // The keywords a folder has had (store/subscriptions.rs): FLAGS and
    // PERMANENTFLAGS keep naming a keyword once it was used in a folder,
    // as Dovecot's keyword list does, not only while a message carries
    // it. Filled from what the folder's messages carry now.
    r#"
CREATE TABLE IF NOT EXISTS folder_keywords (
    folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    keyword   TEXT NOT NULL,
    PRIMARY KEY (folder_id, keyword)
) WITHOUT ROWID;
"#,
    // The web console's admin password (`graphgate console passwd`,
    // store/console_admin.rs): one Argon2id hash. A new table, so the
    // migration is idempotent.
    r#"
CREATE TABLE IF NOT EXISTS console_admin (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    password_hash TEXT NOT NULL,
    updated_at    INTEGER NOT NULL
);
"#,
];

/// The schema version this build writes.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Bring `conn` up to [`latest`], one transaction per migration.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > latest() {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known: latest(),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
