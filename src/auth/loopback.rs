//! Browser sign-in: authorization code + PKCE with a loopback redirect.
//!
//! Follows "Microsoft identity platform and OAuth 2.0 authorization code
//! flow" and RFC 8252 §7.3 (loopback interface redirection) with RFC 7636
//! PKCE: we listen on `127.0.0.1:PORT`, send `redirect_uri=http://localhost:
//! PORT` (the form Entra registers for native apps), and a tiny HTTP handler
//! takes the one `GET /?code=…&state=…` (or `?error=…`) the browser is
//! redirected to. The `state` is checked before anything is redeemed.
//!
//! The API is split so that whatever opens the URL (the CLI launching a
//! browser, or a test following it with reqwest) is not our concern:
//! [`LoopbackLogin::start`] → [`LoopbackLogin::authorize_url`] → open it →
//! [`LoopbackLogin::finish`].

use std::collections::HashMap;

use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::client::{AuthorizationRequest, EntraClient};
use super::error::first_line;
use super::{AuthError, EntraErrorResponse, TokenSet};

/// Largest request head read from the browser.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Requests (favicon and the like) tolerated before the redirect arrives.
const MAX_STRAY_REQUESTS: usize = 32;

const DONE_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>graphgate</title></head>\
<body><p>Sign-in complete. You can close this window.</p></body></html>";
const FAILED_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>graphgate</title></head>\
<body><p>Sign-in failed. You can close this window and check graphgate's output.</p></body></html>";

/// What the browser brought back on the redirect.
#[derive(Debug)]
pub enum RedirectOutcome {
    Code { code: String, state: String },
    Error { error: String, description: String },
}

/// A browser sign-in waiting for its redirect.
pub struct LoopbackLogin {
    listener: TcpListener,
    request: AuthorizationRequest,
}

impl LoopbackLogin {
    /// Bind `127.0.0.1:port` (`None`: any free port) and prepare the
    /// `/authorize` URL.
    pub async fn start(
        client: &EntraClient,
        port: Option<u16>,
        scopes: &[String],
        login_hint: Option<&str>,
    ) -> Result<LoopbackLogin, AuthError> {
        let listener = TcpListener::bind(("127.0.0.1", port.unwrap_or(0))).await?;
        let port = listener.local_addr()?.port();
        let redirect_uri = format!("http://localhost:{port}");
        let request = client.authorization_request(&redirect_uri, scopes, login_hint)?;
        Ok(LoopbackLogin { listener, request })
    }

    /// The URL to open in a browser.
    pub fn authorize_url(&self) -> &str {
        &self.request.url
    }

    /// The redirect URI (`http://localhost:PORT`).
    pub fn redirect_uri(&self) -> &str {
        &self.request.redirect_uri
    }

    /// Wait for the redirect, check `state`, and redeem the code.
    pub async fn finish(self, client: &EntraClient) -> Result<TokenSet, AuthError> {
        let outcome = self.wait_for_redirect().await?;
        match outcome {
            // Entra puts the AADSTS code in the description
            // ("AADSTS65001: …"): keep it so the remedy fits.
            RedirectOutcome::Error { error, description } if description.starts_with("AADSTS") => {
                Err(AuthError::from_entra(EntraErrorResponse {
                    error,
                    error_description: Some(description),
                    ..EntraErrorResponse::default()
                }))
            }
            RedirectOutcome::Error { error, description } => {
                Err(AuthError::Authorization { error, description })
            }
            RedirectOutcome::Code { code, state } => {
                let expected = self.request.state.expose().as_bytes();
                if !bool::from(expected.ct_eq(state.as_bytes())) {
                    return Err(AuthError::StateMismatch);
                }
                client
                    .redeem_code(
                        &code,
                        &self.request.redirect_uri,
                        &self.request.code_verifier,
                        &self.request.scopes,
                    )
                    .await
            }
        }
    }

    /// Serve the loopback port until a request carrying `code` or `error`
    /// arrives; answer it with a short page.
    async fn wait_for_redirect(&self) -> Result<RedirectOutcome, AuthError> {
        for _ in 0..MAX_STRAY_REQUESTS {
            let (mut stream, _) = self.listener.accept().await?;
            let Ok(target) = read_request_target(&mut stream).await else {
                let _ = respond(&mut stream, "400 Bad Request", FAILED_PAGE).await;
                continue;
            };
            match parse_redirect(&target) {
                Some(outcome) => {
                    let page = match outcome {
                        RedirectOutcome::Code { .. } => DONE_PAGE,
                        RedirectOutcome::Error { .. } => FAILED_PAGE,
                    };
                    let _ = respond(&mut stream, "200 OK", page).await;
                    return Ok(outcome);
                }
                None => {
                    let _ = respond(&mut stream, "404 Not Found", FAILED_PAGE).await;
                }
            }
        }
        Err(AuthError::Protocol(
            "too many requests on the loopback port without a sign-in answer".into(),
        ))
    }
}

/// Read the request head and return the target of a `GET`.
async fn read_request_target(stream: &mut TcpStream) -> Result<String, AuthError> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_REQUEST_HEAD {
            return Err(AuthError::Protocol("bad loopback request".into()));
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or("");
    let mut words = line.split(' ');
    match (words.next(), words.next()) {
        (Some("GET"), Some(target)) => Ok(target.to_string()),
        _ => Err(AuthError::Protocol("not a GET".into())),
    }
}

/// The outcome carried by a redirect target (`/?code=…&state=…`), if any.
pub fn parse_redirect(target: &str) -> Option<RedirectOutcome> {
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .take(32)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some(error) = params.get("error") {
        return Some(RedirectOutcome::Error {
            error: error.chars().take(100).collect(),
            description: params
                .get("error_description")
                .map(|d| first_line(d))
                .unwrap_or_default(),
        });
    }
    let code = params.get("code")?;
    Some(RedirectOutcome::Code {
        code: code.clone(),
        state: params.get("state").cloned().unwrap_or_default(),
    })
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets() {
        match parse_redirect("/?code=abc&state=xyz&session_state=1") {
            Some(RedirectOutcome::Code { code, state }) => {
                assert_eq!((code.as_str(), state.as_str()), ("abc", "xyz"))
            }
            other => panic!("{other:?}"),
        }
        match parse_redirect("/?error=access_denied&error_description=AADSTS65004%3A+no%0D%0ATrace")
        {
            Some(RedirectOutcome::Error { error, description }) => {
                assert_eq!(error, "access_denied");
                assert_eq!(description, "AADSTS65004: no");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_redirect("/favicon.ico").is_none());
    }
}
