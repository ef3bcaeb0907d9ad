//! The contract with Microsoft: a workload through the gateway's real
//! front doors (SMTP small and large, IMAP reads, flags, copy, move,
//! expunge, append, folders) against `graphgate demo --graph-trace`, then
//! `scripts/graph-contract` checks every exchange of the trace against
//! Microsoft's own CSDL description of Graph v1.0
//! (`tests/data/graph-metadata/v1.0-mail.xml`): paths, bound actions and
//! functions, `$select` names, the properties graphgate sends, and the
//! properties the simulator answers with (and no more than `$select`
//! asked for). Neither side can drift from Microsoft's v1.0 without this
//! failing. The trace itself is checked for what must never be in it.

mod support;

use std::process::Command;

use support::{demo_with, py_with, python};

const WORKLOAD: &str = r#"
import imaplib, smtplib, sys, time
from email.message import EmailMessage

smtp_addr, imap_addr = sys.argv[1], sys.argv[2]
host, port = smtp_addr.rsplit(":", 1)
s = smtplib.SMTP(host, int(port))
s.login("alice@example.com", "alice")
s.sendmail("alice@example.com", ["bob@example.com"],
    b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: contract small\r\n\r\n"
    b"CONTRACT-SMALL-BODY\r\n")
# Above the direct sendMail size: draft, upload session, send.
big = EmailMessage()
big["From"] = "alice@example.com"
big["To"] = "bob@example.com"
big["Subject"] = "contract large"
big.set_content("CONTRACT-LARGE-BODY")
big.add_attachment(bytes(range(256)) * (4 * 4096), maintype="application",
                   subtype="octet-stream", filename="big.bin")
s.send_message(big)
s.quit()

host, port = imap_addr.rsplit(":", 1)
m = imaplib.IMAP4(host, int(port))
m.login("alice@example.com", "alice")
m.select("INBOX")
m.fetch("1:*", "(UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[])")
m.store("1", "+FLAGS", "(\\Seen \\Flagged \\Answered $Forwarded contractkw)")
m.store("1", "-FLAGS", "(\\Flagged)")
m.create("Contract")
m.create("Contract/Child")
m.rename("Contract/Child", "Contract/Renamed")
m.copy("1", "Contract")
m.append("INBOX", "(\\Seen)", None,
    b"From: x@example.org\r\nTo: alice@example.com\r\nSubject: contract append\r\n\r\n"
    b"CONTRACT-APPEND-BODY\r\n")
typ, data = m.search(None, "ALL")
last = data[0].split()[-1].decode()
m.copy(last, "Archive")
m.store(last, "+FLAGS", "(\\Deleted)")
m.expunge()
typ, data = m.uid("SEARCH", None, "ALL")
m.uid("MOVE", data[0].split()[-1].decode(), "Contract")
m.select("Contract")
m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER])")
m.select("INBOX")
m.status("Archive", "(MESSAGES UNSEEN UIDNEXT)")
m.delete("Contract/Renamed")
m.logout()
"#;

#[test]
fn every_exchange_of_a_workload_matches_microsofts_v1_0_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("graph-trace.jsonl");
    let trace_arg = trace.to_string_lossy().to_string();
    let demo = demo_with("127.0.0.1:0", &["--graph-trace", &trace_arg]);
    py_with(WORKLOAD, &[&demo.smtp, &demo.imap]);

    // Delivery runs on the spool's own pace: wait until the large
    // message's send reached the trace.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        if text.contains("\"route\":\"messages/{id}/send\"") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the large message was not sent within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(demo);

    let text = std::fs::read_to_string(&trace).unwrap();
    // Never in a trace: tokens, message content.
    for secret in [
        "Bearer ",
        "CONTRACT-SMALL-BODY",
        "CONTRACT-LARGE-BODY",
        "CONTRACT-APPEND-BODY",
        "access_token",
        "refresh_token",
    ] {
        assert!(!text.contains(secret), "{secret:?} is in the Graph trace");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&trace).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the trace must be readable by its owner only");
    }

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/graph-contract");
    let out = Command::new(python())
        .arg(script)
        .arg(&trace)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    // The workload reached the operations it is meant to check.
    for needle in [
        "Action sendMail on user",
        "Action createUploadSession on Collection(attachment)",
        "Action send on message",
        "Action copy on message",
        "Action move on message",
        "route POST /me/messages/{id}/attachments/createUploadSession",
        "Function delta on Collection(message)",
        "route GET /me/messages/{id}/$value",
        "route PATCH /me/messages/{id}",
        "route POST /me/mailFolders/{id}/childFolders",
    ] {
        assert!(report.contains(needle), "{needle} not exercised:\n{report}");
    }
    assert!(report.contains("; 0 violations"), "{report}");
}

/// The checker is not a rubber stamp: an exchange with a property v1.0
/// does not have, an unknown action, a `$select` of a non-property and an
/// answer wider than its `$select` are each reported.
#[test]
fn the_contract_check_reports_what_v1_0_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("bad.jsonl");
    let lines = [
        r#"{"method":"PATCH","url":"https://graph.microsoft.com/v1.0/me/messages/AAMkAAAAAAAAAAAAAAAA","request":{"body":{"isRead":true,"answered":true}},"response":{"status":200,"body":{"id":"x","isRead":"yes"}}}"#,
        r#"{"method":"POST","url":"https://graph.microsoft.com/v1.0/me/messages/AAMkAAAAAAAAAAAAAAAA/markAnswered","request":{"body":null},"response":{"status":204,"body":null}}"#,
        r#"{"method":"GET","url":"https://graph.microsoft.com/v1.0/me/mailFolders/inbox?$select=id,sizeInBytes","request":{"body":null},"response":{"status":200,"body":{"id":"f","displayName":"Inbox"}}}"#,
    ];
    std::fs::write(&trace, lines.join("\n") + "\n").unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/graph-contract");
    let out = Command::new(python())
        .arg(script)
        .arg(&trace)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{report}");
    for needle in [
        "`answered` is not a property of message",
        "\"yes\" is not an Edm.Boolean",
        "`markAnswered` is not a navigation property, key or bound operation of message",
        "$select `sizeInBytes` is not a property of mailFolder",
        "answer carries ['displayName']",
    ] {
        assert!(report.contains(needle), "{needle}:\n{report}");
    }
}
