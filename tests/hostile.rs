//! Hostile and broken clients against a running gateway (`graphgate demo`
//! as its own process, so that its memory can be read from /proc): endless
//! lines, a 2 GB literal announcement, invalid UTF-8, commands in the wrong
//! state, pipelined garbage, TLS handshakes that stop halfway, slowloris
//! clients and 1,000 idle connections. Each gets a clear protocol error or
//! a timeout; the process's memory stays bounded; a well-behaved client is
//! served all along.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

mod support;

use support::{Demo, demo_env};

/// Resident and peak resident memory of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The demo with small limits: 1 MB messages (and IMAP literals), and a
/// 2-second idle timeout for both protocols.
fn hostile_demo() -> Demo {
    demo_env(&[
        ("GRAPHGATE_SMTP_MAX_MESSAGE_SIZE", "1048576"),
        ("GRAPHGATE_SMTP_IDLE_TIMEOUT_S", "2"),
        ("GRAPHGATE_IMAP_IDLE_TIMEOUT_S", "2"),
    ])
}

struct Client {
    read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: &str) -> (Client, String) {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut c = Client {
            read: BufReader::new(r),
            write: w,
        };
        let greeting = c.line().await.expect("a greeting");
        (c, greeting)
    }

    /// The next line, or `None` when the server closed the connection.
    async fn line(&mut self) -> Option<String> {
        let mut l = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(30), self.read.read_until(b'\n', &mut l))
            .await
            .expect("a line within 30 s")
            .ok()?;
        (n > 0).then(|| String::from_utf8_lossy(&l).trim_end().to_string())
    }

    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.write.write_all(bytes).await;
    }

    /// SMTP: one reply (the last line of a multi-line one).
    async fn reply(&mut self) -> Option<String> {
        loop {
            let l = self.line().await?;
            if l.as_bytes().get(3) != Some(&b'-') {
                return Some(l);
            }
        }
    }

    /// IMAP: the lines up to the one tagged `tag`.
    async fn tagged(&mut self, tag: &str) -> Option<String> {
        loop {
            let l = self.line().await?;
            if l.starts_with(&format!("{tag} ")) {
                return Some(l);
            }
        }
    }

    /// Read until the server closes; the lines it sent on the way.
    async fn until_closed(&mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut lines = Vec::new();
        loop {
            let mut l = Vec::new();
            match tokio::time::timeout_at(deadline, self.read.read_until(b'\n', &mut l)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return lines,
                Ok(Ok(_)) => lines.push(String::from_utf8_lossy(&l).trim_end().to_string()),
                Err(_) => panic!("still open after {within:?}; it said {lines:?}"),
            }
        }
    }
}

