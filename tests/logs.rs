//! Logs of a running gateway (`graphgate demo --log-format json
//! --trace-protocol`): one JSON object per line; one span per SMTP and
//! IMAP session and per spool message, so that one message can be
//! followed from the SMTP session that accepted it to Graph's 202; the
//! protocol trace shows the dialogue but no credential, and no token
//! appears anywhere.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;

use support::{Proc, banner, demo_command, field, py};

fn lines(path: &std::path::Path) -> Vec<Value> {
    let file = std::fs::File::open(path).unwrap();
    BufReader::new(file)
        .lines()
        .map(|l| l.unwrap())
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn message(v: &Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or_default()
}

fn in_span(v: &Value, name: &str, key: &str) -> Option<Value> {
    v["spans"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s[key].clone())
}

#[test]
fn json_logs_follow_a_message_and_never_show_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = demo_command(&dir.path().join("data"))
        .args(["--log-format", "json", "--trace-protocol"])
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let banner_lines = banner(&mut child, "control");
    let _demo = Proc(child);
    let smtp = field(&banner_lines, "SMTP ");
    let imap = field(&banner_lines, "IMAP ");
    let (host, port) = smtp.rsplit_once(':').unwrap();
    let (ihost, iport) = imap.rsplit_once(':').unwrap();

    // SMTP with AUTH PLAIN (smtplib sends the payload inline), IMAP with
    // LOGIN and with AUTHENTICATE PLAIN.
    py(&format!(
        "import smtplib\n\
         s = smtplib.SMTP('{host}', {port})\n\
         s.login('alice@example.com', 'alice')\n\
         s.sendmail('alice@example.com', ['bob@example.com'], \
         'From: alice@example.com\\r\\nTo: bob@example.com\\r\\nSubject: traced\\r\\n\\r\\nsecret body\\r\\n')\n\
         s.quit()\n\
         import imaplib\n\
         c = imaplib.IMAP4('{ihost}', {iport})\n\
         c.login('alice@example.com', 'alice')\n\
         c.select('INBOX')\n\
         c.logout()\n\
         c = imaplib.IMAP4('{ihost}', {iport})\n\
         c.authenticate('PLAIN', lambda _: b'\\0bob@example.com\\0bob')\n\
         c.logout()\n"
    ));

    // Wait for the delivery line.
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = loop {
        let all = lines(&log);
        if all
            .iter()
            .any(|v| message(v).contains("message delivered to Microsoft Graph"))
        {
            break all;
        }
        assert!(Instant::now() < deadline, "no delivery logged");
        std::thread::sleep(Duration::from_millis(100));
    };

    // Follow the message: the SMTP session that accepted it logged its
    // queue id; the delivery line carries the same id in its spool span.
    let accepted = all
        .iter()
        .find(|v| message(v) == "message accepted into the spool")
        .expect("an acceptance line");
    let queue_id = accepted["fields"]["queue_id"].clone();
    let session = in_span(accepted, "smtp", "session").expect("inside the SMTP session's span");
    let delivered = all
        .iter()
        .find(|v| message(v).contains("message delivered to Microsoft Graph"))
        .unwrap();
    assert_eq!(
        in_span(delivered, "spool", "queue_id"),
        Some(queue_id.clone()),
        "{delivered}"
    );
    assert_eq!(
        in_span(delivered, "smtp", "session"),
        Some(session),
        "{delivered}"
    );
    // The line says to whom, from whom and which Message-ID (issue 18).
    let fields = &delivered["fields"];
    assert_eq!(fields["recipients"], "bob@example.com", "{delivered}");
    assert_eq!(fields["from"], "alice@example.com", "{delivered}");
    assert!(
        fields["message_id"]
            .as_str()
            .is_some_and(|id| id.ends_with(".graphgate@example.com")),
        "{delivered}"
    );

    // The protocol trace: the dialogue is there, credentials are not.
    let wire: Vec<&str> = all
        .iter()
        .filter(|v| v["target"] == "graphgate::wire")
        .map(message)
        .collect();
    assert!(
        wire.iter()
            .any(|l| l.starts_with("C: MAIL FROM:<alice@example.com>")),
        "{wire:#?}"
    );
    assert!(wire.iter().any(|l| l.starts_with("S: 250")), "{wire:#?}");
    assert!(
        wire.iter()
            .any(|l| l.contains("AUTH") && l.contains("[credentials redacted]")),
        "{wire:#?}"
    );
    assert!(
        wire.iter()
            .any(|l| l.contains("LOGIN alice@example.com [credentials redacted]")),
        "{wire:#?}"
    );
    assert!(
        wire.iter()
            .any(|l| l.contains("AUTHENTICATE PLAIN") || l.contains("AUTHENTICATE \"PLAIN\"")),
        "{wire:#?}"
    );
    assert!(
        wire.iter()
            .any(|l| l.starts_with("S: ") && l.contains("OK")),
        "{wire:#?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    if std::env::var_os("SHOW_WIRE").is_some() {
        eprintln!("{wire:#?}");
    }
    for secret in [
        // AUTH PLAIN payloads of alice and bob, LOGIN's password, the
        // message body, and any JWT (access tokens start with eyJ).
        "AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl",
        "AGJvYkBleGFtcGxlLmNvbQBib2I=",
        "alice@example.com alice",
        "\"alice\"",
        "secret body",
        "eyJ",
    ] {
        assert!(!text.contains(secret), "{secret:?} in the log");
    }
    // Every session's lines are inside its span.
    assert!(
        all.iter()
            .filter(|v| v["target"] == "graphgate::wire")
            .all(|v| in_span(v, "smtp", "session").is_some()
                || in_span(v, "imap", "session").is_some()),
        "a protocol line outside a session span"
    );
}

/// A log reader that goes away (a closed stderr pipe) loses the lines,
/// not the gateway: it keeps serving.
#[test]
fn a_closed_stderr_does_not_stop_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = demo_command(&dir.path().join("data"))
        .args(["--log-level", "debug"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let lines = banner(&mut child, "control");
    let mut child = Proc(child);
    let smtp = field(&lines, "SMTP ");
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(&smtp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut greeting = String::new();
        r.read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("220"), "{greeting}");
        std::io::Write::write_all(&mut s, b"AUTH PLAIN AGJhZABiYWQ=\r\nQUIT\r\n").unwrap();
        let mut reply = String::new();
        r.read_line(&mut reply).unwrap();
        assert!(reply.starts_with("5"), "{reply}");
    }
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the gateway exited when its stderr closed"
    );
}
