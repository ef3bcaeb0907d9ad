//! Scope strings of the v2 endpoint ("Scopes and permissions in the
//! Microsoft identity platform"): space-separated, Graph permissions with or
//! without the Graph resource prefix (`https://graph.microsoft.com/` in the
//! global cloud; another in a national cloud), plus the OpenID
//! Connect scopes `openid profile email offline_access`.

use super::super::errors::EntraError;
use super::super::tenant::SimApp;

/// Graph's resources in the national clouds ("National cloud deployments",
/// deployments.md): a token of one cloud is not valid in another, and
/// asking one cloud's Entra for another cloud's resource fails.
const KNOWN_RESOURCES: &[&str] = &[
    "https://graph.microsoft.com",
    "https://graph.microsoft.us",
    "https://dod-graph.microsoft.us",
    "https://microsoftgraph.chinacloudapi.cn",
];
const OIDC: [&str; 4] = ["openid", "profile", "email", "offline_access"];
const MAX_SCOPES: usize = 64;

/// Short names of the requested scopes (`Mail.ReadWrite`, `openid`…):
/// the prefix `resource/` (this simulator's Graph resource) or Graph's
/// application id is dropped; a scope of another cloud's Graph is
/// AADSTS500011, as Entra answers for a resource it does not have.
pub fn parse(scope: &str, resource: &str) -> Result<Vec<String>, EntraError> {
    let resource = resource.trim_end_matches('/');
    let mut out = Vec::new();
    for s in scope.split_whitespace().take(MAX_SCOPES) {
        let lower = s.to_ascii_lowercase();
        let own = format!("{}/", resource.to_ascii_lowercase());
        if lower.starts_with(&own) {
            out.push(s.get(own.len()..).unwrap_or(s).to_string());
        } else if lower.starts_with("00000003-0000-0000-c000-000000000000/") {
            out.push(
                s.get("00000003-0000-0000-c000-000000000000/".len()..)
                    .unwrap_or(s)
                    .to_string(),
            );
        } else if let Some(other) = KNOWN_RESOURCES
            .iter()
            .find(|r| lower.starts_with(&format!("{r}/")))
        {
            return Err(EntraError::new(
                "invalid_resource",
                500011,
                format!(
                    "The resource principal named {other} was not found in the tenant. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
                ),
            ));
        } else {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

pub fn is_oidc(scope: &str) -> bool {
    OIDC.iter().any(|o| o.eq_ignore_ascii_case(scope))
}

pub fn has(scopes: &[String], name: &str) -> bool {
    scopes.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// Check delegated scopes against the app's consented ones: `.default`
/// expands to all of them; anything not consented is AADSTS65001.
pub fn delegated(app: &SimApp, requested: &[String]) -> Result<Vec<String>, EntraError> {
    let mut granted: Vec<String> = Vec::new();
    for scope in requested {
        if scope.eq_ignore_ascii_case(".default") {
            for c in &app.consented_scopes {
                if !has(&granted, c) {
                    granted.push(c.clone());
                }
            }
            continue;
        }
        let Some(consented) = app
            .consented_scopes
            .iter()
            .find(|c| c.eq_ignore_ascii_case(scope))
        else {
            if is_oidc(scope) {
                granted.push(scope.to_ascii_lowercase());
                continue;
            }
            return Err(EntraError::new(
                "invalid_grant",
                65001,
                format!(
                    "The user or administrator has not consented to use the application with ID '{}' named '{}'. Send an interactive authorization request for this user and resource.",
                    app.client_id, app.display_name
                ),
            ));
        };
        if !has(&granted, consented) {
            granted.push(consented.clone());
        }
    }
    if granted.iter().all(|s| is_oidc(s)) && !granted.is_empty() {
        // Only OIDC scopes: Entra adds User.Read for Graph.
        if app.consented_scopes.iter().any(|c| c == "User.Read") {
            granted.push("User.Read".into());
        }
    }
    if granted.is_empty() {
        return Err(EntraError::new(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        ));
    }
    Ok(granted)
}

/// The Graph permissions among `scopes` (no OIDC scopes): what `scp` holds.
pub fn graph_permissions(scopes: &[String]) -> Vec<String> {
    scopes.iter().filter(|s| !is_oidc(s)).cloned().collect()
}

/// The `scope` field of a token response: Graph permissions with their
/// resource prefix, then the OpenID Connect scopes that were granted.
pub fn response_scope(scopes: &[String], resource: &str) -> String {
    let resource = resource.trim_end_matches('/');
    let mut parts: Vec<String> = graph_permissions(scopes)
        .iter()
        .map(|s| format!("{resource}/{s}"))
        .collect();
    parts.extend(scopes.iter().filter(|s| is_oidc(s)).cloned());
    parts.join(" ")
}
