//! Errors of the auth layer and the fix to offer for each.
//!
//! Entra ID reports token-endpoint failures as RFC 6749 §5.2 error bodies
//! extended with `error_codes` (AADSTS numbers), `trace_id` and
//! `correlation_id` ("Microsoft identity platform error codes",
//! learn.microsoft.com/entra/identity-platform/reference-error-codes).
//! [`EntraErrorResponse`] keeps all of them; [`AuthError::Entra`] shows only
//! the AADSTS code and the first line of the description (the trace and
//! correlation ids stay available as fields for logs), and
//! [`AuthError::remedy`] turns each known code into one sentence of advice.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Entra ID's error body (HTTP 400/401 from `/oauth2/v2.0/token` and
/// `/devicecode`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct EntraErrorResponse {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<u32>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub error_uri: Option<String>,
}

impl fmt::Display for EntraErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error_description {
            Some(d) => write!(f, "{}: {}", self.error, first_line(d)),
            None => f.write_str(&self.error),
        }
    }
}

impl oauth2::ErrorResponse for EntraErrorResponse {}

/// Longest description kept from an error body.
const MAX_DESCRIPTION: usize = 400;

/// The first line of an Entra description ("AADSTS70000: … \r\nTrace ID: …"),
/// bounded in length.
pub fn first_line(description: &str) -> String {
    let line = description.lines().next().unwrap_or("").trim();
    line.chars().take(MAX_DESCRIPTION).collect()
}

