//! Secrets at rest and in output: configuration and key files others can
//! read are refused with the chmod that fixes them; `graphgate keys rotate`
//! re-seals every token with a new key (also finishing an interrupted
//! rotation, and with an operator's key from GRAPHGATE_KEY_FILE); and a
//! demo logging at trace level, protocol trace on, never prints a password,
//! an AUTH payload, a token or the store key.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use graphgate::spool::owner::{OwnerRole, SpoolOwner};
use graphgate::store::{NewAccount, Store, StoreKey};

mod support;

use support::{BIN, Proc, demo_command, py};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `graphgate ARGS` on `dir`, without any key variable of ours.
fn graphgate(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("GRAPHGATE_KEY")
        .env_remove("GRAPHGATE_KEY_FILE")
        .env_remove("GRAPHGATE_CONFIG");
    c
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A configuration with every listener off and Microsoft at a closed
/// local port, for `serve` and `doctor` to reach nothing.
fn quiet_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("graphgate.toml");
    let text = format!(
        "data_dir = {:?}\n[microsoft]\nauthority_url = \"http://127.0.0.1:9\"\n\
         graph_url = \"http://127.0.0.1:9\"\n[smtp]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n\
         [imap]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n[pop3]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n",
        dir.display().to_string()
    );
    graphgate::config::write_private_file(&path, text.as_bytes()).unwrap();
    path
}

#[test]
fn serve_refuses_a_configuration_file_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = quiet_config(dir.path());
    chmod(&config, 0o644);
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("mode 0644"), "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", config.display())),
        "{err}"
    );
    // Nothing was created on the strength of it.
    assert!(!dir.path().join("graphgate.sqlite3").exists());
}

#[test]
fn a_key_file_others_can_read_is_refused_where_it_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let config = quiet_config(dir.path());
    // The data directory's key file.
    let key = StoreKey::load(dir.path()).unwrap();
    let key_file = dir.path().join("graphgate.key");
    chmod(&key_file, 0o640);
    let out = graphgate(dir.path(), &["--config", config.to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", key_file.display())),
        "{err}"
    );
    // A key file named by GRAPHGATE_KEY_FILE (a Docker secret).
    chmod(&key_file, 0o600);
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("graphgate_key");
    std::fs::write(&secret, key.to_hex().expose()).unwrap();
    chmod(&secret, 0o604);
    let out = graphgate(dir.path(), &["--config", config.to_str().unwrap(), "serve"])
        .env("GRAPHGATE_KEY_FILE", &secret)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("GRAPHGATE_KEY_FILE"), "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", secret.display())),
        "{err}"
    );
}

/// A data directory with one account whose tokens are sealed with the
/// generated key; returns the key's bytes.
fn sealed_store(dir: &Path, tokens: &[u8]) -> [u8; 32] {
    let store = Store::open(dir).unwrap();
    let key = StoreKey::load(dir).unwrap();
    let account = store
        .add_account(&NewAccount::delegated("alice@example.com", "alice"))
        .unwrap();
    store.put_tokens(account.id, &key, tokens, None).unwrap();
    key_bytes(&dir.join("graphgate.key"))
}

