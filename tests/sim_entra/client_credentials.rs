//! Client credentials: secret value, secret id (7000215), expired secret
//! (7000222), wrong scope, unknown client, certificate assertions (PS256
//! with `x5t#S256`, RS256 with `x5t`, wrong key, wrong aud, expired), a
//! single-tenant app on a shared endpoint (50194).

use super::*;

async fn client_credentials(sim: &Sim, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", DEMO_CONFIDENTIAL_CLIENT_ID),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    form.extend_from_slice(extra);
    sim.token(&form).await
}

#[tokio::test]
async fn client_credentials_with_secret() {
    let sim = start(|_| {}).await;
    let (status, body) = client_credentials(&sim, &[("client_secret", DEMO_CLIENT_SECRET)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none());
    let claims = jwt_claims(body["access_token"].as_str().unwrap());
    assert!(
        claims["roles"]
            .as_array()
            .unwrap()
            .contains(&json!("Mail.ReadWrite"))
    );
    assert_eq!(claims["appid"], DEMO_CONFIDENTIAL_CLIENT_ID);

    let (status, body) =
        client_credentials(&sim, &[("client_secret", DEMO_CLIENT_SECRET_ID)]).await;
    assert_entra(status, &body, 401, "invalid_client", 7000215);
    assert!(body["error_description"].as_str().unwrap().contains(
        "Ensure the secret being sent in the request is the client secret value, not the client secret ID"
    ));

    let (status, body) = sim
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEMO_CONFIDENTIAL_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/Mail.Read"),
        ])
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_scope");

    let (status, body) = sim
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .await;
    assert_entra(status, &body, 400, "unauthorized_client", 700016);

    sim.control("/_sim/faults", json!({"expire_client_secrets": true}))
        .await;
    let (status, body) = client_credentials(&sim, &[("client_secret", DEMO_CLIENT_SECRET)]).await;
    assert_entra(status, &body, 401, "invalid_client", 7000222);
}

/// The confidential demo app is single-tenant (the portal's default):
/// Entra refuses it on `/organizations` and `/common` with AADSTS50194,
/// for every grant; the tenant id and the verified domain work.
#[tokio::test]
async fn a_single_tenant_app_is_refused_on_shared_endpoints() {
    let sim = start(|_| {}).await;
    let secret_grant = |tenant: &'static str| {
        let sim = &sim;
        async move {
            sim.form_pairs(
                &format!("/{tenant}/oauth2/v2.0/token"),
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", DEMO_CONFIDENTIAL_CLIENT_ID),
                    ("client_secret", DEMO_CLIENT_SECRET),
                    ("scope", "https://graph.microsoft.com/.default"),
                ],
            )
            .await
        }
    };
    for tenant in ["organizations", "common"] {
        let (status, body) = secret_grant(tenant).await;
        assert_entra(status, &body, 400, "invalid_request", 50194);
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("not configured as a multi-tenant application"),
            "{body}"
        );
    }
    for tenant in [DEMO_TENANT_ID, "example.com"] {
        let (status, body) = secret_grant(tenant).await;
        assert_eq!(status, 200, "{tenant}: {body}");
    }
    // The multi-tenant public client still signs in on `/organizations`.
    let (status, body) = sim
        .form_pairs(
            "/organizations/oauth2/v2.0/devicecode",
            &[("client_id", DEMO_PUBLIC_CLIENT_ID), ("scope", SCOPES)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A simulator serving a national cloud (US Government L4) issues tokens
/// for that cloud's Graph resource, and refuses scopes of another cloud
/// with AADSTS500011, as Entra does: tokens of one cloud are not valid in
/// another (deployments.md). graphgate's client asks with the prefix of
/// its `microsoft.cloud`.
#[tokio::test]
async fn a_national_cloud_issues_its_own_resource_and_refuses_the_global_one() {
    let sim = start(|c| c.graph_resource = "https://graph.microsoft.us".into()).await;
    let request = |scope: &'static str| {
        let sim = &sim;
        async move {
            sim.token(&[
                ("grant_type", "client_credentials"),
                ("client_id", DEMO_CONFIDENTIAL_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("scope", scope),
            ])
            .await
        }
    };
    let (status, body) = request("https://graph.microsoft.us/.default").await;
    assert_eq!(status, 200, "{body}");
    let claims = jwt_claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://graph.microsoft.us");
    let (status, body) = request("https://graph.microsoft.com/.default").await;
    assert_entra(status, &body, 400, "invalid_resource", 500011);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("https://graph.microsoft.com"),
        "{body}"
    );
    // Delegated sign-in with the cloud's prefix is granted with it.
    let (status, body) = sim
        .form_pairs(
            &format!("/{DEMO_TENANT_ID}/oauth2/v2.0/devicecode"),
            &[
                ("client_id", DEMO_PUBLIC_CLIENT_ID),
                (
                    "scope",
                    "offline_access https://graph.microsoft.us/Mail.ReadWrite",
                ),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sim
        .form_pairs(
            &format!("/{DEMO_TENANT_ID}/oauth2/v2.0/devicecode"),
            &[
                ("client_id", DEMO_PUBLIC_CLIENT_ID),
                (
                    "scope",
                    "offline_access https://graph.microsoft.com/Mail.ReadWrite",
                ),
            ],
        )
        .await;
    assert_entra(status, &body, 400, "invalid_resource", 500011);
}

/// A client assertion signed with the demo certificate's key (or
/// `key_pem`), with the given header thumbprint kind and claims.
fn assertion(
    sim: &Sim,
    alg: jsonwebtoken::Algorithm,
    s256: bool,
    key_pem: &str,
    aud: &str,
    lifetime: i64,
) -> String {
    let der = &sim.state.certificate().cert_der;
    let mut header = jsonwebtoken::Header::new(alg);
    if s256 {
        header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(der)));
    } else {
        use sha1::Digest as _;
        header.x5t = Some(URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(der)));
    }
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "aud": aud,
        "iss": DEMO_CONFIDENTIAL_CLIENT_ID,
        "sub": DEMO_CONFIDENTIAL_CLIENT_ID,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now,
        "iat": now,
        "exp": now + lifetime,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test]
