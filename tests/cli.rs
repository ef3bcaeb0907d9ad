//! The binary as a user runs it: `graphgate --help`, `config example`, and
//! `graphgate demo` answering on its simulator and admin ports.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

fn graphgate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_graphgate"));
    cmd.env_remove("RUST_LOG");
    for (name, _) in std::env::vars() {
        if name.starts_with("GRAPHGATE_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

#[test]
fn help_documents_every_subcommand() {
    let out = graphgate().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for command in ["demo", "serve", "sim", "config"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(command) && l.len() > command.len() + 5),
            "`{command}` is not documented in --help:\n{text}"
        );
    }
    let out = graphgate().args(["demo", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--smtp",
        "--relay",
        "--imap",
        "--sim",
        "--admin",
        "--data-dir",
    ] {
        assert!(text.contains(flag), "demo --help lacks {flag}:\n{text}");
    }
    for default in [
        "127.0.0.1:2525",
        "127.0.0.1:1143",
        "127.0.0.1:8787",
        "127.0.0.1:8025",
    ] {
        assert!(
            text.contains(default),
            "demo --help lacks {default}:\n{text}"
        );
    }
}

#[test]
fn config_example_is_complete_and_check_reads_it_back() {
    let out = graphgate().args(["config", "example"]).output().unwrap();
    assert!(out.status.success());
    let example = String::from_utf8(out.stdout).unwrap();
    assert!(example.contains("[microsoft]"));
    assert!(example.contains("GRAPHGATE_ADMIN_LISTEN"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graphgate.toml");
    graphgate::config::write_private_file(&path, example.as_bytes()).unwrap();
    let out = graphgate()
        .args(["--config", path.to_str().unwrap(), "config", "check"])
        .env("GRAPHGATE_MICROSOFT_TENANT", "contoso.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("tenant = \"contoso.com\"")
    );

    // What `serve` refuses, `config check` refuses too (issue 18): a file
    // others may read, and a value outside a key's choices.
    let open = dir.path().join("open.toml");
    std::fs::write(&open, &example).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        for command in [&["config", "check"][..], &["serve"][..]] {
            let out = graphgate()
                .arg("--config")
                .arg(&open)
                .args(command)
                .output()
                .unwrap();
            assert!(!out.status.success(), "{command:?} passed a 0644 file");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("chmod 600"), "{command:?}: {err}");
        }
    }
    let pretty = dir.path().join("pretty.toml");
    graphgate::config::write_private_file(
        &pretty,
        format!("data_dir = {:?}\n[log]\nformat = \"pretty\"\n", dir.path()).as_bytes(),
    )
    .unwrap();
    let out = graphgate()
        .arg("--config")
        .arg(&pretty)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "config check passed log.format = pretty"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("log.format") && err.contains("text or json"),
        "{err}"
    );

    // A misspelt variable is refused with the way to find the right name.
    let out = graphgate()
        .args(["config", "check"])
        .env("GRAPHGATE_MICROSOFT_TENNANT", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("GRAPHGATE_MICROSOFT_TENNANT") && err.contains("config example"),
        "{err}"
    );
}

