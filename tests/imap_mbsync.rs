//! A two-way sync with Debian's mbsync (isync) through graphgate's IMAP:
//! the demo Inbox comes down into a Maildir with its flags; a flag set, a
//! message deleted and a message written in the Maildir go back up, and
//! the gateway (hence Graph) shows exactly that afterwards.

use std::path::Path;
use std::process::Command;

mod support;

use support::{Demo, demo, demo_exchange_mime};

fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            for e in entries.flatten() {
                out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

fn mbsync(config: &Path) -> String {
    let out = Command::new("mbsync")
        .arg("-c")
        .arg(config)
        .arg("-V")
        .arg("inbox")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mbsync failed:\n{text}");
    text
}

/// `UID FETCH 1:* (FLAGS)` lines of a folder, through curl.
fn flags(imap: &str, folder: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            &format!("imap://{imap}/{folder}"),
            "--user",
            "alice@example.com:alice",
            "-X",
            "UID FETCH 1:* (FLAGS)",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn mbsync_two_way_sync_keeps_flags_deletions_and_new_mail() {
    two_way_sync(demo);
}

/// The same against a tenant that re-renders stored MIME as Exchange
/// does: the message mbsync uploads comes back as other bytes, which
/// must not make mbsync see a second message or lose the first.
#[test]
fn mbsync_two_way_sync_with_exchange_rendered_mime() {
    two_way_sync(demo_exchange_mime);
}

fn two_way_sync(start: fn() -> Demo) {
    for tool in ["mbsync", "curl"] {
        let found = Command::new("which")
            .arg(tool)
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(std::env::var("CI").is_err(), "{tool} is missing on CI");
            eprintln!("skipped: {tool} is not installed (scripts/test installs isync and curl)");
            return;
        }
    }
    let d = start();
    let work = tempfile::tempdir().unwrap();
    let maildir = work.path().join("mail");
    let inbox = maildir.join("INBOX");
    std::fs::create_dir_all(&maildir).unwrap();
    let port = d.imap.rsplit_once(':').unwrap().1;
    let config = work.path().join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "IMAPAccount gg\nHost 127.0.0.1\nPort {port}\nUser alice@example.com\nPass alice\n\
             SSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount gg\n\n\
             MaildirStore local\nPath {maildir}/\nInbox {inbox}\n\n\
             Channel inbox\nFar :remote:INBOX\nNear :local:INBOX\nCreate Near\nExpunge Both\n\
             SyncState *\n",
            maildir = maildir.display(),
            inbox = inbox.display()
        ),
    )
    .unwrap();

    // Down: four messages, with \Seen on UID 1 and \Flagged on UID 3.
    mbsync(&config);
    let down = files(&inbox);
    assert_eq!(down.len(), 4, "{down:?}");
    assert!(down.iter().any(|f| f.contains("U=1:2,S")), "{down:?}");
    assert!(down.iter().any(|f| f.contains("U=3:2,F")), "{down:?}");

    // Local changes: read UID 2, trash UID 4, write a new message.
    for f in &down {
        let from = inbox.join(f);
        let name = f.rsplit('/').next().unwrap();
        if name.contains("U=2:2,") {
            std::fs::rename(&from, inbox.join("cur").join(format!("{name}S"))).unwrap();
        }
        if name.contains("U=4:2,") {
            std::fs::rename(&from, inbox.join("cur").join(format!("{name}T"))).unwrap();
        }
    }
    std::fs::write(
        inbox.join("new").join("42.local:2,"),
        "From: alice@example.com\r\nTo: alice@example.com\r\nSubject: written offline\r\n\
         Message-ID: <offline-1@example.com>\r\n\r\nfrom the maildir\r\n",
    )
    .unwrap();

    // Up.
    mbsync(&config);
    let up = files(&inbox);
    assert_eq!(up.len(), 4, "one deleted, one added: {up:?}");
    assert!(
        up.iter().any(|f| f.contains("42.local,U=5")),
        "APPENDUID gave UID 5: {up:?}"
    );

    let remote = flags(&d.imap, "INBOX");
    assert!(
        remote.contains("* 2 FETCH (UID 2 FLAGS (\\Seen"),
        "{remote}"
    );
    assert!(!remote.contains("UID 4 "), "UID 4 is gone: {remote}");
    assert!(remote.contains("UID 5 FLAGS ()"), "{remote}");
    let trash = flags(&d.imap, "Deleted%20Items");
    assert!(
        trash.contains("* 1 FETCH"),
        "deleted into Deleted Items: {trash}"
    );

    // A second run changes nothing on either side.
    mbsync(&config);
    assert_eq!(files(&inbox), up);
    assert_eq!(flags(&d.imap, "INBOX"), remote);
}
