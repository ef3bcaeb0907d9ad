//! IMAP against the demo (and against `graphgate serve` + `graphgate sim`
//! for restarts and IDLE), with independent clients: async-imap, Python's
//! imaplib, curl, and raw transcripts over a socket.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

use support::{BIN, Demo, Proc, banner, demo, demo_exchange_mime};

/// Each scenario twice: against a tenant that stores the bytes it is
/// given, and against one that re-renders them as Exchange Online does
/// (`graphgate demo --exchange-mime`), where what IMAP serves is not what
/// was sent or appended — and must still be one consistent byte stream.
macro_rules! both_renderings {
    ($($name:ident),* $(,)?) => {
        mod as_submitted {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::demo()).await
            })*
        }
        mod exchange_rendered {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::demo_exchange_mime()).await
            })*
        }
    };
}

both_renderings!(
    transcript_states_errors_and_basic_commands,
    two_sessions_on_one_folder_see_each_others_changes,
    async_imap_reads_flags_appends_moves_and_expunges,
    implicit_tls_with_python_imaplib,
    curl_lists_fetches_and_appends,
    each_message_is_one_unchanging_byte_stream,
    a_mail_handler_reads_its_own_inbox_folder_and_leaves_nothing_behind,
    mutt_in_batch_mode_files_its_copy_over_imap,
);

/// A raw IMAP dialogue: send a line, read until the tagged reply.
struct Raw {
    read: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: &str) -> (Raw, String) {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut raw = Raw {
            read: tokio::io::BufReader::new(read),
            write,
        };
        let mut greeting = String::new();
        raw.read.read_line(&mut greeting).await.unwrap();
        (raw, greeting)
    }

    /// Send `line` (tag included) and return every line up to and
    /// including the tagged one.
    async fn cmd(&mut self, line: &str) -> Vec<String> {
        let tag = line.split_whitespace().next().unwrap().to_string();
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        loop {
            let mut l = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.read.read_line(&mut l))
                .await
                .expect("reply within 30 s")
                .unwrap();
            assert!(n > 0, "connection closed after {out:?}");
            let done = l.starts_with(&format!("{tag} "));
            out.push(l.trim_end().to_string());
            if done {
                return out;
            }
        }
    }
}

fn last(lines: &[String]) -> &str {
    lines.last().map(String::as_str).unwrap_or_default()
}

