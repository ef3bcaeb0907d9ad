//! graphgate: a local SMTP and IMAP gateway to Microsoft Graph mail.
//!
//! Legacy applications speak plain SMTP and IMAP to `localhost` with a local
//! password; graphgate turns every command into Microsoft Graph calls
//! authenticated with OAuth 2.0 against Microsoft Entra ID.
//!
//! Module map (a layer only calls the layer below it):
//! - [`smtp`], [`imap`], [`pop3`]: the protocol front-ends (sessions, listeners).
//! - [`spool`]: the SMTP spool's exactly-once delivery through Graph.
//! - [`mailbox`]: the mailbox model IMAP stands on (UIDs, flags, delta sync).
//! - [`mime`]: the SMTP side of MIME (header facts, the large-message split).
//! - [`graph`]: the Microsoft Graph client behind the `MailBackend` trait.
//! - [`gateway`]: the composition root: store, Graph and Entra clients, accounts
//!   from the configuration, for every command.
//! - [`runtime`], [`account`]: each account's tokens and Graph handle at run time.
//! - [`sim`]: a wire-faithful simulator of Graph mail and Entra ID, the
//!   embedded default of `graphgate demo` and of every test.
//! - [`auth`]: OAuth 2.0 flows against Entra ID and the token source.
//! - [`store`]: SQLite state: accounts, sealed tokens, UID maps, cache index, spool.
//! - [`login_guard`]: backoff and lockout after failed SMTP/IMAP logins.
//! - [`secret`]: `Secret<T>`, which never prints its value; [`private_file`]:
//!   files only their owner may read.

pub mod account;
pub mod admin;
pub mod alerts;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod graph;
pub mod imap;
pub mod login_guard;
pub mod mailbox;
pub mod metrics;
pub mod mime;
pub mod pop3;
pub mod private_file;
pub mod runtime;
pub mod secret;
pub mod sim;
pub mod smtp;
pub mod spool;
pub mod store;
pub mod tls;
pub mod wire;
