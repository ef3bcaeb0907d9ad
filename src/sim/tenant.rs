//! The simulated tenant's directory: users, shared mailboxes and app
//! registrations. Immutable after start-up (run-time changes such as
//! "expire every client secret" are faults, kept in `faults`).
//!
//! The demo seed is fixed so that documentation, examples and tests can name
//! its ids. Nothing here is shared with `graph/` or `auth/`.

use std::collections::BTreeSet;

/// The demo tenant's id (a GUID, as Entra ID uses) and its verified domain.
pub const DEMO_TENANT_ID: &str = "7d0e2b6c-3f4a-4e8b-9a61-0c5d2f1e8a77";
pub const DEMO_TENANT_DOMAIN: &str = "example.com";
/// A public client (device code, auth code + PKCE), like an app registered
/// with "Allow public client flows".
pub const DEMO_PUBLIC_CLIENT_ID: &str = "4b1f0c2e-8d3a-4f6b-9e27-5a0c1d2e3f40";
/// A confidential client with application permissions (client credentials).
pub const DEMO_CONFIDENTIAL_CLIENT_ID: &str = "c0ffee00-1d2e-4f3a-8b4c-5d6e7f809a1b";
/// The demo confidential app's client secret *value* ...
pub const DEMO_CLIENT_SECRET: &str = "Sim8Q~demo.secret.value-0123456789abcdefXYZ";
/// ... and its secret *id*, which admins paste by mistake (AADSTS7000215).
pub const DEMO_CLIENT_SECRET_ID: &str = "2f6a9c1e-5b3d-4e7f-8a90-1b2c3d4e5f60";

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub domains: Vec<String>,
    pub users: Vec<SimUser>,
    pub apps: Vec<SimApp>,
}

#[derive(Debug, Clone)]
pub struct SimUser {
    /// Object id (GUID).
    pub id: String,
    /// userPrincipalName, also the primary SMTP address.
    pub upn: String,
    pub display_name: String,
    /// Password for the sign-in page of `authorize` (and ROPC, if used).
    pub password: String,
    /// Other SMTP addresses of this mailbox (proxyAddresses).
    pub aliases: Vec<String>,
    /// `false` for an unlicensed / on-premises mailbox: Graph mail answers
    /// 404 `MailboxNotEnabledForRESTAPI`.
    pub mailbox_enabled: bool,
    /// `true` for a shared mailbox (no sign-in).
    pub shared: bool,
    /// Mailboxes (UPNs) this user has Full Access to.
    pub full_access: BTreeSet<String>,
    /// Mailboxes (UPNs) this user may Send As.
    pub send_as: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct SimApp {
    pub client_id: String,
    pub display_name: String,
    /// Public client flows allowed (device code, PKCE without a secret).
    pub public_client: bool,
    pub redirect_uris: Vec<String>,
    pub secrets: Vec<SimSecret>,
    /// Registered certificates, DER.
    pub certificates: Vec<Vec<u8>>,
    /// Delegated scopes the tenant has consented to (short names such as
    /// `Mail.ReadWrite`). A request for anything else fails with AADSTS65001.
    pub consented_scopes: BTreeSet<String>,
    /// Application permissions granted with admin consent (app-only roles).
    pub app_roles: BTreeSet<String>,
    /// Registered for "accounts in this organizational directory only"
    /// (`signInAudience` AzureADMyOrg, the portal's default): such an app
    /// is refused on `/common` and `/organizations` with AADSTS50194.
    pub single_tenant: bool,
}

#[derive(Debug, Clone)]
pub struct SimSecret {
    pub id: String,
    pub value: String,
    /// Already expired at start-up (AADSTS7000222).
    pub expired: bool,
}

/// A demo certificate for the confidential app: the registered certificate
/// and its private key, both PEM, so that tests and examples can sign client
/// assertions.
#[derive(Debug, Clone)]
pub struct DemoCertificate {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

impl Tenant {
    pub fn user(&self, id_or_upn: &str) -> Option<&SimUser> {
        self.users
            .iter()
            .find(|u| u.id.eq_ignore_ascii_case(id_or_upn) || u.upn.eq_ignore_ascii_case(id_or_upn))
    }

    /// The user whose primary address or alias is `address`.
    pub fn user_by_address(&self, address: &str) -> Option<&SimUser> {
        self.users.iter().find(|u| {
            u.upn.eq_ignore_ascii_case(address)
                || u.aliases.iter().any(|a| a.eq_ignore_ascii_case(address))
        })
    }

