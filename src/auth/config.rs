//! Where and as whom the gateway signs in: the authority, tenant, app
//! registration and its credential, and the Graph scopes it asks for.
//!
//! Endpoints follow "Microsoft identity platform and OAuth 2.0"
//! (learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow):
//! `{authority}/{tenant}/oauth2/v2.0/{authorize,token,devicecode}`. Sovereign
//! clouds and the simulator are just other authority URLs.

use serde::{Deserialize, Serialize};

use super::AuthError;
use crate::secret::Secret;

/// Microsoft's public-cloud authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The Graph resource that prefixes scopes.
pub const DEFAULT_GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

/// The app registration and the authority it signs in against.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorityConfig {
    /// Authority base URL, without the tenant.
    #[serde(default = "default_authority")]
    pub authority_url: String,
    /// `organizations`, `common`, a tenant GUID or a verified domain.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub client_id: String,
    #[serde(default)]
    pub credential: ClientCredential,
    /// Graph resource URL (scopes are written with it as prefix).
    #[serde(default = "default_graph_resource")]
    pub graph_resource: String,
}

fn default_authority() -> String {
    DEFAULT_AUTHORITY.into()
}
fn default_tenant() -> String {
    "organizations".into()
}
fn default_graph_resource() -> String {
    DEFAULT_GRAPH_RESOURCE.into()
}

impl AuthorityConfig {
    /// A public client (no secret) against the public cloud, tenant
    /// `organizations`.
    pub fn public_client(client_id: impl Into<String>) -> AuthorityConfig {
        AuthorityConfig {
            authority_url: default_authority(),
            tenant: default_tenant(),
            client_id: client_id.into(),
            credential: ClientCredential::None,
            graph_resource: default_graph_resource(),
        }
    }

    fn endpoint(&self, leaf: &str) -> Result<String, AuthError> {
        let base = self.authority_url.trim_end_matches('/');
        let tenant = self.tenant.trim();
        let tenant_ok = !tenant.is_empty()
            && tenant.len() <= 256
            && tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !tenant_ok {
            return Err(AuthError::Config(format!("invalid tenant {tenant:?}")));
        }
        let url = format!("{base}/{tenant}/oauth2/v2.0/{leaf}");
        url::Url::parse(&url).map_err(|e| AuthError::Config(format!("authority URL: {e}")))?;
        Ok(url)
    }

    pub fn token_url(&self) -> Result<String, AuthError> {
        self.endpoint("token")
    }
    pub fn authorize_url(&self) -> Result<String, AuthError> {
        self.endpoint("authorize")
    }
    pub fn device_code_url(&self) -> Result<String, AuthError> {
        self.endpoint("devicecode")
    }

    /// Delegated scopes: `offline_access` (for a refresh token), `openid
    /// profile` (for an id_token naming the user, as MSAL asks), mail
    /// read/write/send, and the `.Shared` variants for shared mailboxes when
    /// `shared`.
    pub fn delegated_scopes(&self, shared: bool) -> Vec<String> {
        let resource = self.graph_resource.trim_end_matches('/');
        let mut scopes = vec![
            "offline_access".to_string(),
            "openid".to_string(),
            "profile".to_string(),
        ];
        let mut names = vec!["Mail.ReadWrite", "Mail.Send"];
        if shared {
            names.extend(["Mail.ReadWrite.Shared", "Mail.Send.Shared"]);
        }
        scopes.extend(names.iter().map(|n| format!("{resource}/{n}")));
        scopes
    }

    /// The app-only scope: `{resource}/.default`.
    pub fn app_only_scopes(&self) -> Vec<String> {
        vec![format!(
            "{}/.default",
            self.graph_resource.trim_end_matches('/')
        )]
    }
}

/// How the app proves its identity at the token endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClientCredential {
    /// Public client (device code, PKCE): no secret.
    #[default]
    None,
    /// A client secret's Value.
    Secret {
        #[serde(with = "secret_string")]
        secret: Secret<String>,
    },
    /// An X.509 certificate; the token request carries a JWT signed with
    /// its key ("Microsoft identity platform application authentication
    /// certificate credentials").
    Certificate {
        cert_pem: String,
        #[serde(with = "secret_string")]
        key_pem: Secret<String>,
        #[serde(default)]
        algorithm: AssertionAlgorithm,
    },
}

/// Signature of the client assertion and the matching thumbprint header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssertionAlgorithm {
    /// RSASSA-PSS with SHA-256 and `x5t#S256` (what Microsoft recommends).
    #[default]
    PS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and `x5t` (SHA-1, older docs).
    RS256,
}

mod secret_string {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::secret::Secret;

    pub fn serialize<S: Serializer>(value: &Secret<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret<String>, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_scopes() {
        let mut config = AuthorityConfig::public_client("app");
        assert_eq!(
            config.token_url().unwrap(),
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
        );
        config.authority_url = "http://127.0.0.1:9/".into();
        config.tenant = "contoso.com".into();
        assert_eq!(
            config.device_code_url().unwrap(),
            "http://127.0.0.1:9/contoso.com/oauth2/v2.0/devicecode"
        );
        assert_eq!(
            config.delegated_scopes(false),
            [
                "offline_access",
                "openid",
                "profile",
                "https://graph.microsoft.com/Mail.ReadWrite",
                "https://graph.microsoft.com/Mail.Send"
            ]
        );
        assert_eq!(config.delegated_scopes(true).len(), 7);
        assert_eq!(
            config.app_only_scopes(),
            ["https://graph.microsoft.com/.default"]
        );
        config.tenant = "a/b".into();
        assert!(matches!(config.token_url(), Err(AuthError::Config(_))));
    }

    #[test]
    fn credential_debug_hides_secrets() {
        let c = ClientCredential::Secret {
            secret: Secret::new("s3cr3t".into()),
        };
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let json = r#"{"kind":"secret","secret":"v"}"#;
        let parsed: ClientCredential = serde_json::from_str(json).unwrap();
        assert!(matches!(parsed, ClientCredential::Secret { secret } if secret.expose() == "v"));
    }
}
