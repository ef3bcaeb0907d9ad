//! SMTP submission: legacy applications hand mail to graphgate here.
//!
//! - [`session`]: the sans-I/O session state machine (commands, AUTH,
//!   STARTTLS, DATA), driven by bytes in and actions out.
//!
//! - [`relay`]: the relay listener's allowlist (mail without AUTH from
//!   listed networks, each sending as one account) and the `rewrite`
//!   sender policy's From rewriting.
//!
//! - [`server`]: the tokio listener around it: TLS (STARTTLS and implicit),
//!   password checks with back-off, streaming DATA into an fsync'ed spool
//!   file, and the [`server::Submitter`] that decides the final reply.

pub mod relay;
pub mod server;
pub mod session;

#[cfg(test)]
mod relay_tests;
#[cfg(test)]
mod tests;

pub use session::{
    Action, Authenticated, Envelope, FromRewrite, Session, SessionConfig, SubmitOutcome,
};
