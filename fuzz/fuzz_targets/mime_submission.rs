//! The SMTP side of MIME on arbitrary bytes: the header block is delimited,
//! its facts read, and the header lines graphgate would add computed — for
//! any input, without panicking, and with the invariants the spool relies
//! on: the prefix is CRLF-terminated header lines, it names a Message-ID
//! when the message has none, and every envelope recipient is then either
//! a header recipient or in the added Bcc.
#![no_main]

use graphgate::mime::submission::{header_block_len, header_facts, submission_prefix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let len = header_block_len(data).unwrap_or(data.len().min(1 << 20));
    let facts = header_facts(&data[..len]);
    assert!(facts.header_len <= data.len());
    let rcpt = vec![
        "bob@example.com".to_string(),
        "Carol@Example.com".to_string(),
    ];
    let allowed = vec!["alice@example.com".to_string()];
    if let Ok(prefix) = submission_prefix(&facts, &rcpt, "alice", &allowed, "id@fuzz") {
        assert!(prefix.is_empty() || prefix.ends_with("\r\n"));
        if facts.message_id.is_none() {
            assert!(prefix.starts_with("Message-ID: <id@fuzz>\r\n"));
        }
        for r in &rcpt {
            let lower = r.to_ascii_lowercase();
            assert!(
                facts.recipients.contains(&lower) || prefix.contains(r.as_str()),
                "{r} neither in the headers nor in Bcc"
            );
        }
    }
});
