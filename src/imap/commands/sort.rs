//! SORT and UID SORT (RFC 5256 §3): the messages SEARCH would find,
//! ordered by ARRIVAL, CC, DATE, FROM, SIZE, SUBJECT, TO (each may be
//! REVERSEd), ties by sequence number. Computed here from kept data:
//! the index (internal date, exact size) and each message's
//! [`SortKeys`], read once from its cached header block and kept in
//! memory by content hash ([`folder_keys`]). A warm folder costs no Graph
//! request; messages not cached yet are fetched once, as SEARCH fetches
//! them (`$batch`, 20 per request).

use super::Ctx;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, LazyLock, Mutex};

use imap_next::imap_types::core::Charset;
use imap_next::imap_types::extensions::sort::{SortCriterion, SortKey};
use imap_next::imap_types::search::SearchKey;

use crate::imap::session::{Authenticated, Refusal, Reply, Shared, View};
use crate::mailbox::MessageRecord;
use crate::mime::imap::sortkeys::{SortKeys, sort_keys};

/// The SORT answer: `* SORT n…` in the sorted order.
pub(crate) async fn handle(
    ctx: &mut Ctx<'_, '_>,
    criteria: &[SortCriterion],
    charset: &Charset<'_>,
    search: &[SearchKey<'_>],
    uid: bool,
) -> Reply {
    let shared: &Shared = &ctx.server.shared;
    let Some((auth, view)) = ctx.conn.state.selected() else {
        return Reply::bad("no folder selected: SELECT one first");
    };
    if let Err(r) = check_charset(charset) {
        return r.into();
    }
    if let Some(c) = criteria
        .iter()
        .find(|c| matches!(c.key, SortKey::DisplayFrom | SortKey::DisplayTo))
    {
        return Reply::bad(format!(
            "SORT by {} is SORT=DISPLAY (RFC 5957), which graphgate does not offer (see \
             CAPABILITY); sort by FROM or TO instead",
            if matches!(c.key, SortKey::DisplayFrom) {
                "DISPLAYFROM"
            } else {
                "DISPLAYTO"
            }
        ));
    }
    let keyed = match keyed_matches(shared, auth, view, search).await {
        Ok(k) => k,
        Err(r) => return r.into(),
    };
    let order = sort(&keyed, criteria);
    let mut line = b"* SORT".to_vec();
    for i in order {
        let k = &keyed[i];
        let _ = write!(line, " {}", if uid { k.uid } else { k.seq });
    }
    line.extend_from_slice(b"\r\n");
    if let Err(e) = ctx.sink.emit(&line).await {
        return Reply::no(format!("the connection failed while answering: {e}"));
    }
    Reply::ok("SORT completed")
}

/// SORT and THREAD take the charsets SEARCH takes (RFC 5256 §3: NO
/// [BADCHARSET] otherwise).
pub(crate) fn check_charset(charset: &Charset<'_>) -> Result<(), Refusal> {
    let name = charset.as_ref();
    if name.eq_ignore_ascii_case("US-ASCII") || name.eq_ignore_ascii_case("UTF-8") {
        Ok(())
    } else {
        Err(Refusal::no(format!(
            "[BADCHARSET (US-ASCII UTF-8)] charset {name:?} is not supported; use UTF-8"
        )))
    }
}

/// A matched message with what SORT and THREAD compare.
#[derive(Debug, Clone)]
pub struct Keyed {
    pub seq: u32,
    pub uid: u32,
    /// INTERNALDATE, Unix seconds (0 when unknown).
    pub arrival: i64,
    /// RFC822.SIZE.
    pub size: u64,
    /// The sent date (§2.2): the Date header, or else the internal date.
    pub date: i64,
    pub keys: Arc<SortKeys>,
}

impl Keyed {
    /// `record` (sequence number `seq`) with its `keys`.
    pub fn new(seq: u32, record: &MessageRecord, keys: Arc<SortKeys>) -> Keyed {
        let arrival = record.internal_date.unwrap_or(0);
        Keyed {
            seq,
            uid: record.uid.0,
            arrival,
            size: record.size.unwrap_or(0),
            date: keys.sent.unwrap_or(arrival),
            keys,
        }
    }
}

/// The indexes of `keyed` in SORT order: by each criterion in turn
/// (REVERSE turns that one only), then by sequence number (§3: "the
/// order in which they appear in the mailbox").
pub fn sort(keyed: &[Keyed], criteria: &[SortCriterion]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keyed.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&keyed[a], &keyed[b]);
        for c in criteria {
            let o = match c.key {
                SortKey::Arrival => a.arrival.cmp(&b.arrival),
                SortKey::Cc => a.keys.cc.cmp(&b.keys.cc),
                SortKey::Date => a.date.cmp(&b.date),
                SortKey::From => a.keys.from.cmp(&b.keys.from),
                SortKey::Size => a.size.cmp(&b.size),
                SortKey::Subject => a.keys.subject.cmp(&b.keys.subject),
                SortKey::To => a.keys.to.cmp(&b.keys.to),
                SortKey::DisplayFrom | SortKey::DisplayTo => Ordering::Equal,
            };
            let o = if c.reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.seq.cmp(&b.seq)
    });
    order
}