/// A well-behaved SMTP client: AUTH and a message, accepted.
async fn smtp_works(addr: &str) {
    let (mut c, greeting) = Client::connect(addr).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    c.send(b"EHLO well-behaved\r\n").await;
    assert!(c.reply().await.unwrap().starts_with("250"));
    // alice / alice, AUTH PLAIN.
    c.send(b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl\r\n")
        .await;
    let auth = c.reply().await.unwrap();
    assert!(auth.starts_with("235"), "{auth}");
    c.send(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
        .await;
    for _ in 0..3 {
        let r = c.reply().await.unwrap();
        assert!(r.starts_with('2') || r.starts_with("354"), "{r}");
    }
    c.send(b"Subject: still served\r\n\r\nhello\r\n.\r\nQUIT\r\n")
        .await;
    let r = c.reply().await.unwrap();
    assert!(r.starts_with("250"), "{r}");
}

/// A well-behaved IMAP client: LOGIN, SELECT, FETCH.
async fn imap_works(addr: &str) {
    let (mut c, greeting) = Client::connect(addr).await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    c.send(b"a LOGIN bob@example.com bob\r\n").await;
    let r = c.tagged("a").await.unwrap();
    assert!(r.starts_with("a OK"), "{r}");
    c.send(b"b SELECT INBOX\r\nc FETCH 1 (FLAGS RFC822.SIZE)\r\nd LOGOUT\r\n")
        .await;
    for tag in ["b", "c", "d"] {
        let r = c.tagged(tag).await.unwrap();
        assert!(r.starts_with(&format!("{tag} OK")), "{r}");
    }
}

/// Write `total` bytes of `byte` without a line end, in 64 KiB writes;
/// false when the server closed the connection first.
async fn flood(c: &mut Client, byte: u8, total: usize) -> bool {
    let chunk = vec![byte; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        if c.write.write_all(&chunk).await.is_err() {
            return false;
        }
        sent += chunk.len();
    }
    true
}

#[tokio::test]
async fn smtp_endless_lines_garbage_and_wrong_state_get_errors() {
    let d = hostile_demo();
    let pid = d.proc.0.id();
    let (before, _) = memory_kib(pid);

    // An endless line: 16 MB with no line end, then one.
    let (mut c, _) = Client::connect(&d.smtp).await;
    if flood(&mut c, b'A', 16 << 20).await {
        c.send(b"\r\nNOOP\r\n").await;
        let r = c.reply().await;
        assert!(
            r.as_deref().is_none_or(|r| r.starts_with("500 5.5.2")),
            "{r:?}"
        );
    }
    let (after, _) = memory_kib(pid);
    assert!(
        after.saturating_sub(before) < 8 * 1024,
        "a 16 MB line grew the gateway from {before} KiB to {after} KiB"
    );

    // Invalid UTF-8 and commands in the wrong state: each a 5xx reply on
    // a connection that stays usable.
    let (mut c, _) = Client::connect(&d.smtp).await;
    for (line, code) in [
        // EHLO's argument is only informational: taken as it comes.
        (&b"EHLO \xff\xfe\xc0\r\n"[..], "250"),
        (b"DATA\r\n", "503"),
        (b"RCPT TO:<bob@example.com>\r\n", "503"),
        (b"\xff\xfe\xfd\xfc\r\n", "500"),
        (b"MAIL FROM:<\xff@example.com>\r\n", "5"),
    ] {
        c.send(line).await;
        let r = c.reply().await.expect("a reply, not a closed connection");
        assert!(
            r.starts_with(code),
            "{:?} got {r}",
            String::from_utf8_lossy(line)
        );
    }

    // Pipelined garbage: 500 bad lines in one write, then NOOP: one reply
    // per line, in order, and the NOOP's last.
    let mut garbage = Vec::new();
    for i in 0..500 {
        garbage.extend_from_slice(format!("XYZZY {i} \x01\x02\x7f\r\n").as_bytes());
    }
    garbage.extend_from_slice(b"NOOP\r\n");
    c.send(&garbage).await;
    let mut replies = Vec::new();
    for _ in 0..501 {
        match c.reply().await {
            Some(r) => replies.push(r),
            None => break,
        }
    }
    // The gateway may give up on a client that sends only errors; if it
    // answered all, the last one is the NOOP's.
    assert!(!replies.is_empty());
    assert!(
        replies[..replies.len() - 1]
            .iter()
            .all(|r| r.starts_with('5'))
    );
    if replies.len() == 501 {
        assert!(replies[500].starts_with("250"), "{}", replies[500]);
    }

    smtp_works(&d.smtp).await;
}

#[tokio::test]
async fn imap_endless_lines_huge_literals_garbage_and_wrong_state_get_errors() {
    let d = hostile_demo();
    let pid = d.proc.0.id();

    // A 2 GB literal announced: refused at once, no continuation; the
    // connection goes on.
    let (mut c, _) = Client::connect(&d.imap).await;
    c.send(b"a LOGIN bob@example.com bob\r\n").await;
    assert!(c.tagged("a").await.unwrap().starts_with("a OK"));
    c.send(b"b APPEND INBOX {2147483648}\r\n").await;
    let r = c.line().await.unwrap();
    assert!(!r.starts_with('+'), "a continuation for 2 GB: {r}");
    assert!(r.starts_with("b BAD") || r.starts_with("b NO"), "{r}");
    assert!(r.contains("larger than 1048576 bytes"), "{r}");
    assert!(
        r.contains("SMTP"),
        "the refusal says where large messages go: {r}"
    );
    // The limit is announced beforehand too (RFC 7889).
    c.send(b"d CAPABILITY\r\n").await;
    let caps = c.line().await.unwrap();
    assert!(caps.contains(" APPENDLIMIT=1048576"), "{caps}");
    assert!(c.tagged("d").await.unwrap().starts_with("d OK"));
    c.send(b"c NOOP\r\n").await;
    assert!(c.tagged("c").await.unwrap().starts_with("c OK"));

    // The same with LITERAL+ (the client does not wait): refused, and
    // the bytes that follow are not taken for commands.
    let (mut c, _) = Client::connect(&d.imap).await;
    c.send(b"a APPEND INBOX {2147483648+}\r\nb LOGIN bob@example.com bob\r\n")
        .await;
    let r = c.line().await;
    assert!(
        r.as_deref()
            .is_none_or(|r| r.starts_with("a BAD") || r.starts_with("* BYE")),
        "{r:?}"
    );

    // Invalid UTF-8 and commands in the wrong state.
    let (mut c, _) = Client::connect(&d.imap).await;
    for (line, tag, want) in [
        (&b"a FETCH 1 FLAGS\r\n"[..], "a", "a BAD"),
        (b"b SELECT INBOX\r\n", "b", "b BAD"),
        (b"c LOGIN \xff\xfe \xc0\r\n", "c", "c "),
        (b"d \xff\xfe\xfd\r\n", "d", "d BAD"),
    ] {
        c.send(line).await;
        let r = c.tagged(tag).await.expect("a tagged reply");
        assert!(
            r.starts_with(want) && !r.starts_with(&format!("{tag} OK")),
            "{:?} got {r}",
            String::from_utf8_lossy(line)
        );
    }
    // Untagged garbage gets an untagged BAD.
    c.send(b"\xff\xfe\r\n").await;
    let r = c.line().await.unwrap();
    assert!(r.starts_with("* BAD"), "{r}");

    // LIST patterns made of wildcards (a fuzzer's find: matching them by
    // trying every split was exponential), and one longer than any name.
    c.send(b"l1 LOGIN bob@example.com bob\r\n").await;
    assert!(c.tagged("l1").await.unwrap().starts_with("l1 OK"));
    let stars = format!("l2 LIST \"\" \"{}?{}\"\r\n", "*".repeat(60), "*".repeat(60));
    c.send(stars.as_bytes()).await;
    assert!(c.tagged("l2").await.unwrap().starts_with("l2 OK"));
    let long = format!("l3 LIST \"\" \"{}\"\r\n", "%a".repeat(1000));
    c.send(long.as_bytes()).await;
    let r = c.tagged("l3").await.unwrap();
    assert!(r.starts_with("l3 NO") && r.contains("1024"), "{r}");

    // Pipelined garbage: 500 bad lines in one write, then a NOOP that is
    // still answered.
    let mut garbage = Vec::new();
    for i in 0..500 {
        garbage.extend_from_slice(format!("g{i} XYZZY \x01\x7f\r\n").as_bytes());
    }
    garbage.extend_from_slice(b"z NOOP\r\n");
    c.send(&garbage).await;
    let r = c.tagged("z").await.expect("the NOOP after the garbage");
    assert!(r.starts_with("z OK"), "{r}");

    // An endless line: bounded by the command limit (the 1 MB literal
    // limit plus 64 KiB), not by the client.
    let (before, _) = memory_kib(pid);
    let (mut c, _) = Client::connect(&d.imap).await;
    if flood(&mut c, b'A', 16 << 20).await {
        c.send(b"\r\ny NOOP\r\n").await;
        let first = c.line().await;
        assert!(
            first
                .as_deref()
                .is_none_or(|l| l.starts_with("* BAD") && l.contains("too long")),
            "{first:?}"
        );
    }
    let (after, _) = memory_kib(pid);
    assert!(
        after.saturating_sub(before) < 8 * 1024,
        "a 16 MB line grew the gateway from {before} KiB to {after} KiB"
    );

    imap_works(&d.imap).await;
}

/// Connect and start a TLS handshake that never finishes: a ClientHello's
/// first bytes, then silence.
async fn half_handshake(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .await
        .unwrap();
    s
}

/// The server closes `s` within `within` (reads to EOF or reset).
async fn closed_within(s: &mut TcpStream, within: Duration) {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept the connection open for {within:?}"),
        }
    }
}

