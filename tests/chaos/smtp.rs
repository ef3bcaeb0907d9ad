//! SMTP under chaos: concurrent clients submit messages, each with its own
//! Message-ID and body marker; afterwards the recipient's mailbox is read
//! through Graph.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{Gateway, PATIENCE, SHORT_N, Tenant, free_port, killer, size, timed};

/// A submission session as alice (AUTH PLAIN, allowed on loopback).
struct Smtp {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// 250 after the final dot.
    Accepted,
    /// Any other reply (to MAIL, RCPT, DATA or the final dot).
    Refused(String),
    /// The connection died after the final dot was sent, before a reply.
    InDoubt,
}

impl Smtp {
    async fn open(addr: &str) -> std::io::Result<Smtp> {
        let (read, write) = TcpStream::connect(addr).await?.into_split();
        let mut smtp = Smtp {
            read: BufReader::new(read),
            write,
        };
        smtp.expect("220").await?;
        smtp.say("EHLO chaos").await?;
        smtp.expect("250").await?;
        let plain = base64::engine::general_purpose::STANDARD.encode(b"\0alice@example.com\0alice");
        smtp.say(&format!("AUTH PLAIN {plain}")).await?;
        smtp.expect("235").await?;
        Ok(smtp)
    }

    async fn say(&mut self, line: &str) -> std::io::Result<()> {
        timed(self.write.write_all(format!("{line}\r\n").as_bytes())).await
    }

    /// The last line of the next reply.
    async fn reply(&mut self) -> std::io::Result<String> {
        loop {
            let mut line = String::new();
            if timed(self.read.read_line(&mut line)).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line.trim_end().to_string());
            }
        }
    }

    async fn expect(&mut self, code: &str) -> std::io::Result<()> {
        let reply = self.reply().await?;
        if reply.starts_with(code) {
            Ok(())
        } else {
            Err(std::io::Error::other(reply))
        }
    }

    /// Submit `message` (unstuffed); `Err` when the connection failed
    /// before the final dot was sent (so the message was not submitted).
    async fn send(&mut self, message: &[u8]) -> std::io::Result<Outcome> {
        for (command, code) in [
            ("MAIL FROM:<alice@example.com>", "250"),
            ("RCPT TO:<bob@example.com>", "250"),
            ("DATA", "354"),
        ] {
            self.say(command).await?;
            let reply = self.reply().await?;
            if !reply.starts_with(code) {
                self.say("RSET").await?;
                self.reply().await?;
                return Ok(Outcome::Refused(format!("{reply} (to {command})")));
            }
        }
        let mut stuffed = Vec::with_capacity(message.len() + 16);
        for line in message.split_inclusive(|b| *b == b'\n') {
            if line.first() == Some(&b'.') {
                stuffed.push(b'.');
            }
            stuffed.extend_from_slice(line);
        }
        stuffed.extend_from_slice(b".\r\n");
        timed(self.write.write_all(&stuffed)).await?;
        Ok(match self.reply().await {
            Ok(reply) if reply.starts_with("250") => Outcome::Accepted,
            Ok(reply) => Outcome::Refused(reply),
            Err(_) => Outcome::InDoubt,
        })
    }
}

