//! IMAP transcripts, command by command, over a real socket against the
//! demo's simulated tenant: send these lines, expect these responses.
//!
//! A transcript is text: `C:` lines are sent (a `{N+}` literal continues
//! on the following `C:` lines, joined with CRLF, and the whole literal is
//! counted for N when N is written `#`); `S:` lines are what must come
//! back, in order, up to and including the tagged line. Untagged lines
//! not listed may come in between. In an `S:` line, `…` stands for any
//! text. `W:` lines are sent without waiting for a tagged answer (IDLE's
//! DONE), `A:` waits for one more line that must match.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

mod support;

use support::demo;

struct Client {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    log: Vec<String>,
}

impl Client {
    async fn connect(addr: &str) -> Client {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        Client {
            read: BufReader::new(r),
            write: w,
            log: Vec::new(),
        }
    }

    async fn line(&mut self) -> String {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(30), self.read.read_line(&mut l))
            .await
            .unwrap_or_else(|_| panic!("no answer within 30 s:\n{}", self.log.join("\n")))
            .unwrap();
        assert!(n > 0, "connection closed:\n{}", self.log.join("\n"));
        let l = l.trim_end_matches(['\r', '\n']).to_string();
        self.log.push(format!("S: {l}"));
        l
    }

    async fn send(&mut self, bytes: &str) {
        self.log.push(format!("C: {}", bytes.trim_end()));
        self.write.write_all(bytes.as_bytes()).await.unwrap();
    }
}

/// `pattern` with `…` for any text matches `line`.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || !line[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

async fn run(addr: &str, transcript: &str) {
    let mut c = Client::connect(addr).await;
    let mut lines = transcript
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .peekable();
    // The greeting.
    let greeting = c.line().await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    let mut continued: Option<String> = None;
    while let Some(line) = lines.next() {
        if let Some(raw) = line.strip_prefix("W: ") {
            // Ends a continuation (IDLE's DONE): the answer comes with A:.
            continued = None;
            c.send(&format!("{raw}\r\n")).await;
            continue;
        }
        if let Some(want) = line.strip_prefix("A: ") {
            let got = c.line().await;
            assert!(
                matches(want, &got),
                "expected {want:?}, got {got:?}:\n{}",
                c.log.join("\n")
            );
            continue;
        }
        let Some(command) = line.strip_prefix("C: ") else {
            panic!("a transcript line must start with C:, S:, W: or A: — {line}");
        };
        // A literal: the following C: lines are its content.
        let mut text = command.to_string();
        if let Some(head) = command.strip_suffix("{#+}") {
            let mut body = String::new();
            while let Some(next) = lines.peek() {
                // (`C:` alone is an empty line of the literal.)
                let Some(l) = next.strip_prefix("C: ").or((*next == "C:").then_some("")) else {
                    break;
                };
                if l == "." {
                    lines.next();
                    break;
                }
                body.push_str(l);
                body.push_str("\r\n");
                lines.next();
            }
            text = format!("{head}{{{}+}}\r\n{body}", body.len());
        }
        // After a continuation request, a C: line is data for the same
        // command, whose tagged answer is still to come.
        let tag = match continued.take() {
            Some(tag) => tag,
            None => command.split(' ').next().unwrap().to_string(),
        };
        c.send(&format!("{text}\r\n")).await;
        let mut wanted = Vec::new();
        while let Some(next) = lines.peek() {
            let Some(s) = next.strip_prefix("S: ") else {
                break;
            };
            wanted.push(s.to_string());
            lines.next();
        }
        assert!(
            wanted
                .last()
                .is_some_and(|w| w.starts_with(&format!("{tag} ")) || w.starts_with('+')),
            "the transcript must end {tag}'s answer with its tagged line: {wanted:?} (line {line:?})"
        );
        let mut next_wanted = 0;
        loop {
            let got = c.line().await;
            if next_wanted < wanted.len() && matches(&wanted[next_wanted], &got) {
                next_wanted += 1;
            } else if got.starts_with(&format!("{tag} ")) || got.starts_with('+') {
                panic!(
                    "expected {:?} before the end of {tag}'s answer:\n{}",
                    &wanted[next_wanted..],
                    c.log.join("\n")
                );
            }
            if next_wanted == wanted.len() {
                if got.starts_with('+') {
                    continued = Some(tag.clone());
                }
                break;
            }
        }
    }
}