#[tokio::test]
async fn half_handshakes_and_slowloris_clients_time_out_while_others_are_served() {
    let d = hostile_demo();

    // TLS handshakes that stop halfway, on the implicit-TLS ports and
    // after STARTTLS.
    let mut stalled = vec![
        half_handshake(&d.smtps).await,
        half_handshake(&d.imaps).await,
    ];
    {
        let (c, _) = Client::connect(&d.smtp).await;
        let mut c = c;
        c.send(b"EHLO x\r\n").await;
        c.reply().await.unwrap();
        c.send(b"STARTTLS\r\n").await;
        assert!(c.reply().await.unwrap().starts_with("220"));
        c.send(&[0x16, 0x03, 0x01]).await;
        let s = c.read.into_inner().reunite(c.write).unwrap();
        stalled.push(s);
    }
    {
        let (mut c, _) = Client::connect(&d.imap).await;
        c.send(b"a STARTTLS\r\n").await;
        assert!(c.tagged("a").await.unwrap().starts_with("a OK"));
        c.send(&[0x16, 0x03, 0x01]).await;
        let s = c.read.into_inner().reunite(c.write).unwrap();
        stalled.push(s);
    }

    // Slowloris: clients that dribble a command a byte at a time.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let (c, _) = Client::connect(&d.smtp).await;
        slow.push(c);
        let (c, _) = Client::connect(&d.imap).await;
        slow.push(c);
    }
    for byte in b"EHLO" {
        for c in &mut slow {
            c.send(&[*byte]).await;
        }
    }

    // Meanwhile, well-behaved clients are served.
    smtp_works(&d.smtp).await;
    imap_works(&d.imap).await;

    // Each stalled or dribbling connection is closed by the idle timeout
    // (2 s here), the line-based ones with a reason.
    for s in &mut stalled {
        closed_within(s, Duration::from_secs(30)).await;
    }
    for c in &mut slow {
        let said = c.until_closed(Duration::from_secs(30)).await;
        assert!(
            said.iter()
                .any(|l| l.starts_with("421 4.4.2") || l.starts_with("* BYE")),
            "closed without a reason: {said:?}"
        );
    }
    smtp_works(&d.smtp).await;
}

