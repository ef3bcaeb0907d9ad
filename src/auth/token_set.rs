//! The tokens one sign-in yields and who signed in.
//!
//! Built from the token endpoint's response ("Microsoft identity platform
//! access tokens", "ID tokens": claims `oid`, `tid`, `preferred_username`,
//! `name`). The identity is read from the `id_token` payload WITHOUT checking
//! its signature, as MSAL does: the token comes straight from the token
//! endpoint over TLS, so its origin is already authenticated; it is used to
//! label the account, never to authorise anything. Without an id_token the
//! access token's claims are tried (Entra access tokens are JWTs, though
//! opaque by contract).

use std::time::{Duration, SystemTime};

use base64::Engine;
use serde::Deserialize;

use super::{AccessToken, AuthError};
use crate::secret::Secret;

/// Largest JWT whose payload is decoded.
const MAX_JWT_LEN: usize = 32 * 1024;

/// Who signed in (from the id_token or access token claims).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct SignedInIdentity {
    /// Object id of the user in the tenant.
    #[serde(default)]
    pub oid: String,
    /// Tenant id.
    #[serde(default)]
    pub tid: String,
    /// Usually the UPN (`alice@contoso.com`).
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Access token, optional refresh token, expiry, granted scopes, identity.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: Secret<String>,
    pub refresh_token: Option<Secret<String>>,
    pub expires_at: SystemTime,
    pub scopes: Vec<String>,
    pub identity: Option<SignedInIdentity>,
}

impl TokenSet {
    /// Assemble from the token response's fields.
    pub fn from_response(
        access_token: String,
        refresh_token: Option<String>,
        expires_in: Option<Duration>,
        scope: Option<&str>,
        id_token: Option<&str>,
        requested_scopes: &[String],
    ) -> Result<TokenSet, AuthError> {
        if access_token.is_empty() {
            return Err(AuthError::Protocol("empty access_token".into()));
        }
        // Entra always sends expires_in; assume an hour if a server does not.
        let lifetime = expires_in.unwrap_or(Duration::from_secs(3600));
        let scopes = match scope {
            Some(s) => s.split_whitespace().take(64).map(str::to_string).collect(),
            None => requested_scopes.to_vec(),
        };
        let identity = id_token
            .and_then(decode_identity)
            .or_else(|| decode_identity(&access_token));
        Ok(TokenSet {
            access_token: Secret::new(access_token),
            refresh_token: refresh_token.filter(|r| !r.is_empty()).map(Secret::new),
            expires_at: SystemTime::now() + lifetime,
            scopes,
            identity,
        })
    }

    /// The bearer token for Graph.
    pub fn bearer(&self) -> AccessToken {
        AccessToken {
            token: self.access_token.clone(),
            expires_at: self.expires_at,
        }
    }

    /// True if the access token is valid for at least `margin` more.
    pub fn valid_for(&self, margin: Duration) -> bool {
        SystemTime::now()
            .checked_add(margin)
            .is_some_and(|t| t < self.expires_at)
    }

    /// The signed-in user's UPN, if known.
    pub fn username(&self) -> Option<&str> {
        self.identity.as_ref()?.preferred_username.as_deref()
    }
}

/// The claims of a JWT's payload, decoded without verifying the signature
/// (see the module comment). `None` for anything that is not a JWT.
pub fn decode_identity(jwt: &str) -> Option<SignedInIdentity> {
    let identity: SignedInIdentity = jwt_claims(jwt)?;
    if identity.oid.is_empty() && identity.preferred_username.is_none() {
        return None;
    }
    Some(identity)
}

/// Check that `tokens` belong to `expected_upn` (case-insensitive), for a
/// re-login of an existing account. Unknown identity passes: there is
/// nothing to compare.
pub fn check_identity(expected_upn: &str, tokens: &TokenSet) -> Result<(), AuthError> {
    match tokens.username() {
        Some(actual) if !actual.eq_ignore_ascii_case(expected_upn.trim()) => {
            Err(AuthError::UserMismatch {
                expected: expected_upn.to_string(),
                actual: actual.to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// A JWT's payload decoded into `T`, without verifying the signature (the
/// token is ours to present, not to trust; see the module comment). `None`
/// for anything that is not a JWT of reasonable size.
pub fn jwt_claims<T: serde::de::DeserializeOwned>(jwt: &str) -> Option<T> {
    if jwt.len() > MAX_JWT_LEN {
        return None;
    }
    let mut parts = jwt.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    parts.next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(br#"{"alg":"RS256"}"#),
            e.encode(claims.to_string())
        )
    }

    #[test]
    fn identity_comes_from_id_token_then_access_token() {
        let id = jwt(
            serde_json::json!({"oid":"o1","tid":"t1","preferred_username":"alice@example.com","name":"Alice"}),
        );
        let set = TokenSet::from_response(
            "opaque".into(),
            Some("rt".into()),
            Some(Duration::from_secs(3599)),
            Some("Mail.Send offline_access"),
            Some(&id),
            &[],
        )
        .unwrap();
        let who = set.identity.clone().unwrap();
        assert_eq!((who.oid.as_str(), who.tid.as_str()), ("o1", "t1"));
        assert_eq!(set.username(), Some("alice@example.com"));
        assert_eq!(set.scopes, ["Mail.Send", "offline_access"]);
        assert!(set.valid_for(Duration::from_secs(300)));
        assert!(!set.valid_for(Duration::from_secs(4000)));

        let at =
            jwt(serde_json::json!({"oid":"o2","upn":"x","preferred_username":"bob@example.com"}));
        let set = TokenSet::from_response(at, None, None, None, Some("not a jwt"), &["s".into()])
            .unwrap();
        assert_eq!(set.username(), Some("bob@example.com"));
        assert_eq!(set.scopes, ["s"]);
    }

    #[test]
    fn garbage_is_no_identity() {
        assert_eq!(decode_identity("a.b"), None);
        assert_eq!(decode_identity("a.!!!.c"), None);
        assert_eq!(decode_identity(&"a.".repeat(20_000)), None);
    }

    #[test]
    fn user_mismatch_is_detected() {
        let id =
            jwt(serde_json::json!({"oid":"o","tid":"t","preferred_username":"Bob@Example.com"}));
        let set = TokenSet::from_response("at".into(), None, None, None, Some(&id), &[]).unwrap();
        assert!(check_identity("bob@example.com", &set).is_ok());
        let err = check_identity("alice@example.com", &set).unwrap_err();
        assert!(
            matches!(err, AuthError::UserMismatch { ref actual, .. } if actual == "Bob@Example.com")
        );
        assert!(!format!("{set:?}").contains("\"at\""));
    }
}
