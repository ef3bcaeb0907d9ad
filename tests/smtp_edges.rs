//! SMTP cases beside the client matrix of `smtp_clients.rs`: plaintext
//! AUTH refused from another host but allowed on loopback, Debian's
//! mutt sending in batch mode, header fields that would let a message
//! say another sender or other recipients than graphgate checked, and
//! envelope addresses that are not ASCII without SMTPUTF8.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

use support::{Demo, demo, demo_on};

impl Demo {
    async fn token(&self, upn: &str) -> String {
        support::token(&self.sim, upn).await
    }
}

fn tool(name: &str) -> bool {
    let found = Command::new("which")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "{name} is missing on CI: scripts/test installs it"
        );
        eprintln!("skipped: {name} is not installed here (scripts/test installs it)");
    }
    found
}

/// A raw SMTP dialogue for the refusals.
struct Raw {
    read: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: &str) -> Raw {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut raw = Raw {
            read: tokio::io::BufReader::new(read),
            write,
        };
        raw.reply().await;
        raw
    }

    async fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            self.read.read_line(&mut line).await.unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.cmd_bytes(line.as_bytes()).await
    }

    /// A command line of any bytes (CRLF added).
    async fn cmd_bytes(&mut self, line: &[u8]) -> String {
        self.write.write_all(line).await.unwrap();
        self.write.write_all(b"\r\n").await.unwrap();
        self.reply().await
    }

    /// Every line of a (multi-line) reply.
    async fn lines(&mut self, line: &str) -> Vec<String> {
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            self.read.read_line(&mut line).await.unwrap();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.trim_end().to_string());
            if last {
                return lines;
            }
        }
    }
}

/// The first non-loopback IPv4 address of this machine, if any.
fn outside_address() -> Option<std::net::IpAddr> {
    // Routing to a documentation address picks the outward interface
    // without sending anything.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.254:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn plaintext_auth_from_another_host_is_refused() {
    let Some(ip) = outside_address() else {
        eprintln!("skipped: this machine has no non-loopback address to connect from");
        return;
    };
    let d = demo_on("0.0.0.0:0");
    let port = d.smtp.rsplit_once(':').unwrap().1;
    let mut c = Raw::connect(&format!("{ip}:{port}")).await;
    let ehlo = c.cmd("EHLO outside").await;
    assert!(ehlo.starts_with("250"), "{ehlo}");
    let r = c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl").await;
    // RFC 3207 §4's words.
    assert!(
        r.starts_with("530 5.7.0 Must issue a STARTTLS command first"),
        "{r}"
    );
    // From loopback the same listener allows it.
    let mut local = Raw::connect(&format!("127.0.0.1:{port}")).await;
    local.cmd("EHLO local").await;
    let r = local
        .cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl")
        .await;
    assert!(r.starts_with("235"), "{r}");
}

