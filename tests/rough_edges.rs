//! Small things a new user trips over (issue 18, rough edges), each seen
//! over a real socket against `graphgate demo` run as a process:
//! - the generated certificate names what clients check: CN `localhost`
//!   and the subjectAltNames `localhost`, `127.0.0.1`, `::1` and the host
//!   name (fetchmail refused rcgen's default CN);
//! - the log written to a pipe carries no ANSI colour codes, and a client
//!   that sends an IP address as SNI (RFC 6066 §3 forbids it; `openssl
//!   s_client -servername 127.0.0.1` does it) causes no rustls WARN.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use x509_parser::extensions::GeneralName;

mod support;

use support::{Proc, banner, demo_command, field};

fn tool(name: &str) -> bool {
    let found = Command::new("which")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed; on CI scripts/test installs it (PACKAGES)"
        );
        eprintln!("skipped: {name} is not installed here");
    }
    found
}

/// `openssl s_client` to `addr` with an IP address as SNI: its output.
fn s_client(addr: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-servername", "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // QUIT ends the session after the greeting.
    let _ = child.stdin.take().unwrap().write_all(b"QUIT\r\n");
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_certificate_names_loopback_and_the_host_and_logs_stay_plain() {
    if !tool("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = demo_command(dir.path())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let lines = banner(&mut child, "control");
    let _demo = Proc(child);
    let smtps = field(&lines, "SMTPS ");

    let out = s_client(&smtps);
    let pem_start = out.find("-----BEGIN CERTIFICATE-----").expect(&out);
    let (_, pem) = x509_parser::pem::parse_x509_pem(&out.as_bytes()[pem_start..]).unwrap();
    let cert = pem.parse_x509().unwrap();
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(cn, ["localhost"]);
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                _ => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
            },
            other => format!("{other:?}"),
        })
        .collect();
    for want in ["localhost", "127.0.0.1", "::1"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim().to_ascii_lowercase();
        assert!(names.contains(&host), "{host} not in {names:?}");
    }

    // The handshake (with its IP-address SNI) is over and the session
    // logged; the log is plain text, without rustls' warning.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("INFO") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("INFO"), "no log lines: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI codes in a piped log:\n{text}"
    );
    assert!(!text.contains("Illegal SNI"), "{text}");
}

/// `/readyz` of a demo started with `env`: its status code.
fn readyz(env: &[(&str, &str)]) -> u16 {
    let d = support::demo_env(env);
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--noproxy",
            "*",
        ])
        .arg(format!("{}/readyz", d.admin))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap()
}

/// The outbound proxy variables (documented in the README): graphgate's
/// Graph and Entra client goes through `HTTP_PROXY` (`HTTPS_PROXY` for
/// Microsoft's https endpoints) and around it for `NO_PROXY` hosts. A
/// proxy that refuses every connection keeps the demo's accounts from
/// signing in to the simulator; `NO_PROXY=127.0.0.1` lets them.
#[test]
fn the_proxy_variables_are_honoured() {
    if !tool("curl") {
        return;
    }
    let dead_proxy = ("HTTP_PROXY", "http://127.0.0.1:1");
    assert_eq!(readyz(&[dead_proxy]), 503, "the proxy was not used");
    assert_eq!(
        readyz(&[dead_proxy, ("NO_PROXY", "127.0.0.1")]),
        200,
        "NO_PROXY was not honoured"
    );
}

