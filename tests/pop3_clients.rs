//! POP3 (issue 19) against `graphgate demo` with independent clients over
//! real sockets: Python's poplib (every command, every MIME fixture's size
//! equal to the octets RETR delivers, UIDL equal to IMAP's
//! UIDVALIDITY-UID), curl (`pop3://`, STLS, `pop3s://`), fetchmail (keep
//! and delete modes over STLS); the UPDATE rules (an interrupted session
//! deletes nothing, a second session is `[IN-USE]`, `pop3.on_delete =
//! keep` only marks read); STLS drops what was pipelined after it; UIDL
//! survives a restart of the gateway.

use std::path::Path;
use std::process::{Command, Stdio};

mod support;

use support::{BIN, Proc, banner, demo, demo_env, py_with};

fn fixtures_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/mime")
        .display()
        .to_string()
}

/// Python helpers shared by the scripts: a POP3 login and IMAP access.
const PRELUDE: &str = r#"
import imaplib, poplib, socket, ssl, sys, os, time
def addr(a):
    h, p = a.rsplit(':', 1)
    return h, int(p)
def pop(a, user='bob@example.com', password='bob'):
    p = poplib.POP3(*addr(a), timeout=60)
    p.user(user)
    p.pass_(password)
    return p
def imap(a, user='bob@example.com', password='bob'):
    i = imaplib.IMAP4(*addr(a))
    i.login(user, password)
    return i
"#;

fn script(body: &str) -> String {
    format!("{PRELUDE}\n{body}")
}

