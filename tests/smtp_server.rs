//! The SMTP listener over real sockets, with real clients (lettre, Python's
//! smtplib, curl): authentication, STARTTLS, implicit TLS, refusals, and the
//! message bytes that reach the spool.

use std::sync::{Arc, Mutex};

use graphgate::secret::Secret;
use graphgate::smtp::server::{self, ServerConfig, SpooledMessage, Submitter};
use graphgate::smtp::{SessionConfig, SubmitOutcome};
use graphgate::store::{AuthProfile, NewAccount, Store};
use graphgate::tls::Tls;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Keeps what it is given and accepts it.
#[derive(Default)]
struct Recorder {
    messages: Mutex<Vec<(SpooledMessage, Vec<u8>)>>,
}

#[async_trait::async_trait]
impl Submitter for Recorder {
    async fn submit(&self, message: SpooledMessage) -> SubmitOutcome {
        let bytes = message.read_all().await.unwrap();
        let mut all = self.messages.lock().unwrap();
        all.push((message, bytes));
        SubmitOutcome::Accepted {
            queue_id: format!("T{}", all.len()),
        }
    }
}

struct Gateway {
    plain: std::net::SocketAddr,
    implicit: std::net::SocketAddr,
    recorder: Arc<Recorder>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(max_size: usize) -> Gateway {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .add_account(&NewAccount {
            login: "alice@example.com".into(),
            password: Secret::new("alice".into()),
            mailbox: "alice@example.com".into(),
            auth_profile: AuthProfile::Delegated,
            aliases: vec!["alias@example.com".into()],
            shared_mailboxes: vec![],
        })
        .unwrap();
    let tls = Tls::load(None, None, dir.path()).unwrap();
    let recorder = Arc::new(Recorder::default());
    let config = ServerConfig {
        session: SessionConfig {
            hostname: "gateway.test".into(),
            max_message_size: max_size,
            ..SessionConfig::default()
        },
        incoming_dir: dir.path().join("spool"),
        ..ServerConfig::default()
    };
    let srv = server::Server::new(config, store, Some(tls), recorder.clone());
    let stop = CancellationToken::new();
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let implicit = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain_addr, implicit_addr) = (plain.local_addr().unwrap(), implicit.local_addr().unwrap());
    tokio::spawn(server::run(plain, false, srv.clone(), stop.clone()));
    tokio::spawn(server::run(implicit, true, srv, stop.clone()));
    Gateway {
        plain: plain_addr,
        implicit: implicit_addr,
        recorder,
        stop,
        _dir: dir,
    }
}

/// A raw transcript client: send a line, read one (possibly multi-line) reply.
struct Raw {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: std::net::SocketAddr) -> (Raw, String) {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut raw = Raw {
            reader: BufReader::new(r),
            writer: w,
        };
        let greeting = raw.reply().await;
        (raw, greeting)
    }

    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await.unwrap() == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn send(&mut self, line: &str) -> String {
        self.writer.write_all(line.as_bytes()).await.unwrap();
        self.writer.write_all(b"\r\n").await.unwrap();
        self.reply().await
    }
}

#[tokio::test]
async fn transcript_refusals_and_acceptance() {
    let gw = start(10_000).await;
    let (mut c, greeting) = Raw::connect(gw.plain).await;
    assert!(greeting.starts_with("220 gateway.test ESMTP"), "{greeting}");
    let ehlo = c.send("EHLO me").await;
    assert!(
        ehlo.contains("250-STARTTLS") && ehlo.contains("AUTH PLAIN LOGIN"),
        "{ehlo}"
    );
    assert!(
        c.send("MAIL FROM:<alice@example.com>")
            .await
            .starts_with("530 5.7.0")
    );
    // alice / wrong
    assert!(
        c.send("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHdyb25n")
            .await
            .starts_with("535 5.7.8")
    );
    assert!(
        c.send("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl")
            .await
            .starts_with("235 2.7.0")
    );
    assert!(
        c.send("MAIL FROM:<bob@example.com>")
            .await
            .starts_with("550 5.7.1")
    );
    assert!(
        c.send("MAIL FROM:<alice@example.com> SIZE=20000")
            .await
            .starts_with("552 5.3.4")
    );
    assert!(
        c.send("MAIL FROM:<alias@example.com>")
            .await
            .starts_with("250")
    );
    assert!(c.send("RCPT TO:<bob@example.com>").await.starts_with("250"));
    assert!(c.send("DATA").await.starts_with("354"));
    let done = c.send("Subject: x\r\n\r\nhello\r\n.").await;
    assert_eq!(done.trim(), "250 2.0.0 OK: queued as T1");
    assert!(c.send("QUIT").await.starts_with("221"));
    let got = gw.recorder.messages.lock().unwrap();
    assert_eq!(got[0].1, b"Subject: x\r\n\r\nhello\r\n");
    assert_eq!(got[0].0.envelope.mail_from, "alias@example.com");
    assert_eq!(
        got[0].0.envelope.rcpt_to,
        vec!["bob@example.com".to_string()]
    );
    assert_eq!(got[0].0.size, 21);
    assert_eq!(got[0].0.account.login, "alice@example.com");
}

