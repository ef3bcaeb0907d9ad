//! SORT and THREAD (RFC 5256) over real sockets against the demo, with
//! Python's imaplib. The expected answers are Dovecot 2.3's on the same
//! eleven messages (appended with the same internal dates to
//! `/tmp/dv/dovecot.conf`'s Dovecot and asked the same commands, once,
//! by hand on 2026-12-08; they matched graphgate's byte for byte), so
//! they are fixed here rather than recomputed by the same code.

mod support;

use support::{demo, py_with};

/// The messages: replies by References and by In-Reply-To, a reference
/// to a message not in the folder (dummy parents), a duplicate
/// Message-ID, a missing and a broken Date (the internal date counts),
/// dates in other time zones, `Re:`/`RE:`/`Fwd:`/`(fwd)`/`[team]`/
/// `[Fwd: …]` subjects, an encoded subject, Cc on some messages only.
const SCRIPT: &str = r#"
import imaplib, sys, json, urllib.request
host, port = sys.argv[1].rsplit(':', 1)
sim = sys.argv[2]
box = 'Sort Thread'
MSGS
m = imaplib.IMAP4(host, int(port))
m.login('alice@example.com', 'alice')
typ, d = m.create('"' + box + '"')
assert typ == 'OK', d
for date, head, body in M:
    typ, d = m.append('"' + box + '"', None, date, (head + '\r\n' + body + '\r\n').encode())
    assert typ == 'OK', d
typ, d = m.select('"' + box + '"')
assert typ == 'OK' and d == [str(len(M)).encode()], d
EXPECTED = [
  (('SORT', '(ARRIVAL)', 'UTF-8', 'ALL'), '3 1 2 4 5 6 7 8 9 10 11'),
  (('SORT', '(DATE)', 'UTF-8', 'ALL'), '1 3 2 5 4 9 6 7 8 10 11'),
  (('SORT', '(REVERSE DATE)', 'UTF-8', 'ALL'), '11 10 8 7 6 9 4 5 2 1 3'),
  (('SORT', '(SUBJECT)', 'UTF-8', 'ALL'), '10 1 2 5 6 11 3 4 7 8 9'),
  (('SORT', '(SUBJECT REVERSE DATE)', 'UTF-8', 'ALL'), '10 11 6 5 2 1 4 3 8 7 9'),
  (('SORT', '(FROM)', 'UTF-8', 'ALL'), '2 3 1 4 5 6 7 8 9 10 11'),
  (('SORT', '(TO)', 'UTF-8', 'ALL'), '10 4 7 8 9 2 5 6 3 1 11'),
  (('SORT', '(CC SUBJECT)', 'UTF-8', 'ALL'), '10 1 5 6 11 3 7 8 9 4 2'),
  (('SORT', '(SIZE)', 'UTF-8', 'ALL'), '10 9 7 8 1 4 5 6 2 11 3'),
  (('SORT', '(REVERSE SIZE)', 'US-ASCII', 'NOT', 'FROM', 'bob'), '11 2 5 6 4 1 7 8 9 10'),
  (('THREAD', 'REFERENCES', 'UTF-8', 'ALL'), '(1 (2 6)(5)(11))(3 4)((9)(7)(8))(10)'),
  (('THREAD', 'ORDEREDSUBJECT', 'UTF-8', 'ALL'), '(1 (2)(5)(6)(11))(3 4)(9 (7)(8))(10)'),
  (('THREAD', 'REFERENCES', 'UTF-8', '2:*'), '(3 4)((2 6)(5)(11))((9)(7)(8))(10)'),
]
def ask(cmd):
    typ, d = m._simple_command(*cmd)
    typ, data = m._untagged_response(typ, d, cmd[0])
    return typ, data
def requests():
    return json.load(urllib.request.urlopen(sim + '/_sim/stats'))['requests']
for rnd in range(2):
    before = requests()
    for cmd, want in EXPECTED:
        typ, data = ask(cmd)
        assert typ == 'OK' and data == [want.encode()], (cmd, typ, data, want)
    # The second round reads only kept keys: no Graph request at all.
    if rnd == 1:
        assert requests() == before, (before, requests())
# UID forms answer UIDs in the same order.
typ, d = m.uid('FETCH', '1:*', '(UID)')
uids = [int(x.split()[2].rstrip(b')')) for x in d]
typ, data = m.uid('SORT', '(DATE)', 'UTF-8', 'ALL')
assert data == [' '.join(str(uids[int(i) - 1]) for i in '1 3 2 5 4 9 6 7 8 10 11'.split()).encode()], data
typ, data = m.uid('THREAD', 'ORDEREDSUBJECT', 'UTF-8', 'SUBJECT', 'minutes')
assert data == [('(%d (%d)(%d))' % (uids[8], uids[6], uids[7])).encode()], data
# Nothing found: an empty answer; a charset we do not have: NO [BADCHARSET].
typ, data = ask(('SORT', '(DATE)', 'UTF-8', 'SUBJECT', 'nothing-like-this'))
assert typ == 'OK' and data == [b''], data
typ, data = ask(('THREAD', 'REFERENCES', 'UTF-8', 'SUBJECT', 'nothing-like-this'))
assert typ == 'OK' and data == [b''], data
typ, d = m._simple_command('SORT', '(DATE)', 'KOI8-R', 'ALL')
assert typ == 'NO' and b'[BADCHARSET (US-ASCII UTF-8)]' in d[0], (typ, d)
typ, d = m._simple_command('THREAD', 'X-UNKNOWN', 'UTF-8', 'ALL')
assert typ == 'NO' and b'REFERENCES' in d[0], (typ, d)
typ, caps = m.capability()
for c in (b'SORT', b'THREAD=REFERENCES', b'THREAD=ORDEREDSUBJECT'):
    assert c in caps[0].split(), caps