/// A session, waiting for the gateway to come back if it is down.
async fn smtp_session(addr: &str) -> Smtp {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match Smtp::open(addr).await {
            Ok(smtp) => return smtp,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no SMTP session at {addr} for {PATIENCE:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn message_id(run: &str, i: usize) -> String {
    format!("<chaos-{i}.{run}@example.com>")
}

/// Message `i`: its own Message-ID, Subject and body marker, a line that
/// needs dot-stuffing, and a length that varies.
fn smtp_message(run: &str, i: usize) -> Vec<u8> {
    let mut text = format!(
        "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\n\
         Subject: chaos {i} of {run}\r\nMessage-ID: {mid}\r\n\
         Date: Fri, 04 Dec 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         marker chaos-body-{i}-{run}\r\n\
         .a line that starts with a dot\r\n",
        mid = message_id(run, i)
    );
    for k in 0..i % 7 {
        text.push_str(&format!(
            "line {k} of message {i}: {}\r\n",
            "x".repeat(k * 10)
        ));
    }
    text.push_str("the end\r\n");
    text.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smtp_under_faults_and_sigkills_delivers_every_250_exactly_once() {
    let started = Instant::now();
    let n = size();
    let clients = 8;
    let kills = if n > SHORT_N { 8 } else { 3 };
    let run = format!("{:x}", rand::random::<u32>());

    let tenant = Tenant::start();
    let smtp_addr = format!("127.0.0.1:{}", free_port());
    let mut gateway = Gateway::new(&tenant, &smtp_addr, "").await;
    tokio::task::block_in_place(|| gateway.start());
    tenant.faults_on().await;

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let outcomes: Arc<Mutex<BTreeMap<usize, Outcome>>> = Arc::default();
    let killing = killer(gateway, kills, n, done.clone(), done.clone());
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, done, outcomes) = (next.clone(), done.clone(), outcomes.clone());
        let (addr, run) = (smtp_addr.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut session: Option<Smtp> = None;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let message = smtp_message(&run, i);
                // A connection that fails before the final dot has not
                // submitted the message: try again on a new one.
                let outcome = loop {
                    let mut smtp = match session.take() {
                        Some(smtp) => smtp,
                        None => smtp_session(&addr).await,
                    };
                    match smtp.send(&message).await {
                        Ok(Outcome::InDoubt) => break Outcome::InDoubt,
                        Ok(outcome) => {
                            session = Some(smtp);
                            break outcome;
                        }
                        Err(_) => continue,
                    }
                };
                outcomes.lock().unwrap().insert(i, outcome);
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut gateway = killing.await.unwrap();
    let sent_in = started.elapsed();

    tenant.faults_off().await;
    gateway.drained().await;
    gateway.assert_alive();
    gateway.sample_rss();
    gateway.assert_no_panic();

    // The recipient's mailbox, through Graph.
    let token = tenant.token("bob@example.com").await;
    let inbox = tenant
        .messages(&token, "inbox", "id,subject,internetMessageId")
        .await;
    let mut copies: HashMap<String, Vec<String>> = HashMap::new();
    for m in &inbox {
        copies
            .entry(
                m["internetMessageId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
            .or_default()
            .push(m["id"].as_str().unwrap().to_string());
    }
    let outcomes = outcomes.lock().unwrap().clone();
    assert_eq!(outcomes.len(), n);
    let (mut accepted, mut refused, mut in_doubt) = (0, 0, 0);
    let (mut delivered, mut duplicates, mut lost, mut unaccepted_delivered) = (0, 0, 0, 0);
    let (mut identical, mut mismatched) = (0, Vec::new());
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (&i, outcome) in &outcomes {
        let mid = message_id(&run, i);
        let ids = copies.get(&mid).cloned().unwrap_or_default();
        match outcome {
            Outcome::Accepted => accepted += 1,
            Outcome::Refused(reply) => {
                refused += 1;
                *refusals.entry(reply.chars().take(3).collect()).or_default() += 1;
            }
            Outcome::InDoubt => in_doubt += 1,
        }
        if !ids.is_empty() {
            delivered += 1;
        }
        if ids.len() > 1 {
            duplicates += 1;
            problems.push(format!("{mid} ({outcome:?}) delivered {} times", ids.len()));
        }
        if *outcome == Outcome::Accepted && ids.is_empty() {
            lost += 1;
            problems.push(format!("{mid} got 250 and was never delivered"));
        }
        if *outcome != Outcome::Accepted && !ids.is_empty() {
            unaccepted_delivered += 1;
        }
        // The gateway passes the submitted bytes on unchanged (it adds a
        // Message-ID only where one is missing) and the simulator, without
        // --exchange-mime, stores what it was given: so `$value` is the
        // message exactly as the client sent it, dot-unstuffed.
        let sent = smtp_message(&run, i);
        for id in &ids {
            let stored = tenant.mime(&token, id).await;
            if stored == sent {
                identical += 1;
            } else {
                mismatched.push(format!(
                    "{mid}: stored\n{}\nbut sent\n{}",
                    String::from_utf8_lossy(&stored),
                    String::from_utf8_lossy(&sent)
                ));
            }
        }
    }
    println!(
        "chaos smtp: n={n} clients={clients} kills={kills} accepted={accepted} \
         refused={refused} {refusals:?} in_doubt={in_doubt} delivered={delivered} \
         duplicates={duplicates} lost={lost} not_accepted_but_delivered={unaccepted_delivered} \
         byte_identical={identical} peak_rss_kb={} sent_in={:.1}s total={:.1}s",
        gateway.peak_rss_kb,
        sent_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        gateway.kills, kills,
        "the gateway was not killed as planned"
    );
    assert!(accepted > 0, "nothing was accepted");
    assert!(
        problems.is_empty(),
        "{problems:#?}\ngateway log:\n{}",
        gateway.log_tail()
    );
    assert!(mismatched.is_empty(), "{mismatched:#?}");
}
