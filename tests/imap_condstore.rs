//! CONDSTORE and QRESYNC (RFC 7162) with ENABLE (RFC 5161) over a real
//! socket: Python's imaplib against `graphgate demo` speaks each protocol
//! point — `* ENABLED`, `[HIGHESTMODSEQ]`, FETCH MODSEQ and CHANGEDSINCE,
//! STORE UNCHANGEDSINCE and `[MODIFIED]`, SEARCH MODSEQ, STATUS
//! HIGHESTMODSEQ, unsolicited FETCH with MODSEQ, VANISHED instead of
//! EXPUNGE, UID FETCH … VANISHED, SELECT … QRESYNC — and a
//! Thunderbird-like reconnect to a folder of 10,000 messages after one
//! change made in Graph costs a few Graph requests and returns only that
//! change (counted by the simulator's `/_sim/stats`).

mod support;

use std::time::Duration;

use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::sim::{SimConfig, SimState};
use graphgate::store::{NewAccount, Store, StoreKey};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const PROTOCOL: &str = r#"
import imaplib, re, sys
host, port = sys.argv[1].rsplit(':', 1)

def connect():
    c = imaplib.IMAP4(host, int(port))
    c.login('alice@example.com', 'alice')
    return c

def run(c, *args):
    typ, data = c._simple_command(*args)
    got = {k: list(v) for k, v in c.untagged_responses.items()}
    c.untagged_responses.clear()
    return typ, data, got

def fetches(got):
    out = {}
    for line in got.get('FETCH', []):
        if isinstance(line, tuple):
            line = line[0]
        line = line.decode()
        uid = re.search(r'UID (\d+)', line)
        modseq = re.search(r'MODSEQ \((\d+)\)', line)
        out[int(uid.group(1)) if uid else int(line.split()[0])] = (
            int(modseq.group(1)) if modseq else None, line)
    return out

a = connect()
assert 'CONDSTORE' in a.capabilities and 'QRESYNC' in a.capabilities, a.capabilities

# SELECT ... (QRESYNC ...) before ENABLE QRESYNC is refused (§3.2.5).
try:
    run(a, 'SELECT', 'INBOX', '(QRESYNC (1 1))')
    raise SystemExit('SELECT QRESYNC without ENABLE was accepted')
except imaplib.IMAP4.error as e:
    assert 'ENABLE QRESYNC' in str(e), e

# ENABLE names what it enabled (RFC 5161 §3.2), once.
typ, data, got = run(a, 'ENABLE', 'QRESYNC')
assert typ == 'OK' and got.get('ENABLED') == [b'QRESYNC'], got
typ, data, got = run(a, 'ENABLE', 'QRESYNC', 'X-UNKNOWN')
assert typ == 'OK' and got.get('ENABLED') in ([b''], [None]), got

typ, data, got = run(a, 'SELECT', 'INBOX', '(CONDSTORE)')
a.state = 'SELECTED'
assert typ == 'OK', data
highest = int(got['HIGHESTMODSEQ'][0])
uidvalidity = int(got['UIDVALIDITY'][0])
exists = int(got['EXISTS'][-1])
assert exists >= 3, got

typ, data, got = run(a, 'FETCH', '1:*', '(UID FLAGS MODSEQ)')
first = fetches(got)
assert len(first) == exists and all(0 < m <= highest for m, _ in first.values()), first
uids = sorted(first)

# STORE (UNCHANGEDSINCE): applied, with the new MODSEQ in its FETCH ...
typ, data, got = run(a, 'STORE', '1', '(UNCHANGEDSINCE %d)' % highest, '+FLAGS', '(\\Flagged)')
assert typ == 'OK', data
stored = fetches(got)
m1 = list(stored.values())[0][0]
assert m1 > highest and '\\Flagged' in list(stored.values())[0][1], got
# ... and refused for a message changed since, named in [MODIFIED].
typ, data, got = run(a, 'STORE', '1', '(UNCHANGEDSINCE %d)' % highest, '-FLAGS', '(\\Flagged)')
assert typ == 'OK' and data[0].startswith(b'[MODIFIED 1]'), data
assert 'FETCH' not in got, got
typ, data, got = run(a, 'UID', 'STORE', str(uids[0]), '(UNCHANGEDSINCE %d)' % highest, '+FLAGS', '(\\Seen)')
assert data[0].startswith(b'[MODIFIED %d]' % uids[0]), data

