//! `graphgate doctor` against `graphgate sim` over HTTP: a clean setup
//! passes (exit 0, `--json` agrees, no token in the output); a planted
//! expired certificate, a certificate that does not match its key, a
//! world-readable key file, a revoked grant and a port taken by another
//! program each FAIL with their fix and a non-zero exit; a running gateway
//! is recognised on its port by its greeting.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::store::{NewAccount, Store, StoreKey};
use serde_json::Value;

mod support;

use support::{BIN, Proc, Sim};

/// A free port on 127.0.0.1 (bound and released).
fn free_addr() -> String {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// A data directory pointing at `sim` with alice signed in, SMTP on
/// `smtp` (everything else off), and `extra` appended to the file.
async fn setup(sim: &Sim, smtp: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), sim, smtp, extra);
    let store = Store::open(dir.path()).unwrap();
    let key = StoreKey::load(dir.path()).unwrap();
    let account = store
        .add_account(&NewAccount::delegated("alice@example.com", "alice"))
        .unwrap();
    let tokens = graphgate::cli::sign_in_via_simulator(&sim.url, "alice@example.com")
        .await
        .unwrap();
    graphgate::account::save_tokens(&store, &key, account.id, &tokens).unwrap();
    dir
}

fn write_config(dir: &Path, sim: &Sim, smtp: &str, extra: &str) {
    let config = format!(
        "data_dir = {data:?}\n\
         [microsoft]\nauthority_url = {url:?}\ngraph_url = {url:?}\n\
         tenant = {DEMO_TENANT_ID:?}\nclient_id = {DEMO_PUBLIC_CLIENT_ID:?}\n\
         [smtp]\nlisten = {smtp:?}\nimplicit_tls_listen = \"\"\n\
         [imap]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n[pop3]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n{extra}",
        data = dir.display().to_string(),
        url = sim.url,
    );
    let path = dir.join("graphgate.toml");
    std::fs::write(&path, config).unwrap();
    chmod(&path, 0o600);
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `graphgate doctor` on `dir` (blocking: the simulator is another process).
fn doctor(dir: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("doctor")
        .args(extra)
        .env_remove("GRAPHGATE_KEY")
        .env_remove("GRAPHGATE_KEY_FILE")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The one line starting with `prefix` (e.g. `FAIL  token key:`).
fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    let found: Vec<&str> = out.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "one {prefix:?} line expected in:\n{out}");
    found[0]
}

fn fails(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("FAIL  ")).collect()
}

#[tokio::test]
async fn a_clean_setup_passes_and_json_agrees() {
    let sim = support::sim(true);
    let dir = setup(&sim, &free_addr(), "").await;
    let out = doctor(dir.path(), &[]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(fails(&shown).is_empty(), "{shown}");
    for prefix in [
        "ok    configuration:",
        "ok    data directory:",
        "ok    token key:",
        "ok    listener smtp.listen:",
        "ok    TLS certificate:",
        "ok    clock:",
        "ok    account alice@example.com token:",
        "ok    account alice@example.com read probe:",
    ] {
        line(&shown, prefix);
    }
    let permissions = line(&shown, "ok    account alice@example.com permissions:");
    assert!(
        permissions.contains("delegated") && permissions.contains("Mail.Send"),
        "{permissions}"
    );

    let out = doctor(dir.path(), &["--json"]);
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.len() >= 10, "{report}");
    assert!(findings.iter().all(|f| f["level"] != "fail"), "{report}");

    // No token, not even in --json: the stored ones are not in the output.
    let store = Store::open(dir.path()).unwrap();
    let key = StoreKey::load(dir.path()).unwrap();
    let account = store.account("alice@example.com").unwrap().unwrap();
    let tokens = graphgate::account::load_tokens(&store, &key, account.id)
        .unwrap()
        .unwrap();
    let both = format!("{shown}{}", text(&out));
    assert!(!both.contains(tokens.access_token.expose().as_str()));
    let refresh = tokens.refresh_token.unwrap();
    assert!(!both.contains(refresh.expose().as_str()));
}

