//! Sender policies and relay sessions, in memory: a relay session needs no
//! AUTH, keeps its account across STARTTLS, waits for STARTTLS when its
//! network requires it, and each policy answers MAIL FROM as documented.

use super::session::*;
use crate::config::SenderPolicy;

fn alice() -> Authenticated {
    Authenticated {
        login: "alice@contoso.com".into(),
        allowed_senders: vec!["alice@contoso.com".into(), "sales@contoso.com".into()],
    }
}

fn replies(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply(bytes) => Some(String::from_utf8_lossy(bytes).trim_end().to_string()),
            _ => None,
        })
        .collect()
}

fn relay(policy: SenderPolicy, require_tls: bool) -> Session {
    let mut s = Session::new(SessionConfig {
        tls_available: true,
        plaintext_auth_allowed: false,
        ..SessionConfig::default()
    })
    .with_relay(alice(), policy, require_tls);
    s.greeting();
    let ehlo = replies(&s.ingest(b"EHLO printer\r\n")).join("\n");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    s
}

fn mail_from(s: &mut Session, address: &str) -> String {
    let out = replies(&s.ingest(format!("MAIL FROM:<{address}>\r\n").as_bytes()));
    s.ingest(b"RSET\r\n");
    out.join("\n")
}

#[test]
fn rewrite_takes_any_sender_and_sends_as_the_mailbox() {
    let mut s = relay(SenderPolicy::Rewrite, false);
    assert!(mail_from(&mut s, "root@myhost.local").starts_with("250"));
    s.ingest(b"MAIL FROM:<alice+alerts@contoso.com>\r\nRCPT TO:<bob@contoso.com>\r\n");
    let out = s.ingest(b"DATA\r\n");
    let Some(Action::MessageStart(envelope)) = out.first() else {
        panic!("no message start: {out:?}");
    };
    assert_eq!(envelope.mail_from, "alice@contoso.com");
    let rewrite = envelope.rewrite.as_ref().unwrap();
    assert_eq!(rewrite.original, "alice+alerts@contoso.com");
    assert_eq!(rewrite.allowed[0], "alice@contoso.com");
}

#[test]
fn keep_and_reject_refuse_with_the_setting_that_helps() {
    let mut s = relay(SenderPolicy::Keep, false);
    assert!(mail_from(&mut s, "sales@contoso.com").starts_with("250"));
    assert!(
        mail_from(&mut s, "").starts_with("250"),
        "null sender unchanged"
    );
    // Outside the account's domains: no Send As advice, the policy fix.
    let out = mail_from(&mut s, "root@myhost.local");
    assert!(out.starts_with("550 5.7.1"), "{out}");
    assert!(out.contains("Send As cannot be granted"), "{out}");
    assert!(out.contains("sender_policy = \"rewrite\""), "{out}");
    // Inside them: Send As and an alias help.
    let out = mail_from(&mut s, "it@contoso.com");
    assert!(out.contains("Send As (or Send on Behalf)"), "{out}");

    let mut s = relay(SenderPolicy::Reject, false);
    assert!(mail_from(&mut s, "alice@contoso.com").starts_with("250"));
    let out = mail_from(&mut s, "sales@contoso.com");
    assert!(out.starts_with("550 5.7.1"), "{out}");
    assert!(out.contains("sender_policy = \"reject\""), "{out}");
}

#[test]
fn a_relay_session_needs_no_auth_and_keeps_its_account_across_starttls() {
    let mut s = relay(SenderPolicy::Rewrite, true);
    let out = replies(&s.ingest(b"AUTH PLAIN AGEAYg==\r\n")).join("\n");
    assert!(
        out.starts_with("503 5.5.1 No AUTH on the relay listener"),
        "{out}"
    );
    // require_tls: RFC 3207 §4's reply until STARTTLS.
    let out = mail_from(&mut s, "root@myhost.local");
    assert_eq!(
        out,
        "530 5.7.0 Must issue a STARTTLS command first (relay.networks require_tls = true \
         for this network)"
    );
    let out = s.ingest(b"STARTTLS\r\n");
    assert!(out.contains(&Action::StartTls));
    s.tls_started();
    s.ingest(b"EHLO printer\r\n");
    assert!(mail_from(&mut s, "root@myhost.local").starts_with("250"));
    assert!(s.is_relay());
}
