//! `graphgate login` / `logout` as an admin runs them, against
//! `graphgate sim` over HTTP: device code approved, declined and signed in
//! by the wrong user; the browser flow; app-only accounts with a good and a
//! bad secret; the tokens sealed at rest and absent from trace logs.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use graphgate::sim::tenant::{
    DEMO_CLIENT_SECRET, DEMO_CLIENT_SECRET_ID, DEMO_CONFIDENTIAL_CLIENT_ID, DEMO_PUBLIC_CLIENT_ID,
    DEMO_TENANT_ID,
};
use serde_json::Value;

mod support;

use support::{BIN, Sim};

fn sim() -> Sim {
    support::sim(true)
}

/// A data directory whose configuration points at `sim` with `client_id`
/// (and a client secret file when given).
fn data_dir(sim: &Sim, client_id: &str, secret: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut config = format!(
        "data_dir = {data:?}\n[microsoft]\nauthority_url = {url:?}\ngraph_url = {url:?}\n\
         tenant = {DEMO_TENANT_ID:?}\nclient_id = {client_id:?}\n",
        data = dir.path().display().to_string(),
        url = sim.url
    );
    if let Some(secret) = secret {
        let file = dir.path().join("client_secret");
        std::fs::write(&file, secret).unwrap();
        config.push_str(&format!(
            "client_secret_file = {:?}\n",
            file.display().to_string()
        ));
    }
    graphgate::config::write_private_file(&dir.path().join("graphgate.toml"), config.as_bytes())
        .unwrap();
    dir
}

fn graphgate(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--config").arg(dir.join("graphgate.toml"));
    c
}

