//! LIST and LSUB (RFC 3501 §6.3.8, §6.3.9; RFC 6154 SPECIAL-USE): the
//! folders whose names match the pattern, with `/` as the hierarchy
//! delimiter, `\HasChildren` / `\HasNoChildren`, the special-use attribute
//! of Graph's well-known folders, and `\Noselect` parents that are not
//! folders themselves (`Shared`, `Shared/bob@…`). LSUB lists what the
//! account subscribed (see `mailbox::local`). The folder tree is the
//! stored one; when it is older than the freshness interval
//! (`imap.idle_poll_s`), one folder delta request brings it up to date
//! first (see `mailbox::folders`).

use super::Ctx;
use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::core::{Atom, QuotedChar};
use imap_next::imap_types::flag::FlagNameAttribute;
use imap_next::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_next::imap_types::response::Data;

use crate::imap::session::{Authenticated, Refusal, Reply, local_name, wire_name};
use crate::imap::utf7;

/// LIST, or LSUB when `subscribed_only`.
pub(crate) async fn handle(
    ctx: &mut Ctx<'_, '_>,
    reference: &Mailbox<'_>,
    mailbox_wildcard: &ListMailbox<'_>,
    subscribed_only: bool,
) -> Reply {
    let state = &ctx.conn.state;
    let name = if subscribed_only { "LSUB" } else { "LIST" };
    let Some(auth) = state.account() else {
        return Reply::bad("not logged in");
    };
    let reference = local_name(reference);
    let pattern = match mailbox_wildcard {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).to_string(),
        ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).to_string(),
    };
    let pattern = utf7::decode(&pattern).unwrap_or(pattern);
    if pattern.chars().count() + reference.chars().count() > MAX_PATTERN_CHARS {
        return Reply::no(format!(
            "{name} pattern longer than {MAX_PATTERN_CHARS} characters: no folder name is that long"
        ));
    }
    let reference = if reference.eq_ignore_ascii_case("inbox") && pattern.is_empty() {
        String::new()
    } else {
        reference
    };
    let reference = if reference == "INBOX" {
        String::new()
    } else {
        reference
    };
    // A tree older than the freshness interval is brought up to date
    // (one folder delta request); a failure leaves the stored one listed.
    if !pattern.is_empty()
        && let Err(e) = auth.model.refresh_folders_if_stale().await
    {
        tracing::warn!("LIST: cannot refresh the folder tree, listing the stored one: {e}");
    }
    match list(auth, &reference, &pattern, subscribed_only) {
        Ok(data) => Reply::ok(format!("{name} completed")).with_data(data),
        Err(r) => r.into(),
    }
}

/// Longest LIST pattern (reference and mailbox pattern together) matched;
/// folder names are far shorter, so a longer one only costs work.
const MAX_PATTERN_CHARS: usize = 1024;

/// LIST pattern matching: `*` matches anything, `%` anything but the
/// hierarchy separator `/`. Dynamic programming over (pattern, name)
/// positions, one row at a time: O(pattern × name) steps whatever the
/// wildcards (trying every split recursively was exponential in the number
/// of `*`: a fuzzer's `LIST "" "****…?****"` kept a core busy for seconds).
pub fn list_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        // row[j]: p[i..] matches n[j..], for the current i (from the end).
        let mut row: Vec<bool> = (0..=n.len()).map(|j| j == n.len()).collect();
        for &c in p.iter().rev() {
            let mut next = vec![false; n.len() + 1];
            for j in (0..=n.len()).rev() {
                next[j] = match c {
                    '*' => row[j] || (j < n.len() && next[j + 1]),
                    '%' => row[j] || (j < n.len() && n[j] != '/' && next[j + 1]),
                    c => j < n.len() && n[j] == c && row[j + 1],
                };
            }
            row = next;
        }
        row[0]
    }
    let n: Vec<char> = name.chars().collect();
    if name == "INBOX" {
        let upper: Vec<char> = pattern.to_ascii_uppercase().chars().collect();
        return go(&upper, &n);
    }
    let p: Vec<char> = pattern.chars().collect();
    go(&p, &n)
}