#[tokio::test]
async fn small_messages_stay_in_memory_larger_ones_go_to_an_fsynced_file() {
    let gw = start(1_000_000).await;
    let (mut c, _) = Raw::connect(gw.plain).await;
    c.send("EHLO me").await;
    assert!(
        c.send("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl")
            .await
            .starts_with("235")
    );
    let small = b"Subject: small\r\n\r\nhello\r\n".to_vec();
    let mut large = b"Subject: large\r\n\r\n".to_vec();
    while large.len() <= server::INLINE_MAX + 10_000 {
        large.extend_from_slice(
            b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxy\r\n",
        );
    }
    for body in [&small, &large] {
        assert!(
            c.send("MAIL FROM:<alice@example.com>")
                .await
                .starts_with("250")
        );
        assert!(c.send("RCPT TO:<bob@example.com>").await.starts_with("250"));
        assert!(c.send("DATA").await.starts_with("354"));
        c.writer.write_all(body).await.unwrap();
        assert!(c.send(".").await.starts_with("250"), "accepted");
    }
    let got = gw.recorder.messages.lock().unwrap();
    assert!(
        matches!(&got[0].0.body, server::SpooledBody::Inline(b) if b[..] == small[..]),
        "{:?}",
        got[0].0.body
    );
    assert_eq!(got[0].1, small);
    let server::SpooledBody::File(path) = &got[1].0.body else {
        panic!("a message above INLINE_MAX is spooled in a file");
    };
    assert_eq!(got[1].1, large);
    assert_eq!(got[1].0.size, large.len() as u64);
    assert_eq!(std::fs::read(path).unwrap(), large);
    // Only the finished file: no `.part` left, nothing for the small one.
    let files: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files, vec![path.clone()]);
}

#[tokio::test]
async fn lettre_starttls_plain_and_implicit_tls_login() {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Tls as LTls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let gw = start(1_000_000).await;
    let tls = TlsParameters::builder("localhost".into())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .unwrap();
    let message = |subject: &str| {
        Message::builder()
            .from("Alice <alice@example.com>".parse().unwrap())
            .to("bob@example.com".parse().unwrap())
            .subject(subject)
            .body("Grüße aus dem Test\n".to_string())
            .unwrap()
    };
    let starttls = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(gw.plain.port())
        .tls(LTls::Required(tls.clone()))
        .credentials(Credentials::new("alice@example.com".into(), "alice".into()))
        .authentication(vec![Mechanism::Plain])
        .build();
    let response = starttls.send(message("via STARTTLS")).await.unwrap();
    assert!(response.is_positive());

    let implicit = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(gw.implicit.port())
        .tls(LTls::Wrapper(tls))
        .credentials(Credentials::new("alice@example.com".into(), "alice".into()))
        .authentication(vec![Mechanism::Login])
        .build();
    implicit.send(message("via implicit TLS")).await.unwrap();

    let got = gw.recorder.messages.lock().unwrap();
    assert_eq!(got.len(), 2);
    let first = String::from_utf8_lossy(&got[0].1);
    assert!(first.contains("Subject: via STARTTLS"), "{first}");
    assert!(String::from_utf8_lossy(&got[1].1).contains("Subject: via implicit TLS"));
}

#[tokio::test]
async fn python_smtplib_sends_through_the_gateway() {
    let gw = start(1_000_000).await;
    let script = format!(
        r#"
import smtplib
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "alice@example.com"
m["To"] = "bob@example.com"
m["Subject"] = "from smtplib"
m.set_content("body line\n.leading dot\n")
with smtplib.SMTP("127.0.0.1", {port}) as s:
    s.ehlo()
    s.login("alice@example.com", "alice")
    refused = s.send_message(m, to_addrs=["bob@example.com", "hidden@example.net"])
    assert refused == {{}}, refused
print("sent")
"#,
        port = gw.plain.port()
    );
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .await
        .expect("python3 is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = gw.recorder.messages.lock().unwrap();
    let text = String::from_utf8_lossy(&got[0].1);
    assert!(
        !text.contains("..leading dot") && text.contains("\r\n.leading dot\r\n"),
        "{text}"
    );
    assert_eq!(
        got[0].0.envelope.rcpt_to,
        vec![
            "bob@example.com".to_string(),
            "hidden@example.net".to_string()
        ]
    );
}

#[tokio::test]
async fn curl_sends_with_mail_from_and_rcpt() {
    let gw = start(1_000_000).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mail.txt");
    std::fs::write(
        &file,
        "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: curl\r\n\r\nfrom curl\r\n",
    )
    .unwrap();
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--url",
            &format!("smtp://127.0.0.1:{}", gw.plain.port()),
            "--mail-from",
            "alice@example.com",
            "--mail-rcpt",
            "bob@example.com",
            "--user",
            "alice@example.com:alice",
            "--upload-file",
            file.to_str().unwrap(),
        ])
        .output()
        .await
        .expect("curl is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = gw.recorder.messages.lock().unwrap();
    assert!(String::from_utf8_lossy(&got[0].1).contains("Subject: curl\r\n"));
}

#[tokio::test]
async fn shutdown_closes_idle_sessions_politely() {
    let gw = start(1000).await;
    let (mut c, _) = Raw::connect(gw.plain).await;
    c.send("EHLO me").await;
    gw.stop.cancel();
    let bye = c.reply().await;
    assert!(bye.starts_with("421 4.3.2"), "{bye}");
}