#[tokio::test]
async fn a_thousand_idle_connections_cost_little_and_block_no_one() {
    // This process holds the 1,000 client ends.
    let files = graphgate::cli::raise_open_file_limit().unwrap_or(0);
    assert!(
        files >= 1100,
        "the open-file limit is {files}; raise `ulimit -Hn`"
    );
    let d = demo_env(&[]);
    let pid = d.proc.0.id();
    // Warm up (TLS, accounts, Graph client), then measure.
    imap_works(&d.imap).await;
    smtp_works(&d.smtp).await;
    let (before, _) = memory_kib(pid);
    let mut idle = Vec::new();
    for i in 0..1000 {
        let addr = if i % 2 == 0 { &d.imap } else { &d.smtp };
        let (c, greeting) = Client::connect(addr).await;
        assert!(
            greeting.starts_with("* OK") || greeting.starts_with("220"),
            "connection {i}: {greeting}"
        );
        idle.push(c);
    }
    let (after, peak) = memory_kib(pid);
    let per_connection = after.saturating_sub(before) * 1024 / 1000;
    println!(
        "1,000 idle connections: {before} KiB -> {after} KiB resident ({per_connection} bytes \
         each), peak {peak} KiB"
    );
    assert!(
        per_connection < 100 * 1024,
        "{per_connection} bytes per idle connection"
    );
    // The 1,001st and 1,002nd clients are served as usual.
    smtp_works(&d.smtp).await;
    imap_works(&d.imap).await;
    drop(idle);
}