m.logout()
"#;

#[tokio::test]
async fn sort_and_thread_answer_as_dovecot_and_cost_no_graph_request_when_warm() {
    let d = demo();
    py_with(&SCRIPT.replace("MSGS", MESSAGES), &[&d.imap, &d.sim]);
}

/// The eleven messages (internal date, header, body).
const MESSAGES: &str = r#"
M = [
 # (internal date, headers, body)
 ('"01-Dec-2026 10:00:00 +0000"', 'From: Carol <carol@example.com>\r\nTo: dave@example.com\r\nSubject: Budget 2027\r\nDate: Tue, 1 Dec 2026 09:00:00 +0000\r\nMessage-ID: <b1@example.com>\r\n', 'x'*40),
 ('"01-Dec-2026 11:00:00 +0000"', 'From: alice@example.com\r\nTo: Bob <bob@example.com>\r\nCc: zed@example.com\r\nSubject: Re: Budget 2027\r\nDate: Tue, 1 Dec 2026 12:30:00 +0200\r\nMessage-ID: <b2@example.com>\r\nIn-Reply-To: <b1@example.com>\r\nReferences: <b1@example.com>\r\n', 'y'*10),
 ('"01-Dec-2026 09:00:00 +0000"', 'From: "Bob" <bob@example.com>\r\nTo: carol@example.com\r\nSubject: [team] Lunch?\r\nMessage-ID: <l1@example.com>\r\n', 'z'*200),
 ('"02-Dec-2026 08:00:00 +0000"', 'From: dave@example.com\r\nTo: alice@example.com\r\nCc: amy@example.com\r\nSubject: RE: [team] Re: lunch?\r\nDate: Wed, 2 Dec 2026 07:00:00 -0500\r\nMessage-ID: <l2@example.com>\r\nIn-Reply-To: <l1@example.com>\r\n', 'w'*5),
 ('"02-Dec-2026 09:00:00 +0000"', 'From: eve@example.com\r\nTo: bob@example.com\r\nSubject: Fwd: Budget 2027\r\nDate: Wed, 2 Dec 2026 09:00:00 +0000\r\nMessage-ID: <f1@example.com>\r\n', 'v'*70),
 ('"03-Dec-2026 09:00:00 +0000"', 'From: frank@example.com\r\nTo: bob@example.com\r\nSubject: Re: Budget 2027\r\nDate: Thu, 3 Dec 2026 09:00:00 +0000\r\nMessage-ID: <b3@example.com>\r\nReferences: <b1@example.com> <gone@example.com> <b2@example.com>\r\n', 'u'*3),
 ('"03-Dec-2026 10:00:00 +0000"', 'From: gina@example.com\r\nTo: amy@example.com\r\nSubject: Minutes\r\nDate: Thu, 3 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\nReferences: <missing@example.com>\r\n', 'minutes'),
 ('"03-Dec-2026 11:00:00 +0000"', 'From: hal@example.com\r\nTo: amy@example.com\r\nSubject: Re: Minutes\r\nDate: Thu, 3 Dec 2026 11:00:00 +0000\r\nMessage-ID: <m2@example.com>\r\nReferences: <missing@example.com>\r\n', 'more'),
 ('"04-Dec-2026 11:00:00 +0000"', 'From: ivy@example.com\r\nTo: amy@example.com\r\nSubject: Minutes (fwd)\r\nDate: Thu, 3 Dec 2026 08:00:00 +0000\r\nMessage-ID: <m3@example.com>\r\n', 'fw'),
 ('"04-Dec-2026 12:00:00 +0000"', 'From: jo@example.com\r\nSubject: \r\nDate: not a date\r\nMessage-ID: <b2@example.com>\r\n', 'dup id, empty subject'),
 ('"04-Dec-2026 13:00:00 +0000"', 'From: =?utf-8?q?Kai?= <kai@example.com>\r\nTo: Zoe <zoe@example.com>\r\nSubject: =?utf-8?q?Re=3A_[Fwd=3A_budget_2027]?=\r\nDate: Fri, 4 Dec 2026 13:00:00 +0000\r\nMessage-ID: <k1@example.com>\r\nIn-Reply-To: <nothere@example.com> <b1@example.com>\r\n', 'k'),
]
"#;
