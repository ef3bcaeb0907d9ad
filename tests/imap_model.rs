//! The mailbox model as several IMAP clients see it, over real sockets
//! against the demo: changes to one message are ordered (no lost update
//! between two sessions, with Graph latency injected), flags Graph keeps
//! beyond `isRead` survive a sync and come back from Outlook, sequence
//! numbers past the end are refused as Dovecot refuses them, APPEND and
//! COPY into the selected folder announce EXISTS, MOVE and COPY into the
//! same folder lose nothing, a new keyword grows FLAGS, and a STORE goes on
//! past a message another client expunged.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

use support::{Demo, demo, token};

/// A raw IMAP dialogue: send a line, read until the tagged reply.
struct Raw {
    read: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn login(addr: &str, user: &str) -> Raw {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut raw = Raw {
            read: tokio::io::BufReader::new(read),
            write,
        };
        let mut greeting = String::new();
        raw.read.read_line(&mut greeting).await.unwrap();
        let password = user.split('@').next().unwrap();
        let r = raw.cmd(&format!("l LOGIN {user} {password}")).await;
        assert!(last(&r).starts_with("l OK"), "{r:?}");
        raw
    }

    /// Send `line` (tag included) and return every line up to and
    /// including the tagged one.
    async fn cmd(&mut self, line: &str) -> Vec<String> {
        let tag = line.split_whitespace().next().unwrap().to_string();
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.until(&tag).await
    }

