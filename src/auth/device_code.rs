//! The device authorization grant (RFC 8628) against Entra ID.
//!
//! Follows "Microsoft identity platform and the OAuth 2.0 device
//! authorization grant flow" (learn.microsoft.com/entra/identity-platform/
//! v2-oauth2-device-code): `POST /devicecode` gives the user code, then the
//! token endpoint is polled with `grant_type=urn:ietf:params:oauth:grant-type:
//! device_code` every `interval` seconds, 5 s more after each `slow_down`
//! (RFC 8628 §3.5). These requests are built with reqwest directly rather
//! than `oauth2`'s device flow: its polling loop reports no progress (the
//! CLI needs a countdown) and its fixed device error type drops Entra's
//! `error_codes`.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::client::EntraClient;
use super::http::post_form;
use super::{AuthError, TokenSet};
use crate::secret::Secret;

/// `grant_type` of the polling requests.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Added to the interval on each `slow_down` (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Shortest wait between polls, whatever the server says (no busy loop).
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Longest interval or lifetime accepted from the server.
const MAX_SERVER_SECONDS: u64 = 3600;

/// What the user must do: visit `verification_uri` and enter `user_code`.
#[derive(Debug, Clone)]
pub struct DeviceCodeGrant {
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: Duration,
    pub interval: Duration,
    /// Entra's ready-made sentence ("To sign in, use a web browser …").
    pub message: String,
    pub(crate) device_code: Secret<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) issued: Instant,
}

impl DeviceCodeGrant {
    /// When the code stops being redeemable.
    pub fn deadline(&self) -> Instant {
        self.issued + self.expires_in
    }
}

#[derive(Deserialize)]
struct DeviceCodeWire {
    device_code: String,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct TokenWire {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
}

/// Progress of [`EntraClient::poll_device_code`], for a countdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceCodeEvent {
    /// The user has not finished yet; the code stays valid for `remaining`.
    Pending { remaining: Duration },
    /// The server asked to poll less often; the interval is now `interval`.
    SlowDown { interval: Duration },
}

/// The answer to one poll.
#[derive(Debug)]
pub enum DevicePoll {
    Pending,
    SlowDown,
    Complete(Box<TokenSet>),
}

/// The interval after a `slow_down` (RFC 8628 §3.5), bounded.
pub fn slowed_interval(interval: Duration) -> Duration {
    (interval + SLOW_DOWN_STEP).min(Duration::from_secs(MAX_SERVER_SECONDS))
}

impl EntraClient {
    /// Ask for a device code for `scopes`.
    pub async fn start_device_code(&self, scopes: &[String]) -> Result<DeviceCodeGrant, AuthError> {
        let url = self.config().device_code_url()?;
        let scope = scopes.join(" ");
        let form = [
            ("client_id", self.config().client_id.as_str()),
            ("scope", scope.as_str()),
        ];
        let wire: DeviceCodeWire = post_form(self.http(), &url, &form)
            .await?
            .map_err(AuthError::from_entra)?;
        let bound = |s: u64| Duration::from_secs(s.min(MAX_SERVER_SECONDS));
        Ok(DeviceCodeGrant {
            message: wire.message.unwrap_or_else(|| {
                format!(
                    "To sign in, use a web browser to open the page {} and enter the code {} to authenticate.",
                    wire.verification_uri, wire.user_code
                )
            }),
            user_code: wire.user_code,
            verification_uri: wire.verification_uri,
            expires_in: bound(wire.expires_in),
            // RFC 8628 §3.2: 5 seconds when absent.
            interval: bound(wire.interval.unwrap_or(5)),
            device_code: Secret::new(wire.device_code),
            scopes: scopes.to_vec(),
            issued: Instant::now(),
        })
    }

    /// Poll the token endpoint once.
    pub async fn poll_device_code_once(
        &self,
        grant: &DeviceCodeGrant,
    ) -> Result<DevicePoll, AuthError> {
        let url = self.config().token_url()?;
        let form = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", self.config().client_id.as_str()),
            ("device_code", grant.device_code.expose().as_str()),
        ];
        match post_form::<TokenWire>(self.http(), &url, &form).await? {
            Ok(wire) => Ok(DevicePoll::Complete(Box::new(TokenSet::from_response(
                wire.access_token,
                wire.refresh_token,
                wire.expires_in.map(Duration::from_secs),
                wire.scope.as_deref(),
                wire.id_token.as_deref(),
                &grant.scopes,
            )?))),
            Err(body) if body.error == "authorization_pending" => Ok(DevicePoll::Pending),
            Err(body) if body.error == "slow_down" => Ok(DevicePoll::SlowDown),
            // authorization_declined, expired_token, bad_verification_code
            // and every other AADSTS error end the flow.
            Err(body) => Err(AuthError::from_entra(body)),
        }
    }

    /// Poll until the user signs in, declines, or the code expires,
    /// reporting progress to `on_event`.
    pub async fn poll_device_code(
        &self,
        grant: &DeviceCodeGrant,
        mut on_event: impl FnMut(DeviceCodeEvent) + Send,
    ) -> Result<TokenSet, AuthError> {
        let mut interval = grant.interval.max(MIN_POLL_INTERVAL);
        loop {
            tokio::time::sleep(interval).await;
            match self.poll_device_code_once(grant).await? {
                DevicePoll::Complete(tokens) => return Ok(*tokens),
                DevicePoll::SlowDown => {
                    interval = slowed_interval(interval);
                    on_event(DeviceCodeEvent::SlowDown { interval });
                }
                DevicePoll::Pending => {
                    let remaining = grant.deadline().saturating_duration_since(Instant::now());
                    on_event(DeviceCodeEvent::Pending { remaining });
                }
            }
            // The server says expired_token; this only stops a server that
            // never does.
            if Instant::now() >= grant.deadline() + interval {
                return Err(AuthError::DeviceCodeExpired);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_down_adds_five_seconds() {
        assert_eq!(
            slowed_interval(Duration::from_secs(1)),
            Duration::from_secs(6)
        );
        assert_eq!(
            slowed_interval(Duration::from_secs(6)),
            Duration::from_secs(11)
        );
        assert_eq!(
            slowed_interval(Duration::from_secs(MAX_SERVER_SECONDS)),
            Duration::from_secs(MAX_SERVER_SECONDS)
        );
    }
}
