//! MIME on the SMTP side: the facts a submission needs from a message's
//! header block ([`submission`]) and the streaming split of a large message
//! into a draft plus attachments ([`split`]). Both read bounded pieces of
//! the spool file, never the whole message; both are fuzzed.

pub mod split;
pub mod submission;
