//! One IMAP connection's state, and what several commands share.
//!
//! States (RFC 3501 §3): not authenticated → authenticated → selected →
//! logout. [`allowed`] is the one table of which command each state takes;
//! everything else gets `BAD` with the state it needs, and the connection
//! stays up. The commands themselves are in `super::commands`, one file
//! each; here are their common parts: [`Reply`] and [`Refusal`], the
//! selected [`View`], [`report`] of changes, [`resolve`] of sequence sets,
//! [`leave`] and `delete`, and name and flag helpers.
//!
//! The selected folder is a *view*: the UIDs in sequence-number order as
//! the client last learned them. Remote changes (from the mailbox model's
//! delta sync) reach the view only at NOOP, CHECK, IDLE and SELECT, as
//! EXPUNGE / EXISTS / FETCH FLAGS in the order RFC 3501 §7.4.1 requires —
//! never in the middle of a FETCH, STORE or SEARCH.

use std::num::NonZeroU32;
use std::sync::Arc;

use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::command::CommandBody;
use imap_next::imap_types::core::{Tag, Vec1};
use imap_next::imap_types::fetch::MessageDataItem;
use imap_next::imap_types::flag::{Flag, FlagFetch, FlagPerm};
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{Code, Data, Status};
use imap_next::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use crate::mailbox::content::{self, ContentCache};
use crate::mailbox::open::Account;
use crate::mailbox::{FolderGate, FolderRecord, MailboxSet, MessageRecord, Uid};
use crate::runtime::Accounts;

/// What a command produced, in the order it is sent: `first` (a FLAGS
/// that introduces keywords, RFC 3501 §7.2.6: before any PERMANENTFLAGS
/// or FETCH FLAGS that uses them), untagged statuses (`OK [UIDVALIDITY
/// …]`, `BYE`), untagged data, then the tagged status.
pub struct Reply {
    /// Untagged statuses before anything else (`OK [CLOSED]`, RFC 7162
    /// §3.2.11: it ends the responses of the folder closed).
    pub before: Vec<Status<'static>>,
    pub first: Vec<Data<'static>>,
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

/// IMAP text (RFC 3501 §9 `text`): one line, no CR/LF, not empty, and
/// only `TEXT-CHAR`s (7-bit, no NUL): any other character becomes `?`
/// (a refusal quoting a folder name with an umlaut was not sent at all, and
/// the client waited for it forever).
pub fn text(s: &str) -> String {
    let t: String = s
        .chars()
        .filter(|c| *c != '\r' && *c != '\n')
        .map(|c| if c.is_ascii() && c != '\0' { c } else { '?' })
        .collect();
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
            before: Vec::new(),
            first: Vec::new(),
            data: Vec::new(),
            untagged: Vec::new(),
            status: Err(r),
        }
    }
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            before: Vec::new(),
            first: Vec::new(),
            data: Vec::new(),
            untagged: Vec::new(),
            status: Ok((None, text.into())),
        }
    }
    pub fn no(text: impl Into<String>) -> Reply {
        Reply {
            before: Vec::new(),
            first: Vec::new(),
            data: Vec::new(),
            untagged: Vec::new(),
            status: Err(Refusal::No(text.into())),
        }
    }
    pub fn bad(text: impl Into<String>) -> Reply {
        Reply {
            before: Vec::new(),
            first: Vec::new(),
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
    /// The keywords the client was told FLAGS has (RFC 3501 §7.2.6).
    pub keywords: std::collections::BTreeSet<String>,
    /// The folder's gate: its change counter says when to look again.
    pub gate: Arc<FolderGate>,
    /// The counter when the view was last brought up to date.
    pub seen: u64,
    /// Messages are gone that could not be announced yet (§7.4.1).
    pub expunge_pending: bool,
    /// The messages that are `\Recent` for this session (RFC 3501
    /// §2.3.2): it was the first told of them.
    pub recent: std::collections::HashSet<Uid>,
    /// CONDSTORE is on (RFC 7162 §3.1): unsolicited FETCHes carry MODSEQ.
    pub condstore: bool,
    /// QRESYNC is enabled (RFC 7162 §3.2.10): expunges are told as
    /// VANISHED, not EXPUNGE.
    pub qresync: bool,
    /// The saved search result, `$` (RFC 5182), as UIDs, ascending.
    pub saved: Vec<Uid>,
}

impl View {
    /// The view of `folder` whose messages are `records`.
    pub fn new(
        folder: FolderRecord,
        read_only: bool,
        records: &[MessageRecord],
        gate: Arc<FolderGate>,
        seen: u64,
    ) -> View {
        View {
            folder,
            read_only,
            uids: records.iter().map(|r| r.uid).collect(),
            told: records
                .iter()
                .map(|r| (r.uid, (r.flags, r.keywords.clone())))
                .collect(),
            fetched: Default::default(),
            keywords: keywords_of(records),
            gate,
            seen,
            expunge_pending: false,
            recent: Default::default(),
            condstore: false,
            qresync: false,
            saved: Vec::new(),
        }
    }

    /// The flag bits to show for `uid`: its stored ones, with [`RECENT`]
    /// when it is recent for this session.
    pub fn shown(&self, uid: Uid, bits: u32) -> u32 {
        if self.recent.contains(&uid) {
            bits | RECENT
        } else {
            bits
        }
    }

    /// `$` (RFC 5182 §2.1): the saved UIDs still in the view, and their
    /// sequence numbers now.
    pub fn saved_sets(&self) -> (Vec<u32>, Vec<u32>) {
        let mut uids = Vec::with_capacity(self.saved.len());
        let mut seqs = Vec::with_capacity(self.saved.len());
        for u in &self.saved {
            if let Ok(i) = self.uids.binary_search(u) {
                uids.push(u.0);
                seqs.push(i as u32 + 1);
            }
        }
        (uids, seqs)
    }

    /// Make the messages from `floor` up recent for this session; the
    /// RECENT count to tell.
    pub fn mark_recent(&mut self, floor: Option<Uid>) -> u32 {
        if let Some(floor) = floor {
            self.recent
                .extend(self.uids.iter().copied().filter(|u| *u >= floor));
        }
        self.recent.len() as u32
    }
}

pub struct Authenticated {
    pub account: Account,
    /// The account's mailbox and the shared ones it reads (`Shared/…`).
    pub model: MailboxSet,
    /// The extensions this connection enabled (RFC 5161, RFC 7162).
    pub enabled: Enabled,
}

pub use super::modseq::Enabled;

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

/// The state a command needs (RFC 3501 §6 and the extensions offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Any state (§6.1; ID).
    Any,
    /// Not authenticated (§6.2).
    NotAuthenticated,
    /// Authenticated or selected (§6.3; NAMESPACE, IDLE, ENABLE).
    Authenticated,
    /// Selected (§6.4; UNSELECT, MOVE, UID EXPUNGE).
    Selected,
    /// Parsed by imap-types but not offered (not in CAPABILITY).
    Unsupported,
}

