//! IMAP under chaos: concurrent clients store flags, move and expunge
//! messages they each own; afterwards Graph's mailbox, the clients' views
//! and every UID any of them saw are compared.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{Gateway, PATIENCE, SHORT_N, Tenant, free_port, killer, size, timed};

/// A raw IMAP session as alice (LOGIN, allowed on loopback).
struct Imap {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    tag: u32,
}

/// The untagged lines (literals inlined) and the tagged status of one
/// command.
struct Answer {
    untagged: Vec<String>,
    status: String,
}

impl Answer {
    fn ok(&self) -> bool {
        self.status.starts_with("OK")
    }
}

/// `{n}` or `{n+}` at the end of a line: a literal of n bytes follows.
fn literal_len(line: &str) -> Option<usize> {
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].trim_end_matches('+').parse().ok()
}

impl Imap {
    async fn open(addr: &str) -> std::io::Result<Imap> {
        let (read, write) = TcpStream::connect(addr).await?.into_split();
        let mut imap = Imap {
            read: BufReader::new(read),
            write,
            tag: 0,
        };
        let greeting = imap.line().await?;
        if !greeting.starts_with("* OK") {
            return Err(std::io::Error::other(greeting));
        }
        let login = imap.command("LOGIN alice@example.com alice").await?;
        if !login.ok() {
            return Err(std::io::Error::other(login.status));
        }
        Ok(imap)
    }

    /// One response line, with any literals it announces inlined.
    async fn line(&mut self) -> std::io::Result<String> {
        let mut out = String::new();
        loop {
            let mut raw = Vec::new();
            if timed(self.read.read_until(b'\n', &mut raw)).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let text = String::from_utf8_lossy(&raw).into_owned();
            out.push_str(&text);
            match literal_len(text.trim_end()) {
                Some(len) => {
                    let mut literal = vec![0; len];
                    timed(self.read.read_exact(&mut literal)).await?;
                    out.push_str(&String::from_utf8_lossy(&literal));
                }
                None => return Ok(out.trim_end().to_string()),
            }
        }
    }

    async fn command(&mut self, command: &str) -> std::io::Result<Answer> {
        self.tag += 1;
        let tag = format!("c{}", self.tag);
        timed(
            self.write
                .write_all(format!("{tag} {command}\r\n").as_bytes()),
        )
        .await?;
        let mut untagged = Vec::new();
        loop {
            let line = self.line().await?;
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                return Ok(Answer {
                    untagged,
                    status: status.to_string(),
                });
            }
            untagged.push(line);
        }
    }

    /// SELECT `folder`, noting its UIDVALIDITY in `book`.
    async fn select(&mut self, folder: &str, book: &UidBook) -> std::io::Result<Answer> {
        let answer = self.command(&format!("SELECT \"{folder}\"")).await?;
        if answer.ok() {
            for line in &answer.untagged {
                if let Some(rest) = line.split("[UIDVALIDITY ").nth(1) {
                    let validity = rest.split(']').next().unwrap_or_default().to_string();
                    book.validity(folder, &validity);
                }
            }
        }
        Ok(answer)
    }

    /// `UID FETCH set (UID FLAGS Message-ID)` in the selected `folder`,
    /// each answer noted in `book`.
    async fn fetch(
        &mut self,
        folder: &str,
        set: &str,
        book: &UidBook,
    ) -> std::io::Result<Option<Vec<Fetched>>> {
        let answer = self
            .command(&format!(
                "UID FETCH {set} (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
            ))
            .await?;
        if !answer.ok() {
            return Ok(None);
        }
        let fetched: Vec<Fetched> = answer.untagged.iter().filter_map(|l| fetched(l)).collect();
        for f in &fetched {
            book.saw(folder, f.uid, &f.message_id);
        }
        Ok(Some(fetched))
    }
}

/// One message as a FETCH shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Fetched {
    uid: u32,
    message_id: String,
    seen: bool,
    flagged: bool,
}

