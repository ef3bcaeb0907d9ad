//! SMTP end to end against `graphgate demo`: independent clients (lettre
//! with STARTTLS + PLAIN and implicit TLS + LOGIN, Python's smtplib, curl,
//! swaks) send through the gateway, and each message is read back from the
//! recipient's simulated mailbox over Graph and compared with what was
//! sent. Plus the refusals a client must hear.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mail_parser::{MessageParser, MimeHeaders};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

use support::{BIN, Demo, demo, demo_on};

impl Demo {
    async fn token(&self, upn: &str) -> String {
        support::token(&self.sim, upn).await
    }

    /// The raw MIME of the message with `message_id` in `upn`'s Inbox,
    /// waiting for it to arrive.
    async fn received(&self, upn: &str, message_id: &str) -> Vec<u8> {
        let token = self.token(upn).await;
        let http = reqwest::Client::new();
        let filter = format!("internetMessageId eq '<{message_id}>'");
        let url = format!(
            "{}/v1.0/me/mailFolders/inbox/messages?$filter={}&$select=id",
            self.sim,
            percent_encoding::utf8_percent_encode(&filter, percent_encoding::NON_ALPHANUMERIC)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let page: Value = http
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(id) = page["value"][0]["id"].as_str() {
                return http
                    .get(format!("{}/v1.0/me/messages/{id}/$value", self.sim))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
                    .to_vec();
            }
            assert!(
                Instant::now() < deadline,
                "<{message_id}> never reached {upn}'s Inbox"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many messages with this id are in `upn`'s Inbox.
    async fn count(&self, upn: &str, message_id: &str) -> usize {
        let token = self.token(upn).await;
        let filter = format!("internetMessageId eq '<{message_id}>'");
        let page: Value = reqwest::Client::new()
            .get(format!(
                "{}/v1.0/me/mailFolders/inbox/messages?$filter={}&$select=id",
                self.sim,
                percent_encoding::utf8_percent_encode(&filter, percent_encoding::NON_ALPHANUMERIC)
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["value"].as_array().map_or(0, Vec::len)
    }
}

fn tool(name: &str) -> bool {
    let found = Command::new("which")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "{name} is missing on CI: scripts/test installs it"
        );
        eprintln!("skipped: {name} is not installed here (scripts/test installs it)");
    }
    found
}

fn body_after_headers(mime: &[u8]) -> &[u8] {
    let head = graphgate::mime::submission::header_block_len(mime).unwrap_or(mime.len());
    &mime[head..]
}

#[tokio::test]
async fn lettre_starttls_plain_html_attachments_and_a_non_ascii_subject() {
    use lettre::message::header::ContentType;
    use lettre::message::{Attachment, MultiPart, SinglePart};
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let d = demo();
    let tls = TlsParameters::builder("localhost".into())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .unwrap();
    let pdf: Vec<u8> = (0..150_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let csv = "name;amount\nÄrger;12\n".as_bytes().to_vec();
    let message = Message::builder()
        .from("Alice <alice@example.com>".parse().unwrap())
        .to("Bob <bob@example.com>".parse().unwrap())
        .subject("Grüße — Quartalsbericht ✓")
        .message_id(Some("<lettre-starttls@example.com>".into()))
        .multipart(
            MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(
                    "Hallo Bob".to_string(),
                    "<p>Hallo <b>Bob</b></p>".to_string(),
                ))
                .singlepart(
                    Attachment::new("report.pdf".into())
                        .body(pdf.clone(), ContentType::parse("application/pdf").unwrap()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::parse("text/csv; charset=utf-8").unwrap())
                        .header(lettre::message::header::ContentDisposition::attachment(
                            "zahlen.csv",
                        ))
                        .body(csv.clone()),
                ),
        )
        .unwrap();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(d.smtp.rsplit_once(':').unwrap().1.parse().unwrap())
        .tls(Tls::Required(tls))
        .credentials(Credentials::new("alice@example.com".into(), "alice".into()))
        .authentication(vec![Mechanism::Plain])
        .build();
    let response = transport.send(message).await.unwrap();
    assert!(response.is_positive());
    assert!(
        response
            .message()
            .collect::<Vec<_>>()
            .join(" ")
            .contains("delivered"),
        "the real outcome within the window"
    );
    let mime = d
        .received("bob@example.com", "lettre-starttls@example.com")
        .await;
    let parsed = MessageParser::default().parse(&mime).unwrap();
    assert_eq!(parsed.subject(), Some("Grüße — Quartalsbericht ✓"));
    assert!(parsed.body_html(0).unwrap().contains("Hallo <b>Bob</b>"));
    let attachments: Vec<_> = parsed.attachments().collect();
    assert_eq!(attachments.len(), 2);
    let by_name = |n: &str| {
        attachments
            .iter()
            .find(|a| a.attachment_name() == Some(n))
            .unwrap_or_else(|| panic!("no {n}"))
    };
    assert_eq!(by_name("report.pdf").contents(), pdf.as_slice());
    assert_eq!(by_name("zahlen.csv").contents(), csv.as_slice());
}

#[tokio::test]
async fn lettre_implicit_tls_with_auth_login() {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let d = demo();
    let tls = TlsParameters::builder("localhost".into())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .unwrap();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(d.smtps.rsplit_once(':').unwrap().1.parse().unwrap())
        .tls(Tls::Wrapper(tls))
        .credentials(Credentials::new("bob@example.com".into(), "bob".into()))
        .authentication(vec![Mechanism::Login])
        .build();
    let message = Message::builder()
        .from("bob@example.com".parse().unwrap())
        .to("alice@example.com".parse().unwrap())
        .subject("over implicit TLS")
        .message_id(Some("<lettre-smtps@example.com>".into()))
        .body("sent on the port-465 style listener\n".to_string())
        .unwrap();
    transport.send(message).await.unwrap();
    let mime = d
        .received("alice@example.com", "lettre-smtps@example.com")
        .await;
    assert!(String::from_utf8_lossy(&mime).contains("sent on the port-465 style listener"));
}

#[tokio::test]
async fn smtplib_eight_bit_body_arrives_byte_for_byte() {
    let d = demo();
    if !tool("python3") {
        return;
    }
    let body = "Grüße aus Köln — 8-bit, not encoded.\r\nZweite Zeile: äöüß €\r\n";
    let (host, port) = d.smtp.rsplit_once(':').unwrap();
    let script = format!(
        r#"
import smtplib
raw = ("From: alice@example.com\r\nTo: bob@example.com\r\nSubject: eight bit\r\n"
       "Message-ID: <smtplib-8bit@example.com>\r\nMIME-Version: 1.0\r\n"
       "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
       + {body:?}).encode("utf-8")
s = smtplib.SMTP("{host}", {port})
s.ehlo()
s.login("alice@example.com", "alice")
s.sendmail("alice@example.com", ["bob@example.com"], raw, mail_options=["BODY=8BITMIME"])
s.quit()
print("sent")
"#
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mime = d
        .received("bob@example.com", "smtplib-8bit@example.com")
        .await;
    assert_eq!(body_after_headers(&mime), body.as_bytes());
}

#[tokio::test]
async fn curl_bcc_only_recipient_gets_it_and_nobody_sees_it() {
    let d = demo();
    if !tool("curl") {
        return;
    }
    let file = d.dir.path().join("bcc.eml");
    std::fs::write(
        &file,
        "From: bob@example.com\r\nTo: bob@example.com\r\nSubject: with a blind copy\r\n\
         Message-ID: <curl-bcc@example.com>\r\n\r\nThe Bcc recipient is only in the envelope.\r\n",
    )
    .unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            &format!("smtp://{}", d.smtp),
            "--user",
            "bob@example.com:bob",
            "--mail-from",
            "bob@example.com",
            "--mail-rcpt",
            "bob@example.com",
            "--mail-rcpt",
            "alice@example.com",
            "--upload-file",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alice = d
        .received("alice@example.com", "curl-bcc@example.com")
        .await;
    assert!(String::from_utf8_lossy(&alice).contains("only in the envelope"));
    let bob = String::from_utf8_lossy(&d.received("bob@example.com", "curl-bcc@example.com").await)
        .to_string();
    assert!(!bob.to_ascii_lowercase().contains("bcc:"), "{bob}");
    assert!(!bob.contains("alice@example.com"), "{bob}");
    // Exactly the envelope recipients, once each.
    assert_eq!(
        d.count("alice@example.com", "curl-bcc@example.com").await,
        1
    );
    assert_eq!(d.count("bob@example.com", "curl-bcc@example.com").await, 1);
}

#[tokio::test]
async fn swaks_null_sender() {
    let d = demo();
    if !tool("swaks") {
        return;
    }
    let out = Command::new("swaks")
        .args([
            "--server",
            &d.smtp,
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@example.com",
            "--auth-password",
            "alice",
            "--from",
            "<>",
            "--to",
            "bob@example.com",
            "--header",
            "From: alice@example.com",
            "--header",
            "Subject: auto-reply with a null sender",
            "--header",
            "Message-ID: <swaks-null@example.com>",
            "--body",
            "I am out of the office.",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("MAIL FROM:<>"), "{text}");
    let mime = d
        .received("bob@example.com", "swaks-null@example.com")
        .await;
    assert!(String::from_utf8_lossy(&mime).contains("out of the office"));
}

/// A raw SMTP dialogue for the refusals.
struct Raw {
    read: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: &str) -> Raw {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut raw = Raw {
            read: tokio::io::BufReader::new(read),
            write,
        };
        raw.reply().await;
        raw
    }

    async fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            self.read.read_line(&mut line).await.unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }
}

#[tokio::test]
async fn refusals_over_the_wire() {
    let d = demo();
    let mut c = Raw::connect(&d.smtp).await;
    c.cmd("EHLO test").await;
    // No AUTH: no relay.
    assert!(
        c.cmd("MAIL FROM:<alice@example.com>")
            .await
            .starts_with("530")
    );
    // Wrong password.
    let plain = |user: &str, pass: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
    };
    let r = c
        .cmd(&format!(
            "AUTH PLAIN {}",
            plain("alice@example.com", "nope")
        ))
        .await;
    assert!(r.starts_with("535"), "{r}");
    let r = c
        .cmd(&format!(
            "AUTH PLAIN {}",
            plain("alice@example.com", "alice")
        ))
        .await;
    assert!(r.starts_with("235"), "{r}");
    // A sender alice may not use.
    let r = c.cmd("MAIL FROM:<bob@example.com>").await;
    assert!(
        r.starts_with("550 5.7.1") && r.contains("bob@example.com"),
        "{r}"
    );
    // Too large, announced.
    let r = c.cmd("MAIL FROM:<alice@example.com> SIZE=40000000").await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    // A From header she may not use.
    assert!(
        c.cmd("MAIL FROM:<alice@example.com>")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<bob@example.com>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    let r = c
        .cmd("From: bob@example.com\r\nTo: bob@example.com\r\nSubject: x\r\n\r\nx\r\n.")
        .await;
    assert!(
        r.starts_with("550 5.7.1") && r.contains("bob@example.com"),
        "{r}"
    );
    // A header recipient that is not in the envelope.
    assert!(
        c.cmd("MAIL FROM:<alice@example.com>")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<bob@example.com>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    let r = c
        .cmd("From: alice@example.com\r\nTo: bob@example.com, carol@example.com\r\nSubject: x\r\n\r\nx\r\n.")
        .await;
    assert!(
        r.starts_with("554") && r.contains("carol@example.com"),
        "{r}"
    );
    // Too large, discovered while the data streams in (36 MB, no SIZE=).
    assert!(
        c.cmd("MAIL FROM:<alice@example.com>")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<bob@example.com>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.write
        .write_all(b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: big\r\n\r\n")
        .await
        .unwrap();
    let line = vec![b'x'; 998];
    let mut chunk = Vec::new();
    for _ in 0..1000 {
        chunk.extend_from_slice(&line);
        chunk.extend_from_slice(b"\r\n");
    }
    for _ in 0..37 {
        c.write.write_all(&chunk).await.unwrap();
    }
    let r = c.cmd(".").await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    // The session goes on after every refusal.
    assert!(c.cmd("NOOP").await.starts_with("250"));
    // Nothing of it was spooled.
    let out = Command::new(BIN)
        .args(["queue", "list", "--all", "--json", "--data-dir"])
        .arg(d.dir.path())
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");
}

/// The first non-loopback IPv4 address of this machine, if any.
fn outside_address() -> Option<std::net::IpAddr> {
    // Routing to a documentation address picks the outward interface
    // without sending anything.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.254:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn plaintext_auth_from_another_host_is_refused() {
    let Some(ip) = outside_address() else {
        eprintln!("skipped: this machine has no non-loopback address to connect from");
        return;
    };
    let d = demo_on("0.0.0.0:0");
    let port = d.smtp.rsplit_once(':').unwrap().1;
    let mut c = Raw::connect(&format!("{ip}:{port}")).await;
    let ehlo = c.cmd("EHLO outside").await;
    assert!(ehlo.starts_with("250"), "{ehlo}");
    let r = c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl").await;
    assert!(r.starts_with("538") || r.starts_with("530"), "{r}");
    assert!(r.contains("STARTTLS"), "the reply says what to do: {r}");
    // From loopback the same listener allows it.
    let mut local = Raw::connect(&format!("127.0.0.1:{port}")).await;
    local.cmd("EHLO local").await;
    let r = local
        .cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl")
        .await;
    assert!(r.starts_with("235"), "{r}");
}

#[tokio::test]
async fn mutt_sends_in_batch_mode() {
    let d = demo();
    if !tool("mutt") {
        return;
    }
    let home = d.dir.path().join("mutt-home");
    std::fs::create_dir_all(&home).unwrap();
    let rc = home.join("muttrc");
    std::fs::write(
        &rc,
        format!(
            "set smtp_url=\"smtp://alice@example.com@{smtp}/\"\nset smtp_pass=\"alice\"\n\
             set ssl_starttls=no\nset ssl_force_tls=no\nset from=\"alice@example.com\"\n\
             set use_from=yes\nset record=\"\"\nset hostname=\"example.com\"\n",
            smtp = d.smtp
        ),
    )
    .unwrap();
    let mut child = Command::new("mutt")
        .args(["-F"])
        .arg(&rc)
        .args(["-s", "sent by mutt", "--", "bob@example.com"])
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"Hello from mutt in batch mode\n",
    )
    .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // mutt makes its own Message-ID; find the message by subject.
    let token = d.token("bob@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page: Value = reqwest::Client::new()
            .get(format!(
                "{}/v1.0/me/mailFolders/inbox/messages?$select=subject&$top=50",
                d.sim
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if page["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["subject"] == "sent by mutt")
        {
            break;
        }
        assert!(Instant::now() < deadline, "mutt's message never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
