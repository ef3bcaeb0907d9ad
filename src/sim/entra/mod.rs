//! Entra ID (Microsoft identity platform v2) for the simulator: the
//! `/{tenant}/oauth2/v2.0/{devicecode,token,authorize}` endpoints,
//! `/devicelogin`, `/{tenant}/adminconsent` and the OpenID configuration,
//! following "Microsoft identity platform and the OAuth 2.0 device
//! authorization grant flow", "… authorization code flow", "… client
//! credentials flow", "Microsoft identity platform application
//! authentication certificate credentials" and the AADSTS error reference.
//!
//! This module keeps the grants it issued (access tokens, refresh tokens,
//! device codes, authorization codes) in bounded tables; Graph validates a
//! bearer token by looking it up here, so revocation and expiry controls
//! take effect at once.

mod authorize;
mod client_auth;
mod device;
mod jwt;
mod scopes;
mod token;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use http::StatusCode;

use super::caller::Caller;
use super::errors::{EntraError, GraphError};
use super::tenant::{SimApp, Tenant};
use super::{SimConfig, SimState};

pub use device::DeviceLoginError;

/// Most live entries in one grant table; older entries are pruned first.
const MAX_GRANTS: usize = 100_000;
/// Refresh tokens expire after this much inactivity (Entra: 90 days).
const REFRESH_INACTIVITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// A sign-in block a control can put on a user (Conditional Access / MFA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInBlock {
    /// AADSTS50076: MFA required.
    Mfa,
    /// AADSTS53003: blocked by Conditional Access.
    ConditionalAccess,
}

#[derive(Debug, Clone)]
struct AccessGrant {
    caller: Caller,
    expires: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshGrant {
    pub client_id: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub last_used: Instant,
    pub revoked: bool,
    pub expired: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct DeviceGrant {
    pub client_id: String,
    pub user_code: String,
    /// The scopes as requested; consent is checked when the approved grant
    /// is redeemed, not at `/devicecode` (graph-facts.md "Consent during
    /// device code": missing consent shows on the verification page and
    /// comes back from the token poll).
    pub scopes: Vec<String>,
    pub expires: Instant,
    pub last_poll: Option<Instant>,
    pub auto_approve_at: Option<Instant>,
    pub state: DeviceState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceState {
    Pending,
    Approved(String),
    Declined,
    Redeemed,
}

#[derive(Debug, Clone)]
pub(crate) struct AuthCodeGrant {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub expires: Instant,
}

pub struct EntraState {
    access_token_lifetime: Duration,
    device_code_lifetime: Duration,
    device_code_interval: Duration,
    device_auto_approve: Option<(Duration, String)>,
    authorization_code_lifetime: Duration,
    public_url: String,
    /// The Graph resource tokens are issued for (`aud`).
    graph_resource: String,
    signer: jwt::Signer,
    access_tokens: Mutex<HashMap<String, AccessGrant>>,
    refresh_tokens: Mutex<HashMap<String, RefreshGrant>>,
    device_codes: Mutex<HashMap<String, DeviceGrant>>,
    auth_codes: Mutex<HashMap<String, AuthCodeGrant>>,
    blocks: Mutex<HashMap<String, SignInBlock>>,
    deny_admin_consent: Mutex<bool>,
}

fn bounded_insert<V>(
    map: &mut HashMap<String, V>,
    key: String,
    value: V,
    live: impl Fn(&V) -> bool,
) {
    if map.len() >= MAX_GRANTS {
        map.retain(|_, v| live(v));
        if map.len() >= MAX_GRANTS {
            // Still full of live grants: drop an arbitrary one.
            if let Some(k) = map.keys().next().cloned() {
                map.remove(&k);
            }
        }
    }
    map.insert(key, value);
}

impl EntraState {
    pub fn new(config: &SimConfig) -> EntraState {
        EntraState {
            access_token_lifetime: config.access_token_lifetime,
            device_code_lifetime: config.device_code_lifetime,
            device_code_interval: config.device_code_interval,
            device_auto_approve: config.device_auto_approve.clone(),
            authorization_code_lifetime: config.authorization_code_lifetime,
            public_url: config.public_url.trim_end_matches('/').to_string(),
            graph_resource: config.graph_resource.trim_end_matches('/').to_string(),
            signer: jwt::Signer::generate(),
            access_tokens: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            device_codes: Mutex::new(HashMap::new()),
            auth_codes: Mutex::new(HashMap::new()),
            blocks: Mutex::new(HashMap::new()),
            deny_admin_consent: Mutex::new(false),
        }
    }

    /// Issue an access token for `caller`; returns the token and its
    /// lifetime in seconds.
    pub fn issue_access_token(&self, caller: Caller) -> (String, u64) {
        self.issue_access_token_in(caller, None, super::tenant::DEMO_TENANT_ID)
    }

    /// Issue a signed access token (claims as Entra's v1 Graph tokens) and
    /// record it.
    pub(crate) fn issue_access_token_in(
        &self,
        caller: Caller,
        upn: Option<&str>,
        tenant_id: &str,
    ) -> (String, u64) {
        let now = chrono::Utc::now().timestamp();
        let lifetime = self.access_token_lifetime.as_secs();
        let mut claims = serde_json::json!({
            "aud": self.graph_resource,
            "iss": format!("https://sts.windows.net/{tenant_id}/"),
            "tid": tenant_id,
            "appid": caller.app_id,
            "iat": now,
            "nbf": now,
            "exp": now + i64::try_from(lifetime).unwrap_or(3599),
            "uti": uuid::Uuid::new_v4().simple().to_string(),
            "ver": "1.0",
        });
        if let Some(user_id) = &caller.user_id {
            claims["oid"] = user_id.clone().into();
            claims["sub"] = user_id.clone().into();
            claims["scp"] = caller.permissions.join(" ").into();
            if let Some(upn) = upn {
                claims["upn"] = upn.into();
                claims["unique_name"] = upn.into();
            }
        } else {
            claims["oid"] = caller.app_id.clone().into();
            claims["sub"] = caller.app_id.clone().into();
            claims["roles"] = caller.permissions.clone().into();
        }
        let token = self.signer.sign(&claims);
        let expires = Instant::now() + self.access_token_lifetime;
        if let Ok(mut tokens) = self.access_tokens.lock() {
            let now = Instant::now();
            bounded_insert(
                &mut tokens,
                token.clone(),
                AccessGrant { caller, expires },
                |g| g.expires > now,
            );
        }
        (token, lifetime)
    }

    /// The caller behind an `Authorization` header value, or Graph's 401.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, GraphError> {
        let unauthorized = |message: &str| {
            GraphError::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message)
                .with_header(
                    "WWW-Authenticate",
                    "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
                )
        };
        let Some(value) = authorization else {
            return Err(unauthorized("Access token is empty."));
        };
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return Err(unauthorized("Access token is empty."));
        };
        let tokens = self
            .access_tokens
            .lock()
            .map_err(|_| unauthorized("Access token validation failure."))?;
        match tokens.get(token.trim()) {
            Some(grant) if grant.expires > Instant::now() => Ok(grant.caller.clone()),
            Some(_) => Err(unauthorized(
                "Access token has expired or is not yet valid.",
            )),
            None => Err(unauthorized(
                "Access token validation failure. Invalid audience.",
            )),
        }
    }