/// A refused TCP connection to Graph sent nothing (issue 18): the spool
/// queues the message for a retry instead of leaving it `sending` "in
/// doubt" (which waits out a grace period and searches Sent Items before
/// any retry). `graphgate serve` signs in at the simulator, but its
/// `graph_url` is a port nobody listens on.
#[tokio::test]
async fn a_refused_connection_to_graph_is_not_sent_rather_than_in_doubt() {
    use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
    use graphgate::store::{NewAccount, Store, StoreKey};
    let sim = support::sim(true);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let graph = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = {data:?}\n\
         [microsoft]\nauthority_url = {url:?}\ngraph_url = {graph:?}\n\
         tenant = {DEMO_TENANT_ID:?}\nclient_id = {DEMO_PUBLIC_CLIENT_ID:?}\n\
         [smtp]\nlisten = \"127.0.0.1:0\"\nimplicit_tls_listen = \"\"\nsync_window_s = 30\n\
         [imap]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n",
        data = dir.path().display().to_string(),
        url = sim.url,
    );
    let config_path = dir.path().join("graphgate.toml");
    graphgate::config::write_private_file(&config_path, config.as_bytes()).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let account = store
        .add_account(&NewAccount::delegated("alice@example.com", "alice"))
        .unwrap();
    let tokens = graphgate::cli::sign_in_via_simulator(&sim.url, "alice@example.com")
        .await
        .unwrap();
    let key = StoreKey::load(dir.path()).unwrap();
    graphgate::account::save_tokens(&store, &key, account.id, &tokens).unwrap();
    let mut child = Command::new(support::BIN)
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = banner(&mut child, "graphgate is running");
    let _serve = Proc(child);
    let line = lines.last().unwrap();
    let smtp = line
        .split(" · ")
        .find_map(|p| p.trim().strip_prefix("graphgate is running. SMTP "))
        .unwrap()
        .trim()
        .to_string();
    let (host, port) = smtp.rsplit_once(':').unwrap();
    support::py(&format!(
        "import smtplib\n\
         s = smtplib.SMTP('{host}', {port}, timeout=60)\n\
         s.login('alice@example.com', 'alice')\n\
         s.sendmail('alice@example.com', ['bob@example.com'], \
         'From: alice@example.com\\r\\nTo: bob@example.com\\r\\nSubject: x\\r\\n\\r\\nx\\r\\n')\n\
         s.quit()\n"
    ));
    let out = Command::new(support::BIN)
        .arg("--config")
        .arg(&config_path)
        .args(["queue", "list", "--all", "--json"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let entry = &list.as_array().unwrap()[0];
    assert_eq!(entry["state"], "queued", "{entry}");
    let why = entry["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("nothing was sent"), "{entry}");
}

/// A plain SMTP client on the implicit-TLS port (issue 18) is told what
/// the port expects instead of hanging until the handshake times out:
/// one that waits for a greeting, and one that sends EHLO at once.
#[test]
fn plaintext_smtp_on_the_implicit_tls_port_is_told_so() {
    let d = support::demo();
    for first in ["", "EHLO plain\r\n"] {
        let (host, port) = d.smtps.rsplit_once(':').unwrap();
        let script = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
if sys.argv[3]:
    s.sendall(sys.argv[3].encode())
print(s.recv(1000).decode(errors="replace").strip())
"#;
        let out = Command::new(support::python())
            .args(["-c", script, host, port, first])
            .output()
            .unwrap();
        let reply = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{reply}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            reply.starts_with("554 5.7.0 This port expects TLS from the first byte"),
            "{first:?}: {reply}"
        );
    }
}

/// `serve` on a data directory it cannot use (issue 18) says the OS error
/// once, with the fix, and exits: a path under a regular file (any
/// user), and a read-only directory (only when not root, who may write
/// anyway).
#[test]
fn an_unusable_data_dir_under_serve_is_said_once_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let mut dirs = vec![(file.join("data"), "Not a directory")];
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(true);
    if !root {
        use std::os::unix::fs::PermissionsExt;
        let ro = tmp.path().join("read-only");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
        dirs.push((ro, "Permission denied"));
    }
    for (dir, why) in dirs {
        let out = Command::new(support::BIN)
            .args(["serve", "--data-dir"])
            .arg(&dir)
            .env("GRAPHGATE_SMTP_LISTEN", "127.0.0.1:0")
            .env("GRAPHGATE_SMTP_IMPLICIT_TLS_LISTEN", "")
            .env("GRAPHGATE_IMAP_LISTEN", "")
            .env("GRAPHGATE_IMAP_IMPLICIT_TLS_LISTEN", "")
            .env("GRAPHGATE_POP3_LISTEN", "")
            .env("GRAPHGATE_POP3_IMPLICIT_TLS_LISTEN", "")
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert_eq!(stderr.matches(why).count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("cannot use the data directory {}", dir.display())),
            "{stderr}"
        );
        assert!(stderr.contains("chmod 700"), "{stderr}");
        assert!(stderr.contains("graphgate doctor"), "{stderr}");
    }
}

