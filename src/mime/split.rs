//! The large send path's view of a message: a draft holding everything but
//! the big attachments, plus where each attachment's bytes lie in the spool
//! file and how long they are once decoded — found in one streaming pass,
//! with memory bounded by the draft, never by the message.
//!
//! Only the top-level parts of a `multipart/*` message are split off (this
//! is where clients put attachments). A part goes to Graph as a file
//! attachment when it is an attachment (`Content-Disposition: attachment`,
//! a file name, or a non-text, non-multipart type) in base64 or an identity
//! encoding (7bit/8bit/binary); everything else stays in the draft's MIME.
//! [`attachment_reader`] streams one attachment's decoded bytes from the
//! file for an upload session.

use std::io::{BufRead, Read};
use std::path::Path;

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use mail_parser::{MessageParser, MimeHeaders};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use super::submission::MAX_HEADER_BLOCK;

/// Bytes read per line at most; longer lines are handled in pieces (they
/// cannot be boundaries).
const MAX_LINE: usize = 64 * 1024;

/// How an attachment's body is encoded in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Base64,
    /// 7bit, 8bit or binary: the bytes are the content.
    Identity,
}

/// One top-level part that goes to Graph as a file attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentPart {
    pub name: String,
    pub content_type: String,
    pub content_id: Option<String>,
    pub is_inline: bool,
    pub encoding: BodyEncoding,
    /// Byte range of the encoded body in the file.
    pub body_start: u64,
    pub body_end: u64,
    /// Length of the decoded content.
    pub decoded_size: u64,
}

/// The draft MIME and the attachments split off it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitPlan {
    pub draft_mime: Vec<u8>,
    pub attachments: Vec<AttachmentPart>,
}

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("cannot read the spooled message: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the message is not multipart, so it has no attachments to upload separately, and it \
         is larger than one Graph request takes (about 2 MB of MIME); send large content as an attachment"
    )]
    NotMultipart,
    #[error("the header block is too large or never ends")]
    HeaderTooLarge,
    #[error(
        "without its attachments the message is still {0} bytes, above the about 2 MB of MIME one Graph \
         request takes; move large inline content into attachments"
    )]
    DraftTooLarge(usize),
}

/// Reads lines of at most [`MAX_LINE`] bytes, counting offsets.
struct Lines<R> {
    reader: R,
    offset: u64,
    at_line_start: bool,
}

impl<R: BufRead> Lines<R> {
    /// The next piece: (offset, bytes, whether it starts a line). Empty at
    /// the end of input.
    fn next_piece(&mut self, buf: &mut Vec<u8>) -> std::io::Result<(u64, bool)> {
        buf.clear();
        let start = self.offset;
        let starts_line = self.at_line_start;
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                break;
            }
            let room = MAX_LINE - buf.len();
            let window = &available[..available.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(p) => {
                    buf.extend_from_slice(&window[..=p]);
                    self.reader.consume(p + 1);
                    self.at_line_start = true;
                    break;
                }
                None => {
                    let n = window.len();
                    buf.extend_from_slice(window);
                    self.reader.consume(n);
                    if buf.len() >= MAX_LINE {
                        self.at_line_start = false;
                        break;
                    }
                }
            }
        }
        self.offset += buf.len() as u64;
        Ok((start, starts_line))
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\r' | b'\n' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

/// What a part's header block says about it.
struct PartInfo {
    attachment: Option<(String, String, Option<String>, bool, BodyEncoding)>,
}

fn part_info(headers: &[u8]) -> PartInfo {
    let Some(message) = MessageParser::default().parse_headers(headers) else {
        return PartInfo { attachment: None };
    };
    let ct = message.content_type();
    let (ctype, subtype) = ct
        .map(|c| {
            (
                c.ctype().to_ascii_lowercase(),
                c.subtype().unwrap_or("octet-stream").to_ascii_lowercase(),
            )
        })
        .unwrap_or_else(|| ("text".into(), "plain".into()));
    let disposition = message.content_disposition();
    let is_attachment_disp =
        disposition.is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"));
    let is_inline_disp = disposition.is_some_and(|d| d.ctype().eq_ignore_ascii_case("inline"));
    let name = disposition
        .and_then(|d| d.attribute("filename"))
        .or_else(|| ct.and_then(|c| c.attribute("name")))
        .map(str::to_string);
    let encoding = match message
        .header_raw("Content-Transfer-Encoding")
        .map(|s| s.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("base64") => Some(BodyEncoding::Base64),
        None | Some("7bit") | Some("8bit") | Some("binary") => Some(BodyEncoding::Identity),
        _ => None,
    };
    let textual = matches!(ctype.as_str(), "text" | "multipart" | "message");
    let is_attachment = is_attachment_disp || name.is_some() || !textual;
    let attachment = match (is_attachment, encoding) {
        (true, Some(encoding)) if ctype != "multipart" && ctype != "message" => Some((
            name.unwrap_or_else(|| format!("attachment.{subtype}")),
            format!("{ctype}/{subtype}"),
            message.header_raw("Content-ID").map(|s| {
                s.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            }),
            is_inline_disp,
            encoding,
        )),
        _ => None,
    };
    PartInfo { attachment }
}

