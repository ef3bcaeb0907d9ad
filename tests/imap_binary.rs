//! BINARY (RFC 3516) over real sockets against the demo, with Python's
//! imaplib: `BINARY[part]<partial>`, `BINARY.PEEK`, `BINARY.SIZE` for
//! quoted-printable, base64 (with NUL octets, sent as a literal8) and
//! identity parts, `NO [UNKNOWN-CTE]`, and APPEND with a literal8 whose
//! `binary` part comes back octet for octet. The decoded values are
//! written out here by hand from RFC 2045 §6.7/§6.8.

mod support;

use support::{demo, py_with};

const SCRIPT: &str = r#"
import imaplib, sys
host, port = sys.argv[1].rsplit(':', 1)
m = imaplib.IMAP4(host, int(port))
m.login('alice@example.com', 'alice')
typ, caps = m.capability()
assert b'BINARY' in caps[0].split(), caps
assert m.create('Binary')[0] == 'OK'
MIXED = (b'From: a@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\n'
    b'Content-Type: multipart/mixed; boundary=b\r\n\r\n'
    b'--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    b'caf=C3=A9 =\r\nau lait  \r\n=3D done\r\n'
    b'--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    b'AAECAwBh\r\n'
    b'--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n'
    b'--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n'
    b'--b--\r\n')
typ, d = m.append('Binary', None, None, MIXED)
assert typ == 'OK', d
typ, d = m.select('Binary')
assert d == [b'1'], d

def items(data):
    # imaplib's FETCH data: (head, literal) pairs and closing bytes.
    out = []
    for x in data:
        if isinstance(x, tuple):
            out.append(x)
    return out

typ, d = m.fetch('1', '(BINARY.SIZE[1] BINARY.PEEK[1])')
assert typ == 'OK', d
(head, value), = items(d)
want = 'café au lait\r\n= done'.encode()
assert value == want, value
assert b'BINARY.SIZE[1] %d' % len(want) in head, head
# NUL octets: a literal8.
typ, d = m.fetch('1', '(BINARY.PEEK[2])')
(head, value), = items(d)
assert head.endswith(b'BINARY[2] ~{6}'), head
assert value == b'\x00\x01\x02\x03\x00a', value
# A partial range of the decoded octets, with its origin.
typ, d = m.fetch('1', '(BINARY.PEEK[1]<2.3>)')
(head, value), = items(d)
assert head.endswith(b'BINARY[1]<2> {3}'), head
assert value == 'fé'.encode(), value
# Identity and BINARY[] (the whole message as stored).
typ, d = m.fetch('1', '(BINARY.PEEK[4] BINARY.SIZE[4])')
assert items(d)[0][1] == b'plain', d
typ, d = m.fetch('1', '(BINARY.PEEK[] BODY.PEEK[])')
(h1, whole), (h2, body) = items(d)
assert whole == body, (whole, body)
# An encoding that cannot be undone.
typ, d = m._simple_command('FETCH', '1', '(BINARY.PEEK[3])')
assert typ == 'NO' and b'[UNKNOWN-CTE]' in d[0], (typ, d)
# BINARY (not PEEK) sets \Seen.
typ, d = m.fetch('1', '(FLAGS)')
assert b'\\Seen' not in d[0], d
typ, d = m.fetch('1', '(BINARY[4])')
typ, d = m.fetch('1', '(FLAGS)')
assert b'\\Seen' in d[0], d

# APPEND with a literal8 (RFC 3516 §4.2): a part in the binary encoding.
RAW = (b'From: a@example.com\r\nSubject: raw\r\nMIME-Version: 1.0\r\n'
    b'Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n'
    b'\x00-\xe4\r\n\x00\xff\r\n')
tag = m._new_tag()
m.send(tag + b' APPEND Binary ~{%d}\r\n' % len(RAW))
line = m._get_line()
assert line.startswith(b'+'), line
m.send(RAW + b'\r\n')
while True:
    line = m._get_line()
    if line.startswith(tag):
        break
assert line.startswith(tag + b' OK'), line
typ, d = m.select('Binary')
assert d == [b'2'], d
typ, d = m.fetch('2', '(BINARY.SIZE[1] BINARY.PEEK[1] BODY.PEEK[1])')
(h1, binary), (h2, stored) = items(d)
assert binary == RAW.split(b'\r\n\r\n', 1)[1], binary
assert b'BINARY.SIZE[1] %d' % len(binary) in h1, h1
# Stored as base64: no NUL in what BODY[1] serves.
assert b'\x00' not in stored and stored.strip(), stored
m.logout()
print('binary ok')
"#;

#[tokio::test]
async fn binary_fetch_decodes_parts_and_literal8_append_keeps_binary_octets() {
    let d = demo();
    py_with(SCRIPT, &[&d.imap]);
}