#[test]
fn poplib_reads_every_fixture_with_exact_sizes_and_imap_unique_ids() {
    let d = demo();
    py_with(
        &script(
            r#"
imap_addr, pop_addr, fixtures = sys.argv[1:4]
names = sorted(f for f in os.listdir(fixtures) if f.endswith('.eml'))
assert len(names) >= 20, names
im = imap(imap_addr)
typ, data = im.select('INBOX')
before = int(data[0])
for n in names:
    with open(os.path.join(fixtures, n), 'rb') as f:
        typ, _ = im.append('INBOX', None, None, f.read())
    assert typ == 'OK', n
typ, data = im.select('INBOX')
total = int(data[0])
assert total == before + len(names), (total, before)
uidvalidity = im.response('UIDVALIDITY')[1][0].decode()
uids = im.uid('SEARCH', None, 'ALL')[1][0].decode().split()
# What RETR must send: IMAP's BODY[] (RFC822.SIZE octets), with a CRLF
# after a last line that has none (RFC 1939 §3).
expected = {}
for u in uids:
    typ, data = im.uid('FETCH', u, '(RFC822.SIZE BODY.PEEK[])')
    body = data[0][1]
    assert b'RFC822.SIZE %d ' % len(body) in data[0][0], data[0][0]
    expected[u] = len(body) if body.endswith(b'\n') else len(body) + 2
im.logout()

p = poplib.POP3(*addr(pop_addr), timeout=60)
caps = p.capa()
for c in ['TOP', 'UIDL', 'USER', 'SASL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'STLS']:
    assert c in caps, (c, caps)
p.user('bob@example.com')
p.pass_('bob')
assert 'STLS' not in p.capa()
count, size = p.stat()
assert count == total, (count, total)
resp, listing, _ = p.list()
sizes = {int(a): int(b) for a, b in (l.split() for l in listing)}
assert sorted(sizes) == list(range(1, count + 1))
assert sum(sizes.values()) == size
resp, ids, _ = p.uidl()
unique = [b.decode() for a, b in (l.split() for l in ids)]
assert unique == ['%s-%s' % (uidvalidity, u) for u in uids], (unique, uids)
for n in range(1, count + 1):
    assert p.list(n) == b'+OK %d %d' % (n, sizes[n])
    assert p.uidl(n) == b'+OK %d %s' % (n, unique[n - 1].encode())
    resp, lines, octets = p.retr(n)
    # poplib counts the octets of each line as received, CRLF included,
    # byte-stuffing undone: the size LIST gave, and IMAP's RFC822.SIZE.
    assert octets == sizes[n], (n, octets, sizes[n])
    assert sizes[n] == expected[uids[n - 1]], (n, sizes[n], expected[uids[n - 1]])
    assert resp == b'+OK %d octets' % sizes[n], resp
    # The header block ends at the first empty line; a message without
    # one (APPENDed bytes are served as they were) is all header.
    head = lines.index(b'') + 1 if b'' in lines else len(lines)
    resp, top, _ = p.top(n, 0)
    assert top == lines[:head], (n, top[-3:])
    resp, top2, _ = p.top(n, 2)
    assert top2 == lines[:head + 2], n
# DELE then RSET then QUIT: nothing is deleted.
p.dele(1)
try:
    p.retr(1)
    raise AssertionError('RETR of a deleted message answered')
except poplib.error_proto as e:
    assert b'marked deleted' in e.args[0], e
assert p.stat()[0] == count - 1
p.rset()
assert p.stat() == (count, size)
p.quit()
p = pop(pop_addr)
assert p.stat() == (count, size)
# DELE every fixture, QUIT: moved to Deleted Items (pop3.on_delete = trash).
for n in range(before + 1, count + 1):
    p.dele(n)
bye = p.quit()
assert b'%d message(s) moved to Deleted Items' % len(names) in bye, bye
p = pop(pop_addr)
assert p.stat()[0] == before
p.quit()
im = imap(imap_addr)
assert int(im.select('INBOX')[1][0]) == before
assert int(im.select('"Deleted Items"')[1][0]) >= len(names)
im.logout()
"#,
        ),
        &[&d.imap, &d.pop3, &fixtures_dir()],
    );
}

#[test]
fn an_interrupted_session_deletes_nothing_and_a_second_one_is_in_use() {
    let d = demo();
    py_with(
        &script(
            r#"
pop_addr, imap_addr = sys.argv[1:3]
p1 = pop(pop_addr)
count, size = p1.stat()
assert count > 0
p1.dele(1)
p2 = poplib.POP3(*addr(pop_addr), timeout=60)
p2.user('bob@example.com')
try:
    p2.pass_('bob')
    raise AssertionError('a second session got the maildrop')
except poplib.error_proto as e:
    assert e.args[0].startswith(b'-ERR [IN-USE]'), e
p2.quit()
# The connection drops without QUIT: no UPDATE (RFC 1939 §6).
p1.file.close()
p1.sock.close()
deadline = time.time() + 30
while True:
    try:
        p3 = pop(pop_addr)
        break
    except poplib.error_proto as e:
        assert b'[IN-USE]' in e.args[0] and time.time() < deadline, e
        time.sleep(0.05)
assert p3.stat() == (count, size)
p3.quit()
# Wrong password: the [AUTH] code (RFC 3206).
p4 = poplib.POP3(*addr(pop_addr), timeout=60)
p4.user('bob@example.com')
try:
    p4.pass_('wrong')
    raise AssertionError('a wrong password was taken')
except poplib.error_proto as e:
    assert e.args[0].startswith(b'-ERR [AUTH]'), e
"#,
        ),
        &[&d.pop3, &d.imap],
    );
}

#[test]
fn keep_mode_marks_read_and_deletes_nothing() {
    let d = demo_env(&[("GRAPHGATE_POP3_ON_DELETE", "keep")]);
    py_with(
        &script(
            r#"
pop_addr, imap_addr = sys.argv[1:3]
im = imap(imap_addr)
im.select('INBOX')
im.store('1', '-FLAGS', '\\Seen')
assert b'\\Seen' not in im.fetch('1', '(FLAGS)')[1][0]
im.logout()
p = pop(pop_addr)
count, size = p.stat()
p.dele(1)
bye = p.quit()
assert b'1 message(s) kept and marked read' in bye, bye
p = pop(pop_addr)
assert p.stat() == (count, size)
p.quit()
im = imap(imap_addr)
im.select('INBOX')
assert b'\\Seen' in im.fetch('1', '(FLAGS)')[1][0]
im.logout()
"#,
        ),
        &[&d.pop3, &d.imap],
    );
}

#[test]
fn stls_drops_commands_pipelined_before_the_handshake() {
    let d = demo();
    py_with(
        &script(
            r#"
s = socket.create_connection(addr(sys.argv[1]), timeout=30)
def line(sock):
    out = b''
    while not out.endswith(b'\n'):
        c = sock.recv(1)
        assert c, out
        out += c
    return out
assert line(s).startswith(b'+OK')
s.sendall(b'STLS\r\nCAPA\r\n')
assert line(s).startswith(b'+OK Begin TLS'), 'no STLS'
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s)
t.sendall(b'NOOP\r\n')
first = line(t)
# The CAPA sent in plaintext after STLS is not answered (RFC 2595 §4).
assert first.startswith(b'+OK') and b'Capability' not in first, first
t.sendall(b'CAPA\r\n')
caps = []
while True:
    l = line(t)
    if l == b'.\r\n':
        break
    caps.append(l)
assert b'STLS\r\n' not in caps and b'USER\r\n' in caps, caps
t.sendall(b'QUIT\r\n')
assert line(t).startswith(b'+OK')
"#,
        ),
        &[&d.pop3],
    );
}