/// The AADSTS number of an error: from `error_codes`, or else parsed from the
/// start of the description.
fn aadsts_code(body: &EntraErrorResponse) -> Option<u32> {
    if let Some(code) = body.error_codes.first() {
        return Some(*code);
    }
    let rest = body.error_description.as_deref()?.strip_prefix("AADSTS")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Errors of the auth layer.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Entra ID refused the request (AADSTS error).
    #[error("Entra ID refused the request ({error}): {description}")]
    Entra {
        code: Option<u32>,
        error: String,
        /// The AADSTS code and the first line of `error_description`.
        description: String,
        trace_id: Option<String>,
        correlation_id: Option<String>,
    },
    /// The user declined the device-code sign-in.
    #[error("the sign-in was declined")]
    DeviceCodeDeclined,
    /// Nobody completed the device-code sign-in in time.
    #[error("the device code expired before the sign-in was completed")]
    DeviceCodeExpired,
    /// The redirect's `state` differs from the one sent: possible CSRF; the
    /// code was not redeemed.
    #[error("the sign-in response's state does not match the request (not redeemed)")]
    StateMismatch,
    /// The authorization endpoint redirected back with `error=…`.
    #[error("the sign-in failed: {error}: {description}")]
    Authorization { error: String, description: String },
    /// A different user signed in than the account expects.
    #[error("signed in as {actual}, but this account is {expected}")]
    UserMismatch { expected: String, actual: String },
    /// The account was signed out (`graphgate logout`, `accounts remove`)
    /// while the gateway held its tokens: they are not saved again.
    #[error("{0} was signed out (graphgate logout or accounts remove)")]
    SignedOut(String),
    /// The token store refused the rotated tokens.
    #[error("could not save the new tokens: {0}")]
    Persist(String),
    /// Configuration that cannot work (bad URL, unreadable key, …).
    #[error("auth configuration: {0}")]
    Config(String),
    /// The HTTP exchange failed (connection, TLS, timeout).
    #[error("could not reach Entra ID: {0}")]
    Transport(String),
    /// Entra ID answered something that is not the protocol.
    #[error("unexpected answer from Entra ID: {0}")]
    Protocol(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl AuthError {
    /// A bounded label for metrics: `AADSTS<code>`, the OAuth error word,
    /// or the kind of failure — never a description.
    pub fn metric_label(&self) -> String {
        match self {
            AuthError::Entra {
                code: Some(code), ..
            } => format!("AADSTS{code}"),
            AuthError::Entra { error, .. } => {
                let word: String = error
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(40)
                    .collect();
                if word.is_empty() {
                    "entra_error".into()
                } else {
                    word
                }
            }
            AuthError::Persist(_) => "persist_failed".into(),
            AuthError::Config(_) => "config".into(),
            _ => "failed".into(),
        }
    }

    /// An [`AuthError::Entra`] from Entra's error body (also the device-code
    /// outcomes, which are plain RFC 8628 errors).
    pub fn from_entra(body: EntraErrorResponse) -> AuthError {
        match body.error.as_str() {
            "authorization_declined" => return AuthError::DeviceCodeDeclined,
            "expired_token" => return AuthError::DeviceCodeExpired,
            _ => {}
        }
        let code = aadsts_code(&body);
        let description = body
            .error_description
            .as_deref()
            .map(first_line)
            .unwrap_or_default();
        AuthError::Entra {
            code,
            error: body.error.chars().take(100).collect(),
            description,
            trace_id: body.trace_id,
            correlation_id: body.correlation_id,
        }
    }

    /// The AADSTS code, if this is an Entra refusal.
    pub fn aadsts(&self) -> Option<u32> {
        match self {
            AuthError::Entra { code, .. } => *code,
            _ => None,
        }
    }

    /// True when the stored grant is gone (revoked, expired, device
    /// removed, or a new MFA prompt is needed) and only a new interactive
    /// sign-in helps. Entra says so with the OAuth error word whatever the
    /// AADSTS number: `invalid_grant` (RFC 6749 §5.2) or
    /// `interaction_required` (OpenID Connect Core §3.1.2.6) — 70043
    /// sign-in frequency, 50078 MFA expired, 50132/50133 password changed,
    /// 54005, 65001 consent withdrawn and others all arrive that way
    /// (graph-facts.md, "Corrections": "invalid_grant and
    /// interaction_required mean sign in again whatever the AADSTS
    /// number"). The codes of the table keep their meaning if Entra ever
    /// sends them under another word.
    pub fn requires_login(&self) -> bool {
        match self {
            AuthError::Entra { code, error, .. } => {
                matches!(
                    error.as_str(),
                    "invalid_grant"
                        | "interaction_required"
                        | "login_required"
                        | "consent_required"
                ) || matches!(
                    code,
                    Some(50173 | 70000 | 70008 | 700082 | 700003 | 50076 | 50079)
                )
            }
            AuthError::UserMismatch { .. } | AuthError::SignedOut(_) => true,
            _ => false,
        }
    }

    /// One plain sentence telling the administrator how to fix this, for
    /// the account `account` (its local name or UPN).
    pub fn remedy(&self, account: &str) -> String {
        let login = format!("Sign in again with `graphgate login {account}`.");
        match self {
            AuthError::Entra { code, error, .. } => match code {
                Some(50173) => format!(
                    "The grant was revoked (password change or admin revocation); {}",
                    lower_first(&login)
                ),
                Some(70000 | 70008) => format!(
                    "The refresh token is invalid, expired or revoked; {}",
                    lower_first(&login)
                ),
                Some(700082) => format!(
                    "The refresh token expired after 90 days without use; {}",
                    lower_first(&login)
                ),
                Some(700003) => format!(
                    "The device was removed or disabled in the tenant; {}",
                    lower_first(&login)
                ),
                Some(65001) => "The app has no consent for these permissions: have the user \
                     consent at sign-in, or have a tenant admin open the URL from \
                     `graphgate consent-url`."
                    .to_string(),
                Some(65004) => format!(
                    "The user declined the requested permissions; run `graphgate login \
                     --browser {account}` again and accept, or have a tenant admin grant \
                     consent (`graphgate consent-url`)."
                ),
                Some(50076 | 50079) => format!(
                    "Multi-factor authentication is required; sign in interactively with \
                     `graphgate login --browser {account}`."
                ),
                Some(53003) => "A Conditional Access policy blocked the sign-in; ask the \
                     tenant admin to allow this app and location."
                    .to_string(),
                Some(90002) => "The tenant was not found; fix the tenant id or domain \
                     (config key `microsoft.tenant`, variable GRAPHGATE_MICROSOFT_TENANT)."
                    .to_string(),
                Some(700016) => "The app (client id) is not registered in this tenant; fix \
                     the client id (config key `microsoft.client_id`, variable \
                     GRAPHGATE_MICROSOFT_CLIENT_ID) or register the app."
                    .to_string(),
                Some(7000215) => "The client secret is invalid: copy the secret's Value, not \
                     its Secret ID, into the file named by the config key \
                     `microsoft.client_secret_file`."
                    .to_string(),
                Some(7000222) => "The client secret has expired; create a new client secret \
                     in the app registration and put its Value in the file named by \
                     `microsoft.client_secret_file`."
                    .to_string(),
                Some(7000218) => "The app is a confidential client: configure a client \
                     secret or certificate, or enable \"Allow public client flows\" in the \
                     app registration."
                    .to_string(),
                Some(50126) => {
                    format!("The username or password is wrong; {}", lower_first(&login))
                }
                Some(500011) => "Microsoft Graph is not available in this tenant (resource \
                     principal not found); check the tenant and the Graph resource URL."
                    .to_string(),
                Some(50194) => "The app is registered for its own directory only, so Entra \
                     refuses it on `organizations`/`common`: set the config key \
                     `microsoft.tenant` (variable GRAPHGATE_MICROSOFT_TENANT) to your tenant \
                     id or verified domain, e.g. contoso.com."
                    .to_string(),
                Some(70043 | 50078 | 50132 | 50133) => format!(
                    "The sign-in is no longer valid (sign-in frequency, MFA or password change \
                     policy); {}",
                    lower_first(&login)
                ),
                _ if error == "invalid_grant"
                    || error == "interaction_required"
                    || error == "login_required" =>
                {
                    login
                }
                _ => "Entra ID refused the request; check the tenant, client id and \
                     credentials in the configuration."
                    .to_string(),
            },
            AuthError::DeviceCodeDeclined => format!(
                "The sign-in was declined; run `graphgate login {account}` again and approve it."
            ),
            AuthError::DeviceCodeExpired => format!(
                "The code expired before the sign-in was finished; run `graphgate login \
                 {account}` again and enter the code within the time shown."
            ),
            AuthError::StateMismatch => format!(
                "The browser returned a response for a different sign-in; run `graphgate \
                 login --browser {account}` again."
            ),
            AuthError::Authorization { .. } => format!(
                "The browser sign-in failed; run `graphgate login --browser {account}` again."
            ),
            AuthError::UserMismatch { expected, .. } => {
                format!("Sign in as {expected}, or add the other user as a separate account.")
            }
            AuthError::SignedOut(_) => login,
            AuthError::Persist(_) | AuthError::Io(_) => {
                "Check that the data directory is writable and the disk is not full.".into()
            }
            AuthError::Config(_) => "Fix the auth settings (`graphgate config check`).".into(),
            AuthError::Transport(_) => {
                "Check the network connection to the Entra ID authority and retry.".into()
            }
            AuthError::Protocol(_) => {
                "Check that `authority_url` points at Entra ID (or the simulator).".into()
            }
        }
    }
}

fn lower_first(sentence: &str) -> String {
    let mut chars = sentence.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(error: &str, code: u32, description: &str) -> EntraErrorResponse {
        EntraErrorResponse {
            error: error.into(),
            error_description: Some(description.into()),
            error_codes: vec![code],
            trace_id: Some("trace-123".into()),
            correlation_id: Some("corr-456".into()),
            error_uri: None,
        }
    }

    #[test]
    fn display_keeps_the_first_line_and_drops_trace_ids() {
        let err = AuthError::from_entra(body(
            "invalid_grant",
            70000,
            "AADSTS70000: The provided grant is invalid.\r\nTrace ID: trace-123\r\nCorrelation ID: corr-456",
        ));
        let shown = err.to_string();
        assert!(
            shown.contains("AADSTS70000: The provided grant is invalid."),
            "{shown}"
        );
        assert!(
            !shown.contains("trace-123") && !shown.contains("corr-456"),
            "{shown}"
        );
        assert_eq!(err.aadsts(), Some(70000));
        assert!(err.requires_login());
        assert!(
            err.remedy("alice@example.com")
                .contains("graphgate login alice@example.com")
        );
    }

    #[test]
    fn code_is_parsed_from_the_description_when_error_codes_is_missing() {
        let mut b = body(
            "invalid_client",
            0,
            "AADSTS7000215: Invalid client secret provided.",
        );
        b.error_codes.clear();
        let err = AuthError::from_entra(b);
        assert_eq!(err.aadsts(), Some(7000215));
        assert!(!err.requires_login());
        assert!(err.remedy("a").contains("not its Secret ID"));
    }

    #[test]
    fn every_table_code_has_its_own_remedy() {
        let generic = AuthError::from_entra(body("x", 1, "AADSTS1: x")).remedy("a");
        for (code, needle) in [
            (50173, "graphgate login bob"),
            (70000, "graphgate login bob"),
            (70008, "graphgate login bob"),
            (700082, "graphgate login bob"),
            (700003, "graphgate login bob"),
            (65001, "graphgate consent-url"),
            (65004, "declined the requested permissions"),
            (50076, "graphgate login --browser bob"),
            (50079, "graphgate login --browser bob"),
            (53003, "tenant admin"),
            (90002, "`microsoft.tenant`"),
            (700016, "`microsoft.client_id`"),
            (7000215, "Value, not its Secret ID"),
            (7000222, "new client secret"),
            (7000218, "public client"),
            (50126, "password"),
            (500011, "resource principal"),
            (50194, "`microsoft.tenant`"),
            (70043, "graphgate login bob"),
        ] {
            let err = AuthError::from_entra(body("invalid_grant", code, "AADSTS: x"));
            let remedy = err.remedy("bob");
            assert!(remedy.contains(needle), "{code}: {remedy}");
            assert_ne!(remedy, generic, "{code}");
        }
    }

    #[test]
    fn every_invalid_grant_or_interaction_required_needs_a_new_sign_in() {
        for (error, code) in [
            ("invalid_grant", 70043),
            ("invalid_grant", 50078),
            ("invalid_grant", 50132),
            ("invalid_grant", 50133),
            ("invalid_grant", 54005),
            ("invalid_grant", 65001),
            ("interaction_required", 50078),
            ("interaction_required", 53000),
        ] {
            let err = AuthError::from_entra(body(error, code, "AADSTS: x"));
            assert!(err.requires_login(), "{error} {code}");
        }
        for (error, code) in [
            ("invalid_client", 7000215),
            ("invalid_client", 7000222),
            ("invalid_request", 50194),
            ("invalid_request", 90002),
            ("unauthorized_client", 700016),
            ("temporarily_unavailable", 0),
        ] {
            let err = AuthError::from_entra(body(error, code, "AADSTS: x"));
            assert!(!err.requires_login(), "{error} {code}");
        }
    }

    #[test]
    fn device_code_outcomes_are_typed() {
        let declined = AuthError::from_entra(body("authorization_declined", 70000, "x"));
        assert!(matches!(declined, AuthError::DeviceCodeDeclined));
        let expired = AuthError::from_entra(body("expired_token", 70000, "x"));
        assert!(matches!(expired, AuthError::DeviceCodeExpired));
        assert!(expired.remedy("carol").contains("graphgate login carol"));
    }
}
