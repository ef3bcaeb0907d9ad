//! MIME on the SMTP side: the facts a submission needs from a message's
//! header block ([`submission`]) and the streaming split of a large message
//! into a draft plus attachments ([`split`]). Both read bounded pieces of
//! the spool file, never the whole message; both are fuzzed.

pub mod imap;
pub mod split;
pub mod submission;

/// Parse a whole message with mail-parser, turning a panic inside the
/// parser into `None`. mail-parser 0.11.9 panics ("Invalid part ID, could
/// not find multipart") on some malformed multipart nesting that our fuzzer
/// found; a hostile message must cost a clear NO, not a dead connection.
pub fn parse_message(bytes: &[u8]) -> Option<mail_parser::Message<'_>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        mail_parser::MessageParser::default().parse(bytes)
    }))
    .ok()
    .flatten()
}