/// STARTTLS command injection (CVE-2011-0411): what a man in the middle
/// appends in plaintext after STARTTLS must not be executed once TLS is
/// up. Python's ssl module plays the client.
#[test]
fn commands_injected_before_the_tls_handshake_are_dropped() {
    let d = hostile_demo();
    let port = |addr: &str| addr.rsplit(':').next().unwrap().to_string();
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

def attempt(port, hello, starttls, injected, after, expected):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")
    f.readline()
    if hello:
        s.sendall(hello)
        while f.readline()[3:4] != b" ":
            pass
    s.sendall(starttls + injected)
    f.readline()
    t = ctx.wrap_socket(s, server_hostname="localhost")
    t.sendall(after)
    first = t.makefile("rb").readline()
    assert first.startswith(expected), "injected %r answered: %r" % (injected, first)

attempt(int(sys.argv[1]), None, b"a STARTTLS\r\n",
        b"b LOGIN alice@example.com alice\r\n", b"c NOOP\r\n", b"c OK")
attempt(int(sys.argv[2]), b"EHLO x\r\n", b"STARTTLS\r\n",
        b"MAIL FROM:<alice@example.com>\r\n", b"NOOP\r\n", b"250 2.0.0")
"#;
    support::py_with(script, &[&port(&d.imap), &port(&d.smtp)]);
}

/// A FETCH of a whole folder's bodies streams its answer: the gateway's
/// peak memory while serving 100 MB of cached messages stays far below
/// 100 MB (it encoded the whole answer into memory before writing any of
/// it: twice the answer at its peak). What it holds is bounded by the
/// read-ahead, not by the answer, so the larger answer keeps the margin
/// wide on a busy machine. Python's imaplib is the client.
#[test]
fn fetching_every_body_of_a_large_folder_holds_a_part_of_the_answer() {
    let d = support::demo();
    let port = |addr: &str| addr.rsplit(':').next().unwrap().to_string();
    let script = r#"
import imaplib, sys
port, pid = int(sys.argv[1]), sys.argv[2]

def memory():
    fields = {}
    for line in open("/proc/%s/status" % pid):
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(rest.split()[0])
    return fields["VmRSS"], fields["VmHWM"]

M = imaplib.IMAP4("127.0.0.1", port)
M.login("alice@example.com", "alice")
M.create("Big")
line = b"A" * 76 + b"\r\n"
# Below the one-request bound (2 MiB, graph/send.rs MAX_DIRECT_MIME): a
# single-part message has no attachment to split off.
count, size = 50, 2_000_000
for i in range(count):
    head = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: big %d\r\n\r\n" % i
    typ, answer = M.append("Big", None, None, head + line * (size // len(line)))
    assert typ == "OK", answer
M.select("Big")
# The first FETCH brings the bodies from Graph into the cache.
typ, data = M.fetch("1:*", "(BODY.PEEK[])")
assert typ == "OK", data
data = None
# The second is served from the cache: its peak is the FETCH's own.
open("/proc/%s/clear_refs" % pid, "w").write("5")
before, _ = memory()
typ, data = M.fetch("1:*", "(BODY.PEEK[])")
assert typ == "OK", typ
bodies = [d[1] for d in data if isinstance(d, tuple)]
total = sum(len(b) for b in bodies)
assert len(bodies) == count and total > count * (size - 100), (len(bodies), total)
after, peak = memory()
print("FETCH of %d bodies, %d bytes: RSS %d KiB before, peak %d KiB (+%d KiB)"
      % (count, total, before, peak, peak - before))
assert (peak - before) * 1024 < total / 2, "peak +%d KiB for a %d-byte answer" % (peak - before, total)
M.logout()
"#;
    support::py_with(script, &[&port(&d.imap), &d.proc.0.id().to_string()]);
}
