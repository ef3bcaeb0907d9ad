//! `EntraClient`: the token-endpoint requests of every flow, for one app
//! registration.
//!
//! Follows "Microsoft identity platform and OAuth 2.0 authorization code
//! flow", "… refresh tokens" and "… client credentials flow"
//! (learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow,
//! v2-oauth2-client-creds-grant-flow). Those requests go through the
//! `oauth2` crate (with reqwest as its HTTP client and an error type that
//! keeps Entra's `error_codes`); the device code flow is in
//! [`super::device_code`].

use std::borrow::Cow;

use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::assertion::{JWT_BEARER, client_assertion};
use super::config::{AuthorityConfig, ClientCredential};
use super::http::{OAuthHttp, default_http_client, from_oauth2};
use super::{AuthError, EntraErrorResponse, TokenSet};
use crate::secret::Secret;

/// Fields of Entra's token response beyond RFC 6749's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntraTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}
impl oauth2::ExtraTokenFields for EntraTokenFields {}

type EntraTokenResponse = StandardTokenResponse<EntraTokenFields, BasicTokenType>;

type OAuthClient = oauth2::Client<
    EntraErrorResponse,
    EntraTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A sign-in started in a browser: the URL to open, and what is needed to
/// check and redeem the answer.
#[derive(Debug)]
pub struct AuthorizationRequest {
    /// The `/authorize` URL to open in a browser.
    pub url: String,
    /// The redirect URI sent (and to send again when redeeming).
    pub redirect_uri: String,
    /// The random `state` the redirect must carry back.
    pub state: Secret<String>,
    /// The PKCE code verifier (RFC 7636 §4.1).
    pub code_verifier: Secret<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

/// Talks to one authority's token endpoint for one app registration.
#[derive(Debug, Clone)]
pub struct EntraClient {
    config: AuthorityConfig,
    http: reqwest::Client,
}

impl EntraClient {
    pub fn new(config: AuthorityConfig) -> Result<EntraClient, AuthError> {
        Self::with_http(config, default_http_client()?)
    }

    /// With a caller's reqwest client (it should not follow redirects).
    pub fn with_http(
        config: AuthorityConfig,
        http: reqwest::Client,
    ) -> Result<EntraClient, AuthError> {
        if config.client_id.trim().is_empty() {
            return Err(AuthError::Config("client_id is empty".into()));
        }
        config.token_url()?;
        Ok(EntraClient { config, http })
    }

