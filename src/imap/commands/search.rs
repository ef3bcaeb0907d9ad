//! SEARCH and UID SEARCH (RFC 3501 §6.4.4): every RFC 3501 key, CHARSET
//! UTF-8. Flags, UIDs, sequence numbers, keywords and internal dates are
//! answered from the local index at no Graph cost; header, body, size and
//! sent-date keys need the message bytes, which the content cache fetches
//! in `$batch` groups (20 per request) the first time and serves from disk
//! afterwards.

use super::Ctx;
use chrono::{TimeZone, Utc};
use imap_next::imap_types::fetch::Section;
use imap_next::imap_types::response::Data;
use imap_next::imap_types::search::SearchKey;

use crate::imap::session::{Authenticated, Refusal, Reply, Shared, View, in_set, nz};
use crate::mailbox::MessageRecord;
use crate::mailbox::content;
use crate::mailbox::flags;
use crate::mime::imap as mime;

pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>, criteria: &[SearchKey<'_>], uid: bool) -> Reply {
    let shared: &Shared = &ctx.server.shared;
    // `SEARCH RETURN (…)`, read before imap-codec (see search_return.rs).
    let returns = ctx.conn.search_return.take();
    let state = &mut ctx.conn.state;
    let Some((auth, view)) = state.selected() else {
        return Reply::bad("no folder selected: SELECT one first");
    };
    // SEARCH MODSEQ turns CONDSTORE on (RFC 7162 §3.1).
    if criteria.iter().any(has_modseq) {
        auth.enabled.enable_condstore(Some(&mut *view));
    }
    let with_modseq = criteria.iter().any(has_modseq);
    let found = matching(shared, auth, view, criteria).await;
    let Some((tag, returns)) = returns else {
        return match found {
            Ok(hits) => {
                // With a MODSEQ key: the highest mod-sequence of the
                // messages found (RFC 7162 §3.1.5).
                let modseq = hits.iter().map(|(_, r)| r.modseq).max();
                let modseq = modseq
                    .filter(|_| with_modseq)
                    .map(crate::imap::modseq::nz64);
                let hits = hits
                    .iter()
                    .map(|(seq, r)| nz(if uid { r.uid.0 } else { *seq }))
                    .collect();
                Reply::ok("SEARCH completed").with_data(vec![Data::Search(hits, modseq)])
            }
            Err(r) => r.into(),
        };
    };
    let hits = match found {
        Ok(hits) => hits,
        Err(r) => {
            // RFC 5182 §2.1: a failed SEARCH with SAVE empties `$`.
            if returns.save {
                view.saved.clear();
            }
            return r.into();
        }
    };
    let numbers: Vec<u32> = hits
        .iter()
        .map(|(seq, r)| if uid { r.uid.0 } else { *seq })
        .collect();
    if returns.save {
        // RFC 5182 §2.4: with MIN and/or MAX but neither ALL nor COUNT,
        // only those messages are saved; otherwise all found.
        let only_ends = (returns.min || returns.max) && !returns.all && !returns.count;
        let mut saved: Vec<crate::mailbox::Uid> = if only_ends {
            let mut ends = Vec::new();
            if returns.min {
                ends.extend(hits.first().map(|(_, r)| r.uid));
            }
            if returns.max {
                ends.extend(hits.last().map(|(_, r)| r.uid));
            }
            ends
        } else {
            hits.iter().map(|(_, r)| r.uid).collect()
        };
        saved.sort_unstable();
        saved.dedup();
        view.saved = saved;
    }
    if !returns.answers() {
        return Reply::ok("SEARCH completed (result saved)");
    }
    // RFC 4731 §3.1: MIN, MAX and ALL only when something was found;
    // COUNT always.
    let mut line = format!("* ESEARCH (TAG \"{}\")", tag.inner());
    if uid {
        line.push_str(" UID");
    }
    if let (Some(min), Some(max)) = (numbers.first(), numbers.last()) {
        if returns.min {
            line.push_str(&format!(" MIN {min}"));
        }
        if returns.max {
            line.push_str(&format!(" MAX {max}"));
        }
        if returns.all {
            let mut sorted = numbers.clone();
            sorted.sort_unstable();
            line.push_str(" ALL ");
            line.push_str(&crate::imap::search_return::compact(&sorted));
        }
    }
    if returns.count {
        line.push_str(&format!(" COUNT {}", numbers.len()));
    }
    // With a MODSEQ key, the highest mod-sequence of the messages the
    // answer names: only MIN's and MAX's when those alone are asked for,
    // else all found (RFC 7162 §3.1.5, RFC 4731 §3.2).
    if with_modseq && !hits.is_empty() {
        let only_ends = (returns.min || returns.max) && !returns.all && !returns.count;
        let named: Vec<u64> = if only_ends {
            let mut ends = Vec::new();
            if returns.min {
                ends.extend(hits.first().map(|(_, r)| r.modseq));
            }
            if returns.max {
                ends.extend(hits.last().map(|(_, r)| r.modseq));
            }
            ends
        } else {
            hits.iter().map(|(_, r)| r.modseq).collect()
        };
        if let Some(highest) = named.into_iter().max() {
            line.push_str(&format!(" MODSEQ {highest}"));
        }
    }
    line.push_str("\r\n");
    if let Err(e) = ctx.sink.emit(line.as_bytes()).await {
        return Reply::no(format!("the connection failed while answering: {e}"));
    }
    Reply::ok("SEARCH completed")
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

/// Does a SEARCH key name MODSEQ (RFC 7162 §3.1.5)?
fn has_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::Not(k) => has_modseq(k),
        SearchKey::Or(a, b) => has_modseq(a) || has_modseq(b),
        SearchKey::And(keys) => keys.as_ref().iter().any(has_modseq),
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
    let mut headers: Vec<(String, String)> = Vec::new();
    // Unfolded (RFC 5322 §2.2.3): a line starting with white space goes
    // on the field before it, so `To: a: x@y;,\r\n  b: z@y;` is searched
    // whole (the second group's name was read as a field of its own).
    for line in String::from_utf8_lossy(&bytes[..head]).split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
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

/// Messages whose bytes are read together.
const READ_AHEAD: usize = 64;

/// The messages of the view that match every key of `keys`, with their
/// sequence numbers, in sequence order (SEARCH, and the set SORT and
/// THREAD order): flags, UIDs, sequence numbers, keywords and dates from
/// the local index; header, body, size and sent-date keys from the
/// message bytes (fetched in `$batch` groups the first time, then from
/// the cache).
pub(crate) async fn matching(
    shared: &Shared,
    auth: &Authenticated,
    view: &View,
    keys: &[SearchKey<'_>],
) -> Result<Vec<(u32, MessageRecord)>, Refusal> {
    let mut records = auth
        .model
        .messages(&view.folder)
        .map_err(|e| Refusal::no(format!("cannot read the folder's index: {e}")))?;
    let with_bytes = keys.iter().any(needs_bytes);
    if with_bytes {
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
    }
    let largest_seq = view.uids.len() as u32;
    let largest_uid = view.uids.last().map_or(0, |u| u.0);
    fn matches(
        key: &SearchKey<'_>,
        seq: u32,
        r: &MessageRecord,
        p: Option<&Parsed>,
        largest: (u32, u32),
        recent: &std::collections::HashSet<crate::mailbox::Uid>,
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
            // \Recent is this session's (RFC 3501 §6.4.4: NEW is RECENT
            // UNSEEN, OLD is NOT RECENT).
            SearchKey::Recent => recent.contains(&r.uid),
            SearchKey::New => recent.contains(&r.uid) && r.flags & flags::SEEN == 0,
            SearchKey::Old => !recent.contains(&r.uid),
            SearchKey::SequenceSet(set) => in_set(set, seq, largest.0),
            SearchKey::Uid(set) => in_set(set, r.uid.0, largest.1),
            SearchKey::Not(k) => !matches(k, seq, r, p, largest, recent)?,
            SearchKey::Or(a, b) => {
                matches(a, seq, r, p, largest, recent)? || matches(b, seq, r, p, largest, recent)?
            }
            SearchKey::And(keys) => {
                let mut all = true;
                for k in keys.as_ref() {
                    all &= matches(k, seq, r, p, largest, recent)?;
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
            // RFC 7162 §3.1.5: one mod-sequence per message, whatever
            // the entry named.
            SearchKey::ModSequence { modseq, .. } => r.modseq >= *modseq,
            SearchKey::Smaller(n) => p.is_some_and(|p| p.size < *n as usize),
        })
    }
    // Messages in sequence order; their bytes are read, parsed and matched
    // READ_AHEAD at a time (one read per message, all parsed texts held
    // until the end, was a task hand-off each and memory in proportion to
    // the folder).
    let in_view: Vec<(u32, &MessageRecord)> = view
        .uids
        .iter()
        .enumerate()
        .filter_map(|(i, uid)| content::find(&records, *uid).map(|r| (i as u32 + 1, r)))
        .collect();
    let mut hits = Vec::new();
    for chunk in in_view.chunks(READ_AHEAD) {
        let bytes = if with_bytes {
            let refs: Vec<&MessageRecord> = chunk.iter().map(|(_, r)| *r).collect();
            shared.cache.read_many(&refs).await
        } else {
            vec![None; chunk.len()]
        };
        for ((seq, r), bytes) in chunk.iter().zip(bytes) {
            let parsed = bytes.as_deref().map(parse_for_search);
            let mut all = true;
            for k in keys {
                all &= matches(
                    k,
                    *seq,
                    r,
                    parsed.as_ref(),
                    (largest_seq, largest_uid),
                    &view.recent,
                )
                .map_err(Refusal::No)?;
            }
            if all {
                hits.push((*seq, (*r).clone()));
            }
        }
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::parse_for_search;

    /// imaptest's search-addresses: `SEARCH TO groupname2` must find the
    /// second group of a folded To field, not read it as a field.
    #[test]
    fn a_folded_field_is_searched_whole() {
        let p = parse_for_search(
            b"To: groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n  \
              groupname2: groupuser3@domain.org;\r\nSubject: x\r\n\r\nbody\r\n",
        );
        assert!(
            p.headers
                .iter()
                .any(|(n, v)| n == "to" && v.contains("groupname2: groupuser3@domain.org;")),
            "{:?}",
            p.headers
        );
        assert!(!p.headers.iter().any(|(n, _)| n == "groupname2"));
    }
}
