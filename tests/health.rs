//! `graphgate health` against a running `graphgate demo`, configured the
//! way a container health check is: by `GRAPHGATE_*` variables only. The
//! admin endpoint's readiness and liveness, every listener's greeting
//! (plain and implicit TLS), and each way of being unhealthy with the line
//! that names the setting or command to fix it.

use std::process::{Command, Output, Stdio};

mod support;

use support::{BIN, Proc, banner, field};

/// The demo on free ports, with the admin address the shared helper does
/// not keep.
struct Demo {
    _proc: Proc,
    dir: tempfile::TempDir,
    admin: String,
    smtp: String,
    smtps: String,
    imap: String,
    imaps: String,
    sim: String,
}

fn demo() -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--sim", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args([
            "--smtp",
            "127.0.0.1:0",
            "--imap",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = banner(&mut child, "control");
    let admin = field(&lines, "Admin ");
    let admin = admin
        .strip_prefix("http://")
        .and_then(|a| a.strip_suffix("/healthz"))
        .unwrap_or_else(|| panic!("admin URL {admin}"))
        .to_string();
    let sim = support::url(
        &lines[lines
            .iter()
            .position(|l| l.contains("simulator on"))
            .unwrap()..],
    );
    Demo {
        smtp: field(&lines, "SMTP "),
        smtps: field(&lines, "SMTPS "),
        imap: field(&lines, "IMAP "),
        imaps: field(&lines, "IMAPS "),
        admin,
        sim,
        _proc: Proc(child),
        dir,
    }
}