    pub fn config(&self) -> &AuthorityConfig {
        &self.config
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn oauth_client(&self) -> Result<OAuthClient, AuthError> {
        let bad = |e: url::ParseError| AuthError::Config(format!("authority URL: {e}"));
        let mut client = oauth2::Client::new(ClientId::new(self.config.client_id.clone()))
            .set_auth_uri(AuthUrl::new(self.config.authorize_url()?).map_err(bad)?)
            .set_token_uri(TokenUrl::new(self.config.token_url()?).map_err(bad)?)
            // Entra takes client_id/client_secret in the form body.
            .set_auth_type(AuthType::RequestBody);
        if let ClientCredential::Secret { secret } = &self.config.credential {
            client = client.set_client_secret(ClientSecret::new(secret.expose().clone()));
        }
        Ok(client)
    }

    /// The client assertion form fields when the credential is a
    /// certificate (`oauth2` has no notion of assertions, so they go in as
    /// extra parameters).
    fn assertion(&self) -> Result<Option<Secret<String>>, AuthError> {
        match &self.config.credential {
            ClientCredential::Certificate {
                cert_pem,
                key_pem,
                algorithm,
            } => client_assertion(
                &self.config.client_id,
                &self.config.token_url()?,
                cert_pem,
                key_pem,
                *algorithm,
            )
            .map(Some),
            _ => Ok(None),
        }
    }

    /// Start a browser sign-in with PKCE: the `/authorize` URL for
    /// `redirect_uri` (e.g. `http://localhost:PORT`).
    pub fn authorization_request(
        &self,
        redirect_uri: &str,
        scopes: &[String],
        login_hint: Option<&str>,
    ) -> Result<AuthorizationRequest, AuthError> {
        let client = self.oauth_client()?;
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| AuthError::Config(format!("redirect URI: {e}")))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_redirect_uri(Cow::Owned(redirect))
            .set_pkce_challenge(challenge)
            .add_scopes(scopes.iter().cloned().map(Scope::new))
            .add_extra_param("prompt", "select_account");
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_string());
        }
        let (url, state) = request.url();
        Ok(AuthorizationRequest {
            url: url.to_string(),
            redirect_uri: redirect_uri.to_string(),
            state: Secret::new(state.into_secret()),
            code_verifier: Secret::new(verifier.into_secret()),
            scopes: scopes.to_vec(),
        })
    }

    /// Redeem an authorization code (RFC 6749 §4.1.3 with RFC 7636's
    /// `code_verifier`).
    pub async fn redeem_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &Secret<String>,
        scopes: &[String],
    ) -> Result<TokenSet, AuthError> {
        let client = self.oauth_client()?;
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| AuthError::Config(format!("redirect URI: {e}")))?;
        let assertion = self.assertion()?;
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_redirect_uri(Cow::Owned(redirect))
            .set_pkce_verifier(PkceCodeVerifier::new(code_verifier.expose().clone()))
            .add_extra_param("scope", scopes.join(" "));
        if let Some(jwt) = &assertion {
            request = request
                .add_extra_param("client_assertion_type", JWT_BEARER)
                .add_extra_param("client_assertion", jwt.expose().clone());
        }
        let response = request
            .request_async(&OAuthHttp(&self.http))
            .await
            .map_err(from_oauth2)?;
        token_set(&response, scopes)
    }

    /// Redeem a refresh token (RFC 6749 §6). The answer carries a new
    /// refresh token that replaces the old one.
    pub async fn refresh(
        &self,
        refresh_token: &Secret<String>,
        scopes: &[String],
    ) -> Result<TokenSet, AuthError> {
        let client = self.oauth_client()?;
        let assertion = self.assertion()?;
        let rt = RefreshToken::new(refresh_token.expose().clone());
        let mut request = client
            .exchange_refresh_token(&rt)
            .add_scopes(scopes.iter().cloned().map(Scope::new));
        if let Some(jwt) = &assertion {
            request = request
                .add_extra_param("client_assertion_type", JWT_BEARER)
                .add_extra_param("client_assertion", jwt.expose().clone());
        }
        let response = request
            .request_async(&OAuthHttp(&self.http))
            .await
            .map_err(from_oauth2)?;
        let mut tokens = token_set(&response, scopes)?;
        // Entra always rotates; should a server not, the old one stays valid.
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh_token.clone());
        }
        Ok(tokens)
    }

    /// App-only token (client credentials grant) with the client secret or
    /// a certificate assertion, for `{resource}/.default`. No refresh token.
    pub async fn client_credentials(&self) -> Result<TokenSet, AuthError> {
        if matches!(self.config.credential, ClientCredential::None) {
            return Err(AuthError::Config(
                "client credentials need a client secret or certificate".into(),
            ));
        }
        // App-only tokens are issued for one named tenant: `/common`,
        // `/organizations` and `/consumers` cannot say whose mailboxes the
        // app may read (graph-facts.md "Entra": "client credentials always
        // need a tenant id or domain").
        let tenant = self.config.tenant.trim();
        if ["common", "organizations", "consumers"]
            .iter()
            .any(|t| tenant.eq_ignore_ascii_case(t))
        {
            return Err(AuthError::Config(format!(
                "app-only accounts (client credentials) need the tenant's id or verified \
                 domain, not `{tenant}`: set the config key `microsoft.tenant` (variable \
                 GRAPHGATE_MICROSOFT_TENANT) to your tenant id or domain, e.g. contoso.com"
            )));
        }
        let client = self.oauth_client()?;
        let assertion = self.assertion()?;
        let scopes = self.config.app_only_scopes();
        let mut request = client
            .exchange_client_credentials()
            .add_scopes(scopes.iter().cloned().map(Scope::new));
        if let Some(jwt) = &assertion {
            request = request
                .add_extra_param("client_assertion_type", JWT_BEARER)
                .add_extra_param("client_assertion", jwt.expose().clone());
        }
        let response = request
            .request_async(&OAuthHttp(&self.http))
            .await
            .map_err(from_oauth2)?;
        let mut tokens = token_set(&response, &scopes)?;
        tokens.refresh_token = None;
        Ok(tokens)
    }
}

fn token_set(response: &EntraTokenResponse, requested: &[String]) -> Result<TokenSet, AuthError> {
    let scope = response
        .scopes()
        .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "));
    TokenSet::from_response(
        response.access_token().secret().clone(),
        response.refresh_token().map(|r| r.secret().clone()),
        response.expires_in(),
        scope.as_deref(),
        response.extra_fields().id_token.as_deref(),
        requested,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_url_carries_pkce_state_and_hints() {
        let mut config = AuthorityConfig::public_client("app-id");
        config.tenant = "contoso.com".into();
        let client = EntraClient::new(config.clone()).unwrap();
        let req = client
            .authorization_request(
                "http://localhost:5555",
                &config.delegated_scopes(false),
                Some("alice@contoso.com"),
            )
            .unwrap();
        let url = url::Url::parse(&req.url).unwrap();
        assert_eq!(url.path(), "/contoso.com/oauth2/v2.0/authorize");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], "app-id");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["redirect_uri"], "http://localhost:5555");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["login_hint"], "alice@contoso.com");
        assert_eq!(q["prompt"], "select_account");
        assert_eq!(&q["state"], req.state.expose());
        assert!(q["scope"].contains("offline_access"));
        use base64::Engine;
        use sha2::Digest;
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(req.code_verifier.expose().as_bytes()));
        assert_eq!(q["code_challenge"], expected);
    }

    #[test]
    fn empty_client_id_is_refused() {
        let err = EntraClient::new(AuthorityConfig::public_client(" "));
        assert!(matches!(err, Err(AuthError::Config(_))));
    }
}