/// curl's output for `url` (with `extra` options), which must succeed.
fn curl(url: &str, extra: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args([
            "-s",
            "-S",
            "--max-time",
            "60",
            "--user",
            "bob@example.com:bob",
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn curl_lists_and_retrieves_over_plain_stls_and_implicit_tls() {
    let d = demo();
    let listing = curl(&format!("pop3://{}/", d.pop3), &[]);
    let text = String::from_utf8_lossy(&listing).to_string();
    let first: Vec<&str> = text.lines().next().expect("a listing").split(' ').collect();
    assert_eq!(first[0], "1", "{text}");
    let size: usize = first[1].parse().expect("a size");
    let message = curl(&format!("pop3://{}/1", d.pop3), &[]);
    assert_eq!(message.len(), size, "RETR 1 is LIST 1's size");
    // STLS (curl insists on it with --ssl-reqd) and implicit TLS.
    let over_stls = curl(&format!("pop3://{}/1", d.pop3), &["--ssl-reqd", "-k"]);
    assert_eq!(over_stls, message);
    let over_tls = curl(&format!("pop3s://{}/1", d.pop3s), &["-k"]);
    assert_eq!(over_tls, message);
    assert_eq!(
        curl(&format!("pop3s://{}/", d.pop3s), &["-k"]),
        listing,
        "the same listing over TLS"
    );
}

/// fetchmail, when installed (scripts/test installs it; CI must have it).
fn fetchmail() -> Option<&'static str> {
    let found = Command::new("fetchmail")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "fetchmail is missing (scripts/test installs it)"
        );
        eprintln!("skipped: fetchmail is not installed");
        return None;
    }
    Some("fetchmail")
}

/// Run fetchmail once against `pop3` over STLS, delivering to `mbox`;
/// `keep` leaves the mail on the server.
fn run_fetchmail(pop3: &str, dir: &Path, mbox: &Path, keep: bool) {
    let (host, port) = pop3.rsplit_once(':').unwrap();
    let rc = dir.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no bouncemail\n\
             poll {host} service {port} proto pop3 auth password timeout 60\n\
             \x20 user \"bob@example.com\" password \"bob\" is \"tester\" here\n\
             \x20 sslproto 'tls1.2+' no sslcertck\n\
             \x20 {} mda \"cat >> {}\"\n",
            if keep { "keep" } else { "nokeep fetchall" },
            mbox.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&rc).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&rc, perms).unwrap();
    let out = Command::new("fetchmail")
        .args(["-f"])
        .arg(&rc)
        .args(["--nodetach", "--nosyslog", "-v"])
        .env("HOME", dir)
        .env("FETCHMAILHOME", dir)
        .output()
        .unwrap();
    // 0: mail fetched; 1: no mail.
    assert!(
        matches!(out.status.code(), Some(0)),
        "fetchmail: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("> STLS"), "fetchmail did not use STLS:\n{log}");
}

#[test]
fn fetchmail_keeps_then_deletes_over_stls() {
    if fetchmail().is_none() {
        return;
    }
    let d = demo();
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("mbox");
    let count = || {
        let text = std::fs::read_to_string(&mbox).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("Message-ID:"))
            .count()
    };
    run_fetchmail(&d.pop3, dir.path(), &mbox, true);
    let first = count();
    assert!(first > 0, "fetchmail delivered nothing");
    // Kept on the server: a second run (fetchall) gets them again, then
    // deletes them; a third finds none.
    run_fetchmail(&d.pop3, dir.path(), &mbox, false);
    assert_eq!(count(), 2 * first);
    py_with(
        &script("p = pop(sys.argv[1]); assert p.stat()[0] == 0, p.stat(); p.quit()"),
        &[&d.pop3],
    );
}

