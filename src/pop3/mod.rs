//! POP3 over Microsoft Graph (RFC 1939, with CAPA and RESP-CODES of RFC
//! 2449, STLS of RFC 2595, SASL PLAIN of RFC 5034, AUTH-RESP-CODE of RFC
//! 3206), a peer of `smtp/` and `imap/` on the same mailbox model.
//!
//! - [`protocol`]: the sans-I/O parser (bytes in, typed commands out) and
//!   the line framer, with the RFC 2449 §4 line bound.
//! - [`body`]: RETR and TOP answers, byte-stuffed chunk by chunk.
//! - [`server`]: the listeners (plain with STLS, implicit TLS) and the
//!   per-connection loop.
//! - [`session`]: the AUTHORIZATION state, the state table, QUIT's UPDATE.
//! - [`transaction`]: STAT, LIST, UIDL, RETR, TOP, DELE, RSET.
//! - [`maildrop`]: the account's INBOX, fixed for the session; unique ids,
//!   exact sizes, the exclusive lock, and what a deletion means.

pub mod body;
pub mod maildrop;
pub mod protocol;
pub mod server;
pub mod session;
pub mod transaction;
