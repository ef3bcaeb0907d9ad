//! Issue 22: what proves that an entry was sent, and whose drafts
//! recovery may touch — reused Message-IDs, resubmissions after a lost
//! reply, drafts deleted behind the gateway's back.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;

use super::support::{self, BIN, Proc, Sim};
use super::{Data, count, large_message, start_gateway, start_sim, submit};

/// A message with its own Message-ID `mid`.
fn message_with_id(subject: &str, mid: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\nSubject: {subject}\r\n\
         Message-ID: <{mid}>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Issue 22, item 4: message B reuses message A's Message-ID with a new
/// body and is aborted before its send reaches Graph. A's copy in Sent
/// Items carries the Message-ID but not B's submission id: the resolver
/// must not take it for B's, and B arrives.
#[tokio::test]
async fn a_reused_message_id_in_sent_items_is_no_proof_that_another_submission_was_sent() {
    reused_message_id_then_abort_before_send(start_sim()).await;
}

/// The same with the simulator re-rendering MIME as Exchange does: the
/// submission header survives in the `$value` of the Sent Items copy and
/// is still told apart.
#[tokio::test]
async fn a_reused_message_id_is_told_apart_when_exchange_rerenders_the_mime() {
    let mut child = Command::new(BIN)
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--no-seed",
            "--exchange-mime",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = support::banner(&mut child, "simulator on http://");
    let sim = Sim {
        url: support::url(&lines),
        proc: Proc(child),
    };
    reused_message_id_then_abort_before_send(sim).await;
}

async fn reused_message_id_then_abort_before_send(sim: Sim) {
    let data = Data::new(&sim, "").await;
    let gw = start_gateway(&data, &[]);
    let first = message_with_id("reused A", "reused@example.com", "the first body");
    let reply = submit(&gw.smtp, &["bob@example.com"], &first)
        .await
        .unwrap();
    assert!(reply.starts_with("250"), "{reply}");
    gw.kill();
    let gw = start_gateway(&data, &[("GRAPHGATE_CRASH_AT", "before-send")]);
    let second = message_with_id("reused B", "reused@example.com", "a second body");
    assert_eq!(submit(&gw.smtp, &["bob@example.com"], &second).await, None);
    gw.wait_exit();
    let _gw = start_gateway(&data, &[]);
    data.drained(Duration::from_secs(60)).await;
    let inbox = sim.subjects("bob@example.com", "inbox").await;
    assert_eq!(count(&inbox, "reused A"), 1, "{inbox:?}");
    assert_eq!(count(&inbox, "reused B"), 1, "B was lost: {inbox:?}");
    for (subject, body) in [
        ("reused A", "the first body"),
        ("reused B", "a second body"),
    ] {
        let mime = sim.mime_by_subject("bob@example.com", subject).await;
        let text = String::from_utf8_lossy(&mime);
        assert!(text.contains(body), "{subject}: {text}");
    }
}

/// Issue 22, item 5: a large message (the draft path) is interrupted after
/// the final dot — the client gets no reply — and the client sends it
/// again. The retry gets 250, and the message arrives once, whole, with
/// no draft left behind.
#[tokio::test]
async fn a_large_message_sent_again_after_a_lost_reply_arrives_once() {
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    let content: Vec<u8> = (0..3_500_000u32).map(|i| (i % 241) as u8).collect();
    let msg = large_message("large retry", &content);
    let msg = [
        b"Message-ID: <large-retry@example.com>\r\n".as_slice(),
        &msg,
    ]
    .concat();
    let gw = start_gateway(&data, &[("GRAPHGATE_CRASH_AT", "after-draft")]);
    assert_eq!(submit(&gw.smtp, &["bob@example.com"], &msg).await, None);
    gw.wait_exit();
    let gw = start_gateway(&data, &[]);
    let reply = submit(&gw.smtp, &["bob@example.com"], &msg).await.unwrap();
    assert!(reply.starts_with("250"), "the retry got {reply}");
    data.drained(Duration::from_secs(120)).await;
    let inbox = sim.subjects("bob@example.com", "inbox").await;
    assert_eq!(count(&inbox, "large retry"), 1, "{inbox:?}");
    let drafts = sim.subjects("alice@example.com", "drafts").await;
    assert_eq!(count(&drafts, "large retry"), 0, "{drafts:?}");
    let mime = sim.mime_by_subject("bob@example.com", "large retry").await;
    let parsed = mail_parser::MessageParser::default().parse(&mime).unwrap();
    let attachment = parsed.attachments().next().expect("an attachment");
    assert!(attachment.contents() == content.as_slice());
}

/// Issue 22, item 5: an attempt dies after Graph created its draft and
/// before the draft's id was recorded. Recovery deletes that orphan — and
/// not another draft with the same Message-ID (here one the mailbox's
/// owner keeps, standing for another entry's live draft).
#[tokio::test]
async fn recovery_deletes_its_own_orphan_draft_and_no_other_with_the_message_id() {
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    let content: Vec<u8> = (0..3_500_000u32).map(|i| (i % 239) as u8).collect();
    let msg = large_message("orphan", &content);
    let msg = [b"Message-ID: <orphan@example.com>\r\n".as_slice(), &msg].concat();
    let gw = start_gateway(&data, &[("GRAPHGATE_CRASH_AT", "draft-created")]);
    assert_eq!(submit(&gw.smtp, &["bob@example.com"], &msg).await, None);
    gw.wait_exit();
    // Another draft with the same Message-ID, not this entry's.
    let other = "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: not the orphan\r\n\
                 Message-ID: <orphan@example.com>\r\n\r\nkeep me\r\n";
    let token = sim.token("alice@example.com").await;
    let created = reqwest::Client::new()
        .post(format!("{}/v1.0/me/messages", sim.url))
        .bearer_auth(&token)
        .header("Content-Type", "text/plain")
        .body(base64::engine::general_purpose::STANDARD.encode(other))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let drafts = sim.subjects("alice@example.com", "drafts").await;
    assert_eq!(count(&drafts, "orphan"), 1, "the orphan: {drafts:?}");
    let _gw = start_gateway(&data, &[]);
    data.drained(Duration::from_secs(120)).await;
    let inbox = sim.subjects("bob@example.com", "inbox").await;
    assert_eq!(count(&inbox, "orphan"), 1, "{inbox:?}");
    let drafts = sim.subjects("alice@example.com", "drafts").await;
    assert_eq!(count(&drafts, "orphan"), 0, "the orphan stayed: {drafts:?}");
    assert_eq!(count(&drafts, "not the orphan"), 1, "{drafts:?}");
}

/// Issue 22, item 5: a draft that is gone (404) is not proof of sending
/// while it was still incomplete — an incomplete draft is never sent. Here
/// the attempt dies with its draft recorded and not yet complete, and the
/// draft is deleted behind the gateway's back (as another entry's recovery
/// used to): the message must still arrive, once.
#[tokio::test]
async fn an_incomplete_draft_deleted_behind_the_gateways_back_is_sent_again() {
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    let content: Vec<u8> = (0..3_500_000u32).map(|i| (i % 233) as u8).collect();
    let msg = large_message("draft deleted", &content);
    let gw = start_gateway(&data, &[("GRAPHGATE_CRASH_AT", "after-draft")]);
    assert_eq!(submit(&gw.smtp, &["bob@example.com"], &msg).await, None);
    gw.wait_exit();
    let entry = data.store().spool_list(None, None).unwrap().remove(0);
    let draft = entry.draft_id.expect("the draft id is recorded");
    let token = sim.token("alice@example.com").await;
    let deleted = reqwest::Client::new()
        .post(format!(
            "{}/v1.0/me/messages/{draft}/permanentDelete",
            sim.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let _gw = start_gateway(&data, &[]);
    data.drained(Duration::from_secs(120)).await;
    let inbox = sim.subjects("bob@example.com", "inbox").await;
    assert_eq!(count(&inbox, "draft deleted"), 1, "{inbox:?}");
    let mime = sim
        .mime_by_subject("bob@example.com", "draft deleted")
        .await;
    let parsed = mail_parser::MessageParser::default().parse(&mime).unwrap();
    let attachment = parsed.attachments().next().expect("an attachment");
    assert!(attachment.contents() == content.as_slice());
}