# FETCH (CHANGEDSINCE): only what changed after the value, MODSEQ implied.
typ, data, got = run(a, 'UID', 'FETCH', '1:*', '(FLAGS)', '(CHANGEDSINCE %d)' % highest)
changed = fetches(got)
assert list(changed) == [uids[0]] and changed[uids[0]][0] == m1, got

# SEARCH MODSEQ: the messages changed at or after it, with the highest.
typ, data, got = run(a, 'SEARCH', 'MODSEQ', str(m1))
assert got['SEARCH'] == [b'1 (MODSEQ %d)' % m1], got

# STATUS HIGHESTMODSEQ.
typ, data, got = run(a, 'STATUS', 'INBOX', '(HIGHESTMODSEQ)')
assert got['STATUS'] == [b'INBOX (HIGHESTMODSEQ %d)' % m1], got

# Another session's change reaches this one with its MODSEQ (§3.1.4)...
b = connect()
b.select('INBOX')
# A CONDSTORE-enabling command while selected tells HIGHESTMODSEQ (§3.1).
b.untagged_responses.clear()
typ, data, got = run(b, 'FETCH', '1', '(MODSEQ)')
assert typ == 'OK' and int(got['HIGHESTMODSEQ'][0]) == m1, got
assert fetches(got)[1][0] == m1, got
typ, data = b.store('2', '+FLAGS', '(\\Flagged)')
assert typ == 'OK', data
typ, data, got = run(a, 'NOOP')
told = fetches(got)
assert list(told) == [uids[1]] and told[uids[1]][0] > m1, got
m2 = told[uids[1]][0]
# ... and its expunge as VANISHED, not EXPUNGE, once QRESYNC is on (§3.2.10).
b.store('3', '+FLAGS', '(\\Deleted)')
typ, data = b.expunge()
assert typ == 'OK' and data == [b'3'], data
typ, data, got = run(a, 'NOOP')
assert got.get('VANISHED') == [b'%d' % uids[2]] and 'EXPUNGE' not in got, got
b.logout()

# UID FETCH (CHANGEDSINCE VANISHED): what vanished since, then what changed.
typ, data, got = run(a, 'UID', 'FETCH', '1:*', '(FLAGS)', '(CHANGEDSINCE %d VANISHED)' % highest)
assert got.get('VANISHED') == [b'(EARLIER) %d' % uids[2]], got
assert sorted(fetches(got)) == [uids[0], uids[1]], got
# VANISHED needs UID FETCH and CHANGEDSINCE.
try:
    run(a, 'FETCH', '1:*', '(FLAGS)', '(VANISHED)')
    raise SystemExit('FETCH (VANISHED) was accepted')
except imaplib.IMAP4.error as e:
    assert 'VANISHED' in str(e), e

# This session's own EXPUNGE: VANISHED, and [HIGHESTMODSEQ] in its OK.
run(a, 'STORE', '2', '+FLAGS.SILENT', '(\\Deleted)')
typ, data, got = run(a, 'EXPUNGE')
assert got.get('VANISHED') == [b'%d' % uids[1]] and 'EXPUNGE' not in got, got
assert data[0].startswith(b'[HIGHESTMODSEQ '), data
after = int(data[0].split(b' ')[1].rstrip(b']'))
assert after > m2, data

# SELECT of another folder ends this one with OK [CLOSED] (§3.2.11).
typ, data, got = run(a, 'SELECT', 'Archive')
assert typ == 'OK' and 'CLOSED' in got, got
a.logout()

