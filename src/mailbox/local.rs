//! IMAP state Graph has no place for, kept in the store per account:
//! subscriptions (RFC 3501 §6.3.6, §6.3.7) and `\Recent` (§2.3.2).
//!
//! Subscriptions are by name: a name stays subscribed when its folder is
//! deleted and may be subscribed before it exists. A folder the account
//! never (un)subscribed counts as subscribed — every folder did before
//! graphgate kept subscriptions, and a folder made in Outlook should show
//! in a client that lists only subscribed folders. (Dovecot starts with
//! nothing subscribed and leaves it to clients; graphgate's users had
//! every folder in LSUB, so nothing disappears for them.) The exception
//! is a folder made through IMAP CREATE (and the superiors CREATE makes
//! with it): it starts unsubscribed, as on Dovecot, since CREATE does not
//! subscribe (RFC 3501 §6.3.3; clients that want it SUBSCRIBE next) — a
//! choice made before the CREATE is kept. RENAME carries an explicit
//! choice to the new name.
//!
//! `\Recent`: each folder keeps the lowest UID no session has been told
//! about. SELECT claims the messages from it up atomically (the first
//! session gets them, RFC 3501 §2.3.2), as does a selected session that
//! learns of new messages; EXAMINE and STATUS only look. Messages in a
//! folder before any session selected it are not recent — except what
//! graphgate itself puts there: an APPEND or a COPY / MOVE into a folder
//! without a floor starts it at the folder's UIDNEXT first, so the new
//! messages are recent for the first session that selects it, as a
//! folder a client made and filled is on Dovecot (imaptest `select`).

use std::collections::HashMap;

use super::{MailboxModel, MailboxSet, ModelError, canonical_name};
use crate::store::folders::{FolderRecord, Uid};

impl MailboxSet {
    /// SUBSCRIBE (`true`) or UNSUBSCRIBE `name`.
    pub fn subscribe(&self, name: &str, subscribed: bool) -> Result<(), ModelError> {
        let own = &self.models[0];
        Ok(own
            .store
            .set_subscribed(own.account, &canonical_name(name), subscribed)?)
    }

    /// A folder `name` was just made by CREATE: unsubscribed, unless the
    /// account chose before (see the module's notes).
    pub fn created(&self, name: &str) -> Result<(), ModelError> {
        let name = canonical_name(name);
        if self.subscriptions()?.contains_key(name.as_ref()) {
            return Ok(());
        }
        self.subscribe(&name, false)
    }

    /// Folder `old` was renamed `new`: `new` takes `old`'s explicit choice.
    pub fn renamed(&self, old: &str, new: &str) -> Result<(), ModelError> {
        match self.subscriptions()?.get(canonical_name(old).as_ref()) {
            Some(on) => self.subscribe(new, *on),
            None => Ok(()),
        }
    }

    /// The account's explicit subscription choices by name.
    pub fn subscriptions(&self) -> Result<HashMap<String, bool>, ModelError> {
        let own = &self.models[0];
        Ok(own.store.subscriptions(own.account)?)
    }

    /// Claim the recent messages of `folder` for this session: the UIDs
    /// from the returned one up are recent for it alone.
    pub fn claim_recent(&self, folder: &FolderRecord) -> Result<Uid, ModelError> {
        Ok(self.models[0].store.claim_recent(folder.id)?)
    }

    /// The keywords `folder` has had (FLAGS and PERMANENTFLAGS name them
    /// all: see store/subscriptions.rs), `$Forwarded` included once used.
    pub fn keywords(&self, folder: &FolderRecord) -> Result<Vec<String>, ModelError> {
        Ok(self.model_of(folder).store.folder_keywords(folder.id)?)
    }

    /// The UID from which messages of `folder` are recent, unclaimed
    /// (`None`: none is).
    pub fn recent_floor(&self, folder: &FolderRecord) -> Result<Option<Uid>, ModelError> {
        Ok(self.models[0].store.recent_floor(folder.id)?)
    }
}

impl MailboxModel {
    /// Before graphgate adds messages to `folder` (APPEND, COPY, MOVE):
    /// a folder without a recent floor gets one at its UIDNEXT, so what
    /// is added is recent (see the module's notes).
    pub(super) fn start_recent(&self, folder: &FolderRecord) -> Result<(), ModelError> {
        if self.store.recent_floor(folder.id)?.is_none() {
            self.store.claim_recent(folder.id)?;
        }
        Ok(())
    }
}
