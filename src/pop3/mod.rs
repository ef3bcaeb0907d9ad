//! POP3 over Microsoft Graph (RFC 1939, with CAPA and RESP-CODES of RFC
//! 2449, STLS of RFC 2595, SASL PLAIN of RFC 5034, AUTH-RESP-CODE of RFC
//! 3206).
//!
//! - [`protocol`]: the sans-I/O parser (bytes in, typed commands out).
pub mod protocol;
