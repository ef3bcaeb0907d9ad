//! `graphgate send-test` as an admin runs it: against a running `graphgate
//! demo` (the gateway owns the spool, send-test hands the message over) and
//! against a data directory no gateway runs on (send-test attempts it
//! itself), each time checked through the simulator's Graph API: the
//! message is in the recipient's Inbox exactly once. A revoked grant fails
//! with its fix before anything is spooled. And the spool's one-owner rule:
//! a gateway waits while send-test has the spool, and a second gateway on
//! one data directory is refused.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use graphgate::secret::Secret;
use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::spool::owner::{OwnerRole, SpoolOwner};
use graphgate::store::{AuthProfile, NewAccount, SpoolState, Store, StoreKey};
use serde_json::Value;

mod support;

use support::{BIN, Proc, Sim};

/// A data directory whose configuration points at `sim`, with accounts
/// alice and bob, both signed in (as `graphgate login --browser` would).
async fn data_dir(sim: &Sim) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = {data:?}\n\
         [microsoft]\nauthority_url = {url:?}\ngraph_url = {url:?}\n\
         tenant = {DEMO_TENANT_ID:?}\nclient_id = {DEMO_PUBLIC_CLIENT_ID:?}\n\
         [smtp]\nlisten = \"127.0.0.1:0\"\nimplicit_tls_listen = \"\"\n\
         [imap]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n[pop3]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n",
        data = dir.path().display().to_string(),
        url = sim.url,
    );
    graphgate::config::write_private_file(&dir.path().join("graphgate.toml"), config.as_bytes())
        .unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = StoreKey::load(dir.path()).unwrap();
    for (login, password) in [("alice@example.com", "alice"), ("bob@example.com", "bob")] {
        let account = store
            .add_account(&NewAccount {
                login: login.into(),
                password: Secret::new(password.into()),
                mailbox: login.into(),
                auth_profile: AuthProfile::Delegated,
                aliases: vec![],
                shared_mailboxes: vec![],
            })
            .unwrap();
        let tokens = graphgate::cli::sign_in_via_simulator(&sim.url, login)
            .await
            .unwrap();
        graphgate::account::save_tokens(&store, &key, account.id, &tokens).unwrap();
    }
    dir
}

/// `graphgate send-test` on `dir` (its graphgate.toml), in a blocking
/// thread so the test's runtime keeps serving.
async fn send_test(dir: &Path, extra: &[&str]) -> Output {
    let dir = dir.to_path_buf();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&dir)
            .args([
                "send-test",
                "--from",
                "alice@example.com",
                "--to",
                "bob@example.com",
                "--timeout",
                "60",
            ])
            .args(&extra)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The token send-test put in the subject (`token gg-…` in its output).
fn token_of(out: &str) -> String {
    out.split_whitespace()
        .skip_while(|w| *w != "token")
        .nth(1)
        .unwrap_or_else(|| panic!("no token in {out}"))
        .trim_end_matches(',')
        .to_string()
}

/// Subjects of `upn`'s `folder` containing `token`, through Graph.
async fn copies(sim_url: &str, upn: &str, folder: &str, token: &str) -> usize {
    let bearer = support::token(sim_url, upn).await;
    let page: Value = reqwest::Client::new()
        .get(format!(
            "{sim_url}/v1.0/me/mailFolders/{folder}/messages?$select=subject&$top=1000"
        ))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["subject"].as_str().unwrap_or("").contains(token))
        .count()
}

/// sendMail calls the simulator has served.
async fn send_mail_calls(sim_url: &str) -> u64 {
    let stats: Value = reqwest::get(format!("{sim_url}/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["by_route"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(route, _)| route.contains("sendMail"))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn read_back_against_the_demo_delivers_exactly_once() {
    let demo = support::demo();
    let before = send_mail_calls(&demo.sim).await;
    let out = send_test(demo.dir.path(), &["--read-back", "--subject", "Ping"]).await;
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "ok    oauth token: OK",
        "ok    message: token gg-",
        "handed to a running graphgate gateway",
        "ok    submitted: Graph accepted it (202 Accepted)",
        "ok    read-back: in bob@example.com's Inbox",
        "send-test passed.",
    ] {
        assert!(text.contains(step), "{step:?} missing from:\n{text}");
    }
    let token = token_of(&text);
    assert!(text.contains(&format!("\"Ping [{token}]\"")), "{text}");
    assert_eq!(
        copies(&demo.sim, "bob@example.com", "inbox", &token).await,
        1
    );
    assert_eq!(
        copies(&demo.sim, "alice@example.com", "sentitems", &token).await,
        1
    );
    assert_eq!(send_mail_calls(&demo.sim).await - before, 1);
    let entries = Store::open(demo.dir.path())
        .unwrap()
        .spool_list(None, None)
        .unwrap();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0].state, SpoolState::Delivered);
    assert_eq!(entries[0].attempts, 1);
}

