//! The container image's configuration path, proven without a Docker
//! engine: the built binary is run exactly as the image's entry point runs
//! it. ENTRYPOINT, CMD, ENV, USER, VOLUME, EXPOSE and HEALTHCHECK are read
//! from the repository's `Dockerfile`, so this test and the image cannot
//! drift apart.
//!
//! What stands in for the container:
//! - the environment is cleared, then holds only the image's `ENV`, the
//!   variables an admin's compose file adds (`GRAPHGATE_KEY_FILE`, the
//!   certificate files, the Microsoft settings — pointed at `graphgate sim`),
//!   `PATH` (a directory holding `graphgate`, as /usr/local/bin does in the
//!   image) and a fresh `HOME`; there is no configuration file;
//! - `/data` is a temporary directory owned by the image's user, the only
//!   writable place; the working directory and `HOME` are read-only;
//! - the image's `USER` (uid 10001): when the test runs as root (CI), the
//!   gateway and every command run with that uid and gid, so file
//!   permissions are enforced as in the container, and afterwards nothing
//!   owned by that uid may exist outside the data directory in /tmp,
//!   /var/tmp or /dev/shm. As any other user the test cannot switch user;
//!   it then runs as itself (permissions are still enforced, the uid is not
//!   the image's) and says so;
//! - the listen ports of the `ENV` are renumbered to free ones, as
//!   `docker run -p` maps them, keeping the addresses (0.0.0.0).
//!
//! What it proves: `serve` starts from the environment alone; the
//! HEALTHCHECK command reports "not ready" with the command to run, then
//! healthy once an account is added and signed in with the device code (as
//! `docker compose run --rm graphgate accounts add …` / `login …` would);
//! that account sends through SMTP with STARTTLS against the mounted
//! certificate; `docker stop` (SIGTERM) ends the gateway cleanly.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};

mod support;

use support::{BIN, Proc, banner};

/// What the final stage of the Dockerfile says about running the image.
#[derive(Debug, Default)]
struct Image {
    env: Vec<(String, String)>,
    user: Option<(u32, u32)>,
    volumes: Vec<String>,
    expose: Vec<u16>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    /// The `RUN` lines of the build stage(s).
    build_runs: Vec<String>,
}

/// The Dockerfile's instructions: continuation lines joined, comments and
/// parser directives dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if !current.is_empty() && trimmed.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (op, rest) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((op.to_ascii_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside an instruction"
    );
    out
}

/// An exec-form (JSON array) argument list; the shell form would put
/// /bin/sh between Docker and graphgate (signals would not reach it).
fn exec_form(what: &str, text: &str) -> Vec<String> {
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{what} must be in exec form [\"…\"]: {text:?}: {e}"))
}

fn dockerfile() -> Image {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile");
    let text = std::fs::read_to_string(&path).unwrap();
    let all = instructions(&text);
    let last_from = all
        .iter()
        .rposition(|(op, _)| op == "FROM")
        .expect("a FROM in the Dockerfile");
    let mut image = Image::default();
    for (op, rest) in &all[..last_from] {
        if op == "RUN" {
            image.build_runs.push(rest.clone());
        }
    }
    for (op, rest) in &all[last_from + 1..] {
        match op.as_str() {
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("ENV in the KEY=value form only: {rest}"));
                    assert!(
                        !v.contains(['"', '\'', '$']),
                        "ENV values are plain words here: {pair}"
                    );
                    image.env.push((k.to_string(), v.to_string()));
                }
            }
            "USER" => {
                let (uid, gid) = rest.split_once(':').unwrap_or((rest, rest));
                image.user = Some((
                    uid.parse().expect("USER as a numeric uid[:gid]"),
                    gid.parse().expect("USER as a numeric uid[:gid]"),
                ));
            }
            "VOLUME" => {
                if rest.starts_with('[') {
                    image.volumes.extend(exec_form("VOLUME", rest));
                } else {
                    image
                        .volumes
                        .extend(rest.split_whitespace().map(str::to_string));
                }
            }
            "EXPOSE" => image.expose.extend(rest.split_whitespace().map(|p| {
                p.trim_end_matches("/tcp")
                    .parse::<u16>()
                    .unwrap_or_else(|_| panic!("EXPOSE {p}"))
            })),
            "ENTRYPOINT" => image.entrypoint = exec_form("ENTRYPOINT", rest),
            "CMD" => image.cmd = exec_form("CMD", rest),
            "HEALTHCHECK" => {
                let cmd = rest
                    .split_once("CMD ")
                    .map(|(_, c)| c)
                    .expect("HEALTHCHECK … CMD […]");
                image.healthcheck = exec_form("HEALTHCHECK CMD", cmd.trim());
            }
            _ => {}
        }
    }
    image
}

