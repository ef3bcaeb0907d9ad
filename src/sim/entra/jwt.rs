//! The simulator's token signing key: access tokens and id tokens are real
//! RS256 JWTs ("Microsoft identity platform access tokens", "ID tokens"),
//! although Graph in the simulator validates them by its own table so that
//! revocation and expiry controls work.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

pub struct Signer {
    key: Option<EncodingKey>,
    kid: String,
}

impl Signer {
    /// A fresh RSA 2048 key (generated once per simulator).
    pub fn generate() -> Signer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .ok()
            .and_then(|k| EncodingKey::from_rsa_pem(k.serialize_pem().as_bytes()).ok());
        Signer {
            key,
            kid: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Sign `claims`; falls back to an unsigned-looking opaque token if the
    /// key could not be made (the table, not the signature, is what counts).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        self.key
            .as_ref()
            .and_then(|key| jsonwebtoken::encode(&header, claims, key).ok())
            .unwrap_or_else(|| format!("sim.{}", uuid::Uuid::new_v4().simple()))
    }
}
