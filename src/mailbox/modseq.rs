//! CONDSTORE / QRESYNC (RFC 7162) as the model offers them: a folder's
//! HIGHESTMODSEQ, the UIDs expunged since a mod-sequence, and STORE
//! UNCHANGEDSINCE. The mod-sequences themselves are kept by the store
//! (`store/modseq.rs`), bumped in the same transaction as every change
//! the model makes or learns from a delta round — a new message, a
//! changed flag or keyword (categories), an expunge, a new UID — and
//! never for a delta item that changed nothing IMAP shows (a replay, or
//! a `changeKey` bumped by a property IMAP does not map).

use super::changes::{FlagChange, Outcome, Stored};
use super::{MailboxSet, ModelError};
use crate::store::folders::{FolderRecord, Uid};

pub use crate::store::modseq::{VANISHED_KEPT, Vanished};

impl MailboxSet {
    /// The folder's HIGHESTMODSEQ (RFC 7162 §3.1.2.1).
    pub fn highest_modseq(&self, folder: &FolderRecord) -> Result<u64, ModelError> {
        Ok(self.model_of(folder).store.highest_modseq(folder.id)?)
    }

    /// The UIDs of `folder` expunged after the mod-sequence `since`
    /// (VANISHED (EARLIER), RFC 7162 §3.2.5), or that they are past the
    /// horizon.
    pub fn vanished_since(
        &self,
        folder: &FolderRecord,
        since: u64,
    ) -> Result<Vanished, ModelError> {
        Ok(self
            .model_of(folder)
            .store
            .vanished_since(folder.id, since)?)
    }

    /// STORE … (UNCHANGEDSINCE n) (RFC 7162 §3.1.3): see
    /// [`super::MailboxModel::set_flags_unchanged_since`].
    pub async fn set_flags_unchanged_since(
        &self,
        folder: &FolderRecord,
        uids: &[Uid],
        change: &FlagChange,
        unchanged_since: Option<u64>,
    ) -> Result<Outcome<Stored>, ModelError> {
        self.model_of(folder)
            .set_flags_unchanged_since(folder, uids, change, unchanged_since)
            .await
    }
}
