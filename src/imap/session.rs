//! One IMAP connection's state and its commands.
//!
//! States (RFC 3501 §3): not authenticated → authenticated → selected →
//! logout. [`allowed`] is the one table of which command each state takes;
//! everything else gets `BAD` with the state it needs, and the connection
//! stays up.
//!
//! The selected folder is a *view*: the UIDs in sequence-number order as
//! the client last learned them. Remote changes (from the mailbox model's
//! delta sync) reach the view only at NOOP, CHECK, IDLE and SELECT, as
//! EXPUNGE / EXISTS / FETCH FLAGS in the order RFC 3501 §7.4.1 requires —
//! never in the middle of a FETCH, STORE or SEARCH.

use std::num::NonZeroU32;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime as ChronoDateTime, FixedOffset, TimeZone, Utc};
use imap_next::imap_types::core::{Literal, NString, Tag, Vec1};
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_next::imap_types::flag::{Flag, FlagFetch, StoreType};
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{Code, Data, Status};
use imap_next::imap_types::search::SearchKey;
use imap_next::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::content::ContentCache;
use crate::graph::{FlagStatus, FlagUpdate, MailBackend, RemoteMessageId};
use crate::mailbox::{
    FolderChanges, InboxPlacement, MailboxModel, MailboxSet, SHARED_PREFIX, flags,
};
use crate::mime::imap as mime;
use crate::runtime::Accounts;
use crate::store::folders::{FolderRecord, MessageRecord, Uid};
use crate::store::{Account, Store};

/// What a command produced: untagged data and untagged statuses (`OK
/// [UIDVALIDITY …]`, `BYE`), then the tagged status.
pub struct Reply {
    pub data: Vec<Data<'static>>,
    pub untagged: Vec<Status<'static>>,
    pub status: Result<(Option<Code<'static>>, String), Refusal>,
}

/// A refused command: `NO` (it could not be done) or `BAD` (it makes no
/// sense here).
#[derive(Debug)]
pub enum Refusal {
    No(String),
    Bad(String),
}

impl Refusal {
    pub fn no(text: impl Into<String>) -> Refusal {
        Refusal::No(text.into())
    }

    pub fn bad(text: impl Into<String>) -> Refusal {
        Refusal::Bad(text.into())
    }

    /// The tagged `NO` / `BAD` that says so.
    pub fn status(self, tag: Tag<'static>) -> Option<Status<'static>> {
        let status = match self {
            Refusal::No(t) => Status::no(Some(tag), None, text(&t)),
            Refusal::Bad(t) => Status::bad(Some(tag), None, text(&t)),
        };
        status.ok().map(|s| s.into_static())
    }
}

/// IMAP text (RFC 3501 §9 `text`): one line, no CR/LF, not empty.
pub fn text(s: &str) -> String {
    let t: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    if t.is_empty() { "-".into() } else { t }
}

/// An untagged `OK [code] text` (SELECT's UIDVALIDITY…, MOVE's COPYUID).
pub fn untagged_ok(code: Code<'static>, t: &str) -> Option<Status<'static>> {
    Status::ok(None, Some(code), text(t))
        .ok()
        .map(|s| s.into_static())
}

impl From<Refusal> for Reply {
    fn from(r: Refusal) -> Reply {
        Reply {
            data: Vec::new(),
            untagged: Vec::new(),
            status: Err(r),
        }
    }
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            data: Vec::new(),
            untagged: Vec::new(),
            status: Ok((None, text.into())),
        }
    }
    pub fn no(text: impl Into<String>) -> Reply {
        Reply {
            data: Vec::new(),
            untagged: Vec::new(),
            status: Err(Refusal::No(text.into())),
        }
    }
    pub fn bad(text: impl Into<String>) -> Reply {
        Reply {
            data: Vec::new(),
            untagged: Vec::new(),
            status: Err(Refusal::Bad(text.into())),
        }
    }
    pub fn with_data(mut self, data: Vec<Data<'static>>) -> Reply {
        self.data = data;
        self
    }
}

/// The selected folder as the client sees it.
pub struct View {
    pub folder: FolderRecord,
    pub read_only: bool,
    /// UIDs in sequence-number order (sequence number = index + 1).
    pub uids: Vec<Uid>,
    /// The flags the client was last told, per UID: what a later change —
    /// by Outlook, or by another IMAP session — is compared against.
    pub told: std::collections::HashMap<Uid, (u32, String)>,
    /// Messages whose whole content this session fetched (BODY[],
    /// RFC822, BODY[TEXT]): deleted on leaving the folder when the
    /// account does not keep fetched mail (see [`leave`]).
    pub fetched: std::collections::HashSet<Uid>,
}

pub struct Authenticated {
    pub account: Account,
    /// The account's mailbox and the shared ones it reads (`Shared/…`).
    pub model: MailboxSet,
}

pub enum State {
    NotAuthenticated,
    Authenticated(Box<Authenticated>),
    Selected(Box<Authenticated>, Box<View>),
    Logout,
}

/// The state without its data, for the command table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    NotAuthenticated,
    Authenticated,
    Selected,
    Logout,
}

