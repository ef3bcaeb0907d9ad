//! SMTP submission: legacy applications hand mail to graphgate here.
//!
//! - [`session`]: the sans-I/O session state machine (commands, AUTH,
//!   STARTTLS, DATA), driven by bytes in and actions out.
//!
//! - [`server`]: the tokio listener around it: TLS (STARTTLS and implicit),
//!   password checks with back-off, streaming DATA into an fsync'ed spool
//!   file, and the [`server::Submitter`] that decides the final reply.

pub mod server;
pub mod session;

#[cfg(test)]
mod tests;

pub use session::{Action, Authenticated, Envelope, Session, SessionConfig, SubmitOutcome};