    /// A new refresh token for a delegated grant.
    pub(crate) fn issue_refresh_token(
        &self,
        client_id: &str,
        user_id: &str,
        scopes: &[String],
    ) -> String {
        let token = format!(
            "1.Sim{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        if let Ok(mut tokens) = self.refresh_tokens.lock() {
            bounded_insert(
                &mut tokens,
                token.clone(),
                RefreshGrant {
                    client_id: client_id.to_string(),
                    user_id: user_id.to_string(),
                    scopes: scopes.to_vec(),
                    last_used: Instant::now(),
                    revoked: false,
                    expired: false,
                },
                |g| !g.revoked && !g.expired,
            );
        }
        token
    }

    pub(crate) fn refresh_grant(&self, token: &str) -> Option<RefreshGrant> {
        let mut tokens = self.refresh_tokens.lock().ok()?;
        let grant = tokens.get_mut(token)?;
        let snapshot = grant.clone();
        grant.last_used = Instant::now();
        Some(snapshot)
    }

    /// Revoke every refresh token issued so far (AADSTS50173 afterwards).
    pub fn revoke_all_refresh_tokens(&self) {
        if let Ok(mut tokens) = self.refresh_tokens.lock() {
            tokens.values_mut().for_each(|g| g.revoked = true);
        }
    }

    /// Revoke the refresh tokens of one user (by object id); returns how
    /// many.
    pub fn revoke_user_refresh_tokens(&self, user_id: &str) -> usize {
        let Ok(mut tokens) = self.refresh_tokens.lock() else {
            return 0;
        };
        let mut n = 0;
        for g in tokens.values_mut().filter(|g| g.user_id == user_id) {
            g.revoked = true;
            n += 1;
        }
        n
    }