/// The command table: which state each command of imap-types'
/// `CommandBody` needs. Exhaustive: a command a new imap-types version
/// adds does not compile until it is placed here.
pub fn needs(body: &CommandBody<'_>) -> Needs {
    match body {
        CommandBody::Capability
        | CommandBody::Noop
        | CommandBody::Logout
        | CommandBody::Id { .. } => Needs::Any,
        CommandBody::StartTLS | CommandBody::Authenticate { .. } | CommandBody::Login { .. } => {
            Needs::NotAuthenticated
        }
        CommandBody::Select { .. }
        | CommandBody::Examine { .. }
        | CommandBody::Create { .. }
        | CommandBody::Delete { .. }
        | CommandBody::Rename { .. }
        | CommandBody::Subscribe { .. }
        | CommandBody::Unsubscribe { .. }
        | CommandBody::List { .. }
        | CommandBody::Lsub { .. }
        | CommandBody::Status { .. }
        | CommandBody::Append { .. }
        | CommandBody::Namespace
        // RFC 5161 §3.1: after login (Dovecot also takes it selected).
        | CommandBody::Enable { .. }
        | CommandBody::Idle => Needs::Authenticated,
        CommandBody::Check
        | CommandBody::Close
        | CommandBody::Unselect
        | CommandBody::Expunge
        | CommandBody::ExpungeUid { .. }
        | CommandBody::Search { .. }
        | CommandBody::Fetch { .. }
        | CommandBody::Store { .. }
        | CommandBody::Copy { .. }
        | CommandBody::Move { .. }
        | CommandBody::Sort { .. }
        | CommandBody::Thread { .. } => Needs::Selected,
        CommandBody::Compress { .. }
        | CommandBody::GetQuota { .. }
        | CommandBody::GetQuotaRoot { .. }
        | CommandBody::SetQuota { .. } => Needs::Unsupported,
    }
}

