//! An account Entra signed out stays OFFLINE across a restart of
//! `graphgate serve` (issue 22, item 8): the restarted gateway neither
//! trusts the access token it cached before (Entra honours it until it
//! expires, though the grant is gone) nor forgets the AADSTS reason, and
//! SMTP refuses the account's mail with `451 4.7.0` naming it and
//! `graphgate login`, never "Graph is busy"; `graphgate status` does not
//! report or make it ONLINE either. A real `graphgate login`
//! (device code, approved at the simulator) brings it back.
//!
//! The simulator runs on its own (`graphgate sim`) so that it outlives the
//! gateway, which is stopped and started again on one data directory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::store::{NewAccount, Store, StoreKey};

mod support;

use support::{BIN, Proc, Sim, banner};

const ALICE: &str = "alice@example.com";

/// A data directory whose configuration points at `sim`, SMTP and the
/// admin endpoint on free ports, nothing else listening; alice signed in.
async fn data_dir(sim: &Sim) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = {data:?}\n\
         [microsoft]\nauthority_url = {url:?}\ngraph_url = {url:?}\n\
         tenant = {DEMO_TENANT_ID:?}\nclient_id = {DEMO_PUBLIC_CLIENT_ID:?}\n\
         [smtp]\nlisten = \"127.0.0.1:0\"\nimplicit_tls_listen = \"\"\n\
         [imap]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n[pop3]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n",
        data = dir.path().display().to_string(),
        url = sim.url,
    );
    graphgate::config::write_private_file(&dir.path().join("graphgate.toml"), config.as_bytes())
        .unwrap();
    let store = Store::open(dir.path()).unwrap();
    let account = store
        .add_account(&NewAccount::delegated(ALICE, "alice"))
        .unwrap();
    let tokens = graphgate::cli::sign_in_via_simulator(&sim.url, ALICE)
        .await
        .unwrap();
    let key = StoreKey::load(dir.path()).unwrap();
    graphgate::account::save_tokens(&store, &key, account.id, &tokens).unwrap();
    dir
}

/// A running `graphgate serve`: its SMTP address and admin URL.
struct Gateway {
    _proc: Proc,
    smtp: String,
    admin: String,
}

