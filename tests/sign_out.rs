//! Sign-out that holds on a running gateway (issue 18): `graphgate logout`
//! and `graphgate accounts remove`, run as separate processes against a
//! running `graphgate demo`, reach it within seconds: IMAP LOGIN answers
//! `NO [UNAVAILABLE]` naming `graphgate login` (RFC 5530: not a password
//! failure, so clients do not ask for a new one) instead of opening the
//! mailbox with the tokens the gateway held, SMTP answers 451 4.7.0 with
//! the same fix, and a removed account can no longer log in at all.
//! Each is polled with a 5-second deadline (no sleeps in the assertion).

use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use support::{BIN, demo};

/// Sign-out must be effective within this time.
const WITHIN: Duration = Duration::from_secs(5);

/// IMAP LOGIN (Python's imaplib) then SELECT INBOX: "OK" or the refusal.
fn imap_login(imap: &str, user: &str, password: &str) -> String {
    let (host, port) = imap.rsplit_once(':').unwrap();
    let script = r#"
import imaplib, sys
i = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
try:
    i.login(sys.argv[3], sys.argv[4])
    typ, _ = i.select("INBOX")
    print(typ)
    i.logout()
except imaplib.IMAP4.error as e:
    print("NO", e)
"#;
    let out = Command::new(support::python())
        .args(["-c", script, host, port, user, password])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// SMTP AUTH then MAIL FROM (smtplib): the first reply that is not a
/// success, as "code text", or "250".
fn smtp_mail(smtp: &str, user: &str, password: &str) -> String {
    let (host, port) = smtp.rsplit_once(':').unwrap();
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30)
try:
    s.login(sys.argv[3], sys.argv[4])
except smtplib.SMTPAuthenticationError as e:
    print(e.smtp_code, e.smtp_error.decode()); sys.exit(0)
code, text = s.mail(sys.argv[3])
print(code, text.decode().replace("\n", " ") if code != 250 else "")
s.quit()
"#;
    let out = Command::new(support::python())
        .args(["-c", script, host, port, user, password])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn cli(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Poll `probe` until `done` holds for its answer, at most [`WITHIN`].
fn within_deadline(what: &str, probe: impl Fn() -> String, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WITHIN;
    loop {
        let answer = probe();
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {answer:?} after {WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn logout_and_remove_reach_a_running_gateway_within_seconds() {
    let d = demo();
    // Both accounts work, and the gateway holds their tokens open.
    assert_eq!(imap_login(&d.imap, "alice@example.com", "alice"), "OK");
    assert_eq!(imap_login(&d.imap, "bob@example.com", "bob"), "OK");
    assert_eq!(smtp_mail(&d.smtp, "alice@example.com", "alice"), "250");

    cli(d.dir.path(), &["logout", "alice@example.com"]);
    let imap = within_deadline(
        "IMAP LOGIN after logout",
        || imap_login(&d.imap, "alice@example.com", "alice"),
        |a| a != "OK",
    );
    assert!(imap.contains("[UNAVAILABLE]"), "{imap}");
    assert!(imap.contains("graphgate login alice@example.com"), "{imap}");
    let smtp = within_deadline(
        "SMTP after logout",
        || smtp_mail(&d.smtp, "alice@example.com", "alice"),
        |a| a != "250",
    );
    assert!(smtp.starts_with("451 4.7.0"), "{smtp}");
    assert!(smtp.contains("graphgate login alice@example.com"), "{smtp}");

    cli(d.dir.path(), &["accounts", "remove", "bob@example.com"]);
    let imap = within_deadline(
        "IMAP LOGIN after accounts remove",
        || imap_login(&d.imap, "bob@example.com", "bob"),
        |a| a != "OK",
    );
    assert!(imap.contains("[AUTHENTICATIONFAILED]"), "{imap}");
    let smtp = smtp_mail(&d.smtp, "bob@example.com", "bob");
    assert!(smtp.starts_with("535"), "{smtp}");
}

/// With `smtp.queue_while_signed_out` (issue 18), a signed-out account's
/// mail is taken into the spool, and both the MAIL FROM and the DATA
/// replies say it waits for `graphgate login`; the sign-in then sends it.
#[test]
fn queue_while_signed_out_accepts_and_says_so_then_login_sends_it() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let d = support::demo_env(&[("GRAPHGATE_SMTP_QUEUE_WHILE_SIGNED_OUT", "true")]);
    cli(d.dir.path(), &["logout", "alice@example.com"]);
    let (host, port) = d.smtp.rsplit_once(':').unwrap();
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=60)
s.login("alice@example.com", "alice")
code, text = s.mail("alice@example.com")
print(code, text.decode().replace("\n", " "))
code, text = s.rcpt("bob@example.com")
assert code == 250, (code, text)
code, text = s.data("From: alice@example.com\r\nTo: bob@example.com\r\nSubject: waits\r\n\r\nx\r\n")
print(code, text.decode().replace("\n", " "))
s.quit()
"#;
    let out = Command::new(support::python())
        .args(["-c", script, host, port])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let mail = lines.next().unwrap();
    assert!(mail.starts_with("250 2.1.0 Sender OK;"), "{mail}");
    assert!(
        mail.contains("will wait in the queue until `graphgate login alice@example.com`"),
        "{mail}"
    );
    let data = lines.next().unwrap();
    assert!(data.starts_with("250 2.0.0 OK: queued as"), "{data}");
    assert!(data.contains("graphgate login alice@example.com"), "{data}");

    let state = || {
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(d.dir.path())
            .args(["queue", "list", "--all", "--json"])
            .output()
            .unwrap();
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        list[0]["state"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(state(), "queued");

    // Sign alice in again (device code, approved at the simulator).
    let mut login = Command::new(BIN)
        .args(["login", "alice@example.com", "--data-dir"])
        .arg(d.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(login.stdout.take().unwrap());
    let code = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "no device code");
        if let Some(code) = line.trim().strip_prefix("Code: ") {
            break code.to_string();
        }
    };
    let approve = Command::new("curl")
        .args([
            "-sf",
            "--noproxy",
            "*",
            "-H",
            "content-type: application/json",
        ])
        .arg("-d")
        .arg(format!(
            r#"{{"user_code": "{code}", "user": "alice@example.com", "approve": true}}"#
        ))
        .arg(format!("{}/_sim/devicelogin", d.sim))
        .output()
        .unwrap();
    assert!(approve.status.success(), "{approve:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert!(login.wait().unwrap().success(), "{rest}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while state() != "delivered" {
        assert!(Instant::now() < deadline, "never sent after login");
        std::thread::sleep(Duration::from_millis(100));
    }
}