async fn transcript_states_errors_and_basic_commands(d: Demo) {
    let (mut c, greeting) = Raw::connect(&d.imap).await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    let caps = c.cmd("a1 CAPABILITY").await;
    let upper = caps[0].to_ascii_uppercase();
    assert!(
        upper.contains("IMAP4REV1") && upper.contains("AUTH=PLAIN"),
        "{caps:?}"
    );
    assert!(
        caps[0].contains("STARTTLS") && caps[0].contains("IDLE"),
        "{caps:?}"
    );
    assert!(
        caps[0].contains("MOVE") && caps[0].contains("UIDPLUS"),
        "{caps:?}"
    );
    // Commands of the wrong state: BAD, and the connection stays.
    let r = c.cmd("a2 SELECT INBOX").await;
    assert!(last(&r).starts_with("a2 BAD"), "{r:?}");
    let r = c.cmd("a3 FROBNICATE").await;
    assert!(last(&r).contains("BAD"), "{r:?}");
    let r = c.cmd("a4 LOGIN alice@example.com wrong").await;
    assert!(last(&r).starts_with("a4 NO"), "{r:?}");
    let r = c.cmd("a5 LOGIN alice@example.com alice").await;
    assert!(last(&r).starts_with("a5 OK"), "{r:?}");
    let r = c.cmd("a6 FETCH 1 FLAGS").await;
    assert!(
        last(&r).starts_with("a6 BAD") && last(&r).contains("SELECT"),
        "{r:?}"
    );
    let r = c.cmd("a7 LIST \"\" *").await;
    assert!(
        r.iter()
            .any(|l| l == "* LIST (\\HasNoChildren) \"/\" INBOX"),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|l| l.contains("\\Sent") && l.ends_with("\"Sent Items\"")),
        "{r:?}"
    );
    let r = c.cmd("a8 SELECT INBOX").await;
    assert!(r.iter().any(|l| l == "* 4 EXISTS"), "{r:?}");
    assert!(r.iter().any(|l| l.contains("[UIDVALIDITY ")), "{r:?}");
    assert!(r.iter().any(|l| l.contains("[UIDNEXT 5]")), "{r:?}");
    assert!(last(&r).starts_with("a8 OK [READ-WRITE]"), "{r:?}");
    let r = c.cmd("a9 UID FETCH 1:* (FLAGS)").await;
    assert_eq!(r.len(), 5, "{r:?}");
    assert!(
        r[0].starts_with("* 1 FETCH (UID 1 FLAGS (\\Seen))"),
        "{r:?}"
    );
    let r = c.cmd("e1 FETCH 1 (ENVELOPE)").await;
    assert!(
        r[0].starts_with(
            "* 1 FETCH (ENVELOPE (\"Mon, 16 Nov 2026 09:00:00 +0000\" \"Quarterly report\" \
             ((\"Bob Example\" NIL \"bob\" \"example.com\")) ((\"Bob Example\" NIL \"bob\" \"example.com\")) \
             ((\"Bob Example\" NIL \"bob\" \"example.com\")) ((\"Alice Example\" NIL \"alice\" \"example.com\")) \
             NIL NIL NIL \"<seed-plain@example.com>\"))"
        ),
        "{r:?}"
    );
    let r = c.cmd("e2 FETCH 3 (BODYSTRUCTURE)").await;
    assert_eq!(
        r[0],
        // Names and values keep the case of the message, as Dovecot's do.
        "* 3 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 33 0 NIL NIL NIL NIL)\
         (\"application\" \"pdf\" (\"name\" \"invoice-2026-117.pdf\") NIL NIL \"base64\" 104 NIL \
         (\"attachment\" (\"filename\" \"invoice-2026-117.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"mix\") NIL NIL NIL))",
        "{r:?}"
    );
    let r = c.cmd("e3 FETCH 3 (BODY.PEEK[1] BODY.PEEK[2.MIME])").await;
    assert!(r[0].starts_with("* 3 FETCH (BODY[1] {33}"), "{r:?}");
    assert!(r.iter().any(|l| l.contains("BODY[2.MIME] {")), "{r:?}");
    let r = c
        .cmd("e4 FETCH 4 (BODY.PEEK[2.HEADER.FIELDS (SUBJECT)])")
        .await;
    assert!(
        r.iter()
            .any(|l| l.contains("Subject: Server maintenance window")),
        "{r:?}"
    );
    let r = c.cmd("a10 UID SEARCH UNSEEN").await;
    assert_eq!(r[0], "* SEARCH 2 3 4");
    // Content keys: the bytes are fetched (in $batch) and searched.
    let r = c.cmd("s1 UID SEARCH SUBJECT quarterly").await;
    assert_eq!(r[0], "* SEARCH 1", "{r:?}");
    let r = c.cmd("s2 SEARCH FROM bob@example.com NOT SEEN").await;
    assert!(
        r[0].starts_with("* SEARCH") && !r[0].contains(" 1 "),
        "{r:?}"
    );
    let r = c
        .cmd("s3 SEARCH OR BODY \"report is ready\" LARGER 100000")
        .await;
    assert_eq!(r[0], "* SEARCH 1", "{r:?}");
    let r = c.cmd("s4 SEARCH HEADER Message-ID seed-plain").await;
    assert_eq!(r[0], "* SEARCH 1", "{r:?}");
    let r = c.cmd("a11 STATUS INBOX (MESSAGES UNSEEN UIDNEXT)").await;
    assert!(r[0].starts_with("* STATUS INBOX ("), "{r:?}");
    assert!(
        r[0].contains("MESSAGES 4") && r[0].contains("UNSEEN 3"),
        "{r:?}"
    );
    let r = c.cmd("a12 LOGOUT").await;
    assert!(r.iter().any(|l| l.starts_with("* BYE")), "{r:?}");
    assert!(last(&r).starts_with("a12 OK"), "{r:?}");
}