fn fetched(line: &str) -> Option<Fetched> {
    let items = line.strip_prefix("* ")?.split_once(" FETCH (")?.1;
    let uid = items
        .split("UID ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let flags = items.split("FLAGS (").nth(1)?.split(')').next()?;
    let lower = items.to_ascii_lowercase();
    let at = lower.find("message-id:")? + "message-id:".len();
    let message_id = items[at..].split_whitespace().next()?.to_string();
    Some(Fetched {
        uid,
        message_id,
        seen: flags.contains("\\Seen"),
        flagged: flags.contains("\\Flagged"),
    })
}

/// Every (folder, UID) → Message-ID, (folder, Message-ID) → UID and
/// folder → UIDVALIDITY any client ever saw; a second meaning is a broken
/// promise, noted. (Each message here has its own Message-ID and never
/// comes back to a folder it left, so within one UIDVALIDITY neither map
/// may change: no UID names another message, no message is renumbered.)
#[derive(Default)]
struct UidBook {
    uids: Mutex<HashMap<(String, u32), String>>,
    messages: Mutex<HashMap<(String, String), u32>>,
    validities: Mutex<HashMap<String, String>>,
    broken: Mutex<Vec<String>>,
}

impl UidBook {
    fn saw(&self, folder: &str, uid: u32, message_id: &str) {
        let mut uids = self.uids.lock().unwrap();
        let known = uids
            .entry((folder.to_string(), uid))
            .or_insert_with(|| message_id.to_string());
        if known != message_id {
            self.broken
                .lock()
                .unwrap()
                .push(format!("{folder} UID {uid} was {known}, now {message_id}"));
        }
        let mut messages = self.messages.lock().unwrap();
        let known = messages
            .entry((folder.to_string(), message_id.to_string()))
            .or_insert(uid);
        if *known != uid {
            self.broken.lock().unwrap().push(format!(
                "{folder}: {message_id} was UID {known}, now UID {uid}"
            ));
        }
    }

    fn validity(&self, folder: &str, validity: &str) {
        let mut validities = self.validities.lock().unwrap();
        let known = validities
            .entry(folder.to_string())
            .or_insert_with(|| validity.to_string());
        if known != validity {
            self.broken
                .lock()
                .unwrap()
                .push(format!("{folder} UIDVALIDITY was {known}, now {validity}"));
        }
    }
}

/// What a client does to one message, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Seen,
    Flag,
    Delete,
    Expunge,
    Move,
}

impl Op {
    fn command(self, uid: u32) -> String {
        match self {
            Op::Seen => format!("UID STORE {uid} +FLAGS.SILENT (\\Seen)"),
            Op::Flag => format!("UID STORE {uid} +FLAGS.SILENT (\\Flagged)"),
            Op::Delete => format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"),
            Op::Expunge => format!("UID EXPUNGE {uid}"),
            Op::Move => format!("UID MOVE {uid} {MOVED}"),
        }
    }
}

fn plan(j: usize) -> &'static [Op] {
    match j % 5 {
        0 => &[Op::Seen],
        1 => &[Op::Seen, Op::Flag],
        2 => &[Op::Flag, Op::Move],
        3 => &[Op::Delete, Op::Expunge],
        _ => &[Op::Seen, Op::Move],
    }
}

const MOVED: &str = "Moved";

/// The last answer each operation got: OK, NO/BAD, or none (the
/// connection died, every time it was tried).
#[derive(Debug, Clone, PartialEq)]
enum Acked {
    Ok,
    Refused(String),
    Unknown,
}

