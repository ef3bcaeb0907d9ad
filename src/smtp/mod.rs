//! SMTP submission: legacy applications hand mail to graphgate here.
//!
//! - [`session`]: the sans-I/O session state machine (commands, AUTH,
//!   STARTTLS, DATA), driven by bytes in and actions out.
//!
//! The tokio listener, TLS, the spool and delivery through Graph sit on top
//! of the session.

pub mod session;

#[cfg(test)]
mod tests;

pub use session::{Action, Authenticated, Envelope, Session, SessionConfig, SubmitOutcome};
