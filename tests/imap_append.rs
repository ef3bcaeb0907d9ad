//! APPEND that keeps the message (issue 17), over real sockets against the
//! demo: Python's imaplib APPENDs, the simulated Graph is read back over
//! HTTP as any Graph client would read the item.

use serde_json::Value;

mod support;

#[path = "support/dovecot.rs"]
mod dovecot;

use support::{demo, demo_exact_mime, py_with, token};

/// A reply from a mailing list, shaped like real mail: a Received chain,
/// list fields, a sender distinct from From, Reply-To, threading fields, a
/// non-UTC Date and custom X- fields.
const REPLY: &str = "Return-Path: <list-bounces@lists.example.org>\r
Received: from mx.example.org (mx.example.org [192.0.2.1])\r
\tby mail.example.com with ESMTPS id 4Q; Mon, 7 Dec 2026 10:00:02 +0100\r
Received: from ann.example.org by mx.example.org; Mon, 7 Dec 2026 10:00:01 +0100\r
From: \"Ann Example\" <ann@example.org>\r
Sender: Dev List <list-bounces@lists.example.org>\r
Reply-To: dev@lists.example.org\r
To: Dev List <dev@lists.example.org>\r
Cc: bob@example.com\r
Subject: Re: release plans\r
Date: Mon, 7 Dec 2026 10:00:00 +0100\r
Message-ID: <r1.ann@example.org>\r
In-Reply-To: <q1.bob@example.com>\r
References: <p1.carol@example.net>\r
 <q1.bob@example.com>\r
List-Id: Developers <dev.lists.example.org>\r
Precedence: list\r
X-TUID: Xy7pQ3kLm9Ab\r
X-Mailer: Example Mailer 1.0\r
MIME-Version: 1.0\r
Content-Type: text/plain; charset=utf-8\r
\r
Sounds good to me.\r
";

/// APPEND `message` to INBOX as alice through imaplib.
fn append(imap: &str, message: &str) {
    py_with(
        r#"
import imaplib, sys
host, port = sys.argv[1].rsplit(':', 1)
c = imaplib.IMAP4(host, int(port))
c.login('alice@example.com', 'alice')
typ, data = c.append('INBOX', '(\\Seen)', None, sys.argv[2].encode())
assert typ == 'OK', data
assert b'APPENDUID' in data[0], data
c.logout()
"#,
        &[imap, message],
    );
}

