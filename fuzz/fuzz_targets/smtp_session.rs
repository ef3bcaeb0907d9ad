//! Drives an SMTP session with arbitrary client bytes, cut into arbitrary
//! chunks, answering every request of the session (password checks succeed
//! or fail, submissions are accepted or refused, TLS "starts"). Nothing may
//! panic, and the session's buffers stay bounded.
#![no_main]

use graphgate::smtp::{Action, Authenticated, Session, SessionConfig, SubmitOutcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let mut session = Session::new(SessionConfig {
        max_message_size: 4096,
        max_recipients: 8,
        tls_available: control & 1 != 0,
        plaintext_auth_allowed: control & 2 != 0,
        ..SessionConfig::default()
    });
    let _ = session.greeting();
    let chunk = usize::from(control >> 2).max(1);
    let mut round = 0usize;
    for piece in input.chunks(chunk) {
        let mut actions = session.ingest(piece);
        while !actions.is_empty() {
            let mut next = Vec::new();
            for action in actions {
                round += 1;
                match action {
                    Action::Authenticate { login, .. } => {
                        let account = (round % 2 == 0).then(|| Authenticated {
                            login,
                            allowed_senders: vec!["a@example.com".into()],
                        });
                        next.extend(session.auth_result(account));
                    }
                    Action::MessageData(bytes) => assert!(bytes.len() <= 4096 + 256 * 1024),
                    Action::MessageEnd(_) => {
                        let outcome = if round % 3 == 0 {
                            SubmitOutcome::Rejected {
                                code: 554,
                                enhanced: "5.7.1".into(),
                                text: "no".into(),
                            }
                        } else {
                            SubmitOutcome::Accepted {
                                queue_id: "1".into(),
                            }
                        };
                        next.extend(session.submit_result(outcome));
                    }
                    Action::StartTls => next.extend(session.tls_started()),
                    Action::Reply(bytes) => assert!(bytes.ends_with(b"\r\n")),
                    _ => {}
                }
            }
            actions = next;
        }
        if session.is_closed() {
            break;
        }
    }
});
