//! The admin-consent link and the permissions it grants, in words: one
//! source for `graphgate consent-url` and the web console's account page.

use crate::config::Config;

/// The URL, built from `microsoft.authority_url`, `microsoft.tenant` and
/// `microsoft.client_id`.
pub fn consent_url(config: &Config, redirect_uri: &str) -> anyhow::Result<String> {
    let m = &config.microsoft;
    if m.client_id.trim().is_empty() {
        anyhow::bail!(
            "microsoft.client_id is not set (GRAPHGATE_MICROSOFT_CLIENT_ID): put the \
             Application (client) ID of your app registration there"
        );
    }
    let tenant = m.tenant.trim();
    if tenant.eq_ignore_ascii_case("common") || tenant.eq_ignore_ascii_case("consumers") {
        anyhow::bail!(
            "admin consent needs your tenant: set microsoft.tenant \
             (GRAPHGATE_MICROSOFT_TENANT) to your tenant id or domain, not {tenant:?}"
        );
    }
    let authority = m.authority();
    let mut url = url::Url::parse(authority.trim_end_matches('/'))
        .map_err(|e| anyhow::anyhow!("microsoft.authority_url {authority:?} is not a URL: {e}"))?;
    url.path_segments_mut()
        .map_err(|_| anyhow::anyhow!("microsoft.authority_url cannot be a base URL"))?
        .pop_if_empty()
        .push(tenant)
        .push("adminconsent");
    let state = uuid::Uuid::new_v4().simple().to_string();
    url.query_pairs_mut()
        .append_pair("client_id", m.client_id.trim())
        .append_pair("state", &state)
        .append_pair("redirect_uri", redirect_uri);
    Ok(url.to_string())
}

/// The Microsoft Graph permissions graphgate asks for, each with what it
/// lets graphgate do, in words (Microsoft Graph permissions reference).
/// Delegated ones act as the signed-in user; application ones (app-only
/// accounts) on any mailbox the tenant's RBAC for Applications allows.
pub const PERMISSIONS: &[(&str, &str)] = &[
    (
        "offline_access, openid, profile (delegated)",
        "stay signed in with a refresh token, and learn who signed in (to check it is the \
         mailbox owner)",
    ),
    (
        "Mail.ReadWrite (delegated)",
        "read, flag, move and delete mail in the signed-in user's mailbox (IMAP, POP3)",
    ),
    (
        "Mail.Send (delegated)",
        "send mail as the signed-in user (SMTP)",
    ),
    (
        "Mail.ReadWrite.Shared, Mail.Send.Shared (delegated, only with shared mailboxes)",
        "the same in mailboxes shared with the user (Full Access, Send As)",
    ),
    (
        "Mail.ReadWrite, Mail.Send (application, app-only accounts)",
        "read and send mail of any mailbox without a signed-in user; limit it to the \
         gateway's mailboxes with RBAC for Applications in Exchange Online",
    ),
];