/// LIST / LSUB.
fn list(
    auth: &Authenticated,
    reference: &str,
    pattern: &str,
    subscribed_only: bool,
) -> Result<Vec<Data<'static>>, Refusal> {
    let folders = auth
        .model
        .folders()
        .map_err(|e| Refusal::no(e.to_string()))?;
    if pattern.is_empty() {
        // RFC 3501 §6.3.8: the hierarchy delimiter and root.
        return Ok(vec![Data::List {
            items: vec![FlagNameAttribute::Noselect],
            delimiter: Some(QuotedChar::try_from('/').expect("/")),
            mailbox: Mailbox::try_from("").unwrap_or(Mailbox::Inbox),
        }]);
    }
    let full = format!("{reference}{pattern}");
    if subscribed_only {
        return lsub(auth, &folders, &full);
    }
    let mut out = Vec::new();
    // Parents that are not folders themselves (`Shared`, `Shared/bob@…`)
    // are listed as \Noselect so that clients can walk the hierarchy.
    let mut virtual_parents: Vec<String> = Vec::new();
    for f in &folders {
        let mut path = String::new();
        let parts: Vec<&str> = f.name.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            if !folders.iter().any(|g| g.name == path) && !virtual_parents.contains(&path) {
                virtual_parents.push(path.clone());
            }
        }
    }
    virtual_parents.sort();
    for name in virtual_parents.iter().filter(|n| list_match(&full, n)) {
        let encoded = utf7::encode(name);
        if let Ok(mailbox) = Mailbox::try_from(encoded) {
            let items = vec![
                FlagNameAttribute::Noselect,
                FlagNameAttribute::from(Atom::try_from("HasChildren").expect("atom")),
            ];
            let delimiter = Some(QuotedChar::try_from('/').expect("/"));
            let mailbox = mailbox.into_static();
            out.push(Data::List {
                items,
                delimiter,
                mailbox,
            });
        }
    }
    for f in &folders {
        if !list_match(&full, &f.name) {
            continue;
        }
        let items = attributes(&folders, f);
        let delimiter = Some(QuotedChar::try_from('/').expect("/"));
        let mailbox = wire_name(f);
        out.push(Data::List {
            items,
            delimiter,
            mailbox,
        });
    }
    Ok(out)
}

/// A folder's LIST attributes: `\HasChildren` / `\HasNoChildren` and its
/// special use (RFC 6154).
fn attributes(
    folders: &[crate::mailbox::FolderRecord],
    f: &crate::mailbox::FolderRecord,
) -> Vec<FlagNameAttribute<'static>> {
    let mut items = Vec::new();
    let has_children = folders
        .iter()
        .any(|c| c.parent_remote_id.as_deref() == Some(f.remote_id.as_str()));
    items.push(if has_children {
        FlagNameAttribute::from(Atom::try_from("HasChildren").expect("atom"))
    } else {
        FlagNameAttribute::from(Atom::try_from("HasNoChildren").expect("atom"))
    });
    if let Some(special) = &f.special_use
        && let Ok(atom) = Atom::try_from(special.trim_start_matches('\\'))
    {
        items.push(FlagNameAttribute::from(atom.into_static()));
    }
    items
}