/// A data directory for `graphgate serve` against `sim`: POP3 on a free
/// port, nothing else listening; `user` (password: its local part)
/// signed in, reading the shared mailboxes `shared`.
async fn serve_dir(sim: &support::Sim, user: &str, shared: &[&str]) -> tempfile::TempDir {
    use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
    use graphgate::store::{NewAccount, Store, StoreKey};
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = {data:?}\n\
         [microsoft]\nauthority_url = {url:?}\ngraph_url = {url:?}\n\
         tenant = {DEMO_TENANT_ID:?}\nclient_id = {DEMO_PUBLIC_CLIENT_ID:?}\n\
         [smtp]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n\
         [imap]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n\
         [pop3]\nlisten = \"127.0.0.1:0\"\nimplicit_tls_listen = \"\"\n\
         [admin]\nlisten = \"\"\n",
        data = dir.path().display().to_string(),
        url = sim.url,
    );
    graphgate::config::write_private_file(&dir.path().join("graphgate.toml"), config.as_bytes())
        .unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut new = NewAccount::delegated(user, user.split('@').next().unwrap());
    new.shared_mailboxes = shared.iter().map(|s| s.to_string()).collect();
    let account = store.add_account(&new).unwrap();
    let tokens = graphgate::cli::sign_in_via_simulator_with(&sim.url, user, !shared.is_empty())
        .await
        .unwrap();
    let key = StoreKey::load(dir.path()).unwrap();
    graphgate::account::save_tokens(&store, &key, account.id, &tokens).unwrap();
    dir
}

/// `graphgate serve` on `dir` (with `extra` arguments): the process and
/// its POP3 address.
fn serve(dir: &Path, extra: &[&str]) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(dir.join("graphgate.toml"))
        .arg("serve")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = banner(&mut child, "graphgate is running");
    let line = lines.last().unwrap().clone();
    let pop3 = line
        .split(" · ")
        .find_map(|p| p.trim().strip_prefix("POP3 "))
        .unwrap_or_else(|| panic!("no POP3 in {line}"))
        .trim()
        .to_string();
    (Proc(child), pop3)
}

#[tokio::test]
async fn uidl_is_the_same_after_a_restart_of_the_gateway() {
    let sim = support::sim(true);
    let dir = serve_dir(&sim, "bob@example.com", &[]).await;
    let uidl = |pop3: &str, out: &Path| {
        py_with(
            &script(
                "p = pop(sys.argv[1])\n\
                 open(sys.argv[2], 'wb').write(b'\\n'.join(p.uidl()[1]))\n\
                 p.quit()",
            ),
            &[pop3, &out.display().to_string()],
        );
        std::fs::read(out).unwrap()
    };
    let (gateway, pop3) = serve(dir.path(), &[]);
    let before = uidl(&pop3, &dir.path().join("before"));
    assert!(!before.is_empty(), "bob's INBOX is empty");
    drop(gateway);
    let (_gateway, pop3) = serve(dir.path(), &[]);
    let after = uidl(&pop3, &dir.path().join("after"));
    assert_eq!(
        String::from_utf8_lossy(&before),
        String::from_utf8_lossy(&after)
    );
}

