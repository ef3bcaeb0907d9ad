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
