//! Wire tests of the auth layer against a scripted token endpoint on
//! 127.0.0.1:0: what the client sends (form fields of each grant, RFC 6749
//! §4.1.3, §4.4, §6; RFC 8628 §3.4; RFC 7521 assertions) and how it reads
//! Entra's answers. The end-to-end tests against the simulator are in
//! `tests/auth_flows.rs`; these pin the client's side on its own.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::*;
use crate::secret::Secret;

/// A request seen: the endpoint leaf (`token`, `devicecode`) and its form.
type SeenRequest = (String, HashMap<String, String>);

#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<(u16, Value)>>>,
    forms: Arc<Mutex<Vec<SeenRequest>>>,
}

async fn endpoint(
    State(script): State<Script>,
    Path((_tenant, leaf)): Path<(String, String)>,
    body: String,
) -> impl IntoResponse {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    script.forms.lock().unwrap().push((leaf, form));
    let (status, value) = script
        .answers
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((500, json!({})));
    (StatusCode::from_u16(status).unwrap(), Json(value))
}

async fn serve(answers: Vec<(u16, Value)>, credential: ClientCredential) -> (EntraClient, Script) {
    let script = Script::default();
    script.answers.lock().unwrap().extend(answers);
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/{leaf}", post(endpoint))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = AuthorityConfig::public_client("cid");
    config.authority_url = base;
    config.tenant = "contoso.com".into();
    config.credential = credential;
    (EntraClient::new(config).unwrap(), script)
}

fn token_body(access: &str, refresh: Option<&str>) -> Value {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let id = format!(
        "{}.{}.sig",
        b64.encode(br#"{"alg":"RS256"}"#),
        b64.encode(
            json!({"oid":"o","tid":"t","preferred_username":"alice@contoso.com"}).to_string()
        )
    );
    let mut v = json!({"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,
        "scope":"https://graph.microsoft.com/Mail.Send","access_token":access,"id_token":id});
    if let Some(r) = refresh {
        v["refresh_token"] = json!(r);
    }
    v
}

fn entra_error(error: &str, code: u32) -> Value {
    json!({"error": error,
        "error_description": format!("AADSTS{code}: Something.\r\nTrace ID: t-1\r\nCorrelation ID: c-1\r\nTimestamp: 2026"),
        "error_codes":[code], "timestamp":"2026", "trace_id":"t-1", "correlation_id":"c-1",
        "error_uri":"https://login.microsoftonline.com/error?code=1"})
}

#[tokio::test]
async fn refresh_sends_the_grant_and_reads_the_rotated_token() {
    let (client, script) = serve(
        vec![(200, token_body("at2", Some("rt2")))],
        Default::default(),
    )
    .await;
    let scopes = vec!["offline_access".to_string(), "Mail.Send".to_string()];
    let tokens = client
        .refresh(&Secret::new("rt1".into()), &scopes)
        .await
        .unwrap();
    assert_eq!(tokens.access_token.expose(), "at2");
    assert_eq!(tokens.refresh_token.unwrap().expose(), "rt2");
    assert_eq!(
        tokens.identity.unwrap().preferred_username.as_deref(),
        Some("alice@contoso.com")
    );
    let forms = script.forms.lock().unwrap();
    let (leaf, form) = &forms[0];
    assert_eq!(leaf, "token");
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], "rt1");
    assert_eq!(form["client_id"], "cid");
    assert_eq!(form["scope"], "offline_access Mail.Send");
}

#[tokio::test]
async fn entra_errors_keep_their_code_through_oauth2() {
    let (client, _) = serve(
        vec![(400, entra_error("invalid_grant", 70008))],
        Default::default(),
    )
    .await;
    let err = client
        .refresh(&Secret::new("rt".into()), &[])
        .await
        .unwrap_err();
    assert_eq!(err.aadsts(), Some(70008));
    assert!(err.requires_login());
    let shown = err.to_string();
    assert!(
        shown.contains("AADSTS70008: Something.") && !shown.contains("t-1"),
        "{shown}"
    );
    match err {
        AuthError::Entra {
            trace_id,
            correlation_id,
            ..
        } => {
            assert_eq!(trace_id.as_deref(), Some("t-1"));
            assert_eq!(correlation_id.as_deref(), Some("c-1"));
        }
        other => panic!("{other:?}"),
    }
}

