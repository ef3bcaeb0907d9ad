//! The relay listener for devices and cron (issue 18): mail WITHOUT AUTH
//! from the networks of `relay.networks`, each sending as one account,
//! with the `rewrite` sender policy; everyone else refused with a reply
//! naming the setting. Real clients over real sockets: swaks from a second
//! loopback address (`--local-interface 127.0.0.2`), msmtp as cron runs it
//! (`sendmail`-style, bare LF, From: root), Python's smtplib from
//! addresses outside the list. Every delivery is read back from the
//! recipient's simulated mailbox over Graph, and counted (exactly once).

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::store::{NewAccount, Store, StoreKey};
use mail_parser::MessageParser;
use serde_json::Value;

mod support;

use support::{BIN, Proc, banner, demo};

const DEADLINE: Duration = Duration::from_secs(60);

/// Whether `name` is installed; missing on CI is a failure (scripts/test
/// installs it), missing here skips the test.
fn tool(name: &str) -> bool {
    let found = Command::new("which")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed; on CI scripts/test installs it (PACKAGES)"
        );
        eprintln!("skipped: {name} is not installed here (scripts/test installs it)");
    }
    found
}

fn run(command: &mut Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// The raw MIME of every message in `upn`'s `folder` whose subject is
/// `subject`, polled until there is one (and never more than one).
async fn wait_for_subject(sim: &str, upn: &str, folder: &str, subject: &str) -> Vec<u8> {
    let token = support::token(sim, upn).await;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let page: Value = http
            .get(format!(
                "{sim}/v1.0/me/mailFolders/{folder}/messages?$top=100&$select=id,subject"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found: Vec<String> = page["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["subject"] == subject)
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        assert!(found.len() <= 1, "{subject:?} is in {upn}'s {folder} twice");
        if let Some(id) = found.first() {
            let mime = http
                .get(format!("{sim}/v1.0/me/messages/{id}/$value"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            return mime.to_vec();
        }
        assert!(Instant::now() < deadline, "{subject:?} never reached {upn}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// From (display name, address) and Reply-To address of a message.
fn from_and_reply_to(mime: &[u8]) -> (String, String, String) {
    let message = MessageParser::default().parse(mime).unwrap();
    let from = message.from().and_then(|a| a.first()).unwrap();
    let reply_to = message
        .reply_to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_string();
    (
        from.name().unwrap_or_default().to_string(),
        from.address().unwrap_or_default().to_string(),
        reply_to,
    )
}

#[tokio::test]
async fn swaks_from_a_listed_address_without_auth_is_delivered_once_as_the_account() {
    if !tool("swaks") {
        return;
    }
    let d = demo();
    let subject = "relay: scan from 127.0.0.2";
    let out = run(
        Command::new("swaks")
            .args(["--server", &d.relay, "--local-interface", "127.0.0.2"])
            .args(["--from", "root@myhost.local", "--to", "bob@example.com"])
            .args(["--header", &format!("Subject: {subject}")])
            .args(["--body", "page 1 of 1"]),
        b"",
    );
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "swaks failed:\n{transcript}");
    // No AUTH offered or used: the network signs the client in.
    assert!(!transcript.contains("AUTH"), "{transcript}");
    assert!(
        transcript.contains("<-  250 2.0.0 OK: queued as"),
        "{transcript}"
    );

    let mime = wait_for_subject(&d.sim, "bob@example.com", "inbox", subject).await;
    let (name, address, reply_to) = from_and_reply_to(&mime);
    assert_eq!(address, "alice@example.com");
    assert_eq!(name, "root@myhost.local via graphgate");
    assert_eq!(reply_to, "root@myhost.local");
    // Sent once: one copy in alice's Sent Items too.
    wait_for_subject(&d.sim, "alice@example.com", "sentitems", subject).await;
    // Counted as a relay client, beside the submission listener's metrics.
    let metrics = reqwest::get(format!("{}/metrics", d.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("graphgate_smtp_relay_clients_total{outcome=\"admitted\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn msmtp_as_cron_runs_it_gets_root_mail_through() {
    if !tool("msmtp") {
        return;
    }
    let d = demo();
    let (host, port) = d.relay.rsplit_once(':').unwrap();
    let rc = d.dir.path().join("msmtprc");
    let config = format!(
        "account default\nhost {host}\nport {port}\nauth off\ntls off\n\
         from root@myhost.local\n"
    );
    std::fs::write(&rc, config).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // What cron writes to `sendmail -i ...`: bare LF, From: root.
    let subject = "Cron <root@myhost> /usr/local/bin/backup";
    let message = format!(
        "From: root (Cron Daemon)\nTo: bob@example.com\nSubject: {subject}\n\
         Content-Type: text/plain; charset=UTF-8\n\nbackup finished\n"
    );
    let out = run(
        Command::new("msmtp")
            .arg("-C")
            .arg(&rc)
            .args(["-i", "bob@example.com"]),
        message.as_bytes(),
    );
    assert!(
        out.status.success(),
        "msmtp failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mime = wait_for_subject(&d.sim, "bob@example.com", "inbox", subject).await;
    let (name, address, reply_to) = from_and_reply_to(&mime);
    assert_eq!(address, "alice@example.com");
    assert_eq!(name, "root@myhost.local via graphgate");
    assert_eq!(reply_to, "root@myhost.local");

    // A plus-addressed sender of the tenant gets through the same way.
    let subject = "alerts: disk 91% full";
    let message = format!(
        "From: alice+alerts@example.com\nTo: bob@example.com\nSubject: {subject}\n\nfull\n"
    );
    let out = run(
        Command::new("msmtp").arg("-C").arg(&rc).args([
            "-f",
            "alice+alerts@example.com",
            "-i",
            "bob@example.com",
        ]),
        message.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mime = wait_for_subject(&d.sim, "bob@example.com", "inbox", subject).await;
    let (name, address, reply_to) = from_and_reply_to(&mime);
    assert_eq!(address, "alice@example.com");
    assert_eq!(name, "alice+alerts@example.com via graphgate");
    assert_eq!(reply_to, "alice+alerts@example.com");
}

/// `graphgate serve` with a relay for 127.0.0.2 only, sending as alice:
/// the process, the relay's address, the data directory (holding the
/// configuration file `graphgate.toml`) and the SMTP submission address.
async fn serve_with_relay_for_127_0_0_2(
    sim: &support::Sim,
) -> (Proc, String, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = {data:?}\n\
         [microsoft]\nauthority_url = {url:?}\ngraph_url = {url:?}\n\
         tenant = {DEMO_TENANT_ID:?}\nclient_id = {DEMO_PUBLIC_CLIENT_ID:?}\n\
         [smtp]\nlisten = \"127.0.0.1:0\"\nimplicit_tls_listen = \"\"\n\
         [imap]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n\
         [pop3]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n\
         [relay]\nlisten = \"127.0.0.1:0\"\n\
         [[relay.networks]]\ncidr = \"127.0.0.2/32\"\naccount = \"alice@example.com\"\n",
        data = dir.path().display().to_string(),
        url = sim.url,
    );
    graphgate::config::write_private_file(&dir.path().join("graphgate.toml"), config.as_bytes())
        .unwrap();
    let store = Store::open(dir.path()).unwrap();
    let account = store
        .add_account(&NewAccount::delegated("alice@example.com", "alice"))
        .unwrap();
    let tokens = graphgate::cli::sign_in_via_simulator(&sim.url, "alice@example.com")
        .await
        .unwrap();
    let key = StoreKey::load(dir.path()).unwrap();
    graphgate::account::save_tokens(&store, &key, account.id, &tokens).unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("graphgate.toml"))
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = banner(&mut child, "graphgate is running");
    let line = lines.last().unwrap().clone();
    let relay = line
        .split(" · ")
        .find_map(|p| p.trim().strip_prefix("relay "))
        .unwrap_or_else(|| panic!("no relay in {line}"))
        .trim()
        .to_string();
    let smtp = line
        .split(" · ")
        .find_map(|p| p.trim().strip_prefix("graphgate is running. SMTP "))
        .unwrap_or_else(|| panic!("no SMTP in {line}"))
        .trim()
        .to_string();
    (Proc(child), relay, dir, smtp)
}

/// One message through smtplib from `source` without AUTH: the code and
/// text of the first reply that is not a success (or of the data).
fn send_from(relay: &str, source: &str, subject: &str) -> (u16, String) {
    let (host, port) = relay.rsplit_once(':').unwrap();
    let script = r#"
import smtplib, sys
host, port, source, subject = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
msg = "From: scanner@printer.lan\r\nTo: bob@example.com\r\nSubject: %s\r\n\r\nscan\r\n" % subject
try:
    s = smtplib.SMTP(host, port, timeout=60, source_address=(source, 0))
except smtplib.SMTPConnectError as e:
    print(e.smtp_code, e.smtp_error.decode().replace("\n", " "))
    sys.exit(0)
def reply():
    s.ehlo()
    for step in (lambda: s.mail("scanner@printer.lan"), lambda: s.rcpt("bob@example.com")):
        code, text = step()
        if code != 250:
            return code, text
    return s.data(msg)
code, text = reply()
print(code, text.decode().replace("\n", " "))
s.quit()
"#;
    let out = Command::new(support::python())
        .args(["-c", script, host, port, source, subject])
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

#[tokio::test]
async fn serve_relays_for_listed_addresses_only_and_names_the_setting_to_others() {
    let sim = support::sim(true);
    let (_serve, relay, _dir, _) = serve_with_relay_for_127_0_0_2(&sim).await;
    for outsider in ["127.0.0.1", "127.0.0.3"] {
        let (code, text) = send_from(&relay, outsider, "must not pass");
        assert_eq!(code, 554, "{outsider}: {text}");
        assert!(
            text.contains(&format!("{outsider} is not in relay.networks")),
            "{text}"
        );
    }
    let subject = "relay: listed scanner";
    let (code, text) = send_from(&relay, "127.0.0.2", subject);
    assert_eq!(code, 250, "{text}");
    let mime = wait_for_subject(&sim.url, "bob@example.com", "inbox", subject).await;
    let (name, address, reply_to) = from_and_reply_to(&mime);
    assert_eq!(address, "alice@example.com");
    assert_eq!(name, "scanner@printer.lan via graphgate");
    assert_eq!(reply_to, "scanner@printer.lan");

    // swaks bound to the listed address gets in; bound to another, not.
    if tool("swaks") {
        let swaks = |source: &str, subject: &str| {
            run(
                Command::new("swaks")
                    .args(["--server", &relay, "--local-interface", source])
                    .args(["--from", "printer@printer.lan", "--to", "bob@example.com"])
                    .args(["--header", &format!("Subject: {subject}")]),
                b"",
            )
        };
        let out = swaks("127.0.0.2", "relay: swaks from the listed address");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        wait_for_subject(
            &sim.url,
            "bob@example.com",
            "inbox",
            "relay: swaks from the listed address",
        )
        .await;
        let out = swaks("127.0.0.4", "must not pass");
        let transcript = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{transcript}");
        assert!(
            transcript.contains("<** 554 5.7.1 127.0.0.4 is not in relay.networks"),
            "{transcript}"
        );
    }
}

/// One message from alice with AUTH, envelope sender `from`: the code and
/// text of the first reply that is not a success (or of the data).
fn submit_as_alice(smtp: &str, from: &str, subject: &str) -> (u16, String) {
    let (host, port) = smtp.rsplit_once(':').unwrap();
    let script = r#"
import smtplib, sys
host, port, sender, subject = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
msg = "From: %s\r\nTo: bob@example.com\r\nSubject: %s\r\n\r\nhi\r\n" % (sender, subject)
s = smtplib.SMTP(host, port, timeout=60)
s.login("alice@example.com", "alice")
def reply():
    for step in (lambda: s.mail(sender), lambda: s.rcpt("bob@example.com")):
        code, text = step()
        if code != 250:
            return code, text
    return s.data(msg)
code, text = reply()
print(code, text.decode().replace("\n", " "))
s.quit()
"#;
    let out = Command::new(support::python())
        .args(["-c", script, host, port, from, subject])
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

/// `graphgate --data-dir DIR accounts set ARGS…`, which must succeed.
fn accounts_set(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(["accounts", "set"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn accounts_set_changes_aliases_and_sender_policy_of_a_running_gateway() {
    let d = demo();
    // Cron's sender, outside the tenant: the 550 names the setting that
    // helps, not Send As.
    let (code, text) = submit_as_alice(&d.smtp, "root@myhost.local", "cron before");
    assert_eq!(code, 550, "{text}");
    assert!(text.contains("Send As cannot be granted"), "{text}");
    assert!(
        text.contains("graphgate accounts set alice@example.com --sender-policy rewrite"),
        "{text}"
    );
    // An address of the tenant: the alias command that works.
    let (code, text) = submit_as_alice(&d.smtp, "support@example.com", "alias before");
    assert_eq!(code, 550, "{text}");
    assert!(
        text.contains("graphgate accounts set alice@example.com --alias support@example.com"),
        "{text}"
    );

    let said = accounts_set(
        d.dir.path(),
        &["alice@example.com", "--sender-policy", "rewrite"],
    );
    assert!(said.contains("sender policy: rewrite"), "{said}");
    let (code, text) = submit_as_alice(&d.smtp, "root@myhost.local", "cron after");
    assert_eq!(code, 250, "{text}");
    let mime = wait_for_subject(&d.sim, "bob@example.com", "inbox", "cron after").await;
    let (name, address, reply_to) = from_and_reply_to(&mime);
    assert_eq!(
        (name.as_str(), address.as_str(), reply_to.as_str()),
        (
            "root@myhost.local via graphgate",
            "alice@example.com",
            "root@myhost.local"
        )
    );

    let said = accounts_set(
        d.dir.path(),
        &[
            "alice@example.com",
            "--sender-policy",
            "keep",
            "--alias",
            "support@example.com",
        ],
    );
    assert!(said.contains("From aliases: support@example.com"), "{said}");
    let (code, text) = submit_as_alice(&d.smtp, "support@example.com", "alias after");
    assert_eq!(code, 250, "{text}");
    let (code, text) = submit_as_alice(&d.smtp, "root@myhost.local", "cron keep again");
    assert_eq!(code, 550, "{text}");
    accounts_set(
        d.dir.path(),
        &["alice@example.com", "--no-alias", "support@example.com"],
    );
    let (code, text) = submit_as_alice(&d.smtp, "support@example.com", "alias removed");
    assert_eq!(code, 550, "{text}");
}

/// `SIGHUP` to `graphgate serve` reads `relay.networks` again and resolves
/// its host names again (issue 18): the list for 127.0.0.2 becomes the
/// host name `localhost`, and from then on 127.0.0.1 is admitted and
/// 127.0.0.2 refused, without a restart.
#[tokio::test]
async fn sighup_reloads_relay_networks_and_resolves_host_names_again() {
    let sim = support::sim(true);
    let (serve, relay, dir, _) = serve_with_relay_for_127_0_0_2(&sim).await;
    let (code, text) = send_from(&relay, "127.0.0.1", "relay: before the reload");
    assert_eq!(code, 554, "{text}");
    assert!(text.contains("reload (kill -HUP"), "{text}");

    let path = dir.path().join("graphgate.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    assert!(config.contains("cidr = \"127.0.0.2/32\""), "{config}");
    let config = config.replace("cidr = \"127.0.0.2/32\"", "cidr = \"localhost\"");
    graphgate::config::write_private_file(&path, config.as_bytes()).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &serve.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());

    let subject = "relay: admitted by host name after SIGHUP";
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (code, text) = send_from(&relay, "127.0.0.1", subject);
        if code == 250 {
            break;
        }
        assert_eq!(code, 554, "{text}");
        assert!(
            Instant::now() < deadline,
            "still refused after SIGHUP: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, text) = send_from(&relay, "127.0.0.2", "must not pass");
    assert_eq!(code, 554, "{text}");
    assert!(
        text.contains("127.0.0.2 is not in relay.networks"),
        "{text}"
    );
    let mime = wait_for_subject(&sim.url, "bob@example.com", "inbox", subject).await;
    assert_eq!(from_and_reply_to(&mime).1, "alice@example.com");
}

/// Sign-out on a running `graphgate serve` (issue 18, done-when): after
/// `graphgate logout alice` (another process, same configuration), within
/// 5 s both the submission port (with AUTH) and the relay (by network)
/// answer MAIL FROM with 451 4.7.0 naming `graphgate login`.
#[tokio::test]
async fn logout_reaches_a_running_serve_within_seconds() {
    let sim = support::sim(true);
    let (_serve, relay, dir, smtp) = serve_with_relay_for_127_0_0_2(&sim).await;
    let (code, text) = submit_as_alice(&smtp, "alice@example.com", "before logout");
    assert_eq!(code, 250, "{text}");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("graphgate.toml"))
        .args(["logout", "alice@example.com"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let (code, text) = loop {
        let (code, text) = submit_as_alice(&smtp, "alice@example.com", "after logout");
        if code != 250 {
            break (code, text);
        }
        assert!(
            Instant::now() < deadline,
            "SMTP as alice still delivers 5 s after logout"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 451, "{text}");
    assert!(text.starts_with("4.7.0"), "{text}");
    assert!(text.contains("graphgate login alice@example.com"), "{text}");
    let (code, text) = send_from(&relay, "127.0.0.2", "relay after logout");
    assert_eq!(code, 451, "{text}");
    assert!(text.contains("graphgate login alice@example.com"), "{text}");
}

/// A private Postfix instance (`postfix -c DIR`), stopped on drop.
struct Postfix(std::path::PathBuf);

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.0.join("conf"))
            .arg("stop")
            .output();
    }
}

/// Postfix as a smarthost client (docs/relay.md "Postfix or sendmail as a
/// smarthost client"; issue 18): a private Postfix instance with
/// `relayhost = [127.0.0.1]:<relay port>` and `smtp_bind_address =
/// 127.0.0.2` (the listed address) hands cron-style mail (`sendmail -t`,
/// From: root) to the relay, which sends it once as alice. Postfix must
/// start as root; scripts/test installs it.
#[tokio::test]
async fn postfix_as_a_smarthost_client_relays_through_the_allowlist() {
    if !tool("postfix") {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        eprintln!("skipped: Postfix starts as root only");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let sim = support::sim(true);
    let (_serve, relay, _dir, _) = serve_with_relay_for_127_0_0_2(&sim).await;
    let (_, relay_port) = relay.rsplit_once(':').unwrap();
    let top = tempfile::tempdir().unwrap();
    let base = top.path().to_path_buf();
    // Postfix's own user walks into its queue and data directories.
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    for sub in ["conf", "queue", "data"] {
        std::fs::create_dir(base.join(sub)).unwrap();
    }
    let chown = Command::new("chown")
        .arg("postfix")
        .arg(base.join("data"))
        .status()
        .unwrap();
    assert!(chown.success());
    let b = base.display();
    let main_cf = format!(
        "compatibility_level = 3.6\n\
         queue_directory = {b}/queue\n\
         data_directory = {b}/data\n\
         maillog_file_prefixes = {b}\n\
         maillog_file = {b}/maillog\n\
         myhostname = myhost.local\n\
         myorigin = myhost.local\n\
         mydestination =\n\
         inet_interfaces = loopback-only\n\
         inet_protocols = ipv4\n\
         relayhost = [127.0.0.1]:{relay_port}\n\
         smtp_bind_address = 127.0.0.2\n\
         smtp_tls_security_level = may\n\
         alias_maps =\n\
         alias_database =\n"
    );
    std::fs::write(base.join("conf/main.cf"), main_cf).unwrap();
    // Debian's master.cf without the port-25 listener, nothing chrooted.
    let master = std::fs::read_to_string("/usr/share/postfix/master.cf.dist")
        .or_else(|_| std::fs::read_to_string("/etc/postfix/master.cf"))
        .unwrap();
    let master: String = master
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let service = !line.starts_with([' ', '\t', '#']) && fields.len() >= 8;
            if !service {
                return Some(format!("{line}\n"));
            }
            if fields[0] == "smtp" && fields[1] == "inet" {
                return None;
            }
            let mut fields = fields;
            fields[4] = "n";
            Some(format!("{}\n", fields.join("  ")))
        })
        .collect();
    std::fs::write(base.join("conf/master.cf"), master).unwrap();
    let conf = base.join("conf");
    let start = Command::new("postfix")
        .arg("-c")
        .arg(&conf)
        .arg("start")
        .output()
        .unwrap();
    let _postfix = Postfix(base.clone());
    assert!(
        start.status.success(),
        "{}{}",
        String::from_utf8_lossy(&start.stdout),
        String::from_utf8_lossy(&start.stderr)
    );
    let subject = "relay: Postfix smarthost client";
    let out = run(
        Command::new("sendmail")
            .arg("-C")
            .arg(&conf)
            .args(["-t", "-i"]),
        format!("From: root\nTo: bob@example.com\nSubject: {subject}\n\ndisk almost full\n")
            .as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
    let mime = wait_for_subject(&sim.url, "bob@example.com", "inbox", subject).await;
    let (name, address, reply_to) = from_and_reply_to(&mime);
    assert_eq!(address, "alice@example.com");
    assert_eq!(name, "root@myhost.local via graphgate");
    assert_eq!(reply_to, "root@myhost.local");
    // Postfix logs the relay's 250 (its log writer may lag the delivery).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let log = std::fs::read_to_string(base.join("maillog")).unwrap_or_default();
        if log.contains("status=sent (250 2.0.0 OK: queued as") {
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
