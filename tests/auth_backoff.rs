//! Logins over real sockets: the auth penalty per (address, login) pair,
//! shared by SMTP and IMAP (one application's failures on 127.0.0.1 do not
//! lock out another account's correct password; parallel guesses get no
//! more checks than the lock allows; guessing across logins spends the
//! address's budget; `graphgate accounts unlock` lifts a lock on the
//! running gateway), and plaintext login refused before TLS when the
//! loopback exemption is switched off; and the verified-credentials cache:
//! a repeat login skips Argon2id, while a wrong password, a password
//! change, a logout and a lock still take effect at once.

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

/// Fast delays, the default lock (10 failures of a pair) and budget (10
/// other failing logins per address).
const FAST: &[(&str, &str)] = &[
    ("GRAPHGATE_LOGIN_LIMIT_DELAY_MS", "1"),
    ("GRAPHGATE_LOGIN_LIMIT_MAX_DELAY_S", "1"),
    ("GRAPHGATE_LOGIN_LIMIT_LOCKOUT_S", "600"),
    ("GRAPHGATE_SMTP_MAX_CONNECTIONS", "1024"),
];

/// A sample of `/metrics`, e.g. `graphgate_login_password_checks_total{login="known"}`.
async fn metric(admin: &str, series: &str) -> u64 {
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

const CHECKS_KNOWN: &str = "graphgate_login_password_checks_total{login=\"known\"}";
const CHECKS_UNKNOWN: &str = "graphgate_login_password_checks_total{login=\"unknown\"}";

/// `graphgate accounts …` against the demo's data directory.
fn accounts_cli(d: &support::Demo, args: &[&str]) -> String {
    let out = std::process::Command::new(support::BIN)
        .arg("--data-dir")
        .arg(d.dir.path())
        .arg("accounts")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn one_applications_failures_do_not_lock_out_the_others() {
    let d = demo_env(FAST);
    let unknown_before = metric(&d.admin, CHECKS_UNKNOWN).await;
    // Two misconfigured applications on 127.0.0.1: one with a login that
    // does not exist, one with bob's old password, over SMTP and IMAP.
    for _ in 0..6 {
        for login in ["nosuch@example.com", "bob@example.com"] {
            let r = smtp_auth("127.0.0.1", &d.smtp, login, "guess").await;
            assert!(
                r.starts_with("535 5.7.8") || r.starts_with("454 4.7.0"),
                "{r}"
            );
            let r = imap_login("127.0.0.1", &d.imap, login, "guess").await;
            assert!(r.starts_with("a NO"), "{r}");
        }
    }
    // alice did nothing wrong: her correct password works at once, from
    // the same address, on both protocols.
    let r = smtp_auth("127.0.0.1", &d.smtp, "alice@example.com", "alice").await;
    assert!(r.starts_with("235"), "{r}");
    let r = imap_login("127.0.0.1", &d.imap, "alice@example.com", "alice").await;
    assert!(r.starts_with("a OK"), "{r}");
    // The unknown login cost a real (dummy) Argon2id verification each
    // time it was checked: same work, same time as a known one.
    assert!(metric(&d.admin, CHECKS_UNKNOWN).await >= unknown_before + 10);
    // Both pairs are locked now (12 failures each, lock at 10); the reply
    // says how long and the fix, the same for the unknown login.
    for login in ["nosuch@example.com", "bob@example.com"] {
        let r = smtp_auth("127.0.0.1", &d.smtp, login, "bob").await;
        assert!(r.starts_with("454 4.7.0"), "{r}");
        assert!(r.contains("seconds"), "{r}");
        assert!(
            r.contains(&format!("graphgate accounts unlock {login}")),
            "{r}"
        );
    }
    let r = imap_login("127.0.0.1", &d.imap, "bob@example.com", "bob").await;
    assert!(r.starts_with("a NO [UNAVAILABLE]"), "{r}");
    assert!(
        r.contains("graphgate accounts unlock bob@example.com"),
        "{r}"
    );
    // bob from another address is his own pair.
    let r = smtp_auth("127.0.0.2", &d.smtp, "bob@example.com", "bob").await;
    assert!(r.starts_with("235"), "{r}");
    assert_eq!(
        metric(&d.admin, "graphgate_login_locked_pairs").await,
        2,
        "nosuch and bob from 127.0.0.1"
    );
    assert!(
        metric(
            &d.admin,
            "graphgate_login_failures_total{protocol=\"imap\",outcome=\"wrong\"}"
        )
        .await
            >= 1
    );

    // The administrator lifts bob's lock from another process; the running
    // gateway honours it at the next attempt.
    let out = accounts_cli(&d, &["unlock", "BOB@example.com"]);
    assert!(
        out.contains("Lifted bob@example.com from 127.0.0.1"),
        "{out}"
    );
    let r = smtp_auth("127.0.0.1", &d.smtp, "bob@example.com", "bob").await;
    assert!(r.starts_with("235"), "{r}");
    let r = imap_login("127.0.0.1", &d.imap, "bob@example.com", "bob").await;
    assert!(r.starts_with("a OK"), "{r}");
    // nosuch stays locked until its address is lifted too.
    let r = smtp_auth("127.0.0.1", &d.smtp, "nosuch@example.com", "x").await;
    assert!(r.starts_with("454 4.7.0"), "{r}");
    let out = accounts_cli(&d, &["unlock", "--address", "127.0.0.1"]);
    assert!(out.contains("Lifted nosuch@example.com"), "{out}");
    let r = smtp_auth("127.0.0.1", &d.smtp, "nosuch@example.com", "x").await;
    assert!(r.starts_with("535 5.7.8"), "{r}");
    assert_eq!(metric(&d.admin, "graphgate_login_locked_pairs").await, 0);
}

#[tokio::test]
async fn parallel_guesses_get_no_more_checks_than_the_lock_allows() {
    let d = demo_env(FAST);
    let before = metric(&d.admin, CHECKS_KNOWN).await;
    let attempts = (0..300).map(|i| {
        let smtp = d.smtp.clone();
        tokio::spawn(async move {
            smtp_auth(
                "127.0.0.3",
                &smtp,
                "alice@example.com",
                &format!("guess{i}"),
            )
            .await
        })
    });
    let mut checked = 0;
    for a in futures::future::join_all(attempts).await {
        let r = a.unwrap();
        if r.starts_with("535") {
            checked += 1;
        } else {
            assert!(r.starts_with("454 4.7.0"), "{r}");
        }
    }
    let checks = metric(&d.admin, CHECKS_KNOWN).await - before;
    // login_limit.lockout_after (10): attempts in flight count.
    assert!(
        (1..=10).contains(&checked),
        "{checked} guesses were checked"
    );
    assert_eq!(checks, checked, "each checked guess is one Argon2id run");
    // alice's application on 127.0.0.1 is untouched by the guessing on
    // 127.0.0.3.
    let r = smtp_auth("127.0.0.1", &d.smtp, "alice@example.com", "alice").await;
    assert!(r.starts_with("235"), "{r}");
}

#[tokio::test]
async fn guessing_across_logins_spends_the_address_budget() {
    let d = demo_env(&[
        ("GRAPHGATE_LOGIN_LIMIT_ADDRESS_BUDGET", "3"),
        ("GRAPHGATE_LOGIN_LIMIT_FORGET_AFTER_S", "600"),
    ]);
    // Three logins fail from 127.0.0.4: the budget is spent.
    for login in ["a@example.com", "b@example.com", "c@example.com"] {
        let r = smtp_auth("127.0.0.4", &d.smtp, login, "guess").await;
        assert!(r.starts_with("535 5.7.8"), "{r}");
    }
    // A fourth login is still checked once…
    let r = smtp_auth("127.0.0.4", &d.smtp, "bob@example.com", "guess").await;
    assert!(r.starts_with("535 5.7.8"), "{r}");
    // …but a login that failed from here is refused unchecked, saying so.
    let r = imap_login("127.0.0.4", &d.imap, "bob@example.com", "guess2").await;
    assert!(r.starts_with("a NO [UNAVAILABLE]"), "{r}");
    assert!(r.contains("--address 127.0.0.4"), "{r}");
    // A correct password of an account that did not fail passes at once.
    let r = imap_login("127.0.0.4", &d.imap, "alice@example.com", "alice").await;
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

#[tokio::test]
async fn argon2_parameters_apply_to_new_hashes_and_old_ones_keep_verifying() {
    use std::io::Write;
    let d = demo_env(FAST);
    // bob's new password is hashed with cheaper parameters, from the
    // configuration (GRAPHGATE_LOGIN_LIMIT_ARGON2_*).
    let mut child = std::process::Command::new(support::BIN)
        .arg("--data-dir")
        .arg(d.dir.path())
        .args(["accounts", "passwd", "bob@example.com", "--password-stdin"])
        .env("GRAPHGATE_LOGIN_LIMIT_ARGON2_MEMORY_KIB", "8192")
        .env("GRAPHGATE_LOGIN_LIMIT_ARGON2_ITERATIONS", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"new-bob\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = rusqlite::Connection::open(d.dir.path().join("graphgate.sqlite3")).unwrap();
    let hash = |login: &str| -> String {
        db.query_row(
            "SELECT password_hash FROM accounts WHERE login = ?1",
            [login],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert!(hash("bob@example.com").contains("$m=8192,t=1,p=1$"));
    assert!(hash("alice@example.com").contains("$m=19456,t=2,p=1$"));
    // Both verify on the running gateway, each with its own parameters.
    let r = smtp_auth("127.0.0.1", &d.smtp, "bob@example.com", "new-bob").await;
    assert!(r.starts_with("235"), "{r}");
    let r = smtp_auth("127.0.0.1", &d.smtp, "alice@example.com", "alice").await;
    assert!(r.starts_with("235"), "{r}");
    // Parameters Argon2id refuses are a clear error naming the keys.
    let out = std::process::Command::new(support::BIN)
        .arg("--data-dir")
        .arg(d.dir.path())
        .args(["accounts", "passwd", "bob@example.com", "--password-stdin"])
        .env("GRAPHGATE_LOGIN_LIMIT_ARGON2_MEMORY_KIB", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("login_limit.argon2_memory_kib"), "{err}");
}

const CACHE_HITS: &str = "graphgate_login_cache_hits_total";

/// `graphgate accounts passwd LOGIN` with `password` on stdin.
fn passwd(d: &support::Demo, login: &str, password: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(support::BIN)
        .arg("--data-dir")
        .arg(d.dir.path())
        .args(["accounts", "passwd", login, "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_repeat_login_skips_argon2id_and_a_wrong_password_after_it_does_not() {
    let d = demo_env(FAST);
    let before = metric(&d.admin, CHECKS_KNOWN).await;
    let r = imap_login("127.0.0.1", &d.imap, "alice@example.com", "alice").await;
    assert!(r.starts_with("a OK"), "{r}");
    assert_eq!(metric(&d.admin, CHECKS_KNOWN).await, before + 1);
    // The same password again, over IMAP and over SMTP (one guard for
    // both), from the same and from another address: no Argon2id run.
    let r = imap_login("127.0.0.1", &d.imap, "alice@example.com", "alice").await;
    assert!(r.starts_with("a OK"), "{r}");
    let r = smtp_auth("127.0.0.2", &d.smtp, "ALICE@example.com", "alice").await;
    assert!(r.starts_with("235"), "{r}");
    assert_eq!(
        metric(&d.admin, CHECKS_KNOWN).await,
        before + 1,
        "repeat logins ran Argon2id"
    );
    assert_eq!(metric(&d.admin, CACHE_HITS).await, 2);
    // A wrong password after the cached success is checked, refused and
    // counted as a failure.
    let wrong = "graphgate_login_failures_total{protocol=\"imap\",outcome=\"wrong\"}";
    let wrong_before = metric(&d.admin, wrong).await;
    let r = imap_login("127.0.0.1", &d.imap, "alice@example.com", "alicf").await;
    assert!(r.starts_with("a NO"), "{r}");
    assert_eq!(metric(&d.admin, CHECKS_KNOWN).await, before + 2);
    assert_eq!(metric(&d.admin, wrong).await, wrong_before + 1);
    // The failure dropped the entry: the right password runs Argon2id
    // once more, then is cached again.
    for _ in 0..2 {
        let r = imap_login("127.0.0.1", &d.imap, "alice@example.com", "alice").await;
        assert!(r.starts_with("a OK"), "{r}");
    }
    assert_eq!(metric(&d.admin, CHECKS_KNOWN).await, before + 3);
    assert_eq!(metric(&d.admin, CACHE_HITS).await, 3);
}

#[tokio::test]
async fn a_password_change_or_a_logout_ends_a_cached_login_at_once() {
    let d = demo_env(FAST);
    for _ in 0..2 {
        let r = smtp_auth("127.0.0.1", &d.smtp, "bob@example.com", "bob").await;
        assert!(r.starts_with("235"), "{r}");
    }
    assert_eq!(metric(&d.admin, CACHE_HITS).await, 1, "bob is cached");
    // `accounts passwd` from another process: the old password is refused
    // at the next attempt, the new one passes (and is cached in turn).
    passwd(&d, "bob@example.com", "new-bob");
    let r = smtp_auth("127.0.0.1", &d.smtp, "bob@example.com", "bob").await;
    assert!(r.starts_with("535 5.7.8"), "{r}");
    let r = imap_login("127.0.0.1", &d.imap, "bob@example.com", "bob").await;
    assert!(r.starts_with("a NO"), "{r}");
    for _ in 0..2 {
        let r = smtp_auth("127.0.0.1", &d.smtp, "bob@example.com", "new-bob").await;
        assert!(r.starts_with("235"), "{r}");
    }
    assert_eq!(metric(&d.admin, CACHE_HITS).await, 2);
    // `logout` deletes bob's tokens: the next login runs Argon2id again.
    let checks = metric(&d.admin, CHECKS_KNOWN).await;
    let out = std::process::Command::new(support::BIN)
        .arg("--data-dir")
        .arg(d.dir.path())
        .args(["logout", "bob@example.com"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    smtp_auth("127.0.0.1", &d.smtp, "bob@example.com", "new-bob").await;
    assert_eq!(metric(&d.admin, CHECKS_KNOWN).await, checks + 1);
    assert_eq!(metric(&d.admin, CACHE_HITS).await, 2);
}

#[tokio::test]
async fn a_locked_pair_stays_locked_with_a_cached_password() {
    let d = demo_env(FAST);
    for _ in 0..2 {
        let r = smtp_auth("127.0.0.4", &d.smtp, "alice@example.com", "alice").await;
        assert!(r.starts_with("235"), "{r}");
    }
    assert_eq!(metric(&d.admin, CACHE_HITS).await, 1, "alice is cached");
    // Ten wrong guesses from 127.0.0.4 lock that pair (lockout_after).
    for i in 0..10 {
        let r = smtp_auth("127.0.0.4", &d.smtp, "alice@example.com", &format!("g{i}")).await;
        assert!(r.starts_with("535 5.7.8"), "{r}");
    }
    // The right password is refused unchecked there, over both protocols.
    let checks = metric(&d.admin, CHECKS_KNOWN).await;
    let r = smtp_auth("127.0.0.4", &d.smtp, "alice@example.com", "alice").await;
    assert!(r.starts_with("454 4.7.0"), "{r}");
    let r = imap_login("127.0.0.4", &d.imap, "alice@example.com", "alice").await;
    assert!(r.starts_with("a NO [UNAVAILABLE]"), "{r}");
    assert_eq!(metric(&d.admin, CHECKS_KNOWN).await, checks);
    // The failures dropped the entry: from another address the right
    // password passes, through Argon2id.
    let r = smtp_auth("127.0.0.5", &d.smtp, "alice@example.com", "alice").await;
    assert!(r.starts_with("235"), "{r}");
    assert_eq!(metric(&d.admin, CHECKS_KNOWN).await, checks + 1);
    assert_eq!(metric(&d.admin, CACHE_HITS).await, 1);
}

#[tokio::test]
async fn a_zero_ttl_turns_the_cache_off() {
    let mut env = FAST.to_vec();
    env.push(("GRAPHGATE_LOGIN_LIMIT_VERIFIED_CACHE_S", "0"));
    let d = demo_env(&env);
    let before = metric(&d.admin, CHECKS_KNOWN).await;
    for _ in 0..2 {
        let r = smtp_auth("127.0.0.1", &d.smtp, "alice@example.com", "alice").await;
        assert!(r.starts_with("235"), "{r}");
    }
    assert_eq!(metric(&d.admin, CHECKS_KNOWN).await, before + 2);
    assert_eq!(metric(&d.admin, CACHE_HITS).await, 0);
}