#[tokio::test]
async fn a_login_naming_a_shared_mailbox_reads_its_inbox() {
    let sim = support::sim(true);
    let dir = serve_dir(&sim, "alice@example.com", &["support@example.com"]).await;
    let (_gateway, pop3) = serve(dir.path(), &[]);
    py_with(
        &script(
            r#"
a = sys.argv[1]
own = pop(a, 'alice@example.com', 'alice')
own_ids = [l.split()[1] for l in own.uidl()[1]]
own.quit()
shared = pop(a, 'alice@example.com/support@example.com', 'alice')
count, size = shared.stat()
shared_ids = [l.split()[1] for l in shared.uidl()[1]]
assert len(shared_ids) == count
# Another folder, another UIDVALIDITY.
assert not set(own_ids) & set(shared_ids), (own_ids, shared_ids)
if shared_ids and own_ids:
    assert shared_ids[0].split(b'-')[0] != own_ids[0].split(b'-')[0]
shared.quit()
# The same with AUTH PLAIN: the authorization identity names it.
import base64
s = poplib.POP3(*addr(a), timeout=60)
resp = s._shortcmd('AUTH PLAIN ' + base64.b64encode(
    b'alice@example.com/support@example.com\0alice@example.com\0alice').decode())
assert resp.startswith(b'+OK maildrop has %d' % count), resp
s.quit()
# A mailbox the account was not given: [AUTH], said so.
n = poplib.POP3(*addr(a), timeout=60)
n.user('alice@example.com/bob@example.com')
try:
    n.pass_('alice')
    raise AssertionError('a mailbox not shared with the account was opened')
except poplib.error_proto as e:
    assert e.args[0].startswith(b'-ERR [AUTH] bob@example.com is not one of'), e
"#,
        ),
        &[&pop3],
    );
}

#[test]
fn auth_plain_and_refusals_in_a_transcript() {
    let d = demo();
    py_with(
        &script(
            r#"
import base64
s = socket.create_connection(addr(sys.argv[1]), timeout=30)
f = s.makefile('rb')
def say(line, want):
    s.sendall(line + b'\r\n')
    got = f.readline()
    assert got.startswith(want), (line[:40], got, want)
    return got
assert f.readline().startswith(b'+OK graphgate POP3 ready')
say(b'STAT', b'-ERR STAT needs you to log in first')
say(b'PASS bob', b'-ERR PASS needs USER first')
say(b'APOP bob 0123456789abcdef', b'-ERR unknown command "APOP"')
say(b'USER ' + b'x' * 300, b'-ERR the line is longer than 255 octets')
say(b'AUTH CRAM-MD5', b'-ERR Only AUTH PLAIN')
say(b'AUTH PLAIN ' + base64.b64encode(b'\0bob@example.com\0wrong'), b'-ERR [AUTH] Wrong login or password')
say(b'AUTH PLAIN ' + b'!!!', b'-ERR AUTH PLAIN: the response is not base64')
say(b'AUTH PLAIN', b'+ ')
say(b'*', b'-ERR AUTH cancelled')
say(b'AUTH PLAIN', b'+ ')
say(base64.b64encode(b'\0bob@example.com\0bob'), b'+OK maildrop has')
say(b'USER bob@example.com', b'-ERR USER is only valid before logging in')
say(b'RETR 0', b'-ERR no message 0')
say(b'RETR 99999', b'-ERR no message 99999')
say(b'TOP 1 x', b'-ERR TOP: a message number is a decimal number')
say(b'NOOP', b'+OK')
# Pipelined: three answers, in order.
s.sendall(b'STAT\r\nUIDL 1\r\nLIST 1\r\n')
assert f.readline().startswith(b'+OK ')
assert f.readline().startswith(b'+OK 1 ')
assert f.readline().startswith(b'+OK 1 ')
say(b'QUIT', b'+OK graphgate POP3 signing off (0 message(s)')
"#,
        ),
        &[&d.pop3],
    );
}

/// Debian's mutt opens the maildrop as a `pop://` folder (USER/PASS on
/// loopback, UIDL, LIST, TOP/RETR) and pipes the first message of its
/// index to a file; that message is one graphgate's RETR serves. mutt
/// needs a terminal: `script` gives it one.
#[test]
fn mutt_opens_the_maildrop_and_pipes_a_message() {
    let found = Command::new("which")
        .arg("mutt")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").is_err(), "mutt is missing on CI");
        eprintln!("skipped: mutt is not installed (scripts/test installs it)");
        return;
    }
    let d = demo();
    let home = d.dir.path().join("mutt-pop-home");
    // With no ~/Mail, mutt first asks to create it, which eats the keys.
    std::fs::create_dir_all(home.join("Mail")).unwrap();
    let rc = home.join("muttrc");
    std::fs::write(
        &rc,
        "set pop_user=\"bob@example.com\"\nset pop_pass=\"bob\"\n\
         set ssl_starttls=no\nset ssl_force_tls=no\nset mail_check=0\n",
    )
    .unwrap();
    let piped = home.join("piped");
    let command = format!(
        "mutt -n -F {rc} -f pop://{pop3}/ -e 'push \"<pipe-message>cat > {piped}<enter><exit>\"'",
        rc = rc.display(),
        pop3 = d.pop3,
        piped = piped.display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HOME", &home)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "mutt under script: {:?}", out.status);
    let screen = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        piped.exists(),
        "mutt piped nothing; its screen: {}",
        screen
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
    );
    py_with(
        &script(
            r#"
got = open(sys.argv[2], 'rb').read().replace(b'\r\n', b'\n')
assert got, 'mutt piped nothing'
p = pop(sys.argv[1])
served = [b'\n'.join(p.retr(n)[1]) + b'\n' for n in range(1, p.stat()[0] + 1)]
p.quit()
assert got in served, (got[:200], [s[:80] for s in served])
"#,
        ),
        &[&d.pop3, &piped.display().to_string()],
    );
}

