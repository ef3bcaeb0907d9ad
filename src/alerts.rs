//! Alerts for the admin: a JSON POST to `alerts.webhook_url` when an
//! account needs a new sign-in (it went OFFLINE and only `graphgate login`
//! helps), a message bounced, or a message waited hours in the queue.
//! Each alert is sent in the background and retried (up to [`ATTEMPTS`]
//! times, 1 s, 2 s, 4 s … apart) until the webhook answers 2xx; a webhook
//! that never does costs a warning in the log, never a message or a
//! session. The body:
//!
//! ```json
//! {"event": "account_needs_sign_in", "account": "alice@contoso.com",
//!  "text": "…what happened…", "fix": "graphgate login alice@contoso.com",
//!  "host": "mailgw1", "at": 1765152000}
//! ```
//!
//! `event` is `account_needs_sign_in`, `message_bounced` or
//! `message_queued` (a message waiting `alerts.queued_after_s` for
//! delivery, see `spool::overdue`; both then with `queue_id`). Configured once per process ([`init`], by the gateway).

use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;

/// Deliveries tried per alert.
pub const ATTEMPTS: u32 = 5;

static WEBHOOK: OnceLock<Webhook> = OnceLock::new();

struct Webhook {
    url: String,
    client: reqwest::Client,
}

/// One alert.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub event: &'static str,
    pub account: String,
    pub text: String,
    pub fix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<i64>,
}

/// Delivers an alert as mail (`alerts.mail_to`), set by the gateway.
type Mailer = Box<dyn Fn(&Alert) + Send + Sync>;

static MAILER: OnceLock<Mailer> = OnceLock::new();

/// Mail every alert through `mailer` from now on. The first call wins.
pub fn set_mailer(mailer: Mailer) {
    let _ = MAILER.set(mailer);
}

/// The alert as a mail's subject and text body.
pub fn as_mail(alert: &Alert) -> (String, String) {
    let subject = format!("graphgate alert: {} ({})", alert.event, alert.account);
    let mut body = format!(
        "{}\r\n\r\nWhat helps: {}\r\n\r\nAccount: {}\r\nHost: {}\r\n",
        alert.text,
        alert.fix,
        alert.account,
        host()
    );
    if let Some(id) = alert.queue_id {
        body.push_str(&format!("Queue id: {id}\r\n"));
    }
    (subject, body)
}

/// Send alerts to `url` from now on (empty: none). The first call wins.
pub fn init(url: &str) -> Result<(), String> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(());
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(format!(
            "alerts.webhook_url {url:?} is not an http(s) URL; fix the alerts.webhook_url setting"
        ));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("alerts.webhook_url: {e}"))?;
    let _ = WEBHOOK.set(Webhook {
        url: url.to_string(),
        client,
    });
    Ok(())
}

/// Post `alert` in the background, and mail it when `alerts.mail_to` is
/// set (no-op without a webhook, a mailer or a runtime).
pub fn emit(alert: Alert) {
    if let Some(mailer) = MAILER.get() {
        mailer(&alert);
    }
    let Some(hook) = WEBHOOK.get() else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let body = serde_json::json!({
        "event": alert.event,
        "account": alert.account,
        "text": alert.text,
        "fix": alert.fix,
        "queue_id": alert.queue_id,
        "host": host(),
        "at": crate::store::now_unix(),
    });
    runtime.spawn(async move {
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=ATTEMPTS {
            match hook.client.post(&hook.url).json(&body).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => tracing::warn!(
                    attempt,
                    status = r.status().as_u16(),
                    "alerts.webhook_url refused an alert"
                ),
                Err(e) => tracing::warn!(attempt, error = %e, "alerts.webhook_url unreachable"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        tracing::error!(
            event = alert.event,
            "an alert could not be delivered to alerts.webhook_url after {ATTEMPTS} attempts"
        );
    });
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
