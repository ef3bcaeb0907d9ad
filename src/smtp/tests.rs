//! Session transcripts, in memory: bytes in, replies and actions out.

use super::session::*;
use crate::secret::Secret;

fn alice() -> Authenticated {
    Authenticated {
        login: "alice@example.com".into(),
        allowed_senders: vec!["alice@example.com".into(), "alias@example.com".into()],
    }
}

/// Replies as text, other actions by name.
fn show(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Reply(bytes) => String::from_utf8_lossy(bytes).trim_end().to_string(),
            Action::Authenticate { login, password } => {
                format!("AUTHENTICATE {login} {}", password.expose())
            }
            Action::MessageStart(e) => format!("START {} {:?}", e.mail_from, e.rcpt_to),
            Action::MessageData(d) => format!("DATA {:?}", String::from_utf8_lossy(d)),
            Action::MessageEnd(e) => format!("END {} {:?}", e.mail_from, e.rcpt_to),
            Action::MessageAbort => "ABORT".into(),
            Action::StartTls => "STARTTLS".into(),
            Action::Close => "CLOSE".into(),
        })
        .collect()
}

fn codes(actions: &[Action]) -> Vec<String> {
    show(actions)
        .into_iter()
        .map(|s| s.chars().take(3).collect())
        .collect()
}

fn session(config: SessionConfig) -> Session {
    let mut s = Session::new(config);
    let greeting = s.greeting();
    assert!(matches!(greeting, Action::Reply(ref b) if b.starts_with(b"220 ")));
    s
}

