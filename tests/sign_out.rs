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