fn add_account(dir: &Path, login: &str, extra: &[&str]) {
    let mut child = graphgate(dir)
        .args(["accounts", "add", login, "--password-stdin"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"local-secret-password\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn status(dir: &Path) -> Value {
    let out = graphgate(dir).args(["status", "--json"]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "status --json: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn account_state(dir: &Path, login: &str) -> (String, Option<String>) {
    let s = status(dir);
    let a = s["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["login"] == login)
        .unwrap()
        .clone();
    (
        a["state"].as_str().unwrap().to_string(),
        a["error"].as_str().map(str::to_string),
    )
}

/// The account's id and its sealed tokens (access, refresh), read back
/// with the data directory's key.
fn stored(dir: &Path, login: &str) -> (i64, Option<(String, Option<String>)>) {
    let store = graphgate::store::Store::open(dir).unwrap();
    let key = graphgate::store::StoreKey::load(dir).unwrap();
    let account = store.account(login).unwrap().unwrap();
    let tokens = graphgate::account::load_tokens(&store, &key, account.id)
        .unwrap()
        .map(|t| {
            (
                t.access_token.expose().clone(),
                t.refresh_token.as_ref().map(|r| r.expose().clone()),
            )
        });
    (account.id.0, tokens)
}

/// Run `login` with device code; when the code appears on stdout, complete
/// it in the simulator as `user` (approve or decline). Returns (success,
/// stdout, stderr).
fn device_login(
    sim: &Sim,
    dir: &Path,
    login: &str,
    user: &str,
    approve: bool,
) -> (bool, String, String) {
    let mut child = graphgate(dir)
        .args(["login", login])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut out = String::new();
    let code = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "no code in {out}");
        out.push_str(&line);
        if let Some(code) = line.trim().strip_prefix("Code: ") {
            break code.to_string();
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{}/_sim/devicelogin", sim.url))
            .json(&serde_json::json!({"user_code": code, "user": user, "approve": approve}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "devicelogin: {}", r.status());
    });
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    out.push_str(&rest);
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        out,
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn device_code_sign_in_then_logout() {
    let sim = sim();
    let dir = data_dir(&sim, DEMO_PUBLIC_CLIENT_ID, None);
    add_account(dir.path(), "alice@example.com", &[]);
    let (ok, out, err) = device_login(
        &sim,
        dir.path(),
        "alice@example.com",
        "alice@example.com",
        true,
    );
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("URL: ") && out.contains("/devicelogin"),
        "{out}"
    );
    assert!(
        out.contains("Signed in as alice@example.com") && out.contains("Inbox: "),
        "{out}"
    );
    assert_eq!(account_state(dir.path(), "alice@example.com").0, "online");

    let out = graphgate(dir.path())
        .args(["logout", "alice@example.com"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (state, error) = account_state(dir.path(), "alice@example.com");
    assert_eq!(state, "offline");
    assert!(
        error
            .unwrap_or_default()
            .contains("graphgate login alice@example.com"),
        "the remedy names the command"
    );
    let (id, tokens) = stored(dir.path(), "alice@example.com");
    assert!(tokens.is_none(), "logout deleted the tokens");

    // Signing in again keeps the same account (id, and with it spool and
    // folders) and brings it back online.
    let (ok, out, err) = device_login(
        &sim,
        dir.path(),
        "alice@example.com",
        "alice@example.com",
        true,
    );
    assert!(ok, "{out}\n{err}");
    assert_eq!(account_state(dir.path(), "alice@example.com").0, "online");
    let (again, tokens) = stored(dir.path(), "alice@example.com");
    assert_eq!(again, id);
    assert!(tokens.is_some());
}

#[test]
fn declined_sign_in_ends_with_a_sentence() {
    let sim = sim();
    let dir = data_dir(&sim, DEMO_PUBLIC_CLIENT_ID, None);
    add_account(dir.path(), "alice@example.com", &[]);
    let (ok, _, err) = device_login(
        &sim,
        dir.path(),
        "alice@example.com",
        "alice@example.com",
        false,
    );
    assert!(!ok);
    assert!(err.contains("declined"), "{err}");
    assert!(err.contains("graphgate login alice@example.com"), "{err}");
}

#[test]
fn another_user_signing_in_is_refused_and_changes_nothing() {
    let sim = sim();
    let dir = data_dir(&sim, DEMO_PUBLIC_CLIENT_ID, None);
    add_account(dir.path(), "alice@example.com", &[]);
    let (ok, _, err) = device_login(
        &sim,
        dir.path(),
        "alice@example.com",
        "bob@example.com",
        true,
    );
    assert!(!ok);
    assert!(err.contains("user mismatch"), "{err}");
    assert!(
        err.contains("bob@example.com") && err.contains("alice@example.com"),
        "{err}"
    );
    // No tokens were stored: the account has still never signed in.
    let (state, error) = account_state(dir.path(), "alice@example.com");
    assert_eq!(state, "offline");
    assert!(error.unwrap_or_default().contains("never signed in"));
    assert!(stored(dir.path(), "alice@example.com").1.is_none());

    // Signed in as alice, then re-authenticated as bob: alice's tokens and
    // state stay exactly as they were.
    let (ok, _, err) = device_login(
        &sim,
        dir.path(),
        "alice@example.com",
        "alice@example.com",
        true,
    );
    assert!(ok, "{err}");
    let before = stored(dir.path(), "alice@example.com");
    assert!(before.1.is_some());
    let (ok, _, err) = device_login(
        &sim,
        dir.path(),
        "alice@example.com",
        "bob@example.com",
        true,
    );
    assert!(!ok);
    assert!(err.contains("user mismatch"), "{err}");
    assert_eq!(stored(dir.path(), "alice@example.com"), before);
    assert_eq!(account_state(dir.path(), "alice@example.com").0, "online");
}

#[test]
fn browser_sign_in_through_the_loopback_redirect() {
    let sim = sim();
    let dir = data_dir(&sim, DEMO_PUBLIC_CLIENT_ID, None);
    add_account(dir.path(), "bob@example.com", &[]);
    let mut child = graphgate(dir.path())
        .args(["login", "bob@example.com", "--browser", "--no-open"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0);
        if let Some(u) = line.trim().strip_prefix("URL: ") {
            break u.to_string();
        }
    };
    // Play the browser: the simulator signs bob in (login_hint) and
    // redirects to the loopback listener.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = browser.get(&url).send().await.unwrap();
        let location = r.headers()["location"].to_str().unwrap().replacen(
            "http://localhost:",
            "http://127.0.0.1:",
            1,
        );
        browser.get(location).send().await.unwrap();
    });
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{rest}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(rest.contains("Signed in as bob@example.com"), "{rest}");
}

#[test]
fn app_only_accounts_check_their_credential() {
    let sim = sim();
    let dir = data_dir(&sim, DEMO_CONFIDENTIAL_CLIENT_ID, Some(DEMO_CLIENT_SECRET));
    add_account(
        dir.path(),
        "scanner",
        &["--mailbox", "bob@example.com", "--app-only"],
    );
    let out = graphgate(dir.path())
        .args(["login", "scanner"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("App-only access to bob@example.com works"),
        "{text}"
    );
    assert!(
        !text.contains(DEMO_CLIENT_SECRET),
        "the client secret is in the trace log"
    );
    assert_eq!(account_state(dir.path(), "scanner").0, "online");

    // The secret's ID pasted instead of its value: AADSTS7000215 and the fix.
    let bad = data_dir(
        &sim,
        DEMO_CONFIDENTIAL_CLIENT_ID,
        Some(DEMO_CLIENT_SECRET_ID),
    );
    add_account(
        bad.path(),
        "scanner",
        &["--mailbox", "bob@example.com", "--app-only"],
    );
    let out = graphgate(bad.path())
        .args(["login", "scanner"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(text.contains("7000215"), "{text}");
    assert!(
        text.to_lowercase().contains("value"),
        "says to use the secret's value: {text}"
    );
}

#[test]
fn tokens_are_sealed_at_rest_and_never_logged() {
    let sim = sim();
    let dir = data_dir(&sim, DEMO_PUBLIC_CLIENT_ID, None);
    add_account(dir.path(), "alice@example.com", &[]);
    let (ok, out, err) = device_login(
        &sim,
        dir.path(),
        "alice@example.com",
        "alice@example.com",
        true,
    );
    assert!(ok, "{err}");
    // The tokens, read back with the key.
    let store = graphgate::store::Store::open(dir.path()).unwrap();
    let key = graphgate::store::StoreKey::load(dir.path()).unwrap();
    let account = store.account("alice@example.com").unwrap().unwrap();
    let tokens = graphgate::account::load_tokens(&store, &key, account.id)
        .unwrap()
        .unwrap();
    let access = tokens.access_token.expose().clone();
    let refresh = tokens.refresh_token.as_ref().unwrap().expose().clone();
    assert!(
        err.contains("TRACE") || err.contains("DEBUG"),
        "trace logging was on"
    );
    // `status` uses (and may refresh) the tokens: its trace log too.
    let status = graphgate(dir.path())
        .args(["status"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let out = out + &String::from_utf8_lossy(&status.stdout);
    let err = err + &String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "{out}\n{err}");
    // Every device code the simulator issues starts with this (Entra's
    // look); the one this login polled with must not be printed.
    for secret in [
        access.as_str(),
        refresh.as_str(),
        "local-secret-password",
        "DAQABIQEAAAB",
    ] {
        assert!(!out.contains(secret), "a secret is on stdout");
        assert!(!err.contains(secret), "a secret is in the trace log");
    }
    // Nothing of the tokens is readable in the database file itself.
    let db = std::fs::read(graphgate::store::Store::path_in(dir.path())).unwrap();
    let db_text = String::from_utf8_lossy(&db);
    assert!(!db_text.contains(&refresh[..refresh.len().min(24)]));
    assert!(!db_text.contains(&access[..access.len().min(24)]));
    // Mode 0600 for the database and the key file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [
            graphgate::store::Store::path_in(dir.path()),
            dir.path().join("graphgate.key"),
        ] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
    }
    // Another key cannot open them, and status says what is wrong.
    let out = graphgate(dir.path())
        .args(["status"])
        .env("GRAPHGATE_KEY", "11".repeat(32))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.to_lowercase().contains("key"), "{text}");
    let _ = Duration::ZERO;
}

#[test]
fn an_app_only_account_can_bring_its_own_app_registration() {
    let sim = sim();
    // The configuration names the public client (for delegated accounts);
    // this account has its own confidential app and secret file.
    let dir = data_dir(&sim, DEMO_PUBLIC_CLIENT_ID, None);
    let secret = dir.path().join("scanner.secret");
    std::fs::write(&secret, DEMO_CLIENT_SECRET).unwrap();
    add_account(
        dir.path(),
        "scanner",
        &[
            "--mailbox",
            "bob@example.com",
            "--app-only",
            "--client-id",
            DEMO_CONFIDENTIAL_CLIENT_ID,
            "--client-secret-file",
            secret.to_str().unwrap(),
        ],
    );
    let out = graphgate(dir.path())
        .args(["login", "scanner"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(account_state(dir.path(), "scanner").0, "online");
    // The store holds the path, never the secret.
    let db = std::fs::read(graphgate::store::Store::path_in(dir.path())).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(DEMO_CLIENT_SECRET));
    // Half a certificate is refused and adds nothing.
    let out = graphgate(dir.path())
        .args([
            "accounts",
            "add",
            "half",
            "--mailbox",
            "bob@example.com",
            "--app-only",
            "--certificate-file",
            "/nonexistent.pem",
            "--password-stdin",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let listed = graphgate(dir.path())
        .args(["accounts", "list"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("half"));
}