#[tokio::test]
async fn a_world_readable_key_file_fails_with_chmod() {
    let sim = support::sim(true);
    let dir = setup(&sim, "", "").await;
    let key = dir.path().join("graphgate.key");
    chmod(&key, 0o644);
    let out = doctor(dir.path(), &[]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    let fail = line(&shown, "FAIL  token key:");
    assert!(fail.contains("mode 0644"), "{fail}");
    assert!(
        fail.contains(&format!("— fix: chmod 600 {}", key.display())),
        "{fail}"
    );
    assert_eq!(fails(&shown).len(), 1, "{shown}");

    // The same for a key file named by GRAPHGATE_KEY_FILE (a Docker secret).
    chmod(&key, 0o600);
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("graphgate_key");
    std::fs::copy(&key, &secret).unwrap();
    chmod(&secret, 0o604);
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("doctor")
        .env_remove("GRAPHGATE_KEY")
        .env("GRAPHGATE_KEY_FILE", &secret)
        .output()
        .unwrap();
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    let fail = line(&shown, "FAIL  token key:");
    assert!(
        fail.contains(&format!("chmod 600 {}", secret.display())),
        "{fail}"
    );
}

/// A certificate for localhost valid from `from` to `to` (years), signed
/// by `key`, written with `key_pem` as its private key; returns the
/// `[tls]` section naming them.
fn plant_certificate(
    dir: &Path,
    key: &rcgen::KeyPair,
    key_pem: &str,
    valid: Option<(i32, i32)>,
) -> String {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    if let Some((from, to)) = valid {
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
    }
    let cert = params.self_signed(key).unwrap();
    let cert_path = dir.join("planted-cert.pem");
    let key_path = dir.join("planted-key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key_pem).unwrap();
    chmod(&key_path, 0o600);
    format!(
        "[tls]\ncertificate_file = {:?}\nprivate_key_file = {:?}\n",
        cert_path.display().to_string(),
        key_path.display().to_string()
    )
}

#[tokio::test]
async fn planted_bad_certificates_fail_with_their_fix() {
    let sim = support::sim(true);
    let dir = setup(&sim, "", "").await;
    let key = rcgen::KeyPair::generate().unwrap();

    // Expired.
    let tls = plant_certificate(dir.path(), &key, &key.serialize_pem(), Some((2020, 2021)));
    write_config(dir.path(), &sim, "", &tls);
    let out = doctor(dir.path(), &[]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    let fail = line(&shown, "FAIL  TLS certificate:");
    assert!(fail.contains("expired on 2021-01-01"), "{fail}");
    assert!(
        fail.contains("— fix: install a renewed certificate"),
        "{fail}"
    );
    assert_eq!(fails(&shown).len(), 1, "{shown}");

    // Valid, but with another key than the one it was issued for.
    let other = rcgen::KeyPair::generate().unwrap();
    let tls = plant_certificate(dir.path(), &key, &other.serialize_pem(), None);
    write_config(dir.path(), &sim, "", &tls);
    let out = doctor(dir.path(), &[]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    let fail = line(&shown, "FAIL  TLS certificate:");
    assert!(fail.contains("does not match the private key"), "{fail}");
    assert!(
        fail.contains("— fix: pair the certificate with the key"),
        "{fail}"
    );

    // The right pair passes.
    let tls = plant_certificate(dir.path(), &key, &key.serialize_pem(), None);
    write_config(dir.path(), &sim, "", &tls);
    let out = doctor(dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    line(&text(&out), "ok    TLS certificate:");
}

#[tokio::test]
async fn a_revoked_grant_fails_with_the_login_fix() {
    let sim = support::sim(true);
    let dir = setup(&sim, "", "").await;
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/faults", sim.url))
        .json(&serde_json::json!({"revoke_refresh_tokens": true}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let out = doctor(dir.path(), &[]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    let fail = line(&shown, "FAIL  account alice@example.com token:");
    assert!(fail.contains("AADSTS50173"), "{fail}");
    assert!(
        fail.contains("— fix: ") && fail.contains("graphgate login alice@example.com"),
        "{fail}"
    );
    let report: Value = serde_json::from_slice(&doctor(dir.path(), &["--json"]).stdout).unwrap();
    assert_eq!(report["ok"], false);
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "account alice@example.com token")
        .unwrap();
    assert_eq!(finding["level"], "fail");
    assert!(
        finding["fix"]
            .as_str()
            .unwrap()
            .contains("graphgate login alice@example.com")
    );
}

#[tokio::test]
async fn a_port_taken_by_another_program_fails_and_the_gateway_is_recognised() {
    let sim = support::sim(true);
    // Another program on the SMTP port, with its own greeting.
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in squatter.incoming() {
            let Ok(mut stream) = stream else { break };
            let _ = stream.write_all(b"220 mail.example ESMTP Postfix\r\n");
        }
    });
    let dir = setup(&sim, &taken, "").await;
    let out = doctor(dir.path(), &[]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    let fail = line(&shown, "FAIL  listener smtp.listen:");
    assert!(
        fail.contains("another program") && fail.contains("Postfix"),
        "{fail}"
    );
    assert!(fail.contains("GRAPHGATE_SMTP_LISTEN"), "{fail}");

    // graphgate itself on the port, for this data directory: fine.
    let addr = free_addr();
    write_config(dir.path(), &sim, &addr, "");
    let mut gateway = Proc(
        Command::new(BIN)
            .arg("--config")
            .arg(dir.path().join("graphgate.toml"))
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = gateway.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("graphgate is running") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the gateway did not start");
    let out = doctor(dir.path(), &[]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let ok = line(&shown, "ok    listener smtp.listen:");
    assert!(
        ok.contains(&format!("pid {}", gateway.0.id())) && ok.contains("ESMTP graphgate"),
        "{ok}"
    );
    line(&shown, "ok    spool: empty; a running graphgate gateway");
}

#[tokio::test]
async fn an_unknown_configuration_key_fails_before_anything_else() {
    let sim = support::sim(true);
    let dir = setup(&sim, "", "listen_adress = \"127.0.0.1:1143\"\n").await;
    let out = doctor(dir.path(), &[]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    let fail = line(&shown, "FAIL  configuration:");
    assert!(fail.contains("listen_adress"), "{fail}");
    assert!(fail.contains("— fix: "), "{fail}");
}
