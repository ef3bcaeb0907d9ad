//! STORE on a message another session expunged meanwhile, spoken by
//! Python's imaplib: the session that has not been told of the EXPUNGE
//! still gets `* n FETCH (FLAGS …)` for it, as RFC 2180 allows (RFC 2180
//! §4.2.1; imaptest's stress mode reported "STORE didn't return FETCH
//! FLAGS" under 5 clients). And an APPEND's UID serves the APPENDed bytes
//! from the first FETCH on, also to a session that FETCHes the new UID
//! while the APPEND is still under way (imaptest: "ENVELOPE changed").

mod support;

use support::{demo, py_with};

const STORE_SCRIPT: &str = r#"
import imaplib, sys
host, port = sys.argv[1].rsplit(":", 1)
def login():
    c = imaplib.IMAP4(host, int(port))
    c.login("alice@example.com", "alice")
    return c
a, b = login(), login()
for c in (a,):
    c.create("Race")
msg = b"From: x@example.com\r\nTo: alice@example.com\r\nSubject: race\r\n\r\nbody\r\n"
for i in range(2):
    assert a.append("Race", None, None, msg)[0] == "OK"
assert a.select("Race")[0] == "OK"
assert b.select("Race")[0] == "OK"
# b expunges message 1; a is not told (no command of a in between).
assert b.store("1", "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
assert b.expunge()[0] == "OK"
typ, data = a.store("1:2", "+FLAGS", "(\\Flagged)")
assert typ == "OK", (typ, data)
fetched = [d.decode() for d in data if d]
assert any(f.startswith("1 (FLAGS (") and "\\Flagged" in f for f in fetched), fetched
assert any(f.startswith("2 (FLAGS (") and "\\Flagged" in f for f in fetched), fetched
# Then a hears of the EXPUNGE, and message 2 (now 1) kept its \Flagged.
typ, data = a.noop()
typ, data = a.fetch("1", "(FLAGS)")
assert typ == "OK" and b"\\Flagged" in data[0], data
a.logout(); b.logout()
"#;

#[test]
fn store_on_a_message_expunged_by_another_session_still_answers_its_flags() {
    let d = demo();
    py_with(STORE_SCRIPT, &[&d.imap]);
}

const APPEND_SCRIPT: &str = r#"
import imaplib, sys, threading, json, urllib.request
host, port = sys.argv[1].rsplit(":", 1)
sim = sys.argv[2]
def login():
    c = imaplib.IMAP4(host, int(port))
    c.login("alice@example.com", "alice")
    return c
a, b = login(), login()
a.create("Kept")
assert b.select("Kept")[0] == "OK"
# Graph answers slowly: the APPEND's creation and its sync take a while,
# and b polls meanwhile, so b's sync may give the new item its UID first.
req = urllib.request.Request(sim + "/_sim/faults", data=json.dumps({"latency_ms": 150}).encode(),
                             headers={"Content-Type": "application/json"}, method="POST")
urllib.request.urlopen(req).read()
# A message Exchange would render differently (its Date zone, its
# Message-ID kept; the sim re-renders what it stores).
msg = (b"From: Some One <one@example.com>\r\nTo: alice@example.com\r\n"
       b"Date: Sat, 24 Mar 2007 23:00:00 +0200\r\nSubject: kept\r\n\r\nexact bytes\r\n")
done = threading.Event()
def append():
    c = login()
    assert c.append("Kept", None, None, msg)[0] == "OK"
    c.logout()
    done.set()
t = threading.Thread(target=append)
t.start()
seen = None
while not done.is_set() or seen is None:
    b.noop()
    typ, data = b.uid("FETCH", "1:*", "(BODY.PEEK[])")
    bodies = [d[1] for d in data if isinstance(d, tuple)]
    if bodies:
        seen = bodies[0]
        break
t.join()
if seen is None:
    b.noop()
    typ, data = b.fetch("1", "(BODY.PEEK[])")
    seen = data[0][1]
assert seen == msg, seen
typ, data = b.fetch("1", "(BODY.PEEK[])")
assert data[0][1] == msg, data
a.logout(); b.logout()
"#;

#[test]
fn a_session_fetching_an_append_under_way_gets_the_appended_bytes() {
    let d = demo();
    py_with(APPEND_SCRIPT, &[&d.imap, &d.sim]);
}

const FLAGS_ONCE_SCRIPT: &str = r#"
import imaplib, sys
host, port = sys.argv[1].rsplit(":", 1)
def login():
    c = imaplib.IMAP4(host, int(port))
    c.login("alice@example.com", "alice")
    return c
a, b = login(), login()
a.create("Words")
msg = b"From: x@example.com\r\nTo: alice@example.com\r\nSubject: kw\r\n\r\nbody\r\n"
assert a.append("Words", None, None, msg)[0] == "OK"
assert a.select("Words")[0] == "OK"
assert b.select("Words")[0] == "OK"
# b brings a keyword a has not heard of; then a adds one of its own.
assert b.store("1", "+FLAGS", "(kwb)")[0] == "OK"
a.untagged_responses.clear()
typ, data = a.store("1", "+FLAGS", "(kwa)")
assert typ == "OK", (typ, data)
flags = a.untagged_responses.get("FLAGS", [])
perm = [o for o in a.untagged_responses.get("OK", []) if o.startswith(b"[PERMANENTFLAGS")]
# One FLAGS and one PERMANENTFLAGS, each naming both keywords.
assert len(flags) == 1 and b"kwa" in flags[0] and b"kwb" in flags[0], flags
assert len(perm) == 1 and b"kwa" in perm[0] and b"kwb" in perm[0], perm
a.logout(); b.logout()
"#;

/// A STORE that names a new keyword while another session brought one
/// too: one FLAGS and one PERMANENTFLAGS go out, naming both. Two of
/// each went out (FLAGS, FLAGS, PERMANENTFLAGS, PERMANENTFLAGS) and a
/// client saw a keyword in FLAGS that the next PERMANENTFLAGS lacked
/// (imaptest: "Keyword not in PERMANENTFLAGS found").
#[test]
fn a_store_with_news_sends_flags_and_permanentflags_once() {
    let d = demo();
    py_with(FLAGS_ONCE_SCRIPT, &[&d.imap]);
}

const KEYWORDS_KEPT_SCRIPT: &str = r#"
import imaplib, sys
host, port = sys.argv[1].rsplit(":", 1)
def login():
    c = imaplib.IMAP4(host, int(port))
    c.login("alice@example.com", "alice")
    return c
a = login()
a.create("KeptWords")
msg = b"From: x@example.com\r\nTo: alice@example.com\r\nSubject: kw\r\n\r\nbody\r\n"
assert a.append("KeptWords", None, None, msg)[0] == "OK"
assert a.select("KeptWords")[0] == "OK"
assert a.store("1", "+FLAGS", "(once)")[0] == "OK"
assert a.store("1", "-FLAGS", "(once)")[0] == "OK"
# A -FLAGS of a keyword no message ever had defines it too.
assert a.store("1", "-FLAGS", "(never)")[0] == "OK"
a.logout()
# No message carries either keyword now; a new session still has both
# in FLAGS and PERMANENTFLAGS.
b = login()
assert b.select("KeptWords")[0] == "OK"
flags = b.untagged_responses.get("FLAGS", [])
perm = [o for o in b.untagged_responses.get("OK", []) if o.startswith(b"[PERMANENTFLAGS")]
assert flags and b"once" in flags[-1] and b"never" in flags[-1], flags
assert perm and b"once" in perm[-1] and b"never" in perm[-1], perm
typ, data = b.fetch("1", "(FLAGS)")
assert b"once" not in data[0] and b"never" not in data[0], data
b.logout()
"#;

/// A keyword stays in a folder's FLAGS once used, as Dovecot keeps its
/// keyword list: a client that SELECTs after the last message lost it
/// still sees it, so it knows the keyword exists (imaptest's stress mode
/// lets only the session that owns a keyword in FLAGS change it; one that
/// did not see it there took it as new and changed it: "Owned keyword
/// changed").
#[test]
fn a_keyword_once_used_stays_in_flags_after_no_message_carries_it() {
    let d = demo();
    py_with(KEYWORDS_KEPT_SCRIPT, &[&d.imap]);
}