# A reconnect: SELECT (QRESYNC ...) with what the client knew.
c = connect()
run(c, 'ENABLE', 'QRESYNC')
typ, data, got = run(c, 'SELECT', 'INBOX', '(QRESYNC (%d %d))' % (uidvalidity, highest))
assert typ == 'OK', data
assert int(got['HIGHESTMODSEQ'][0]) == after, got
both = ('%d:%d' if uids[2] == uids[1] + 1 else '%d,%d') % (uids[1], uids[2])
assert got.get('VANISHED') == [b'(EARLIER) ' + both.encode()], got
resynced = fetches(got)
assert list(resynced) == [uids[0]] and resynced[uids[0]][0] == m1, got
# Known UIDs narrow the VANISHED (EARLIER).
typ, data, got = run(c, 'SELECT', 'INBOX', '(QRESYNC (%d %d %d))' % (uidvalidity, highest, uids[2]))
assert got.get('VANISHED') == [b'(EARLIER) %d' % uids[2]], got
# Up to date: nothing to tell.
typ, data, got = run(c, 'SELECT', 'INBOX', '(QRESYNC (%d %d))' % (uidvalidity, after))
assert 'VANISHED' not in got and 'FETCH' not in got, got
# Another UIDVALIDITY: the plain SELECT answer only.
typ, data, got = run(c, 'SELECT', 'INBOX', '(QRESYNC (%d %d))' % (uidvalidity + 1, highest))
assert 'VANISHED' not in got and 'FETCH' not in got, got
c.logout()
print('ok')
"#;

#[test]
fn condstore_and_qresync_speak_rfc_7162() {
    let d = support::demo();
    support::py_with(PROTOCOL, &[&d.imap]);
}

const MESSAGES: usize = 10_000;

