//! SMTP submission with real, independent clients against `graphgate demo`
//! run as a process (issue 4): lettre (STARTTLS + AUTH PLAIN, and implicit
//! TLS + AUTH LOGIN), Python's smtplib (SMTPUTF8 and 8BITMIME), curl (a
//! Bcc-only recipient) and swaks (a null sender); the refusals a client
//! must hear on a real socket; and `graphgate status` after sending.
//!
//! Every message is read back over the simulator's Graph API from the
//! recipient's mailbox (and the sender's Sent Items, and the simulator's
//! record of external deliveries) and compared with the bytes the client
//! wrote. graphgate puts only a `Message-ID` (when missing) and a `Bcc:`
//! line (RCPT TO addresses absent from To/Cc) in front of a message, and
//! Graph strips Bcc from what recipients get; the simulator keeps the MIME
//! it was given. So a message that carries its own Message-ID and names
//! every recipient in To/Cc must arrive byte for byte as the client wrote
//! it (RFC 5321 §4.5.2 dot-unstuffing aside).
//!
//! Each test starts its own demo on free ports: the tests are independent
//! and run in parallel. A tool that is missing is a failure when `CI` is
//! set (scripts/test installs it) and a skipped test otherwise.

use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

mod support;

use support::{BIN, Demo};

/// These tests read the delivered messages back from the simulated tenant
/// and compare them with what each client submitted, byte for byte or
/// header by header: they check graphgate's own fidelity, so the tenant
/// stores the bytes it was given (`--exact-mime`) rather than re-rendering
/// them as Exchange does (the demo's default).
fn demo() -> Demo {
    support::demo_exact_mime()
}

/// How long a message may take to show up, and a tool or reply to come.
const DEADLINE: Duration = Duration::from_secs(60);

/// The demo's SIZE limit (Exchange Online's default, 35 MB).
const LIMIT: usize = 35 * 1024 * 1024;

/// A user of the simulated tenant, seen over Graph with its own token.
struct Mailbox {
    sim: String,
    token: String,
    http: reqwest::Client,
}

impl Demo {
    async fn mailbox(&self, upn: &str) -> Mailbox {
        Mailbox {
            sim: self.sim.clone(),
            token: support::token(&self.sim, upn).await,
            http: reqwest::Client::new(),
        }
    }

    /// What the simulator recorded as sent to addresses outside the tenant.
    async fn outbound(&self) -> Vec<Value> {
        let page: Value = reqwest::get(format!("{}/_sim/mail/outbound", self.sim))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["value"].as_array().cloned().unwrap_or_default()
    }
}