/// `pop3.idle_timeout_s`: a silent session is closed with a sentence that
/// names the key, and its DELE is not applied (no UPDATE without QUIT).
#[test]
fn an_idle_session_is_closed_and_deletes_nothing() {
    let d = demo_env(&[("GRAPHGATE_POP3_IDLE_TIMEOUT_S", "1")]);
    py_with(
        &script(
            r#"
p = pop(sys.argv[1])
count, size = p.stat()
p.dele(1)
# Wait for the server to speak: the autologout line, then the close.
line = p.file.readline()
assert line.startswith(b'-ERR autologout') and b'pop3.idle_timeout_s' in line, line
assert p.file.readline() == b'', 'the connection stays open'
q = pop(sys.argv[1])
assert q.stat() == (count, size)
q.quit()
"#,
        ),
        &[&d.pop3],
    );
}

/// `pop3.max_connections`: the connection beyond the limit is told why
/// and closed; the ones within it are served.
#[test]
fn connections_beyond_the_limit_are_refused_with_a_reason() {
    let d = demo_env(&[("GRAPHGATE_POP3_MAX_CONNECTIONS", "1")]);
    py_with(
        &script(
            r#"
first = poplib.POP3(*addr(sys.argv[1]), timeout=30)
s = socket.create_connection(addr(sys.argv[1]), timeout=30)
line = s.makefile('rb').readline()
assert line.startswith(b'-ERR [SYS/TEMP] Too many POP3 connections (pop3.max_connections)'), line
first.user('bob@example.com')
first.pass_('bob')
first.quit()
"#,
        ),
        &[&d.pop3],
    );
}

/// From an address other than loopback, USER/PASS and AUTH are refused
/// (and not offered) until STLS; after it, the same login works.
#[tokio::test]
async fn plaintext_login_off_loopback_needs_stls_first() {
    let sim = support::sim(true);
    let dir = serve_dir(&sim, "bob@example.com", &[]).await;
    // `serve --pop3` wins over pop3.listen.
    let (_gateway, pop3) = serve(dir.path(), &["--pop3", "0.0.0.0:0"]);
    assert!(pop3.starts_with("0.0.0.0:"), "{pop3}");
    let port = pop3.rsplit_once(':').unwrap().1.to_string();
    py_with(
        &script(
            r#"
port = int(sys.argv[1])
# This host's address on its default route: not loopback.
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.connect(('192.0.2.1', 9))
    here = u.getsockname()[0]
except OSError as e:
    print('skipped: no address besides loopback:', e)
    sys.exit(0)
if here.startswith('127.'):
    print('skipped: no address besides loopback')
    sys.exit(0)
p = poplib.POP3(here, port, timeout=30)
caps = p.capa()
assert 'STLS' in caps and 'USER' not in caps and 'SASL' not in caps, caps
try:
    p.user('bob@example.com')
    raise AssertionError('USER taken in plaintext off loopback')
except poplib.error_proto as e:
    assert e.args[0].startswith(b'-ERR [AUTH] Plaintext login is disabled'), e
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
p.stls(ctx)
assert 'USER' in p.capa()
p.user('bob@example.com')
p.pass_('bob')
assert p.stat()[0] > 0
p.quit()
"#,
        ),
        &[&port],
    );
}
