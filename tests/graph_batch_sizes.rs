//! FETCH bodies come in `$batch`es grouped by the size Graph reports
//! (`Integer 0x0E08`, PR_MESSAGE_SIZE), so one batch answer stays bounded
//! and a large message is fetched alone (issue 16, "Batch sizes";
//! src/graph/bodies.rs). Seen from the outside: Python's imaplib fetches
//! every body intact through `graphgate demo`, and the simulator's own
//! counters say how large its largest `$batch` answer was and how many
//! `$value` GETs came alone.

use serde_json::Value;

mod support;

/// A message of about `len` bytes whose body is text lines.
fn message(subject: &str, len: usize) -> String {
    let mut m = format!(
        "From: bulk@external.example\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\
         Date: Tue, 08 Dec 2026 01:00:00 +0000\r\nMessage-ID: <{subject}@external.example>\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    );
    let line = "the quick brown fox jumps over the lazy dog 0123456789 abcdefghij\r\n";
    while m.len() < len {
        m.push_str(line);
    }
    m
}

async fn stats(sim: &str) -> Value {
    reqwest::get(format!("{sim}/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn bodies_are_batched_by_their_exchange_size_and_large_ones_come_alone() {
    let d = support::demo();
    let http = reqwest::Client::new();
    // Twelve of 700 kB (20 to a batch would be an 8 MB answer) and three
    // of 1.5 MB (each beyond the one-alone bound).
    let mut sent = Vec::new();
    for i in 0..15 {
        let (subject, len) = if i % 5 == 4 {
            (format!("large-{i}"), 1_500_000)
        } else {
            (format!("medium-{i}"), 700_000)
        };
        let body = message(&subject, len);
        let r = http
            .post(format!("{}/_sim/mail/deliver?to=alice@example.com", d.sim))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        sent.push((subject, body.len()));
    }
    let before = stats(&d.sim).await;
    let (host, port) = d.imap.rsplit_once(':').unwrap();
    let script = format!(
        r#"
import imaplib, email
m = imaplib.IMAP4("{host}", {port})
m.login("alice@example.com", "alice")
typ, data = m.select("INBOX")
assert typ == "OK", data
typ, data = m.fetch("1:*", "(BODY.PEEK[])")
assert typ == "OK", data
for item in data:
    if isinstance(item, tuple):
        print(email.message_from_bytes(item[1])["Subject"] + "\t" + str(len(item[1])))
m.logout()
"#
    );
    let out = std::process::Command::new(support::python())
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<(String, usize)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(s, n)| (s.to_string(), n.parse().unwrap()))
        .collect();
    for (subject, len) in &sent {
        assert!(
            got.iter().any(|(s, n)| s == subject && n == len),
            "{subject} ({len} bytes) not served whole: {got:?}"
        );
    }
    let after = stats(&d.sim).await;
    let largest = after["largest_batch_response_bytes"].as_u64().unwrap();
    // 4 MiB of bodies at most per batch, plus JSON framing and escapes.
    assert!(
        largest <= 5 * 1024 * 1024,
        "a $batch answer of {largest} bytes"
    );
    let lone = |s: &Value| {
        s["by_route"]
            .as_object()
            .map(|routes| {
                routes
                    .iter()
                    .filter(|(k, _)| k.starts_with("GET ") && k.ends_with("/$value"))
                    .map(|(_, v)| v.as_u64().unwrap_or(0))
                    .sum::<u64>()
            })
            .unwrap_or(0)
    };
    assert!(
        lone(&after) - lone(&before) >= 3,
        "the three large messages were not fetched alone: {after}"
    );
}