#[tokio::test]
async fn without_a_gateway_send_test_attempts_the_message_itself() {
    let sim = support::sim(true);
    let dir = data_dir(&sim).await;
    let out = send_test(dir.path(), &["--read-back"]).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("attempted here"), "{text}");
    assert!(text.contains("202 Accepted"), "{text}");
    let token = token_of(&text);
    assert_eq!(
        copies(&sim.url, "bob@example.com", "inbox", &token).await,
        1
    );
    assert_eq!(send_mail_calls(&sim.url).await, 1);
    assert_eq!(
        SpoolOwner::holder(dir.path()).unwrap(),
        None,
        "the spool is free again"
    );
    // To an address outside the gateway: read back from Sent Items.
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "send-test",
            "--from",
            "alice@example.com",
            "--to",
            "someone@elsewhere.example",
            "--read-back",
        ])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("read-back: in alice@example.com's Sent Items"),
        "{text}"
    );
}

#[tokio::test]
async fn a_revoked_grant_fails_with_its_fix_and_spools_nothing() {
    let sim = support::sim(true);
    let dir = data_dir(&sim).await;
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/faults", sim.url))
        .json(&serde_json::json!({"revoke_refresh_tokens": true}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let out = send_test(dir.path(), &["--read-back"]).await;
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("FAIL  oauth token:"))
        .unwrap_or_else(|| panic!("no token failure in:\n{text}"));
    assert!(line.contains("AADSTS50173"), "{line}");
    assert!(
        line.contains("— fix: ") && line.contains("graphgate login alice@example.com"),
        "{line}"
    );
    assert!(
        Store::open(dir.path())
            .unwrap()
            .spool_list(None, None)
            .unwrap()
            .is_empty()
    );
    assert_eq!(send_mail_calls(&sim.url).await, 0);
}

#[tokio::test]
async fn unknown_account_and_bad_recipient_are_named() {
    let sim = support::sim(true);
    let dir = data_dir(&sim).await;
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["send-test", "--from", "nobody", "--to", "bob@example.com"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("FAIL  account: no local account nobody — fix:"),
        "{}",
        stdout(&out)
    );
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["send-test", "--from", "alice@example.com", "--to", "bob"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("FAIL  recipient:"),
        "{}",
        stdout(&out)
    );
}

/// `graphgate serve` on `dir` with stdout and stderr piped.
fn serve(dir: &Path) -> Proc {
    Proc(
        Command::new(BIN)
            .arg("--config")
            .arg(dir.join("graphgate.toml"))
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// The first line of `stream` containing `marker`, within 60 s (the rest
/// is drained, so the child never writes into a closed pipe).
fn line_with(stream: impl std::io::Read + Send + 'static, marker: &str) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if line.contains(&marker) {
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).ok()
}

#[tokio::test]
async fn a_gateway_waits_for_send_test_and_refuses_a_second_gateway() {
    let sim = support::sim(true);
    let dir = data_dir(&sim).await;
    // What send-test holds while it makes its own attempt.
    let held = SpoolOwner::try_acquire(dir.path(), OwnerRole::SendTest)
        .unwrap()
        .unwrap();
    let mut gateway = serve(dir.path());
    let stderr = gateway.0.stderr.take().unwrap();
    let stdout = gateway.0.stdout.take().unwrap();
    let waiting = line_with(stderr, "to finish with the spool").expect("no waiting line");
    assert!(waiting.contains("send-test"), "{waiting}");
    drop(held);
    line_with(stdout, "graphgate is running").expect("the gateway did not start");
    let holder = SpoolOwner::holder(dir.path()).unwrap().unwrap();
    assert_eq!(holder.role, Some(OwnerRole::Gateway));
    assert_eq!(holder.pid, Some(gateway.0.id()));

    // A second gateway on the same data directory would race the first.
    let second = Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("graphgate.toml"))
        .arg("serve")
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!("pid {}", gateway.0.id())) && err.contains("two gateways"),
        "{err}"
    );
}