/// `graphgate serve` on `dir`, once its banner says it runs (after the
/// start-up check of every account).
fn serve(dir: &Path, env: &[(&str, &str)]) -> Gateway {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(dir.join("graphgate.toml"))
        .arg("serve")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = banner(&mut child, "graphgate is running");
    let line = lines.last().unwrap().clone();
    let part = |label: &str| {
        line.split(" · ")
            .find_map(|p| p.trim().strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in {line}"))
            .trim()
            .to_string()
    };
    let smtp = part("graphgate is running. SMTP ");
    Gateway {
        smtp,
        admin: part("admin "),
        _proc: Proc(child),
    }
}

async fn readyz(admin: &str) -> (u16, String) {
    let r = reqwest::get(format!("{admin}/readyz")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Poll /readyz until it answers `status`.
async fn wait_ready(admin: &str, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (got, text) = readyz(admin).await;
        if got == status {
            return text;
        }
        assert!(Instant::now() < deadline, "/readyz stays {got}: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One message from alice through Python's smtplib: `(code, text)` of
/// the first refusal, or of the reply to the message data.
fn send(smtp: &str, subject: &str) -> (u16, String) {
    let (host, port) = smtp.rsplit_once(':').unwrap();
    let script = r#"
import smtplib, sys
host, port, subject = sys.argv[1], int(sys.argv[2]), sys.argv[3]
msg = "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: %s\r\n\r\nhi\r\n" % subject
s = smtplib.SMTP(host, port, timeout=60)
s.login("alice@example.com", "alice")
def reply():
    for step in (lambda: s.mail("alice@example.com"), lambda: s.rcpt("bob@example.com")):
        code, text = step()
        if code != 250:
            return code, text
    return s.data(msg)
code, text = reply()
print(code, text.decode().replace("\n", " "))
s.quit()
"#;
    let out = Command::new(support::python())
        .args(["-c", script, host, port, subject])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, text) = stdout.split_once(' ').unwrap();
    (code.parse().unwrap(), text.to_string())
}

/// `graphgate login alice@example.com` by device code, approved at the
/// simulator as an admin would in a browser.
fn device_login(sim: &Sim, dir: &Path) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(dir.join("graphgate.toml"))
        .args(["login", ALICE])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    let code = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "no code in {out}");
        out.push_str(&line);
        if let Some(code) = line.trim().strip_prefix("Code: ") {
            break code.to_string();
        }
    };
    let approve = std::thread::spawn({
        let url = sim.url.clone();
        move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                reqwest::Client::new()
                    .post(format!("{url}/_sim/devicelogin"))
                    .json(&serde_json::json!({"user_code": code, "user": ALICE, "approve": true}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        }
    });
    assert!(approve.join().unwrap().is_success());
    std::io::Read::read_to_string(&mut reader, &mut out).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Was: the restarted gateway proved alice with the access token it had
/// cached, marked her ONLINE, and /readyz said ready until the hourly
/// check; SMTP took her mail with "Graph is busy, the spool will retry".
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_grant_stays_offline_across_a_restart_until_login() {
    let sim = support::sim(true);
    let dir = data_dir(&sim).await;

    // First life: the grant is proven every second here.
    let gw = serve(dir.path(), &[("GRAPHGATE_MICROSOFT_TOKEN_CHECK_S", "1")]);
    wait_ready(&gw.admin, 200).await;
    // Entra revokes alice's refresh tokens (revokeSignInSessions); her
    // access token stays valid until it expires, as at Microsoft.
    sim.control(
        reqwest::Method::POST,
        "/_sim/revoke",
        Some(serde_json::json!({"user": ALICE})),
    )
    .await;
    let text = wait_ready(&gw.admin, 503).await;
    assert!(text.contains("alice@example.com: OFFLINE"), "{text}");
    assert!(text.contains("AADSTS50173"), "{text}");
    let (code, reply) = send(&gw.smtp, "while offline");
    assert_eq!(code, 451, "{reply}");
    drop(gw);

    // Second life, on the same data directory, with the default (hourly)
    // check: right after start-up alice is still OFFLINE, for the reason
    // Entra gave.
    let gw = serve(dir.path(), &[]);
    let (status, text) = readyz(&gw.admin).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("alice@example.com: OFFLINE"), "{text}");
    assert!(text.contains("AADSTS50173"), "{text}");
    assert!(text.contains("graphgate login alice@example.com"), "{text}");
    // `graphgate status` (another process, the same store) asks Entra too,
    // and neither reports her ONLINE nor makes her so.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("graphgate.toml"))
        .args(["status", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!out.status.success(), "{json}");
    assert_eq!(json["accounts"][0]["state"], "offline", "{json}");
    let error = json["accounts"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("AADSTS50173"), "{json}");
    let (status, text) = readyz(&gw.admin).await;
    assert_eq!(status, 503, "after `graphgate status`: {text}");
    let (code, reply) = send(&gw.smtp, "after restart");
    assert_eq!(code, 451, "{reply}");
    assert!(reply.starts_with("4.7.0 alice@example.com"), "{reply}");
    assert!(
        reply.contains("graphgate login alice@example.com"),
        "{reply}"
    );
    assert!(reply.contains("AADSTS50173"), "{reply}");
    assert!(!reply.contains("busy"), "{reply}");
    // Nothing was spooled while she was out: the clients keep their mail.
    assert!(
        Store::open(dir.path())
            .unwrap()
            .spool_list(None, None)
            .unwrap()
            .is_empty()
    );

    // The admin signs alice in again; the running gateway takes her mail.
    device_login(&sim, dir.path());
    let text = wait_ready(&gw.admin, 200).await;
    assert!(text.starts_with("ready"), "{text}");
    let (code, reply) = send(&gw.smtp, "after login");
    assert_eq!(code, 250, "{reply}");
}

/// A message accepted while alice was ONLINE, whose first attempt finds her
/// grant dead, keeps its 250 (it is durable and waits in the spool for a
/// login) but the reply names her and the fix; her next message is refused
/// until then. Was: "250 … Graph is busy, the spool will retry", and the
/// next one the same.
#[tokio::test(flavor = "multi_thread")]
async fn a_grant_found_dead_while_sending_is_named_in_the_reply() {
    let sim = support::sim(true);
    let dir = data_dir(&sim).await;
    let gw = serve(dir.path(), &[]);
    wait_ready(&gw.admin, 200).await;
    sim.control(
        reqwest::Method::POST,
        "/_sim/revoke",
        Some(serde_json::json!({"user": ALICE})),
    )
    .await;
    sim.control(reqwest::Method::POST, "/_sim/expire_access_tokens", None)
        .await;
    let (code, reply) = send(&gw.smtp, "found dead");
    assert_eq!(code, 250, "{reply}");
    assert!(
        reply.contains("alice@example.com is signed out")
            && reply.contains("graphgate login alice@example.com"),
        "{reply}"
    );
    assert!(!reply.contains("busy"), "{reply}");
    let (code, reply) = send(&gw.smtp, "next one");
    assert_eq!(code, 451, "{reply}");
    assert!(reply.contains("AADSTS50173"), "{reply}");
}