fn key_bytes(path: &Path) -> [u8; 32] {
    StoreKey::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// alice's tokens opened with `key`.
fn open_with(dir: &Path, key: &StoreKey) -> Result<Vec<u8>, String> {
    let store = Store::open(dir).unwrap();
    let account = store.account("alice@example.com").unwrap().unwrap();
    store
        .tokens(account.id, key)
        .map(|t| t.unwrap().expose().clone())
        .map_err(|e| e.to_string())
}

#[test]
fn keys_rotate_reseals_every_token_with_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = br#"{"access_token":"at","refresh_token":"rt"}"#;
    let old = sealed_store(dir.path(), tokens);
    let key_file = dir.path().join("graphgate.key");

    // Not while a gateway owns the data directory.
    let owner = SpoolOwner::try_acquire(dir.path(), OwnerRole::Gateway)
        .unwrap()
        .unwrap();
    let out = graphgate(dir.path(), &["keys", "rotate"]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Stop it"), "{}", stderr(&out));
    assert_eq!(key_bytes(&key_file), old, "nothing changed");
    drop(owner);

    let out = graphgate(dir.path(), &["keys", "rotate"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let new = key_bytes(&key_file);
    assert_ne!(new, old);
    assert_eq!(mode(&key_file), 0o600);
    assert!(!dir.path().join("graphgate.key.old").exists());
    assert!(!dir.path().join("graphgate.key.new").exists());
    // The new key opens the tokens (as every command loads it), the old
    // one no longer does.
    let loaded = StoreKey::load(dir.path()).unwrap();
    assert_eq!(open_with(dir.path(), &loaded).unwrap(), tokens);
    assert_eq!(
        open_with(dir.path(), &StoreKey::from_bytes(new)).unwrap(),
        tokens
    );
    assert!(open_with(dir.path(), &StoreKey::from_bytes(old)).is_err());
}

#[test]
fn an_interrupted_rotation_still_opens_everything_and_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = b"sealed before the rotation";
    let old = sealed_store(dir.path(), tokens);
    let key_file = dir.path().join("graphgate.key");
    // The state after step 2 of a rotation (new key installed, old key
    // kept as .old) and before its re-sealing committed.
    let old_file = dir.path().join("graphgate.key.old");
    std::fs::copy(&key_file, &old_file).unwrap();
    chmod(&old_file, 0o600);
    let installed: [u8; 32] = rand::random();
    graphgate::config::write_private_file(&key_file, hex::encode(installed).as_bytes()).unwrap();
    let loaded = StoreKey::load(dir.path()).unwrap();
    assert_eq!(loaded.id(), StoreKey::from_bytes(installed).id());
    assert_eq!(open_with(dir.path(), &loaded).unwrap(), tokens);

    // doctor says so and how to finish it (nothing to reach: the
    // configuration points at a closed local port).
    let config = quiet_config(dir.path());
    let out = graphgate(
        dir.path(),
        &["--config", config.to_str().unwrap(), "doctor"],
    )
    .output()
    .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("warn  token key:") && l.contains("keys rotate")),
        "{shown}"
    );

    // The next rotation finishes it, then rotates.
    let out = graphgate(dir.path(), &["keys", "rotate"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert!(!old_file.exists());
    let final_key = StoreKey::load(dir.path()).unwrap();
    assert_eq!(open_with(dir.path(), &final_key).unwrap(), tokens);
    for gone in [old, installed] {
        assert!(open_with(dir.path(), &StoreKey::from_bytes(gone)).is_err());
    }
}

#[test]
fn an_external_key_is_rotated_only_with_the_new_key_given() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = b"external";
    let old = sealed_store(dir.path(), tokens);
    std::fs::remove_file(dir.path().join("graphgate.key")).unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let current = secrets.path().join("graphgate_key");
    graphgate::config::write_private_file(&current, hex::encode(old).as_bytes()).unwrap();

    let out = graphgate(dir.path(), &["keys", "rotate"])
        .env("GRAPHGATE_KEY_FILE", &current)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("GRAPHGATE_KEY_FILE") && err.contains("--new-key-file"),
        "{err}"
    );
    assert_eq!(
        open_with(dir.path(), &StoreKey::from_bytes(old)).unwrap(),
        tokens
    );

    let next = secrets.path().join("new.key");
    let new: [u8; 32] = rand::random();
    graphgate::config::write_private_file(&next, hex::encode(new).as_bytes()).unwrap();
    let out = graphgate(dir.path(), &["keys", "rotate", "--new-key-file"])
        .arg(&next)
        .env("GRAPHGATE_KEY_FILE", &current)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("GRAPHGATE_KEY_FILE"));
    assert_eq!(
        open_with(dir.path(), &StoreKey::from_bytes(new)).unwrap(),
        tokens
    );
    assert!(open_with(dir.path(), &StoreKey::from_bytes(old)).is_err());
    // graphgate wrote no key file of its own.
    assert!(!dir.path().join("graphgate.key").exists());
    assert_eq!(key_bytes(&current), old);
}