/// A base64 alphabet symbol (padding and everything else is skipped).
fn is_base64_symbol(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// Decoded length of base64 text with `symbols` alphabet symbols, decoded
/// leniently as [`decode_base64_lenient`] does (padding ignored wherever it
/// is, a lone trailing symbol dropped).
pub fn base64_decoded_len(symbols: u64) -> u64 {
    (symbols / 4) * 3
        + match symbols % 4 {
            2 => 1,
            3 => 2,
            _ => 0,
        }
}

/// The engine for bodies as mail clients write them: no padding required,
/// stray bits in the last symbol tolerated.
fn lenient_engine() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
}

/// Decode base64 the lenient way mail readers do: whitespace, padding and
/// stray characters skipped wherever they are. The output length is always
/// [`base64_decoded_len`] of the symbol count, so the size announced to an
/// upload session is the size streamed.
pub fn decode_base64_lenient(text: &[u8]) -> Vec<u8> {
    let mut symbols: Vec<u8> = text
        .iter()
        .copied()
        .filter(|&b| is_base64_symbol(b))
        .collect();
    if symbols.len() % 4 == 1 {
        symbols.pop();
    }
    lenient_engine().decode(&symbols).unwrap_or_default()
}

/// Plan the large path for the message in `reader`, with `prefix` (header
/// lines graphgate adds) in front of the draft. `max_draft` bounds the
/// draft's MIME.
pub fn plan_split(
    reader: impl BufRead,
    prefix: &[u8],
    max_draft: usize,
) -> Result<SplitPlan, SplitError> {
    let mut lines = Lines {
        reader,
        offset: 0,
        at_line_start: true,
    };
    let mut draft = prefix.to_vec();
    let mut line = Vec::new();
    // Top-level header block.
    let mut head = Vec::new();
    loop {
        lines.next_piece(&mut line)?;
        if line.is_empty() {
            return Err(SplitError::HeaderTooLarge);
        }
        head.extend_from_slice(&line);
        if head.len() > MAX_HEADER_BLOCK {
            return Err(SplitError::HeaderTooLarge);
        }
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let boundary = MessageParser::default()
        .parse_headers(&head)
        .and_then(|m| {
            m.content_type()
                .filter(|c| c.ctype().eq_ignore_ascii_case("multipart"))
                .and_then(|c| c.attribute("boundary").map(str::to_string))
        })
        .ok_or(SplitError::NotMultipart)?;
    draft.extend_from_slice(&head);
    let delimiter = format!("--{boundary}").into_bytes();
    let close = format!("--{boundary}--").into_bytes();

    enum At {
        Preamble,
        PartHeaders,
        KeptBody,
        AttachmentBody,
        Epilogue,
    }
    let mut at = At::Preamble;
    let mut part_head = Vec::new();
    let mut attachments = Vec::new();
    let mut current: Option<AttachmentPart> = None;
    let mut b64 = 0u64;
    // The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1):
    // a body's last line break is only known once the next line is seen.
    let mut last_eol = 0u64;

    let finish_attachment = |current: &mut Option<AttachmentPart>,
                             end: u64,
                             b64: u64,
                             attachments: &mut Vec<AttachmentPart>| {
        if let Some(mut part) = current.take() {
            part.body_end = end.max(part.body_start);
            part.decoded_size = match part.encoding {
                BodyEncoding::Base64 => base64_decoded_len(b64),
                BodyEncoding::Identity => part.body_end - part.body_start,
            };
            attachments.push(part);
        }
    };

    loop {
        let (offset, starts_line) = lines.next_piece(&mut line)?;
        if line.is_empty() {
            break;
        }
        let trimmed = trim_eol(&line);
        let is_delim =
            starts_line && (trimmed == delimiter.as_slice() || trimmed == close.as_slice());
        if is_delim && !matches!(at, At::Epilogue) {
            // The previous body ends before the line break that precedes
            // this delimiter.
            finish_attachment(&mut current, offset - last_eol, b64, &mut attachments);
            if trimmed == close.as_slice() {
                draft.extend_from_slice(&close);
                draft.extend_from_slice(b"\r\n");
                at = At::Epilogue;
            } else {
                part_head.clear();
                at = At::PartHeaders;
            }
            continue;
        }
        last_eol = if line.ends_with(b"\r\n") {
            2
        } else if line.ends_with(b"\n") {
            1
        } else {
            0
        };
        match at {
            At::Preamble | At::Epilogue => {}
            At::PartHeaders => {
                part_head.extend_from_slice(&line);
                if part_head.len() > MAX_HEADER_BLOCK {
                    return Err(SplitError::HeaderTooLarge);
                }
                if line == b"\r\n" || line == b"\n" {
                    match part_info(&part_head).attachment {
                        Some((name, content_type, content_id, is_inline, encoding)) => {
                            current = Some(AttachmentPart {
                                name,
                                content_type,
                                content_id,
                                is_inline,
                                encoding,
                                body_start: lines.offset,
                                body_end: lines.offset,
                                decoded_size: 0,
                            });
                            b64 = 0;
                            at = At::AttachmentBody;
                        }
                        None => {
                            draft.extend_from_slice(&delimiter);
                            draft.extend_from_slice(b"\r\n");
                            draft.extend_from_slice(&part_head);
                            at = At::KeptBody;
                        }
                    }
                }
            }
            At::KeptBody => {
                draft.extend_from_slice(&line);
            }
            At::AttachmentBody => {
                if current
                    .as_ref()
                    .is_some_and(|c| c.encoding == BodyEncoding::Base64)
                {
                    b64 += line.iter().filter(|&&b| is_base64_symbol(b)).count() as u64;
                }
            }
        }
        if draft.len() > max_draft {
            return Err(SplitError::DraftTooLarge(draft.len()));
        }
    }
    // A message cut short without its closing delimiter.
    finish_attachment(&mut current, lines.offset, b64, &mut attachments);
    if !matches!(at, At::Epilogue) {
        if !draft.ends_with(b"\n") {
            draft.extend_from_slice(b"\r\n");
        }
        draft.extend_from_slice(&close);
        draft.extend_from_slice(b"\r\n");
    }
    if draft.len() > max_draft {
        return Err(SplitError::DraftTooLarge(draft.len()));
    }
    Ok(SplitPlan {
        draft_mime: draft,
        attachments,
    })
}

/// [`plan_split`] over a file.
pub fn plan_split_file(
    path: &Path,
    prefix: &[u8],
    max_draft: usize,
) -> Result<SplitPlan, SplitError> {
    let file = std::fs::File::open(path)?;
    plan_split(
        std::io::BufReader::with_capacity(64 * 1024, file),
        prefix,
        max_draft,
    )
}

/// Decodes base64 text arriving in arbitrary pieces, exactly as
/// [`decode_base64_lenient`] decodes it whole.
#[derive(Default)]
struct Base64Stream {
    carry: Vec<u8>,
}

impl Base64Stream {
    fn push(&mut self, input: &[u8], last: bool) -> std::io::Result<Vec<u8>> {
        self.carry
            .extend(input.iter().copied().filter(|&b| is_base64_symbol(b)));
        let usable = if last {
            self.carry.len()
        } else {
            self.carry.len() / 4 * 4
        };
        let chunk: Vec<u8> = self.carry.drain(..usable).collect();
        Ok(decode_base64_lenient(&chunk))
    }
}

/// The decoded bytes of `part`, streamed from the file in 64 KiB reads.
pub async fn attachment_reader(
    path: &Path,
    part: &AttachmentPart,
) -> std::io::Result<Box<dyn AsyncRead + Send + Unpin>> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(part.body_start)).await?;
    let limited = file.take(part.body_end - part.body_start);
    match part.encoding {
        BodyEncoding::Identity => Ok(Box::new(limited)),
        BodyEncoding::Base64 => {
            let stream = futures::stream::unfold(
                (limited, Base64Stream::default(), false),
                |(mut input, mut decoder, done)| async move {
                    if done {
                        return None;
                    }
                    let mut buf = vec![0u8; 64 * 1024];
                    let n = match input.read(&mut buf).await {
                        Ok(n) => n,
                        Err(e) => return Some((Err(e), (input, decoder, true))),
                    };
                    let last = n == 0;
                    match decoder.push(&buf[..n], last) {
                        Ok(out) => Some((Ok(Bytes::from(out)), (input, decoder, last))),
                        Err(e) => Some((Err(e), (input, decoder, true))),
                    }
                },
            )
            .boxed();
            Ok(Box::new(tokio_util::io::StreamReader::new(stream)))
        }
    }
}

