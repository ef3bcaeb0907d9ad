//! ESEARCH (RFC 4731) and SEARCHRES (RFC 5182) over real sockets against
//! the demo, with Python's imaplib: `SEARCH RETURN (…)`, the saved result
//! `$` in FETCH, STORE, SEARCH and UID commands, an empty `$`, and `$`
//! forgotten at SELECT. The demo's INBOX holds four messages, the third
//! one \Flagged.

mod support;

use support::{demo, py_with};

const SCRIPT: &str = r#"
import imaplib, sys
host, port = sys.argv[1].rsplit(':', 1)
m = imaplib.IMAP4(host, int(port))
m.login('alice@example.com', 'alice')
typ, caps = m.capability()
for c in (b'ESEARCH', b'SEARCHRES'):
    assert c in caps[0].split(), caps
typ, d = m.select('INBOX')
assert d == [b'4'], d
typ, d = m.uid('FETCH', '1:*', '(UID)')
uids = [int(x.split()[2].rstrip(b')')) for x in d]
assert len(uids) == 4, uids

def run(*args):
    tag = m._new_tag().decode()
    m.send(('%s %s\r\n' % (tag, ' '.join(args))).encode())
    lines = []
    while True:
        line = m._get_line().decode()
        lines.append(line)
        if line.startswith(tag + ' '):
            return tag, lines

def esearch(*args):
    tag, lines = run(*args)
    assert lines[-1].startswith(tag + ' OK'), lines
    found = [l for l in lines if l.startswith('* ESEARCH')]
    assert len(found) <= 1, lines
    prefix = '* ESEARCH (TAG "%s")' % tag
    return found[0][len(prefix):] if found else None, lines

# RFC 4731 §3.1: each option, and () as ALL.
assert esearch('SEARCH RETURN (MIN MAX ALL COUNT) ALL')[0] == ' MIN 1 MAX 4 ALL 1:4 COUNT 4'
assert esearch('SEARCH RETURN () ALL')[0] == ' ALL 1:4'
assert esearch('SEARCH RETURN (COUNT) FLAGGED')[0] == ' COUNT 1'
assert esearch('UID SEARCH RETURN (MIN) NOT FLAGGED')[0] == ' UID MIN %d' % uids[0]
assert esearch('search return (all) 1,2,4')[0] == ' ALL 1:2,4'
# Nothing found: MIN/MAX/ALL left out, COUNT 0.
assert esearch('SEARCH RETURN (MIN ALL) SUBJECT nothing-like-this')[0] == ''
assert esearch('UID SEARCH RETURN (COUNT MAX) SUBJECT nothing-like-this')[0] == ' UID COUNT 0'
# Without RETURN: the classic answer.
tag, lines = run('SEARCH FLAGGED')
assert lines[0] == '* SEARCH 3', lines

# RFC 5182: SAVE alone answers no ESEARCH; `$` is then the result.
found, lines = esearch('SEARCH RETURN (SAVE) FLAGGED')
assert found is None, lines
tag, lines = run('FETCH $ (FLAGS)')
assert lines[0].startswith('* 3 FETCH (FLAGS (') and '\\Flagged' in lines[0], lines
tag, lines = run('UID SEARCH UID $')
assert lines[0] == '* SEARCH %d' % uids[2], lines
tag, lines = run('SEARCH NOT $')
assert lines[0] == '* SEARCH 1 2 4', lines
tag, lines = run('UID FETCH $ (FLAGS)')
assert lines[0].startswith('* 3 FETCH (') and 'UID %d' % uids[2] in lines[0], lines
# SAVE with MIN and MAX only: the two ends are saved.
assert esearch('UID SEARCH RETURN (SAVE MIN MAX) ALL')[0] == ' UID MIN %d MAX %d' % (uids[0], uids[3])
tag, lines = run('SEARCH $')
assert lines[0] == '* SEARCH 1 4', lines
# $ in a search with SAVE is the previous result (RFC 5182 §2.1).
assert esearch('SEARCH RETURN (SAVE COUNT) $ 4')[0] == ' COUNT 1'
tag, lines = run('SEARCH $')
assert lines[0] == '* SEARCH 4', lines
# An empty result: nothing matches $, and commands on $ do nothing.
esearch('SEARCH RETURN (SAVE) SUBJECT nothing-like-this')
tag, lines = run('SEARCH $')
assert lines[0] == '* SEARCH', lines
tag, lines = run('FETCH $ (FLAGS)')
assert len(lines) == 1 and lines[0].startswith(tag + ' OK'), lines
tag, lines = run('UID STORE $ +FLAGS (\\Seen)')
assert len(lines) == 1 and lines[0].startswith(tag + ' OK'), lines
# A search string as a synchronizing literal: the continuation comes
# and the whole command is read.
tag = m._new_tag().decode()
m.send(('%s UID SEARCH RETURN (COUNT) SUBJECT {9}\r\n' % tag).encode())
assert m._get_line().startswith(b'+'), 'no continuation'
m.send(b'Quarterly\r\n')
line = m._get_line().decode()
assert line == '* ESEARCH (TAG "%s") UID COUNT 1' % tag, line
assert m._get_line().decode().startswith(tag + ' OK')
# A RETURN option that does not exist: BAD, the connection stays.
tag, lines = run('SEARCH RETURN (NEWEST) ALL')
assert lines[-1].startswith(tag + ' BAD') and 'MIN, MAX, ALL, COUNT and SAVE' in lines[-1], lines
# SELECT forgets $ (RFC 5182 §2.1).
esearch('SEARCH RETURN (SAVE) ALL')
typ, d = m.select('INBOX')
tag, lines = run('SEARCH $')
assert lines[0] == '* SEARCH', lines
m.logout()
print('esearch ok')
"#;

#[tokio::test]
async fn esearch_return_options_and_the_saved_result_work_over_imaplib() {
    let d = demo();
    py_with(SCRIPT, &[&d.imap]);
}