async fn stats(http: &reqwest::Client, sim: &str) -> serde_json::Value {
    http.get(format!("{sim}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A raw IMAP client: each command's lines, the tagged one last.
struct Client {
    read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut c = Client {
            read: BufReader::new(read),
            write,
        };
        let mut greeting = String::new();
        c.read.read_line(&mut greeting).await.unwrap();
        c
    }

    async fn cmd(&mut self, line: &str) -> Vec<String> {
        let tag = line.split(' ').next().unwrap().to_string();
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = tokio::time::timeout(Duration::from_secs(600), self.read.read_line(&mut l))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "connection closed after {lines:?}");
            let l = l.trim_end().to_string();
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }
}

/// The number after `key ` in the first line that has it.
fn number_after(lines: &[String], key: &str) -> u64 {
    lines
        .iter()
        .find_map(|l| {
            let rest = &l[l.find(key)? + key.len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {key} in {lines:#?}"))
}

/// Thunderbird's reconnect to a big folder: it knows the UIDVALIDITY and
/// HIGHESTMODSEQ of its last session and SELECTs with QRESYNC; one
/// message was read in Outlook (a Graph PATCH) meanwhile. The reconnect
/// — LOGIN, ENABLE, SELECT (QRESYNC …) — costs a handful of Graph
/// requests, not one per message or page of 10,000, and tells exactly
/// that message's change. A delta item that changes nothing IMAP shows
/// (a PATCH of the value it already has) bumps no mod-sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qresync_reconnect_after_one_change_in_ten_thousand_costs_o1_graph_requests() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_url = format!("http://{}", listener.local_addr().unwrap());
    let sim = SimState::new(SimConfig {
        public_url: sim_url.clone(),
        seed_messages: false,
        ..SimConfig::default()
    })
    .unwrap();
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(graphgate::sim::serve(listener, sim.clone(), async move {
            stop.cancelled().await
        }));
    }
    let alice = sim.tenant().user("alice@example.com").unwrap().id.clone();
    for i in 0..MESSAGES {
        let mime = format!(
            "From: sender{i}@external.example\r\nTo: alice@example.com\r\nSubject: message {i}\r\n\
             Message-ID: <m{i}@external.example>\r\n\r\nbody {i}\r\n"
        );
        sim.mail().deliver(&alice, "inbox", mime.into_bytes());
    }

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = StoreKey::load(dir.path()).unwrap();
    let account = store
        .add_account(&NewAccount::delegated("alice@example.com", "alice"))
        .unwrap();
    let tokens = graphgate::cli::sign_in_via_simulator(&sim_url, "alice@example.com")
        .await
        .unwrap();
    graphgate::account::save_tokens(&store, &key, account.id, &tokens).unwrap();
    let mut config = graphgate::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.microsoft.authority_url = sim_url.clone();
    config.microsoft.graph_url = sim_url.clone();
    config.microsoft.tenant = DEMO_TENANT_ID.into();
    config.microsoft.client_id = DEMO_PUBLIC_CLIENT_ID.into();
    config.smtp.listen = String::new();
    config.smtp.implicit_tls_listen = String::new();
    config.imap.implicit_tls_listen = String::new();
    config.pop3.listen = String::new();
    config.pop3.implicit_tls_listen = String::new();
    let mut tasks = tokio::task::JoinSet::new();
    let gateway = graphgate::gateway::listeners::start(
        &config,
        &graphgate::gateway::Runtime::from_store(
            &config,
            store.clone(),
            graphgate::gateway::KeyMode::LoadOrCreate,
        )
        .unwrap(),
        graphgate::gateway::listeners::Listen {
            imap: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        &stop,
        &mut tasks,
    )
    .await
    .unwrap();
    let imap = gateway.imap.unwrap();
    let http = reqwest::Client::new();

    // The first session: the full sync a client does once.
    let mut c = Client::connect(imap).await;
    c.cmd("a LOGIN alice@example.com alice").await;
    c.cmd("b ENABLE QRESYNC").await;
    let selected = c.cmd("c SELECT INBOX").await;
    let uidvalidity = number_after(&selected, "[UIDVALIDITY ");
    let highest = number_after(&selected, "[HIGHESTMODSEQ ");
    let all = c.cmd("d UID FETCH 1:* (UID FLAGS MODSEQ)").await;
    assert_eq!(all.len(), MESSAGES + 1);
    c.cmd("e LOGOUT").await;

    // Meanwhile, in Outlook: one message read (and one PATCHed to the
    // value it has, which delta reports again).
    let inbox = sim.mail().messages(&alice, "inbox");
    let (read_id, read_subject, _, _) = &inbox[MESSAGES / 2];
    let (same_id, _, _, _) = &inbox[MESSAGES / 3];
    let token = support::token(&sim_url, "alice@example.com").await;
    for (id, read) in [(read_id, true), (same_id, false)] {
        let response = http
            .patch(format!("{sim_url}/v1.0/users/{alice}/messages/{id}"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "isRead": read }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    // The reconnect.
    let before = stats(&http, &sim_url).await;
    let mut c = Client::connect(imap).await;
    c.cmd("f LOGIN alice@example.com alice").await;
    c.cmd("g ENABLE QRESYNC").await;
    let resync = c
        .cmd(&format!(
            "h SELECT INBOX (QRESYNC ({uidvalidity} {highest}))"
        ))
        .await;
    let after = stats(&http, &sim_url).await;
    let cost =
        after["graph_requests"].as_u64().unwrap() - before["graph_requests"].as_u64().unwrap();
    eprintln!(
        "QRESYNC reconnect to {MESSAGES} messages after one change: {cost} Graph requests {} \
         (by route before {}, after {})",
        after["batch_inner_by_route"], before["by_route"], after["by_route"]
    );
    assert!(resync.last().unwrap().starts_with("h OK"), "{resync:?}");
    assert!(cost <= 4, "{cost} Graph requests for the reconnect");
    let fetched: Vec<&String> = resync.iter().filter(|l| l.contains(" FETCH ")).collect();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert!(fetched[0].contains("\\Seen"), "{fetched:?}");
    assert!(!resync.iter().any(|l| l.contains("VANISHED")), "{resync:?}");
    // One change, one mod-sequence: the PATCH that changed nothing
    // bumped none.
    assert_eq!(number_after(&resync, "[HIGHESTMODSEQ "), highest + 1);
    // The message told is the one read in Outlook.
    let uid = number_after(
        &fetched.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "UID ",
    );
    let subject = c
        .cmd(&format!(
            "i UID FETCH {uid} (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
        ))
        .await;
    assert!(
        subject
            .iter()
            .any(|l| l.trim() == format!("Subject: {read_subject}")),
        "{subject:?}"
    );
    c.cmd("j LOGOUT").await;
    stop.cancel();
}