impl State {
    pub fn phase(&self) -> Phase {
        match self {
            State::NotAuthenticated => Phase::NotAuthenticated,
            State::Authenticated(_) => Phase::Authenticated,
            State::Selected(..) => Phase::Selected,
            State::Logout => Phase::Logout,
        }
    }

    /// The logged-in account (authenticated or selected state).
    pub fn account(&self) -> Option<&Authenticated> {
        match self {
            State::Authenticated(a) | State::Selected(a, _) => Some(a),
            _ => None,
        }
    }

    /// The account and the selected folder (selected state).
    pub fn selected(&mut self) -> Option<(&Authenticated, &mut View)> {
        match self {
            State::Selected(auth, view) => Some((auth, view)),
            _ => None,
        }
    }
}

/// Which states a command is valid in (RFC 3501 §6).
pub fn allowed(command: &str, state: Phase) -> Result<(), String> {
    let any = ["CAPABILITY", "NOOP", "LOGOUT", "ID", "ENABLE"];
    let not_auth = ["STARTTLS", "AUTHENTICATE", "LOGIN"];
    let auth = [
        "SELECT",
        "EXAMINE",
        "CREATE",
        "DELETE",
        "RENAME",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "LIST",
        "LSUB",
        "STATUS",
        "APPEND",
        "NAMESPACE",
        "IDLE",
    ];
    let selected = [
        "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE",
    ];
    let ok = any.contains(&command)
        || match state {
            Phase::NotAuthenticated => not_auth.contains(&command),
            Phase::Authenticated => auth.contains(&command),
            Phase::Selected => auth.contains(&command) || selected.contains(&command),
            Phase::Logout => false,
        };
    if ok {
        Ok(())
    } else {
        Err(match state {
            Phase::NotAuthenticated => format!("{command} needs you to log in first"),
            Phase::Authenticated if selected.contains(&command) => {
                format!("{command} needs a selected folder: SELECT one first")
            }
            _ => format!("{command} is not valid now"),
        })
    }
}

/// Everything sessions share.
pub struct Shared {
    pub store: Store,
    pub accounts: Arc<Accounts>,
    pub cache: ContentCache,
    /// EXPUNGE deletes for good instead of moving to Deleted Items.
    pub expunge_permanently: bool,
}

pub(crate) fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("non-zero")
}

fn flag_list(bits: u32, keywords: &str) -> Vec<FlagFetch<'static>> {
    crate::mailbox::Flags::from_store(bits, keywords)
        .imap_names()
        .into_iter()
        .filter_map(|name| {
            Flag::try_from(name.as_str())
                .ok()
                .map(|f| FlagFetch::Flag(f.into_static()))
        })
        .collect()
}

use imap_next::imap_types::IntoStatic;

/// The IMAP name of a folder (modified UTF-7).
pub fn wire_name(folder: &FolderRecord) -> Mailbox<'static> {
    if folder.name == "INBOX" {
        return Mailbox::Inbox;
    }
    let encoded = super::utf7::encode(&folder.name);
    Mailbox::try_from(encoded)
        .map(|m| m.into_static())
        .unwrap_or(Mailbox::Inbox)
}

/// The folder name a client means (modified UTF-7 decoded).
pub fn local_name(mailbox: &Mailbox<'_>) -> String {
    match mailbox {
        Mailbox::Inbox => "INBOX".into(),
        Mailbox::Other(other) => {
            let raw = String::from_utf8_lossy(other.as_ref()).to_string();
            super::utf7::decode(&raw).unwrap_or(raw)
        }
    }
}

pub use super::commands::list::list_match;

/// Does `value` fall in `set`, where `*` is `largest`?
pub fn in_set(set: &SequenceSet, value: u32, largest: u32) -> bool {
    let expand = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|seq| match seq {
        Sequence::Single(s) => expand(s) == value,
        Sequence::Range(a, b) => {
            let (a, b) = (expand(a), expand(b));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            (lo..=hi).contains(&value)
        }
    })
}

fn imap_date(unix: Option<i64>) -> DateTime {
    let when: ChronoDateTime<FixedOffset> = unix
        .and_then(|s| Utc.timestamp_opt(s, 0).single())
        .unwrap_or_else(Utc::now)
        .fixed_offset();
    DateTime::try_from(when).unwrap_or_else(|_| {
        DateTime::try_from(Utc.timestamp_opt(0, 0).unwrap().fixed_offset()).expect("epoch")
    })
}

/// A message's bytes, with the part tree read on first use.
struct Lazy<'a> {
    bytes: &'a [u8],
    tree: std::cell::OnceCell<mime::Message<'a>>,
}