/// Plain IMAP and POP3 clients on the implicit-TLS ports (issue 18) are
/// told what the port expects, in their protocol (IMAP `* BYE`, RFC 9051
/// §7.1.5; POP3 `-ERR`), instead of hanging until the handshake times
/// out: one that waits for a greeting, and one that speaks first.
#[test]
fn plaintext_imap_and_pop3_on_the_implicit_tls_ports_are_told_so() {
    let d = support::demo();
    let cases = [
        (
            &d.imaps,
            "",
            "* BYE This port expects TLS from the first byte",
        ),
        (&d.imaps, "a1 CAPABILITY\r\n", "* BYE This port expects TLS"),
        (
            &d.pop3s,
            "",
            "-ERR This port expects TLS from the first byte",
        ),
        (&d.pop3s, "CAPA\r\n", "-ERR This port expects TLS"),
    ];
    for (addr, first, expected) in cases {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let script = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
if sys.argv[3]:
    s.sendall(sys.argv[3].encode())
print(s.recv(1000).decode(errors="replace").strip())
"#;
        let out = Command::new(support::python())
            .args(["-c", script, host, port, first])
            .output()
            .unwrap();
        let reply = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{reply}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(reply.starts_with(expected), "{addr} {first:?}: {reply}");
    }
}

/// An SMTP client on the IMAP port (issue 18) waits for a 220 that never
/// comes; after 20 s of silence since the greeting it gets a BYE and a
/// reply code it shows (swaks prints it and exits) instead of hanging.
#[test]
fn an_smtp_client_on_the_imap_port_is_told_so() {
    let d = support::demo();
    if tool("swaks") {
        let out = Command::new("swaks")
            .args(["--server", &d.imap, "--timeout", "60"])
            .args(["--from", "alice@example.com", "--to", "bob@example.com"])
            .output()
            .unwrap();
        let transcript = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{transcript}");
        assert!(
            transcript.contains("554 5.7.0 This is graphgate's IMAP port (imap.listen)"),
            "{transcript}"
        );
        return;
    }
    let (host, port) = d.imap.rsplit_once(':').unwrap();
    let script = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode(errors="replace"))
"#;
    let out = Command::new(support::python())
        .args(["-c", script, host, port])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("* BYE No command within 20 s"), "{text}");
    assert!(
        text.contains("554 5.7.0 This is graphgate's IMAP port (imap.listen)"),
        "{text}"
    );
}

/// `HTTPS_PROXY` carries graphgate's requests to Microsoft's https
/// endpoints (issue 18; README "Docker, systemd and client settings"):
/// `graphgate doctor` reaching the Entra authority asks a local proxy to
/// `CONNECT` to it, and with the host in `NO_PROXY` it does not.
#[test]
fn https_proxy_is_used_for_https_endpoints_and_no_proxy_skips_it() {
    use std::io::{BufRead, BufReader};
    let run = |no_proxy: Option<&str>| -> Vec<String> {
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", proxy.local_addr().unwrap());
        proxy.set_nonblocking(true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(support::BIN);
        command
            .args(["doctor", "--data-dir"])
            .arg(dir.path())
            .env("HTTPS_PROXY", &url)
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env(
                "GRAPHGATE_MICROSOFT_AUTHORITY_URL",
                "https://login.example.test",
            )
            .env("GRAPHGATE_MICROSOFT_TENANT", "contoso.onmicrosoft.com")
            .env(
                "GRAPHGATE_MICROSOFT_CLIENT_ID",
                "00000000-0000-0000-0000-000000000001",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        match no_proxy {
            Some(hosts) => command.env("NO_PROXY", hosts),
            None => command.env_remove("NO_PROXY").env_remove("no_proxy"),
        };
        let mut child = command.spawn().unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match proxy.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    let mut reader = BufReader::new(stream);
                    let mut line = String::new();
                    let _ = reader.read_line(&mut line);
                    seen.push(line.trim_end().to_string());
                    let _ = reader
                        .get_mut()
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if child.try_wait().unwrap().is_some() {
                        break;
                    }
                    assert!(Instant::now() < deadline, "doctor did not finish");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        }
        let out = child.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(report.contains("login.example.test"), "{report}");
        seen
    };
    let through_proxy = run(None);
    assert!(
        through_proxy
            .iter()
            .any(|l| l == "CONNECT login.example.test:443 HTTP/1.1"),
        "{through_proxy:?}"
    );
    let direct = run(Some("login.example.test"));
    assert!(direct.is_empty(), "NO_PROXY was not honoured: {direct:?}");
}
