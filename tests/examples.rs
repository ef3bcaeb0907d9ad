//! The Rust examples run as a user runs them, against `graphgate demo`:
//! `send_lettre` submits a message (plain AUTH on loopback, STARTTLS and
//! implicit TLS with the demo's certificate verified) and
//! `read_async_imap` finds it in the recipient's Inbox (plain, STARTTLS and
//! implicit TLS).
//!
//! The example binaries are the ones `cargo test --all-targets` builds; the
//! test asks cargo to build them first (a no-op when they are fresh), so
//! `cargo test --test examples` alone works too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod support;

/// The directory of the example binaries of this build
/// (`target/<profile>/examples`), after building them.
fn examples_dir() -> PathBuf {
    // This test runs from target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args([
            "build",
            "--example",
            "send_lettre",
            "--example",
            "read_async_imap",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    let out = cargo.output().unwrap();
    assert!(
        out.status.success(),
        "cargo build --example …: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    profile_dir.join("examples")
}

/// Run an example with `args`, none of its environment variables set.
fn run(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(dir.join(name));
    command.args(args);
    for var in [
        "SMTP_HOST",
        "SMTP_PORT",
        "SMTP_USER",
        "SMTP_PASSWORD",
        "SMTP_TLS",
        "SMTP_CA_FILE",
        "MAIL_FROM",
        "MAIL_TO",
        "MAIL_SUBJECT",
        "IMAP_HOST",
        "IMAP_PORT",
        "IMAP_USER",
        "IMAP_PASSWORD",
        "IMAP_TLS",
        "IMAP_CA_FILE",
        "IMAP_MAILBOX",
        "IMAP_LIMIT",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn port(addr: &str) -> String {
    addr.rsplit_once(':').unwrap().1.to_string()
}

/// Read bob's Inbox with `args` until `subject` shows (the message was
/// delivered through Graph before the 250; the poll only absorbs the
/// gateway's own pace).
fn read_until(dir: &Path, args: &[&str], subject: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = run(dir, "read_async_imap", args, &[]);
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "read_async_imap {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains(subject) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{subject:?} not read back: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn send_lettre_and_read_async_imap_round_trip_through_the_demo() {
    let dir = examples_dir();
    let demo = support::demo();
    let cert = demo.dir.path().join("tls").join("cert.pem");
    let cert = cert.to_str().unwrap();
    let (smtp, smtps, imap, imaps) = (
        port(&demo.smtp),
        port(&demo.smtps),
        port(&demo.imap),
        port(&demo.imaps),
    );

    // Plain AUTH PLAIN on loopback, the demo's accounts by default; the
    // port from the environment.
    let out = run(
        &dir,
        "send_lettre",
        &["--subject", "examples: plain on loopback"],
        &[("SMTP_PORT", smtp.as_str())],
    );
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("from alice@example.com to bob@example.com: 250"),
        "{text}"
    );

    // STARTTLS and implicit TLS, the demo's certificate checked for the
    // name localhost.
    for (tls, port, subject) in [
        ("starttls", &smtp, "examples: STARTTLS"),
        ("implicit", &smtps, "examples: implicit TLS"),
    ] {
        let out = run(
            &dir,
            "send_lettre",
            &[
                "--host",
                "localhost",
                "--port",
                port,
                "--tls",
                tls,
                "--ca-file",
                cert,
                "--subject",
                subject,
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // bob reads them back, over each kind of connection.
    let plain = [
        "--port",
        &imap,
        "--user",
        "bob@example.com",
        "--password",
        "bob",
    ];
    let text = read_until(&dir, &plain, "examples: plain on loopback");
    assert!(
        text.contains("folders:") && text.contains("Sent Items"),
        "{text}"
    );
    assert!(text.contains("alice@example.com | examples: plain on loopback"));
    let starttls = [
        "--host",
        "localhost",
        "--port",
        &imap,
        "--tls",
        "starttls",
        "--ca-file",
        cert,
        "--user",
        "bob@example.com",
        "--password",
        "bob",
    ];
    read_until(&dir, &starttls, "examples: STARTTLS");
    let implicit = [
        "--host",
        "localhost",
        "--port",
        &imaps,
        "--tls",
        "implicit",
        "--ca-file",
        cert,
        "--user",
        "bob@example.com",
        "--password",
        "bob",
    ];
    read_until(&dir, &implicit, "examples: implicit TLS");

    // A wrong password is a failure with the reason.
    let out = run(
        &dir,
        "send_lettre",
        &["--port", &smtp, "--password", "wrong"],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("535"),
        "{out:?}"
    );
}
