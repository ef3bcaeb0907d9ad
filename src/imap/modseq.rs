//! What the CONDSTORE and QRESYNC answers (RFC 7162) share: UID sets in
//! their compact form, mod-sequence values, and the `VANISHED (EARLIER)`
//! of a resync.

use std::num::{NonZeroU32, NonZeroU64};

use imap_next::imap_types::response::Data;
use imap_next::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use crate::imap::session::{View, in_set};
use crate::mailbox::modseq::Vanished;
use crate::mailbox::{FolderRecord, MailboxSet, ModelError, Uid};

/// What a connection enabled, by ENABLE or (CONDSTORE) by a
/// CONDSTORE-enabling command (RFC 7162 §3.1): once on, on until LOGOUT.
#[derive(Debug, Default)]
pub struct Enabled {
    condstore: std::sync::atomic::AtomicBool,
    qresync: std::sync::atomic::AtomicBool,
}

impl Enabled {
    pub fn condstore(&self) -> bool {
        self.condstore.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn qresync(&self) -> bool {
        self.qresync.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turn CONDSTORE on (for the connection and the selected `view`);
    /// whether it was off.
    pub fn enable_condstore(&self, view: Option<&mut View>) -> bool {
        if let Some(view) = view {
            view.condstore = true;
        }
        !self
            .condstore
            .swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    /// Turn QRESYNC on, and CONDSTORE with it (RFC 7162 §3.2.3); whether
    /// it was off.
    pub fn enable_qresync(&self, view: Option<&mut View>) -> bool {
        let view = view.map(|v| {
            v.qresync = true;
            &mut *v
        });
        self.enable_condstore(view);
        !self
            .qresync
            .swap(true, std::sync::atomic::Ordering::Relaxed)
    }
}

/// A mod-sequence as IMAP writes it (never 0: RFC 7162 §3.1.1).
pub fn nz64(n: u64) -> NonZeroU64 {
    NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN)
}

/// `numbers` as a sequence set of ranges (`1:3,7,9:10`); `None` when
/// empty.
pub fn number_set(numbers: &[u32]) -> Option<SequenceSet> {
    let mut sorted: Vec<u32> = numbers.iter().copied().filter(|n| *n > 0).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<Sequence> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        i += 1;
        let value = |n: u32| SeqOrUid::Value(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        ranges.push(if start == end {
            Sequence::Single(value(start))
        } else {
            Sequence::Range(value(start), value(end))
        });
    }
    SequenceSet::try_from(ranges).ok()
}

/// UIDs as a sequence set (see [`number_set`]).
pub fn uid_set(uids: &[Uid]) -> Option<SequenceSet> {
    number_set(&uids.iter().map(|u| u.0).collect::<Vec<_>>())
}

/// The `VANISHED (EARLIER)` of a resync from the mod-sequence `since`
/// (SELECT … QRESYNC, RFC 7162 §3.2.5; UID FETCH … VANISHED, §3.2.6):
/// the UIDs expunged after it, only those in `within` when given. Past
/// the horizon (see `store/modseq.rs`) every UID of `within` (or below
/// UIDNEXT) that the folder does not hold is named: a superset, which
/// RFC 7162 §3.2.5.1 allows (a client ignores UIDs it does not know).
/// `None` when there is nothing to say.
pub fn vanished_earlier(
    model: &MailboxSet,
    folder: &FolderRecord,
    since: u64,
    within: Option<&SequenceSet>,
    present: &std::collections::HashSet<Uid>,
) -> Result<Option<Data<'static>>, ModelError> {
    let largest = folder.uid_next.0.saturating_sub(1);
    // A UID the session still shows (expunged after its view was read)
    // is told by the next report, in order, not here.
    let wanted =
        |u: u32| within.is_none_or(|set| in_set(set, u, largest)) && !present.contains(&Uid(u));
    let uids: Vec<u32> = match model.vanished_since(folder, since)? {
        Vanished::Known(uids) => uids
            .into_iter()
            .map(|u| u.0)
            .filter(|u| wanted(*u))
            .collect(),
        Vanished::Forgotten => (1..=largest).filter(|u| wanted(*u)).collect(),
    };
    Ok(number_set(&uids).map(|set| Data::Vanished {
        earlier: true,
        known_uids: set,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_ranges() {
        use imap_codec::encode::Encoder as _;
        let set = number_set(&[9, 1, 2, 3, 7, 10, 2]).unwrap();
        let data = Data::Vanished {
            earlier: true,
            known_uids: set,
        };
        let wire = imap_codec::ResponseCodec::default()
            .encode(&imap_next::imap_types::response::Response::Data(data))
            .dump();
        assert_eq!(
            String::from_utf8_lossy(&wire),
            "* VANISHED (EARLIER) 1:3,7,9:10\r\n"
        );
        assert!(number_set(&[]).is_none());
    }
}