/// Whether `body` is valid in `state` (RFC 3501 §6); the refusal in words.
pub fn allowed(body: &CommandBody<'_>, state: Phase) -> Result<(), String> {
    let command = body.name().to_ascii_uppercase();
    let needs = needs(body);
    let ok = match (needs, state) {
        (Needs::Unsupported, _) => {
            return Err(format!("{command} is not supported (see CAPABILITY)"));
        }
        (_, Phase::Logout) => false,
        (Needs::Any, _) => true,
        (Needs::NotAuthenticated, s) => s == Phase::NotAuthenticated,
        (Needs::Authenticated, s) => s == Phase::Authenticated || s == Phase::Selected,
        (Needs::Selected, s) => s == Phase::Selected,
    };
    if ok {
        Ok(())
    } else {
        Err(match state {
            Phase::NotAuthenticated => format!("{command} needs you to log in first"),
            Phase::Authenticated if needs == Needs::Selected => {
                format!("{command} needs a selected folder: SELECT one first")
            }
            _ => format!("{command} is not valid now"),
        })
    }
}

/// Everything sessions share.
pub struct Shared {
    pub accounts: Arc<Accounts>,
    pub cache: ContentCache,
    /// EXPUNGE deletes for good instead of moving to Deleted Items.
    pub expunge_permanently: bool,
    /// How long a synced folder tree is used without asking Graph
    /// (`imap.idle_poll_s`): LOGIN and LIST cost no Graph request within it.
    pub folder_freshness: std::time::Duration,
}

pub(crate) fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("non-zero")
}

/// `\Recent` as a view-only bit beside the stored flags (it is this
/// session's, never stored): set it in what [`flag_list`] renders.
pub const RECENT: u32 = 1 << 31;

pub(crate) fn flag_list(bits: u32, keywords: &str) -> Vec<FlagFetch<'static>> {
    let mut out: Vec<FlagFetch<'static>> =
        crate::mailbox::Flags::from_store(bits & !RECENT, keywords)
            .imap_names()
            .into_iter()
            .filter_map(|name| {
                Flag::try_from(name.as_str())
                    .ok()
                    .map(|f| FlagFetch::Flag(f.into_static()))
            })
            .collect();
    if bits & RECENT != 0 {
        out.push(FlagFetch::Recent);
    }
    out
}

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

impl Shared {
    /// Open the account behind a successful login: its mailbox and the
    /// shared ones it reads, as the mailbox model offers them.
    pub fn open(&self, account: Account) -> Result<Authenticated, String> {
        let model =
            crate::mailbox::open::open_account(&self.accounts, &account, self.folder_freshness)?;
        Ok(Authenticated {
            account,
            model,
            enabled: Enabled::default(),
        })
    }
}

/// What a session is told at a command boundary: untagged statuses
/// (PERMANENTFLAGS) and data (EXPUNGE, EXISTS, FLAGS, FETCH FLAGS).
#[derive(Default)]
pub struct Announced {
    /// FLAGS, when keywords appeared: sent before everything else.
    pub first: Vec<Data<'static>>,
    pub data: Vec<Data<'static>>,
    pub untagged: Vec<Status<'static>>,
}

impl Reply {
    /// The reply with `news` before its tagged status.
    pub fn announcing(mut self, news: Announced) -> Reply {
        // The view's keywords only grow, so news' FLAGS and PERMANENTFLAGS
        // name all the command's do and more: sent alone. Both pairs went
        // out as FLAGS, FLAGS, PERMANENTFLAGS, PERMANENTFLAGS (`first`
        // precedes `untagged`), and between the second FLAGS and the first
        // PERMANENTFLAGS a new keyword looked not permanent (imaptest:
        // "Keyword not in PERMANENTFLAGS found").
        if news.first.iter().any(|d| matches!(d, Data::Flags(_))) {
            self.first.retain(|d| !matches!(d, Data::Flags(_)));
            self.untagged
                .retain(|u| !matches!(u.code(), Some(Code::PermanentFlags(_))));
        }
        self.first.extend(news.first);
        self.untagged.extend(news.untagged);
        self.data.extend(news.data);
        self
    }
}

/// The FLAGS of a folder whose messages carry `keywords` (RFC 3501
/// §7.2.6): the system flags, then every keyword in use.
pub fn folder_flags(keywords: &std::collections::BTreeSet<String>) -> Vec<Flag<'static>> {
    let mut out = vec![
        Flag::Answered,
        Flag::Flagged,
        Flag::Deleted,
        Flag::Seen,
        Flag::Draft,
    ];
    out.extend(
        keywords
            .iter()
            .filter_map(|k| Flag::try_from(k.as_str()).ok().map(|f| f.into_static())),
    );
    out
}

