//! Device code grant: pending, approved (control, auto-approve, HTML
//! page), declined, expired, slow_down, bad code; devicecode refusals.

use super::*;

#[tokio::test]
async fn device_code_pending_then_approved_by_control() {
    let sim = start(|_| {}).await;
    let grant = sim.device_code().await;
    let user_code = grant["user_code"].as_str().unwrap();
    assert!((8..=9).contains(&user_code.len()), "{user_code}");
    assert_eq!(grant["verification_uri"], sim.url("/devicelogin"));
    assert_eq!(grant["expires_in"], 900);
    assert!(grant["message"].as_str().unwrap().contains(user_code));
    let device_code = grant["device_code"].as_str().unwrap();

    let (status, body) = sim.poll(device_code).await;
    assert_entra(status, &body, 400, "authorization_pending", 70016);

    let (status, _) = sim
        .control(
            "/_sim/devicelogin",
            json!({"user_code": user_code, "user": "alice@example.com", "approve": true}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = sim.poll(device_code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["refresh_token"].is_string());
    let scope = body["scope"].as_str().unwrap();
    assert!(
        scope.contains("https://graph.microsoft.com/Mail.ReadWrite"),
        "{scope}"
    );
    assert!(scope.contains("offline_access"), "{scope}");
    let id = jwt_claims(body["id_token"].as_str().unwrap());
    assert_eq!(id["preferred_username"], "alice@example.com");
    assert_eq!(id["tid"], DEMO_TENANT_ID);
    assert_eq!(id["aud"], DEMO_PUBLIC_CLIENT_ID);
    let access = jwt_claims(body["access_token"].as_str().unwrap());
    assert_eq!(access["aud"], "https://graph.microsoft.com");
    assert_eq!(access["upn"], "alice@example.com");
    assert!(access["scp"].as_str().unwrap().contains("Mail.Send"));

    // Redeemed once only.
    let (status, body) = sim.poll(device_code).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn device_code_unknown_user_code_is_404() {
    let sim = start(|_| {}).await;
    let (status, body) = sim
        .control(
            "/_sim/devicelogin",
            json!({"user_code": "ZZZZ-ZZZZ", "user": "alice@example.com", "approve": true}),
        )
        .await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("ZZZZ-ZZZZ"));
}

#[tokio::test]
async fn device_code_declined_expired_slow_down_and_bad_code() {
    let sim = start(|c| c.device_code_interval = Duration::from_secs(30)).await;
    let grant = sim.device_code().await;
    let device_code = grant["device_code"].as_str().unwrap();
    let (status, body) = sim.poll(device_code).await;
    assert_entra(status, &body, 400, "authorization_pending", 70016);
    let (status, body) = sim.poll(device_code).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "slow_down", "{body}");

    sim.state
        .device_login(grant["user_code"].as_str().unwrap(), "", false)
        .unwrap();
    let (status, body) = sim.poll(device_code).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "authorization_declined", "{body}");

    let (status, body) = sim.poll("not-a-device-code").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "bad_verification_code", "{body}");

    let sim = start(|c| c.device_code_lifetime = Duration::from_secs(0)).await;
    let grant = sim.device_code().await;
    let (status, body) = sim.poll(grant["device_code"].as_str().unwrap()).await;
    assert_entra(status, &body, 400, "expired_token", 70019);
}

#[tokio::test]
async fn device_code_auto_approve_and_browser_page() {
    let sim =
        start(|c| c.device_auto_approve = Some((Duration::ZERO, "bob@example.com".into()))).await;
    let grant = sim.device_code().await;
    let (status, body) = sim.poll(grant["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        jwt_claims(body["id_token"].as_str().unwrap())["preferred_username"],
        "bob@example.com"
    );

    // A person completes a second sign-in on the HTML page.
    let sim = start(|_| {}).await;
    let grant = sim.device_code().await;
    let page = sim
        .http
        .get(sim.url("/devicelogin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"user_code\""), "{page}");
    let wrong = sim
        .http
        .post(sim.url("/devicelogin"))
        .form_pairs(&[
            ("user_code", grant["user_code"].as_str().unwrap()),
            ("username", "alice@example.com"),
            ("password", "wrong"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(wrong.contains("password is incorrect"), "{wrong}");
    let done = sim
        .http
        .post(sim.url("/devicelogin"))
        .form_pairs(&[
            ("user_code", grant["user_code"].as_str().unwrap()),
            ("username", "alice@example.com"),
            ("password", "alice"),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(done.contains("signed in"), "{done}");
    let (status, body) = sim.poll(grant["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn devicecode_refuses_confidential_and_unknown_clients_and_tenants() {
    let sim = start(|_| {}).await;
    let path = format!("/{DEMO_TENANT_ID}/oauth2/v2.0/devicecode");
    let (status, body) = sim
        .form_pairs(
            &path,
            &[
                ("client_id", DEMO_CONFIDENTIAL_CLIENT_ID),
                ("scope", SCOPES),
            ],
        )
        .await;
    assert_entra(status, &body, 401, "invalid_client", 7000218);
    let (status, body) = sim
        .form_pairs(
            &path,
            &[
                ("client_id", "00000000-0000-0000-0000-00000000dead"),
                ("scope", SCOPES),
            ],
        )
        .await;
    assert_entra(status, &body, 400, "unauthorized_client", 700016);
    let (status, body) = sim
        .form_pairs(
            "/nowhere.example/oauth2/v2.0/devicecode",
            &[("client_id", DEMO_PUBLIC_CLIENT_ID), ("scope", SCOPES)],
        )
        .await;
    assert_entra(status, &body, 400, "invalid_request", 90002);
    // The verified domain and `organizations` name the tenant too.
    for tenant in ["example.com", "organizations"] {
        let (status, body) = sim
            .form_pairs(
                &format!("/{tenant}/oauth2/v2.0/devicecode"),
                &[("client_id", DEMO_PUBLIC_CLIENT_ID), ("scope", SCOPES)],
            )
            .await;
        assert_eq!(status, 200, "{tenant}: {body}");
    }
    // A scope the tenant never consented to: Entra still issues the code
    // (the verification page asks for consent) and the poll that redeems
    // the approved code says AADSTS65001 (graph-facts.md, "Consent during
    // device code").
    let (status, grant) = sim
        .form_pairs(
            &path,
            &[
                ("client_id", DEMO_PUBLIC_CLIENT_ID),
                ("scope", "https://graph.microsoft.com/Files.ReadWrite.All"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{grant}");
    let device_code = grant["device_code"].as_str().unwrap();
    let (status, body) = sim.poll(device_code).await;
    assert_entra(status, &body, 400, "authorization_pending", 70016);
    let (status, _) = sim
        .control(
            "/_sim/devicelogin",
            json!({"user_code": grant["user_code"], "user": "alice@example.com", "approve": true}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = sim.poll(device_code).await;
    assert_entra(status, &body, 400, "invalid_grant", 65001);
}
