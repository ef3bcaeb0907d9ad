//! IMAP flags of a message and their Graph counterparts.
//!
//! Stored as a bit set plus keywords (space-separated IMAP atoms). Graph
//! categories may contain characters IMAP atoms may not (spaces, brackets,
//! quotes…); they are mapped to atoms by replacing each such character with
//! `_` — the mapping is only used for display, STORE maps keywords back
//! through the message's current categories.
//!
//! `\Draft` is local, like `\Deleted`, because Graph's `isDraft` cannot
//! be changed after an item is created (Microsoft Graph "Update message",
//! https://learn.microsoft.com/graph/api/message-update: isDraft is not
//! among the writable properties; graph-facts.md "Create from MIME": an
//! item is a draft or not from its creation) while IMAP lets a client
//! STORE it (RFC 3501 §2.3.2; Dovecot allows it, imaptest `store`,
//! `search-flags`). It is set from `isDraft` when a message is first seen
//! and whenever Graph reports an `isDraft` other than the one it reported
//! last ([`GRAPH_DRAFT`] remembers that); a STORE changes it in the index
//! only, never in Graph.

use crate::backend::{FlagStatus, RemoteMessage};

pub const SEEN: u32 = 1;
pub const ANSWERED: u32 = 1 << 1;
pub const FLAGGED: u32 = 1 << 2;
pub const DELETED: u32 = 1 << 3;
pub const DRAFT: u32 = 1 << 4;
/// `$Forwarded` (a keyword in IMAP, a verb in Exchange).
pub const FORWARDED: u32 = 1 << 5;
/// Not an IMAP flag: Graph's `isDraft` as last reported, so that a
/// changed `isDraft` is told from one that merely came again.
pub const GRAPH_DRAFT: u32 = 1 << 6;

/// A message's flags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flags {
    pub bits: u32,
    /// Keywords (IMAP atoms), sorted, without `$Forwarded`.
    pub keywords: Vec<String>,
}

/// An IMAP atom for a category name.
pub fn keyword_for_category(category: &str) -> String {
    let atom: String = category
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !"(){%*\"\\]".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if atom.is_empty() || atom.starts_with('\\') {
        format!("_{atom}")
    } else {
        atom
    }
}

impl Flags {
    pub fn from_remote(m: &RemoteMessage) -> Flags {
        let mut bits = 0;
        if m.is_read {
            bits |= SEEN;
        }
        if m.flag == FlagStatus::Flagged {
            bits |= FLAGGED;
        }
        if m.answered {
            bits |= ANSWERED;
        }
        if m.forwarded {
            bits |= FORWARDED;
        }
        if m.is_draft {
            bits |= DRAFT | GRAPH_DRAFT;
        }
        let mut keywords: Vec<String> = m
            .categories
            .iter()
            .map(|c| keyword_for_category(c))
            .collect();
        keywords.sort();
        keywords.dedup();
        Flags { bits, keywords }
    }

    /// What Graph says of a message laid over what the index holds, field
    /// by field: a field Graph did not send is unchanged (a partial delta
    /// update, or the last verb that delta never carries), `\Deleted` is
    /// ours alone, `\Draft` changes only when `isDraft` did.
    pub fn merged(local: &Flags, m: &RemoteMessage) -> Flags {
        let remote = Flags::from_remote(m);
        let mut bits = local.bits & DELETED;
        let draft_changed = !m.absent.is_draft && m.is_draft != (local.bits & GRAPH_DRAFT != 0);
        for (absent, mask) in [
            (m.absent.is_read, SEEN),
            (m.absent.flag, FLAGGED),
            (m.absent.last_verb, ANSWERED | FORWARDED),
            (!draft_changed, DRAFT | GRAPH_DRAFT),
        ] {
            bits |= if absent { local.bits } else { remote.bits } & mask;
        }
        let keywords = if m.absent.categories {
            local.keywords.clone()
        } else {
            remote.keywords
        };
        Flags { bits, keywords }
    }

    pub fn from_store(bits: u32, keywords: &str) -> Flags {
        let mut keywords: Vec<String> = keywords.split_whitespace().map(str::to_string).collect();
        keywords.sort();
        keywords.dedup();
        Flags { bits, keywords }
    }

    pub fn to_store(&self) -> (u32, String) {
        (self.bits, self.keywords.join(" "))
    }

    pub fn deleted(&self) -> bool {
        self.bits & DELETED != 0
    }

    pub fn with_deleted(mut self, deleted: bool) -> Flags {
        if deleted {
            self.bits |= DELETED;
        } else {
            self.bits &= !DELETED;
        }
        self
    }

    /// The flags as IMAP writes them (`\Seen \Flagged $Forwarded kw…`).
    pub fn imap_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (bit, name) in [
            (SEEN, "\\Seen"),
            (ANSWERED, "\\Answered"),
            (FLAGGED, "\\Flagged"),
            (DELETED, "\\Deleted"),
            (DRAFT, "\\Draft"),
            (FORWARDED, "$Forwarded"),
        ] {
            if self.bits & bit != 0 {
                out.push(name.to_string());
            }
        }
        out.extend(self.keywords.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_flags_map_to_imap() {
        let m = RemoteMessage {
            is_read: true,
            flag: FlagStatus::Flagged,
            forwarded: true,
            categories: vec!["Red category".into(), "(x)".into()],
            ..RemoteMessage::default()
        };
        let f = Flags::from_remote(&m);
        assert_eq!(
            f.imap_names(),
            vec!["\\Seen", "\\Flagged", "$Forwarded", "Red_category", "_x_"]
        );
        let (bits, kw) = f.to_store();
        assert_eq!(Flags::from_store(bits, &kw), f);
        // A partial update (only isRead) keeps the rest; the last verb,
        // not read, keeps the local \Answered.
        let local = Flags::from_store(FLAGGED | ANSWERED | DELETED, "kw");
        let partial = RemoteMessage {
            is_read: true,
            absent: crate::backend::Absent {
                flag: true,
                categories: true,
                last_verb: true,
                is_draft: true,
                ..Default::default()
            },
            ..RemoteMessage::default()
        };
        let merged = Flags::merged(&local, &partial);
        assert_eq!(merged.bits, SEEN | FLAGGED | ANSWERED | DELETED);
        assert_eq!(merged.keywords, vec!["kw".to_string()]);
        assert!(!f.deleted());
        assert!(f.clone().with_deleted(true).deleted());
        // \Draft stored by a client stays while Graph's isDraft does not
        // change; a changed isDraft wins.
        let stored = Flags::from_store(DRAFT, "");
        let same = RemoteMessage::default();
        assert_eq!(Flags::merged(&stored, &same).bits, DRAFT);
        let cleared = Flags::from_store(GRAPH_DRAFT, "");
        assert_eq!(Flags::merged(&cleared, &same).bits, 0);
        let drafted = RemoteMessage {
            is_draft: true,
            ..RemoteMessage::default()
        };
        assert_eq!(
            Flags::merged(&Flags::default(), &drafted).bits,
            DRAFT | GRAPH_DRAFT
        );
        assert_eq!(
            Flags::merged(&Flags::from_store(GRAPH_DRAFT, ""), &drafted).bits,
            GRAPH_DRAFT
        );
    }
}
