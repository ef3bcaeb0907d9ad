//! Alerts (issue 18): with `alerts.webhook_url` set, an account that
//! needs a new sign-in is reported to a webhook as JSON, and an alert the
//! webhook refuses is retried. The webhook is a local HTTP server in the
//! test; the demo's grants are revoked at the simulator, and the
//! gateway's token check (every second here) finds it.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

mod support;

/// A webhook that answers 500 to its first request and 200 afterwards,
/// passing on every request body.
async fn webhook() -> (String, mpsc::UnboundedReceiver<(u16, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut served = 0u32;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mut stream = BufReader::new(stream);
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                let mut any = false;
                loop {
                    line.clear();
                    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                        break;
                    }
                    any = true;
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                if !any {
                    break;
                }
                let mut body = vec![0; length];
                if stream.read_exact(&mut body).await.is_err() {
                    break;
                }
                served += 1;
                let status = if served == 1 { 500 } else { 200 };
                let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                let _ = stream.get_mut().write_all(reply.as_bytes()).await;
                let _ = tx.send((status, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            }
        }
    });
    (url, rx)
}

/// The next request the webhook got, within a deadline.
async fn next(alerts: &mut mpsc::UnboundedReceiver<(u16, Value)>) -> (u16, Value) {
    tokio::time::timeout(Duration::from_secs(60), alerts.recv())
        .await
        .expect("no alert within 60 s")
        .unwrap()
}

