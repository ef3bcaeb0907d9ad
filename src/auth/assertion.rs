//! The signed JWT a confidential client presents instead of a secret.
//!
//! Follows "Microsoft identity platform application authentication
//! certificate credentials" (learn.microsoft.com/entra/identity-platform/
//! certificate-credentials): header `alg` PS256 with `x5t#S256` (base64url
//! SHA-256 of the certificate's DER), or RS256 with `x5t` (base64url SHA-1);
//! claims `aud` = the token URL, `iss` = `sub` = the client id, `jti`, `nbf`,
//! `iat`, `exp` (Microsoft documents no maximum; we use 5 minutes, so a
//! leaked assertion is worth little).

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha1::Digest as _;

use super::AuthError;
use super::config::AssertionAlgorithm;
use crate::secret::Secret;

/// Lifetime of one assertion.
const ASSERTION_LIFETIME_SECS: i64 = 300;

/// The form value of `client_assertion_type`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

/// The DER of the first certificate in `cert_pem`.
pub fn certificate_der(cert_pem: &str) -> Result<Vec<u8>, AuthError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| AuthError::Config(format!("certificate PEM: {e}")))?;
    if pem.label != "CERTIFICATE" {
        return Err(AuthError::Config(format!(
            "expected a CERTIFICATE PEM block, found {}",
            pem.label
        )));
    }
    Ok(pem.contents)
}

/// Build and sign a client assertion for `client_id` at `token_url`.
pub fn client_assertion(
    client_id: &str,
    token_url: &str,
    cert_pem: &str,
    key_pem: &Secret<String>,
    algorithm: AssertionAlgorithm,
) -> Result<Secret<String>, AuthError> {
    let der = certificate_der(cert_pem)?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut header = match algorithm {
        AssertionAlgorithm::PS256 => {
            let mut h = Header::new(Algorithm::PS256);
            h.x5t_s256 = Some(b64.encode(sha2::Sha256::digest(&der)));
            h
        }
        AssertionAlgorithm::RS256 => {
            let mut h = Header::new(Algorithm::RS256);
            h.x5t = Some(b64.encode(sha1::Sha1::digest(&der)));
            h
        }
    };
    header.typ = Some("JWT".into());
    let now = chrono::Utc::now().timestamp();
    let claims = AssertionClaims {
        aud: token_url,
        iss: client_id,
        sub: client_id,
        jti: uuid::Uuid::new_v4().to_string(),
        nbf: now,
        iat: now,
        exp: now + ASSERTION_LIFETIME_SECS,
    };
    let key = EncodingKey::from_rsa_pem(key_pem.expose().as_bytes())
        .map_err(|e| AuthError::Config(format!("certificate private key: {e}")))?;
    jsonwebtoken::encode(&header, &claims, &key)
        .map(Secret::new)
        .map_err(|e| AuthError::Config(format!("signing the client assertion: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["t".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn parts(jwt: &str) -> (serde_json::Value, serde_json::Value) {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut it = jwt.split('.');
        let h = b64.decode(it.next().unwrap()).unwrap();
        let c = b64.decode(it.next().unwrap()).unwrap();
        (
            serde_json::from_slice(&h).unwrap(),
            serde_json::from_slice(&c).unwrap(),
        )
    }

    #[test]
    fn ps256_with_sha256_thumbprint_and_rs256_with_sha1() {
        let (cert, key, der) = demo();
        let key = Secret::new(key);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwt = client_assertion(
            "cid",
            "http://t/tok",
            &cert,
            &key,
            AssertionAlgorithm::PS256,
        )
        .unwrap();
        let (h, c) = parts(jwt.expose());
        assert_eq!(h["alg"], "PS256");
        assert_eq!(h["x5t#S256"], b64.encode(sha2::Sha256::digest(&der)));
        assert_eq!(c["aud"], "http://t/tok");
        assert_eq!(
            (c["iss"].as_str(), c["sub"].as_str()),
            (Some("cid"), Some("cid"))
        );
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
        assert!(uuid::Uuid::parse_str(c["jti"].as_str().unwrap()).is_ok());

        let jwt = client_assertion(
            "cid",
            "http://t/tok",
            &cert,
            &key,
            AssertionAlgorithm::RS256,
        )
        .unwrap();
        let (h, _) = parts(jwt.expose());
        assert_eq!(h["alg"], "RS256");
        assert_eq!(h["x5t"], b64.encode(sha1::Sha1::digest(&der)));
        assert!(h.get("x5t#S256").is_none());
    }

    #[test]
    fn bad_pem_is_a_config_error() {
        let err = client_assertion(
            "c",
            "u",
            "nope",
            &Secret::new("x".into()),
            Default::default(),
        );
        assert!(matches!(err, Err(AuthError::Config(_))));
    }
}
