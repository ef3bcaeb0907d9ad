//! Confidential client authentication at the token endpoint: a client
//! secret, or a JWT client assertion signed with a registered certificate
//! ("Microsoft identity platform application authentication certificate
//! credentials"): header `x5t#S256` (or `x5t`), alg RS256/PS256, claims
//! `aud` = the token URL, `iss` = `sub` = client id, `jti`, `nbf`/`iat`,
//! `exp`. Microsoft documents no maximum lifetime for the assertion
//! (certificate-credentials.md; graph-facts.md, "Entra"), so none is
//! enforced here: only an assertion already expired, or not yet valid,
//! beyond the clock skew is refused (AADSTS700024).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::super::errors::EntraError;
use super::super::tenant::SimApp;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const CLOCK_SKEW_S: i64 = 300;

/// How a confidential client authenticated itself.
pub enum ClientProof<'a> {
    Secret(&'a str),
    Assertion(&'a str),
    None,
}

pub fn proof(form: &HashMap<String, String>) -> Result<ClientProof<'_>, EntraError> {
    if let Some(secret) = form.get("client_secret") {
        return Ok(ClientProof::Secret(secret));
    }
    match (
        form.get("client_assertion_type"),
        form.get("client_assertion"),
    ) {
        (Some(kind), Some(assertion)) if kind == ASSERTION_TYPE => {
            Ok(ClientProof::Assertion(assertion))
        }
        (Some(kind), Some(_)) => Err(EntraError::new(
            "invalid_request",
            50027,
            format!("The client_assertion_type '{kind}' is not supported."),
        )),
        _ => Ok(ClientProof::None),
    }
}

/// Check a client secret: AADSTS7000215 for a wrong value (the secret id
/// pasted instead of its value is the usual cause), 7000222 when expired.
pub fn check_secret(app: &SimApp, secret: &str, all_expired: bool) -> Result<(), EntraError> {
    match app.secrets.iter().find(|s| s.value == secret) {
        Some(s) if s.expired || all_expired => Err(EntraError::new(
            "invalid_client",
            7000222,
            format!(
                "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                app.client_id
            ),
        )
        .with_status(http::StatusCode::UNAUTHORIZED)),
        Some(_) => Ok(()),
        None => Err(EntraError::new(
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                app.client_id
            ),
        )
        .with_status(http::StatusCode::UNAUTHORIZED)),
    }
}

fn invalid_client(code: u32, description: impl Into<String>) -> EntraError {
    EntraError::new("invalid_client", code, description).with_status(http::StatusCode::UNAUTHORIZED)
}

fn thumbprint_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

fn thumbprint_sha1(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha1::digest(der))
}

/// Verify a client assertion. `audiences` are the token URLs accepted as
/// `aud`.
pub fn check_assertion(
    app: &SimApp,
    assertion: &str,
    audiences: &[String],
) -> Result<(), EntraError> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| invalid_client(50027, "JWT token is invalid or malformed."))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
        return Err(invalid_client(
            700027,
            format!(
                "Client assertion failed signature validation. The algorithm {:?} is not supported.",
                header.alg
            ),
        ));
    }
    let certificate = app.certificates.iter().find(|der| {
        header.x5t_s256.as_deref() == Some(thumbprint_s256(der).as_str())
            || header.x5t.as_deref() == Some(thumbprint_sha1(der).as_str())
    });
    let Some(der) = certificate else {
        let thumbprint = header
            .x5t_s256
            .clone()
            .or(header.x5t.clone())
            .unwrap_or_default();
        return Err(invalid_client(
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]",
                app.client_id
            ),
        ));
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| invalid_client(700027, "Client assertion failed signature validation."))?;
    let key = DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data);
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = Default::default();
    let data = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation).map_err(|_| {
        invalid_client(
            700027,
            "Client assertion failed signature validation. [Reason - The provided signature value did not match the expected signature value.]",
        )
    })?;
    let claims = data.claims;
    let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let number = |name: &str| claims.get(name).and_then(|v| v.as_i64());
    let aud = text("aud");
    if !audiences.iter().any(|a| a.eq_ignore_ascii_case(aud)) {
        return Err(invalid_client(
            700023,
            format!(
                "Client assertion audience claim does not match Realm issuer. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials . Audience: '{aud}'."
            ),
        ));
    }
    if !text("iss").eq_ignore_ascii_case(&app.client_id)
        || !text("sub").eq_ignore_ascii_case(&app.client_id)
    {
        return Err(invalid_client(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials .",
        ));
    }
    if text("jti").is_empty() {
        return Err(invalid_client(
            700022,
            "The client assertion is missing the 'jti' claim.",
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let exp = number("exp").unwrap_or(0);
    let start = number("nbf").or(number("iat")).unwrap_or(now);
    if exp <= now - CLOCK_SKEW_S || start > now + CLOCK_SKEW_S {
        return Err(invalid_client(
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials .",
                chrono::DateTime::from_timestamp(now, 0)
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default(),
                chrono::DateTime::from_timestamp(start, 0)
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default(),
                chrono::DateTime::from_timestamp(exp, 0)
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default(),
            ),
        ));
    }
    Ok(())
}