fn image_env<'a>(image: &'a Image, key: &str) -> &'a str {
    image
        .env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("the Dockerfile sets no {key}"))
}

#[test]
fn the_dockerfile_describes_a_non_root_image_with_data_in_a_volume() {
    let image = dockerfile();
    assert!(
        image
            .build_runs
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "the build stage builds with --release --locked: {:?}",
        image.build_runs
    );
    let (uid, gid) = image.user.expect("a USER in the final stage");
    assert!(uid != 0 && gid != 0, "the image runs as root");
    assert_eq!(image_env(&image, "GRAPHGATE_DATA_DIR"), "/data");
    assert!(image.volumes.iter().any(|v| v == "/data"), "VOLUME /data");
    assert_eq!(image.entrypoint, ["graphgate"]);
    assert_eq!(image.cmd, ["serve"]);
    assert_eq!(
        image.healthcheck.first().map(String::as_str),
        Some("graphgate")
    );
    assert_eq!(image.healthcheck.get(1).map(String::as_str), Some("health"));
    // Every variable is one graphgate knows (it refuses unknown GRAPHGATE_*
    // variables, so a typo would stop the container).
    for (k, _) in &image.env {
        assert!(
            graphgate::config::KEYS
                .iter()
                .any(|d| graphgate::config::env_name(d.key) == *k)
                || graphgate::config::OTHER_VARIABLES
                    .iter()
                    .any(|(n, _)| n == k),
            "ENV {k} is no graphgate variable"
        );
    }
    // EXPOSE lists exactly the ports listening beyond loopback.
    let mut public: Vec<u16> = image
        .env
        .iter()
        .filter(|(k, _)| k.ends_with("_LISTEN"))
        .filter_map(|(_, v)| v.parse::<std::net::SocketAddr>().ok())
        .filter(|a| !a.ip().is_loopback())
        .map(|a| a.port())
        .collect();
    public.sort_unstable();
    let mut exposed = image.expose.clone();
    exposed.sort_unstable();
    assert_eq!(exposed, public, "EXPOSE and the listen variables differ");
    // The build context keeps what the build needs.
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"))
            .unwrap();
    for needed in ["src", "Cargo.toml", "Cargo.lock", "benches"] {
        assert!(
            !ignore
                .lines()
                .map(|l| l.trim().trim_end_matches('/'))
                .any(|l| l == needed || l == format!("{needed}/**")),
            ".dockerignore leaves out {needed}, which the build needs"
        );
    }
}

/// The effective uid of this process (the owner of a file it creates).
fn effective_uid(dir: &Path) -> u32 {
    let probe = dir.join(".uid-probe");
    std::fs::write(&probe, b"").unwrap();
    let uid = std::fs::metadata(&probe).unwrap().uid();
    std::fs::remove_file(&probe).unwrap();
    uid
}

/// Whether `path` can be reached and executed by any user.
fn world_executable(path: &Path) -> bool {
    path.ancestors().all(|p| {
        p.as_os_str().is_empty()
            || std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    })
}

/// A free port on `host`.
fn free_port(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Files owned by `uid` at most three levels below `roots`, skipping
/// `except`.
fn owned_by(uid: u32, roots: &[&str], except: &[&Path]) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: u32, uid: u32, except: &[&Path], out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if except.iter().any(|e| path.starts_with(e)) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.uid() == uid {
                out.push(path.clone());
            }
            if meta.is_dir() && depth < 3 {
                walk(&path, depth + 1, uid, except, out);
            }
        }
    }
    let mut out = Vec::new();
    for root in roots {
        walk(Path::new(root), 1, uid, except, &mut out);
    }
    out
}

/// The container: its environment, identity and directories.
struct Container {
    env: BTreeMap<String, String>,
    /// (uid, gid) to run as, when this test may switch user.
    user: Option<(u32, u32)>,
    workdir: tempfile::TempDir,
    home: tempfile::TempDir,
    _bin: tempfile::TempDir,
}

impl Container {
    /// `argv[0]` looked up on the container's PATH, as Docker does.
    fn command(&self, argv: &[String]) -> Command {
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env_clear()
            .envs(&self.env)
            .current_dir(self.workdir.path());
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
    }
}