/// Poll `path` until it contains `what`.
fn wait_for(path: &Path, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {what:?} in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn trace_logs_never_show_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out_log = dir.path().join("stdout.log");
    let err_log = dir.path().join("stderr.log");
    let child = demo_command(&data)
        .args(["--log-level", "trace", "--trace-protocol"])
        .env("RUST_LOG", "trace")
        .env_remove("GRAPHGATE_KEY")
        .env_remove("GRAPHGATE_KEY_FILE")
        .stdout(Stdio::from(std::fs::File::create(&out_log).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_log).unwrap()))
        .spawn()
        .unwrap();
    let demo = Proc(child);
    let banner = wait_for(&out_log, "control");
    let lines: Vec<String> = banner.lines().map(str::to_string).collect();
    let smtp = support::field(&lines, "SMTP ");
    let imap = support::field(&lines, "IMAP ");
    let (host, port) = smtp.rsplit_once(':').unwrap();
    let (ihost, iport) = imap.rsplit_once(':').unwrap();
    // The demo wrote its configuration for other users' eyes only.
    assert_eq!(mode(&data.join("graphgate.toml")), 0o600);

    // SMTP AUTH PLAIN and LOGIN + a message; IMAP LOGIN, AUTHENTICATE
    // PLAIN and FETCH; one wrong password (logged as a failure).
    py(&format!(
        "import smtplib, imaplib, time\n\
         s = smtplib.SMTP('{host}', {port})\n\
         s.login('alice@example.com', 'alice')\n\
         s.sendmail('alice@example.com', ['bob@example.com'], \
         'From: alice@example.com\\r\\nTo: bob@example.com\\r\\nSubject: traced\\r\\n\\r\\nhello\\r\\n')\n\
         s.quit()\n\
         s = smtplib.SMTP('{host}', {port})\n\
         s.ehlo()\n\
         s.user, s.password = 'alice@example.com', 'alice'\n\
         s.auth('LOGIN', s.auth_login, initial_response_ok=False)\n\
         s.quit()\n\
         s = smtplib.SMTP('{host}', {port})\n\
         try:\n    s.login('bob@example.com', 'hunter2-wrong')\n\
         except smtplib.SMTPAuthenticationError:\n    pass\n\
         c = imaplib.IMAP4('{ihost}', {iport})\n\
         c.login('bob@example.com', 'bob')\n\
         c.select('INBOX')\n\
         for _ in range(100):\n\
         \x20   typ, data = c.search(None, 'ALL')\n\
         \x20   if data[0]: break\n\
         \x20   time.sleep(0.1); c.noop()\n\
         c.fetch(data[0].split()[-1], '(RFC822)')\n\
         c.logout()\n\
         c = imaplib.IMAP4('{ihost}', {iport})\n\
         c.authenticate('PLAIN', lambda _: b'\\0alice@example.com\\0alice')\n\
         c.logout()\n"
    ));
    wait_for(&err_log, "message delivered to Microsoft Graph");
    wait_for(&err_log, "smtp authentication failed");
    drop(demo);

    let store = Store::open(&data).unwrap();
    let key_hex = std::fs::read_to_string(data.join("graphgate.key"))
        .unwrap()
        .trim()
        .to_string();
    let key = StoreKey::load(&data).unwrap();
    let mut secrets = vec![
        // Passwords as LOGIN sends them and in AUTH payloads.
        "alice@example.com alice".to_string(),
        "\"alice\"".to_string(),
        "bob@example.com bob".to_string(),
        "hunter2-wrong".to_string(),
        "AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl".to_string(),
        "AGJvYkBleGFtcGxlLmNvbQBib2I=".to_string(),
        // AUTH LOGIN's base64 password lines: "alice".
        "YWxpY2U=".to_string(),
        // Any JWT, the store key.
        "eyJ".to_string(),
        key_hex.clone(),
        key_hex.to_uppercase(),
    ];
    for login in ["alice@example.com", "bob@example.com"] {
        let account = store.account(login).unwrap().unwrap();
        let tokens = graphgate::account::load_tokens(&store, &key, account.id)
            .unwrap()
            .unwrap();
        secrets.push(tokens.access_token.expose().clone());
        secrets.push(tokens.refresh_token.unwrap().expose().clone());
    }
    let stdout = std::fs::read_to_string(&out_log).unwrap();
    let stderr = std::fs::read_to_string(&err_log).unwrap();
    assert!(
        stderr.contains("graphgate::wire"),
        "the protocol trace is on"
    );
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        for secret in &secrets {
            if let Some(at) = text.find(secret.as_str()) {
                let from = text[..at].rfind('\n').map_or(0, |n| n + 1);
                let to = text[at..].find('\n').map_or(text.len(), |n| at + n);
                panic!(
                    "a secret ({} chars) in {name}: {}",
                    secret.len(),
                    &text[from..to]
                );
            }
        }
    }
}