/// A running `graphgate demo` and the addresses it printed.
struct Demo {
    child: Child,
    sim: String,
    admin: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `graphgate demo` on free loopback ports with its state in `data_dir`,
/// the banner on a pipe.
fn demo_command(data_dir: &std::path::Path) -> Command {
    let mut command = graphgate();
    command
        .args(["demo", "--sim", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--smtp", "127.0.0.1:0", "--imap", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped());
    command
}

fn start_demo(data_dir: &std::path::Path) -> Demo {
    let mut child = demo_command(data_dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut sim = None;
    let mut admin = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("Admin") {
            admin = rest
                .split_whitespace()
                .next()
                .map(|u| u.trim_end_matches("/healthz").to_string());
        }
        if let Some(rest) = line.strip_prefix("Microsoft Graph + Entra ID simulator on ") {
            sim = Some(rest.trim().to_string());
        }
        if line.trim_start().starts_with("control") {
            break;
        }
    }
    Demo {
        child,
        sim: sim.expect("demo printed the simulator address"),
        admin: admin.expect("demo printed the admin address"),
    }
}

fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl is installed (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn demo_signs_both_accounts_in_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(dir.path());

    let (code, body) = get(&format!("{}/healthz", demo.admin));
    assert_eq!((code, body.trim()), (200, "ok"));

    // Both accounts were signed in with real tokens from the simulator
    // before the demo printed its banner.
    let ready = get(&format!("{}/readyz", demo.admin));
    assert_eq!(ready.0, 200, "readyz: {}", ready.1);
    assert!(ready.1.contains("2 account(s) online"), "{}", ready.1);

    // The simulator saw the token requests of that sign-in.
    let (code, stats) = get(&format!("{}/_sim/stats", demo.sim));
    assert_eq!(code, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(stats["requests"].as_u64().unwrap() >= 2, "{stats}");
    let token_requests: u64 = stats["by_route"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(route, _)| route.contains("/oauth2/v2.0/token"))
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum();
    assert!(token_requests >= 2, "{stats}");

    let (code, metrics) = get(&format!("{}/metrics", demo.admin));
    assert_eq!(code, 200);
    assert!(
        metrics.contains("graphgate_accounts{state=\"online\"} 2"),
        "{metrics}"
    );
}

#[test]
fn accounts_are_managed_from_the_command_line() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut child = graphgate()
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    // Before any database exists, read commands say where to point them.
    let (ok, _, err) = run(&["accounts", "list"], "");
    assert!(!ok);
    assert!(err.contains("--data-dir"), "{err}");

    let (ok, out, err) = run(
        &[
            "accounts",
            "add",
            "scanner",
            "--mailbox",
            "alice@example.com",
            "--alias",
            "scans@example.com",
            "--password-stdin",
        ],
        "s3cret\n",
    );
    assert!(ok, "{err}");
    assert!(out.contains("graphgate login scanner"), "{out}");

    let (ok, _, err) = run(
        &[
            "accounts",
            "add",
            "scanner",
            "--mailbox",
            "alice@example.com",
            "--password-stdin",
        ],
        "x\n",
    );
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");

    // Without a terminal and without --password-stdin, the command says so.
    let (ok, _, err) = run(&["accounts", "add", "other@example.com"], "");
    assert!(!ok);
    assert!(err.contains("--password-stdin"), "{err}");

    let (ok, out, _) = run(&["accounts", "list", "--json"], "");
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["login"], "scanner");
    assert_eq!(list[0]["mailbox"], "alice@example.com");
    assert_eq!(list[0]["aliases"][0], "scans@example.com");
    assert_eq!(list[0]["state"], "offline");

    // The password is stored as an Argon2id hash, not in clear.
    let db = std::fs::read(dir.path().join("graphgate.sqlite3")).unwrap();
    assert!(!db.windows(6).any(|w| w == b"s3cret"));

    let (ok, _, err) = run(
        &["accounts", "passwd", "scanner", "--password-stdin"],
        "n3w\n",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["accounts", "remove", "scanner"], "");
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["accounts", "remove", "scanner"], "");
    assert!(!ok);
    assert!(err.contains("accounts list"), "{err}");
}

/// Started under an open-file limit too low for its listeners, the
/// gateway says so, with the limit, what it needs and what to change.
#[test]
fn a_low_open_file_limit_is_reported_with_what_to_change() {
    use std::io::Read as _;
    use std::os::unix::process::CommandExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mut command = demo_command(dir.path());
    command.stderr(Stdio::piped());
    // SAFETY: setrlimit between fork and exec touches only the struct given.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 300,
                rlim_max: 300,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    // The warning comes before the listeners, so before the banner's end.
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        if line.unwrap().trim_start().starts_with("control") {
            break;
        }
    }
    child.kill().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let _ = child.wait();
    // 2 x 1024 SMTP + 2 x 1024 IMAP + 2 x 256 POP3 + 64.
    assert!(
        log.contains("the open-file limit is 300, below the 4672 descriptors")
            && log.contains("ulimit -n")
            && log.contains("smtp.max_connections"),
        "{log}"
    );
}

