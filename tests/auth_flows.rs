//! The auth layer end to end over HTTP against the simulator's Entra ID:
//! device code, authorization code + PKCE on a loopback redirect, client
//! credentials (secret and certificate), refresh and the token sources.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use graphgate::auth::{
    AssertionAlgorithm, AuthError, AuthorityConfig, ClientCredential, ClientCredentialsTokenSource,
    DeviceCodeEvent, EntraClient, LoopbackLogin, RefreshingTokenSource, TokenPersister, TokenSet,
    TokenSource, check_identity,
};
use graphgate::secret::Secret;
use graphgate::sim::tenant::{
    DEMO_CLIENT_SECRET, DEMO_CLIENT_SECRET_ID, DEMO_CONFIDENTIAL_CLIENT_ID, DEMO_PUBLIC_CLIENT_ID,
    DEMO_TENANT_ID,
};
use graphgate::sim::{SimConfig, SimState};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const TOKEN_ROUTE: &str = "POST /{tenant}/oauth2/v2.0/token";

struct Sim {
    base: String,
    state: SimState,
    http: reqwest::Client,
    _shutdown: oneshot::Sender<()>,
}

async fn start_sim(configure: impl FnOnce(&mut SimConfig)) -> Sim {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = SimConfig {
        public_url: base.clone(),
        seed_messages: false,
        device_code_interval: Duration::from_secs(1),
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
    fn config(&self, client_id: &str, credential: ClientCredential) -> AuthorityConfig {
        AuthorityConfig {
            authority_url: self.base.clone(),
            tenant: DEMO_TENANT_ID.into(),
            client_id: client_id.into(),
            credential,
            graph_resource: "https://graph.microsoft.com".into(),
        }
    }

    fn public_client(&self) -> EntraClient {
        EntraClient::new(self.config(DEMO_PUBLIC_CLIENT_ID, ClientCredential::None)).unwrap()
    }

    fn confidential_client(&self, credential: ClientCredential) -> EntraClient {
        EntraClient::new(self.config(DEMO_CONFIDENTIAL_CLIENT_ID, credential)).unwrap()
    }

    fn certificate(&self, algorithm: AssertionAlgorithm) -> ClientCredential {
        let cert = self.state.certificate();
        ClientCredential::Certificate {
            cert_pem: cert.cert_pem.clone(),
            key_pem: Secret::new(cert.key_pem.clone()),
            algorithm,
        }
    }

    async fn control(&self, path: &str, body: Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }

    /// How many token requests the simulator has answered.
    async fn token_requests(&self) -> u64 {
        let stats: Value = self
            .http
            .get(format!("{}/_sim/stats", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entry = &stats["by_route"][TOKEN_ROUTE];
        entry
            .as_u64()
            .or_else(|| entry["count"].as_u64())
            .unwrap_or(0)
    }

    /// Follow the `/authorize` URL like a browser would, without following
    /// the redirect: the `Location` it points at.
    async fn authorize(&self, url: &str) -> url::Url {
        let response = self.http.get(url).send().await.unwrap();
        assert_eq!(
            response.status(),
            302,
            "authorize answered {}",
            response.status()
        );
        let location = response.headers()["location"].to_str().unwrap();
        url::Url::parse(location).unwrap()
    }

    /// A browser sign-in of `user` with the public client.
    async fn browser_login(&self, client: &EntraClient, user: &str) -> TokenSet {
        let scopes = client.config().delegated_scopes(false);
        let login = LoopbackLogin::start(client, None, &scopes, Some(user))
            .await
            .unwrap();
        let redirect = self.authorize(login.authorize_url()).await;
        let finish = login.finish(client);
        let (tokens, page) = tokio::join!(finish, hit_loopback(&redirect));
        assert!(page.contains("You can close this window"), "{page}");
        tokens.unwrap()
    }
}

/// GET the loopback redirect (on 127.0.0.1 whatever `localhost` resolves to).
async fn hit_loopback(redirect: &url::Url) -> String {
    let mut url = redirect.clone();
    url.set_host(Some("127.0.0.1")).unwrap();
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

fn expired(mut tokens: TokenSet) -> TokenSet {
    tokens.expires_at = SystemTime::UNIX_EPOCH;
    tokens
}

#[derive(Default)]
struct MemoryStore(Mutex<Vec<TokenSet>>);

impl TokenPersister for MemoryStore {
    fn persist(&self, tokens: &TokenSet) -> Result<(), AuthError> {
        self.0.lock().unwrap().push(tokens.clone());
        Ok(())
    }
}

/// Run the device-code loop in a task; `decide` is called with the user code
/// once the first `Pending` event arrived.
async fn device_login(sim: &Sim, approve: Option<(&str, bool)>) -> Result<TokenSet, AuthError> {
    let client = Arc::new(sim.public_client());
    let scopes = client.config().delegated_scopes(false);
    let grant = client.start_device_code(&scopes).await.unwrap();
    assert!(!grant.user_code.is_empty());
    assert!(
        grant.message.contains(&grant.user_code),
        "{}",
        grant.message
    );
    assert!(grant.verification_uri.starts_with("http"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let poller = {
        let client = client.clone();
        let grant = grant.clone();
        tokio::spawn(async move {
            client
                .poll_device_code(&grant, move |event| {
                    let _ = tx.send(event);
                })
                .await
        })
    };
    match rx.recv().await {
        Some(DeviceCodeEvent::Pending { remaining }) => {
            assert!(remaining <= grant.expires_in)
        }
        other => panic!("expected a pending event first, got {other:?}"),
    }
    if let Some((user, approve)) = approve {
        sim.control(
            "/_sim/devicelogin",
            json!({"user_code": grant.user_code, "user": user, "approve": approve}),
        )
        .await;
    }
    poller.await.unwrap()
}

#[tokio::test]
async fn device_code_pending_then_approved() {
    let sim = start_sim(|_| {}).await;
    let tokens = device_login(&sim, Some(("alice@example.com", true)))
        .await
        .unwrap();
    assert_eq!(tokens.username(), Some("alice@example.com"));
    assert!(tokens.refresh_token.is_some());
    assert!(tokens.valid_for(Duration::from_secs(60)));
}

#[tokio::test]
async fn device_code_declined() {
    let sim = start_sim(|_| {}).await;
    let err = device_login(&sim, Some(("alice@example.com", false)))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::DeviceCodeDeclined), "{err:?}");
    assert!(
        err.remedy("alice@example.com")
            .contains("graphgate login alice@example.com")
    );
}

#[tokio::test]
async fn device_code_expires() {
    let sim = start_sim(|c| c.device_code_lifetime = Duration::from_secs(2)).await;
    let err = device_login(&sim, None).await.unwrap_err();
    assert!(matches!(err, AuthError::DeviceCodeExpired), "{err:?}");
}

#[tokio::test]
async fn device_code_polled_too_fast_slows_down() {
    let sim = start_sim(|c| c.device_code_interval = Duration::from_secs(30)).await;
    let client = sim.public_client();
    let grant = client
        .start_device_code(&client.config().delegated_scopes(false))
        .await
        .unwrap();
    assert_eq!(grant.interval, Duration::from_secs(30));
    let first = client.poll_device_code_once(&grant).await.unwrap();
    let second = client.poll_device_code_once(&grant).await.unwrap();
    assert!(
        matches!(second, graphgate::auth::DevicePoll::SlowDown),
        "first {first:?}, second {second:?}"
    );
    assert_eq!(
        graphgate::auth::device_code::slowed_interval(grant.interval),
        Duration::from_secs(35)
    );
}

#[tokio::test]
async fn pkce_loopback_login_succeeds() {
    let sim = start_sim(|_| {}).await;
    let client = sim.public_client();
    let tokens = sim.browser_login(&client, "alice@example.com").await;
    assert_eq!(tokens.username(), Some("alice@example.com"));
    let identity = tokens.identity.clone().unwrap();
    assert_eq!(identity.tid, DEMO_TENANT_ID);
    assert!(tokens.refresh_token.is_some());
    check_identity("alice@example.com", &tokens).unwrap();
}

#[tokio::test]
async fn pkce_wrong_verifier_is_refused() {
    let sim = start_sim(|_| {}).await;
    let client = sim.public_client();
    let scopes = client.config().delegated_scopes(false);
    let redirect_uri = "http://localhost:4567";
    let request = client
        .authorization_request(redirect_uri, &scopes, Some("alice@example.com"))
        .unwrap();
    let location = sim.authorize(&request.url).await;
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let wrong = Secret::new("x".repeat(43));
    let err = client
        .redeem_code(&code, redirect_uri, &wrong, &scopes)
        .await
        .unwrap_err();
    match &err {
        AuthError::Entra { error, .. } => assert_eq!(error, "invalid_grant"),
        other => panic!("expected invalid_grant, got {other:?}"),
    }
}

#[tokio::test]
async fn state_mismatch_is_refused_without_redeeming() {
    let sim = start_sim(|_| {}).await;
    let client = sim.public_client();
    let scopes = client.config().delegated_scopes(false);
    let login = LoopbackLogin::start(&client, None, &scopes, Some("alice@example.com"))
        .await
        .unwrap();
    let mut redirect = sim.authorize(login.authorize_url()).await;
    let pairs: Vec<(String, String)> = redirect
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    redirect.query_pairs_mut().clear().extend_pairs(pairs);
    let before = sim.token_requests().await;
    let (result, _page) = tokio::join!(login.finish(&client), hit_loopback(&redirect));
    assert!(
        matches!(result, Err(AuthError::StateMismatch)),
        "{result:?}"
    );
    assert_eq!(sim.token_requests().await, before, "the code was redeemed");
}

#[tokio::test]
async fn client_secret_gets_an_app_token_and_caches_it() {
    let sim = start_sim(|_| {}).await;
    let client = sim.confidential_client(ClientCredential::Secret {
        secret: Secret::new(DEMO_CLIENT_SECRET.into()),
    });
    let source = ClientCredentialsTokenSource::new(Arc::new(client));
    let first = source.access_token().await.unwrap();
    let requests = sim.token_requests().await;
    let second = source.access_token().await.unwrap();
    assert_eq!(first.token, second.token);
    assert_eq!(sim.token_requests().await, requests);
    source.invalidate(&second);
    let third = source.access_token().await.unwrap();
    assert_ne!(third.token, second.token);
    assert_eq!(sim.token_requests().await, requests + 1);
}

#[tokio::test]
async fn secret_id_instead_of_value_gives_7000215_and_the_fix() {
    let sim = start_sim(|_| {}).await;
    let client = sim.confidential_client(ClientCredential::Secret {
        secret: Secret::new(DEMO_CLIENT_SECRET_ID.into()),
    });
    let err = client.client_credentials().await.unwrap_err();
    assert_eq!(err.aadsts(), Some(7000215), "{err:?}");
    assert!(
        err.remedy("app")
            .contains("copy the secret's Value, not its Secret ID")
    );
    assert!(!err.to_string().contains(DEMO_CLIENT_SECRET_ID));
    assert!(!err.requires_login());
}

#[tokio::test]
async fn expired_secret_gives_7000222() {
    let sim = start_sim(|_| {}).await;
    sim.control("/_sim/faults", json!({"expire_client_secrets": true}))
        .await;
    let client = sim.confidential_client(ClientCredential::Secret {
        secret: Secret::new(DEMO_CLIENT_SECRET.into()),
    });
    let err = client.client_credentials().await.unwrap_err();
    assert_eq!(err.aadsts(), Some(7000222), "{err:?}");
    assert!(err.remedy("app").contains("new client secret"));
}

#[tokio::test]
async fn certificate_ps256_with_x5t_s256() {
    let sim = start_sim(|_| {}).await;
    let client = sim.confidential_client(sim.certificate(AssertionAlgorithm::PS256));
    let tokens = client.client_credentials().await.unwrap();
    assert!(tokens.refresh_token.is_none());
    assert!(tokens.valid_for(Duration::from_secs(60)));
}

#[tokio::test]
async fn certificate_rs256_with_x5t() {
    let sim = start_sim(|_| {}).await;
    let client = sim.confidential_client(sim.certificate(AssertionAlgorithm::RS256));
    let tokens = client.client_credentials().await.unwrap();
    assert!(tokens.refresh_token.is_none());
}

#[tokio::test]
async fn refresh_rotates_and_persists_before_handing_out() {
    let sim = start_sim(|_| {}).await;
    let client = Arc::new(sim.public_client());
    let tokens = sim.browser_login(&client, "alice@example.com").await;
    let old_access = tokens.access_token.clone();
    let old_refresh = tokens.refresh_token.clone().unwrap();
    let store = Arc::new(MemoryStore::default());
    let source = RefreshingTokenSource::new(client, expired(tokens), store.clone());
    let fresh = source.access_token().await.unwrap();
    assert_ne!(fresh.token, old_access);
    let saved = store.0.lock().unwrap().clone();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].access_token, fresh.token);
    let new_refresh = saved[0].refresh_token.clone().unwrap();
    assert_ne!(new_refresh, old_refresh, "refresh token not rotated");
    assert_eq!(saved[0].username(), Some("alice@example.com"));
    // Cached now: no second refresh.
    let again = source.access_token().await.unwrap();
    assert_eq!(again.token, fresh.token);
    assert_eq!(store.0.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn revoked_refresh_token_requires_login() {
    let sim = start_sim(|_| {}).await;
    let client = Arc::new(sim.public_client());
    let tokens = sim.browser_login(&client, "alice@example.com").await;
    sim.control("/_sim/faults", json!({"revoke_refresh_tokens": true}))
        .await;
    let store = Arc::new(MemoryStore::default());
    let source = RefreshingTokenSource::new(client, expired(tokens), store.clone());
    let err = source.access_token().await.unwrap_err();
    assert!(err.requires_login(), "{err:?}");
    assert_eq!(err.aadsts(), Some(50173), "{err:?}");
    let remedy = err.remedy("alice@example.com");
    assert!(
        remedy.contains("graphgate login alice@example.com"),
        "{remedy}"
    );
    assert!(store.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn twenty_concurrent_callers_share_one_refresh() {
    let sim = start_sim(|_| {}).await;
    let client = Arc::new(sim.public_client());
    let tokens = sim.browser_login(&client, "alice@example.com").await;
    let store = Arc::new(MemoryStore::default());
    let source = Arc::new(RefreshingTokenSource::new(
        client,
        expired(tokens),
        store.clone(),
    ));
    let before = sim.token_requests().await;
    let calls = (0..20).map(|_| {
        let source = source.clone();
        tokio::spawn(async move { source.access_token().await })
    });
    let results = futures::future::join_all(calls).await;
    let tokens: Vec<_> = results
        .into_iter()
        .map(|r| r.unwrap().unwrap().token)
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    assert_eq!(sim.token_requests().await, before + 1);
    assert_eq!(store.0.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn user_mismatch_is_detected() {
    let sim = start_sim(|_| {}).await;
    let client = sim.public_client();
    let tokens = sim.browser_login(&client, "bob@example.com").await;
    let err = check_identity("alice@example.com", &tokens).unwrap_err();
    match &err {
        AuthError::UserMismatch { expected, actual } => {
            assert_eq!(expected, "alice@example.com");
            assert_eq!(actual, "bob@example.com");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.remedy("alice").contains("Sign in as alice@example.com"));
}

#[tokio::test]
async fn configuration_mistakes_get_their_remedy() {
    let sim = start_sim(|_| {}).await;
    let mut config = sim.config(
        DEMO_CONFIDENTIAL_CLIENT_ID,
        ClientCredential::Secret {
            secret: Secret::new(DEMO_CLIENT_SECRET.into()),
        },
    );
    config.tenant = "nonexistent.example".into();
    let err = EntraClient::new(config.clone())
        .unwrap()
        .client_credentials()
        .await
        .unwrap_err();
    assert_eq!(err.aadsts(), Some(90002), "{err:?}");
    assert!(err.remedy("app").contains("config key `microsoft.tenant`"));

    config.tenant = "example.com".into();
    config.client_id = "00000000-0000-4000-8000-00000000dead".into();
    let err = EntraClient::new(config)
        .unwrap()
        .client_credentials()
        .await
        .unwrap_err();
    assert_eq!(err.aadsts(), Some(700016), "{err:?}");
    assert!(
        err.remedy("app")
            .contains("config key `microsoft.client_id`")
    );
}

#[tokio::test]
async fn invalidated_token_is_refreshed_on_next_use() {
    let sim = start_sim(|_| {}).await;
    let client = Arc::new(sim.public_client());
    let tokens = sim.browser_login(&client, "alice@example.com").await;
    let store = Arc::new(MemoryStore::default());
    let source = RefreshingTokenSource::new(client, tokens, store.clone());
    let before = sim.token_requests().await;
    let current = source.access_token().await.unwrap();
    assert_eq!(
        sim.token_requests().await,
        before,
        "a valid token was refreshed"
    );
    source.invalidate(&current);
    let next = source.access_token().await.unwrap();
    assert_ne!(next.token, current.token);
    assert_eq!(sim.token_requests().await, before + 1);
    assert_eq!(store.0.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn delegated_sign_in_without_consent_names_the_consent_url() {
    let sim = start_sim(|_| {}).await;
    // The confidential demo app has application permissions only: no
    // delegated consent.
    let client = sim.confidential_client(sim.certificate(AssertionAlgorithm::PS256));
    let scopes = client.config().delegated_scopes(false);
    let login = LoopbackLogin::start(&client, None, &scopes, Some("alice@example.com"))
        .await
        .unwrap();
    let redirect = sim.authorize(login.authorize_url()).await;
    let (outcome, _) = tokio::join!(login.finish(&client), hit_loopback(&redirect));
    let err = outcome.unwrap_err();
    assert_eq!(err.aadsts(), Some(65001), "{err:?}");
    assert!(
        err.remedy("alice@example.com")
            .contains("graphgate consent-url")
    );
}

/// Each refresh failure the simulator can produce, end to end through the
/// client, reaches its own remedy sentence.
#[tokio::test]
async fn refresh_failures_from_the_simulator_get_their_remedies() {
    type Setup = fn(&str) -> (&'static str, Value);
    let cases: [(u32, Option<Setup>, &str); 3] = [
        (
            700082,
            Some(|_| ("/_sim/expire_refresh_tokens", json!({}))),
            "graphgate login alice@example.com",
        ),
        (
            50076,
            Some(|u| ("/_sim/policy", json!({"user": u, "block": "mfa"}))),
            "graphgate login --browser alice@example.com",
        ),
        (
            53003,
            Some(|u| {
                (
                    "/_sim/policy",
                    json!({"user": u, "block": "conditional_access"}),
                )
            }),
            "tenant admin",
        ),
    ];
    for (code, setup, needle) in cases {
        let sim = start_sim(|_| {}).await;
        let client = Arc::new(sim.public_client());
        let tokens = sim.browser_login(&client, "alice@example.com").await;
        if let Some(setup) = setup {
            let (path, body) = setup("alice@example.com");
            sim.control(path, body).await;
        }
        let source =
            RefreshingTokenSource::new(client, expired(tokens), Arc::new(MemoryStore::default()));
        let err = source.access_token().await.unwrap_err();
        assert_eq!(err.aadsts(), Some(code), "{err:?}");
        let remedy = err.remedy("alice@example.com");
        assert!(remedy.contains(needle), "{code}: {remedy}");
    }

    // A refresh token redeemed by another app: AADSTS70000.
    let sim = start_sim(|_| {}).await;
    let public = Arc::new(sim.public_client());
    let tokens = sim.browser_login(&public, "alice@example.com").await;
    let other = Arc::new(sim.confidential_client(ClientCredential::Secret {
        secret: Secret::new(DEMO_CLIENT_SECRET.into()),
    }));
    let source =
        RefreshingTokenSource::new(other, expired(tokens), Arc::new(MemoryStore::default()));
    let err = source.access_token().await.unwrap_err();
    assert_eq!(err.aadsts(), Some(70000), "{err:?}");
    assert!(err.requires_login());
    assert!(
        err.remedy("alice@example.com")
            .contains("graphgate login alice@example.com")
    );
}
