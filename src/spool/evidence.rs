//! The evidence that ties a copy in the mailbox to one spool entry.
//!
//! Applications reuse Message-IDs (a retry with a new body, a template
//! with a fixed id), so a Sent Items copy or a draft with the entry's
//! Message-ID proves nothing on its own: another submission may have put
//! it there. Every submission therefore carries a header of its own in
//! the MIME graphgate sends, `X-Graphgate-Submission: <random id>` (32 hex
//! digits from a v4 UUID: opaque, no host, path or account in it), added
//! with the other lines graphgate puts in front of the client's bytes and
//! kept with them in the spool row. An in-doubt attempt is "sent" only
//! when a copy with the Message-ID *and* this header value is found; a
//! draft is deleted by recovery only when it carries the entry's value.
//!
//! What Graph keeps, and why the header is read from `$value`:
//! - Exchange stores an arbitrary `X-` header of a MIME message as a named
//!   property in the `PS_INTERNET_HEADERS` property set and writes it back
//!   as a header when it generates MIME ([MS-OXCMAIL] 2.1.3.2.4 "Arbitrary
//!   MIME Headers"); custom headers are present in the `$value` of Sent
//!   Items copies (office-js-docs-pr issue 5057, "the internet message
//!   header is visible on both the sent and received message if the eml
//!   is downloaded via Graph API").
//! - `internetMessageHeaders` is *not* usable: "internet headers just do
//!   not exist on the copy in Sent Items" (Jason Johnston, Microsoft, in
//!   microsoft-graph-docs issue 2716; again in microsoft-graph-docs issue
//!   18761), and it cannot be used in `$filter`. So the candidates are
//!   found by `$filter=internetMessageId eq …` and each one's `$value`
//!   header block is compared.
//!
//! The header is visible to recipients (README, SECURITY.md).

use crate::graph::{GraphError, GraphMailbox, RemoteFolderId, RemoteMessage};

/// The header every submission carries.
pub const SUBMISSION_HEADER: &str = "X-Graphgate-Submission";

/// A new submission id and its header line (CRLF-terminated).
pub(crate) fn new_submission_line() -> String {
    format!("{SUBMISSION_HEADER}: {}\r\n", uuid::Uuid::new_v4().simple())
}

/// The submission id recorded in an entry's prefix (the lines graphgate
/// added in front of the client's bytes); `None` for entries spooled by a
/// version without it.
pub(crate) fn submission_of(prefix: &str) -> Option<&str> {
    prefix.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case(SUBMISSION_HEADER)
            .then(|| value.trim())
            .filter(|v| !v.is_empty())
    })
}

/// Whether the header block of `mime` carries `X-Graphgate-Submission:
/// submission` (name compared case-insensitively, folded lines unfolded:
/// Exchange regenerates headers and may fold or re-case them).
pub(crate) fn carries(mime: &[u8], submission: &str) -> bool {
    let end = find_header_end(mime).unwrap_or(mime.len());
    let head = String::from_utf8_lossy(&mime[..end]);
    let mut fields: Vec<String> = Vec::new();
    for line in head.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push_str(line);
            }
        } else {
            fields.push(line.to_string());
        }
    }
    fields.iter().any(|field| {
        field.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case(SUBMISSION_HEADER)
                && value.split_whitespace().collect::<String>() == submission
        })
    })
}

/// Where the header block ends (the empty line), if it does.
fn find_header_end(mime: &[u8]) -> Option<usize> {
    if mime.starts_with(b"\r\n") || mime.starts_with(b"\n") {
        return Some(0);
    }
    mime.windows(3)
        .position(|w| w == b"\n\r\n")
        .or_else(|| mime.windows(2).position(|w| w == b"\n\n"))
}

/// The messages of `folder` with Message-ID `message_id` (Graph's
/// spelling, with angle brackets) that carry `submission`: the
/// candidates by `$filter`, each one's `$value` read to compare the
/// header. A candidate that vanished in between (404) is not ours to
/// count.
pub(crate) async fn find_own(
    mailbox: &GraphMailbox,
    folder: &RemoteFolderId,
    message_id: &str,
    submission: &str,
) -> Result<Vec<RemoteMessage>, GraphError> {
    let candidates = mailbox
        .find_by_internet_message_id(folder, message_id)
        .await?;
    let mut own = Vec::new();
    for candidate in candidates {
        match mailbox.fetch_mime(&candidate.id).await {
            Ok(mime) if carries(&mime, submission) => own.push(candidate),
            Ok(_) => {}
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_submission_id_is_read_back_from_the_prefix() {
        let line = new_submission_line();
        let prefix = format!("Message-ID: <a@b>\r\n{line}Bcc: c@d\r\n");
        let id = submission_of(&prefix).unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(submission_of("Message-ID: <a@b>\r\n"), None);
        assert_eq!(submission_of(""), None);
    }

    #[test]
    fn only_the_same_value_in_the_header_block_counts() {
        let id = "0123456789abcdef0123456789abcdef";
        let mime = format!("From: a@b\r\nx-graphgate-submission:\r\n {id}\r\n\r\nbody\r\n");
        assert!(carries(mime.as_bytes(), id));
        let other = "From: a@b\r\nX-Graphgate-Submission: ffffffffffffffffffffffffffffffff\r\n\r\n";
        assert!(!carries(other.as_bytes(), id));
        // In the body it is not evidence.
        let body = format!("From: a@b\r\n\r\nX-Graphgate-Submission: {id}\r\n");
        assert!(!carries(body.as_bytes(), id));
        assert!(!carries(b"", id));
    }
}