async fn two_sessions_on_one_folder_see_each_others_changes(d: Demo) {
    let (mut a, _) = Raw::connect(&d.imap).await;
    let (mut b, _) = Raw::connect(&d.imap).await;
    a.cmd("a1 LOGIN alice@example.com alice").await;
    b.cmd("b1 LOGIN alice@example.com alice").await;
    a.cmd("a2 SELECT INBOX").await;
    b.cmd("b2 SELECT INBOX").await;
    let r = a.cmd("a3 STORE 4 +FLAGS (\\Flagged)").await;
    assert!(r[0].starts_with("* 4 FETCH (FLAGS (\\Flagged"), "{r:?}");
    let r = b.cmd("b3 NOOP").await;
    assert!(
        r.iter()
            .any(|l| l.starts_with("* 4 FETCH (UID 4 FLAGS (") && l.contains("\\Flagged")),
        "{r:?}"
    );
    // Nothing new: nothing said.
    let r = b.cmd("b4 NOOP").await;
    assert_eq!(r.len(), 1, "{r:?}");
    a.cmd("a4 STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    let r = a.cmd("a5 EXPUNGE").await;
    assert_eq!(r[0], "* 2 EXPUNGE", "{r:?}");
    let r = b.cmd("b5 NOOP").await;
    assert!(r.contains(&"* 2 EXPUNGE".to_string()), "{r:?}");
    let r = b.cmd("b6 FETCH 1:* (UID)").await;
    assert_eq!(r.len(), 4, "three messages left: {r:?}");
    // UIDPLUS: COPY answers COPYUID; MOVE sends it before its EXPUNGE.
    let r = a.cmd("a6 UID COPY 1 Archive").await;
    assert!(last(&r).starts_with("a6 OK [COPYUID "), "{r:?}");
    assert!(last(&r).contains(" 1 1]"), "{r:?}");
    let r = a.cmd("a7 UID MOVE 3 Archive").await;
    assert!(
        r[0].starts_with("* OK [COPYUID ") && r[0].contains(" 3 2]"),
        "{r:?}"
    );
    assert_eq!(r[1], "* 2 EXPUNGE", "{r:?}");
}

async fn async_imap_reads_flags_appends_moves_and_expunges(d: Demo) {
    let tcp = TcpStream::connect(&d.imap).await.unwrap();
    let mut client = async_imap::Client::new(tcp);
    let _greeting = client.read_response().await.unwrap();
    let mut s = client
        .login("bob@example.com", "bob")
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let inbox = s.select("INBOX").await.unwrap();
    let exists = inbox.exists;
    assert!(exists >= 1, "bob's seeded Inbox");
    // Sizes are exact: RFC822.SIZE equals the bytes of BODY[].
    let fetched: Vec<_> = s
        .uid_fetch("1:*", "(UID RFC822.SIZE BODY.PEEK[])")
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(fetched.len() as u32, exists);
    for f in &fetched {
        let f = f.as_ref().unwrap();
        assert_eq!(f.size.unwrap() as usize, f.body().unwrap().len());
        // PEEK leaves \Seen alone.
    }
    // APPEND a message, find it by its APPENDUID-less UID.
    let msg = "From: bob@example.com\r\nTo: bob@example.com\r\nSubject: appended by async-imap\r\n\r\nhello\r\n";
    s.append("INBOX", Some("(\\Seen)"), None, msg)
        .await
        .unwrap();
    let found = s.uid_search("SEEN").await.unwrap();
    assert!(!found.is_empty());
    let mailbox = s.select("INBOX").await.unwrap();
    assert_eq!(mailbox.exists, exists + 1);
    // Flag it, move it to Archive, expunge nothing left behind.
    let newest = *s.uid_search("ALL").await.unwrap().iter().max().unwrap();
    let stored: Vec<_> = s
        .uid_store(newest.to_string(), "+FLAGS (\\Flagged)")
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(stored.len(), 1);
    let flags: Vec<String> = stored[0]
        .as_ref()
        .unwrap()
        .flags()
        .map(|f| format!("{f:?}"))
        .collect();
    assert!(flags.iter().any(|f| f.contains("Flagged")), "{flags:?}");
    s.uid_mv(newest.to_string(), "Archive").await.unwrap();
    let archive = s.select("Archive").await.unwrap();
    assert_eq!(archive.exists, 1);
    let inbox = s.select("INBOX").await.unwrap();
    assert_eq!(inbox.exists, exists);
    // \Deleted + EXPUNGE removes the oldest message (to Deleted Items).
    s.store("1", "+FLAGS (\\Deleted)")
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await;
    let expunged: Vec<_> = s.expunge().await.unwrap().collect::<Vec<_>>().await;
    assert_eq!(expunged.len(), 1);
    let trash = s.select("Deleted Items").await.unwrap();
    assert_eq!(trash.exists, 1);
    s.logout().await.unwrap();
}

async fn implicit_tls_with_python_imaplib(d: Demo) {
    if Command::new("python3").arg("--version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "python3 is missing on CI");
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let (host, port) = d.imaps.rsplit_once(':').unwrap();
    let script = format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("{host}", {port}, ssl_context=ctx)
m.login("alice@example.com", "alice")
typ, boxes = m.list()
assert typ == "OK" and any(b'"Sent Items"' in b for b in boxes), boxes
typ, data = m.select("INBOX")
assert typ == "OK" and data == [b"4"], data
typ, data = m.uid("FETCH", "1", "(RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert typ == "OK", data
assert b"Subject: Quarterly report" in data[0][1], data
typ, data = m.search(None, "FLAGGED")
assert typ == "OK" and data == [b"3"], data
m.logout()
print("imaplib ok")
"#
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("imaplib ok"),
        "{text}"
    );
}

async fn curl_lists_fetches_and_appends(d: Demo) {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "curl is missing on CI");
        eprintln!("skipped: curl is not installed");
        return;
    }
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--user", "alice@example.com:alice"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let list = curl(&[&format!("imap://{}/", d.imap)]);
    assert!(list.contains("\"Deleted Items\""), "{list}");
    let one = curl(&[&format!("imap://{}/INBOX;UID=1", d.imap)]);
    assert!(
        one.starts_with("From: Bob Example <bob@example.com>"),
        "{one}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.eml");
    std::fs::write(
        &file,
        "From: alice@example.com\r\nTo: alice@example.com\r\nSubject: via curl\r\n\r\nappended\r\n",
    )
    .unwrap();
    curl(&[
        &format!("imap://{}/Drafts", d.imap),
        "-T",
        file.to_str().unwrap(),
    ]);
    let search = curl(&[&format!("imap://{}/Drafts", d.imap), "-X", "UID SEARCH ALL"]);
    assert!(search.contains("* SEARCH 1"), "{search}");
    let fetched = curl(&[&format!(
        "imap://{}/Drafts;UID=1;SECTION=HEADER.FIELDS%20(SUBJECT)",
        d.imap
    )]);
    assert!(fetched.contains("Subject: via curl"), "{fetched}");
    let _ = &d.sim;
    let _ = Path::new(".");
}

