//! Issue 16, "Size": a message under graphgate's one-request limit that
//! Graph still refuses for its size (413) goes through a draft with its
//! attachments split off — delivered once, never bounced, never twice.
//! The simulator refuses MIME above `--mime-request-limit` bytes as
//! Microsoft was seen to (graph-facts.md, "MIME request size").

use std::process::{Command, Stdio};
use std::time::Duration;

use graphgate::store::{DeliveryMethod, SpoolState};
use serde_json::Value;

use super::support::{self, BIN, Proc, Sim};
use super::{Data, count, large_message, start_gateway};

/// A simulator that refuses MIME requests above `limit` decoded bytes.
fn sim_refusing_above(limit: usize) -> Sim {
    let limit = limit.to_string();
    let mut child = Command::new(BIN)
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--no-seed",
            "--mime-request-limit",
            &limit,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = support::banner(&mut child, "simulator on http://");
    Sim {
        url: support::url(&lines),
        proc: Proc(child),
    }
}

/// Submit `message` as alice to bob with Python's smtplib; the reply as
/// "code text" (250 when accepted).
fn smtplib_submit(smtp: &str, message: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("message.eml");
    std::fs::write(&path, message).unwrap();
    let (host, port) = smtp.rsplit_once(':').unwrap();
    let script = r#"
import smtplib, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = open(path, 'rb').read()
s = smtplib.SMTP(host, port, timeout=120)
s.ehlo('size-test')
s.login('alice@example.com', 'alice')
try:
    s.sendmail('alice@example.com', ['bob@example.com'], data)
    print('250 accepted')
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode(errors='replace').replace('\n', ' '))
except smtplib.SMTPServerDisconnected:
    print('closed before the reply')
    sys.exit(0)
s.quit()
"#;
    let out = Command::new(support::python())
        .arg("-c")
        .arg(script)
        .args([host, port, path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn stats(sim: &Sim) -> Value {
    reqwest::get(format!("{}/_sim/stats", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// About 1.4 MB: below graphgate's MAX_DIRECT_MIME (one sendMail), above
/// the simulator's 1,000,000.
fn refused_message(subject: &str) -> (Vec<u8>, Vec<u8>) {
    let content: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let msg = large_message(subject, &content);
    assert!(msg.len() > 1_000_000 && msg.len() < graphgate::graph::send::MAX_DIRECT_MIME);
    (msg, content)
}

#[tokio::test]
async fn a_message_graph_refuses_for_its_size_is_sent_once_through_a_draft() {
    let sim = sim_refusing_above(1_000_000);
    let data = Data::new(&sim, "").await;
    let gw = start_gateway(&data, &[]);
    let (msg, content) = refused_message("refused once");
    let reply = smtplib_submit(&gw.smtp, &msg);
    assert!(reply.starts_with("250"), "{reply}");
    data.drained(Duration::from_secs(60)).await;
    let inbox = sim.subjects("bob@example.com", "inbox").await;
    assert_eq!(count(&inbox, "refused once"), 1, "{inbox:?}");
    let sent = sim.subjects("alice@example.com", "sentitems").await;
    assert_eq!(count(&sent, "refused once"), 1, "{sent:?}");
    let drafts = sim.subjects("alice@example.com", "drafts").await;
    assert_eq!(count(&drafts, "refused once"), 0, "{drafts:?}");
    let mime = sim.mime_by_subject("bob@example.com", "refused once").await;
    let parsed = mail_parser::MessageParser::default().parse(&mime).unwrap();
    use mail_parser::MimeHeaders;
    let attachment = parsed.attachments().next().expect("the attachment");
    assert_eq!(attachment.attachment_name(), Some("blob.bin"));
    assert_eq!(attachment.contents(), content.as_slice());
    let entry = data.store().spool_list(None, None).unwrap().remove(0);
    assert_eq!(entry.state, SpoolState::Delivered);
    assert_eq!(entry.attempts, 1, "{entry:?}");
    assert_eq!(entry.method, Some(DeliveryMethod::DraftReady), "{entry:?}");
    let stats = stats(&sim).await;
    assert_eq!(stats["by_status"]["413"], 1, "{stats}");
    assert_eq!(stats["by_route"]["POST /v1.0/me/sendMail"], 1, "{stats}");
    assert_eq!(
        stats["by_route"]["POST /v1.0/me/messages/{message_id}/send"], 1,
        "{stats}"
    );
}

/// Aborted right after the draft of the fallback is created (its id not
/// yet on record): the restarted gateway removes that draft and sends the
/// message again — one copy arrives.
#[tokio::test]
async fn an_abort_inside_the_size_fallback_still_delivers_exactly_once() {
    let sim = sim_refusing_above(1_000_000);
    let data = Data::new(&sim, "").await;
    let (msg, _) = refused_message("refused crash");
    let gw = start_gateway(&data, &[("GRAPHGATE_CRASH_AT", "draft-created")]);
    let reply = smtplib_submit(&gw.smtp, &msg);
    assert_eq!(reply, "closed before the reply");
    gw.wait_exit();
    let entry = data.store().spool_list(None, None).unwrap().remove(0);
    assert_eq!(entry.state, SpoolState::Sending);
    assert_eq!(entry.method, Some(DeliveryMethod::Draft), "{entry:?}");
    let _gw = start_gateway(&data, &[]);
    data.drained(Duration::from_secs(60)).await;
    let inbox = sim.subjects("bob@example.com", "inbox").await;
    assert_eq!(count(&inbox, "refused crash"), 1, "{inbox:?}");
    let drafts = sim.subjects("alice@example.com", "drafts").await;
    assert_eq!(count(&drafts, "refused crash"), 0, "{drafts:?}");
    let entry = data.store().spool_list(None, None).unwrap().remove(0);
    assert_eq!(entry.state, SpoolState::Delivered, "{entry:?}");
}

/// Refused for its size with nothing to split off: a clear permanent
/// error, nothing sent, no draft left.
#[tokio::test]
async fn a_refused_message_without_attachments_fails_with_a_clear_reason() {
    let sim = sim_refusing_above(1_000_000);
    let data = Data::new(&sim, "").await;
    let gw = start_gateway(&data, &[]);
    let line = "x".repeat(70);
    let body: String = (0..17_000).map(|_| format!("{line}\r\n")).collect();
    let msg = format!(
        "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: plain big\r\n\r\n{body}"
    );
    let reply = smtplib_submit(&gw.smtp, msg.as_bytes());
    assert!(reply.starts_with("552"), "{reply}");
    assert!(reply.contains("no attachments"), "{reply}");
    assert_eq!(
        count(&sim.subjects("bob@example.com", "inbox").await, "plain big"),
        0
    );
    assert_eq!(
        count(
            &sim.subjects("alice@example.com", "drafts").await,
            "plain big"
        ),
        0
    );
}