/// A session with INBOX selected, waiting for the gateway to come back.
async fn imap_session(addr: &str, book: &UidBook) -> Imap {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let attempt = async {
            let mut imap = Imap::open(addr).await?;
            let selected = imap.select("INBOX", book).await?;
            if selected.ok() {
                Ok(imap)
            } else {
                Err(std::io::Error::other(selected.status))
            }
        };
        match attempt.await {
            Ok(imap) => return imap,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no IMAP session at {addr} for {PATIENCE:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A folder as Graph has it: Message-ID → (isRead, flagged), and how many
/// copies of each.
async fn graph_folder(
    tenant: &Tenant,
    token: &str,
    folder: &str,
) -> (BTreeMap<String, (bool, bool)>, HashMap<String, usize>) {
    let mut state = BTreeMap::new();
    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in tenant
        .messages(token, folder, "internetMessageId,isRead,flag")
        .await
    {
        let mid = m["internetMessageId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *copies.entry(mid.clone()).or_default() += 1;
        state.insert(
            mid,
            (m["isRead"] == true, m["flag"]["flagStatus"] == "flagged"),
        );
    }
    (state, copies)
}

/// A client's view of a folder in the same terms.
fn imap_folder(fetched: &[Fetched]) -> BTreeMap<String, (bool, bool)> {
    fetched
        .iter()
        .map(|f| (f.message_id.clone(), (f.seen, f.flagged)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imap_under_faults_and_sigkills_agrees_with_the_mailbox_and_keeps_uids() {
    let started = Instant::now();
    let m = (size() / 10).max(48);
    let clients = 4;
    let kills = if m > SHORT_N / 10 { 5 } else { 3 };
    let run = format!("{:x}", rand::random::<u32>());

    let tenant = Tenant::start();
    let token = tenant.token("alice@example.com").await;
    let moved_id = tenant.create_folder(&token, MOVED).await;
    let ids: Vec<String> = (0..m)
        .map(|j| format!("<imap-chaos-{j}.{run}@example.com>"))
        .collect();
    for (j, mid) in ids.iter().enumerate() {
        tenant
            .deliver(
                "alice@example.com",
                &format!(
                    "From: x@external.example\r\nTo: alice@example.com\r\n\
                     Subject: imap chaos {j}\r\nMessage-ID: {mid}\r\n\r\nbody {j}\r\n"
                ),
            )
            .await;
    }
    let imap_addr = format!("127.0.0.1:{}", free_port());
    let mut gateway = Gateway::new(&tenant, "", &imap_addr).await;
    tokio::task::block_in_place(|| gateway.start());

    // Before the chaos: every message's UID.
    let book = Arc::new(UidBook::default());
    let mut first = imap_session(&imap_addr, &book).await;
    let listed = first.fetch("INBOX", "1:*", &book).await.unwrap().unwrap();
    let uid_of: HashMap<String, u32> = listed
        .iter()
        .map(|f| (f.message_id.clone(), f.uid))
        .collect();
    assert_eq!(uid_of.len(), m, "{listed:?}");
    drop(first);

    tenant.faults_on().await;
    let total_ops: usize = (0..m).map(|j| plan(j).len()).sum();
    let done = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<BTreeMap<(usize, usize), Acked>>> = Arc::default();
    let interrupted = Arc::new(AtomicUsize::new(0));
    let killing = killer(gateway, kills, total_ops, done.clone(), done.clone());
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (done, acked, book) = (done.clone(), acked.clone(), book.clone());
        let interrupted = interrupted.clone();
        let addr = imap_addr.clone();
        let mine: Vec<(usize, u32)> = (c..m)
            .step_by(clients)
            .map(|j| (j, uid_of[&ids[j]]))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut session: Option<Imap> = None;
            for (j, uid) in mine {
                for (k, op) in plan(j).iter().enumerate() {
                    // A dropped connection leaves the operation undecided:
                    // try it again (each is idempotent) on a new one.
                    let mut outcome = Acked::Unknown;
                    for _ in 0..10 {
                        let mut imap = match session.take() {
                            Some(imap) => imap,
                            None => imap_session(&addr, &book).await,
                        };
                        let Ok(answer) = imap.command(&op.command(uid)).await else {
                            interrupted.fetch_add(1, Ordering::SeqCst);
                            continue;
                        };
                        outcome = if answer.ok() {
                            Acked::Ok
                        } else {
                            Acked::Refused(answer.status.clone())
                        };
                        // What the UID means now (still in INBOX unless
                        // moved or expunged).
                        if imap.fetch("INBOX", &uid.to_string(), &book).await.is_ok() {
                            session = Some(imap);
                        }
                        break;
                    }
                    acked.lock().unwrap().insert((j, k), outcome);
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
            session
        }));
    }
    let mut survivors = Vec::new();
    for task in tasks {
        survivors.push(task.await.unwrap());
    }
    let mut gateway = killing.await.unwrap();
    let worked_in = started.elapsed();
    tenant.faults_off().await;
    gateway.assert_alive();
    gateway.sample_rss();
    gateway.assert_no_panic();

    // The mailbox as Graph has it.
    let (inbox, inbox_copies) = graph_folder(&tenant, &token, "inbox").await;
    let (moved, moved_copies) = graph_folder(&tenant, &token, &moved_id).await;
    let (deleted, deleted_copies) = graph_folder(&tenant, &token, "deleteditems").await;
    let mut problems = Vec::new();
    let acked = acked.lock().unwrap().clone();
    let (mut ok, mut refused, mut unknown) = (0, BTreeMap::<String, usize>::new(), 0);
    for outcome in acked.values() {
        match outcome {
            Acked::Ok => ok += 1,
            Acked::Refused(why) => {
                // The reason's first two parts ("NO Graph refused the
                // MOVE: Graph answered 503 …"), without the details
                // that name the message.
                let why = why.splitn(3, ": ").take(2).collect::<Vec<_>>().join(": ");
                *refused.entry(why).or_default() += 1;
            }
            Acked::Unknown => unknown += 1,
        }
    }
    for (j, mid) in ids.iter().enumerate() {
        let n = |copies: &HashMap<String, usize>| copies.get(mid).copied().unwrap_or(0);
        let (i, mv, d) = (n(&inbox_copies), n(&moved_copies), n(&deleted_copies));
        if i + mv + d != 1 {
            problems.push(format!(
                "{mid}: {i} in INBOX, {mv} in {MOVED}, {d} in Deleted Items"
            ));
            continue;
        }
        let state = inbox.get(mid).or(moved.get(mid)).or(deleted.get(mid));
        let (read, flagged) = state.copied().unwrap_or_default();
        let ops = plan(j);
        let acked_ok = |op: Op| {
            ops.iter()
                .position(|o| *o == op)
                .is_some_and(|k| acked[&(j, k)] == Acked::Ok)
        };
        let mut promise = |what: &str, kept: bool| {
            if !kept {
                problems.push(format!("{mid}: {what} was acknowledged but did not happen"));
            }
        };
        if acked_ok(Op::Seen) {
            promise("\\Seen", read);
        }
        if acked_ok(Op::Flag) {
            promise("\\Flagged", flagged);
        }
        if acked_ok(Op::Move) {
            promise("MOVE", mv == 1);
        }
        if acked_ok(Op::Delete) && acked_ok(Op::Expunge) {
            promise("\\Deleted + UID EXPUNGE", d == 1);
        }
        if !ops.contains(&Op::Move) && !ops.contains(&Op::Expunge) {
            promise("nothing moved it, yet it left INBOX:", i == 1);
        }
    }

    // Every client's view: the session it still holds (after a NOOP;
    // one opened before the last kill is gone), then a fresh one.
    let mut views = 0;
    for (c, session) in survivors.into_iter().enumerate() {
        if let Some(mut imap) = session
            && imap.command("NOOP").await.is_ok()
        {
            let seen = imap.fetch("INBOX", "1:*", &book).await.unwrap().unwrap();
            if imap_folder(&seen) != inbox {
                problems.push(format!(
                    "client {c}'s open session sees INBOX as {:?}, Graph as {inbox:?}",
                    imap_folder(&seen)
                ));
            }
            views += 1;
        }
        let mut imap = imap_session(&imap_addr, &book).await;
        for (folder, graph) in [("INBOX", &inbox), (MOVED, &moved)] {
            let selected = imap.select(folder, &book).await.unwrap();
            assert!(selected.ok(), "SELECT {folder}: {}", selected.status);
            let seen = imap.fetch(folder, "1:*", &book).await.unwrap().unwrap();
            if imap_folder(&seen) != *graph {
                problems.push(format!(
                    "client {c} sees {folder} as {:?}, Graph as {graph:?}",
                    imap_folder(&seen)
                ));
            }
            views += 1;
        }
    }
    let broken = book.broken.lock().unwrap().clone();
    println!(
        "chaos imap: messages={m} clients={clients} kills={} ops={total_ops} ok={ok} \
         refused={refused:?} unknown={unknown} interrupted={} inbox={} moved={} deleted={} views_compared={views} \
         uids_seen={} uid_meaning_changes={} problems={} peak_rss_kb={} worked_in={:.1}s total={:.1}s",
        gateway.kills,
        interrupted.load(Ordering::SeqCst),
        inbox.len(),
        moved.len(),
        deleted.len(),
        book.uids.lock().unwrap().len(),
        broken.len(),
        problems.len(),
        gateway.peak_rss_kb,
        worked_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        gateway.kills, kills,
        "the gateway was not killed as planned"
    );
    assert!(
        broken.is_empty(),
        "UIDs changed meaning: {broken:#?}\ngateway log:\n{}",
        gateway.log_tail()
    );
    assert!(
        problems.is_empty(),
        "{problems:#?}\ngateway log:\n{}",
        gateway.log_tail()
    );
}