async fn stats(sim: &str) -> Value {
    reqwest::get(format!("{sim}/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Requests per route between two snapshots, only the routes that moved.
fn routes_between(before: &Value, after: &Value) -> Vec<(String, u64)> {
    let empty = serde_json::Map::new();
    let b = before["by_route"].as_object().unwrap_or(&empty);
    after["by_route"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|(route, n)| {
            let n = n.as_u64()? - b.get(route).and_then(Value::as_u64).unwrap_or(0);
            (n > 0).then(|| (route.clone(), n))
        })
        .collect()
}

#[tokio::test]
async fn append_creates_one_non_draft_item_with_the_headers_graph_can_hold() {
    // Reads back the item's own header fields: the simulator must store
    // the bytes the item was made of, not Exchange's rendering.
    let d = demo_exact_mime();
    let before = stats(&d.sim).await;
    append(&d.imap, REPLY);
    let after = stats(&d.sim).await;
    let moved = routes_between(&before, &after);
    let creates: Vec<&(String, u64)> = moved
        .iter()
        .filter(|(r, _)| {
            (r.starts_with("POST") || r.starts_with("DELETE")) && !r.contains("$batch")
        })
        .collect();
    // The `$batch` is the folder sync's (GETs of the new item's extended
    // properties), not part of the creation.
    let inner: Vec<(String, u64)> = {
        let b = before["batch_inner_by_route"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        after["batch_inner_by_route"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(r, n)| {
                let n = n.as_u64()? - b.get(&r).and_then(Value::as_u64).unwrap_or(0);
                (n > 0).then_some((r, n))
            })
            .collect()
    };
    assert!(inner.iter().all(|(r, _)| r.starts_with("GET")), "{inner:?}");
    eprintln!(
        "Graph requests for one APPEND (creation + the folder's sync): {moved:?}, batched: {inner:?}"
    );
    // One request makes the item: no draft, no re-creation, no delete.
    assert_eq!(
        creates.len(),
        1,
        "write requests for one APPEND: {creates:?} (all: {moved:?})"
    );
    assert!(creates[0].0.contains("mailFolders"), "{creates:?}");
    assert_eq!(creates[0].1, 1, "{creates:?}");

    let token = token(&d.sim, "alice@example.com").await;
    let http = reqwest::Client::new();
    let list: Value = http
        .get(format!(
            "{}/v1.0/me/mailFolders/inbox/messages?$top=100&$filter=internetMessageId eq '<r1.ann@example.org>'",
            d.sim
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = list["value"]
        .as_array()
        .and_then(|v| {
            v.iter()
                .find(|m| m["internetMessageId"] == "<r1.ann@example.org>")
        })
        .unwrap_or_else(|| panic!("no item with the Message-ID: {list}"))
        .clone();
    assert_eq!(item["isDraft"], false, "{item}");
    assert_eq!(item["isRead"], true, "{item}");
    assert_eq!(item["sentDateTime"], "2026-12-07T09:00:00Z", "{item}");
    assert_eq!(
        item["from"]["emailAddress"]["name"], "Ann Example",
        "{item}"
    );
    let id = item["id"].as_str().unwrap();
    let mime = http
        .get(format!("{}/v1.0/me/messages/{id}/$value", d.sim))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let head = mime
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    for field in [
        "From: \"Ann Example\" <ann@example.org>",
        "Sender: \"Dev List\" <list-bounces@lists.example.org>",
        "Reply-To: dev@lists.example.org",
        "Date: Mon, 07 Dec 2026 09:00:00 +0000",
        "Message-ID: <r1.ann@example.org>",
        "In-Reply-To: <q1.bob@example.com>",
        "References: <p1.carol@example.net> <q1.bob@example.com>",
        "X-TUID: Xy7pQ3kLm9Ab",
        "X-Mailer: Example Mailer 1.0",
    ] {
        assert!(
            head.contains(field),
            "{field:?} missing from Graph's MIME:\n{head}"
        );
    }
    // The rest of the header block is in the transport headers property.
    let expanded: Value = http
        .get(format!(
            "{}/v1.0/me/messages/{id}?$expand=singleValueExtendedProperties($filter=id eq 'String 0x007D')",
            d.sim
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let transport = expanded["singleValueExtendedProperties"]
        .as_array()
        .and_then(|p| p.first())
        .and_then(|p| p["value"].as_str())
        .unwrap_or_else(|| panic!("no transport headers: {expanded}"))
        .to_string();
    for field in [
        "Return-Path:",
        "Received: from mx.example.org",
        "List-Id:",
        "Precedence: list",
    ] {
        assert!(
            transport.contains(field),
            "{field:?} not in 0x007D: {transport}"
        );
    }
}

/// Real-world shaped messages beside the fixtures: a forwarded message
/// (attached `message/rfc822`) and an HTML mail whose only attachment is
/// an inline image (`hasAttachments` is false for it in Graph).
const FORWARDED: &str = "From: Frank Example <frank@example.com>\r
To: Grace <grace@example.com>\r
Subject: Fwd: budget\r
Date: Tue, 8 Dec 2026 08:00:00 -0500\r
Message-ID: <fwd.rt@example.com>\r
X-Forwarded-By: frank\r
MIME-Version: 1.0\r
Content-Type: multipart/mixed; boundary=\"outer\"\r
\r
--outer\r
Content-Type: text/plain; charset=utf-8\r
\r
See below.\r
--outer\r
Content-Type: message/rfc822\r
\r
From: Heidi <heidi@example.com>\r
To: frank@example.com\r
Subject: budget\r
Date: Mon, 7 Dec 2026 09:00:00 +0100\r
Message-ID: <budget.rt@example.com>\r
References: <plan.rt@example.com>\r
\r
The numbers.\r
--outer--\r
";

const INLINE_IMAGE: &str = "From: News <news@example.org>\r
To: alice@example.com\r
Subject: logo\r
Date: Tue, 8 Dec 2026 09:00:00 +0000\r
Message-ID: <inline.rt@example.org>\r
MIME-Version: 1.0\r
Content-Type: multipart/related; boundary=\"rel\"\r
\r
--rel\r
Content-Type: text/html; charset=utf-8\r
\r
<p>Hi</p><img src=\"cid:logo@example.org\">\r
--rel\r
Content-Type: image/png\r
Content-ID: <logo@example.org>\r
Content-Transfer-Encoding: base64\r
\r
iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==\r
--rel--\r
";

/// imaplib APPENDs every file of a directory, FETCHes each back by its
/// APPENDUID (BODY[] and RFC822.SIZE), and the script prints, per header
/// field, how many messages had it, how many IMAP served back with it and
/// how many Graph's own MIME (`$value` of the item) has; then the same
/// FETCH again in a new session (after the test empties the content cache
/// in between, see below).
const ROUND_TRIP: &str = r#"
import imaplib, json, os, re, sys, urllib.request, email.parser
host, port = sys.argv[1].rsplit(':', 1)
folder, sim, token, out = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
crlf = lambda b: re.sub(rb'\r\n|\r(?!\n)|\n', b'\r\n', b)
def fields(raw):
    head = re.split(rb'\r\n\r\n', raw, 1)[0]
    return sorted({l.split(b':', 1)[0].strip().lower().decode('latin-1')
                   for l in head.split(b'\r\n') if l and l[:1] not in b' \t' and b':' in l})
c = imaplib.IMAP4(host, int(port))
c.login('alice@example.com', 'alice')
c.select('INBOX')
report = {}
for name in sorted(os.listdir(folder)):
    raw = crlf(open(os.path.join(folder, name), 'rb').read())
    typ, data = c.append('INBOX', None, None, raw)
    assert typ == 'OK', (name, data)
    uid = int(re.search(rb'APPENDUID \d+ (\d+)', data[0]).group(1))
    typ, got = c.uid('FETCH', str(uid), '(RFC822.SIZE BODY.PEEK[])')
    assert typ == 'OK', (name, got)
    served = got[0][1]
    size = int(re.search(rb'RFC822.SIZE (\d+)', got[0][0]).group(1))
    assert served == raw.replace(b'\0', b'\x80'), (name, served[:300], raw[:300])
    assert size == len(served), (name, size, len(served))
    mid = re.search(rb'(?im)^message-id:\s*(<[^>\r\n]*>)', raw)
    graph = None
    if mid:
        q = urllib.parse.quote("internetMessageId eq '%s'" % mid.group(1).decode('latin-1').replace("'", "''"))
        req = urllib.request.Request(sim + '/v1.0/me/mailFolders/inbox/messages?$filter=' + q,
                                     headers={'Authorization': 'Bearer ' + token})
        items = json.load(urllib.request.urlopen(req))['value']
        if items:
            req = urllib.request.Request(sim + '/v1.0/me/messages/' + items[-1]['id'] + '/$value',
                                         headers={'Authorization': 'Bearer ' + token})
            graph = fields(crlf(urllib.request.urlopen(req).read()))
    report[name] = {'uid': uid, 'original': fields(raw), 'imap': fields(served), 'graph': graph}
c.logout()
json.dump(report, open(out, 'w'))
"#;

/// The second reading: every UID serves the same bytes from a new session.
const REREAD: &str = r#"
import imaplib, json, re, sys
host, port = sys.argv[1].rsplit(':', 1)
report = json.load(open(sys.argv[2]))
folder = sys.argv[3]
crlf = lambda b: re.sub(rb'\r\n|\r(?!\n)|\n', b'\r\n', b)
c = imaplib.IMAP4(host, int(port))
c.login('alice@example.com', 'alice')
c.select('INBOX', readonly=True)
for name, r in report.items():
    raw = crlf(open(folder + '/' + name, 'rb').read()).replace(b'\0', b'\x80')
    typ, got = c.uid('FETCH', str(r['uid']), '(BODY.PEEK[])')
    assert typ == 'OK' and got[0][1] == raw, (name, got[0][1][:200] if got and got[0] else got)
c.logout()
"#;

#[tokio::test]
async fn appended_messages_come_back_byte_for_byte_and_graph_keeps_the_threading_headers() {
    let d = demo();
    let dir = tempfile::tempdir().unwrap();
    let mime = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mime");
    for entry in std::fs::read_dir(&mime).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    for (name, text) in [
        ("90-list-reply.eml", REPLY),
        ("91-forwarded.eml", FORWARDED),
        ("92-inline-image.eml", INLINE_IMAGE),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let token = token(&d.sim, "alice@example.com").await;
    let out = dir.path().join("report.json");
    let folder = dir.path().join("messages");
    std::fs::create_dir(&folder).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "eml") {
            std::fs::rename(&path, folder.join(path.file_name().unwrap())).unwrap();
        }
    }
    let args = [
        d.imap.as_str(),
        folder.to_str().unwrap(),
        d.sim.as_str(),
        token.as_str(),
        out.to_str().unwrap(),
    ];
    py_with(ROUND_TRIP, &args);
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let report = report.as_object().unwrap();

    // Per header field: messages that had it, kept by IMAP, kept in
    // Graph's MIME (of those Graph could find by Message-ID).
    let mut table: std::collections::BTreeMap<String, [u32; 4]> = Default::default();
    for r in report.values() {
        let has = |list: &Value, f: &str| {
            list.as_array()
                .is_some_and(|l| l.iter().any(|x| x.as_str() == Some(f)))
        };
        for f in r["original"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            let row = table.entry(f.to_string()).or_default();
            row[0] += 1;
            row[1] += u32::from(has(&r["imap"], f));
            if !r["graph"].is_null() {
                row[2] += 1;
                row[3] += u32::from(has(&r["graph"], f));
            }
        }
    }
    eprintln!("field: messages / kept by IMAP / found in Graph / kept in Graph's MIME");
    for (f, [n, imap, found, graph]) in &table {
        eprintln!("{f}: {n} / {imap} / {found} / {graph}");
        assert_eq!(n, imap, "{f}: every UID serves its APPENDed bytes");
    }
    // What Graph keeps itself, for the real-world shaped messages (the
    // fixtures include address fields no Graph recipient can hold, such as
    // `Reply-To: Some Body` and group syntax).
    for (name, r) in report.iter().filter(|(n, _)| n.starts_with('9')) {
        for f in r["original"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            let must = [
                "from",
                "sender",
                "to",
                "cc",
                "subject",
                "date",
                "message-id",
                "references",
                "in-reply-to",
                "reply-to",
            ]
            .contains(&f)
                || f.starts_with("x-");
            let kept = r["graph"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x.as_str() == Some(f)));
            assert!(!must || kept, "{name}: {f} missing from Graph's MIME: {r}");
        }
    }

    // The content cache is emptied (as its cap would evict): a new session
    // still reads the APPENDed bytes, never Exchange's rendering.
    let cache = d.dir.path().join("cache");
    if cache.exists() {
        std::fs::remove_dir_all(&cache).unwrap();
    }
    py_with(
        REREAD,
        &[
            d.imap.as_str(),
            out.to_str().unwrap(),
            folder.to_str().unwrap(),
        ],
    );
}

/// APPEND of an `mb` MB message (one attachment) through imaplib: the
/// limit announced is smtp.max_message_size (35 MB by default, Exchange
/// Online's default), the message comes back byte for byte, and the Graph
/// item holds the attachment with its exact size.
const LARGE: &str = r#"
import base64, imaplib, json, os, re, sys, urllib.parse, urllib.request
host, port = sys.argv[1].rsplit(':', 1)
sim, token, mb = sys.argv[2], sys.argv[3], int(sys.argv[4])
# A message of about `mb` MB: base64 makes the payload 4/3 larger.
payload = os.urandom(mb * 1024 * 1024 * 3 // 4 - 4096)
b64 = base64.encodebytes(payload).replace(b'\n', b'\r\n')
mid = '<large-%d.rt@example.com>' % mb
msg = (b'From: Big Sender <big@example.com>\r\nTo: alice@example.com\r\n'
       b'Subject: large ' + str(mb).encode() + b' MB\r\nDate: Tue, 8 Dec 2026 10:00:00 +0000\r\n'
       b'Message-ID: ' + mid.encode() + b'\r\nX-TUID: large' + str(mb).encode() + b'\r\n'
       b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
       b'--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n'
       b'--b\r\nContent-Type: application/octet-stream; name="data.bin"\r\n'
       b'Content-Disposition: attachment; filename="data.bin"\r\n'
       b'Content-Transfer-Encoding: base64\r\n\r\n' + b64 + b'--b--\r\n')
c = imaplib.IMAP4(host, int(port))
typ, caps = c.capability()
assert b'APPENDLIMIT=36700160' in caps[0], caps
c.login('alice@example.com', 'alice')
typ, data = c.append('INBOX', None, None, msg)
assert typ == 'OK', data
uid = int(re.search(rb'APPENDUID \d+ (\d+)', data[0]).group(1))
c.select('INBOX', readonly=True)
typ, got = c.uid('FETCH', str(uid), '(RFC822.SIZE BODY.PEEK[])')
assert typ == 'OK' and got[0][1] == msg, 'the large message comes back byte for byte'
c.logout()
auth = {'Authorization': 'Bearer ' + token}
q = urllib.parse.quote("internetMessageId eq '%s'" % mid)
items = json.load(urllib.request.urlopen(urllib.request.Request(
    sim + '/v1.0/me/mailFolders/inbox/messages?$filter=' + q, headers=auth)))['value']
assert len(items) == 1 and items[0]['isDraft'] is False, items
atts = json.load(urllib.request.urlopen(urllib.request.Request(
    sim + '/v1.0/me/messages/' + items[0]['id'] + '/attachments', headers=auth)))['value']
assert [(a['name'], a['size']) for a in atts] == [('data.bin', len(payload))], [(a['name'], a['size']) for a in atts]
got = base64.b64decode(atts[0]['contentBytes'])
assert got == payload, 'attachment bytes'
value = urllib.request.urlopen(urllib.request.Request(
    sim + '/v1.0/me/messages/' + items[0]['id'] + '/$value', headers=auth)).read()
assert b'data.bin' in value and b'X-TUID: large' in value, value[:2000]
"#;

async fn append_large(mb: u32) {
    let d = demo();
    let token = token(&d.sim, "alice@example.com").await;
    let before = stats(&d.sim).await;
    py_with(LARGE, &[&d.imap, &d.sim, &token, &mb.to_string()]);
    let after = stats(&d.sim).await;
    let moved = routes_between(&before, &after);
    eprintln!("Graph requests for an APPEND with a {mb} MB attachment: {moved:?}");
    assert!(
        moved
            .iter()
            .any(|(r, _)| r.contains("attachments/createUploadSession")),
        "the attachment goes through an upload session: {moved:?}"
    );
}

#[tokio::test]
async fn append_of_a_10_mb_message_goes_through_an_upload_session() {
    append_large(10).await;
}

/// 30 MB: slower (a minute in a debug build); run with `--ignored`.
#[tokio::test]
#[ignore]
async fn append_of_a_30_mb_message_goes_through_an_upload_session() {
    append_large(30).await;
}

fn maildir_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            out.extend(entries.flatten().map(|e| e.path()));
        }
    }
    out.sort();
    out
}

fn run_mbsync(config: &std::path::Path) -> String {
    let out = std::process::Command::new("mbsync")
        .arg("-c")
        .arg(config)
        .arg("-V")
        .arg("push")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mbsync failed:\n{text}");
    text
}

/// mbsync pushes a Maildir of the MIME fixtures into a new folder; each
/// comes back byte for byte (mbsync's CRLF form), and a second sync
/// changes nothing on either side: no duplicates, no re-download.
#[tokio::test]
async fn mbsync_pushes_the_fixtures_and_a_second_sync_changes_nothing() {
    let found = std::process::Command::new("which")
        .arg("mbsync")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").is_err(), "mbsync is missing on CI");
        eprintln!("skipped: mbsync is not installed (scripts/test installs isync)");
        return;
    }
    let d = demo();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("mail").join("Pushed");
    std::fs::create_dir_all(local.join("cur")).unwrap();
    std::fs::create_dir_all(local.join("new")).unwrap();
    std::fs::create_dir_all(local.join("tmp")).unwrap();
    let mime = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mime");
    let mut names: Vec<_> = std::fs::read_dir(&mime)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for (i, path) in names.iter().enumerate() {
        std::fs::copy(path, local.join("new").join(format!("{i}.fixture:2,"))).unwrap();
    }
    // The real-world shaped ones too: a list reply, a forward with the
    // original attached, HTML with an inline image.
    std::fs::write(local.join("new").join("90.reply:2,S"), REPLY).unwrap();
    std::fs::write(local.join("new").join("91.forwarded:2,S"), FORWARDED).unwrap();
    std::fs::write(local.join("new").join("92.inline:2,"), INLINE_IMAGE).unwrap();
    let port = d.imap.rsplit_once(':').unwrap().1;
    let config = work.path().join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "IMAPAccount gg\nHost 127.0.0.1\nPort {port}\nUser alice@example.com\nPass alice\n\
             SSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount gg\n\n\
             MaildirStore local\nPath {root}/\n\n\
             Channel push\nFar :remote:Pushed\nNear :local:Pushed\nCreate Far\nExpunge Both\n\
             SyncState *\n",
            root = work.path().join("mail").display(),
        ),
    )
    .unwrap();
    run_mbsync(&config);
    let first = maildir_files(&local);
    assert_eq!(first.len(), names.len() + 3, "{first:?}");
    let state = std::fs::read_to_string(local.join(".mbsyncstate")).unwrap();
    run_mbsync(&config);
    let second = maildir_files(&local);
    assert_eq!(second, first, "a second sync changes nothing locally");
    assert_eq!(
        std::fs::read_to_string(local.join(".mbsyncstate")).unwrap(),
        state,
        "a second sync changes nothing in mbsync's state"
    );
    // Remotely: one message per pair in mbsync's state (far UID, near UID;
    // mbsync skips a message without a blank line after its header, the
    // header-only fixture), each with the bytes mbsync sent (CRLF line
    // ends; the near UID is the `,U=` of the file name).
    let script = r#"
import imaplib, os, re, sys
host, port = sys.argv[1].rsplit(':', 1)
state, files = sys.argv[2], sys.argv[3:]
pairs = [l.split() for l in open(state).read().split('\n\n', 1)[1].splitlines() if l.strip()]
pairs = [(far, near) for far, near, *_ in pairs if far != '0' and near != '0']
by_near = {re.search(r',U=(\d+)', f).group(1): f for f in files}
c = imaplib.IMAP4(host, int(port))
c.login('alice@example.com', 'alice')
typ, data = c.select('Pushed', readonly=True)
assert int(data[0]) == len(pairs), ('messages in Pushed', data, pairs)
assert len(pairs) >= len(files) - 1, (pairs, files)
for far, near in pairs:
    local = re.sub(rb'\r\n|\r(?!\n)|\n', b'\r\n', open(by_near[near], 'rb').read())
    typ, got = c.uid('FETCH', far, '(BODY.PEEK[])')
    assert typ == 'OK', got
    # mbsync puts its X-TUID field into what it uploads (in place of one
    # the message had): served back too.
    tuid = rb'X-TUID: [^\r\n]*\r\n'
    served, tuids = re.subn(tuid, b'', got[0][1])
    assert tuids == 1, (by_near[near], got[0][1][:400])
    local = re.sub(tuid, b'', local)
    assert served == local.replace(b'\0', b'\x80'), (by_near[near], served[:300], local[:300])
c.logout()
"#;
    let mut args = vec![
        d.imap.clone(),
        local.join(".mbsyncstate").to_string_lossy().to_string(),
    ];
    args.extend(second.iter().map(|p| p.to_string_lossy().to_string()));
    py_with(script, &args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Each message APPENDed to graphgate and to a Dovecot of our own: the
/// ENVELOPE, BODYSTRUCTURE, BODY and RFC822.SIZE graphgate answers for the
/// new UID are Dovecot's, byte for byte (media types in the case the
/// message writes them).
const SAME_AS_DOVECOT: &str = r#"
import imaplib, os, re, sys
gg_host, gg_port = sys.argv[1].rsplit(':', 1)
dv_port, folder = int(sys.argv[2]), sys.argv[3]
crlf = lambda b: re.sub(rb'\r\n|\r(?!\n)|\n', b'\r\n', b)
gg = imaplib.IMAP4(gg_host, int(gg_port)); gg.login('alice@example.com', 'alice'); gg.select('INBOX')
dv = imaplib.IMAP4('127.0.0.1', dv_port); dv.login('u', 'x'); dv.select('INBOX')
def quoted(b):
    return b'"' + b.replace(b'\\', b'\\\\').replace(b'"', b'\\"') + b'"'
def answer(c, uid, what):
    typ, got = c.uid('FETCH', uid, '(' + what + ')')
    assert typ == 'OK', got
    # A literal and a quoted string are the same string (RFC 3501 §4.3):
    # the literal is written quoted here.
    blob = b''.join(p if isinstance(p, bytes) else re.sub(rb'\{\d+\}$', b'', p[0]) + quoted(p[1])
                    for p in got if p is not None)
    return re.sub(rb'^\d+ \(|UID \d+ ?', b'', blob)
# graphgate shows parts nested deeper than 7 levels as one opaque part
# (mime/imap/structure.rs MAX_NESTING, for client parsers): on purpose.
KNOWN = {('25-deep-nesting.eml', 'BODYSTRUCTURE'), ('25-deep-nesting.eml', 'BODY')}
failures = []
for name in sorted(os.listdir(folder)):
    raw = crlf(open(os.path.join(folder, name), 'rb').read())
    uids = []
    for c in (gg, dv):
        typ, data = c.append('INBOX', None, None, raw)
        assert typ == 'OK', (name, data)
        uids.append(re.search(rb'APPENDUID \d+ (\d+)', data[0]).group(1).decode())
    for what in ('ENVELOPE', 'BODYSTRUCTURE', 'BODY', 'RFC822.SIZE'):
        ours, theirs = answer(gg, uids[0], what), answer(dv, uids[1], what)
        if ours != theirs and (name, what) not in KNOWN:
            failures.append('%s %s:\n  graphgate %r\n  dovecot   %r' % (name, what, ours[:600], theirs[:600]))
print('\n'.join(failures))
assert not failures, '%d differences' % len(failures)
"#;

#[tokio::test]
async fn appended_messages_answer_as_dovecot_answers() {
    let Some(binary) = dovecot::dovecot_binary() else {
        let reason = "dovecot is not installed (Debian package dovecot-imapd; \
                      scripts/test installs it)";
        assert!(std::env::var_os("CI").is_none(), "CI without {reason}");
        eprintln!("skipped: {reason}");
        return;
    };
    let dovecot = dovecot::Dovecot::start(&binary, &[]);
    let d = demo();
    let folder = tempfile::tempdir().unwrap();
    let mime = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mime");
    for entry in std::fs::read_dir(&mime).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, folder.path().join(path.file_name().unwrap())).unwrap();
    }
    for (name, text) in [
        ("90-list-reply.eml", REPLY),
        ("91-forwarded.eml", FORWARDED),
        ("92-inline-image.eml", INLINE_IMAGE),
    ] {
        std::fs::write(folder.path().join(name), text).unwrap();
    }
    py_with(
        SAME_AS_DOVECOT,
        &[
            d.imap.as_str(),
            &dovecot.port.to_string(),
            folder.path().to_str().unwrap(),
        ],
    );
}

/// A message with a NUL byte in its body (it happens: broken mailers,
/// binary pasted into text): a real server stores it. imaplib sends it in
/// a plain literal; the gateway stores it with the NUL as 0x80 (as Dovecot
/// does) and serves those bytes for the UID.
#[tokio::test]
async fn append_with_a_nul_byte_is_stored_and_served_with_0x80() {
    let d = demo();
    py_with(
        r#"
import imaplib, re, sys
host, port = sys.argv[1].rsplit(':', 1)
msg = (b'From: a@example.com\r\nTo: alice@example.com\r\nSubject: nul\r\n'
       b'Message-ID: <nul.rt@example.com>\r\n\r\nbefore\0after\r\n')
c = imaplib.IMAP4(host, int(port))
c.login('alice@example.com', 'alice')
typ, data = c.append('INBOX', None, None, msg)
assert typ == 'OK', data
uid = re.search(rb'APPENDUID \d+ (\d+)', data[0]).group(1).decode()
c.select('INBOX', readonly=True)
typ, got = c.uid('FETCH', uid, '(RFC822.SIZE BODY.PEEK[])')
assert typ == 'OK' and got[0][1] == msg.replace(b'\0', b'\x80'), got
assert b'RFC822.SIZE %d' % len(msg) in got[0][0], got
c.logout()
"#,
        &[&d.imap],
    );
}