#[tokio::test]
async fn not_authenticated_state() {
    let d = demo();
    run(
        &d.imap,
        r#"
        C: a1 CAPABILITY
        S: * CAPABILITY IMAP4REV1 LITERAL+ IDLE UIDPLUS MOVE UNSELECT SPECIAL-USE NAMESPACE ID ENABLE CHILDREN CONDSTORE QRESYNC SORT THREAD=REFERENCES THREAD=ORDEREDSUBJECT ESEARCH SEARCHRES BINARY APPENDLIMIT=36700160 STARTTLS AUTH=PLAIN
        S: a1 OK CAPABILITY completed
        C: a2 NOOP
        S: a2 OK NOOP completed
        C: a3 ID ("name" "transcript" "version" "1")
        S: * ID ("name" "graphgate"…)
        S: a3 OK ID completed
        // Commands of a later state are refused with what to do first.
        C: a4 SELECT INBOX
        S: a4 BAD SELECT needs you to log in first
        C: a5 LIST "" *
        S: a5 BAD …
        C: a6 FROBNICATE
        S: a6 BAD …
        C: a7 LOGIN alice@example.com wrong
        S: a7 NO …
        C: a8 LOGIN nobody@example.com alice
        S: a8 NO …
        // AUTHENTICATE PLAIN with the continuation (an empty challenge).
        C: a9 AUTHENTICATE PLAIN
        S: +…
        C: AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl
        S: a9 OK [CAPABILITY IMAP4REV1…] Authenticated
        C: a10 LOGIN alice@example.com alice
        S: a10 BAD …
        C: a11 LOGOUT
        S: * BYE …
        S: a11 OK LOGOUT completed
        "#,
    )
    .await;
}