/// Read a whole (small) file range into memory: the draft path's kept
/// parts never need it, but tests and tools do.
pub fn read_range(path: &Path, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Seek;
    let mut file = std::fs::File::open(path)?;
    file.seek(std::io::SeekFrom::Start(start))?;
    let mut out = Vec::new();
    file.take(end - start).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attachment: &[u8]) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(attachment);
        let mut body = String::new();
        for chunk in b64.as_bytes().chunks(76) {
            body.push_str(std::str::from_utf8(chunk).unwrap());
            body.push_str("\r\n");
        }
        format!(
            "From: a@example.com\r\nTo: b@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nHello there\r\n--XX\r\n\
Content-Type: application/octet-stream; name=\"data.bin\"\r\n\
Content-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
{body}--XX--\r\nepilogue\r\n"
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn splits_the_attachment_off_and_streams_it_back_exactly() {
        let content: Vec<u8> = (0..200_003u32).map(|i| (i * 7 % 251) as u8).collect();
        let msg = message(&content);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.eml");
        std::fs::write(&path, &msg).unwrap();
        let plan = plan_split_file(&path, b"Bcc: c@example.com\r\n", 1 << 20).unwrap();
        assert_eq!(plan.attachments.len(), 1);
        let a = &plan.attachments[0];
        assert_eq!(a.name, "data.bin");
        assert_eq!(a.content_type, "application/octet-stream");
        assert_eq!(a.decoded_size, content.len() as u64);
        let draft = String::from_utf8(plan.draft_mime.clone()).unwrap();
        assert!(draft.starts_with("Bcc: c@example.com\r\nFrom: a@example.com\r\n"));
        assert!(draft.contains(
            "--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello there\r\n--XX--\r\n"
        ));
        assert!(!draft.contains("data.bin"));
        let mut reader = attachment_reader(&path, a).await.unwrap();
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, content);
    }

    /// A fuzzer find: padding in the middle of a base64 body made the
    /// announced size differ from the streamed one.
    #[tokio::test]
    async fn regression_mid_body_padding_streams_the_announced_size() {
        let msg = include_bytes!("../../fuzz/corpus/mime_split/regression-mid-padding.eml");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.eml");
        std::fs::write(&path, msg).unwrap();
        let plan = plan_split_file(&path, b"", 1 << 20).unwrap();
        for part in &plan.attachments {
            let mut back = Vec::new();
            attachment_reader(&path, part)
                .await
                .unwrap()
                .read_to_end(&mut back)
                .await
                .unwrap();
            assert_eq!(back.len() as u64, part.decoded_size, "{part:?}");
        }
    }

    #[test]
    fn not_multipart_is_refused() {
        let msg = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n";
        assert!(matches!(
            plan_split(&msg[..], b"", 1 << 20),
            Err(SplitError::NotMultipart)
        ));
    }

    #[test]
    fn draft_bound_is_enforced() {
        let msg = message(b"x");
        let big = format!(
            "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\
Content-Type: text/plain\r\n\r\n{}\r\n--B--\r\n",
            "y".repeat(5000)
        );
        assert!(plan_split(&msg[..], b"", 1 << 20).is_ok());
        assert!(matches!(
            plan_split(big.as_bytes(), b"", 1000),
            Err(SplitError::DraftTooLarge(_))
        ));
    }

    #[test]
    fn decoded_length_matches_lenient_decoding() {
        for n in 0..10usize {
            let data = vec![1u8; n];
            let text = base64::engine::general_purpose::STANDARD.encode(&data);
            let symbols = text.bytes().filter(|&b| b != b'=').count() as u64;
            assert_eq!(base64_decoded_len(symbols), n as u64);
            assert_eq!(decode_base64_lenient(text.as_bytes()), data);
        }
        // The fuzzer's case: padding in the middle, stray characters.
        let odd = b"SGVsbG-\xddXX--bGQ=\r\n-))me=b.bin";
        let symbols = odd.iter().filter(|&&b| is_base64_symbol(b)).count() as u64;
        assert_eq!(
            decode_base64_lenient(odd).len() as u64,
            base64_decoded_len(symbols)
        );
    }
}