/// `graphgate health ARGS` with nothing but these variables (every
/// listener variable set, so that no default address reaches some other
/// gateway on this machine).
fn health(vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command.env_clear().arg("health").args(args);
    for key in [
        "GRAPHGATE_ADMIN_LISTEN",
        "GRAPHGATE_SMTP_LISTEN",
        "GRAPHGATE_SMTP_IMPLICIT_TLS_LISTEN",
        "GRAPHGATE_IMAP_LISTEN",
        "GRAPHGATE_IMAP_IMPLICIT_TLS_LISTEN",
    ] {
        command.env(key, "");
    }
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for (k, v) in vars {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exit status 1 and exactly one line on stderr containing every one of
/// `needles`.
fn assert_unhealthy(out: &Output, needles: &[&str]) {
    let (stdout, stderr) = text(out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("unhealthy: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
}

#[test]
fn admin_endpoint_ready_then_not_ready_after_a_sign_out() {
    let demo = demo();
    let vars = [("GRAPHGATE_ADMIN_LISTEN", demo.admin.as_str())];
    let out = health(&vars, &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("healthy: ready: 2 account(s) online") && stdout.contains("/readyz"),
        "{stdout}"
    );

    // bob signs out: the gateway is alive but not ready, and the line says
    // which account and the command that brings it back.
    let logout = Command::new(BIN)
        .args(["logout", "bob@example.com", "--data-dir"])
        .arg(demo.dir.path())
        .output()
        .unwrap();
    assert!(logout.status.success(), "{logout:?}");
    let out = health(&vars, &[]);
    assert_unhealthy(
        &out,
        &[
            "not ready",
            "bob@example.com: OFFLINE",
            "graphgate login bob@example.com",
        ],
    );
    assert!(!text(&out).1.contains("alice"), "{:?}", text(&out).1);

    // Liveness does not care about accounts.
    let out = health(&vars, &["--live"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("healthy: ok") && stdout.contains("/healthz"));
}

#[test]
fn listeners_greet_plain_and_implicit_tls_on_any_address() {
    let demo = demo();
    let out = health(
        &[
            ("GRAPHGATE_SMTP_LISTEN", demo.smtp.as_str()),
            ("GRAPHGATE_SMTP_IMPLICIT_TLS_LISTEN", demo.smtps.as_str()),
            ("GRAPHGATE_IMAP_LISTEN", demo.imap.as_str()),
            ("GRAPHGATE_IMAP_IMPLICIT_TLS_LISTEN", demo.imaps.as_str()),
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for addr in [&demo.smtp, &demo.smtps, &demo.imap, &demo.imaps] {
        assert!(stdout.contains(addr.as_str()), "{addr} in {stdout}");
    }

    // A container's configuration: listen on every address; the check
    // reaches the listener on loopback.
    let any = |addr: &str| addr.replace("127.0.0.1", "0.0.0.0");
    let (smtp, imap) = (any(&demo.smtp), any(&demo.imap));
    let out = health(
        &[
            ("GRAPHGATE_SMTP_LISTEN", smtp.as_str()),
            ("GRAPHGATE_IMAP_LISTEN", imap.as_str()),
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
}

#[test]
fn each_way_of_being_unhealthy_names_its_setting() {
    let demo = demo();

    // Nothing listens: the gateway is not running (or elsewhere).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let out = health(&[("GRAPHGATE_ADMIN_LISTEN", closed.as_str())], &[]);
    assert_unhealthy(
        &out,
        &[
            "nothing answers on the admin endpoint",
            "GRAPHGATE_ADMIN_LISTEN",
            "graphgate serve",
        ],
    );
    let out = health(
        &[
            ("GRAPHGATE_SMTP_LISTEN", closed.as_str()),
            ("GRAPHGATE_IMAP_LISTEN", demo.imap.as_str()),
        ],
        &[],
    );
    assert_unhealthy(
        &out,
        &[
            "nothing answers",
            "GRAPHGATE_SMTP_LISTEN",
            "graphgate serve",
        ],
    );
    assert!(!text(&out).1.contains("GRAPHGATE_IMAP_LISTEN"));

    // Another protocol on the port: the SMTP setting points at IMAP, and
    // the implicit-TLS setting at a plain listener.
    let out = health(
        &[
            ("GRAPHGATE_SMTP_LISTEN", demo.imap.as_str()),
            ("GRAPHGATE_IMAP_IMPLICIT_TLS_LISTEN", demo.smtp.as_str()),
        ],
        &[],
    );
    assert_unhealthy(
        &out,
        &[
            "GRAPHGATE_SMTP_LISTEN",
            "instead of `220`",
            "GRAPHGATE_IMAP_IMPLICIT_TLS_LISTEN",
            "no TLS handshake",
        ],
    );

    // A listener that never greets (the simulator's HTTP port): the check
    // gives up after --timeout and says so.
    let http = demo.sim.trim_start_matches("http://");
    let out = health(&[("GRAPHGATE_IMAP_LISTEN", http)], &["--timeout", "1"]);
    assert_unhealthy(&out, &["GRAPHGATE_IMAP_LISTEN", "no greeting within 1 s"]);

    // An HTTP server that is not graphgate's admin endpoint.
    let out = health(&[("GRAPHGATE_ADMIN_LISTEN", http)], &[]);
    assert_unhealthy(&out, &["404", "GRAPHGATE_ADMIN_LISTEN"]);

    // Nothing configured at all.
    let out = health(&[], &[]);
    assert_unhealthy(&out, &["nothing to check", "GRAPHGATE_ADMIN_LISTEN"]);

    // A malformed address is a configuration error with the variable named.
    let out = health(&[("GRAPHGATE_ADMIN_LISTEN", "localhost")], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("GRAPHGATE_ADMIN_LISTEN"), "{out:?}");
}

/// `graphgate login` of an account that needed sign-in (issue 18): the
/// very first `/readyz` after `login` returns is ready again — the
/// endpoint reads the account's state from the store `login` just wrote,
/// with no poll interval in between.
#[test]
fn readyz_is_ready_at_once_after_login() {
    use std::io::{BufRead, BufReader};
    let demo = demo();
    let vars = [("GRAPHGATE_ADMIN_LISTEN", demo.admin.as_str())];
    let logout = Command::new(BIN)
        .args(["logout", "bob@example.com", "--data-dir"])
        .arg(demo.dir.path())
        .output()
        .unwrap();
    assert!(logout.status.success(), "{logout:?}");
    assert_unhealthy(&health(&vars, &[]), &["bob@example.com: OFFLINE"]);

    let mut login = Command::new(BIN)
        .args(["login", "bob@example.com", "--data-dir"])
        .arg(demo.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(login.stdout.take().unwrap());
    let mut out = String::new();
    let code = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "no code in {out}");
        out.push_str(&line);
        if let Some(code) = line.trim().strip_prefix("Code: ") {
            break code.to_string();
        }
    };
    let approve = Command::new("curl")
        .args([
            "-sf",
            "--noproxy",
            "*",
            "-H",
            "content-type: application/json",
        ])
        .arg("-d")
        .arg(format!(
            r#"{{"user_code": "{code}", "user": "bob@example.com", "approve": true}}"#
        ))
        .arg(format!("{}/_sim/devicelogin", demo.sim))
        .output()
        .unwrap();
    assert!(approve.status.success(), "{approve:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let status = login.wait().unwrap();
    assert!(status.success(), "{out}{rest}");

    let out = health(&vars, &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("healthy: ready: 2 account(s) online"),
        "{stdout}"
    );
}