/// PERMANENTFLAGS (RFC 3501 §7.1): what a STORE keeps — the system flags
/// (`\Draft` and `\Deleted` in the index, see
/// [`crate::mailbox::flags`]), the keywords in use and any new one (`\*`).
pub fn permanent_flags(keywords: &std::collections::BTreeSet<String>) -> Code<'static> {
    let mut out = vec![
        FlagPerm::Flag(Flag::Answered),
        FlagPerm::Flag(Flag::Flagged),
        FlagPerm::Flag(Flag::Deleted),
        FlagPerm::Flag(Flag::Seen),
        FlagPerm::Flag(Flag::Draft),
    ];
    out.extend(keywords.iter().filter_map(|k| {
        Flag::try_from(k.as_str())
            .ok()
            .map(|f| FlagPerm::Flag(f.into_static()))
    }));
    out.push(FlagPerm::Asterisk);
    Code::PermanentFlags(out)
}

/// The keywords a reply's FETCH responses show.
pub fn keywords_shown(data: &[Data<'_>]) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for d in data {
        let Data::Fetch { items, .. } = d else {
            continue;
        };
        for item in items.as_ref() {
            if let MessageDataItem::Flags(flags) = item {
                out.extend(flags.iter().filter_map(|f| match f {
                    FlagFetch::Flag(Flag::Keyword(k)) => Some(k.as_ref().to_string()),
                    _ => None,
                }));
            }
        }
    }
    out
}

/// The keywords in use in a folder (`$Forwarded` included: IMAP sees it
/// as a keyword).
pub fn keywords_of(records: &[MessageRecord]) -> std::collections::BTreeSet<String> {
    let mut all = std::collections::BTreeSet::new();
    for r in records {
        all.extend(r.keywords.split_whitespace().map(str::to_string));
        if r.flags & crate::mailbox::flags::FORWARDED != 0 {
            all.insert("$Forwarded".to_string());
        }
    }
    all
}

/// Bring `view` up to the folder's stored state and say what changed, in
/// RFC 3501 §7.4.1 order: EXPUNGE for messages gone (highest sequence
/// number first, so each number is still valid when sent), EXISTS for new
/// ones, FLAGS when a keyword appeared, FETCH FLAGS for flags that differ
/// from what the client was last told. Works the same whether this
/// session, another session or Outlook (through a sync) made the change.
/// Without `expunges` (during FETCH, STORE, SEARCH: §7.4.1), messages gone
/// stay in the view until a later boundary may say so.
///
/// A new message is `\Recent` for the first session told of it; with
/// `take_recent` false (while idling) it is announced without being taken,
/// and stays recent for the next session that selects the folder.
///
/// `shown` are the keywords the command's own answer uses (a FETCH or
/// STORE may show one the stored state no longer has): FLAGS names them
/// too, and goes out before that answer (see [`Reply`]).
pub fn report(
    model: &MailboxSet,
    view: &mut View,
    expunges: bool,
    take_recent: bool,
    shown: &std::collections::BTreeSet<String>,
) -> Announced {
    let mut out = Announced::default();
    let version = view.gate.version();
    if version == view.seen
        && !(expunges && view.expunge_pending)
        && shown.is_subset(&view.keywords)
    {
        return out;
    }
    // Taken before the read: a later change moves the counter again; a
    // failed read is not retried in a loop (an idling session would spin).
    view.seen = version;
    let records = match model.messages(&view.folder) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(folder = %view.folder.name, "cannot read the folder's index: {e}");
            return out;
        }
    };
    view.expunge_pending = false;
    let mut gone: Vec<u32> = view
        .uids
        .iter()
        .enumerate()
        .filter(|(_, u)| content::find(&records, **u).is_none())
        .map(|(i, _)| i as u32 + 1)
        .collect();
    if !expunges {
        view.expunge_pending = !gone.is_empty();
        gone.clear();
    }
    gone.sort_unstable_by(|a, b| b.cmp(a));
    let mut vanished = Vec::new();
    for seq in gone {
        let uid = view.uids.remove(seq as usize - 1);
        view.told.remove(&uid);
        view.recent.remove(&uid);
        if view.qresync {
            vanished.push(uid);
        } else {
            out.data.push(Data::Expunge(nz(seq)));
        }
    }
    // With QRESYNC, one VANISHED of the UIDs instead (RFC 7162 §3.2.10).
    if let Some(set) = crate::imap::modseq::uid_set(&vanished) {
        out.data.push(Data::Vanished {
            earlier: false,
            known_uids: set,
        });
    }
    let last = view.uids.last().copied().unwrap_or(Uid(0));
    let new: Vec<&MessageRecord> = records.iter().filter(|r| r.uid > last).collect();
    if !new.is_empty() {
        for r in &new {
            view.uids.push(r.uid);
            view.told.insert(r.uid, (r.flags, r.keywords.clone()));
        }
        out.data.push(Data::Exists(view.uids.len() as u32));
        // The first session told of a message gets its \Recent (§7.3.2:
        // RECENT follows EXISTS); EXAMINE only looks.
        if take_recent {
            let floor = if view.read_only {
                model.recent_floor(&view.folder)
            } else {
                model.claim_recent(&view.folder).map(Some)
            };
            let before = view.recent.len();
            let now = view.mark_recent(floor.ok().flatten());
            if now as usize != before {
                out.data.push(Data::Recent(now));
            }
        }
    }
    let mut keywords = keywords_of(&records);
    keywords.extend(model.keywords(&view.folder).unwrap_or_default());
    keywords.extend(shown.iter().cloned());
    if !keywords.is_subset(&view.keywords) {
        view.keywords.extend(keywords);
        out.first.push(Data::Flags(folder_flags(&view.keywords)));
        out.untagged.extend(untagged_ok(
            permanent_flags(&view.keywords),
            "Flags permitted",
        ));
    }
    for (i, uid) in view.uids.iter().enumerate() {
        let Some(r) = content::find(&records, *uid) else {
            continue;
        };
        let now = (r.flags, r.keywords.clone());
        if view.told.get(uid) != Some(&now) {
            let mut items = vec![
                MessageDataItem::Uid(nz(uid.0)),
                MessageDataItem::Flags(flag_list(view.shown(r.uid, r.flags), &r.keywords)),
            ];
            // RFC 7162 §3.1.4: with CONDSTORE on, MODSEQ in every
            // unsolicited FETCH.
            if view.condstore {
                items.push(MessageDataItem::ModSeq(crate::imap::modseq::nz64(r.modseq)));
            }
            if let Ok(items) = Vec1::try_from(items) {
                out.data.push(Data::Fetch {
                    seq: nz(i as u32 + 1),
                    items,
                });
            }
            view.told.insert(*uid, now);
        }
    }
    out
}