/// GET requests of Graph's folder listing the simulator has answered.
fn folder_listings(sim: &str) -> u64 {
    let (code, stats) = get(&format!("{sim}/_sim/stats"));
    assert_eq!(code, 200, "{stats}");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    stats["by_route"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(route, _)| route.starts_with("GET ") && route.ends_with("/mailFolders"))
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum()
}

/// `[graph]` reaches every command through the one composition root
/// (`gateway::Runtime`): with every Graph request answered 503 (the
/// simulator's `error_rate`), `graphgate status` sends each account's
/// folder listing 1 + `graph.max_retries` times — counted by the
/// simulator, not by graphgate. On main the key did not exist (the
/// variable was refused as unknown) and the retries were fixed at 4.
#[test]
fn the_graph_retry_setting_takes_effect_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(dir.path());
    let out = Command::new("curl")
        .args([
            "-s",
            "-f",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
        ])
        .args(["-d", r#"{"error_rate": 1.0, "retry_after_s": 0}"#])
        .arg(format!("{}/_sim/faults", demo.sim))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = |retries: Option<&str>| {
        let before = folder_listings(&demo.sim);
        let mut command = graphgate();
        command
            .arg("--data-dir")
            .arg(dir.path())
            .args(["status", "--json"]);
        if let Some(n) = retries {
            command.env("GRAPHGATE_GRAPH_MAX_RETRIES", n);
        }
        let out = command.output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("status --json: {}", String::from_utf8_lossy(&out.stderr)));
        // Graph's 503 is the reason each account gives.
        for account in json["accounts"].as_array().unwrap() {
            let error = account["error"].as_str().unwrap_or_default();
            assert!(error.contains("serviceNotAvailable"), "{json}");
        }
        folder_listings(&demo.sim) - before
    };
    // Two accounts (alice, bob), each 1 + max_retries attempts.
    assert_eq!(status(Some("2")), 2 * 3);
    assert_eq!(status(Some("0")), 2);
    // Microsoft's default: 4 retries.
    assert_eq!(status(None), 2 * 5);
}

/// `graphgate accounts list | head` (issue 18): a reader that went away
/// before graphgate wrote is no panic and no failure. The pipe's read end
/// is closed before the process starts, so its first write meets EPIPE.
#[test]
fn accounts_list_into_a_closed_pipe_does_not_panic() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut add = graphgate()
        .arg("--data-dir")
        .arg(dir.path())
        .args(["accounts", "add", "alice@example.com", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"alice\n").unwrap();
    assert!(add.wait().unwrap().success());
    for json in [false, true] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut command = graphgate();
        command
            .arg("--data-dir")
            .arg(dir.path())
            .args(["accounts", "list"]);
        if json {
            command.arg("--json");
        }
        let out = command
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.status.success(), "{:?}: {err}", out.status);
    }
}

/// `config example` (issue 18): the data directory of whoever runs it
/// (root's home, for a system configuration) is not written into the
/// file; and the port-in-use advice of `serve` names its setting, not a
/// flag `serve` lacks.
#[test]
fn config_example_has_no_home_directory_and_port_advice_fits_serve() {
    let out = graphgate()
        .args(["config", "example"])
        .env("HOME", "/home/someone")
        .env("XDG_DATA_HOME", "/home/someone/.local/share")
        .output()
        .unwrap();
    let example = String::from_utf8(out.stdout).unwrap();
    assert!(!example.contains("/home/someone"), "{example}");
    assert!(
        example.contains("# data_dir = \"/var/lib/graphgate\""),
        "{example}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = {:?}\n[smtp]\nlisten = \"{}\"\nimplicit_tls_listen = \"\"\n\
         [imap]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n",
        dir.path().join("data"),
        taken.local_addr().unwrap()
    );
    let path = dir.path().join("graphgate.toml");
    graphgate::config::write_private_file(&path, config.as_bytes()).unwrap();
    let out = graphgate()
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("choose another address with smtp.listen"),
        "{err}"
    );
    assert!(!err.contains("or --smtp"), "serve has no --smtp: {err}");
}