#[tokio::test]
async fn mutt_sends_in_batch_mode() {
    let d = demo();
    if !tool("mutt") {
        return;
    }
    let home = d.dir.path().join("mutt-home");
    std::fs::create_dir_all(&home).unwrap();
    let rc = home.join("muttrc");
    std::fs::write(
        &rc,
        format!(
            "set smtp_url=\"smtp://alice@example.com@{smtp}/\"\nset smtp_pass=\"alice\"\n\
             set ssl_starttls=no\nset ssl_force_tls=no\nset from=\"alice@example.com\"\n\
             set use_from=yes\nset record=\"\"\nset hostname=\"example.com\"\n",
            smtp = d.smtp
        ),
    )
    .unwrap();
    let mut child = Command::new("mutt")
        .args(["-F"])
        .arg(&rc)
        .args(["-s", "sent by mutt", "--", "bob@example.com"])
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"Hello from mutt in batch mode\n",
    )
    .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // mutt makes its own Message-ID; find the message by subject.
    let token = d.token("bob@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page: Value = reqwest::Client::new()
            .get(format!(
                "{}/v1.0/me/mailFolders/inbox/messages?$select=subject&$top=50",
                d.sim
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if page["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["subject"] == "sent by mutt")
        {
            break;
        }
        assert!(Instant::now() < deadline, "mutt's message never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Password checks leave no memory behind and only so many run at once:
/// each Argon2id verification takes 19 MiB. (Was: glibc kept every freed
/// block, so each login — right or wrong — left 19 MiB resident, up to
/// about 700 MB, and every simultaneous login added 19 MiB to the peak.)
#[tokio::test(flavor = "multi_thread")]
async fn password_checks_leave_no_memory_behind() {
    const MIB: u64 = 1024;
    let d = demo();
    let pid = d.proc.0.id();
    let kb = |field: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    };
    let login = |addr: String| async move {
        let mut c = Raw::connect(&addr).await;
        c.cmd("EHLO memory").await;
        let r = c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl").await;
        assert!(r.starts_with("235"), "{r}");
    };
    login(d.smtp.clone()).await;
    let settled = kb("VmRSS:");
    for _ in 0..2 {
        let burst: Vec<_> = (0..16)
            .map(|_| tokio::spawn(login(d.smtp.clone())))
            .collect();
        for task in burst {
            task.await.unwrap();
        }
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let (rss, peak) = (kb("VmRSS:"), kb("VmHWM:"));
    assert!(
        rss < settled + 20 * MIB,
        "32 logins left {} kB resident",
        rss - settled
    );
    assert!(
        peak < settled + (cores + 1) * 20 * MIB,
        "16 logins at once peaked at {} kB above the settled {settled} kB ({cores} cores)",
        peak.saturating_sub(settled)
    );
}

/// The subjects in `upn`'s folder `folder` (a well-known name).
async fn subjects(d: &Demo, upn: &str, folder: &str) -> Vec<String> {
    let token = d.token(upn).await;
    let page: Value = reqwest::Client::new()
        .get(format!(
            "{}/v1.0/me/mailFolders/{folder}/messages?$select=subject&$top=100",
            d.sim
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["value"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {page}"))
        .iter()
        .filter_map(|m| m["subject"].as_str().map(str::to_string))
        .collect()
}

/// Issue 22, item 3: a message naming two senders or two recipient lists
/// (RFC 5322 §3.6 allows one From, Sender, To, Cc, Bcc, Subject, Date and
/// Message-ID) is refused with a 554 naming the repeated header, and a
/// Sender the account may not use is refused like such a From. Was: two
/// From headers, bob's first, passed as alice's (the check read the last
/// one) and Graph sent the message as from bob. Sent with Python's
/// smtplib; the one well-formed message is delivered.
#[tokio::test]
async fn repeated_from_or_to_and_a_foreign_sender_are_refused() {
    let d = demo();
    let (host, port) = d.smtp.rsplit_once(':').unwrap();
    let script = r#"
import smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
messages = {
    "two-from": "From: bob@example.com\r\nFrom: alice@example.com\r\nTo: bob@example.com\r\nSubject: spoof two from\r\n\r\nhi\r\n",
    "two-to": "From: alice@example.com\r\nTo: bob@example.com\r\nTo: bob@example.com\r\nSubject: spoof two to\r\n\r\nhi\r\n",
    "sender": "From: alice@example.com\r\nSender: bob@example.com\r\nTo: bob@example.com\r\nSubject: spoof sender\r\n\r\nhi\r\n",
    "single": "From: alice@example.com\r\nSender: alice@example.com\r\nTo: bob@example.com\r\nSubject: one of each\r\n\r\nhi\r\n",
}
s = smtplib.SMTP(host, port, timeout=60)
s.login("alice@example.com", "alice")
for name, msg in messages.items():
    try:
        s.sendmail("alice@example.com", ["bob@example.com"], msg)
        print(name, 250, "accepted")
    except smtplib.SMTPDataError as e:
        print(name, e.smtp_code, e.smtp_error.decode())
s.quit()
"#;
    let out = Command::new(support::python())
        .args(["-c", script, host, port])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .to_string()
    };
    let two_from = reply("two-from");
    assert!(two_from.starts_with("554 5.6.0"), "{two_from}");
    assert!(two_from.contains("more than one From header"), "{two_from}");
    let two_to = reply("two-to");
    assert!(two_to.starts_with("554 5.6.0"), "{two_to}");
    assert!(two_to.contains("more than one To header"), "{two_to}");
    let sender = reply("sender");
    assert!(sender.starts_with("550 5.7.1"), "{sender}");
    assert!(
        sender.contains("Sender header names bob@example.com"),
        "{sender}"
    );
    assert!(reply("single").starts_with("250"), "{stdout}");

    // The well-formed one arrives (and is in alice's Sent Items); none of
    // the refused ones was sent, then or later.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !subjects(&d, "bob@example.com", "inbox")
        .await
        .iter()
        .any(|s| s == "one of each")
    {
        assert!(Instant::now() < deadline, "the message never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let inbox = subjects(&d, "bob@example.com", "inbox").await;
    let sent = subjects(&d, "alice@example.com", "sentitems").await;
    assert!(sent.iter().any(|s| s == "one of each"), "{sent:?}");
    for spoof in ["spoof two from", "spoof two to", "spoof sender"] {
        assert!(!inbox.iter().any(|s| s == spoof), "{spoof}: {inbox:?}");
        assert!(!sent.iter().any(|s| s == spoof), "{spoof}: {sent:?}");
    }
}

/// Without SMTPUTF8 on MAIL FROM the envelope is ASCII (RFC 5321 §2.3.1,
/// §4.1.2; RFC 6531 §3.3): a raw 8-bit byte in RCPT TO is refused with
/// RFC 6531 §3.7.4.1's `553 5.6.7` and a sentence saying what to do. With
/// SMTPUTF8, which the server advertises, a UTF-8 address is taken. Was:
/// `250 2.1.5 Recipient OK` for the raw byte.
#[tokio::test]
async fn an_eight_bit_recipient_needs_smtputf8() {
    let d = demo();
    let mut c = Raw::connect(&d.smtp).await;
    let ehlo = c.lines("EHLO eight").await;
    assert!(ehlo.iter().any(|l| l == "250-SMTPUTF8"), "{ehlo:?}");
    let r = c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl").await;
    assert!(r.starts_with("235"), "{r}");
    assert!(
        c.cmd("MAIL FROM:<alice@example.com>")
            .await
            .starts_with("250")
    );
    // Latin-1 é, a raw byte that is not even UTF-8.
    let r = c.cmd_bytes(b"RCPT TO:<jos\xe9@example.com>").await;
    assert!(r.starts_with("553 5.6.7"), "{r}");
    assert!(r.contains("SMTPUTF8") && r.contains("ASCII"), "{r}");
    // The same in UTF-8, still without SMTPUTF8.
    let r = c.cmd("RCPT TO:<josé@example.com>").await;
    assert!(r.starts_with("553 5.6.7"), "{r}");
    let r = c.cmd("RCPT TO:<bob@example.com>").await;
    assert!(r.starts_with("250"), "ASCII recipients still work: {r}");
    assert!(c.cmd("RSET").await.starts_with("250"));

    let r = c.cmd("MAIL FROM:<alice@example.com> SMTPUTF8").await;
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd("RCPT TO:<josé@example.com>").await;
    assert!(r.starts_with("250"), "{r}");
    // SMTPUTF8 means UTF-8: the Latin-1 byte is still refused.
    let r = c.cmd_bytes(b"RCPT TO:<jos\xe9@example.com>").await;
    assert!(r.starts_with("553 5.6.7") && r.contains("UTF-8"), "{r}");
}
