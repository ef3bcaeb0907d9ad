//! Drives the POP3 framer and parser with arbitrary client bytes, cut into
//! arbitrary chunks, switching between command lines and AUTH exchange
//! lines as a session would (an AUTH without initial response makes the
//! next line a SASL line; STLS drops what was pipelined after it). Nothing
//! may panic, the framer never holds more than its limit plus one chunk,
//! and every parsed command's trace hides its secrets.
#![no_main]

use graphgate::pop3::protocol::{
    Command, Framer, Line, MAX_COMMAND_LINE, MAX_SASL_LINE, parse_command, parse_sasl_line,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(control).max(1);
    let mut framer = Framer::new();
    let mut sasl = false;
    for piece in input.chunks(chunk) {
        framer.push(piece);
        loop {
            let limit = if sasl { MAX_SASL_LINE } else { MAX_COMMAND_LINE };
            let Some(line) = framer.next_line(limit) else {
                break;
            };
            let Line::Text(line) = line else {
                sasl = false;
                continue;
            };
            if sasl {
                let _ = parse_sasl_line(&line);
                sasl = false;
                continue;
            }
            match parse_command(&line) {
                Ok(command) => {
                    let trace = command.trace();
                    match &command {
                        Command::Pass(_) => {
                            assert_eq!(trace, format!("PASS {}", graphgate::wire::REDACTED))
                        }
                        Command::Auth { initial: None, .. } => sasl = true,
                        Command::Stls => framer.discard_buffered(),
                        _ => {}
                    }
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
        assert!(framer.buffered() <= MAX_SASL_LINE + chunk);
    }
});