/// The messages `search` matches, each with its keys.
pub(crate) async fn keyed_matches(
    shared: &Shared,
    auth: &Authenticated,
    view: &View,
    search: &[SearchKey<'_>],
) -> Result<Vec<Keyed>, Refusal> {
    let hits = super::search::matching(shared, auth, view, search).await?;
    folder_keys(shared, auth, view, hits).await
}

/// Keys kept in memory, by content hash (the bytes behind a hash never
/// change, so neither do their keys). Bounded: emptied when full.
static KEPT: LazyLock<Mutex<HashMap<String, Arc<SortKeys>>>> = LazyLock::new(Default::default);

/// Most keys kept in memory (a few hundred bytes each).
const MAX_KEPT: usize = 200_000;

/// The keys of `hits`: kept ones by content hash; the others read from
/// the messages' cached bytes (fetched first when not cached: the only
/// Graph cost) and kept.
pub(crate) async fn folder_keys(
    shared: &Shared,
    auth: &Authenticated,
    view: &View,
    hits: Vec<(u32, MessageRecord)>,
) -> Result<Vec<Keyed>, Refusal> {
    let mut out: Vec<Option<Keyed>> = Vec::with_capacity(hits.len());
    let mut missing: Vec<MessageRecord> = Vec::new();
    {
        let kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        for (seq, r) in &hits {
            match r.content_hash.as_ref().and_then(|h| kept.get(h)) {
                Some(k) => out.push(Some(Keyed::new(*seq, r, k.clone()))),
                None => {
                    out.push(None);
                    missing.push(r.clone());
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(out.into_iter().flatten().collect());
    }
    let ready = shared
        .cache
        .ensure(
            auth.model.backend_for(&view.folder).as_ref(),
            view.folder.id,
            missing,
        )
        .await
        .map_err(|e| Refusal::no(format!("Graph could not deliver the messages: {e}")))?;
    let mut computed: HashMap<u32, (MessageRecord, Arc<SortKeys>)> = HashMap::new();
    for chunk in ready.chunks(READ_AHEAD) {
        let refs: Vec<&MessageRecord> = chunk.iter().collect();
        let bytes = shared.cache.read_many(&refs).await;
        for (r, b) in chunk.iter().zip(bytes) {
            // A message whose bytes vanished meanwhile sorts with empty
            // keys rather than failing the command.
            let keys = Arc::new(b.map(|b| sort_keys(&b)).unwrap_or_default());
            computed.insert(r.uid.0, (r.clone(), keys));
        }
    }
    {
        let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() + computed.len() > MAX_KEPT {
            kept.clear();
        }
        for (r, k) in computed.values() {
            if let Some(h) = &r.content_hash {
                kept.insert(h.clone(), k.clone());
            }
        }
    }
    // A message Graph no longer has is left out.
    Ok(hits
        .iter()
        .zip(out)
        .filter_map(|((seq, r), k)| {
            k.or_else(|| {
                computed
                    .get(&r.uid.0)
                    .map(|(fresh, keys)| Keyed::new(*seq, fresh, keys.clone()))
            })
        })
        .collect())
}

/// Messages whose cached bytes are read together.
const READ_AHEAD: usize = 64;
