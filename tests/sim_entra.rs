//! The simulator's Entra ID over real sockets, with raw HTTP (reqwest):
//! every grant succeeding and failing the Microsoft way (HTTP status,
//! `error`, `error_codes`, the AADSTS number in `error_description`), and
//! the `/_sim` controls that drive them.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use graphgate::sim::tenant::{
    DEMO_CLIENT_SECRET, DEMO_CLIENT_SECRET_ID, DEMO_CONFIDENTIAL_CLIENT_ID, DEMO_PUBLIC_CLIENT_ID,
    DEMO_TENANT_ID,
};
use graphgate::sim::{SimConfig, SimState};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[path = "sim_entra/client_credentials.rs"]
mod client_credentials;
#[path = "sim_entra/device_code.rs"]
mod device_code;

const SCOPES: &str = "offline_access openid profile https://graph.microsoft.com/Mail.ReadWrite https://graph.microsoft.com/Mail.Send";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

struct Sim {
    base: String,
    state: SimState,
    http: reqwest::Client,
    _shutdown: oneshot::Sender<()>,
}

async fn start(configure: impl FnOnce(&mut SimConfig)) -> Sim {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = SimConfig {
        public_url: base.clone(),
        seed_messages: false,
        device_code_interval: Duration::from_secs(0),
        ..SimConfig::default()
    };
    configure(&mut config);
    let state = SimState::new(config).unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(graphgate::sim::serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Sim {
        base,
        state,
        http,
        _shutdown: tx,
    }
}

impl Sim {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn form_pairs(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .form_pairs(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        self.form_pairs(&format!("/{DEMO_TENANT_ID}/oauth2/v2.0/token"), form)
            .await
    }

    async fn control(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn stats(&self) -> Value {
        self.http
            .get(self.url("/_sim/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn device_code(&self) -> Value {
        let (status, body) = self
            .form_pairs(
                &format!("/{DEMO_TENANT_ID}/oauth2/v2.0/devicecode"),
                &[("client_id", DEMO_PUBLIC_CLIENT_ID), ("scope", SCOPES)],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn poll(&self, device_code: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", DEVICE_GRANT),
            ("client_id", DEMO_PUBLIC_CLIENT_ID),
            ("device_code", device_code),
        ])
        .await
    }

    /// Authorization code + PKCE with `login_hint`: returns the redirect's
    /// code and state.
    async fn authorize(&self, verifier: &str, redirect_uri: &str) -> (String, String) {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let response = self
            .http
            .get(self.url(&format!("/{DEMO_TENANT_ID}/oauth2/v2.0/authorize")))
            .query_pairs(&[
                ("client_id", DEMO_PUBLIC_CLIENT_ID),
                ("response_type", "code"),
                ("redirect_uri", redirect_uri),
                ("scope", SCOPES),
                ("state", "st-123"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("login_hint", "alice@example.com"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302);
        let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(redirect_uri), "{location}");
        let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        (q["code"].clone(), q["state"].clone())
    }

    async fn sign_in(&self) -> Value {
        let verifier = "a-verifier-of-enough-length-0123456789-abcdefghijkl";
        let redirect = "http://localhost:53111";
        let (code, _) = self.authorize(verifier, redirect).await;
        let (status, body) = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("client_id", DEMO_PUBLIC_CLIENT_ID),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", verifier),
            ])
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", DEMO_PUBLIC_CLIENT_ID),
            ("refresh_token", refresh_token),
        ])
        .await
    }
}

/// Assert an Entra error: HTTP status, `error`, `error_codes` and the
/// AADSTS number leading `error_description`.
fn assert_entra(status: u16, body: &Value, want_status: u16, error: &str, code: u64) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert!(description.contains("\r\nTrace ID: "), "{description}");
}

/// reqwest is built without its `form`/`query` features here.
trait Encoded: Sized {
    fn form_pairs(self, pairs: &[(&str, &str)]) -> Self;
    fn query_pairs(self, pairs: &[(&str, &str)]) -> Self;
}

impl Encoded for reqwest::RequestBuilder {
    fn form_pairs(self, pairs: &[(&str, &str)]) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(pairs).unwrap())
    }
    fn query_pairs(self, pairs: &[(&str, &str)]) -> Self {
        let (client, request) = self.build_split();
        let mut request = request.unwrap();
        request.url_mut().query_pairs_mut().extend_pairs(pairs);
        reqwest::RequestBuilder::from_parts(client, request)
    }
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn authorization_code_with_pkce_single_use_and_wrong_verifier() {
    let sim = start(|_| {}).await;
    let verifier = "verifier-0123456789-0123456789-0123456789-abcdef";
    let redirect = "http://localhost:40123/";
    let (code, state) = sim.authorize(verifier, redirect).await;
    assert_eq!(state, "st-123");
    let redeem = |code: String, verifier: &'static str, redirect: &'static str| {
        let sim = &sim;
        async move {
            sim.token(&[
                ("grant_type", "authorization_code"),
                ("client_id", DEMO_PUBLIC_CLIENT_ID),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", verifier),
            ])
            .await
        }
    };
    let (status, body) = redeem(
        code.clone(),
        "verifier-0123456789-0123456789-0123456789-abcdef",
        redirect,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = redeem(
        code,
        "verifier-0123456789-0123456789-0123456789-abcdef",
        redirect,
    )
    .await;
    assert_entra(status, &body, 400, "invalid_grant", 70008);

    let (code, _) = sim.authorize(verifier, redirect).await;
    let (status, body) = redeem(
        code,
        "another-verifier-0123456789-0123456789-0123456",
        redirect,
    )
    .await;
    assert_entra(status, &body, 400, "invalid_grant", 501481);
    assert!(body["error_description"].as_str().unwrap().contains(
        "The Code_Verifier does not match the code_challenge supplied in the authorization request."
    ));

    let (code, _) = sim.authorize(verifier, redirect).await;
    let (status, body) = redeem(
        code,
        "verifier-0123456789-0123456789-0123456789-abcdef",
        "http://localhost:9/",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn authorize_rejects_unregistered_redirect_without_redirecting() {
    let sim = start(|_| {}).await;
    let response = sim
        .http
        .get(sim.url(&format!("/{DEMO_TENANT_ID}/oauth2/v2.0/authorize")))
        .query_pairs(&[
            ("client_id", DEMO_PUBLIC_CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", "https://evil.example/cb"),
            ("scope", SCOPES),
            ("code_challenge", "abc"),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    assert!(response.text().await.unwrap().contains("AADSTS50011"));

    // Without login_hint: a sign-in form that posts back.
    let response = sim
        .http
        .get(sim.url(&format!("/{DEMO_TENANT_ID}/oauth2/v2.0/authorize")))
        .query_pairs(&[
            ("client_id", DEMO_PUBLIC_CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", "http://localhost:5000"),
            ("scope", SCOPES),
            ("state", "s1"),
            ("code_challenge", "abc"),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("name=\"password\""), "{page}");
    let response = sim
        .http
        .post(sim.url(&format!("/{DEMO_TENANT_ID}/oauth2/v2.0/authorize")))
        .form_pairs(&[
            ("client_id", DEMO_PUBLIC_CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", "http://localhost:5000"),
            ("scope", SCOPES),
            ("state", "s1"),
            ("code_challenge", "abc"),
            ("code_challenge_method", "S256"),
            ("username", "bob@example.com"),
            ("password", "bob"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("http://localhost:5000?code="),
        "{location}"
    );
    assert!(location.contains("state=s1"), "{location}");
}

/// Entra's loopback rule (reply-url.md, "Localhost exceptions"): the
/// port is free only for `localhost`; `127.0.0.1` must match exactly and
/// `[::1]` is not supported. The demo apps register `http://localhost`.
#[tokio::test]
async fn authorize_frees_the_port_only_for_localhost() {
    let sim = start(|_| {}).await;
    let attempt = |redirect: &'static str| {
        let sim = &sim;
        async move {
            let response = sim
                .http
                .get(sim.url(&format!("/{DEMO_TENANT_ID}/oauth2/v2.0/authorize")))
                .query_pairs(&[
                    ("client_id", DEMO_PUBLIC_CLIENT_ID),
                    ("response_type", "code"),
                    ("redirect_uri", redirect),
                    ("scope", SCOPES),
                    ("state", "s1"),
                    ("code_challenge", "abc"),
                    ("code_challenge_method", "S256"),
                ])
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    for redirect in ["http://localhost:5001", "http://localhost:61234/"] {
        let (status, page) = attempt(redirect).await;
        assert_eq!(status, 200, "{redirect}: {page}");
        assert!(page.contains("name=\"password\""), "{redirect}: {page}");
    }
    for redirect in [
        "http://127.0.0.1:5001",
        "http://[::1]:5001",
        "http://localhost:5001/other-path",
    ] {
        let (status, page) = attempt(redirect).await;
        assert_eq!(status, 400, "{redirect}: {page}");
        assert!(page.contains("AADSTS50011"), "{redirect}: {page}");
    }
}

#[tokio::test]
async fn admin_consent_redirects_granted_or_denied() {
    let sim = start(|_| {}).await;
    let consent = |sim: &Sim| {
        sim.http
            .get(sim.url(&format!("/{DEMO_TENANT_ID}/adminconsent")))
            .query_pairs(&[
                ("client_id", DEMO_CONFIDENTIAL_CLIENT_ID),
                ("state", "xyz"),
                ("redirect_uri", "http://localhost:7000"),
            ])
            .send()
    };
    let response = consent(&sim).await.unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("admin_consent=True"), "{location}");
    assert!(
        location.contains(&format!("tenant={DEMO_TENANT_ID}")),
        "{location}"
    );
    sim.control("/_sim/adminconsent", json!({"deny": true}))
        .await;
    let location = consent(&sim).await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(location.contains("error=permission_denied"), "{location}");
    assert!(location.contains("state=xyz"), "{location}");
}

#[tokio::test]
async fn refresh_rotates_narrows_and_fails_when_revoked_or_expired() {
    let sim = start(|_| {}).await;
    let first = sim.sign_in().await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let (status, second) = sim.refresh(r1).await;
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2, "refresh token not rotated");
    assert_ne!(first["access_token"], second["access_token"]);
    // The old one still works, as in Entra (unless revoked).
    let (status, _) = sim.refresh(r1).await;
    assert_eq!(status, 200);

    // Narrower scope.
    let (status, narrow) = sim
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", DEMO_PUBLIC_CLIENT_ID),
            ("refresh_token", r2),
            (
                "scope",
                "https://graph.microsoft.com/Mail.Send offline_access",
            ),
        ])
        .await;
    assert_eq!(status, 200, "{narrow}");
    assert!(
        !narrow["scope"].as_str().unwrap().contains("Mail.ReadWrite"),
        "{narrow}"
    );

    // One user revoked.
    let (status, _) = sim
        .control("/_sim/revoke", json!({"user": "alice@example.com"}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = sim.refresh(r2).await;
    assert_entra(status, &body, 400, "invalid_grant", 50173);

    // Expired by inactivity.
    let fresh = sim.sign_in().await;
    sim.control("/_sim/expire_refresh_tokens", json!({})).await;
    let (status, body) = sim.refresh(fresh["refresh_token"].as_str().unwrap()).await;
    assert_entra(status, &body, 400, "invalid_grant", 700082);

    // Every token revoked by the fault.
    let fresh = sim.sign_in().await;
    let (status, faults) = sim
        .control("/_sim/faults", json!({"revoke_refresh_tokens": true}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(faults["revoke_refresh_tokens"], true);
    let (status, body) = sim.refresh(fresh["refresh_token"].as_str().unwrap()).await;
    assert_entra(status, &body, 400, "invalid_grant", 50173);
}

#[tokio::test]
async fn policy_blocks_produce_mfa_and_conditional_access_errors() {
    let sim = start(|_| {}).await;
    let tokens = sim.sign_in().await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    sim.control(
        "/_sim/policy",
        json!({"user": "alice@example.com", "block": "mfa"}),
    )
    .await;
    let (status, body) = sim.refresh(refresh).await;
    assert_entra(status, &body, 400, "invalid_grant", 50076);
    sim.control(
        "/_sim/policy",
        json!({"user": "alice@example.com", "block": "conditional_access"}),
    )
    .await;
    let (status, body) = sim.refresh(refresh).await;
    assert_entra(status, &body, 400, "invalid_grant", 53003);
    sim.control(
        "/_sim/policy",
        json!({"user": "alice@example.com", "block": null}),
    )
    .await;
    let (status, _) = sim.refresh(refresh).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn password_grant_wrong_password_is_50126() {
    let sim = start(|_| {}).await;
    let (status, body) = sim
        .token(&[
            ("grant_type", "password"),
            ("client_id", DEMO_PUBLIC_CLIENT_ID),
            ("username", "alice@example.com"),
            ("password", "nope"),
            ("scope", SCOPES),
        ])
        .await;
    assert_entra(status, &body, 400, "invalid_grant", 50126);
    let (status, body) = sim
        .token(&[
            ("grant_type", "password"),
            ("client_id", DEMO_PUBLIC_CLIENT_ID),
            ("username", "alice@example.com"),
            ("password", "alice"),
            ("scope", SCOPES),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn graph_rejects_expired_access_tokens_and_stats_count_token_route() {
    let sim = start(|_| {}).await;
    let tokens = sim.sign_in().await;
    let access = tokens["access_token"].as_str().unwrap();
    assert!(
        sim.state
            .entra()
            .authenticate(Some(&format!("Bearer {access}")))
            .is_ok()
    );
    sim.control("/_sim/expire_access_tokens", json!({})).await;
    let err = sim
        .state
        .entra()
        .authenticate(Some(&format!("Bearer {access}")))
        .unwrap_err();
    assert_eq!(err.code, "InvalidAuthenticationToken");
    let stats = sim.stats().await;
    assert_eq!(
        stats["by_route"]["POST /{tenant}/oauth2/v2.0/token"], 1,
        "{stats}"
    );
    assert_eq!(
        stats["by_route"]["GET /{tenant}/oauth2/v2.0/authorize"], 1,
        "{stats}"
    );
    assert!(stats["by_status"]["302"].as_u64().unwrap() >= 1, "{stats}");
    assert!(
        stats["by_route"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.contains("/_sim/"))
    );
    let _ = Instant::now();
}