impl<'a> Lazy<'a> {
    fn new(bytes: &'a [u8]) -> Lazy<'a> {
        Lazy {
            bytes,
            tree: std::cell::OnceCell::new(),
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn parsed(&self) -> &mime::Message<'a> {
        self.tree.get_or_init(|| mime::Message::new(self.bytes))
    }

    fn envelope(&self) -> imap_next::imap_types::envelope::Envelope<'static> {
        mime::envelope(self.bytes)
    }

    fn body_structure(&self) -> imap_next::imap_types::body::BodyStructure<'static> {
        self.parsed().body_structure()
    }

    fn body(&self) -> imap_next::imap_types::body::BodyStructure<'static> {
        self.parsed().body()
    }

    /// `BODY[section]`: the top-level header and text need no part tree.
    fn section(&self, section: Option<&Section<'_>>) -> std::borrow::Cow<'a, [u8]> {
        match section {
            None
            | Some(Section::Header(None))
            | Some(Section::Text(None))
            | Some(Section::HeaderFields(None, _))
            | Some(Section::HeaderFieldsNot(None, _)) => mime::section(self.bytes, section),
            Some(_) => self.parsed().section(section),
        }
    }
}

fn nstring(bytes: &[u8]) -> NString<'static> {
    // The cache already turned NUL into 0x80 (see content.rs); anything
    // else a literal cannot carry is made safe the same way.
    match Literal::try_from(bytes.to_vec()) {
        Ok(l) => NString::from(l.into_static()),
        Err(_) => NString::from(Literal::unvalidated(super::content::without_nul(bytes))),
    }
}

impl Shared {
    /// Open the account behind a successful login.
    pub fn open(&self, account: Account) -> Result<Authenticated, String> {
        let runtime = self.accounts.get(account.id)?;
        let backend: Arc<dyn MailBackend> = Arc::new(runtime.mailbox.clone());
        // The per-account INBOX (`accounts set --imap-inbox`): a folder of
        // the account's own mailbox, or of one of its shared mailboxes.
        let inbox = account
            .imap_inbox
            .as_deref()
            .map(|name| name.trim_end_matches('/'))
            .filter(|name| !name.is_empty() && !name.eq_ignore_ascii_case("INBOX"));
        let placement = |prefix: &str| -> InboxPlacement {
            match inbox {
                None => InboxPlacement::Own,
                Some(name) => {
                    let shared_target = account.shared_mailboxes.iter().find_map(|a| {
                        let p = format!("{SHARED_PREFIX}{a}/");
                        name.get(..p.len())
                            .filter(|head| head.eq_ignore_ascii_case(&p))
                            .map(|_| p)
                    });
                    match shared_target {
                        Some(p) if p.eq_ignore_ascii_case(prefix) => {
                            InboxPlacement::Folder(name[p.len()..].to_string())
                        }
                        Some(_) => InboxPlacement::Elsewhere,
                        None if prefix.is_empty() => InboxPlacement::Folder(name.to_string()),
                        None => InboxPlacement::Own,
                    }
                }
            }
        };
        let own = MailboxModel::new(
            self.store.clone(),
            account.id,
            account.mailbox.clone(),
            backend,
        )
        .with_inbox(placement(""));
        let shared = account
            .shared_mailboxes
            .iter()
            .map(|address| {
                let backend: Arc<dyn MailBackend> = Arc::new(self.accounts.graph().mailbox(
                    crate::graph::Mailbox::User(address.clone()),
                    runtime.tokens.clone(),
                ));
                let prefix = format!("{SHARED_PREFIX}{address}/");
                MailboxModel::new(self.store.clone(), account.id, address.clone(), backend)
                    .with_inbox(placement(&prefix))
                    .with_prefix(prefix)
            })
            .collect();
        Ok(Authenticated {
            account,
            model: MailboxSet::new(own, shared),
        })
    }
}