/// Refuse a sequence set that names a message past the end (RFC 3501
/// §6.4.8 makes only UID sets lenient): `BAD` as Dovecot answers it,
/// where a message set is invalid when the folder is empty or any number
/// in it is above the message count (`n:*` needs `n` ≤ the count).
pub fn check_set(view: &View, set: &SequenceSet, uid: bool, command: &str) -> Result<(), Refusal> {
    if uid {
        return Ok(());
    }
    let count = view.uids.len() as u32;
    let too_far = |s: &SeqOrUid| matches!(s, SeqOrUid::Value(v) if v.get() > count);
    let invalid = count == 0
        || set.0.as_ref().iter().any(|seq| match seq {
            Sequence::Single(s) => too_far(s),
            Sequence::Range(a, b) => too_far(a) || too_far(b),
        });
    if invalid {
        return Err(Refusal::bad(format!(
            "Error in IMAP command {command}: Invalid messageset (the folder has {count} \
             message{}; sequence numbers past it are refused; use UID {command} for UIDs)",
            if count == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

/// The messages of `set` in the view, with their sequence numbers.
pub fn resolve(
    view: &View,
    records: &[MessageRecord],
    set: &SequenceSet,
    uid: bool,
) -> Vec<(u32, MessageRecord)> {
    in_view(view, set, uid)
        .into_iter()
        .filter_map(|(seq, u)| content::find(records, u).map(|r| (seq, r.clone())))
        .collect()
}

/// The (sequence number, UID) pairs of `set` in the session's view, also
/// those another session expunged meanwhile (not yet announced here).
pub fn in_view(view: &View, set: &SequenceSet, uid: bool) -> Vec<(u32, Uid)> {
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
        .map(|(i, u)| (i as u32 + 1, *u))
        .collect()
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
    let fetched: Vec<Uid> = view.fetched.iter().copied().collect();
    match auth
        .model
        .expunge(&view.folder, &fetched, false, shared.expunge_permanently)
        .await
    {
        Ok(out) => {
            tracing::info!(
                account = %auth.account.login,
                folder = %view.folder.name,
                messages = out.done.len(),
                "fetched messages deleted on leaving the folder (keep_fetched = no)"
            );
            if let Some(e) = out.failure {
                tracing::warn!(
                    account = %auth.account.login,
                    folder = %view.folder.name,
                    "could not delete every fetched message: {e}; they stay and are tried \
                     again the next time they are fetched"
                );
            }
        }
        Err(e) => tracing::warn!(
            account = %auth.account.login,
            folder = %view.folder.name,
            "could not delete the fetched messages: {e}; they stay and are tried again \
             the next time they are fetched"
        ),
    }
}
