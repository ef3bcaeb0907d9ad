//! HTTP for the token endpoint: reqwest 0.13 as the `oauth2` crate's
//! `AsyncHttpClient`, and a plain form POST for the requests built by hand.
//!
//! Token requests are `application/x-www-form-urlencoded` POSTs answered
//! with JSON (RFC 6749 §4.1.3, §5.1, §5.2). Redirects are never followed
//! (RFC 6749 §3.1.2 advice, and what `oauth2` recommends), and response
//! bodies are read up to [`MAX_BODY`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{AuthError, EntraErrorResponse};

/// Largest token-endpoint response read.
pub const MAX_BODY: usize = 256 * 1024;

/// A reqwest client suited to the token endpoint (no redirects, timeouts).
pub fn default_http_client() -> Result<reqwest::Client, AuthError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| AuthError::Config(format!("HTTP client: {e}")))
}

/// Transport failure seen by `oauth2`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpClientError(String);

/// reqwest as `oauth2`'s HTTP client.
pub struct OAuthHttp<'a>(pub &'a reqwest::Client);

type ResponseFuture<'c> =
    Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpClientError>> + Send + 'c>>;

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp<'_> {
    type Error = HttpClientError;
    type Future = ResponseFuture<'c>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let url = parts.uri.to_string();
            let mut builder = self.0.request(parts.method, url).body(body);
            for (name, value) in &parts.headers {
                builder = builder.header(name, value);
            }
            let response = builder
                .send()
                .await
                .map_err(|e| HttpClientError(e.without_url().to_string()))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = read_bounded(response)
                .await
                .map_err(|e| HttpClientError(e.to_string()))?;
            let mut out = http::Response::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok(out)
        })
    }
}

/// Read a response body, refusing more than [`MAX_BODY`] bytes.
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, AuthError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| AuthError::Transport(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(AuthError::Protocol(format!(
                "response larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Map `oauth2`'s error to ours.
pub fn from_oauth2(
    err: oauth2::RequestTokenError<HttpClientError, EntraErrorResponse>,
) -> AuthError {
    match err {
        oauth2::RequestTokenError::ServerResponse(body) => AuthError::from_entra(body),
        oauth2::RequestTokenError::Request(e) => AuthError::Transport(e.0),
        oauth2::RequestTokenError::Parse(e, _) => {
            AuthError::Protocol(format!("token response: {}", e.inner()))
        }
        oauth2::RequestTokenError::Other(e) => AuthError::Protocol(e),
    }
}

/// POST a form and parse the JSON answer: `Ok(Ok(T))` on success,
/// `Ok(Err(body))` for Entra's error body (the caller decides, e.g.
/// `authorization_pending` is not a failure), `Err` for anything else.
pub async fn post_form<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> Result<Result<T, EntraErrorResponse>, AuthError> {
    let body = serde_urlencoded::to_string(form)
        .map_err(|e| AuthError::Protocol(format!("form encoding: {e}")))?;
    let response = http
        .post(url)
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| AuthError::Transport(e.without_url().to_string()))?;
    let status = response.status();
    let body = read_bounded(response).await?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map(Ok)
            .map_err(|e| AuthError::Protocol(format!("HTTP {status}: {e}")));
    }
    match serde_json::from_slice::<EntraErrorResponse>(&body) {
        Ok(err) if !err.error.is_empty() => Ok(Err(err)),
        _ => Err(AuthError::Protocol(format!(
            "HTTP {status} without an OAuth error body"
        ))),
    }
}
