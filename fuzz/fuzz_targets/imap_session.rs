//! IMAP command bytes through the same framing graphgate uses (imap-next's
//! sans-I/O server core, with graphgate's literal and line limits) and the
//! session's pure parts: the command table in every state, sequence-set
//! membership, LIST pattern matching and modified UTF-7 names. No panic,
//! and what the server writes back stays bounded.
#![no_main]

use graphgate::imap::session::{Phase, allowed, in_set, list_match, local_name};
use graphgate::imap::utf7;
use imap_next::imap_types::command::CommandBody;
use imap_next::imap_types::mailbox::ListMailbox;
use imap_next::imap_types::response::{CommandContinuationRequest, Greeting, Status};
use imap_next::server::{Event, Options, Server};
use imap_next::{Interrupt, Io, State};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let mut options = Options::default();
    options.max_literal_size = 4096;
    options.max_command_size = 8192;
    options.crlf_relaxed = control & 1 != 0;
    let greeting = Greeting::ok(None, "fuzz").unwrap();
    let mut server = Server::new(options, greeting);
    let chunk = usize::from(control >> 1).max(1);
    let mut pieces = input.chunks(chunk);
    let mut written = 0usize;
    let phases = [
        Phase::NotAuthenticated,
        Phase::Authenticated,
        Phase::Selected,
        Phase::Logout,
    ];
    for _ in 0..10_000 {
        match server.next() {
            Err(Interrupt::Io(Io::NeedMoreInput)) => match pieces.next() {
                Some(p) => server.enqueue_input(p),
                None => break,
            },
            Err(Interrupt::Io(Io::Output(out))) => {
                written += out.len();
                assert!(written < 64 * 1024 * 1024);
            }
            Err(Interrupt::Error(_)) => {}
            Ok(Event::CommandReceived { command }) => {
                let name = command.body.name().to_ascii_uppercase();
                for phase in phases {
                    let _ = allowed(&name, phase);
                }
                match &command.body {
                    CommandBody::Fetch { sequence_set, .. }
                    | CommandBody::Store { sequence_set, .. }
                    | CommandBody::Copy { sequence_set, .. }
                    | CommandBody::Move { sequence_set, .. } => {
                        for v in [1, 2, 7, u32::MAX] {
                            let _ = in_set(sequence_set, v, 9);
                        }
                    }
                    CommandBody::List {
                        reference,
                        mailbox_wildcard,
                    } => {
                        let r = local_name(reference);
                        let p = match mailbox_wildcard {
                            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).to_string(),
                            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).to_string(),
                        };
                        let pattern: String = format!("{r}{p}").chars().take(64).collect();
                        for name in ["INBOX", "Sent Items", "a/b/c", ""] {
                            let _ = list_match(&pattern, name);
                        }
                    }
                    CommandBody::Select { mailbox, .. } | CommandBody::Create { mailbox } => {
                        let name = local_name(mailbox);
                        let back = utf7::decode(&utf7::encode(&name));
                        assert_eq!(back.as_deref(), Some(name.as_str()));
                    }
                    _ => {}
                }
                let _ = server.enqueue_status(Status::ok(Some(command.tag), None, "ok").unwrap());
            }
            Ok(Event::CommandAuthenticateReceived {
                command_authenticate,
            }) => {
                let _ = server.authenticate_finish(
                    Status::no(Some(command_authenticate.tag), None, "no").unwrap(),
                );
            }
            Ok(Event::AuthenticateDataReceived { .. }) => {}
            Ok(Event::IdleCommandReceived { .. }) => {
                let _ = server.idle_accept(CommandContinuationRequest::basic(None, "idling").unwrap());
            }
            Ok(_) => {}
        }
    }
});