fn authed() -> Session {
    let mut s = session(SessionConfig::default());
    s.ingest(b"EHLO client\r\n");
    let out = s.ingest(b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl\r\n");
    assert_eq!(show(&out), ["AUTHENTICATE alice@example.com alice"]);
    let out = s.auth_result(Some(alice()));
    assert_eq!(codes(&out), ["235"]);
    s
}

#[test]
fn ehlo_advertises_the_extensions() {
    let mut s = session(SessionConfig {
        tls_available: true,
        plaintext_auth_allowed: false,
        max_message_size: 1000,
        ..SessionConfig::default()
    });
    let out = show(&s.ingest(b"EHLO client.example\r\n"));
    let text = &out[0];
    for ext in [
        "250-PIPELINING",
        "250-SIZE 1000",
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250-ENHANCEDSTATUSCODES",
        "250-STARTTLS",
        "250 HELP",
    ] {
        assert!(text.contains(ext), "{ext} missing in {text}");
    }
    // No AUTH before TLS when plaintext AUTH is not allowed.
    assert!(!text.contains("AUTH"), "{text}");
    let out = s.ingest(b"AUTH PLAIN AGEAYg==\r\n");
    assert!(
        show(&out)[0].starts_with("530 5.7.0 Must issue a STARTTLS command first"),
        "{out:?}"
    );
    // STARTTLS; pipelined plaintext after it is discarded.
    let out = s.ingest(b"STARTTLS\r\nMAIL FROM:<evil@example.com>\r\n");
    assert_eq!(show(&out), ["220 2.0.0 Ready to start TLS", "STARTTLS"]);
    assert!(s.ingest(b"RSET\r\n").is_empty());
    assert!(s.tls_started().is_empty());
    let out = show(&s.ingest(b"EHLO client.example\r\n"));
    assert!(
        out[0].contains("AUTH PLAIN LOGIN") && !out[0].contains("STARTTLS"),
        "{}",
        out[0]
    );
}

#[test]
fn no_authentication_no_mail() {
    let mut s = session(SessionConfig::default());
    let out = s.ingest(b"MAIL FROM:<a@example.com>\r\n");
    assert_eq!(codes(&out), ["503"]);
    s.ingest(b"EHLO x\r\n");
    let out = show(&s.ingest(b"MAIL FROM:<alice@example.com>\r\n"));
    assert!(
        out[0].starts_with("530 5.7.0 Authentication required"),
        "{out:?}"
    );
    let out = s.ingest(b"RCPT TO:<b@example.com>\r\n");
    assert_eq!(codes(&out), ["503"]);
}

#[test]
fn wrong_password_is_535_and_login_mechanism_works() {
    let mut s = session(SessionConfig::default());
    s.ingest(b"EHLO x\r\n");
    let out = show(&s.ingest(b"AUTH LOGIN\r\n"));
    assert_eq!(out, ["334 VXNlcm5hbWU6"]);
    let out = show(&s.ingest(b"YWxpY2VAZXhhbXBsZS5jb20=\r\n"));
    assert_eq!(out, ["334 UGFzc3dvcmQ6"]);
    let out = show(&s.ingest(b"d3Jvbmc=\r\n"));
    assert_eq!(out, ["AUTHENTICATE alice@example.com wrong"]);
    let out = s.auth_result(None);
    assert_eq!(codes(&out), ["535"]);
    // Cancelling an exchange.
    s.ingest(b"AUTH LOGIN\r\n");
    let out = show(&s.ingest(b"*\r\n"));
    assert!(out[0].starts_with("501"), "{out:?}");
    // LOGIN with an initial response, then success.
    let out = show(&s.ingest(b"AUTH LOGIN YWxpY2VAZXhhbXBsZS5jb20=\r\n"));
    assert_eq!(out, ["334 UGFzc3dvcmQ6"]);
    s.ingest(b"YWxpY2U=\r\n");
    assert_eq!(codes(&s.auth_result(Some(alice()))), ["235"]);
    assert_eq!(codes(&s.ingest(b"AUTH PLAIN\r\n")), ["503"]);
    // Unknown mechanisms.
    let mut s = session(SessionConfig::default());
    s.ingest(b"EHLO x\r\n");
    assert_eq!(codes(&s.ingest(b"AUTH CRAM-MD5\r\n")), ["504"]);
}

#[test]
fn plain_with_a_continuation_line_and_garbage() {
    let mut s = session(SessionConfig::default());
    s.ingest(b"EHLO x\r\n");
    assert_eq!(show(&s.ingest(b"AUTH PLAIN\r\n")), ["334"]);
    assert_eq!(codes(&s.ingest(b"!!notbase64\r\n")), ["501"]);
    s.ingest(b"AUTH PLAIN\r\n");
    // "a\0b" has only two fields.
    assert_eq!(codes(&s.ingest(b"YQBi\r\n")), ["501"]);
    s.ingest(b"AUTH PLAIN\r\n");
    // authzid differs from authcid.
    assert_eq!(codes(&s.ingest(b"eABhAGI=\r\n")), ["535"]);
}

#[test]
fn a_whole_message_with_dot_unstuffing_and_bare_lf() {
    let mut s = authed();
    let out = show(&s.ingest(
        b"MAIL FROM:<alice@example.com> BODY=8BITMIME SIZE=100\r\nRCPT TO:<bob@example.com>\r\nRCPT TO:<BOB@example.com>\r\nRCPT TO:<carol@example.net>\r\nDATA\r\n",
    ));
    assert_eq!(
        out,
        [
            "250 2.1.0 Sender OK",
            "250 2.1.5 Recipient OK",
            "250 2.1.5 Recipient OK",
            "250 2.1.5 Recipient OK",
            "START alice@example.com [\"bob@example.com\", \"carol@example.net\"]",
            "354 End data with <CR><LF>.<CR><LF>",
        ]
    );
    let mut actions = s.ingest(b"Subject: hi\r\n\r\n..leading dot\nbare lf\r\n.");
    actions.extend(s.ingest(b"\r\nQUIT\r\n"));
    let out = show(&actions);
    assert_eq!(
        out,
        [
            "DATA \"Subject: hi\\r\\n\\r\\n.leading dot\\r\\nbare lf\\r\\n\"",
            "END alice@example.com [\"bob@example.com\", \"carol@example.net\"]",
        ]
    );
    // QUIT was held until the submission's outcome.
    let out = show(&s.submit_result(SubmitOutcome::Accepted {
        queue_id: "Q1".into(),
    }));
    assert_eq!(
        out,
        ["250 2.0.0 OK: queued as Q1", "221 2.0.0 Bye", "CLOSE"]
    );
    assert!(s.is_closed());
}

#[test]
fn a_leading_dot_on_the_first_line_and_an_empty_message() {
    let mut s = authed();
    s.ingest(b"MAIL FROM:<>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
    let out = show(&s.ingest(b"..x\r\n.\r\n"));
    assert_eq!(out[0], "DATA \".x\\r\\n\"");
    s.submit_result(SubmitOutcome::Accepted {
        queue_id: "1".into(),
    });
    s.ingest(b"MAIL FROM:<>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
    let out = show(&s.ingest(b".\r\n"));
    assert_eq!(out, ["END  [\"b@example.com\"]"]);
}

#[test]
fn null_sender_is_accepted_and_foreign_senders_are_refused() {
    let mut s = authed();
    assert_eq!(codes(&s.ingest(b"MAIL FROM:<>\r\n")), ["250"]);
    assert_eq!(codes(&s.ingest(b"MAIL FROM:<>\r\n")), ["503"]);
    s.ingest(b"RSET\r\n");
    assert_eq!(
        codes(&s.ingest(b"MAIL FROM:<Alias@Example.com>\r\n")),
        ["250"]
    );
    s.ingest(b"RSET\r\n");
    let out = show(&s.ingest(b"MAIL FROM:<bob@example.com>\r\n"));
    assert!(
        out[0].starts_with("550 5.7.1 alice@example.com may not send as bob@example.com"),
        "{out:?}"
    );
    assert!(out[0].contains("Send As"), "{out:?}");
}

#[test]
fn size_limits() {
    let mut s = Session::new(SessionConfig {
        max_message_size: 10,
        ..SessionConfig::default()
    });
    s.greeting();
    s.ingest(b"EHLO x\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl\r\n");
    s.auth_result(Some(alice()));
    let out = show(&s.ingest(b"MAIL FROM:<alice@example.com> SIZE=11\r\n"));
    assert!(out[0].starts_with("552 5.3.4"), "{out:?}");
    s.ingest(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
    let out = show(&s.ingest(b"0123456789abcdef\r\n.\r\n"));
    assert_eq!(out[0], "ABORT");
    assert!(out[1].starts_with("552 5.3.4"), "{out:?}");
    // The session goes on, with the transaction reset.
    assert_eq!(codes(&s.ingest(b"RCPT TO:<b@example.com>\r\n")), ["503"]);
}

#[test]
fn recipient_limit_and_order_errors() {
    let mut s = Session::new(SessionConfig {
        max_recipients: 2,
        ..SessionConfig::default()
    });
    s.greeting();
    s.ingest(b"EHLO x\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl\r\n");
    s.auth_result(Some(alice()));
    assert_eq!(codes(&s.ingest(b"DATA\r\n")), ["503"]);
    s.ingest(b"MAIL FROM:<alice@example.com>\r\n");
    assert_eq!(codes(&s.ingest(b"DATA\r\n")), ["554"]);
    let out = codes(&s.ingest(
        b"RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\n",
    ));
    assert_eq!(out, ["250", "250", "452"]);
    assert_eq!(codes(&s.ingest(b"RCPT TO:<nodomain>\r\n")), ["501"]);
}

#[test]
fn other_commands() {
    let mut s = session(SessionConfig::default());
    let out = codes(&s.ingest(
        b"HELO x\r\nNOOP\r\nVRFY bob\r\nHELP\r\nEXPN list\r\nBDAT 10 LAST\r\nFOO\r\nRSET\r\n",
    ));
    assert_eq!(
        out,
        ["250", "250", "252", "214", "502", "502", "500", "250"]
    );
    assert_eq!(codes(&s.ingest(b"STARTTLS\r\n")), ["454"]);
}

#[test]
fn endless_lines_and_error_floods_close_the_connection() {
    let mut s = session(SessionConfig {
        max_errors: 3,
        ..SessionConfig::default()
    });
    let long = vec![b'A'; 10_000];
    let out = codes(&s.ingest(&long));
    assert_eq!(out, ["500"]);
    let out = show(&s.ingest(b"BAD\r\nBAD\r\nBAD\r\n"));
    assert!(out.last().is_some_and(|l| l == "CLOSE"), "{out:?}");
    assert!(s.is_closed());
    assert!(s.ingest(b"NOOP\r\n").is_empty());
}

#[test]
fn large_data_is_streamed_in_chunks() {
    let mut s = authed();
    s.ingest(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
    let line = b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
    let mut total = 0;
    let mut chunks = 0;
    for _ in 0..5_000 {
        for a in s.ingest(line) {
            if let Action::MessageData(d) = a {
                assert!(d.len() < 200 * 1024);
                total += d.len();
                chunks += 1;
            }
        }
    }
    for a in s.ingest(b".\r\n") {
        if let Action::MessageData(d) = a {
            total += d.len();
            chunks += 1;
        }
    }
    assert_eq!(total, line.len() * 5_000);
    assert!(chunks > 1);
}

#[test]
fn secrets_do_not_print() {
    let action = Action::Authenticate {
        login: "a".into(),
        password: Secret::new("hunter2".into()),
    };
    assert!(!format!("{action:?}").contains("hunter2"));
}

/// A gate that says the account is OFFLINE for this reason.
struct Offline(&'static str);

impl AccountGate for Offline {
    fn offline(&self, _login: &str) -> Option<String> {
        Some(self.0.to_string())
    }
}

#[test]
fn an_offline_account_gets_451_at_mail_from_without_an_error_count() {
    let mut s = session(SessionConfig {
        max_errors: 2,
        ..SessionConfig::default()
    })
    .with_gate(std::sync::Arc::new(Offline(
        "AADSTS50173: the grant was revoked",
    )));
    s.ingest(b"EHLO client\r\n");
    s.ingest(b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl\r\n");
    s.auth_result(Some(alice()));
    for _ in 0..3 {
        let out = show(&s.ingest(b"MAIL FROM:<alice@example.com>\r\n"));
        assert!(
            out[0].starts_with("451 4.7.0 alice@example.com is signed out"),
            "{out:?}"
        );
        assert!(
            out[0].contains("`graphgate login alice@example.com`"),
            "{out:?}"
        );
        assert!(
            out[0].ends_with("Reason: AADSTS50173: the grant was revoked"),
            "{out:?}"
        );
    }
    let out = show(&s.ingest(b"RCPT TO:<bob@example.com>\r\n"));
    assert!(out[0].starts_with("503"), "no transaction began: {out:?}");
    assert!(
        !s.is_closed(),
        "a 451 for the account is not the client's error"
    );
}

#[test]
fn non_ascii_envelope_addresses_need_smtputf8() {
    let mut s = authed();
    let out = show(
        &s.ingest("MAIL FROM:<alice@example.com>\r\nRCPT TO:<andré@example.com>\r\n".as_bytes()),
    );
    assert!(out[0].starts_with("250"), "{out:?}");
    assert!(
        out[1].starts_with("553 5.6.7 The recipient address andr?@example.com is not ASCII"),
        "{out:?}"
    );
    let out = show(&s.ingest(b"RCPT TO:<andr\xe9@example.com>\r\n"));
    assert!(out[0].starts_with("553 5.6.7"), "{out:?}");
    s.ingest(b"RSET\r\n");
    let out = show(&s.ingest(
        "MAIL FROM:<alice@example.com> SMTPUTF8\r\nRCPT TO:<andré@example.com>\r\n".as_bytes(),
    ));
    assert_eq!(codes_of(&out), ["250", "250"], "{out:?}");
    let out = show(&s.ingest(b"RCPT TO:<andr\xe9@example.com>\r\n"));
    assert!(
        out[0].starts_with("553 5.6.7") && out[0].contains("not valid UTF-8"),
        "{out:?}"
    );
}

fn codes_of(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| l.chars().take(3).collect()).collect()
}