/// Bring `view` up to the folder's state in the store and say what
/// changed as untagged responses, in RFC 3501 §7.4.1 order: EXPUNGE for
/// messages gone (highest sequence number first, so each number is still
/// valid when sent), EXISTS for new ones, FETCH FLAGS for flags that differ
/// from what the client was last told. Works the same whether this
/// session's sync, another session or Outlook caused the change.
pub fn report(view: &mut View, _changes: &FolderChanges, store: &Store) -> Vec<Data<'static>> {
    let mut out = Vec::new();
    let Ok(records) = store.messages(view.folder.id) else {
        return out;
    };
    let mut gone: Vec<u32> = view
        .uids
        .iter()
        .enumerate()
        .filter(|(_, u)| super::content::find(&records, **u).is_none())
        .map(|(i, _)| i as u32 + 1)
        .collect();
    gone.sort_unstable_by(|a, b| b.cmp(a));
    for seq in gone {
        let uid = view.uids.remove(seq as usize - 1);
        view.told.remove(&uid);
        out.push(Data::Expunge(nz(seq)));
    }
    let last = view.uids.last().copied().unwrap_or(Uid(0));
    let new: Vec<&MessageRecord> = records.iter().filter(|r| r.uid > last).collect();
    if !new.is_empty() {
        for r in &new {
            view.uids.push(r.uid);
            view.told.insert(r.uid, (r.flags, r.keywords.clone()));
        }
        out.push(Data::Exists(view.uids.len() as u32));
    }
    for (i, uid) in view.uids.iter().enumerate() {
        let Some(r) = super::content::find(&records, *uid) else {
            continue;
        };
        let now = (r.flags, r.keywords.clone());
        if view.told.get(uid) != Some(&now) {
            let items = vec![
                MessageDataItem::Uid(nz(uid.0)),
                MessageDataItem::Flags(flag_list(r.flags, &r.keywords)),
            ];
            if let Ok(items) = Vec1::try_from(items) {
                out.push(Data::Fetch {
                    seq: nz(i as u32 + 1),
                    items,
                });
            }
            view.told.insert(*uid, now);
        }
    }
    out
}

/// The messages of `set` in the view, with their sequence numbers.
pub fn resolve(
    view: &View,
    records: &[MessageRecord],
    set: &SequenceSet,
    uid: bool,
) -> Vec<(u32, MessageRecord)> {
    let largest_seq = view.uids.len() as u32;
    let largest_uid = view.uids.last().map_or(0, |u| u.0);
    view.uids
        .iter()
        .enumerate()
        .filter(|(i, u)| {
            if uid {
                in_set(set, u.0, largest_uid)
            } else {
                in_set(set, *i as u32 + 1, largest_seq)
            }
        })
        .filter_map(|(i, u)| super::content::find(records, *u).map(|r| (i as u32 + 1, r.clone())))
        .collect()
}

fn needs_content(names: &[MessageDataItemName<'_>]) -> bool {
    names.iter().any(|n| {
        !matches!(
            n,
            MessageDataItemName::Uid
                | MessageDataItemName::Flags
                | MessageDataItemName::InternalDate
        )
    })
}

/// FETCH / UID FETCH.
pub async fn fetch(
    shared: &Shared,
    auth: &Authenticated,
    view: &mut View,
    set: &SequenceSet,
    names: &MacroOrMessageDataItemNames<'_>,
    uid: bool,
) -> Result<Vec<Data<'static>>, Refusal> {
    let mut names: Vec<MessageDataItemName<'_>> = match names {
        MacroOrMessageDataItemNames::Macro(m) => {
            m.expand().into_iter().map(|n| n.into_static()).collect()
        }
        MacroOrMessageDataItemNames::MessageDataItemNames(n) => n.clone(),
    };
    if uid && !names.contains(&MessageDataItemName::Uid) {
        names.insert(0, MessageDataItemName::Uid);
    }
    let records = shared
        .store
        .messages(view.folder.id)
        .map_err(|e| Refusal::no(e.to_string()))?;
    let mut targets = resolve(view, &records, set, uid);
    if needs_content(&names) {
        let wanted: Vec<MessageRecord> = targets.iter().map(|(_, r)| r.clone()).collect();
        let ready = shared
            .cache
            .ensure(
                auth.model.backend_for(&view.folder).as_ref(),
                view.folder.id,
                wanted,
            )
            .await
            .map_err(|e| Refusal::no(format!("Graph could not deliver the messages: {e}")))?;
        targets.retain_mut(|(_, r)| match super::content::find(&ready, r.uid) {
            Some(fresh) => {
                *r = fresh.clone();
                true
            }
            None => false,
        });
    }
    let mut out = Vec::new();
    let mut mark_seen = Vec::new();
    for (seq, record) in targets {
        let bytes: Option<Bytes> = if needs_content(&names) {
            shared.cache.read(&record).await
        } else {
            None
        };
        // One part tree per message for all the items asked for; it is
        // read only when an item needs it.
        let message = Lazy::new(bytes.as_deref().unwrap_or_default());
        let mut items = Vec::new();
        let mut set_seen = false;
        let mut fetched_whole = false;
        for name in &names {
            let item = match name {
                MessageDataItemName::Uid => MessageDataItem::Uid(nz(record.uid.0)),
                MessageDataItemName::Flags => continue,
                MessageDataItemName::InternalDate => {
                    MessageDataItem::InternalDate(imap_date(record.internal_date))
                }
                MessageDataItemName::Rfc822Size => {
                    MessageDataItem::Rfc822Size(mime::rfc822_size(message.bytes()))
                }
                MessageDataItemName::Rfc822 => {
                    set_seen = true;
                    fetched_whole = true;
                    MessageDataItem::Rfc822(nstring(message.bytes()))
                }
                MessageDataItemName::Rfc822Header => MessageDataItem::Rfc822Header(nstring(
                    &message.section(Some(&Section::Header(None))),
                )),
                MessageDataItemName::Rfc822Text => {
                    set_seen = true;
                    fetched_whole = true;
                    MessageDataItem::Rfc822Text(nstring(
                        &message.section(Some(&Section::Text(None))),
                    ))
                }
                MessageDataItemName::BodyExt {
                    section,
                    partial: range,
                    peek,
                } => {
                    if !peek {
                        set_seen = true;
                    }
                    if range.is_none() && matches!(section, None | Some(Section::Text(None))) {
                        fetched_whole = true;
                    }
                    let data = message.section(section.as_ref());
                    let data = match range {
                        Some((start, len)) => mime::partial(&data, *start, len.get()),
                        None => &data[..],
                    };
                    MessageDataItem::BodyExt {
                        section: section.clone().map(|s| s.into_static()),
                        origin: range.map(|(start, _)| start),
                        data: nstring(data),
                    }
                }
                MessageDataItemName::Envelope => MessageDataItem::Envelope(message.envelope()),
                MessageDataItemName::BodyStructure => {
                    MessageDataItem::BodyStructure(message.body_structure())
                }
                MessageDataItemName::Body => MessageDataItem::Body(message.body()),
                _ => {
                    return Err(Refusal::no(
                        "BINARY and MODSEQ are not offered (see CAPABILITY)",
                    ));
                }
            };
            items.push(item);
        }
        if fetched_whole && !view.read_only {
            view.fetched.insert(record.uid);
        }
        let mut bits = record.flags;
        if set_seen && bits & flags::SEEN == 0 && !view.read_only {
            bits |= flags::SEEN;
            mark_seen.push(record.clone());
        }
        if names.contains(&MessageDataItemName::Flags) || (set_seen && bits != record.flags) {
            items.push(MessageDataItem::Flags(flag_list(bits, &record.keywords)));
            view.told
                .insert(record.uid, (bits, record.keywords.clone()));
        }
        if let Ok(items) = Vec1::try_from(items) {
            out.push(Data::Fetch {
                seq: nz(seq),
                items,
            });
        }
    }
    for r in mark_seen {
        let id = RemoteMessageId::new(r.remote_id.clone());
        let update = FlagUpdate {
            is_read: Some(true),
            ..FlagUpdate::default()
        };
        if auth
            .model
            .backend_for(&view.folder)
            .update_flags(&id, &update)
            .await
            .is_ok()
        {
            let _ = shared.store.set_message_flags(
                view.folder.id,
                r.uid,
                r.flags | flags::SEEN,
                &r.keywords,
            );
        }
    }
    Ok(out)
}

