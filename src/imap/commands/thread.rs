//! THREAD and UID THREAD (RFC 5256 §4): ORDEREDSUBJECT and REFERENCES
//! over the messages SEARCH would find, from the same kept keys as SORT
//! ([`super::sort::folder_keys`]; no Graph request for a warm folder).
//!
//! The algorithms work on an arena of nodes and never recurse, so a
//! hostile chain of ten thousand replies costs no stack.

use super::Ctx;
use std::collections::HashMap;
use std::io::Write as _;

use imap_next::imap_types::core::Charset;
use imap_next::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_next::imap_types::search::SearchKey;

use super::sort::{Keyed, check_charset, keyed_matches};
use crate::imap::session::{Reply, Shared};

pub(crate) async fn handle(
    ctx: &mut Ctx<'_, '_>,
    algorithm: &ThreadingAlgorithm<'_>,
    charset: &Charset<'_>,
    search: &[SearchKey<'_>],
    uid: bool,
) -> Reply {
    let shared: &Shared = &ctx.server.shared;
    let Some((auth, view)) = ctx.conn.state.selected() else {
        return Reply::bad("no folder selected: SELECT one first");
    };
    let references = match algorithm {
        ThreadingAlgorithm::References => true,
        ThreadingAlgorithm::OrderedSubject => false,
        ThreadingAlgorithm::Other(other) => {
            return Reply::no(format!(
                "threading algorithm {} is not supported; use REFERENCES or ORDEREDSUBJECT \
                 (see CAPABILITY)",
                other.as_ref()
            ));
        }
    };
    if let Err(r) = check_charset(charset) {
        return r.into();
    }
    let keyed = match keyed_matches(shared, auth, view, search).await {
        Ok(k) => k,
        Err(r) => return r.into(),
    };
    let forest = if references {
        thread_references(&keyed)
    } else {
        ordered_subject(&keyed)
    };
    let mut line = b"* THREAD ".to_vec();
    forest.write(&mut line, |i| if uid { keyed[i].uid } else { keyed[i].seq });
    // No space before nothing: `* THREAD` alone when nothing matched.
    if forest.roots.is_empty() {
        line.pop();
    }
    line.extend_from_slice(b"\r\n");
    if let Err(e) = ctx.sink.emit(&line).await {
        return Reply::no(format!("the connection failed while answering: {e}"));
    }
    Reply::ok("THREAD completed")
}

/// Threads as an arena: node `i` is a message (an index into the keyed
/// messages) or a dummy (`None`), with its children in order.
#[derive(Debug, Default)]
pub struct Forest {
    pub msg: Vec<Option<usize>>,
    pub children: Vec<Vec<usize>>,
    pub roots: Vec<usize>,
}

impl Forest {
    fn add(&mut self, msg: Option<usize>) -> usize {
        self.msg.push(msg);
        self.children.push(Vec::new());
        self.msg.len() - 1
    }

    /// The threads in RFC 5256 §4 syntax (`(3 6 (4 23)(44 7 96))`), each
    /// message written as `id(message)`: a chain of only children is one
    /// list of numbers; two or more children are nested lists.
    pub fn write(&self, out: &mut Vec<u8>, id: impl Fn(usize) -> u32) {
        // (node, whether its list is open) on an explicit stack.
        enum Step {
            Open(usize),
            Close,
        }
        let mut stack: Vec<Step> = self.roots.iter().rev().map(|&r| Step::Open(r)).collect();
        while let Some(step) = stack.pop() {
            let mut node = match step {
                Step::Close => {
                    out.push(b')');
                    continue;
                }
                Step::Open(n) => n,
            };
            out.push(b'(');
            let mut first = true;
            loop {
                if let Some(m) = self.msg[node] {
                    if !std::mem::take(&mut first) {
                        out.push(b' ');
                    }
                    let _ = write!(out, "{}", id(m));
                }
                match self.children[node].as_slice() {
                    [] => break,
                    [only] => node = *only,
                    many => {
                        if !first {
                            out.push(b' ');
                        }
                        stack.push(Step::Close);
                        stack.extend(many.iter().rev().map(|&c| Step::Open(c)));
                        break;
                    }
                }
            }
            if self.children[node].len() < 2 {
                out.push(b')');
            }
        }
    }
}

/// A node's place in sent-date order (§2.2): its message's sent date,
/// then its sequence number; a dummy's is its first child's.
fn date_key(f: &Forest, keyed: &[Keyed], mut node: usize) -> (i64, u32) {
    loop {
        match (f.msg[node], f.children[node].first()) {
            (Some(m), _) => return (keyed[m].date, keyed[m].seq),
            (None, Some(&c)) => node = c,
            (None, None) => return (i64::MAX, u32::MAX),
        }
    }
}

/// ORDEREDSUBJECT (§4): messages grouped by base subject; in each group
/// (by sent date) the first is the root and the others its children;
/// the threads by the sent date of their first message.
pub fn ordered_subject(keyed: &[Keyed]) -> Forest {
    let mut order: Vec<usize> = (0..keyed.len()).collect();
    order.sort_by(|&a, &b| {
        let (ka, kb) = (&keyed[a], &keyed[b]);
        ka.keys
            .subject
            .cmp(&kb.keys.subject)
            .then(ka.date.cmp(&kb.date))
            .then(ka.seq.cmp(&kb.seq))
    });
    let mut f = Forest::default();
    let mut last: Option<(usize, usize)> = None; // (root node, its message)
    for m in order {
        let node = f.add(Some(m));
        match last {
            Some((root, first)) if keyed[first].keys.subject == keyed[m].keys.subject => {
                f.children[root].push(node);
            }
            _ => {
                f.roots.push(node);
                last = Some((node, m));
            }
        }
    }
    let roots = std::mem::take(&mut f.roots);
    let mut roots: Vec<((i64, u32), usize)> = roots
        .into_iter()
        .map(|r| (date_key(&f, keyed, r), r))
        .collect();
    roots.sort();
    f.roots = roots.into_iter().map(|(_, r)| r).collect();
    f
}

/// Is `a` `b` or one of its descendants (walking up from `a`)? A `b`
/// without children has none: then only `a == b` is (the usual case, so
/// a long chain of replies costs no walk per message).
fn descends(parent: &[Option<usize>], kids: &[u32], mut a: usize, b: usize) -> bool {
    if kids[b] == 0 {
        return a == b;
    }
    loop {
        if a == b {
            return true;
        }
        match parent[a] {
            Some(p) => a = p,
            None => return false,
        }
    }
}

/// REFERENCES (§4), steps 1–6.
pub fn thread_references(keyed: &[Keyed]) -> Forest {
    // (1) Containers by Message-ID; parent links.
    let mut msg: Vec<Option<usize>> = Vec::new();
    let mut parent: Vec<Option<usize>> = Vec::new();
    // How many children each node has (for `descends`).
    let mut kids: Vec<u32> = Vec::new();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    let new_node =
        |msg: &mut Vec<Option<usize>>, parent: &mut Vec<Option<usize>>, kids: &mut Vec<u32>, m| {
            msg.push(m);
            parent.push(None);
            kids.push(0);
            msg.len() - 1
        };
    // Messages in mailbox order: a duplicate Message-ID belongs to the
    // first (lowest sequence number) message.
    let mut order: Vec<usize> = (0..keyed.len()).collect();
    order.sort_by_key(|&i| keyed[i].seq);
    for &m in &order {
        let k = &keyed[m].keys;
        // The message's own container: its id's dummy if a reference made
        // one, a fresh one for a missing or duplicate id.
        let own = match k.message_id.as_deref() {
            Some(id) => match by_id.get(id) {
                Some(&n) if msg[n].is_none() => {
                    msg[n] = Some(m);
                    n
                }
                Some(_) => new_node(&mut msg, &mut parent, &mut kids, Some(m)),
                None => {
                    let n = new_node(&mut msg, &mut parent, &mut kids, Some(m));
                    by_id.insert(id, n);
                    n
                }
            },
            None => new_node(&mut msg, &mut parent, &mut kids, Some(m)),
        };
        // (1A) Link each reference to the next, unless the later one has
        // a parent already or the link would make a loop.
        let mut prev: Option<usize> = None;
        for r in &k.references {
            let n = match by_id.get(r.as_str()) {
                Some(&n) => n,
                None => {
                    let n = new_node(&mut msg, &mut parent, &mut kids, None);
                    by_id.insert(r.as_str(), n);
                    n
                }
            };
            if let Some(p) = prev
                && parent[n].is_none()
                && !descends(&parent, &kids, p, n)
            {
                parent[n] = Some(p);
                kids[p] += 1;
            }
            prev = Some(n);
        }
        // (1B) The last reference is the message's parent (breaking the
        // link a truncated References made), unless that makes a loop.
        if let Some(old) = parent[own].take() {
            kids[old] -= 1;
        }
        if let Some(p) = prev
            && !descends(&parent, &kids, p, own)
        {
            parent[own] = Some(p);
            kids[p] += 1;
        }
    }
    let mut f = Forest {
        children: vec![Vec::new(); msg.len()],
        msg,
        roots: Vec::new(),
    };
    for (n, p) in parent.iter().enumerate() {
        match p {
            Some(p) => f.children[*p].push(n),
            // (2) The root set.
            None => f.roots.push(n),
        }
    }
    // (3) Prune dummies, children before parents (post-order).
    let mut post = Vec::with_capacity(f.msg.len());
    let mut stack: Vec<(usize, bool)> = f.roots.iter().map(|&r| (r, false)).collect();
    while let Some((n, done)) = stack.pop() {
        if done {
            post.push(n);
        } else {
            stack.push((n, true));
            stack.extend(f.children[n].iter().map(|&c| (c, false)));
        }
    }
    for &n in &post {
        let kids = std::mem::take(&mut f.children[n]);
        let mut kept = Vec::with_capacity(kids.len());
        for c in kids {
            if f.msg[c].is_some() {
                kept.push(c);
            } else {
                // Below the root a dummy always goes, its children
                // promoted (none of them is a dummy any more).
                kept.append(&mut f.children[c]);
            }
        }
        f.children[n] = kept;
    }
    let roots = std::mem::take(&mut f.roots);
    for r in roots {
        match (f.msg[r], f.children[r].len()) {
            (Some(_), _) => f.roots.push(r),
            (None, 0) => {}
            // At the root a dummy stays only for two or more children.
            (None, 1) => f.roots.push(f.children[r][0]),
            (None, _) => f.roots.push(r),
        }
    }
    // (4) Sort the root set by sent date (a dummy by its first child,
    // its children sorted first).
    sort_children(&mut f, keyed);
    sort_roots(&mut f, keyed);
    // (5) Group the root set by base subject.
    let subject = |f: &Forest, n: usize| -> Option<usize> {
        match f.msg[n] {
            Some(m) => Some(m),
            None => f.children[n].first().and_then(|&c| f.msg[c]),
        }
    };
    let mut table: HashMap<&str, usize> = HashMap::new();
    for &r in &f.roots {
        let Some(m) = subject(&f, r) else { continue };
        let s = keyed[m].keys.subject.as_str();
        if s.is_empty() {
            continue;
        }
        match table.get(s) {
            None => {
                table.insert(s, r);
            }
            Some(&t) => {
                let replace = (f.msg[r].is_none() && f.msg[t].is_some())
                    || (f.msg[t].is_some_and(|tm| keyed[tm].keys.reply)
                        && f.msg[r].is_some_and(|rm| !keyed[rm].keys.reply));
                if replace {
                    table.insert(s, r);
                }
            }
        }
    }
    let roots = std::mem::take(&mut f.roots);
    let mut slots: Vec<Option<usize>> = roots.iter().map(|&r| Some(r)).collect();
    let mut slot_of: HashMap<usize, usize> =
        roots.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    for (i, &r) in roots.iter().enumerate() {
        let Some(m) = subject(&f, r) else { continue };
        let s = keyed[m].keys.subject.as_str();
        let Some(&t) = table.get(s) else { continue };
        if t == r || s.is_empty() {
            continue;
        }
        let (r_dummy, t_dummy) = (f.msg[r].is_none(), f.msg[t].is_none());
        let r_reply = f.msg[r].is_some_and(|rm| keyed[rm].keys.reply);
        let t_reply = f.msg[t].is_some_and(|tm| keyed[tm].keys.reply);
        if r_dummy && t_dummy {
            let mut kids = std::mem::take(&mut f.children[r]);
            f.children[t].append(&mut kids);
        } else if t_dummy || (r_reply && !t_reply) {
            f.children[t].push(r);
        } else {
            let d = f.add(None);
            f.children[d] = vec![t, r];
            if let Some(j) = slot_of.remove(&t) {
                slots[j] = Some(d);
                slot_of.insert(d, j);
            }
            table.insert(s, d);
        }
        slots[i] = None;
        slot_of.remove(&r);
    }
    f.roots = slots.into_iter().flatten().collect();
    // (6) Sort every set of siblings by sent date, children first.
    sort_children(&mut f, keyed);
    sort_roots(&mut f, keyed);
    f
}

/// Sort the children of every node by sent date (only messages are
/// below the root, so no dummy's key depends on another sort).
fn sort_children(f: &mut Forest, keyed: &[Keyed]) {
    for n in 0..f.children.len() {
        let mut kids = std::mem::take(&mut f.children[n]);
        kids.sort_by_cached_key(|&c| date_key(f, keyed, c));
        f.children[n] = kids;
    }
}

fn sort_roots(f: &mut Forest, keyed: &[Keyed]) {
    let mut roots = std::mem::take(&mut f.roots);
    roots.sort_by_cached_key(|&r| date_key(f, keyed, r));
    f.roots = roots;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::imap::sortkeys::SortKeys;
    use std::sync::Arc;

    /// A message numbered `seq` with a Message-ID, references, subject
    /// and date.
    fn msg(seq: u32, id: &str, refs: &[&str], subject: &str, date: i64) -> Keyed {
        let (subject, reply) = crate::mime::imap::sortkeys::base_subject(subject);
        Keyed {
            seq,
            uid: seq * 10,
            arrival: 0,
            size: 0,
            date,
            keys: Arc::new(SortKeys {
                sent: Some(date),
                subject,
                reply,
                message_id: (!id.is_empty()).then(|| id.to_string()),
                references: refs.iter().map(|r| r.to_string()).collect(),
                ..SortKeys::default()
            }),
        }
    }

    fn show(f: &Forest, keyed: &[Keyed]) -> String {
        let mut out = Vec::new();
        f.write(&mut out, |i| keyed[i].seq);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn references_link_replies_under_their_parents() {
        let keyed = vec![
            msg(1, "a", &[], "hello", 100),
            msg(2, "b", &["a"], "Re: hello", 200),
            msg(3, "c", &["a", "b"], "Re: hello", 300),
            msg(4, "d", &["a"], "Re: hello", 250),
            msg(5, "e", &[], "other", 50),
        ];
        assert_eq!(show(&thread_references(&keyed), &keyed), "(5)(1 (2 3)(4))");
    }

    #[test]
    fn a_missing_parent_becomes_a_dummy_kept_only_for_two_children() {
        // Two replies to a message not in the folder: a dummy root.
        let keyed = vec![
            msg(1, "b", &["gone"], "Re: x", 100),
            msg(2, "c", &["gone"], "Re: x", 200),
            msg(3, "d", &["gone2"], "y", 300),
        ];
        assert_eq!(show(&thread_references(&keyed), &keyed), "((1)(2))(3)");
    }

    #[test]
    fn roots_with_one_subject_are_grouped() {
        // No references; same base subject: the non-reply is the parent.
        let keyed = vec![
            msg(1, "a", &[], "Re: topic", 100),
            msg(2, "b", &[], "topic", 200),
            msg(3, "c", &[], "topic", 300),
        ];
        // 2 is the table's (a non-reply replaces the reply 1); 1 is a
        // reply, so it goes under 2; 3 and 2 are both non-replies: a
        // dummy holds them.
        assert_eq!(show(&thread_references(&keyed), &keyed), "((2 1)(3))");
    }

    #[test]
    fn loops_and_duplicate_ids_are_broken() {
        let keyed = vec![
            msg(1, "a", &["b"], "x", 100),
            msg(2, "b", &["a"], "y", 200),
            msg(3, "a", &[], "z", 300),
            msg(4, "", &["a"], "w", 400),
        ];
        // 2 refers to 1 and 1 to 2: the later link would make a loop.
        // 3 duplicates 1's id and stands alone; 4 (no id) is 1's reply.
        assert_eq!(show(&thread_references(&keyed), &keyed), "(2 1 4)(3)");
    }

    #[test]
    fn ordered_subject_groups_by_subject_then_date() {
        let keyed = vec![
            msg(1, "", &[], "b", 100),
            msg(2, "", &[], "a", 300),
            msg(3, "", &[], "Re: a", 200),
            msg(4, "", &[], "re: b", 50),
            msg(5, "", &[], "a", 400),
            msg(6, "", &[], "c", 10),
        ];
        assert_eq!(show(&ordered_subject(&keyed), &keyed), "(6)(4 1)(3 (2)(5))");
    }

    #[test]
    fn a_deep_chain_costs_no_stack() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("m{i}")).collect();
        let keyed: Vec<Keyed> = (0..20_000)
            .map(|i| {
                let refs: Vec<&str> = if i == 0 {
                    vec![]
                } else {
                    vec![ids[i - 1].as_str()]
                };
                msg(i as u32 + 1, &ids[i], &refs, "x", i as i64)
            })
            .collect();
        let f = thread_references(&keyed);
        let text = show(&f, &keyed);
        assert!(text.starts_with("(1 2 3 "), "{}", &text[..20]);
        assert!(text.ends_with(" 20000)"));
    }
}
