//! Scope strings of the v2 endpoint ("Scopes and permissions in the
//! Microsoft identity platform"): space-separated, Graph permissions with or
//! without the `https://graph.microsoft.com/` prefix, plus the OpenID
//! Connect scopes `openid profile email offline_access`.

use super::super::errors::EntraError;
use super::super::tenant::SimApp;

pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
const OIDC: [&str; 4] = ["openid", "profile", "email", "offline_access"];
const MAX_SCOPES: usize = 64;

/// Short names of the requested scopes (`Mail.ReadWrite`, `openid`…).
pub fn parse(scope: &str) -> Vec<String> {
    scope
        .split_whitespace()
        .take(MAX_SCOPES)
        .map(|s| {
            let lower = s.to_ascii_lowercase();
            if lower.starts_with("https://graph.microsoft.com/") {
                s.get("https://graph.microsoft.com/".len()..)
                    .unwrap_or(s)
                    .to_string()
            } else if lower.starts_with("00000003-0000-0000-c000-000000000000/") {
                s.get("00000003-0000-0000-c000-000000000000/".len()..)
                    .unwrap_or(s)
                    .to_string()
            } else {
                s.to_string()
            }
        })
        .collect()
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
pub fn response_scope(scopes: &[String]) -> String {
    let mut parts: Vec<String> = graph_permissions(scopes)
        .iter()
        .map(|s| format!("{GRAPH_RESOURCE}/{s}"))
        .collect();
    parts.extend(scopes.iter().filter(|s| is_oidc(s)).cloned());
    parts.join(" ")
}