    /// Make every refresh token issued so far expired by inactivity
    /// (AADSTS700082).
    pub fn expire_refresh_tokens(&self) {
        if let Ok(mut tokens) = self.refresh_tokens.lock() {
            tokens.values_mut().for_each(|g| g.expired = true);
        }
    }

    /// Make every access token issued so far expired (Graph answers 401).
    pub fn expire_access_tokens(&self) {
        if let Ok(mut tokens) = self.access_tokens.lock() {
            let past = Instant::now();
            tokens.values_mut().for_each(|g| g.expires = past);
        }
    }

    /// Put (or lift, with `None`) a sign-in block on a user (object id).
    pub fn set_block(&self, user_id: &str, block: Option<SignInBlock>) {
        if let Ok(mut blocks) = self.blocks.lock() {
            match block {
                Some(b) => {
                    blocks.insert(user_id.to_string(), b);
                }
                None => {
                    blocks.remove(user_id);
                }
            }
        }
    }

    pub(crate) fn block_of(&self, user_id: &str) -> Option<SignInBlock> {
        self.blocks.lock().ok()?.get(user_id).copied()
    }

    /// Make `/adminconsent` answer `error=permission_denied` (or grant again).
    pub fn set_deny_admin_consent(&self, deny: bool) {
        if let Ok(mut d) = self.deny_admin_consent.lock() {
            *d = deny;
        }
    }

    fn admin_consent_denied(&self) -> bool {
        self.deny_admin_consent.lock().map(|d| *d).unwrap_or(false)
    }
}

/// The Entra error for a sign-in blocked by a control.
pub(crate) fn block_error(block: SignInBlock) -> EntraError {
    match block {
        SignInBlock::Mfa => EntraError::new(
            "invalid_grant",
            50076,
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.",
        ),
        SignInBlock::ConditionalAccess => EntraError::new(
            "invalid_grant",
            53003,
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        ),
    }
}

/// AADSTS90002 for a tenant segment that names no tenant.
pub(crate) fn check_tenant(tenant: &Tenant, segment: &str) -> Result<(), EntraError> {
    if tenant.matches(segment) {
        Ok(())
    } else {
        Err(EntraError::new(
            "invalid_request",
            90002,
            format!(
                "Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        ))
    }
}

/// AADSTS700016 for a client id that names no application.
pub(crate) fn unknown_client(client_id: &str, tenant: &Tenant) -> EntraError {
    EntraError::new(
        "unauthorized_client",
        700016,
        format!(
            "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
            tenant
                .domains
                .first()
                .map(String::as_str)
                .unwrap_or(&tenant.id)
        ),
    )
}

/// The app `client_id` as seen through the tenant segment `segment` of the
/// request path: AADSTS700016 when no such app is registered, AADSTS50194
/// when a single-tenant app is used with `/common`, `/organizations` or
/// `/consumers` (graph-facts.md "Entra": "AADSTS50194: a single-tenant app
/// used with /common or /organizations — use the tenant id or domain").
pub(crate) fn find_app<'a>(
    tenant: &'a Tenant,
    segment: &str,
    client_id: &str,
) -> Result<&'a SimApp, EntraError> {
    let app = tenant
        .app(client_id)
        .ok_or_else(|| unknown_client(client_id, tenant))?;
    let shared_endpoint = ["common", "organizations", "consumers"]
        .iter()
        .any(|s| segment.eq_ignore_ascii_case(s));
    if app.single_tenant && shared_endpoint {
        return Err(EntraError::new(
            "invalid_request",
            50194,
            format!(
                "Application '{}'({}) is not configured as a multi-tenant application. Usage of the /common endpoint is not supported for such applications created after '10/15/2018'. Use a tenant-specific endpoint or configure the application to be multi-tenant.",
                app.client_id, app.display_name
            ),
        ));
    }
    Ok(app)
}

/// Bounded form body of the token and devicecode endpoints.
pub(crate) const MAX_FORM_BYTES: usize = 64 * 1024;

pub(crate) fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, EntraError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(EntraError::new(
            "invalid_request",
            900144,
            "The request body is too large.",
        ));
    }
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map(|pairs| pairs.into_iter().collect())
        .map_err(|_| {
            EntraError::new(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        })
}

pub fn routes() -> Router<SimState> {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/devicecode", post(device::devicecode))
        .route("/{tenant}/oauth2/v2.0/token", post(token::token))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(authorize::authorize).post(authorize::sign_in),
        )
        .route("/{tenant}/adminconsent", get(authorize::admin_consent))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(authorize::openid_configuration),
        )
        .route(
            "/devicelogin",
            get(device::device_login_page).post(device::device_login_submit),
        )
}