#[tokio::test]
async fn an_account_that_needs_sign_in_is_reported_to_the_webhook_with_retries() {
    let (url, mut alerts) = webhook().await;
    let d = support::demo_env(&[
        ("GRAPHGATE_ALERTS_WEBHOOK_URL", url.as_str()),
        ("GRAPHGATE_MICROSOFT_TOKEN_CHECK_S", "1"),
    ]);
    reqwest::Client::new()
        .post(format!("{}/_sim/faults", d.sim))
        .json(&serde_json::json!({"revoke_refresh_tokens": true}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    // The first delivery is refused (500) and retried with the same alert.
    let (status, first) = next(&mut alerts).await;
    assert_eq!(status, 500);
    assert_eq!(first["event"], "account_needs_sign_in", "{first}");
    let account = first["account"].as_str().unwrap().to_string();
    assert!(account.ends_with("@example.com"), "{first}");
    assert_eq!(
        first["fix"],
        format!("graphgate login {account}"),
        "{first}"
    );
    assert!(
        first["text"].as_str().unwrap().contains(&account),
        "{first}"
    );
    let mut retried = false;
    while !retried {
        let (status, again) = next(&mut alerts).await;
        retried = again["account"] == account.as_str() && again["at"].is_number();
        assert!(!retried || status == 200);
    }
}

/// The next alert of `event` (others, and retries of earlier ones, are
/// skipped).
async fn next_of(alerts: &mut mpsc::UnboundedReceiver<(u16, Value)>, event: &str) -> Value {
    loop {
        let (_, alert) = next(alerts).await;
        if alert["event"] == event {
            return alert;
        }
    }
}

/// One message from alice to bob through the demo's SMTP port.
fn send(d: &support::Demo, subject: &str) {
    let (host, port) = d.smtp.rsplit_once(':').unwrap();
    support::py_with(
        "import smtplib, sys\n\
         s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=60)\n\
         s.login('alice@example.com', 'alice')\n\
         s.sendmail('alice@example.com', ['bob@example.com'], \
         'From: alice@example.com\\r\\nTo: bob@example.com\\r\\nSubject: %s\\r\\n\\r\\nx\\r\\n' \
         % sys.argv[3])\n\
         s.quit()\n",
        &[host, port, subject],
    );
}

/// Graph answers 503 to everything from now on.
async fn graph_down(d: &support::Demo) {
    reqwest::Client::new()
        .post(format!("{}/_sim/faults", d.sim))
        .json(&serde_json::json!({"error_rate": 1.0, "retry_after_s": 1}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

/// A message still queued `alerts.queued_after_s` after it was accepted
/// (Graph answers 503) is reported as `message_queued`, with its queue id,
/// recipients and the command that shows it.
#[tokio::test]
async fn a_message_queued_too_long_is_reported_to_the_webhook() {
    let (url, mut alerts) = webhook().await;
    let d = support::demo_env(&[
        ("GRAPHGATE_ALERTS_WEBHOOK_URL", url.as_str()),
        ("GRAPHGATE_ALERTS_QUEUED_AFTER_S", "1"),
        ("GRAPHGATE_SMTP_SYNC_WINDOW_S", "0"),
    ]);
    graph_down(&d).await;
    send(&d, "stuck in the queue");
    let alert = next_of(&mut alerts, "message_queued").await;
    assert_eq!(alert["account"], "alice@example.com", "{alert}");
    let id = alert["queue_id"].as_i64().expect("a queue id");
    let text = alert["text"].as_str().unwrap();
    assert!(text.contains("to bob@example.com"), "{alert}");
    assert!(text.contains("waited"), "{alert}");
    assert!(
        alert["fix"]
            .as_str()
            .unwrap()
            .starts_with(&format!("graphgate queue show {id}")),
        "{alert}"
    );
}

/// A message that bounces (undeliverable past `smtp.bounce_after_h`, here
/// 0) is reported as `message_bounced` with its queue id.
#[tokio::test]
async fn a_bounce_is_reported_to_the_webhook() {
    let (url, mut alerts) = webhook().await;
    let d = support::demo_env(&[
        ("GRAPHGATE_ALERTS_WEBHOOK_URL", url.as_str()),
        ("GRAPHGATE_SMTP_SYNC_WINDOW_S", "0"),
        ("GRAPHGATE_SMTP_BOUNCE_AFTER_H", "0"),
    ]);
    graph_down(&d).await;
    send(&d, "doomed");
    let alert = next_of(&mut alerts, "message_bounced").await;
    assert_eq!(alert["account"], "alice@example.com", "{alert}");
    let id = alert["queue_id"].as_i64().expect("a queue id");
    assert!(
        alert["fix"]
            .as_str()
            .unwrap()
            .starts_with(&format!("graphgate queue show {id}")),
        "{alert}"
    );
    assert!(!alert["text"].as_str().unwrap().is_empty(), "{alert}");
}

/// With `alerts.mail_to`, an alert is also mailed to the admin through
/// another account (`alerts.mail_from_account`), via the spool: here a
/// message of alice's waits too long while Graph is down; once Graph is
/// back, bob's mailbox holds the alert mail.
#[tokio::test]
async fn an_alert_is_mailed_to_the_admin_through_another_account() {
    let (url, mut alerts) = webhook().await;
    let d = support::demo_env(&[
        ("GRAPHGATE_ALERTS_WEBHOOK_URL", url.as_str()),
        ("GRAPHGATE_ALERTS_QUEUED_AFTER_S", "1"),
        ("GRAPHGATE_ALERTS_MAIL_TO", "bob@example.com"),
        ("GRAPHGATE_ALERTS_MAIL_FROM_ACCOUNT", "bob@example.com"),
        ("GRAPHGATE_SMTP_SYNC_WINDOW_S", "0"),
        ("GRAPHGATE_SMTP_RETRY_BASE_S", "1"),
    ]);
    graph_down(&d).await;
    send(&d, "waits while Graph is down");
    let alert = next_of(&mut alerts, "message_queued").await;
    assert_eq!(alert["account"], "alice@example.com", "{alert}");
    reqwest::Client::new()
        .delete(format!("{}/_sim/faults", d.sim))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let token = support::token(&d.sim, "bob@example.com").await;
    let subject = "graphgate alert: message_queued (alice@example.com)";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let page: Value = reqwest::Client::new()
            .get(format!(
                "{}/v1.0/me/mailFolders/inbox/messages?$top=100&$select=subject,from",
                d.sim
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found: Vec<&Value> = page["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["subject"] == subject)
            .collect();
        if let Some(mail) = found.first() {
            assert_eq!(found.len(), 1, "{page}");
            assert_eq!(
                mail["from"]["emailAddress"]["address"], "bob@example.com",
                "{mail}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alert mail in bob's inbox: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