/// The gateway as `graphgate serve` next to a `graphgate sim`, so it can be
/// restarted while the tenant lives on.
mod restart {
    use super::*;

    use support::{Sim, sim as start_sim};

    fn sim() -> Sim {
        start_sim(true)
    }

    async fn data_dir(sim: &Sim) -> tempfile::TempDir {
        use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
        let dir = tempfile::tempdir().unwrap();
        graphgate::config::write_private_file(
            &dir.path().join("graphgate.toml"),
            format!(
                "data_dir = {data:?}\n[microsoft]\nauthority_url = {url:?}\ngraph_url = {url:?}\n\
                 tenant = {DEMO_TENANT_ID:?}\nclient_id = {DEMO_PUBLIC_CLIENT_ID:?}\n\
                 [smtp]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n\
                 [imap]\nlisten = \"127.0.0.1:0\"\nimplicit_tls_listen = \"\"\nidle_poll_s = 1\n[pop3]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n",
                data = dir.path().display().to_string(),
                url = sim.url
            )
            .as_bytes(),
        )
        .unwrap();
        let store = graphgate::store::Store::open(dir.path()).unwrap();
        let account = store
            .add_account(&graphgate::store::NewAccount {
                login: "alice@example.com".into(),
                password: graphgate::secret::Secret::new("alice".into()),
                mailbox: "alice@example.com".into(),
                auth_profile: graphgate::store::AuthProfile::Delegated,
                aliases: vec![],
                shared_mailboxes: vec!["support@example.com".into()],
            })
            .unwrap();
        let tokens =
            graphgate::cli::sign_in_via_simulator_with(&sim.url, "alice@example.com", true)
                .await
                .unwrap();
        let key = graphgate::store::StoreKey::load(dir.path()).unwrap();
        graphgate::account::save_tokens(&store, &key, account.id, &tokens).unwrap();
        dir
    }