#[tokio::test]
async fn authenticated_state_folder_commands() {
    let d = demo();
    run(
        &d.imap,
        r#"
        C: b1 LOGIN bob@example.com bob
        S: b1 OK …
        C: b2 NAMESPACE
        S: * NAMESPACE (("" "/")) NIL NIL
        S: b2 OK NAMESPACE completed
        C: b3 ENABLE UTF8=ACCEPT
        S: b3 OK …
        C: b4 LIST "" ""
        S: * LIST (\Noselect) "/" ""
        S: b4 OK LIST completed
        C: b5 LIST "" *
        S: * LIST (\HasNoChildren \Archive) "/" Archive
        S: * LIST (\HasNoChildren \Trash) "/" "Deleted Items"
        S: * LIST (\HasNoChildren \Drafts) "/" Drafts
        S: * LIST (\HasNoChildren) "/" INBOX
        S: * LIST (\HasNoChildren \Junk) "/" "Junk Email"
        S: * LIST (\HasNoChildren \Sent) "/" "Sent Items"
        S: b5 OK LIST completed
        C: b6 CREATE Projects
        S: b6 OK CREATE completed
        C: b7 CREATE Projects/2026
        S: b7 OK CREATE completed
        C: b8 CREATE projects
        S: b8 NO …
        C: b8a CREATE Projects
        S: b8a NO [ALREADYEXISTS] …
        // Superior folders are created too (RFC 3501 §6.3.3).
        C: b8b CREATE Reports/2026/Q4/
        S: b8b OK CREATE completed
        C: b8c LIST "" Reports*
        S: * LIST (\HasChildren) "/" Reports
        S: * LIST (\HasChildren) "/" Reports/2026
        S: * LIST (\HasNoChildren) "/" Reports/2026/Q4
        S: b8c OK LIST completed
        C: b8d CREATE a//b
        S: b8d NO …
        C: b9 LIST "" Projects*
        S: * LIST (\HasChildren) "/" Projects
        S: * LIST (\HasNoChildren) "/" Projects/2026
        S: b9 OK LIST completed
        C: b10 LIST "" Projects/%
        S: * LIST (\HasNoChildren) "/" Projects/2026
        S: b10 OK LIST completed
        C: b11 RENAME Projects/2026 Projects/2027
        S: b11 OK RENAME completed
        C: b12 STATUS Projects/2027 (MESSAGES UIDNEXT UNSEEN RECENT)
        S: * STATUS Projects/2027 (MESSAGES 0 UIDNEXT 1 UNSEEN 0 RECENT 0)
        S: b12 OK STATUS completed
        C: b13 SUBSCRIBE Projects/2027
        S: b13 OK …
        C: b14 LSUB "" Projects/*
        S: * LSUB (\HasNoChildren) "/" Projects/2027
        S: b14 OK LSUB completed
        C: b15 UNSUBSCRIBE Projects/2027
        S: b15 OK …
        C: b16 DELETE Projects/2027
        S: b16 OK DELETE completed
        C: b17 DELETE INBOX
        S: b17 NO …
        C: b18 DELETE "Sent Items"
        S: b18 NO …
        C: b19 RENAME Nowhere Somewhere
        S: b19 NO …
        C: b20 STATUS Nowhere (MESSAGES)
        S: b20 NO …
        C: b21 SELECT Nowhere
        S: b21 NO …
        C: b22 LOGOUT
        S: * BYE …
        S: b22 OK LOGOUT completed
        "#,
    )
    .await;
}

#[tokio::test]
async fn selected_state_message_commands() {
    let d = demo();
    run(
        &d.imap,
        r#"
        C: c1 LOGIN bob@example.com bob
        S: c1 OK …
        C: c2 CREATE Work
        S: c2 OK CREATE completed
        // APPEND with flags and a date: APPENDUID names the new message.
        C: c3 APPEND Work (\Seen \Flagged) "14-Nov-2026 10:00:00 +0000" {#+}
        C: From: Carol <carol@example.com>
        C: To: bob@example.com
        C: Subject: appended for the transcript
        C: Message-ID: <transcript-1@example.com>
        C:
        C: first line
        C: .
        S: c3 OK [APPENDUID … 1] APPEND completed
        // The appended message is recent: EXAMINE shows it so and leaves
        // it for the SELECT that takes it (RFC 3501 §2.3.2, §6.3.2).
        C: c4 EXAMINE Work
        S: * 1 EXISTS
        S: * 1 RECENT
        S: c4 OK [READ-ONLY] EXAMINE completed
        C: c5 FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)
        S: * 1 FETCH (INTERNALDATE "14-Nov-2026 10:00:00 +0000" RFC822.SIZE … FLAGS (\Seen \Flagged \Recent))
        S: c5 OK FETCH completed
        C: c6 STORE 1 +FLAGS (\Answered)
        S: c6 NO …read-only…
        C: c7 SELECT Work
        S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft)
        S: * OK [UIDVALIDITY …] UIDs valid
        S: * OK [UIDNEXT 2] Predicted next UID
        S: * OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft \*)] Flags permitted
        S: * 1 EXISTS
        S: * 1 RECENT
        S: c7 OK [READ-WRITE] SELECT completed
        C: c8 FETCH 1 (ENVELOPE)
        S: * 1 FETCH (ENVELOPE (… "appended for the transcript" (("Carol" NIL "carol" "example.com")) …"<transcript-1@example.com>"))
        S: c8 OK FETCH completed
        C: c9 FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])
        S: * 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {…}
        S: Subject: appended for the transcript
        S: …
        S: c9 OK FETCH completed
        C: c10 UID FETCH 1 (UID FLAGS)
        S: * 1 FETCH (UID 1 FLAGS (\Seen \Flagged \Recent))
        S: c10 OK FETCH completed
        C: c11 STORE 1 -FLAGS (\Flagged)
        S: * 1 FETCH (FLAGS (\Seen \Recent))
        S: c11 OK STORE completed
        C: c12 STORE 1 +FLAGS.SILENT ($Forwarded project-x)
        S: c12 OK STORE completed
        C: c13 FETCH 1 FLAGS
        S: * 1 FETCH (FLAGS (\Seen $Forwarded project-x \Recent))
        S: c13 OK FETCH completed
        C: c14 UID STORE 1 +FLAGS (\Answered)
        S: * 1 FETCH (… \Answered …)
        S: c14 OK STORE completed
        C: c15 SEARCH ANSWERED KEYWORD project-x SUBJECT transcript
        S: * SEARCH 1
        S: c15 OK SEARCH completed
        C: c16 UID SEARCH UNSEEN
        S: * SEARCH
        S: c16 OK SEARCH completed
        C: c17 SEARCH CHARSET UTF-8 BODY "first line"
        S: * SEARCH 1
        S: c17 OK SEARCH completed
        C: c18 COPY 1 Archive
        S: c18 OK [COPYUID … 1 …] COPY completed
        C: c19 COPY 1 Nowhere
        S: c19 NO [TRYCREATE] …
        C: c20 UID MOVE 1 Drafts
        S: * 1 EXPUNGE
        S: c20 OK …
        C: c21 SELECT Archive
        S: * 1 EXISTS
        S: c21 OK [READ-WRITE] SELECT completed
        C: c22 STORE 1 +FLAGS (\Deleted)
        S: * 1 FETCH (FLAGS (… \Deleted …))
        S: c22 OK STORE completed
        C: c23 CHECK
        S: c23 OK CHECK completed
        C: c24 EXPUNGE
        S: * 1 EXPUNGE
        S: c24 OK EXPUNGE completed
        C: c25 UNSELECT
        S: c25 OK UNSELECT completed
        C: c26 FETCH 1 FLAGS
        S: c26 BAD …SELECT…
        C: c27 STATUS "Deleted Items" (MESSAGES)
        S: * STATUS "Deleted Items" (MESSAGES 1)
        S: c27 OK STATUS completed
        C: c28 SELECT Drafts
        S: * 1 EXISTS
        S: c28 OK [READ-WRITE] SELECT completed
        C: c29 UID STORE 1:* +FLAGS (\Deleted)
        S: c29 OK STORE completed
        C: c30 UID EXPUNGE 1:*
        S: * 1 EXPUNGE
        S: c30 OK …
        C: c31 CLOSE
        S: c31 OK CLOSE completed
        // IDLE: the continuation, then DONE ends it.
        C: c32 SELECT INBOX
        S: c32 OK [READ-WRITE] SELECT completed
        C: c33 IDLE
        S: + …
        W: DONE
        A: c33 OK …
        C: c34 LOGOUT
        S: * BYE …
        S: c34 OK LOGOUT completed
        "#,
    )
    .await;
}