    async fn until(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let mut l = String::new();
            let n = tokio::time::timeout(Duration::from_secs(60), self.read.read_line(&mut l))
                .await
                .expect("reply within 60 s")
                .unwrap();
            assert!(n > 0, "connection closed after {out:?}");
            let done = l.starts_with(&format!("{tag} "));
            out.push(l.trim_end().to_string());
            if done {
                return out;
            }
        }
    }

    /// APPEND `message` to `folder` with the internal date `date`.
    async fn append_dated(
        &mut self,
        tag: &str,
        folder: &str,
        date: &str,
        message: &str,
    ) -> Vec<String> {
        self.write
            .write_all(
                format!(
                    "{tag} APPEND {folder} \"{date}\" {{{}+}}\r\n{message}\r\n",
                    message.len()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        self.until(tag).await
    }

    /// APPEND `message` to `folder` with `flags`.
    async fn append(&mut self, tag: &str, folder: &str, flags: &str, message: &str) -> Vec<String> {
        self.write
            .write_all(
                format!(
                    "{tag} APPEND {folder} ({flags}) {{{}+}}\r\n{message}\r\n",
                    message.len()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        self.until(tag).await
    }
}

fn last(lines: &[String]) -> &str {
    lines.last().map(String::as_str).unwrap_or_default()
}

fn message(subject: &str) -> String {
    format!(
        "From: Carol <carol@example.com>\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.com>\r\n\r\nbody of {subject}\r\n"
    )
}

/// The flags of message `seq` as `FETCH seq FLAGS` answers them.
async fn flags_of(c: &mut Raw, seq: u32) -> String {
    let r = c.cmd(&format!("f FETCH {seq} (FLAGS)")).await;
    assert!(last(&r).starts_with("f OK"), "{r:?}");
    r.iter()
        .find(|l| l.starts_with(&format!("* {seq} FETCH (")) && l.contains("FLAGS ("))
        .cloned()
        .unwrap_or_else(|| panic!("no FLAGS for {seq}: {r:?}"))
}

/// A new folder of alice's with one appended message per subject.
async fn folder_with(c: &mut Raw, folder: &str, subjects: &[&str]) {
    let r = c.cmd(&format!("c CREATE {folder}")).await;
    assert!(last(&r).starts_with("c OK"), "{r:?}");
    for s in subjects {
        let r = c.append("a", folder, "", &message(s)).await;
        assert!(last(&r).starts_with("a OK"), "{r:?}");
    }
}

/// Graph, as Outlook uses it, for alice.
struct Outlook {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Outlook {
    async fn new(d: &Demo) -> Outlook {
        Outlook {
            http: reqwest::Client::new(),
            base: format!("{}/v1.0/me", d.sim),
            token: token(&d.sim, "alice@example.com").await,
        }
    }

    /// The Graph message whose subject is `subject` (in any folder).
    async fn find(&self, subject: &str) -> Value {
        let page: Value = self
            .http
            .get(format!(
                "{}/messages?$select=id,subject,categories,isRead,isDraft,flag&$top=1000",
                self.base
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["subject"] == subject)
            .cloned()
            .unwrap_or_else(|| panic!("no message {subject:?} in {page}"))
    }

    async fn patch(&self, subject: &str, body: Value) {
        let id = self.find(subject).await["id"].as_str().unwrap().to_string();
        let r = self
            .http
            .patch(format!("{}/messages/{id}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    /// Delete for good (another client's EXPUNGE with
    /// `expunge_permanently`): Graph then answers ErrorItemNotFound.
    async fn delete(&self, subject: &str) {
        let id = self.find(subject).await["id"].as_str().unwrap().to_string();
        let r = self
            .http
            .post(format!("{}/messages/{id}/permanentDelete", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
}

async fn faults(d: &Demo, body: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/faults", d.sim))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// Two sessions (two connections) each add 20 keywords to the same
/// message, at once, with every Graph request 20 ms slow, while a third
/// session keeps syncing: every keyword is there afterwards, in IMAP and
/// in Graph (a real IMAP server loses none; a read-modify-write of the
/// whole categories list outside any lock lost 17 of 40).
#[tokio::test]
async fn two_sessions_adding_keywords_to_one_message_lose_none() {
    let d = demo();
    let mut setup = Raw::login(&d.imap, "alice@example.com").await;
    folder_with(&mut setup, "Race", &["race-target"]).await;
    faults(&d, json!({"latency_ms": 20})).await;
    let mut sessions = Vec::new();
    for who in ["a", "b"] {
        let mut c = Raw::login(&d.imap, "alice@example.com").await;
        let r = c.cmd("s SELECT Race").await;
        assert!(last(&r).starts_with("s OK"), "{r:?}");
        sessions.push(tokio::spawn(async move {
            for i in 0..20 {
                let r = c.cmd(&format!("t{i} STORE 1 +FLAGS (k{who}_{i})")).await;
                assert!(last(&r).starts_with(&format!("t{i} OK")), "{r:?}");
            }
        }));
    }
    let r = setup.cmd("s SELECT Race").await;
    assert!(last(&r).starts_with("s OK"), "{r:?}");
    let syncing = tokio::spawn(async move {
        for i in 0..10 {
            setup.cmd(&format!("n{i} NOOP")).await;
        }
        setup
    });
    for s in sessions {
        s.await.unwrap();
    }
    let mut setup = syncing.await.unwrap();
    faults(&d, json!({"latency_ms": 0})).await;
    setup.cmd("n NOOP").await;
    let flags = flags_of(&mut setup, 1).await;
    let graph = Outlook::new(&d).await.find("race-target").await;
    let categories: Vec<&str> = graph["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let mut missing = Vec::new();
    for who in ["a", "b"] {
        for i in 0..20 {
            let k = format!("k{who}_{i}");
            if !flags.contains(&format!(" {k}")) && !flags.contains(&format!("({k}")) {
                missing.push(format!("{k} (IMAP)"));
            }
            if !categories.contains(&k.as_str()) {
                missing.push(format!("{k} (Graph)"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "lost: {missing:?}\n{flags}\n{categories:?}"
    );
}

/// `\Answered` and `$Forwarded` set by IMAP survive the next sync; a reply
/// made in Outlook (PR_LAST_VERB_EXECUTED = 102 set through Graph) shows as
/// `\Answered` after one.
#[tokio::test]
async fn answered_and_forwarded_survive_a_sync_and_outlook_replies_show() {
    let d = demo();
    let mut c = Raw::login(&d.imap, "alice@example.com").await;
    folder_with(&mut c, "Verbs", &["verb-imap", "verb-outlook", "verb-fwd"]).await;
    c.cmd("s SELECT Verbs").await;
    let r = c.cmd("t1 STORE 1 +FLAGS (\\Answered \\Flagged)").await;
    assert!(last(&r).starts_with("t1 OK"), "{r:?}");
    let r = c.cmd("t2 STORE 3 +FLAGS ($Forwarded)").await;
    assert!(last(&r).starts_with("t2 OK"), "{r:?}");
    c.cmd("n1 NOOP").await;
    c.cmd("n2 NOOP").await;
    let one = flags_of(&mut c, 1).await;
    assert!(
        one.contains("\\Answered") && one.contains("\\Flagged"),
        "{one}"
    );
    let three = flags_of(&mut c, 3).await;
    assert!(three.contains("$Forwarded"), "{three}");
    // Outlook replies to the second message.
    let outlook = Outlook::new(&d).await;
    outlook
        .patch(
            "verb-outlook",
            json!({"singleValueExtendedProperties": [
                {"id": "Integer 0x1081", "value": "102"},
                {"id": "Integer 0x1080", "value": "261"}
            ]}),
        )
        .await;
    let r = c.cmd("n3 NOOP").await;
    assert!(
        r.iter()
            .any(|l| l.starts_with("* 2 FETCH (") && l.contains("\\Answered")),
        "the reply made in Outlook is announced: {r:?}"
    );
    let two = flags_of(&mut c, 2).await;
    assert!(two.contains("\\Answered"), "{two}");
    // And the others are unchanged by that sync.
    let one = flags_of(&mut c, 1).await;
    assert!(one.contains("\\Answered"), "{one}");
}

/// Graph's delta may carry only the changed fields of an updated message
/// (`id`, `isRead`, `parentFolderId` when Outlook marks it read): what it
/// leaves out is unchanged — `\Flagged` and keywords stay.
#[tokio::test]
async fn a_partial_delta_update_keeps_the_flags_it_does_not_name() {
    let d = demo();
    let mut c = Raw::login(&d.imap, "alice@example.com").await;
    folder_with(&mut c, "Partial", &["partial-1"]).await;
    c.cmd("s SELECT Partial").await;
    let r = c.cmd("t1 STORE 1 +FLAGS (\\Flagged project-x)").await;
    assert!(last(&r).starts_with("t1 OK"), "{r:?}");
    c.cmd("n1 NOOP").await;
    Outlook::new(&d)
        .await
        .patch("partial-1", json!({"isRead": true}))
        .await;
    c.cmd("n2 NOOP").await;
    let flags = flags_of(&mut c, 1).await;
    assert!(
        flags.contains("\\Seen") && flags.contains("\\Flagged") && flags.contains("project-x"),
        "{flags}"
    );
}

/// `FETCH 5`, `STORE 5`, `COPY 5` on a 1-message folder are BAD, as
/// Dovecot answers them (`Error in IMAP command …: Invalid messageset`);
/// a UID set past the end is not an error (RFC 3501 §6.4.8).
#[tokio::test]
async fn sequence_numbers_past_the_end_are_bad_uids_are_not() {
    let d = demo();
    let mut c = Raw::login(&d.imap, "alice@example.com").await;
    folder_with(&mut c, "One", &["only-one"]).await;
    c.cmd("s SELECT One").await;
    for (tag, command) in [
        ("f5", "FETCH 5 (FLAGS)"),
        ("f6", "FETCH 1:5 (FLAGS)"),
        ("s5", "STORE 5 +FLAGS (\\Flagged)"),
        ("c5", "COPY 5 INBOX"),
        ("m5", "MOVE 5 INBOX"),
    ] {
        let r = c.cmd(&format!("{tag} {command}")).await;
        assert!(
            last(&r).starts_with(&format!("{tag} BAD Error in IMAP command "))
                && last(&r).contains("Invalid messageset"),
            "{r:?}"
        );
    }
    // Nothing was done.
    let flags = flags_of(&mut c, 1).await;
    assert!(!flags.contains("\\Flagged"), "{flags}");
    let r = c.cmd("u1 UID FETCH 5:9 (FLAGS)").await;
    assert_eq!(r, vec!["u1 OK FETCH completed".to_string()]);
    let r = c.cmd("u2 UID STORE 5 +FLAGS (\\Flagged)").await;
    assert!(last(&r).starts_with("u2 OK"), "{r:?}");
    let r = c.cmd("f1 FETCH 1:* (UID)").await;
    assert!(last(&r).starts_with("f1 OK"), "{r:?}");
}

/// APPEND and COPY into the selected folder announce the new message
/// (`* n EXISTS`, RFC 3501 §6.3.11, §7.3.1), and it can be used at once.
#[tokio::test]
async fn append_and_copy_into_the_selected_folder_announce_exists() {
    let d = demo();
    let mut c = Raw::login(&d.imap, "alice@example.com").await;
    folder_with(&mut c, "Here", &["here-1"]).await;
    let r = c.cmd("s SELECT Here").await;
    assert!(r.contains(&"* 1 EXISTS".to_string()), "{r:?}");
    let r = c.append("a1", "Here", "\\Seen", &message("here-2")).await;
    assert!(last(&r).starts_with("a1 OK [APPENDUID "), "{r:?}");
    assert!(r.contains(&"* 2 EXISTS".to_string()), "{r:?}");
    let r = c.cmd("c1 COPY 2 Here").await;
    assert!(r.contains(&"* 3 EXISTS".to_string()), "{r:?}");
    assert!(last(&r).starts_with("c1 OK [COPYUID "), "{r:?}");
    let r = c.cmd("c2 COPY 1 INBOX").await;
    assert!(last(&r).starts_with("c2 OK [COPYUID "), "{r:?}");
    let r = c.cmd("f1 FETCH 1:* (UID)").await;
    assert_eq!(r.len(), 4, "{r:?}");
}

/// MOVE into the same folder is what Dovecot does: the message stays and
/// gets a new UID (COPYUID, EXPUNGE of the old number, EXISTS of the new);
/// COPY into the same folder adds a second message. Nothing disappears
/// from IMAP, now or after a sync.
#[tokio::test]
async fn move_and_copy_into_the_same_folder_lose_nothing() {
    let d = demo();
    let mut c = Raw::login(&d.imap, "alice@example.com").await;
    folder_with(&mut c, "Same", &["same-1", "same-2"]).await;
    c.cmd("s SELECT Same").await;
    let r = c.cmd("m1 UID MOVE 1 Same").await;
    assert!(last(&r).starts_with("m1 OK"), "{r:?}");
    assert!(
        r.iter()
            .any(|l| l.starts_with("* OK [COPYUID ") && l.contains(" 1 3]")),
        "{r:?}"
    );
    assert!(r.contains(&"* 1 EXPUNGE".to_string()), "{r:?}");
    assert!(r.contains(&"* 2 EXISTS".to_string()), "{r:?}");
    c.cmd("n1 NOOP").await;
    let r = c.cmd("f1 UID FETCH 1:* (UID)").await;
    assert_eq!(
        r,
        vec![
            "* 1 FETCH (UID 2)".to_string(),
            "* 2 FETCH (UID 3)".to_string(),
            "f1 OK FETCH completed".to_string()
        ]
    );
    let r = c.cmd("c1 UID COPY 2 Same").await;
    assert!(
        last(&r).starts_with("c1 OK [COPYUID ") && last(&r).contains(" 2 4]"),
        "{r:?}"
    );
    assert!(r.contains(&"* 3 EXISTS".to_string()), "{r:?}");
    c.cmd("n2 NOOP").await;
    // A fresh session, after a fresh sync, sees the same three.
    let mut other = Raw::login(&d.imap, "alice@example.com").await;
    let r = other.cmd("s SELECT Same").await;
    assert!(r.contains(&"* 3 EXISTS".to_string()), "{r:?}");
}

/// A keyword new to the folder grows FLAGS and PERMANENTFLAGS (RFC 3501
/// §7.2.6) for the session that set it and for the others; `\Draft`,
/// which Graph cannot change after creation, is not offered.
#[tokio::test]
async fn a_new_keyword_grows_flags_and_permanentflags() {
    let d = demo();
    let mut a = Raw::login(&d.imap, "alice@example.com").await;
    folder_with(&mut a, "Kw", &["kw-1"]).await;
    let r = a.cmd("s SELECT Kw").await;
    let permanent = r
        .iter()
        .find(|l| l.contains("[PERMANENTFLAGS"))
        .cloned()
        .unwrap();
    assert!(permanent.contains("\\Draft"), "{permanent}");
    let mut b = Raw::login(&d.imap, "alice@example.com").await;
    b.cmd("s SELECT Kw").await;
    let r = a.cmd("t1 STORE 1 +FLAGS (urgent)").await;
    assert!(
        r.iter()
            .any(|l| l.starts_with("* FLAGS (") && l.contains("urgent")),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|l| l.contains("[PERMANENTFLAGS (") && l.contains("urgent")),
        "{r:?}"
    );
    let r = b.cmd("n1 NOOP").await;
    assert!(
        r.iter()
            .any(|l| l.starts_with("* FLAGS (") && l.contains("urgent")),
        "{r:?}"
    );
    let r = b.cmd("s2 SELECT Kw").await;
    assert!(
        r.iter()
            .any(|l| l.starts_with("* FLAGS (") && l.contains("urgent")),
        "{r:?}"
    );
}

/// A STORE over a set goes on past a message another client deleted
/// meanwhile (Graph: ErrorItemNotFound): the others change, and the gone
/// one is announced as expunged at the next NOOP.
#[tokio::test]
async fn store_over_a_set_goes_on_past_a_message_deleted_elsewhere() {
    let d = demo();
    let mut c = Raw::login(&d.imap, "alice@example.com").await;
    folder_with(&mut c, "Set", &["set-1", "set-2", "set-3"]).await;
    c.cmd("s SELECT Set").await;
    Outlook::new(&d).await.delete("set-2").await;
    let r = c.cmd("t1 STORE 1:3 +FLAGS (\\Flagged)").await;
    assert!(!r.iter().any(|l| l.contains("EXPUNGE")), "{r:?}");
    assert!(
        r.iter()
            .any(|l| l.starts_with("* 3 FETCH (") && l.contains("\\Flagged")),
        "{r:?}"
    );
    let r = c.cmd("n1 NOOP").await;
    assert!(r.contains(&"* 2 EXPUNGE".to_string()), "{r:?}");
    let one = flags_of(&mut c, 1).await;
    let two = flags_of(&mut c, 2).await;
    assert!(
        one.contains("\\Flagged") && two.contains("\\Flagged"),
        "{one} {two}"
    );
}

/// SUBSCRIBE and UNSUBSCRIBE are kept per account (RFC 3501 §6.3.6,
/// §6.3.7) and LSUB answers from them: an unsubscribed folder leaves LSUB
/// (not LIST), a subscribed name that is no folder is listed `\Noselect`,
/// and another connection sees the same. A folder never unsubscribed
/// counts as subscribed (what LSUB showed before).
#[tokio::test]
async fn subscriptions_are_kept_and_lsub_answers_from_them() {
    let d = demo();
    let mut c = Raw::login(&d.imap, "alice@example.com").await;
    let r = c.cmd("l1 LSUB \"\" *").await;
    assert!(r.iter().any(|l| l.ends_with(" Archive")), "{r:?}");
    assert!(r.iter().any(|l| l.ends_with(" INBOX")), "{r:?}");
    let r = c.cmd("u1 UNSUBSCRIBE Archive").await;
    assert!(last(&r).starts_with("u1 OK"), "{r:?}");
    let r = c.cmd("s1 SUBSCRIBE Later/Project").await;
    assert!(last(&r).starts_with("s1 OK"), "{r:?}");
    let mut other = Raw::login(&d.imap, "alice@example.com").await;
    let r = other.cmd("l2 LSUB \"\" *").await;
    assert!(!r.iter().any(|l| l.ends_with(" Archive")), "{r:?}");
    assert!(r.iter().any(|l| l.ends_with(" INBOX")), "{r:?}");
    assert!(
        r.iter()
            .any(|l| l.starts_with("* LSUB (\\Noselect) ") && l.ends_with(" Later/Project")),
        "{r:?}"
    );
    let r = other.cmd("l3 LIST \"\" *").await;
    assert!(r.iter().any(|l| l.ends_with(" Archive")), "{r:?}");
    let r = other.cmd("s2 SUBSCRIBE Archive").await;
    assert!(last(&r).starts_with("s2 OK"), "{r:?}");
    let r = c.cmd("l4 LSUB \"\" Arch*").await;
    assert!(r.iter().any(|l| l.ends_with(" Archive")), "{r:?}");
}

/// `\Recent` as RFC 3501 §2.3.2 defines it: a message is recent for the
/// first session told of it — a selected session at its next command,
/// or the next SELECT — never for a second one; EXAMINE and STATUS count
/// it without taking it. FETCH FLAGS and SEARCH RECENT / NEW / OLD
/// answer for the session.
#[tokio::test]
async fn recent_goes_to_the_first_session_told() {
    let d = demo();
    let mut a = Raw::login(&d.imap, "alice@example.com").await;
    let r = a.cmd("c CREATE Rec").await;
    assert!(last(&r).starts_with("c OK"), "{r:?}");
    let r = a.cmd("s SELECT Rec").await;
    assert!(r.contains(&"* 0 RECENT".to_string()), "{r:?}");
    let mut b = Raw::login(&d.imap, "alice@example.com").await;
    let r = b.append("a1", "Rec", "", &message("rec-1")).await;
    assert!(last(&r).starts_with("a1 OK"), "{r:?}");
    let r = b.cmd("st STATUS Rec (RECENT MESSAGES)").await;
    assert!(
        r.iter()
            .any(|l| l.contains("RECENT 1") && l.contains("MESSAGES 1")),
        "{r:?}"
    );
    let r = a.cmd("n NOOP").await;
    assert!(r.contains(&"* 1 EXISTS".to_string()), "{r:?}");
    assert!(r.contains(&"* 1 RECENT".to_string()), "{r:?}");
    // FETCH FLAGS and SEARCH RECENT / NEW say so, for this session only.
    let flags = flags_of(&mut a, 1).await;
    assert!(flags.contains("\\Recent"), "{flags}");
    let r = a.cmd("r SEARCH RECENT").await;
    assert!(r.contains(&"* SEARCH 1".to_string()), "{r:?}");
    let r = a.cmd("r2 SEARCH NEW").await;
    assert!(r.contains(&"* SEARCH 1".to_string()), "{r:?}");
    let r = b.cmd("s SELECT Rec").await;
    assert!(r.contains(&"* 0 RECENT".to_string()), "{r:?}");
    let flags = flags_of(&mut b, 1).await;
    assert!(!flags.contains("\\Recent"), "{flags}");
    let r = b.cmd("r3 SEARCH OLD").await;
    assert!(r.contains(&"* SEARCH 1".to_string()), "{r:?}");
    // A second message, appended from outside the folder (a session with
    // it selected would be told of it at once, and take it): EXAMINE sees
    // it recent and leaves it so.
    b.cmd("u UNSELECT").await;
    let r = b.append("a2", "Rec", "", &message("rec-2")).await;
    assert!(last(&r).starts_with("a2 OK"), "{r:?}");
    let mut c = Raw::login(&d.imap, "alice@example.com").await;
    let r = c.cmd("e EXAMINE Rec").await;
    assert!(r.contains(&"* 1 RECENT".to_string()), "{r:?}");
    let mut e = Raw::login(&d.imap, "alice@example.com").await;
    let r = e.cmd("s SELECT Rec").await;
    assert!(r.contains(&"* 1 RECENT".to_string()), "{r:?}");
}

/// The index of the first line of `r` that starts with `head` and
/// contains `word`.
fn line_of(r: &[String], head: &str, word: &str) -> usize {
    r.iter()
        .position(|l| l.starts_with(head) && l.contains(word))
        .unwrap_or_else(|| panic!("no {head:?} line with {word:?} in {r:?}"))
}

/// A keyword is introduced by `* FLAGS` before any PERMANENTFLAGS or
/// FETCH FLAGS that uses it (RFC 3501 §7.2.6; imaptest's "Keyword used
/// without being in FLAGS"): in the STORE that makes it, in another
/// session's FETCH, and at SELECT.
#[tokio::test]
async fn flags_introduces_a_keyword_before_it_is_used() {
    let d = demo();
    let mut a = Raw::login(&d.imap, "alice@example.com").await;
    folder_with(&mut a, "Intro", &["intro-1"]).await;
    a.cmd("s SELECT Intro").await;
    let mut b = Raw::login(&d.imap, "alice@example.com").await;
    b.cmd("s SELECT Intro").await;
    let r = a.cmd("t STORE 1 +FLAGS ($hello)").await;
    let flags = line_of(&r, "* FLAGS (", "$hello");
    assert!(
        flags < line_of(&r, "* OK [PERMANENTFLAGS (", "$hello"),
        "{r:?}"
    );
    assert!(flags < line_of(&r, "* 1 FETCH (", "$hello"), "{r:?}");
    // B's FETCH is where it first hears of the keyword.
    let r = b.cmd("f FETCH 1 (FLAGS)").await;
    assert!(
        line_of(&r, "* FLAGS (", "$hello") < line_of(&r, "* 1 FETCH (", "$hello"),
        "{r:?}"
    );
    let r = b.cmd("s2 SELECT Intro").await;
    assert!(
        line_of(&r, "* FLAGS (", "$hello") < line_of(&r, "* OK [PERMANENTFLAGS (", "$hello"),
        "{r:?}"
    );
}

/// Messages APPENDed or COPYed into a folder no session has selected yet
/// are recent (imaptest `select`, as Dovecot): EXAMINE and STATUS count
/// them without taking them, SELECT takes them, and STATUS then says 0.
#[tokio::test]
async fn appended_and_copied_messages_are_recent_until_a_select_takes_them() {
    let d = demo();
    let mut a = Raw::login(&d.imap, "alice@example.com").await;
    folder_with(&mut a, "Fresh", &["fresh-1", "fresh-2"]).await;
    let r = a.cmd("e EXAMINE Fresh").await;
    assert!(r.contains(&"* 2 RECENT".to_string()), "{r:?}");
    a.cmd("c CLOSE").await;
    let r = a.cmd("st STATUS Fresh (MESSAGES RECENT)").await;
    assert!(line_of(&r, "* STATUS", "RECENT 2") < r.len(), "{r:?}");
    let r = a.cmd("s SELECT Fresh").await;
    assert!(r.contains(&"* 2 RECENT".to_string()), "{r:?}");
    let r = a.cmd("r SEARCH RECENT").await;
    assert!(r.contains(&"* SEARCH 1 2".to_string()), "{r:?}");
    // COPY into another new folder: recent there for the next SELECT.
    let r = a.cmd("c2 CREATE Fresh2").await;
    assert!(last(&r).starts_with("c2 OK"), "{r:?}");
    let r = a.cmd("cp COPY 1:2 Fresh2").await;
    assert!(last(&r).starts_with("cp OK"), "{r:?}");
    a.cmd("c3 CLOSE").await;
    let r = a.cmd("st2 STATUS Fresh (RECENT)").await;
    assert!(line_of(&r, "* STATUS", "RECENT 0") < r.len(), "{r:?}");
    let mut b = Raw::login(&d.imap, "alice@example.com").await;
    let r = b.cmd("s SELECT Fresh2").await;
    assert!(r.contains(&"* 2 RECENT".to_string()), "{r:?}");
}

/// `\Draft` is a flag a client may STORE, as on Dovecot (imaptest
/// `store`, `search-flags`): PERMANENTFLAGS offers it, SEARCH DRAFT /
/// UNDRAFT find it, and it stays through a sync of an Outlook change to
/// the message, while Graph's isDraft (read-only after creation) is not
/// asked to change.
#[tokio::test]
async fn draft_is_stored_locally_and_searchable() {
    let d = demo();
    let mut a = Raw::login(&d.imap, "alice@example.com").await;
    folder_with(&mut a, "Dr", &["dr-1", "dr-2"]).await;
    a.cmd("s SELECT Dr").await;
    let r = a.cmd("t STORE 2 +FLAGS (\\Draft)").await;
    assert!(last(&r).starts_with("t OK"), "{r:?}");
    assert!(line_of(&r, "* 2 FETCH (", "\\Draft") < r.len(), "{r:?}");
    let r = a.cmd("q SEARCH DRAFT").await;
    assert!(r.contains(&"* SEARCH 2".to_string()), "{r:?}");
    let r = a.cmd("q2 SEARCH UNDRAFT").await;
    assert!(r.contains(&"* SEARCH 1".to_string()), "{r:?}");
    // Outlook changes the message: the sync keeps the local \Draft.
    let outlook = Outlook::new(&d).await;
    outlook.patch("dr-2", json!({"categories": ["Blue"]})).await;
    let mut b = Raw::login(&d.imap, "alice@example.com").await;
    b.cmd("s SELECT Dr").await;
    let flags = flags_of(&mut b, 2).await;
    assert!(
        flags.contains("\\Draft") && flags.contains("Blue"),
        "{flags}"
    );
    let m = outlook.find("dr-2").await;
    assert_eq!(m["isDraft"], json!(false), "{m}");
    let r = a.cmd("t2 STORE 2 -FLAGS (\\Draft)").await;
    assert!(last(&r).starts_with("t2 OK"), "{r:?}");
    let flags = flags_of(&mut a, 2).await;
    assert!(!flags.contains("\\Draft"), "{flags}");
}

/// COPY numbers the copies in the order of the source set and gives each
/// its source's flags, local ones (`\Deleted`, `\Draft`) too, as Dovecot
/// does (imaptest `copy`: messages received at the same second came out
/// shuffled, a `\Seen` one shown with another's flags).
#[tokio::test]
async fn copy_keeps_order_and_flags() {
    let d = demo();
    let mut a = Raw::login(&d.imap, "alice@example.com").await;
    let r = a.cmd("c CREATE Src").await;
    assert!(last(&r).starts_with("c OK"), "{r:?}");
    for s in ["cp-1", "cp-2", "cp-3", "cp-4"] {
        let r = a
            .append_dated("a", "Src", "22-Feb-2008 17:06:23 +0000", &message(s))
            .await;
        assert!(last(&r).starts_with("a OK"), "{r:?}");
    }
    a.cmd("s SELECT Src").await;
    for (seq, flags) in [
        (1, "\\Seen"),
        (2, "\\Answered \\Flagged"),
        (3, "\\Deleted \\Draft"),
        (4, "\\Flagged $kw1"),
    ] {
        let r = a.cmd(&format!("t STORE {seq} FLAGS ({flags})")).await;
        assert!(last(&r).starts_with("t OK"), "{r:?}");
    }
    let r = a.cmd("c2 CREATE Dst").await;
    assert!(last(&r).starts_with("c2 OK"), "{r:?}");
    let r = a.cmd("cp COPY 1:4 Dst").await;
    assert!(
        last(&r).contains(" 1:4 1:4] ") || last(&r).contains(" 1,2,3,4 1,2,3,4] "),
        "{r:?}"
    );
    let mut b = Raw::login(&d.imap, "alice@example.com").await;
    b.cmd("s SELECT Dst").await;
    let r = b.cmd("f FETCH 1:4 (FLAGS)").await;
    for (seq, flags) in [
        (1, "FLAGS (\\Seen \\Recent)"),
        (2, "FLAGS (\\Answered \\Flagged \\Recent)"),
        (3, "FLAGS (\\Deleted \\Draft \\Recent)"),
        (4, "FLAGS (\\Flagged $kw1 \\Recent)"),
    ] {
        assert!(
            r.contains(&format!("* {seq} FETCH ({flags})")),
            "{seq}: {flags}: {r:?}"
        );
    }
}

/// Every keyword a STORE names is defined from then on, as Dovecot
/// creates it: a -FLAGS of a keyword no message has still sends FLAGS
/// naming it (imaptest stress "STORE didn't create keyword").
#[tokio::test]
async fn a_store_defines_every_keyword_it_names() {
    let d = demo();
    let mut a = Raw::login(&d.imap, "alice@example.com").await;
    folder_with(&mut a, "Def", &["def-1"]).await;
    a.cmd("s SELECT Def").await;
    let r = a.cmd("t STORE 1 -FLAGS ($Label3)").await;
    assert!(last(&r).starts_with("t OK"), "{r:?}");
    assert!(
        line_of(&r, "* FLAGS (", "$Label3") < line_of(&r, "* OK [PERMANENTFLAGS (", "$Label3"),
        "{r:?}"
    );
}