    fn serve(dir: &Path) -> (Proc, String) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("gateway.log"))
            .unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(dir.join("graphgate.toml"))
            .stdout(Stdio::piped())
            .env("RUST_LOG", "graphgate=debug")
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let lines = banner(&mut child, "graphgate is running");
        let line = lines.last().unwrap();
        let imap = line
            .split("IMAP ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .to_string();
        (Proc(child), imap)
    }

    async fn deliver(sim: &Sim, subject: &str) {
        deliver_to(sim, "alice@example.com", subject).await
    }

    async fn deliver_to(sim: &Sim, to: &str, subject: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/_sim/mail/deliver?to={to}", sim.url))
            .body(format!(
                "From: x@external.example\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n"
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    #[tokio::test]
    async fn uids_and_uidvalidity_survive_a_restart_and_offline_changes_appear() {
        let sim = sim();
        let dir = data_dir(&sim).await;
        let (gw, imap) = serve(dir.path());
        let (mut c, _) = Raw::connect(&imap).await;
        c.cmd("a LOGIN alice@example.com alice").await;
        let before = c.cmd("b SELECT INBOX").await;
        let validity = before
            .iter()
            .find(|l| l.contains("UIDVALIDITY"))
            .unwrap()
            .clone();
        let uids_before = c.cmd("c UID FETCH 1:* (FLAGS)").await;
        drop(c);
        drop(gw);
        // While graphgate is down, mail arrives.
        deliver(&sim, "while you were out").await;
        let (_gw, imap) = serve(dir.path());
        let (mut c, _) = Raw::connect(&imap).await;
        c.cmd("a LOGIN alice@example.com alice").await;
        let after = c.cmd("b SELECT INBOX").await;
        assert!(after.contains(&validity), "{after:?} lacks {validity}");
        let n = uids_before.len() - 1;
        assert!(
            after.iter().any(|l| *l == format!("* {} EXISTS", n + 1)),
            "{after:?}"
        );
        let uids_after = c.cmd("c UID FETCH 1:* (FLAGS)").await;
        assert_eq!(&uids_after[..n], &uids_before[..n]);
        assert!(
            uids_after[n].starts_with(&format!("* {} FETCH (UID {} ", n + 1, n + 1)),
            "{uids_after:?}"
        );
    }

    /// The message cache is a cache: wiped while the gateway runs, its
    /// contents are fetched again and served the same.
    #[tokio::test]
    async fn a_wiped_message_cache_serves_the_same_bytes_again() {
        let sim = sim();
        let dir = data_dir(&sim).await;
        let (_gw, imap) = serve(dir.path());
        let (mut c, _) = Raw::connect(&imap).await;
        c.cmd("a LOGIN alice@example.com alice").await;
        c.cmd("b SELECT INBOX").await;
        let first = c.cmd("c FETCH 1 (RFC822.SIZE BODY.PEEK[])").await;
        assert!(first.last().unwrap().starts_with("c OK"), "{first:?}");
        let cache = dir.path().join("cache");
        let mut removed = 0;
        for sub in std::fs::read_dir(&cache).unwrap() {
            for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
                removed += 1;
            }
        }
        assert!(removed > 0, "nothing was cached under {cache:?}");
        let again = c.cmd("d FETCH 1 (RFC822.SIZE BODY.PEEK[])").await;
        assert!(again.last().unwrap().starts_with("d OK"), "{again:?}");
        assert_eq!(first[..first.len() - 1], again[..again.len() - 1]);
    }

    #[tokio::test]
    async fn idle_reports_new_mail_without_the_client_asking() {
        let sim = sim();
        let dir = data_dir(&sim).await;
        let (_gw, imap) = serve(dir.path());
        let (mut c, _) = Raw::connect(&imap).await;
        c.cmd("a LOGIN alice@example.com alice").await;
        let sel = c.cmd("b SELECT INBOX").await;
        let exists: u32 = sel
            .iter()
            .find_map(|l| l.strip_suffix(" EXISTS")?.strip_prefix("* ")?.parse().ok())
            .unwrap();
        c.write.write_all(b"c IDLE\r\n").await.unwrap();
        let mut line = String::new();
        c.read.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("+ "), "{line}");
        deliver(&sim, "pushed").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut l = String::new();
            tokio::time::timeout(deadline - Instant::now(), c.read.read_line(&mut l))
                .await
                .expect("EXISTS while idling")
                .unwrap();
            if l.trim_end() == format!("* {} EXISTS", exists + 1) {
                break;
            }
        }
        c.write.write_all(b"DONE\r\n").await.unwrap();
        let mut l = String::new();
        c.read.read_line(&mut l).await.unwrap();
        assert!(l.starts_with("c OK"), "{l}");
    }

    #[tokio::test]
    async fn shared_mailboxes_appear_under_the_shared_namespace() {
        let sim = sim();
        let dir = data_dir(&sim).await;
        let (_gw, imap) = serve(dir.path());
        deliver_to(&sim, "support@example.com", "ticket 4711").await;
        let (mut c, _) = Raw::connect(&imap).await;
        c.cmd("a LOGIN alice@example.com alice").await;
        let ns = c.cmd("n NAMESPACE").await;
        assert!(ns[0].contains("((\"Shared/\" \"/\"))"), "{ns:?}");
        let list = c.cmd("l LIST \"\" \"Shared/*\"").await;
        let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
        let all = c.cmd("l2 LIST \"\" *").await;
        assert!(list.len() > 1, "{list:?}\n{all:?}\n{log}");
        assert!(
            list.iter()
                .any(|l| l.contains("\\Noselect") && l.ends_with("Shared/support@example.com")),
            "{list:?}"
        );
        assert!(
            list.iter()
                .any(|l| l.ends_with("Shared/support@example.com/INBOX")),
            "{list:?}"
        );
        let sel = c.cmd("s SELECT Shared/support@example.com/INBOX").await;
        assert!(sel.last().unwrap().starts_with("s OK"), "{sel:?}");
        let found = c.cmd("f UID SEARCH SUBJECT \"ticket 4711\"").await;
        assert!(found[0].starts_with("* SEARCH "), "{found:?}");
        assert_ne!(found[0], "* SEARCH", "{found:?}");
        // Moving from a shared mailbox into alice's own is refused clearly.
        let mv = c.cmd("m MOVE 1 INBOX").await;
        assert!(
            mv.last().unwrap().contains("between two mailboxes"),
            "{mv:?}"
        );
        c.cmd("o LOGOUT").await;

        // A helpdesk handler that only reads INBOX: the shared mailbox's
        // Inbox becomes alice's INBOX, her own Inbox moves aside.
        let out = Command::new(BIN)
            .args([
                "accounts",
                "set",
                "alice@example.com",
                "--imap-inbox",
                "Shared/support@example.com/INBOX",
                "--config",
            ])
            .arg(dir.path().join("graphgate.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let (mut c, _) = Raw::connect(&imap).await;
        c.cmd("a LOGIN alice@example.com alice").await;
        let list = c.cmd("l LIST \"\" *").await;
        assert!(list.iter().any(|l| l.ends_with(" INBOX")), "{list:?}");
        assert!(
            list.iter().any(|l| l.contains("\"Inbox (mailbox)\"")),
            "{list:?}"
        );
        assert!(
            !list
                .iter()
                .any(|l| l.ends_with("Shared/support@example.com/INBOX")),
            "{list:?}"
        );
        c.cmd("s SELECT INBOX").await;
        let found = c.cmd("f UID SEARCH SUBJECT \"ticket 4711\"").await;
        assert_ne!(found[0], "* SEARCH", "{found:?}");
    }
}

/// What IMAP serves for a message — RFC822.SIZE, BODY[], HEADER, TEXT,
/// parts, chunks by size — describes one byte stream, which does not
/// change once served, whether the tenant kept the bytes a client
/// appended (or sent) or re-rendered them as Exchange does.
async fn each_message_is_one_unchanging_byte_stream(d: Demo) {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let appended = "from: Bob Example <bob@example.com>\r\nto: bob@example.com\r\n\
        subject: one stream\r\n (appended)\r\nmessage-id: <one-stream-append@example.com>\r\n\
        content-type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\ncontent-type: text/plain\r\n\r\n\
        caf\u{e9} line one\r\nline two\r\n--b1\r\ncontent-type: application/octet-stream; name=x.bin\r\n\
        content-transfer-encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--b1--\r\n";
    let sent = "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\n\
        Subject: one stream (sent)\r\nMessage-ID: <one-stream-smtp@example.com>\r\n\
        MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: 8bit\r\n\r\nBonjour, \u{e7}a va ?\r\n";
    let smtp: std::net::SocketAddr = d.smtp.parse().unwrap();
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.ip().to_string())
        .port(smtp.port())
        .credentials(Credentials::new("alice@example.com".into(), "alice".into()))
        .authentication(vec![Mechanism::Plain])
        .build();
    let envelope = lettre::address::Envelope::new(
        Some("alice@example.com".parse().unwrap()),
        vec!["bob@example.com".parse().unwrap()],
    )
    .unwrap();
    mailer.send_raw(&envelope, sent.as_bytes()).await.unwrap();

    let tcp = TcpStream::connect(&d.imap).await.unwrap();
    let mut client = async_imap::Client::new(tcp);
    let _greeting = client.read_response().await.unwrap();
    let mut s = client
        .login("bob@example.com", "bob")
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    s.append("INBOX", None, None, appended).await.unwrap();
    s.select("INBOX").await.unwrap();
    // The SMTP delivery arrives when the spool has sent it: poll.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (uid_appended, uid_sent) = loop {
        let a = s
            .uid_search("HEADER Message-ID <one-stream-append@example.com>")
            .await;
        let b = s
            .uid_search("HEADER Message-ID <one-stream-smtp@example.com>")
            .await;
        let (a, b) = (a.unwrap(), b.unwrap());
        if let (Some(a), Some(b)) = (a.iter().next(), b.iter().next()) {
            break (*a, *b);
        }

        assert!(
            Instant::now() < deadline,
            "the messages are not both there: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.noop().await.unwrap();
    };

    let mut first = Vec::new();
    for (uid, original) in [(uid_appended, appended), (uid_sent, sent)] {
        let fetched: Vec<_> = s
            .uid_fetch(
                uid.to_string(),
                "(RFC822.SIZE BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODYSTRUCTURE)",
            )
            .await
            .unwrap()
            .collect::<Vec<_>>()
            .await;
        let f = fetched[0].as_ref().unwrap();
        let body = f.body().unwrap().to_vec();
        assert_eq!(f.size.unwrap() as usize, body.len(), "RFC822.SIZE is exact");
        let mut joined = f.header().unwrap().to_vec();
        joined.extend_from_slice(f.text().unwrap());
        assert_eq!(joined, body, "HEADER + TEXT is BODY[]");
        if uid == uid_appended {
            // The APPENDed bytes are the UID's own (mailbox/appended.rs).
            assert_eq!(body, original.as_bytes(), "APPEND's bytes are served");
        } else if d.exchange_mime {
            assert_ne!(body, original.as_bytes(), "the tenant re-rendered it");
        }
        // The content is the same message either way.
        let parsed = mail_parser::MessageParser::default().parse(&body).unwrap();
        let wanted = mail_parser::MessageParser::default()
            .parse(original.as_bytes())
            .unwrap();
        assert_eq!(parsed.subject(), wanted.subject());
        // (lettre ends DATA with one more CRLF than the message has.)
        let text = |m: &mail_parser::Message<'_>| m.body_text(0).map(|t| t.trim_end().to_string());
        assert_eq!(text(&parsed), text(&wanted));
        assert_eq!(parsed.message_id(), wanted.message_id());
        assert_eq!(
            parsed.attachment(0).map(|a| a.contents().to_vec()),
            wanted.attachment(0).map(|a| a.contents().to_vec())
        );
        // A client reading in chunks by RFC822.SIZE gets the same bytes.
        let mut chunks = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let fetched: Vec<_> = s
                .uid_fetch(uid.to_string(), format!("(BODY.PEEK[]<{at}.100>)"))
                .await
                .unwrap()
                .collect::<Vec<_>>()
                .await;
            let chunk = fetched[0].as_ref().unwrap().body().unwrap().to_vec();
            assert!(!chunk.is_empty() && chunk.len() <= 100);
            at += chunk.len();
            chunks.extend_from_slice(&chunk);
        }
        assert_eq!(chunks, body, "chunks by RFC822.SIZE make BODY[]");
        first.push((uid, body));
    }
    s.logout().await.unwrap();

    // Another session later serves the very same bytes.
    let tcp = TcpStream::connect(&d.imap).await.unwrap();
    let mut client = async_imap::Client::new(tcp);
    let _greeting = client.read_response().await.unwrap();
    let mut s = client
        .login("bob@example.com", "bob")
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    s.examine("INBOX").await.unwrap();
    for (uid, body) in first {
        let fetched: Vec<_> = s
            .uid_fetch(uid.to_string(), "(RFC822.SIZE BODY.PEEK[])")
            .await
            .unwrap()
            .collect::<Vec<_>>()
            .await;
        let f = fetched[0].as_ref().unwrap();
        assert_eq!(f.body().unwrap(), &body[..]);
        assert_eq!(f.size.unwrap() as usize, body.len());
    }
    s.logout().await.unwrap();
}

