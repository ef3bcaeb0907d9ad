//! What the process-level tests share: starting `graphgate demo` or
//! `graphgate sim` as a child process and reading their addresses off the
//! banner, and tokens from the simulator by the password grant.
//!
//! Each test binary uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_graphgate");

/// A child process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Stdout lines of `child` up to and including the first containing
/// `done`; the rest is drained in the background so the child never
/// blocks on a full pipe.
pub fn banner(child: &mut Child, done: &str) -> Vec<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let done = done.to_string();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent {
                lines.push(line.clone());
                if line.contains(&done) {
                    let _ = tx.send(lines.clone());
                    sent = true;
                }
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("no banner within 60 s")
}

/// The word after `label` on the first banner line starting with it.
pub fn field(lines: &[String], label: &str) -> String {
    lines
        .iter()
        .find(|l| l.starts_with(label))
        .and_then(|l| l[label.len()..].split_whitespace().next())
        .unwrap_or_else(|| panic!("no {label} in {lines:#?}"))
        .to_string()
}

/// The first `http://…` word of the banner.
pub fn url(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
        .expect("a URL in the banner")
        .to_string()
}

/// `graphgate demo` on free ports, state in a temporary directory.
pub struct Demo {
    pub proc: Proc,
    pub smtp: String,
    pub smtps: String,
    /// The relay listener (no AUTH from 127.0.0.0/8, as alice).
    pub relay: String,
    pub imap: String,
    pub imaps: String,
    pub pop3: String,
    pub pop3s: String,
    pub sim: String,
    /// `http://host:port` of the admin endpoint.
    pub admin: String,
    /// The console's one-time sign-in link (`http://…/login?token=…`).
    pub console: String,
    pub dir: tempfile::TempDir,
    /// The simulated tenant re-renders stored MIME as Exchange does (the
    /// default; not with `--exact-mime`).
    pub exchange_mime: bool,
}

/// The demo, every listener on a free loopback port.
pub fn demo() -> Demo {
    demo_on("127.0.0.1:0")
}

/// The demo with its SMTP listener on `smtp` (e.g. all interfaces).
pub fn demo_on(smtp: &str) -> Demo {
    demo_with(smtp, &[])
}

/// The demo whose simulated tenant re-renders stored MIME as Exchange
/// does (`--exchange-mime`, which is the default).
pub fn demo_exchange_mime() -> Demo {
    demo_with("127.0.0.1:0", &["--exchange-mime"])
}

/// The demo whose simulated tenant stores the bytes submitted instead of
/// re-rendering them as Exchange does (`--exact-mime`), for a test that
/// needs them back.
pub fn demo_exact_mime() -> Demo {
    demo_with("127.0.0.1:0", &["--exact-mime"])
}

/// The demo with its SMTP listener on `smtp` and `extra` arguments.
pub fn demo_with(smtp: &str, extra: &[&str]) -> Demo {
    demo_with_env(smtp, extra, &[])
}

/// The demo with `GRAPHGATE_*` variables (which tune it as they tune
/// `serve`).
pub fn demo_env(env: &[(&str, &str)]) -> Demo {
    demo_with_env("127.0.0.1:0", &[], env)
}

/// `graphgate demo` with every listener on a free loopback port and its
/// state in `data_dir`; stdout (the banner) piped, stderr for the caller.
pub fn demo_command(data_dir: &std::path::Path) -> Command {
    demo_command_on("127.0.0.1:0", data_dir)
}

/// [`demo_command`] with the SMTP listener on `smtp`.
fn demo_command_on(smtp: &str, data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["demo", "--sim", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args([
            "--smtp",
            smtp,
            "--imap",
            "127.0.0.1:0",
            "--pop3",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped());
    command
}

fn demo_with_env(smtp: &str, extra: &[&str], env: &[(&str, &str)]) -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let mut child = demo_command_on(smtp, dir.path())
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = banner(&mut child, "control");
    Demo {
        smtp: field(&lines, "SMTP "),
        smtps: field(&lines, "SMTPS "),
        relay: field(&lines, "Relay "),
        imap: field(&lines, "IMAP "),
        imaps: field(&lines, "IMAPS "),
        pop3: field(&lines, "POP3 "),
        pop3s: field(&lines, "POP3S "),
        sim: url(&lines[lines
            .iter()
            .position(|l| l.contains("simulator on"))
            .unwrap()..]),
        admin: field(&lines, "Admin ")
            .trim_end_matches("/healthz")
            .to_string(),
        console: field(&lines, "Console "),
        proc: Proc(child),
        dir,
        exchange_mime: !extra.contains(&"--exact-mime"),
    }
}

/// `graphgate sim` alone on a free port (`--no-seed` when `seed` is false).
pub struct Sim {
    pub proc: Proc,
    pub url: String,
}

impl Sim {
    /// A control request (`/_sim/faults`, …), which must succeed.
    pub async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
}

pub fn sim(seed: bool) -> Sim {
    sim_with(if seed { &[] } else { &["--no-seed"] })
}

/// `graphgate sim` on a free port with `extra` arguments.
pub fn sim_with(extra: &[&str]) -> Sim {
    let mut args = vec!["sim", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = banner(&mut child, "simulator on http://");
    Sim {
        url: url(&lines),
        proc: Proc(child),
    }
}

/// `application/x-www-form-urlencoded`.
pub fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A Graph token of a demo user (password = the local part of the
/// address) from the simulator's password grant.
pub async fn token(sim_url: &str, upn: &str) -> String {
    let password = upn.split('@').next().unwrap();
    let response: Value = reqwest::Client::new()
        .post(format!("{sim_url}/{DEMO_TENANT_ID}/oauth2/v2.0/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "password"),
            ("client_id", DEMO_PUBLIC_CLIENT_ID),
            ("username", upn),
            ("password", password),
            (
                "scope",
                "https://graph.microsoft.com/Mail.ReadWrite offline_access",
            ),
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {response}"))
        .to_string()
}

/// Debian's python3 (the one the python3-* packages belong to) when the
/// PATH's differs (pyenv), else the PATH's.
pub fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Run a Python script (smtplib, imaplib…); its output on failure.
pub fn py(script: &str) {
    py_with(script, &[]);
}

/// [`py`] with arguments (`sys.argv[1:]`).
pub fn py_with(script: &str, args: &[&str]) {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
