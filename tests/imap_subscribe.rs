//! LSUB as RFC 3501 §6.3.9 defines it, spoken by Python's imaplib: an
//! unsubscribed parent of a subscribed folder is listed `\Noselect` when a
//! `%` stops above the subscribed name; a folder made with CREATE starts
//! unsubscribed (RFC 3501 §6.3.3: CREATE does not subscribe), and RENAME
//! carries the choice to the new name. (Dovecot imaptest's `subscribe`
//! group checks the same.)

mod support;

use support::{demo, py_with};

const SCRIPT: &str = r#"
import imaplib, sys
host, port = sys.argv[1].rsplit(":", 1)
c = imaplib.IMAP4(host, int(port))
c.login("alice@example.com", "alice")

def lsub(pattern):
    typ, data = c.lsub('""', pattern)
    assert typ == "OK", (typ, data)
    return [d.decode() for d in data if d]

for name in ["Top/a", "Top/b/", "Top/b/c", "Top/d/e"]:
    typ, data = c.create(name)
    assert typ == "OK", (name, typ, data)
# Made by CREATE: nothing is subscribed yet.
assert lsub("Top/*") == [], lsub("Top/*")
for name in ["Top/a", "Top/b/c"]:
    assert c.subscribe(name)[0] == "OK"
got = lsub("Top/%")
assert any(l.endswith('"/" Top/a') and "Noselect" not in l for l in got), got
# Top/b is no subscription but Top/b/c is: Top/b, \Noselect.
assert any(l.startswith("(\\Noselect)") and l.endswith('"/" Top/b') for l in got), got
assert not any("Top/b/c" in l for l in got), got
assert not any("Top/d" in l for l in got), got
got = lsub("Top/*")
assert any(l.endswith('"/" Top/b/c') for l in got), got
assert not any(l.endswith('"/" Top/b') for l in got), got
# RENAME keeps the choice: Top/a stays subscribed as Top/z.
assert c.rename("Top/a", "Top/z")[0] == "OK"
got = lsub("Top/%")
assert any(l.endswith('"/" Top/z') for l in got), got
assert c.unsubscribe("Top/b/c")[0] == "OK"
got = lsub("Top/%")
assert not any("Top/b" in l for l in got), got
# LIST is unaffected by subscriptions.
typ, data = c.list('""', "Top/*")
names = [d.decode() for d in data]
assert sum(1 for n in names if n.endswith(('Top/z', 'Top/b', 'Top/b/c', 'Top/d', 'Top/d/e'))) == 5, names
c.logout()
"#;

#[test]
fn lsub_lists_unsubscribed_parents_noselect_and_create_does_not_subscribe() {
    let d = demo();
    py_with(SCRIPT, &[&d.imap]);
}
