//! The console's access rules over the router itself (no browser, no
//! simulator): closed without a credential, loopback only, the one-time
//! link used once, CSRF on every POST, the security headers.
//! tests/console.rs drives the whole console in Chromium.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::{Console, ConsoleParts};
use crate::config::Config;
use crate::gateway::{KeyMode, Runtime, StoreMode};

fn console(dir: &std::path::Path) -> (Console, axum::Router) {
    let config = Config {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    let runtime = Runtime::from_config(&config, StoreMode::Create, KeyMode::LoadOrCreate).unwrap();
    let admin: SocketAddr = "127.0.0.1:8025".parse().unwrap();
    let console = Console::new(ConsoleParts {
        config: config.clone(),
        config_file: None,
        store: runtime.store.clone(),
        key: runtime.key.clone(),
        graph: runtime.graph.clone(),
        entra: runtime
            .entra
            .as_ref()
            .map(std::sync::Arc::clone)
            .map_err(|e| e.to_string()),
        guard: std::sync::Arc::new(crate::login_guard::LoginGuard::new(
            config.login_limit.limits(),
        )),
        listeners: crate::admin::Listeners::default(),
        admin,
    });
    let router = super::router(console.clone());
    (console, router)
}

async fn send(
    router: &axum::Router,
    method: &str,
    uri: &str,
    peer: &str,
    cookie: Option<&str>,
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, c);
    }
    if method == "POST" {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let mut request = request.body(Body::from(body.to_string())).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = router.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

const LOCAL: &str = "127.0.0.1:50000";

#[tokio::test]
async fn closed_without_a_credential_and_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let (console, router) = console(dir.path());
    let (status, headers, _) = send(&router, "GET", "/", LOCAL, None, "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    let (_, _, page) = send(&router, "GET", "/login", LOCAL, None, "").await;
    assert!(page.contains("The console is closed"), "{page}");
    // A one-time link, from another host: refused before anything else.
    let link = console.one_time_link("127.0.0.1:8025".parse().unwrap());
    let path = link.0.trim_start_matches("http://127.0.0.1:8025");
    let (status, _, page) = send(&router, "GET", path, "192.0.2.7:4000", None, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("admin.console_remote"), "{page}");
    // From loopback it signs in, once.
    let (status, headers, _) = send(&router, "GET", path, LOCAL, None, "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let (status, _, page) = send(&router, "GET", path, LOCAL, None, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("already used"), "{page}");
    let session = cookie.split(';').next().unwrap().to_string();
    let (status, _, page) = send(&router, "GET", "/queue", LOCAL, Some(&session), "").await;
    assert_eq!(status, StatusCode::OK);
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = &page[at..at + 64];

    // A POST without the token, or with another, changes nothing: 403.
    for body in [
        "confirm=yes".to_string(),
        format!("csrf={}", "0".repeat(64)),
    ] {
        let (status, _, page) = send(
            &router,
            "POST",
            "/queue/1/drop",
            LOCAL,
            Some(&session),
            &body,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(page.contains("no valid CSRF token"), "{page}");
    }
    // With it, the verb runs (and says why it did nothing here).
    let body = format!("csrf={csrf}&confirm=yes");
    let (status, headers, _) = send(
        &router,
        "POST",
        "/queue/1/drop",
        LOCAL,
        Some(&session),
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/queue/1");
    let (_, _, page) = send(&router, "GET", "/queue/1", LOCAL, Some(&session), "").await;
    assert!(page.contains("no message 1 in the spool"), "{page}");
    // Without a session, a POST is refused outright.
    let (status, _, _) = send(&router, "POST", "/queue/1/drop", LOCAL, None, &body).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