impl Mailbox {
    async fn get(&self, url: &str) -> Value {
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "GET {url}: {status} {body}");
        body
    }

    /// The messages of `folder` (a well-known name) whose
    /// internetMessageId is `<message_id>`: their Graph ids.
    async fn ids(&self, folder: &str, message_id: &str) -> Vec<String> {
        let filter = format!("internetMessageId eq '<{message_id}>'");
        let page = self
            .get(&format!(
                "{}/v1.0/me/mailFolders/{folder}/messages?$filter={}&$select=id",
                self.sim,
                percent_encoding::utf8_percent_encode(&filter, percent_encoding::NON_ALPHANUMERIC)
            ))
            .await;
        page["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// The first hundred messages of `folder`, with subject and Message-ID.
    async fn list(&self, folder: &str) -> Vec<Value> {
        let page = self
            .get(&format!(
                "{}/v1.0/me/mailFolders/{folder}/messages?$top=100&$select=id,subject,internetMessageId",
                self.sim
            ))
            .await;
        page["value"].as_array().cloned().unwrap()
    }

    async fn message(&self, id: &str) -> Value {
        self.get(&format!("{}/v1.0/me/messages/{id}", self.sim))
            .await
    }

    async fn mime(&self, id: &str) -> Vec<u8> {
        let response = self
            .http
            .get(format!("{}/v1.0/me/messages/{id}/$value", self.sim))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.bytes().await.unwrap().to_vec()
    }

    /// The Graph id of the message with `message_id` in `folder`, waiting
    /// for it to arrive (exactly one copy).
    async fn wait_for(&self, folder: &str, message_id: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let ids = self.ids(folder, message_id).await;
            assert!(ids.len() <= 1, "<{message_id}> is in {folder} twice");
            if let Some(id) = ids.into_iter().next() {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "<{message_id}> never reached {folder}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The raw MIME of the message with `message_id` in `folder`.
    async fn wait_for_mime(&self, folder: &str, message_id: &str) -> Vec<u8> {
        let id = self.wait_for(folder, message_id).await;
        self.mime(&id).await
    }

    /// The Graph id of the one message of `folder` with this subject.
    async fn wait_for_subject(&self, folder: &str, subject: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let found: Vec<String> = self
                .list(folder)
                .await
                .into_iter()
                .filter(|m| m["subject"] == subject)
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect();
            assert!(found.len() <= 1, "{subject:?} is in {folder} twice");
            if let Some(id) = found.into_iter().next() {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "{subject:?} never reached {folder}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether the command-line tool `name` is installed. Missing on CI is a
/// failure; missing here skips the test (the caller returns).
fn tool(name: &str) -> bool {
    let found = std::process::Command::new("which")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed; on CI scripts/test installs it (PACKAGES)"
        );
        eprintln!(
            "skipped: {name} is not installed here; install it (scripts/test does) to run this test"
        );
    }
    found
}

/// Run a client to its end, killed if it outlives the deadline (or if the
/// test ends first).
async fn run(mut command: tokio::process::Command) -> Output {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().unwrap();
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{command:?} did not finish within {DEADLINE:?}"))
        .unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `got` must be `want`, byte for byte; else say where they part.
#[track_caller]
fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    let got = without_submission_header(got);
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let around = |b: &[u8]| {
        let from = at.saturating_sub(80);
        String::from_utf8_lossy(&b[from..b.len().min(at + 80)]).to_string()
    };
    panic!(
        "{what}: {} octets, expected {}; they differ from octet {at}:\n{:?}\n--- expected ---\n{:?}",
        got.len(),
        want.len(),
        around(got),
        around(want)
    );
}

/// `mime` without the one header line graphgate adds to every
/// submission, `X-Graphgate-Submission: <32 hex digits>` (the evidence
/// of issue 22, see `spool::evidence`), which it puts in front of the
/// client's bytes; panics if that line is not there.
fn without_submission_header(mime: &[u8]) -> &[u8] {
    let name = b"X-Graphgate-Submission: ";
    let rest = mime.strip_prefix(name.as_slice()).unwrap_or_else(|| {
        panic!(
            "no submission header in front: {:?}",
            String::from_utf8_lossy(&mime[..mime.len().min(120)])
        )
    });
    let (value, rest) = rest.split_at(32.min(rest.len()));
    assert!(value.iter().all(u8::is_ascii_hexdigit), "{value:?}");
    rest.strip_prefix(b"\r\n".as_slice())
        .unwrap_or_else(|| panic!("the submission header is not one line"))
}

/// The DATA content lettre transmits for `message`: its bytes and one more
/// CRLF. lettre 0.11 ends DATA with `\r\n.\r\n` even after the message's
/// own final CRLF (`message_iter` in its async_connection.rs), so the
/// content, which runs up to the CRLF before the dot (RFC 5321 §4.1.1.4),
/// ends with an empty line.
fn lettre_data(message: &lettre::Message) -> Vec<u8> {
    let mut data = message.formatted();
    data.extend_from_slice(b"\r\n");
    data
}

/// The port of a listener address from the banner.
fn port(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

fn lettre_tls() -> lettre::transport::smtp::client::TlsParameters {
    // The demo's certificate is self-signed.
    lettre::transport::smtp::client::TlsParameters::builder("localhost".into())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .unwrap()
}

#[tokio::test]
async fn lettre_starttls_plain_html_two_attachments_and_a_non_ascii_subject() {
    use lettre::message::header::{ContentDisposition, ContentType};
    use lettre::message::{Attachment, MultiPart, SinglePart};
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::Tls;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let d = demo();
    // Every byte value, CR and LF and NUL among them, so that nothing on
    // the way may treat the attachment as text.
    let pdf: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let csv = "Name;Betrag\r\nÄrger;12\r\nÜbermut;7\r\n"
        .as_bytes()
        .to_vec();
    let subject = "Grüße — Quartalsbericht ✓";
    let message = Message::builder()
        .from("Alice Äpfel <alice@example.com>".parse().unwrap())
        .to("Bob <bob@example.com>".parse().unwrap())
        .subject(subject)
        .message_id(Some("<lettre-starttls.clients@example.com>".into()))
        .multipart(
            MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(
                    "Hallo Bob,\r\nder Bericht hängt an.\r\n".to_string(),
                    "<p>Hallo <b>Bob</b>, der Bericht hängt an.</p>".to_string(),
                ))
                .singlepart(
                    Attachment::new("report.pdf".into())
                        .body(pdf.clone(), ContentType::parse("application/pdf").unwrap()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::parse("text/csv; charset=utf-8").unwrap())
                        .header(ContentDisposition::attachment("Übersicht.csv"))
                        .body(csv.clone()),
                ),
        )
        .unwrap();
    let written = lettre_data(&message);
    // The non-ASCII subject travels as encoded words (RFC 2047).
    let head = String::from_utf8_lossy(
        &written[..graphgate::mime::submission::header_block_len(&written).unwrap()],
    )
    .to_string();
    assert!(
        head.is_ascii() && head.contains("Subject: =?utf-8?"),
        "{head}"
    );

    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port(&d.smtp))
        .tls(Tls::Required(lettre_tls()))
        .credentials(Credentials::new("alice@example.com".into(), "alice".into()))
        .authentication(vec![Mechanism::Plain])
        .build();
    let response = transport.send(message).await.unwrap();
    assert_eq!(u16::from(response.code()), 250, "{response:?}");

    let bob = d.mailbox("bob@example.com").await;
    let id = bob
        .wait_for("inbox", "lettre-starttls.clients@example.com")
        .await;
    let mime = bob.mime(&id).await;
    assert_same_bytes(&mime, &written, "bob's copy differs from what lettre wrote");
    assert_eq!(bob.message(&id).await["subject"], subject);

    let parsed = MessageParser::default().parse(&mime).unwrap();
    assert_eq!(parsed.subject(), Some(subject));
    assert!(
        parsed
            .body_html(0)
            .unwrap()
            .contains("Hallo <b>Bob</b>, der Bericht hängt an.")
    );
    assert!(
        parsed
            .body_text(0)
            .unwrap()
            .contains("der Bericht hängt an.")
    );
    let attachments: Vec<_> = parsed.attachments().collect();
    assert_eq!(attachments.len(), 2);
    let named = |name: &str| {
        attachments
            .iter()
            .find(|a| a.attachment_name() == Some(name))
            .unwrap_or_else(|| panic!("no attachment {name}"))
    };
    assert_eq!(named("report.pdf").contents(), pdf.as_slice());
    assert_eq!(named("Übersicht.csv").contents(), csv.as_slice());
    assert_eq!(
        named("Übersicht.csv").content_type().map(|c| c.ctype()),
        Some("text")
    );

    // The sender keeps the same bytes in Sent Items.
    let alice = d.mailbox("alice@example.com").await;
    let sent = alice
        .wait_for_mime("sentitems", "lettre-starttls.clients@example.com")
        .await;
    assert_same_bytes(&sent, &written, "alice's Sent Items copy");
}

#[tokio::test]
async fn lettre_implicit_tls_auth_login_to_a_colleague_and_an_outside_address() {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::Tls;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let d = demo();
    let message = Message::builder()
        .from("Bob <bob@example.com>".parse().unwrap())
        .to("Alice <alice@example.com>".parse().unwrap())
        .cc("Partner <partner@fabrikam.example>".parse().unwrap())
        .subject("over implicit TLS")
        .message_id(Some("<lettre-smtps.clients@example.com>".into()))
        .body(
            "Sent on the port-465 style listener.\r\n.A line that starts with a dot.\r\n"
                .to_string(),
        )
        .unwrap();
    let written = lettre_data(&message);
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port(&d.smtps))
        .tls(Tls::Wrapper(lettre_tls()))
        .credentials(Credentials::new("bob@example.com".into(), "bob".into()))
        .authentication(vec![Mechanism::Login])
        .build();
    let response = transport.send(message).await.unwrap();
    assert_eq!(u16::from(response.code()), 250, "{response:?}");

    let alice = d.mailbox("alice@example.com").await;
    let mime = alice
        .wait_for_mime("inbox", "lettre-smtps.clients@example.com")
        .await;
    assert_same_bytes(
        &mime,
        &written,
        "alice's copy differs from what lettre wrote",
    );
    let bob = d.mailbox("bob@example.com").await;
    let sent = bob
        .wait_for_mime("sentitems", "lettre-smtps.clients@example.com")
        .await;
    assert_same_bytes(&sent, &written, "bob's Sent Items copy");

    // The outside recipient got it from Microsoft 365, once.
    let outbound = d.outbound().await;
    assert_eq!(outbound.len(), 1, "{outbound:#?}");
    assert_eq!(outbound[0]["from"], "bob@example.com");
    assert_eq!(outbound[0]["to"], "partner@fabrikam.example");
    assert_same_bytes(
        outbound[0]["mime"].as_str().unwrap().as_bytes(),
        &written,
        "the outside recipient's copy",
    );
}

/// smtplib: STARTTLS, AUTH, then the message bytes as given, with
/// `MAIL FROM:<…> SMTPUTF8 BODY=8BITMIME`.
const SMTPLIB_SCRIPT: &str = r#"
import smtplib, ssl, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
raw = open(path, "rb").read()
with smtplib.SMTP(host, port, timeout=60) as s:
    s.ehlo()
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo()
    for ext in ("smtputf8", "8bitmime"):
        if not s.has_extn(ext):
            sys.exit("the server does not announce " + ext)
    s.login("alice@example.com", "alice")
    refused = s.sendmail("alice@example.com", ["bob@example.com"], raw,
                         mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    if refused:
        sys.exit("refused: %r" % (refused,))
print("sent")
"#;

#[tokio::test]
async fn smtplib_smtputf8_eight_bit_message_arrives_byte_for_byte() {
    if !tool("python3") {
        return;
    }
    let d = demo();
    // RFC 6532: UTF-8 in the headers themselves, unencoded; an 8-bit body
    // (RFC 6152) with lines that need dot-stuffing on the wire.
    let subject = "Grüße aus Köln — ½ € ✓";
    let message = format!(
        "From: Jürgen Alice <alice@example.com>\r\n\
         To: Bob Müller <bob@example.com>\r\n\
         Subject: {subject}\r\n\
         Message-ID: <smtplib-utf8.clients@example.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Grüße aus Köln — 8 bit, nicht kodiert.\r\n\
         .Eine Zeile mit Punkt am Anfang: äöüß €\r\n\
         ..\r\n\
         Ende — 終わり\r\n"
    );
    let path = d.dir.path().join("smtplib.eml");
    std::fs::write(&path, &message).unwrap();
    let script = d.dir.path().join("send.py");
    std::fs::write(&script, SMTPLIB_SCRIPT).unwrap();
    let (host, port) = d.smtp.rsplit_once(':').unwrap();
    let mut python = tokio::process::Command::new("python3");
    python.arg(&script).arg(host).arg(port).arg(&path);
    let out = run(python).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sent");

    let bob = d.mailbox("bob@example.com").await;
    let id = bob
        .wait_for("inbox", "smtplib-utf8.clients@example.com")
        .await;
    let mime = bob.mime(&id).await;
    assert_same_bytes(
        &mime,
        message.as_bytes(),
        "bob's copy differs from what smtplib sent",
    );
    let graph = bob.message(&id).await;
    assert_eq!(graph["subject"], subject, "{graph}");
    assert_eq!(
        graph["from"]["emailAddress"]["address"],
        "alice@example.com"
    );
}

#[tokio::test]
async fn curl_bcc_only_recipient_gets_it_and_no_recipient_sees_it() {
    if !tool("curl") {
        return;
    }
    let d = demo();
    // To names bob only; alice is in the envelope only (a blind copy).
    let message = "From: Bob <bob@example.com>\r\n\
                   To: Bob <bob@example.com>\r\n\
                   Subject: with a blind copy\r\n\
                   Message-ID: <curl-bcc.clients@example.com>\r\n\
                   \r\n\
                   The blind copy's recipient is only in the envelope.\r\n";
    let path = d.dir.path().join("bcc.eml");
    std::fs::write(&path, message).unwrap();
    let mut curl = tokio::process::Command::new("curl");
    curl.args([
        "--silent",
        "--show-error",
        "--ssl-reqd",
        "--insecure",
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
    .arg(&path);
    run(curl).await;

    let alice = d.mailbox("alice@example.com").await;
    let bob = d.mailbox("bob@example.com").await;
    // Both got exactly what curl sent: no Bcc line, so no trace of alice
    // in bob's copy.
    for (who, mailbox) in [("alice", &alice), ("bob", &bob)] {
        let mime = mailbox
            .wait_for_mime("inbox", "curl-bcc.clients@example.com")
            .await;
        assert_same_bytes(
            &mime,
            message.as_bytes(),
            &format!("{who}'s copy differs from what curl sent"),
        );
    }
    let graph = bob
        .message(&bob.wait_for("inbox", "curl-bcc.clients@example.com").await)
        .await;
    assert_eq!(graph["bccRecipients"], serde_json::json!([]), "{graph}");
    assert!(!graph.to_string().contains("alice@example.com"), "{graph}");

    // The sender's own copy remembers the blind copy.
    let sent = bob
        .wait_for_mime("sentitems", "curl-bcc.clients@example.com")
        .await;
    let parsed = MessageParser::default().parse(&sent).unwrap();
    let bcc: Vec<_> = parsed
        .bcc()
        .map(|a| a.iter().filter_map(|a| a.address()).collect())
        .unwrap_or_default();
    assert_eq!(
        bcc,
        ["alice@example.com"],
        "{}",
        String::from_utf8_lossy(&sent)
    );
    assert!(sent.ends_with(message.as_bytes()));
}

#[tokio::test]
async fn swaks_null_sender_with_an_allowed_from_header() {
    if !tool("swaks") {
        return;
    }
    let d = demo();
    // An auto-reply: MAIL FROM:<> (RFC 5321 §4.5.5), From: the account.
    let message = "From: Alice <alice@example.com>\r\n\
                   To: bob@example.com\r\n\
                   Subject: Automatic reply: out of the office\r\n\
                   Message-ID: <swaks-null.clients@example.com>\r\n\
                   Auto-Submitted: auto-replied\r\n\
                   \r\n\
                   I am out of the office until Monday.\r\n";
    // swaks ends the data with "\r\n." itself: give it the message without
    // its last CRLF.
    let path = d.dir.path().join("null.eml");
    std::fs::write(&path, message.strip_suffix("\r\n").unwrap()).unwrap();
    let mut swaks = tokio::process::Command::new("swaks");
    swaks
        .args([
            "--server",
            &d.smtp,
            "--tls",
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
            "--data",
        ])
        .arg(&path);
    let out = run(swaks).await;
    let transcript = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(transcript.contains("MAIL FROM:<>"), "{transcript}");
    assert!(transcript.contains("<~  250"), "{transcript}");

    let bob = d.mailbox("bob@example.com").await;
    let mime = bob
        .wait_for_mime("inbox", "swaks-null.clients@example.com")
        .await;
    assert_same_bytes(
        &mime,
        message.as_bytes(),
        "bob's copy differs from what swaks sent",
    );
    let alice = d.mailbox("alice@example.com").await;
    alice
        .wait_for("sentitems", "swaks-null.clients@example.com")
        .await;
}

/// A raw SMTP dialogue over a real socket, each reply awaited with a
/// deadline.
struct Dialogue {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Dialogue {
    async fn open(addr: &str) -> Dialogue {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut dialogue = Dialogue {
            read: BufReader::new(read),
            write,
        };
        let greeting = dialogue.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        dialogue
    }

    /// The next reply, all its lines (RFC 5321 §4.2.1).
    async fn reply(&mut self) -> String {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(DEADLINE, self.read.read_line(&mut line))
                .await
                .expect("no reply within the deadline")
                .unwrap();
            assert!(n > 0, "the server closed the connection; so far: {text}");
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return text.trim_end().to_string();
            }
        }
    }

    async fn send(&mut self, line: &str) -> String {
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// `command` must be answered with `code`.
    async fn expect(&mut self, command: &str, code: &str) -> String {
        let reply = self.send(command).await;
        assert!(
            reply.starts_with(code),
            "{command:?} → {reply:?}, expected {code}"
        );
        reply
    }

    async fn login(&mut self, user: &str, password: &str) {
        self.expect("EHLO client.test", "250").await;
        self.expect(&format!("AUTH PLAIN {}", plain(user, password)), "235")
            .await;
    }

    /// MAIL, RCPT, DATA and the message: the reply to the final dot.
    async fn transaction(&mut self, from: &str, rcpt: &[&str], message: &str) -> String {
        self.expect(&format!("MAIL FROM:<{from}>"), "250").await;
        for r in rcpt {
            self.expect(&format!("RCPT TO:<{r}>"), "250").await;
        }
        self.expect("DATA", "354").await;
        self.write.write_all(message.as_bytes()).await.unwrap();
        self.send(".").await
    }
}

fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// The spool entries of the demo, in any state.
fn spool(d: &Demo) -> Vec<Value> {
    let out = std::process::Command::new(BIN)
        .args(["queue", "list", "--all", "--json", "--data-dir"])
        .arg(d.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn refusals_before_the_data() {
    let d = demo();
    let mut c = Dialogue::open(&d.smtp).await;
    c.expect("EHLO client.test", "250").await;

    // No AUTH: graphgate relays for nobody.
    let r = c.expect("MAIL FROM:<alice@example.com>", "530").await;
    assert!(r.contains("Authentication required"), "{r}");

    // A wrong password, in PLAIN and in LOGIN.
    c.expect(
        &format!("AUTH PLAIN {}", plain("alice@example.com", "wrong")),
        "535 5.7.8",
    )
    .await;
    c.expect("AUTH LOGIN", "334").await;
    c.expect(
        &base64::engine::general_purpose::STANDARD.encode("alice@example.com"),
        "334",
    )
    .await;
    c.expect(
        &base64::engine::general_purpose::STANDARD.encode("alice!"),
        "535 5.7.8",
    )
    .await;
    // Still no relaying after failures.
    c.expect("MAIL FROM:<alice@example.com>", "530").await;
    c.expect(
        &format!("AUTH PLAIN {}", plain("alice@example.com", "alice")),
        "235",
    )
    .await;

    // An envelope sender alice may not use.
    let r = c.expect("MAIL FROM:<bob@example.com>", "550 5.7.1").await;
    assert!(r.contains("bob@example.com"), "{r}");

    // Too large, announced (RFC 1870): the limit itself is fine, one more
    // octet is not.
    let r = c
        .expect(
            &format!("MAIL FROM:<alice@example.com> SIZE={}", LIMIT + 1),
            "552 5.3.4",
        )
        .await;
    assert!(r.contains(&LIMIT.to_string()), "{r}");
    c.expect(
        &format!("MAIL FROM:<alice@example.com> SIZE={LIMIT}"),
        "250",
    )
    .await;
    c.expect("RSET", "250").await;
    c.expect("QUIT", "221").await;
}

#[tokio::test]
async fn refusals_after_the_data_deliver_nothing() {
    let d = demo();
    let mut c = Dialogue::open(&d.smtp).await;
    c.login("alice@example.com", "alice").await;

    // A From header alice may not use, behind an envelope she may.
    let r = c
        .transaction(
            "alice@example.com",
            &["bob@example.com"],
            "From: Bob <bob@example.com>\r\nTo: bob@example.com\r\n\
             Subject: refused: forged From\r\n\r\nx\r\n",
        )
        .await;
    assert!(
        r.starts_with("550 5.7.1") && r.contains("bob@example.com"),
        "{r}"
    );

    // A header recipient that is not an RCPT TO: Graph would deliver to it.
    let r = c
        .transaction(
            "alice@example.com",
            &["bob@example.com"],
            "From: alice@example.com\r\nTo: bob@example.com\r\nCc: carol@example.com\r\n\
             Subject: refused: header-only recipient\r\n\r\nx\r\n",
        )
        .await;
    assert!(r.starts_with("554"), "{r}");
    assert!(
        r.contains("the headers address carol@example.com, which is not an RCPT TO recipient")
            && r.contains("RCPT TO:<carol@example.com>"),
        "{r}"
    );

    // The session goes on, and a proper message after them is delivered.
    let r = c
        .transaction(
            "alice@example.com",
            &["bob@example.com"],
            "From: alice@example.com\r\nTo: bob@example.com\r\n\
             Subject: accepted after refusals\r\n\
             Message-ID: <after-refusals.clients@example.com>\r\n\r\nfine\r\n",
        )
        .await;
    assert!(r.starts_with("250"), "{r}");
    c.expect("QUIT", "221").await;

    let bob = d.mailbox("bob@example.com").await;
    bob.wait_for("inbox", "after-refusals.clients@example.com")
        .await;
    let subjects: Vec<Value> = bob
        .list("inbox")
        .await
        .into_iter()
        .map(|m| m["subject"].clone())
        .collect();
    assert!(
        !subjects
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.starts_with("refused"))),
        "{subjects:?}"
    );
    // Nothing of the refused messages stays in the spool.
    let spool = spool(&d);
    assert_eq!(spool.len(), 1, "{spool:#?}");
    assert_eq!(
        spool[0]["message_id"]
            .as_str()
            .map(|m| m.trim_matches(['<', '>'])),
        Some("after-refusals.clients@example.com"),
        "{spool:#?}"
    );
}

#[tokio::test]
async fn too_large_data_without_size_is_refused_after_the_dot() {
    let d = demo();
    let mut c = Dialogue::open(&d.smtp).await;
    c.login("alice@example.com", "alice").await;
    c.expect("MAIL FROM:<alice@example.com>", "250").await;
    c.expect("RCPT TO:<bob@example.com>", "250").await;
    c.expect("DATA", "354").await;
    c.write
        .write_all(b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: too large\r\n\r\n")
        .await
        .unwrap();
    // 36 MiB of 1000-octet lines, streamed a megabyte at a time.
    let mut line = vec![b'x'; 998];
    line.extend_from_slice(b"\r\n");
    let chunk: Vec<u8> = line.repeat(1000);
    let mut sent = 0;
    while sent < 36 * 1024 * 1024 {
        c.write.write_all(&chunk).await.unwrap();
        sent += chunk.len();
    }
    let r = c.send(".").await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    assert!(r.contains(&LIMIT.to_string()), "{r}");
    // The connection stays usable.
    c.expect("NOOP", "250").await;
    c.expect("QUIT", "221").await;
    assert_eq!(spool(&d).len(), 0);
}

#[tokio::test]
async fn status_shows_both_accounts_online_after_sending() {
    let d = demo();
    // A message without a Message-ID: graphgate adds one in front and
    // changes nothing else.
    let message = "From: alice@example.com\r\nTo: bob@example.com\r\n\
                   Subject: no Message-ID of its own\r\n\r\nhello bob\r\n";
    let mut c = Dialogue::open(&d.smtp).await;
    c.login("alice@example.com", "alice").await;
    let r = c
        .transaction("alice@example.com", &["bob@example.com"], message)
        .await;
    assert!(r.starts_with("250"), "{r}");
    let bob = d.mailbox("bob@example.com").await;
    let id = bob
        .wait_for_subject("inbox", "no Message-ID of its own")
        .await;
    let mime = String::from_utf8(bob.mime(&id).await).unwrap();
    let added = mime
        .strip_suffix(message)
        .unwrap_or_else(|| panic!("the message was changed:\n{mime}"));
    // The Message-ID, then the submission header (issue 22).
    let (message_id, submission) = added.split_once("\r\n").unwrap();
    assert!(
        message_id.starts_with("Message-ID: <") && message_id.ends_with("@example.com>"),
        "{added:?}"
    );
    assert!(
        without_submission_header(submission.as_bytes()).is_empty(),
        "{added:?}"
    );

    let status = |json: bool| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("status");
        if json {
            cmd.arg("--json");
        }
        cmd.arg("--data-dir").arg(d.dir.path()).output().unwrap()
    };
    let out = status(false);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for login in ["alice@example.com", "bob@example.com"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(login) && l.trim_end().ends_with("ONLINE")),
            "{login} is not ONLINE:\n{text}"
        );
    }
    // The spool empties once the delivery is recorded.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = status(true);
        assert!(out.status.success());
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        let states: Vec<_> = json["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["login"].clone(), a["state"].clone()))
            .collect();
        assert_eq!(states.len(), 2, "{json}");
        assert!(states.iter().all(|(_, s)| s == "online"), "{json}");
        if json["spool"]["queued"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the spool never emptied: {json}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // `status` shares the accounts' tokens with the running demo; the demo
    // still sends afterwards.
    let r = c
        .transaction(
            "alice@example.com",
            &["bob@example.com"],
            "From: alice@example.com\r\nTo: bob@example.com\r\n\
             Subject: after status\r\nMessage-ID: <after-status.clients@example.com>\r\n\r\nx\r\n",
        )
        .await;
    assert!(r.starts_with("250"), "{r}");
    bob.wait_for("inbox", "after-status.clients@example.com")
        .await;
}