/// What a STORE asks for.
pub struct StoreRequest<'a> {
    pub set: &'a SequenceSet,
    pub kind: &'a StoreType,
    pub flags: &'a [Flag<'a>],
    /// `.SILENT`: no FETCH responses.
    pub silent: bool,
    pub uid: bool,
}

/// STORE / UID STORE: flags to Graph (`\Deleted` stays local).
pub async fn store_flags(
    shared: &Shared,
    auth: &Authenticated,
    view: &mut View,
    request: &StoreRequest<'_>,
) -> Result<Vec<Data<'static>>, Refusal> {
    let StoreRequest {
        set,
        kind,
        flags: new_flags,
        silent,
        uid,
    } = *request;
    if view.read_only {
        return Err(Refusal::no(
            "the folder is open read-only (EXAMINE); SELECT it to change flags",
        ));
    }
    let records = shared
        .store
        .messages(view.folder.id)
        .map_err(|e| Refusal::no(e.to_string()))?;
    let mut bits = 0u32;
    let mut keywords = Vec::new();
    for f in new_flags {
        match f {
            Flag::Seen => bits |= flags::SEEN,
            Flag::Answered => bits |= flags::ANSWERED,
            Flag::Flagged => bits |= flags::FLAGGED,
            Flag::Deleted => bits |= flags::DELETED,
            Flag::Draft => bits |= flags::DRAFT,
            Flag::Keyword(k) if k.as_ref().eq_ignore_ascii_case("$Forwarded") => {
                bits |= flags::FORWARDED
            }
            Flag::Keyword(k) => keywords.push(k.as_ref().to_string()),
            Flag::Extension(_) => {}
        }
    }
    let mut out = Vec::new();
    for (seq, r) in resolve(view, &records, set, uid) {
        let old = crate::mailbox::Flags::from_store(r.flags, &r.keywords);
        let mut new_bits = match kind {
            StoreType::Replace => bits | (old.bits & flags::DRAFT),
            StoreType::Add => old.bits | bits,
            StoreType::Remove => old.bits & !bits,
        };
        // \Draft follows Graph's isDraft, which a client cannot change.
        new_bits = (new_bits & !flags::DRAFT) | (old.bits & flags::DRAFT);
        let mut new_keywords = match kind {
            StoreType::Replace => keywords.clone(),
            StoreType::Add => {
                let mut k = old.keywords.clone();
                k.extend(keywords.iter().cloned());
                k
            }
            StoreType::Remove => old
                .keywords
                .iter()
                .filter(|k| !keywords.iter().any(|x| x.eq_ignore_ascii_case(k)))
                .cloned()
                .collect(),
        };
        new_keywords.sort();
        new_keywords.dedup();
        let changed = |bit: u32| (old.bits & bit) != (new_bits & bit);
        let update = FlagUpdate {
            is_read: changed(flags::SEEN).then_some(new_bits & flags::SEEN != 0),
            flag: changed(flags::FLAGGED).then_some(if new_bits & flags::FLAGGED != 0 {
                FlagStatus::Flagged
            } else {
                FlagStatus::NotFlagged
            }),
            answered: changed(flags::ANSWERED).then_some(new_bits & flags::ANSWERED != 0),
            forwarded: changed(flags::FORWARDED).then_some(new_bits & flags::FORWARDED != 0),
            categories: (new_keywords != old.keywords).then(|| new_keywords.clone()),
        };
        if update != FlagUpdate::default() {
            let id = RemoteMessageId::new(r.remote_id.clone());
            auth.model
                .backend_for(&view.folder)
                .update_flags(&id, &update)
                .await
                .map_err(|e| Refusal::no(format!("Graph refused the flag change: {e}")))?;
        }
        let keywords_text = new_keywords.join(" ");
        shared
            .store
            .set_message_flags(view.folder.id, r.uid, new_bits, &keywords_text)
            .map_err(|e| Refusal::no(e.to_string()))?;
        // With or without .SILENT the client now knows these flags.
        view.told.insert(r.uid, (new_bits, keywords_text.clone()));
        if !silent {
            let mut items = vec![MessageDataItem::Flags(flag_list(new_bits, &keywords_text))];
            if uid {
                items.insert(0, MessageDataItem::Uid(nz(r.uid.0)));
            }
            if let Ok(items) = Vec1::try_from(items) {
                out.push(Data::Fetch {
                    seq: nz(seq),
                    items,
                });
            }
        }
    }
    Ok(out)
}

