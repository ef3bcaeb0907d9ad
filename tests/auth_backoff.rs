//! Logins over real sockets: failed-login backoff per address and per login,
//! shared by SMTP and IMAP (a client hammering wrong passwords from
//! 127.0.0.2 is refused while 127.0.0.1 still logs in), and plaintext
//! login refused before TLS when the loopback exemption is switched off.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

mod support;

use support::demo_env;

/// A line-oriented client over any stream (plain or TLS).
struct Line<S> {
    stream: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Line<S> {
    async fn send(&mut self, line: &str) {
        let s = self.stream.get_mut();
        s.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        s.flush().await.unwrap();
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        assert!(!line.is_empty(), "connection closed");
        line.trim_end().to_string()
    }

    /// An SMTP reply's last line.
    async fn smtp(&mut self) -> String {
        loop {
            let line = self.line().await;
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    }

    async fn smtp_cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        self.smtp().await
    }

    /// The lines of an IMAP command up to its tagged reply.
    async fn imap_cmd(&mut self, tag: &str, line: &str) -> Vec<String> {
        self.send(&format!("{tag} {line}")).await;
        let mut out = Vec::new();
        loop {
            let line = self.line().await;
            let done = line.starts_with(&format!("{tag} "));
            out.push(line);
            if done {
                return out;
            }
        }
    }
}

/// A TCP connection to `to` from the local address `from`.
async fn connect_from(from: &str, to: &str) -> Line<TcpStream> {
    let to: SocketAddr = to.parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(to).await.unwrap();
    Line {
        stream: BufReader::new(stream),
    }
}

async fn smtp_auth(from: &str, smtp: &str, login: &str, password: &str) -> String {
    let mut c = connect_from(from, smtp).await;
    let greeting = c.smtp().await;
    assert!(greeting.starts_with("220"), "{greeting}");
    let ehlo = c.smtp_cmd("EHLO test").await;
    assert!(ehlo.starts_with("250"), "{ehlo}");
    let blob = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("\0{login}\0{password}"),
    );
    c.smtp_cmd(&format!("AUTH PLAIN {blob}")).await
}

async fn imap_login(from: &str, imap: &str, login: &str, password: &str) -> String {
    let mut c = connect_from(from, imap).await;
    let greeting = c.line().await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    let reply = c.imap_cmd("a", &format!("LOGIN {login} {password}")).await;
    reply.last().unwrap().clone()
}

#[tokio::test]
async fn hammering_one_address_is_refused_while_another_logs_in() {
    let d = demo_env(&[
        ("GRAPHGATE_LOGIN_LIMIT_FREE_FAILURES", "1"),
        ("GRAPHGATE_LOGIN_LIMIT_DELAY_MS", "1"),
        ("GRAPHGATE_LOGIN_LIMIT_MAX_DELAY_S", "1"),
        ("GRAPHGATE_LOGIN_LIMIT_LOCKOUT_AFTER", "4"),
        ("GRAPHGATE_LOGIN_LIMIT_LOCKOUT_S", "600"),
    ]);
    // 127.0.0.2 guesses alice's password: wrong, wrong… then refused
    // without a check, with how long to wait (RFC 4954 §6: 454 4.7.0).
    for _ in 0..4 {
        let r = smtp_auth("127.0.0.2", &d.smtp, "alice@example.com", "guess").await;
        assert!(r.starts_with("535 5.7.8"), "{r}");
    }
    let r = smtp_auth("127.0.0.2", &d.smtp, "alice@example.com", "guess").await;
    assert!(r.starts_with("454 4.7.0"), "{r}");
    assert!(r.contains("wait") && r.contains("seconds"), "{r}");
    // Even the right password is refused now, from there…
    let r = smtp_auth("127.0.0.2", &d.smtp, "alice@example.com", "alice").await;
    assert!(r.starts_with("454 4.7.0"), "{r}");
    // …and over IMAP (one guard for both), for another login from there
    // too, and for alice from anywhere.
    let r = imap_login("127.0.0.2", &d.imap, "bob@example.com", "bob").await;
    assert!(r.starts_with("a NO [UNAVAILABLE]"), "{r}");
    assert!(r.contains("wait") && r.contains("seconds"), "{r}");
    let r = imap_login("127.0.0.1", &d.imap, "alice@example.com", "alice").await;
    assert!(r.starts_with("a NO [UNAVAILABLE]"), "{r}");
    // Another address with another login is untouched.
    let r = smtp_auth("127.0.0.1", &d.smtp, "bob@example.com", "bob").await;
    assert!(r.starts_with("235"), "{r}");
    let r = imap_login("127.0.0.1", &d.imap, "bob@example.com", "bob").await;
    assert!(r.starts_with("a OK"), "{r}");
    // A wrong password (not refused) says so with RFC 5530's code.
    let r = imap_login("127.0.0.1", &d.imap, "bob@example.com", "nope").await;
    assert!(r.starts_with("a NO [AUTHENTICATIONFAILED]"), "{r}");
}

#[tokio::test]
async fn without_the_loopback_exemption_login_needs_tls() {
    let d = demo_env(&[
        ("GRAPHGATE_SMTP_PLAINTEXT_AUTH_ON_LOOPBACK", "false"),
        ("GRAPHGATE_IMAP_PLAINTEXT_LOGIN_ON_LOOPBACK", "false"),
    ]);
    let r = smtp_auth("127.0.0.1", &d.smtp, "alice@example.com", "alice").await;
    assert!(r.starts_with("530") || r.starts_with("538"), "{r}");
    assert!(r.contains("STARTTLS"), "the reply says what to do: {r}");

    let mut c = connect_from("127.0.0.1", &d.imap).await;
    c.line().await;
    let caps = c.imap_cmd("c", "CAPABILITY").await;
    assert!(caps[0].contains("LOGINDISABLED"), "{caps:?}");
    let r = c.imap_cmd("l", "LOGIN alice@example.com alice").await;
    assert!(r.last().unwrap().starts_with("l NO"), "{r:?}");
    assert!(r.last().unwrap().contains("STARTTLS"), "{r:?}");
    let r = c.imap_cmd("p", "AUTHENTICATE PLAIN").await;
    assert!(r.last().unwrap().starts_with("p NO"), "{r:?}");

    // Over TLS (the implicit-TLS port) the same login works.
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(graphgate::tls::any_certificate_client()));
    let tcp = TcpStream::connect(&d.imaps).await.unwrap();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut c = Line {
        stream: BufReader::new(tls),
    };
    c.line().await;
    let caps = c.imap_cmd("c", "CAPABILITY").await;
    assert!(!caps[0].contains("LOGINDISABLED"), "{caps:?}");
    let r = c.imap_cmd("l", "LOGIN alice@example.com alice").await;
    assert!(r.last().unwrap().starts_with("l OK"), "{r:?}");
}