    pub fn app(&self, client_id: &str) -> Option<&SimApp> {
        self.apps
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    }

    /// Whether `tenant` (as written in `/{tenant}/oauth2/...`) names this
    /// tenant: its GUID, a verified domain, or `common` / `organizations`.
    pub fn matches(&self, tenant: &str) -> bool {
        tenant.eq_ignore_ascii_case("common")
            || tenant.eq_ignore_ascii_case("organizations")
            || tenant.eq_ignore_ascii_case(&self.id)
            || self.domains.iter().any(|d| d.eq_ignore_ascii_case(tenant))
    }

    /// The demo tenant: alice and bob (licensed users), support@ (a shared
    /// mailbox alice may read and send as), carol (no Exchange Online
    /// licence), a public client and a confidential app registered with a
    /// secret and `certificate`.
    pub fn demo(certificate: &DemoCertificate) -> Tenant {
        let scopes: BTreeSet<String> = [
            "openid",
            "profile",
            "email",
            "offline_access",
            "User.Read",
            "Mail.Read",
            "Mail.ReadWrite",
            "Mail.Send",
            "Mail.ReadWrite.Shared",
            "Mail.Send.Shared",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let user = |id: &str, name: &str, upn: &str, password: &str| SimUser {
            id: id.into(),
            upn: upn.into(),
            display_name: name.into(),
            password: password.into(),
            aliases: Vec::new(),
            mailbox_enabled: true,
            shared: false,
            full_access: BTreeSet::new(),
            send_as: BTreeSet::new(),
        };
        let mut alice = user(
            "a11ce000-0000-4000-8000-000000000001",
            "Alice Example",
            "alice@example.com",
            "alice",
        );
        alice.aliases.push("alice.alias@example.com".into());
        alice.full_access.insert("support@example.com".into());
        alice.send_as.insert("support@example.com".into());
        let bob = user(
            "b0b00000-0000-4000-8000-000000000002",
            "Bob Example",
            "bob@example.com",
            "bob",
        );
        let mut support = user(
            "5c0ff000-0000-4000-8000-000000000003",
            "Support",
            "support@example.com",
            "",
        );
        support.shared = true;
        let mut carol = user(
            "ca501000-0000-4000-8000-000000000004",
            "Carol Unlicensed",
            "carol@example.com",
            "carol",
        );
        carol.mailbox_enabled = false;
        Tenant {
            id: DEMO_TENANT_ID.into(),
            domains: vec![DEMO_TENANT_DOMAIN.into()],
            users: vec![alice, bob, support, carol],
            apps: vec![
                SimApp {
                    client_id: DEMO_PUBLIC_CLIENT_ID.into(),
                    display_name: "graphgate (demo public client)".into(),
                    public_client: true,
                    redirect_uris: vec!["http://localhost".into()],
                    secrets: Vec::new(),
                    certificates: Vec::new(),
                    consented_scopes: scopes,
                    app_roles: BTreeSet::new(),
                    // Multi-tenant, as a published public client is, so
                    // `/organizations` works for it.
                    single_tenant: false,
                },
                SimApp {
                    client_id: DEMO_CONFIDENTIAL_CLIENT_ID.into(),
                    display_name: "graphgate (demo confidential app)".into(),
                    public_client: false,
                    redirect_uris: vec!["http://localhost".into()],
                    secrets: vec![SimSecret {
                        id: DEMO_CLIENT_SECRET_ID.into(),
                        value: DEMO_CLIENT_SECRET.into(),
                        expired: false,
                    }],
                    certificates: vec![certificate.cert_der.clone()],
                    consented_scopes: BTreeSet::new(),
                    app_roles: ["Mail.ReadWrite", "Mail.Send", "User.Read.All"]
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    // The portal's default: this directory only.
                    single_tenant: true,
                },
            ],
        }
    }
}

impl DemoCertificate {
    /// A fresh self-signed RSA-free certificate would not do: Entra client
    /// assertions are RS256/PS256, so the key is RSA 2048.
    pub fn generate() -> anyhow::Result<DemoCertificate> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        let params = rcgen::CertificateParams::new(vec!["graphgate-demo-app".to_string()])?;
        let cert = params.self_signed(&key)?;
        Ok(DemoCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        })
    }
}