/// LSUB (RFC 3501 §6.3.9): the subscribed names matching `full` — a
/// folder with its attributes, a name that is no folder as `\Noselect` —
/// and, when the pattern ends in `%`, an unsubscribed parent of a
/// subscribed name the `%` stops above as `\Noselect` ("if foo/bar is
/// subscribed but foo is not, a % wildcard … must return foo, not
/// foo/bar, with the \Noselect attribute"). Subscribed: what the account
/// subscribed, and every folder it never (un)subscribed, except a folder
/// made with CREATE, which starts unsubscribed (see `mailbox::local`).
fn lsub(
    auth: &Authenticated,
    folders: &[crate::mailbox::FolderRecord],
    full: &str,
) -> Result<Vec<Data<'static>>, Refusal> {
    use std::collections::{BTreeMap, BTreeSet};
    let choices = auth
        .model
        .subscriptions()
        .map_err(|e| Refusal::no(e.to_string()))?;
    let by_name: BTreeMap<&str, &crate::mailbox::FolderRecord> =
        folders.iter().map(|f| (f.name.as_str(), f)).collect();
    let subscribed: BTreeSet<&str> = choices
        .iter()
        .filter(|(_, on)| **on)
        .map(|(name, _)| name.as_str())
        .chain(
            folders
                .iter()
                .filter(|f| !choices.contains_key(&f.name))
                .map(|f| f.name.as_str()),
        )
        .collect();
    let mut out = Vec::new();
    let mut push = |name: &str, items: Vec<FlagNameAttribute<'static>>| {
        let mailbox = match by_name.get(name) {
            Some(f) => wire_name(f),
            None => match Mailbox::try_from(utf7::encode(name)) {
                Ok(m) => m.into_static(),
                Err(_) => return,
            },
        };
        out.push(Data::Lsub {
            items,
            delimiter: Some(QuotedChar::try_from('/').expect("/")),
            mailbox,
        });
    };
    let mut parents = BTreeSet::new();
    for name in &subscribed {
        if list_match(full, name) {
            match by_name.get(name) {
                Some(f) => push(name, attributes(folders, f)),
                None => push(name, vec![FlagNameAttribute::Noselect]),
            }
        } else if full.ends_with('%') {
            let mut parent = *name;
            while let Some((head, _)) = parent.rsplit_once('/') {
                parent = head;
                if !subscribed.contains(parent) && list_match(full, parent) {
                    parents.insert(parent);
                }
            }
        }
    }
    for parent in parents {
        push(parent, vec![FlagNameAttribute::Noselect]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::list_match;

    /// The plain recursive definition, for small inputs.
    fn reference(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| reference(&p[1..], &n[i..])),
            Some('%') => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| reference(&p[1..], &n[i..])),
            Some(c) => n.first() == Some(c) && reference(&p[1..], &n[1..]),
        }
    }

    #[test]
    fn wildcards_match_as_rfc_3501_says() {
        let names = [
            "INBOX",
            "Archive",
            "Archive/2024",
            "Archive/2024/Q1",
            "Sent Items",
            "Shared/bob@example.com/Inbox",
            "",
            "a/b",
            "ab",
            "Ünïcödé/ß",
        ];
        let patterns = [
            "*",
            "%",
            "Archive/*",
            "Archive/%",
            "Arch*",
            "A%/%",
            "%/%/%",
            "*/Q1",
            "inbox",
            "INBOX",
            "",
            "a%b",
            "a*b",
            "*%*",
            "%*%",
            "Shared/%/Inbox",
            "Ü*ß",
            "*/",
            "%/",
        ];
        for n in names {
            for p in patterns {
                let nc: Vec<char> = n.chars().collect();
                let pc: Vec<char> = if n == "INBOX" {
                    p.to_ascii_uppercase().chars().collect()
                } else {
                    p.chars().collect()
                };
                assert_eq!(list_match(p, n), reference(&pc, &nc), "{p:?} on {n:?}");
            }
        }
    }

    #[test]
    fn many_stars_take_polynomial_work() {
        // Exponential for the recursive definition: 38 `*` and a `?` that
        // never matches, against a long name (a fuzzer's input).
        let pattern = format!("{}?{}", "*".repeat(38), "*".repeat(22));
        let name = "x".repeat(200);
        assert!(!list_match(&pattern, &name));
        assert!(list_match(&"*".repeat(60), &name));
        assert!(list_match(&format!("{}x", "%*".repeat(30)), &name));
    }
}