/// `graphgate accounts set LOGIN …` against the demo's data directory.
fn accounts_set(d: &Demo, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["accounts", "set"])
        .args(args)
        .arg("--data-dir")
        .arg(d.dir.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    text
}

async fn alice(d: &Demo) -> Raw {
    let (mut c, _) = Raw::connect(&d.imap).await;
    let r = c.cmd("l LOGIN alice@example.com alice").await;
    assert!(last(&r).starts_with("l OK"), "{r:?}");
    c
}

fn exists(lines: &[String]) -> u32 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
        .unwrap_or_else(|| panic!("no EXISTS in {lines:?}"))
}

/// The per-account settings a helpdesk's mail handler needs: the folder
/// it reads as INBOX, and fetched mail not kept on the server.
async fn a_mail_handler_reads_its_own_inbox_folder_and_leaves_nothing_behind(d: Demo) {
    let ticket = |n: u32| {
        format!(
            "From: customer@fabrikam.example\r\nTo: alice@example.com\r\n\
             Subject: ticket {n}\r\nMessage-ID: <ticket-{n}@fabrikam.example>\r\n\r\nplease help\r\n"
        )
    };
    let mut c = alice(&d).await;
    let seeded = exists(&c.cmd("s SELECT INBOX").await);
    let r = c.cmd("c CREATE INBOX/Tickets").await;
    assert!(last(&r).starts_with("c OK"), "{r:?}");
    for n in [1, 2] {
        let m = ticket(n);
        let r = c
            .cmd(&format!(
                "a{n} APPEND INBOX/Tickets {{{}+}}\r\n{m}",
                m.len()
            ))
            .await;
        assert!(last(&r).contains("OK"), "{r:?}");
    }
    c.cmd("o LOGOUT").await;

    let said = accounts_set(
        &d,
        &[
            "alice@example.com",
            "--imap-inbox",
            "INBOX/Tickets",
            "--keep-fetched",
            "no",
        ],
    );
    assert!(said.contains("INBOX/Tickets"), "{said}");

    // The handler sees the Tickets folder as INBOX; the mailbox's own
    // Inbox is still there under another name, with its messages.
    let mut c = alice(&d).await;
    let list = c.cmd("l LIST \"\" *").await;
    assert!(list.iter().any(|l| l.ends_with(" INBOX")), "{list:?}");
    assert!(
        list.iter().any(|l| l.contains("\"Inbox (mailbox)\"")),
        "{list:?}"
    );
    assert!(!list.iter().any(|l| l.contains("Tickets")), "{list:?}");
    let status = c.cmd("st STATUS \"Inbox (mailbox)\" (MESSAGES)").await;
    assert!(
        status[0].contains(&format!("MESSAGES {seeded}")),
        "{status:?}"
    );
    let r = c.cmd("s select inbox").await;
    assert_eq!(exists(&r), 2, "{r:?}");
    let r = c.cmd("f FETCH 1 (RFC822)").await;
    assert!(r.iter().any(|l| l.contains("Subject: ticket 1")), "{r:?}");
    // Peeking at a header is not fetching the message.
    c.cmd("h FETCH 2 (BODY.PEEK[HEADER])").await;
    c.cmd("o LOGOUT").await;

    // What it fetched is gone from the server (to Deleted Items); the
    // rest stays.
    let mut c = alice(&d).await;
    let r = c.cmd("s SELECT INBOX").await;
    assert_eq!(exists(&r), 1, "{r:?}");
    let r = c
        .cmd("f FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await;
    assert!(r.iter().any(|l| l.contains("ticket 2")), "{r:?}");
    let r = c.cmd("t STATUS \"Deleted Items\" (MESSAGES)").await;
    assert!(r[0].contains("MESSAGES 1"), "{r:?}");
    // A connection that drops after fetching deletes nothing.
    c.cmd("g FETCH 1 (BODY[])").await;
    drop(c);
    let mut c = alice(&d).await;
    let r = c.cmd("s SELECT INBOX").await;
    assert_eq!(exists(&r), 1, "{r:?}");
    c.cmd("o LOGOUT").await;

    // Back to the mailbox's own Inbox, keeping fetched mail.
    accounts_set(
        &d,
        &[
            "alice@example.com",
            "--imap-inbox",
            "",
            "--keep-fetched",
            "yes",
        ],
    );
    let mut c = alice(&d).await;
    assert_eq!(exists(&c.cmd("s SELECT INBOX").await), seeded);
    let r = c.cmd("f FETCH 1:* (RFC822)").await;
    assert!(last(&r).starts_with("f OK"), "{r:?}");
    let r = c.cmd("t STATUS INBOX/Tickets (MESSAGES)").await;
    assert!(r[0].contains("MESSAGES 1"), "{r:?}");
    c.cmd("o LOGOUT").await;
    let mut c = alice(&d).await;
    assert_eq!(exists(&c.cmd("s SELECT INBOX").await), seeded);
}

/// Debian's mutt in batch mode: it sends through graphgate's SMTP and
/// files its copy (`record`) into a folder over graphgate's IMAP — its
/// own LOGIN, SELECT/STATUS and APPEND.
async fn mutt_in_batch_mode_files_its_copy_over_imap(d: Demo) {
    let found = Command::new("which")
        .arg("mutt")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").is_err(), "mutt is missing on CI");
        eprintln!("skipped: mutt is not installed (scripts/test installs it)");
        return;
    }
    let mut c = alice(&d).await;
    let r = c.cmd("c CREATE \"Mutt Copies\"").await;
    assert!(last(&r).starts_with("c OK"), "{r:?}");
    let home = d.dir.path().join("mutt-imap-home");
    std::fs::create_dir_all(&home).unwrap();
    let rc = home.join("muttrc");
    std::fs::write(
        &rc,
        format!(
            "set smtp_url=\"smtp://alice@example.com@{smtp}/\"\nset smtp_pass=\"alice\"\n\
             set imap_user=\"alice@example.com\"\nset imap_pass=\"alice\"\n\
             set ssl_starttls=no\nset ssl_force_tls=no\nset from=\"alice@example.com\"\n\
             set use_from=yes\nset copy=yes\nset record=\"imap://{imap}/Mutt Copies\"\n\
             set hostname=\"example.com\"\nset confirmcreate=no\n",
            smtp = d.smtp,
            imap = d.imap,
        ),
    )
    .unwrap();
    let mut child = Command::new("mutt")
        .arg("-F")
        .arg(&rc)
        .args(["-s", "filed by mutt", "--", "bob@example.com"])
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"Filed over IMAP\n").unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = c.cmd("s SELECT \"Mutt Copies\"").await;
    assert_eq!(
        exists(&r),
        1,
        "{r:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = c
        .cmd("f FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await;
    assert!(
        r.iter().any(|l| l.contains("Subject: filed by mutt")),
        "{r:?}"
    );
    c.cmd("o LOGOUT").await;
}