async fn client_credentials_with_certificate_assertions() {
    let sim = start(|_| {}).await;
    let key = sim.state.certificate().key_pem.clone();
    let aud = format!("https://login.microsoftonline.com/{DEMO_TENANT_ID}/oauth2/v2.0/token");
    let local_aud = sim.url(&format!("/{DEMO_TENANT_ID}/oauth2/v2.0/token"));
    let sim = &sim;
    let with = move |a: String| async move {
        client_credentials(
            sim,
            &[
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &a),
            ],
        )
        .await
    };
    let (status, body) = with(assertion(
        sim,
        jsonwebtoken::Algorithm::PS256,
        true,
        &key,
        &aud,
        300,
    ))
    .await;
    assert_eq!(status, 200, "PS256 x5t#S256: {body}");
    let (status, body) = with(assertion(
        sim,
        jsonwebtoken::Algorithm::RS256,
        false,
        &key,
        &local_aud,
        300,
    ))
    .await;
    assert_eq!(status, 200, "RS256 x5t: {body}");

    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .unwrap()
        .serialize_pem();
    let (status, body) = with(assertion(
        sim,
        jsonwebtoken::Algorithm::PS256,
        true,
        &other,
        &aud,
        300,
    ))
    .await;
    assert_entra(status, &body, 401, "invalid_client", 700027);

    let (status, body) = with(assertion(
        sim,
        jsonwebtoken::Algorithm::PS256,
        true,
        &key,
        "https://elsewhere.example/token",
        300,
    ))
    .await;
    assert_entra(status, &body, 401, "invalid_client", 700023);

    // Microsoft documents no maximum for `exp` (certificate-credentials.md;
    // graph-facts.md "Entra"): an hour-long assertion is accepted.
    let (status, body) = with(assertion(
        sim,
        jsonwebtoken::Algorithm::RS256,
        true,
        &key,
        &aud,
        3600,
    ))
    .await;
    assert_eq!(status, 200, "an assertion valid for an hour: {body}");
    // One that expired an hour ago is out of its valid time range.
    let (status, body) = with(assertion(
        sim,
        jsonwebtoken::Algorithm::RS256,
        true,
        &key,
        &aud,
        -3600,
    ))
    .await;
    assert_entra(status, &body, 401, "invalid_client", 700024);
}

#[tokio::test]
async fn basic_auth_secret_and_public_client_with_secret() {
    use base64::engine::general_purpose::STANDARD;
    let sim = start(|_| {}).await;
    let basic = STANDARD.encode(format!(
        "{DEMO_CONFIDENTIAL_CLIENT_ID}:{}",
        percent_encoding::utf8_percent_encode(
            DEMO_CLIENT_SECRET,
            percent_encoding::NON_ALPHANUMERIC
        )
    ));
    let response = sim
        .http
        .post(sim.url(&format!("/{DEMO_TENANT_ID}/oauth2/v2.0/token")))
        .header("authorization", format!("Basic {basic}"))
        .form_pairs(&[
            ("grant_type", "client_credentials"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let (status, body) = sim
        .token(&[
            ("grant_type", "password"),
            ("client_id", DEMO_PUBLIC_CLIENT_ID),
            ("client_secret", "anything"),
            ("username", "alice@example.com"),
            ("password", "alice"),
            ("scope", SCOPES),
        ])
        .await;
    assert_entra(status, &body, 401, "invalid_client", 700025);
}