fn wait_with_deadline(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} did not end within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_entry_point_serves_signs_in_and_sends_from_the_environment_alone() {
    let image = dockerfile();
    let (image_uid, image_gid) = image.user.expect("USER");
    let sim = support::sim(true);

    let scratch = tempfile::tempdir().unwrap();
    let running_as = effective_uid(scratch.path());
    let switch = running_as == 0;
    if !switch {
        eprintln!(
            "note: not root (uid {running_as}), so the gateway runs as this user, not as the \
             image's uid {image_uid}; file permissions are still enforced"
        );
    }
    let (uid, gid) = if switch {
        (image_uid, image_gid)
    } else {
        (running_as, std::fs::metadata(scratch.path()).unwrap().gid())
    };
    let chown = |path: &Path| {
        if switch {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
    };

    // /data: the volume, owned by the image's user, mode 0700 (as the
    // Dockerfile creates it).
    let data = tempfile::tempdir().unwrap();
    chown(data.path());
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o700)).unwrap();

    // /run/secrets: the token key and the listeners' certificate, readable
    // by the image's user only.
    let secrets = tempfile::tempdir().unwrap();
    std::fs::set_permissions(secrets.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key: [u8; 32] = rand::random();
    let certified = rcgen::generate_simple_self_signed(vec![
        "graphgate".to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ])
    .unwrap();
    let cert_pem = certified.cert.pem();
    for (name, contents) in [
        ("graphgate_key", hex::encode(key)),
        ("tls_cert.pem", cert_pem.clone()),
        ("tls_key.pem", certified.signing_key.serialize_pem()),
    ] {
        let path = secrets.path().join(name);
        std::fs::write(&path, contents).unwrap();
        chown(&path);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    }

    // /usr/local/bin: `graphgate` on PATH. A copy when the build directory
    // is not reachable by the image's user.
    let bin = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = bin.path().join("graphgate");
    if !switch || world_executable(Path::new(BIN)) {
        std::os::unix::fs::symlink(BIN, &exe).unwrap();
    } else {
        std::fs::copy(BIN, &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // The read-only rest: the working directory and HOME.
    let workdir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    for dir in [workdir.path(), home.path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    }

    // The environment: the image's ENV (with /data and the ports mapped),
    // then what the compose file adds.
    let mut env = BTreeMap::new();
    let mut ports = BTreeMap::new();
    for (k, v) in &image.env {
        let value = if let Some(rest) = v.strip_prefix("/data") {
            format!("{}{rest}", data.path().display())
        } else if k.ends_with("_LISTEN") && !v.is_empty() {
            let (host, port) = v.rsplit_once(':').unwrap();
            let free = free_port(host);
            ports.insert(port.parse::<u16>().unwrap(), free);
            format!("{host}:{free}")
        } else {
            v.clone()
        };
        env.insert(k.clone(), value);
    }
    let secret = |name: &str| secrets.path().join(name).display().to_string();
    for (k, v) in [
        ("GRAPHGATE_KEY_FILE", secret("graphgate_key")),
        ("GRAPHGATE_TLS_CERTIFICATE_FILE", secret("tls_cert.pem")),
        ("GRAPHGATE_TLS_PRIVATE_KEY_FILE", secret("tls_key.pem")),
        ("GRAPHGATE_SMTP_HOSTNAME", "graphgate".to_string()),
        ("GRAPHGATE_MICROSOFT_AUTHORITY_URL", sim.url.clone()),
        ("GRAPHGATE_MICROSOFT_GRAPH_URL", sim.url.clone()),
        ("GRAPHGATE_MICROSOFT_TENANT", DEMO_TENANT_ID.to_string()),
        (
            "GRAPHGATE_MICROSOFT_CLIENT_ID",
            DEMO_PUBLIC_CLIENT_ID.to_string(),
        ),
        ("PATH", bin.path().display().to_string()),
        ("HOME", home.path().display().to_string()),
    ] {
        env.insert(k.to_string(), v);
    }
    let container = Container {
        env,
        user: switch.then_some((uid, gid)),
        workdir,
        home,
        _bin: bin,
    };
    let baseline = if switch {
        owned_by(uid, &["/tmp", "/var/tmp", "/dev/shm"], &[data.path()])
    } else {
        Vec::new()
    };

    // docker run: ENTRYPOINT + CMD.
    let argv: Vec<String> = image.entrypoint.iter().chain(&image.cmd).cloned().collect();
    let mut child = container
        .command(&argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(scratch.path().join("serve.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let serve_pid = child.id();
    let lines = banner(&mut child, "graphgate is running");
    let mut gateway = Proc(child);
    let running = lines.last().unwrap();
    let smtp_port = ports[&2525];
    assert!(
        running.contains(&format!("SMTP 0.0.0.0:{smtp_port}")),
        "{running}"
    );
    assert!(running.contains(&format!("IMAP 0.0.0.0:{}", ports[&1143])));
    assert!(
        running.contains(&format!("admin http://127.0.0.1:{}", ports[&8025])),
        "the banner names the admin endpoint: {running}"
    );

    // HEALTHCHECK, while the admin endpoint comes up: "not ready", with the
    // command that fixes it.
    let health = || {
        let out = container.command(&image.healthcheck).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, _, stderr) = loop {
        let result = health();
        if !result.2.contains("nothing answers") || Instant::now() > deadline {
            break result;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("no account is configured") && stderr.contains("graphgate accounts add"),
        "{stderr}"
    );

    // docker compose run --rm graphgate accounts add alice@example.com
    let mut add: Vec<String> = image.entrypoint.clone();
    add.extend(["accounts", "add", "alice@example.com", "--password-stdin"].map(String::from));
    let mut child = container
        .command(&add)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"app-password\n")
        .unwrap();
    assert!(wait_with_deadline(&mut child, "accounts add").success());

    // docker compose run --rm graphgate login alice@example.com: the device
    // code, approved in the (simulated) browser.
    let mut login: Vec<String> = image.entrypoint.clone();
    login.extend(["login", "alice@example.com"].map(String::from));
    let mut child = container
        .command(&login)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut shown = String::new();
    let code = loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "login showed no code: {shown}"
        );
        shown.push_str(&line);
        if let Some(code) = line.trim().strip_prefix("Code: ") {
            break code.to_string();
        }
    };
    let approved = reqwest::Client::new()
        .post(format!("{}/_sim/devicelogin", sim.url))
        .json(&serde_json::json!({"user_code": code, "user": "alice@example.com", "approve": true}))
        .send()
        .await
        .unwrap();
    assert!(approved.status().is_success(), "{}", approved.status());
    let status = wait_with_deadline(&mut child, "login");
    assert!(status.success(), "login failed: {shown}");

    // Healthy now.
    let (code, stdout, stderr) = health();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("ready: 1 account(s) online"), "{stdout}");
    // And without the admin endpoint, the listeners' greetings on 0.0.0.0.
    let mut argv = image.healthcheck.clone();
    argv.push("--timeout=10".into());
    let out = container
        .command(&argv)
        .env("GRAPHGATE_ADMIN_LISTEN", "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // The application sends: STARTTLS against the mounted certificate,
    // then AUTH PLAIN with the local password.
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let tls = TlsParameters::builder("graphgate".into())
        .add_root_certificate(Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build_rustls()
        .unwrap();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp_port)
        .tls(Tls::Required(tls))
        .credentials(Credentials::new(
            "alice@example.com".into(),
            "app-password".into(),
        ))
        .authentication(vec![Mechanism::Plain])
        .build();
    let message = Message::builder()
        .from("alice@example.com".parse().unwrap())
        .to("bob@example.com".parse().unwrap())
        .subject("from the container entry point")
        .body("sent through graphgate serve, configured by the environment\r\n".to_string())
        .unwrap();
    let response = transport.send(message).await.unwrap();
    assert!(response.is_positive(), "{response:?}");

    // It reached bob's mailbox through Graph.
    let token = support::token(&sim.url, "bob@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list: serde_json::Value = reqwest::Client::new()
            .get(format!(
                "{}/v1.0/me/mailFolders/inbox/messages?$select=subject&$top=50",
                sim.url
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = list["value"].as_array().is_some_and(|v| {
            v.iter()
                .any(|m| m["subject"] == "from the container entry point")
        });
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not in bob's Inbox: {list}; gateway log:\n{}",
            std::fs::read_to_string(scratch.path().join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // docker stop: SIGTERM, and a clean exit.
    let kill = Command::new("kill")
        .args(["-TERM", &serve_pid.to_string()])
        .status();
    if kill.is_ok_and(|s| s.success()) {
        let status = wait_with_deadline(&mut gateway.0, "serve after SIGTERM");
        assert!(status.success(), "serve ended with {status}");
    } else {
        eprintln!("note: no `kill` command here; the graceful stop is not checked");
    }

    // Only /data was written.
    for dir in [container.workdir.path(), container.home.path()] {
        let entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        assert!(entries.is_empty(), "written outside /data: {entries:?}");
    }
    let database = std::fs::metadata(data.path().join("graphgate.sqlite3")).unwrap();
    assert_eq!(
        database.uid(),
        uid,
        "the database belongs to the image's user"
    );
    assert!(
        !data.path().join("graphgate.key").exists(),
        "a key was generated although GRAPHGATE_KEY_FILE was given"
    );
    assert!(
        !data.path().join("tls").exists(),
        "a certificate was generated although one was mounted"
    );
    if switch {
        let stray: Vec<_> = owned_by(uid, &["/tmp", "/var/tmp", "/dev/shm"], &[data.path()])
            .into_iter()
            .filter(|p| !baseline.contains(p))
            .collect();
        assert!(stray.is_empty(), "written outside /data: {stray:?}");
    }
}