/// App-only tokens are for one named tenant: with `organizations` (the
/// default) the client refuses before sending anything, naming the key.
#[tokio::test]
async fn client_credentials_need_a_named_tenant() {
    for tenant in ["organizations", "common", "Consumers"] {
        let secret = ClientCredential::Secret {
            secret: Secret::new("val".into()),
        };
        let (client, script) = serve(vec![(200, token_body("app", None))], secret).await;
        let mut config = client.config().clone();
        config.tenant = tenant.into();
        let client = EntraClient::new(config).unwrap();
        let err = client.client_credentials().await.unwrap_err();
        assert!(matches!(err, AuthError::Config(_)), "{tenant}: {err:?}");
        assert!(err.to_string().contains("`microsoft.tenant`"), "{err}");
        assert!(
            script.forms.lock().unwrap().is_empty(),
            "{tenant}: a request was sent"
        );
    }
}

#[tokio::test]
async fn client_secret_and_assertion_go_in_the_form() {
    let secret = ClientCredential::Secret {
        secret: Secret::new("val".into()),
    };
    let (client, script) = serve(vec![(200, token_body("app", None))], secret).await;
    let tokens = client.client_credentials().await.unwrap();
    assert!(tokens.refresh_token.is_none());
    let form = script.forms.lock().unwrap()[0].1.clone();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_secret"], "val");
    assert_eq!(form["scope"], "https://graph.microsoft.com/.default");

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["t".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let credential = ClientCredential::Certificate {
        cert_pem: cert.pem(),
        key_pem: Secret::new(key.serialize_pem()),
        algorithm: AssertionAlgorithm::PS256,
    };
    let (client, script) = serve(vec![(200, token_body("app", None))], credential).await;
    client.client_credentials().await.unwrap();
    let form = script.forms.lock().unwrap()[0].1.clone();
    assert_eq!(form["client_assertion_type"], assertion::JWT_BEARER);
    assert_eq!(form["client_assertion"].split('.').count(), 3);
    assert!(!form.contains_key("client_secret"));
}

#[tokio::test]
async fn device_code_backs_off_on_slow_down() {
    let answers = vec![
        (
            200,
            json!({"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"https://microsoft.com/devicelogin",
            "expires_in":900,"interval":0,"message":"To sign in, enter ABCD-EFGH."}),
        ),
        (400, entra_error("slow_down", 70016)),
        (200, token_body("at", Some("rt"))),
    ];
    let (client, script) = serve(answers, Default::default()).await;
    let grant = client
        .start_device_code(&["Mail.Send".into()])
        .await
        .unwrap();
    assert_eq!(grant.user_code, "ABCD-EFGH");
    assert_eq!(grant.interval, Duration::ZERO);
    let mut events = Vec::new();
    let tokens = client
        .poll_device_code(&grant, |e| events.push(e))
        .await
        .unwrap();
    assert_eq!(tokens.access_token.expose(), "at");
    // Interval 0 is raised to the 1 s floor, then 5 s more.
    assert_eq!(
        events,
        [DeviceCodeEvent::SlowDown {
            interval: Duration::from_secs(6)
        }]
    );
    let forms = script.forms.lock().unwrap();
    assert_eq!(forms[0].0, "devicecode");
    assert_eq!(forms[1].1["grant_type"], device_code::DEVICE_CODE_GRANT);
    assert_eq!(forms[1].1["device_code"], "dc");
}

#[tokio::test]
async fn device_code_stops_on_bad_verification_code() {
    let answers = vec![
        (
            200,
            json!({"device_code":"dc","user_code":"U","verification_uri":"https://x",
            "expires_in":900,"interval":0}),
        ),
        (400, entra_error("bad_verification_code", 70019)),
    ];
    let (client, _) = serve(answers, Default::default()).await;
    let grant = client.start_device_code(&[]).await.unwrap();
    assert!(grant.message.contains('U'));
    let err = client.poll_device_code(&grant, |_| {}).await.unwrap_err();
    assert!(
        matches!(&err, AuthError::Entra { error, .. } if error == "bad_verification_code"),
        "{err:?}"
    );
}

#[tokio::test]
async fn refreshing_source_refreshes_once_and_after_invalidate() {
    let answers = vec![
        (200, token_body("at2", Some("rt2"))),
        (200, token_body("at3", Some("rt3"))),
    ];
    let (client, script) = serve(answers, Default::default()).await;
    let mut tokens =
        TokenSet::from_response("at1".into(), Some("rt1".into()), None, None, None, &[]).unwrap();
    tokens.expires_at = std::time::SystemTime::UNIX_EPOCH;
    let saved: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = saved.clone();
    let persister = move |t: &TokenSet| -> Result<(), AuthError> {
        sink.lock().unwrap().push(
            t.refresh_token
                .as_ref()
                .map(|r| r.expose().clone())
                .unwrap_or_default(),
        );
        Ok(())
    };
    let source = Arc::new(RefreshingTokenSource::new(
        Arc::new(client),
        tokens,
        Arc::new(persister),
    ));
    let all = futures::future::join_all((0..10).map(|_| source.access_token())).await;
    assert!(
        all.iter()
            .all(|t| t.as_ref().unwrap().token.expose() == "at2")
    );
    assert_eq!(*saved.lock().unwrap(), ["rt2"]);
    let current = source.access_token().await.unwrap();
    source.invalidate(&current);
    assert_eq!(source.access_token().await.unwrap().token.expose(), "at3");
    assert_eq!(*saved.lock().unwrap(), ["rt2", "rt3"]);
    let forms = script.forms.lock().unwrap();
    assert_eq!(forms[1].1["refresh_token"], "rt2");
    // Refreshes keep asking for a refresh token and an id_token.
    let scope = &forms[0].1["scope"];
    assert!(
        scope.contains("offline_access") && scope.contains("openid"),
        "{scope}"
    );
}

#[tokio::test]
async fn loopback_answers_strays_and_reports_an_error_redirect() {
    let (client, script) = serve(vec![], Default::default()).await;
    let login = LoopbackLogin::start(&client, None, &["Mail.Send".into()], None)
        .await
        .unwrap();
    let port = login.redirect_uri().rsplit(':').next().unwrap().to_string();
    assert!(login.redirect_uri().starts_with("http://localhost:"));
    let browser = async {
        let base = format!("http://127.0.0.1:{port}");
        let stray = reqwest::get(format!("{base}/favicon.ico")).await.unwrap();
        assert_eq!(stray.status(), 404);
        let url = format!(
            "{base}/?error=access_denied&error_description=AADSTS65004%3A+User+declined.%0D%0ATrace+ID%3A+x"
        );
        let page = reqwest::get(url).await.unwrap().text().await.unwrap();
        assert!(page.contains("You can close this window"), "{page}");
    };
    let (result, ()) = tokio::join!(login.finish(&client), browser);
    match result {
        Err(AuthError::Entra {
            code,
            error,
            description,
            ..
        }) => {
            assert_eq!(code, Some(65004));
            assert_eq!(error, "access_denied");
            assert_eq!(description, "AADSTS65004: User declined.");
        }
        other => panic!("{other:?}"),
    }
    assert!(script.forms.lock().unwrap().is_empty(), "nothing redeemed");
}

#[tokio::test]
async fn short_lived_tokens_are_not_refreshed_on_every_call() {
    let mut short = token_body("at2", Some("rt2"));
    short["expires_in"] = json!(120);
    let (client, script) = serve(vec![(200, short)], Default::default()).await;
    let mut tokens =
        TokenSet::from_response("at1".into(), Some("rt1".into()), None, None, None, &[]).unwrap();
    tokens.expires_at = std::time::SystemTime::UNIX_EPOCH;
    let persister = |_: &TokenSet| -> Result<(), AuthError> { Ok(()) };
    // 120 s tokens with the default 5 min margin: the margin shrinks to 60 s.
    let source = RefreshingTokenSource::new(Arc::new(client), tokens, Arc::new(persister));
    assert_eq!(source.access_token().await.unwrap().token.expose(), "at2");
    assert_eq!(source.access_token().await.unwrap().token.expose(), "at2");
    assert_eq!(script.forms.lock().unwrap().len(), 1);
}