/// EXPUNGE (all `\Deleted`, or only those in `only` for UID EXPUNGE):
/// deleted in Graph, then reported. Returns the EXPUNGE responses.
pub async fn expunge(
    shared: &Shared,
    auth: &Authenticated,
    view: &mut View,
    only: Option<&SequenceSet>,
) -> Result<Vec<Data<'static>>, Refusal> {
    let records = shared
        .store
        .messages(view.folder.id)
        .map_err(|e| Refusal::no(e.to_string()))?;
    let largest = view.uids.last().map_or(0, |u| u.0);
    let doomed: Vec<&MessageRecord> = records
        .iter()
        .filter(|r| r.flags & flags::DELETED != 0)
        .filter(|r| only.is_none_or(|set| in_set(set, r.uid.0, largest)))
        .collect();
    delete(shared, auth, view, doomed).await
}

/// Leaving the selected folder cleanly (CLOSE, UNSELECT, SELECT of
/// another, LOGOUT): for an account that keeps no fetched mail
/// (`accounts set --keep-fetched no`), delete what this session fetched
/// in full, as EXPUNGE deletes. A dropped connection deletes nothing:
/// the client may not have stored what it fetched.
pub async fn leave(shared: &Shared, auth: &Authenticated, view: &mut View) {
    if auth.account.keep_fetched || view.read_only || view.fetched.is_empty() {
        return;
    }
    let Ok(records) = shared.store.messages(view.folder.id) else {
        return;
    };
    let fetched: Vec<&MessageRecord> = records
        .iter()
        .filter(|r| view.fetched.contains(&r.uid))
        .collect();
    let n = fetched.len();
    match delete(shared, auth, view, fetched).await {
        Ok(_) => tracing::info!(
            account = %auth.account.login,
            folder = %view.folder.name,
            messages = n,
            "fetched messages deleted on leaving the folder (keep_fetched = no)"
        ),
        Err(e) => tracing::warn!(
            account = %auth.account.login,
            folder = %view.folder.name,
            "could not delete the fetched messages: {}; they stay and are tried again \
             the next time they are fetched",
            match e {
                Refusal::No(t) | Refusal::Bad(t) => t,
            }
        ),
    }
}

