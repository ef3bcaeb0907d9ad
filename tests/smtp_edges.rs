//! SMTP cases beside the client matrix of `smtp_clients.rs`: plaintext
//! AUTH refused from another host but allowed on loopback, and Debian's
//! mutt sending in batch mode.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

use support::{Demo, demo, demo_on};

impl Demo {
    async fn token(&self, upn: &str) -> String {
        support::token(&self.sim, upn).await
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

/// Password checks leave no memory behind and only so many run at once:
/// each Argon2id verification takes 19 MiB. (Was: glibc kept every freed
/// block, so each login — right or wrong — left 19 MiB resident, up to
/// about 700 MB, and every simultaneous login added 19 MiB to the peak.)
#[tokio::test(flavor = "multi_thread")]
async fn password_checks_leave_no_memory_behind() {
    const MIB: u64 = 1024;
    let d = demo();
    let pid = d.proc.0.id();
    let kb = |field: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    };
    let login = |addr: String| async move {
        let mut c = Raw::connect(&addr).await;
        c.cmd("EHLO memory").await;
        let r = c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl").await;
        assert!(r.starts_with("235"), "{r}");
    };
    login(d.smtp.clone()).await;
    let settled = kb("VmRSS:");
    for _ in 0..2 {
        let burst: Vec<_> = (0..16)
            .map(|_| tokio::spawn(login(d.smtp.clone())))
            .collect();
        for task in burst {
            task.await.unwrap();
        }
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let (rss, peak) = (kb("VmRSS:"), kb("VmHWM:"));
    assert!(
        rss < settled + 20 * MIB,
        "32 logins left {} kB resident",
        rss - settled
    );
    assert!(
        peak < settled + (cores + 1) * 20 * MIB,
        "16 logins at once peaked at {} kB above the settled {settled} kB ({cores} cores)",
        peak.saturating_sub(settled)
    );
}