/// Delete `doomed` in Graph (to Deleted Items, or for good with
/// `imap.expunge_permanently`) and from the folder's table; the untagged
/// EXPUNGEs for the view.
async fn delete(
    shared: &Shared,
    auth: &Authenticated,
    view: &mut View,
    doomed: Vec<&MessageRecord>,
) -> Result<Vec<Data<'static>>, Refusal> {
    let mut gone = Vec::new();
    for r in doomed {
        let id = RemoteMessageId::new(r.remote_id.clone());
        let result = if shared.expunge_permanently {
            auth.model
                .backend_for(&view.folder)
                .permanent_delete(&id)
                .await
        } else {
            auth.model
                .backend_for(&view.folder)
                .delete_message(&id)
                .await
        };
        match result {
            Ok(()) => gone.push(r.remote_id.clone()),
            Err(e) if e.status() == Some(404) => gone.push(r.remote_id.clone()),
            Err(e) => {
                return Err(Refusal::no(format!(
                    "Graph refused to delete a message: {e}"
                )));
            }
        }
    }
    let removed = shared
        .store
        .remove_messages(view.folder.id, &gone)
        .map_err(|e| Refusal::no(e.to_string()))?;
    let mut removed = removed;
    removed.sort();
    Ok(report(
        view,
        &FolderChanges {
            removed,
            ..FolderChanges::default()
        },
        &shared.store,
    ))
}

/// Does a SEARCH key need the message's bytes (headers or body)?
fn needs_bytes(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::Bcc(_)
        | SearchKey::Body(_)
        | SearchKey::Cc(_)
        | SearchKey::From(_)
        | SearchKey::Header(..)
        | SearchKey::Larger(_)
        | SearchKey::Smaller(_)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_)
        | SearchKey::Subject(_)
        | SearchKey::Text(_)
        | SearchKey::To(_) => true,
        SearchKey::Not(k) => needs_bytes(k),
        SearchKey::Or(a, b) => needs_bytes(a) || needs_bytes(b),
        SearchKey::And(keys) => keys.as_ref().iter().any(needs_bytes),
        _ => false,
    }
}

/// Case-insensitive substring (RFC 3501 §6.4.4), on decoded text.
fn contains(haystack: &str, needle: &[u8]) -> bool {
    let needle = String::from_utf8_lossy(needle).to_lowercase();
    haystack.to_lowercase().contains(&needle)
}

/// What content keys look at, parsed once per message.
struct Parsed {
    size: usize,
    header_text: String,
    body_text: String,
    sent: Option<chrono::NaiveDate>,
    headers: Vec<(String, String)>,
}

fn parse_for_search(bytes: &[u8]) -> Parsed {
    let head = mime::section(bytes, Some(&Section::Header(None))).len();
    let message = crate::mime::parse_message(bytes);
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(&bytes[..head]).split("\r\n") {
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    // Decoded header values (encoded words) next to the raw ones.
    if let Some(m) = &message {
        for h in m.headers() {
            if let Some(text) = h.value().as_text() {
                headers.push((h.name().to_ascii_lowercase(), text.to_string()));
            }
            if let Some(addr) = h.value().as_address() {
                for a in addr.iter() {
                    let both = format!(
                        "{} <{}>",
                        a.name().unwrap_or_default(),
                        a.address().unwrap_or_default()
                    );
                    headers.push((h.name().to_ascii_lowercase(), both));
                }
            }
        }
    }
    let body_text = message
        .as_ref()
        .map(|m| {
            (0..m.text_body.len().max(1))
                .filter_map(|i| m.body_text(i).map(|t| t.to_string()))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes[head..]).to_string());
    let sent = message
        .as_ref()
        .and_then(|m| m.date())
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(&d.to_rfc3339()).ok())
        .map(|d| d.date_naive());
    Parsed {
        size: bytes.len(),
        header_text: String::from_utf8_lossy(&bytes[..head]).to_string(),
        body_text,
        sent,
        headers,
    }
}

/// SEARCH: flags, UIDs, sequence numbers, keywords and dates from the
/// local index; header, body, size and sent-date keys from the message
/// bytes (fetched in `$batch` groups the first time, then from the cache).
pub async fn search(
    shared: &Shared,
    auth: &Authenticated,
    view: &View,
    keys: &[SearchKey<'_>],
    uid: bool,
) -> Result<Data<'static>, Refusal> {
    let mut records = shared
        .store
        .messages(view.folder.id)
        .map_err(|e| Refusal::no(e.to_string()))?;
    let mut parsed: std::collections::HashMap<Uid, Parsed> = std::collections::HashMap::new();
    if keys.iter().any(needs_bytes) {
        let in_view: Vec<MessageRecord> = records
            .iter()
            .filter(|r| view.uids.binary_search(&r.uid).is_ok())
            .cloned()
            .collect();
        records = shared
            .cache
            .ensure(
                auth.model.backend_for(&view.folder).as_ref(),
                view.folder.id,
                in_view,
            )
            .await
            .map_err(|e| Refusal::no(format!("Graph could not deliver the messages: {e}")))?;
        for r in &records {
            if let Some(bytes) = shared.cache.read(r).await {
                parsed.insert(r.uid, parse_for_search(&bytes));
            }
        }
    }
    let largest_seq = view.uids.len() as u32;
    let largest_uid = view.uids.last().map_or(0, |u| u.0);
    fn matches(
        key: &SearchKey<'_>,
        seq: u32,
        r: &MessageRecord,
        p: Option<&Parsed>,
        largest: (u32, u32),
    ) -> Result<bool, String> {
        let header = |name: &str, needle: &[u8]| {
            p.is_some_and(|p| {
                p.headers
                    .iter()
                    .any(|(n, v)| n == name && contains(v, needle))
            })
        };
        Ok(match key {
            SearchKey::All => true,
            SearchKey::Seen => r.flags & flags::SEEN != 0,
            SearchKey::Unseen => r.flags & flags::SEEN == 0,
            SearchKey::Answered => r.flags & flags::ANSWERED != 0,
            SearchKey::Unanswered => r.flags & flags::ANSWERED == 0,
            SearchKey::Flagged => r.flags & flags::FLAGGED != 0,
            SearchKey::Unflagged => r.flags & flags::FLAGGED == 0,
            SearchKey::Deleted => r.flags & flags::DELETED != 0,
            SearchKey::Undeleted => r.flags & flags::DELETED == 0,
            SearchKey::Draft => r.flags & flags::DRAFT != 0,
            SearchKey::Undraft => r.flags & flags::DRAFT == 0,
            SearchKey::Recent | SearchKey::New => false,
            SearchKey::Old => true,
            SearchKey::SequenceSet(set) => in_set(set, seq, largest.0),
            SearchKey::Uid(set) => in_set(set, r.uid.0, largest.1),
            SearchKey::Not(k) => !matches(k, seq, r, p, largest)?,
            SearchKey::Or(a, b) => {
                matches(a, seq, r, p, largest)? || matches(b, seq, r, p, largest)?
            }
            SearchKey::And(keys) => {
                let mut all = true;
                for k in keys.as_ref() {
                    all &= matches(k, seq, r, p, largest)?;
                }
                all
            }
            SearchKey::Keyword(k) => r
                .keywords
                .split_whitespace()
                .any(|w| w.eq_ignore_ascii_case(k.as_ref())),
            SearchKey::Unkeyword(k) => !r
                .keywords
                .split_whitespace()
                .any(|w| w.eq_ignore_ascii_case(k.as_ref())),
            SearchKey::Before(d) | SearchKey::On(d) | SearchKey::Since(d) => {
                let day = r
                    .internal_date
                    .and_then(|s| Utc.timestamp_opt(s, 0).single())
                    .map(|t| t.date_naive());
                let d = d.as_ref();
                match (key, day) {
                    (_, None) => false,
                    (SearchKey::Before(_), Some(day)) => day < *d,
                    (SearchKey::On(_), Some(day)) => day == *d,
                    (_, Some(day)) => day >= *d,
                }
            }
            SearchKey::SentBefore(d) | SearchKey::SentOn(d) | SearchKey::SentSince(d) => {
                let d = d.as_ref();
                match (key, p.and_then(|p| p.sent)) {
                    (_, None) => false,
                    (SearchKey::SentBefore(_), Some(day)) => day < *d,
                    (SearchKey::SentOn(_), Some(day)) => day == *d,
                    (_, Some(day)) => day >= *d,
                }
            }
            SearchKey::Subject(s) => header("subject", s.as_ref()),
            SearchKey::From(s) => header("from", s.as_ref()),
            SearchKey::To(s) => header("to", s.as_ref()),
            SearchKey::Cc(s) => header("cc", s.as_ref()),
            SearchKey::Bcc(s) => header("bcc", s.as_ref()),
            SearchKey::Header(name, value) => {
                let name = String::from_utf8_lossy(name.as_ref()).to_ascii_lowercase();
                if value.as_ref().is_empty() {
                    p.is_some_and(|p| p.headers.iter().any(|(n, _)| *n == name))
                } else {
                    header(&name, value.as_ref())
                }
            }
            SearchKey::Body(s) => p.is_some_and(|p| contains(&p.body_text, s.as_ref())),
            SearchKey::Text(s) => p.is_some_and(|p| {
                contains(&p.header_text, s.as_ref()) || contains(&p.body_text, s.as_ref())
            }),
            SearchKey::Larger(n) => p.is_some_and(|p| p.size > *n as usize),
            SearchKey::Smaller(n) => p.is_some_and(|p| p.size < *n as usize),
        })
    }
    let mut hits = Vec::new();
    for (i, uidv) in view.uids.iter().enumerate() {
        let Some(r) = super::content::find(&records, *uidv) else {
            continue;
        };
        let seq = i as u32 + 1;
        let mut all = true;
        for k in keys {
            all &= matches(k, seq, r, parsed.get(&r.uid), (largest_seq, largest_uid))
                .map_err(Refusal::No)?;
        }
        if all {
            hits.push(nz(if uid { r.uid.0 } else { seq }));
        }
    }
    Ok(Data::Search(hits))
}
