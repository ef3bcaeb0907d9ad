//! The simulated mailboxes: folders, messages (raw MIME plus the properties
//! Exchange keeps), and a per-mailbox change sequence that delta queries
//! read. Written from Graph's "message resource type", "mailFolder resource
//! type" and "message: delta" documents; shares nothing with `graph/`.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Well-known folder names and their display names (msgfolderroot is the
/// parent of the top-level folders).
pub const WELL_KNOWN: &[(&str, &str)] = &[
    ("inbox", "Inbox"),
    ("drafts", "Drafts"),
    ("sentitems", "Sent Items"),
    ("deleteditems", "Deleted Items"),
    ("junkemail", "Junk Email"),
    ("archive", "Archive"),
    ("outbox", "Outbox"),
];

#[derive(Debug, Clone)]
pub struct Folder {
    pub id: String,
    pub parent_id: String,
    pub display_name: String,
    pub well_known: Option<&'static str>,
    pub hidden: bool,
    /// Change sequence of the folder's creation or last rename
    /// (`mailFolders/delta`).
    pub seq: u64,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub folder_id: String,
    pub mime: Vec<u8>,
    pub subject: String,
    pub from: Option<(String, String)>,
    pub to: Vec<(String, String)>,
    pub cc: Vec<(String, String)>,
    pub bcc: Vec<(String, String)>,
    pub internet_message_id: String,
    pub received: DateTime<Utc>,
    pub sent: DateTime<Utc>,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub is_read: bool,
    pub is_draft: bool,
    pub flag_status: String,
    pub categories: Vec<String>,
    pub body_text: String,
    pub has_attachments: bool,
    /// Extended properties, keyed by normalised id (see [`normalise_property_id`]).
    pub extended: BTreeMap<String, (String, String)>,
    /// File attachments added through Graph (drafts).
    pub attachments: Vec<Attachment>,
    /// Change sequence of the last change (delta).
    pub seq: u64,
    /// Change sequence at which the message entered its folder (created,
    /// copied or moved in): a delta round after it reports later changes
    /// as partial updates.
    pub arrived: u64,
    /// Top-level properties changed by a PATCH, with the change sequence
    /// of their last change: a partial delta update carries these only.
    pub changed: BTreeMap<String, u64>,
}

/// A file attachment added to a draft (directly or by upload session).
#[derive(Debug, Clone)]
pub struct Attachment {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub is_inline: bool,
    pub content_id: Option<String>,
    pub bytes: Vec<u8>,
}

impl Attachment {
    pub fn json(&self) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "id": self.id,
            "name": self.name,
            "contentType": self.content_type,
            "size": self.bytes.len(),
            "isInline": self.is_inline,
            "contentId": self.content_id,
            "contentBytes": base64::engine::general_purpose::STANDARD.encode(&self.bytes),
        })
    }
}

/// The MIME of a draft with its Graph-added attachments: the original
/// content becomes the first part of a multipart/mixed, each attachment a
/// base64 part after it.
pub fn mime_with_attachments(mime: &[u8], attachments: &[Attachment]) -> Vec<u8> {
    if attachments.is_empty() {
        return mime.to_vec();
    }
    let header_end = find(mime, b"\r\n\r\n").map(|p| p + 2).unwrap_or(mime.len());
    let (head, body) = mime.split_at(header_end);
    let body = body.strip_prefix(b"\r\n").unwrap_or(body);
    let mut top = Vec::new();
    let mut content = Vec::new();
    let mut in_content = false;
    for line in head.split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            let lower = line.to_ascii_lowercase();
            in_content = lower.starts_with(b"content-") || lower.starts_with(b"mime-version:");
        }
        if in_content {
            if !line.to_ascii_lowercase().starts_with(b"mime-version:") {
                content.extend_from_slice(line);
            }
        } else {
            top.extend_from_slice(line);
        }
    }
    if content.is_empty() {
        content.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    }
    let boundary = format!("sim-{}", uuid::Uuid::new_v4().simple());
    let mut out = top;
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    out.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    out.extend_from_slice(&content);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    for a in attachments {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        out.extend_from_slice(
            format!(
                "Content-Type: {}; name=\"{}\"\r\nContent-Disposition: {}; filename=\"{}\"\r\nContent-Transfer-Encoding: base64\r\n",
                a.content_type,
                a.name,
                if a.is_inline { "inline" } else { "attachment" },
                a.name
            )
            .as_bytes(),
        );
        if let Some(cid) = &a.content_id {
            out.extend_from_slice(format!("Content-ID: <{cid}>\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(&a.bytes);
        for chunk in encoded.as_bytes().chunks(76) {
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// One mailbox.
#[derive(Debug, Default)]
pub struct Mailbox {
    pub root_id: String,
    pub folders: Vec<Folder>,
    pub messages: HashMap<String, Message>,
    /// Ids of removed (deleted or moved-away) messages: (seq, folder, id).
    pub tombstones: Vec<(u64, String, String)>,
    /// Ids of deleted folders: (seq, id).
    pub folder_tombstones: Vec<(u64, String)>,
    pub seq: u64,
    /// The newest message-delta sync generation of each folder (by id).
    pub delta_generations: HashMap<String, u64>,
}

pub fn new_id(prefix: &str) -> String {
    let raw = uuid::Uuid::new_v4();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_bytes())
    )
}

pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `Integer 0x0E07` == `integer 0xe07`: lower case, hex digits without
/// leading zeros (Exchange answers in its own spelling).
pub fn normalise_property_id(id: &str) -> String {
    let lower = id.trim().to_ascii_lowercase();
    let mut out = String::with_capacity(lower.len());
    let mut rest = lower.as_str();
    while let Some(pos) = rest.find("0x") {
        out.push_str(&rest[..pos + 2]);
        let tail = &rest[pos + 2..];
        let digits = tail.chars().take_while(|c| c.is_ascii_hexdigit()).count();
        let trimmed = tail[..digits].trim_start_matches('0');
        out.push_str(if trimmed.is_empty() { "0" } else { trimmed });
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

impl Mailbox {
    pub fn new() -> Mailbox {
        let root_id = new_id("AAMkRoot");
        let folders: Vec<Folder> = WELL_KNOWN
            .iter()
            .zip(1..)
            .map(|((name, display), seq)| Folder {
                id: new_id("AAMkF"),
                parent_id: root_id.clone(),
                display_name: (*display).to_string(),
                well_known: Some(name),
                hidden: false,
                seq,
            })
            .collect();
        Mailbox {
            root_id,
            seq: folders.len() as u64,
            folders,
            ..Default::default()
        }
    }

    /// A folder by id or well-known name (case-insensitive).
    pub fn folder(&self, id_or_name: &str) -> Option<&Folder> {
        if id_or_name.eq_ignore_ascii_case("msgfolderroot") {
            return None;
        }
        self.folders.iter().find(|f| {
            f.id == id_or_name
                || f.well_known
                    .is_some_and(|w| w.eq_ignore_ascii_case(id_or_name))
        })
    }

    pub fn folder_id(&self, id_or_name: &str) -> Option<String> {
        if id_or_name.eq_ignore_ascii_case("msgfolderroot") || id_or_name == self.root_id {
            return Some(self.root_id.clone());
        }
        self.folder(id_or_name).map(|f| f.id.clone())
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The root of the folder tree, `GET …/mailFolders/msgfolderroot`
    /// (well-known name "msgfolderroot": "the root folder of the user's
    /// mailbox", Exchange's "Top of Information Store"). Its parent is an
    /// id of its own that names no mailFolder Graph serves; it holds no
    /// messages.
    pub fn root_json(&self) -> Value {
        let children = self
            .folders
            .iter()
            .filter(|f| f.parent_id == self.root_id && !f.hidden)
            .count();
        json!({
            "id": self.root_id,
            "displayName": "Top of Information Store",
            "parentFolderId": format!("{}-parent", self.root_id),
            "childFolderCount": children,
            "unreadItemCount": 0,
            "totalItemCount": 0,
            "isHidden": false,
        })
    }

    pub fn folder_json(&self, folder: &Folder) -> Value {
        let (mut total, mut unread) = (0u64, 0u64);
        for m in self.messages.values().filter(|m| m.folder_id == folder.id) {
            total += 1;
            if !m.is_read {
                unread += 1;
            }
        }
        let children = self
            .folders
            .iter()
            .filter(|f| f.parent_id == folder.id)
            .count();
        json!({
            "id": folder.id,
            "displayName": folder.display_name,
            "parentFolderId": folder.parent_id,
            "childFolderCount": children,
            "unreadItemCount": unread,
            "totalItemCount": total,
            "isHidden": folder.hidden,
        })
    }

    /// Insert a message (new seq).
    pub fn insert(&mut self, mut message: Message) -> String {
        message.seq = self.next_seq();
        message.arrived = message.seq;
        message.changed.clear();
        let id = message.id.clone();
        self.messages.insert(id.clone(), message);
        id
    }

    /// Mark a message changed by a PATCH of these top-level properties
    /// (delta reports it again, with only those: see [`Message::changed`]).
    pub fn touch_fields<'a>(&mut self, id: &str, fields: impl IntoIterator<Item = &'a str>) {
        self.touch(id);
        if let Some(m) = self.messages.get_mut(id) {
            let seq = m.seq;
            for f in fields {
                m.changed.insert(f.to_string(), seq);
            }
        }
    }

    /// Mark a message changed (delta reports it again).
    pub fn touch(&mut self, id: &str) {
        let seq = self.next_seq();
        if let Some(m) = self.messages.get_mut(id) {
            m.seq = seq;
            m.modified = Utc::now();
        }
    }

    /// Remove a message, leaving a tombstone in its folder.
    pub fn remove(&mut self, id: &str) -> Option<Message> {
        let message = self.messages.remove(id)?;
        let seq = self.next_seq();
        self.tombstones
            .push((seq, message.folder_id.clone(), message.id.clone()));
        Some(message)
    }
}

/// Properties `$select` may name that Graph leaves out of the default
/// message resource ([`message_json`]): they are written only when named.
const ONLY_WHEN_SELECTED: &[&str] = &["conversationIndex", "uniqueBody", "internetMessageHeaders"];

/// The properties [`message_json`] writes, in Graph's order: the etag,
/// then [`MESSAGE_PROPERTIES`] but [`ONLY_WHEN_SELECTED`].
fn rendered() -> impl Iterator<Item = &'static str> {
    std::iter::once("@odata.etag").chain(
        MESSAGE_PROPERTIES
            .iter()
            .copied()
            .filter(|p| !ONLY_WHEN_SELECTED.contains(p)),
    )
}

/// The message resource as Graph writes it.
pub fn message_json(m: &Message) -> Value {
    Value::Object(
        rendered()
            .filter_map(|name| Some((name.to_string(), message_field(m, name)?)))
            .collect(),
    )
}

/// One property of the message resource as [`message_json`] writes it
/// (`None`: not written), built alone so that `$select` renders only what
/// it names.
pub fn message_field(m: &Message, name: &str) -> Option<Value> {
    let recipient = |(name, address): &(String, String)| json!({"emailAddress": {"name": name, "address": address}});
    let list = |v: &[(String, String)]| Value::Array(v.iter().map(recipient).collect());
    Some(match name {
        "@odata.etag" => json!(format!("W/\"{}\"", m.seq)),
        "id" => json!(m.id),
        "createdDateTime" => json!(timestamp(&m.created)),
        "lastModifiedDateTime" => json!(timestamp(&m.modified)),
        "changeKey" => json!(format!("CQAAABYAAAD{}", m.seq)),
        "categories" => json!(m.categories),
        "receivedDateTime" => json!(timestamp(&m.received)),
        "sentDateTime" => json!(timestamp(&m.sent)),
        "hasAttachments" => json!(m.has_attachments),
        "internetMessageId" => json!(m.internet_message_id),
        "subject" => json!(m.subject),
        "bodyPreview" => json!(m.body_text.chars().take(255).collect::<String>()),
        "importance" => json!("normal"),
        "parentFolderId" => json!(m.folder_id),
        "conversationId" => json!(format!(
            "AAQk{}",
            &m.id.chars().rev().take(16).collect::<String>()
        )),
        "isDeliveryReceiptRequested" => json!(false),
        "isReadReceiptRequested" => json!(false),
        "isRead" => json!(m.is_read),
        "isDraft" => json!(m.is_draft),
        "webLink" => json!(format!(
            "https://outlook.office365.com/owa/?ItemID={}",
            m.id
        )),
        "inferenceClassification" => json!("focused"),
        "body" => json!({"contentType": "text", "content": m.body_text}),
        "sender" | "from" => json!(m.from.as_ref().map(recipient)),
        "toRecipients" => list(&m.to),
        "ccRecipients" => list(&m.cc),
        "bccRecipients" => list(&m.bcc),
        "replyTo" => json!([]),
        "flag" => json!({"flagStatus": m.flag_status}),
        _ => return None,
    })
}

/// Message properties `$select` may name.
pub const MESSAGE_PROPERTIES: &[&str] = &[
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "uniqueBody",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
    "internetMessageHeaders",
];

/// Whether a non-body MIME part counts for `hasAttachments`: Exchange
/// leaves inline attachments out, so a message whose only attachments are
/// inline images has `hasAttachments` false (graph-facts.md
/// "`hasAttachments` excludes inline attachments"). Inline: a part with
/// `Content-Disposition: inline`, or without a disposition but with a
/// `Content-ID` (an image the HTML refers to).
pub(super) fn counts_as_attachment(part: &mail_parser::MessagePart<'_>) -> bool {
    use mail_parser::MimeHeaders;
    match part.content_disposition() {
        Some(d) if d.is_attachment() => true,
        Some(d) if d.is_inline() => false,
        _ => part.content_id().is_none(),
    }
}

/// Parse raw MIME into a message's properties (mail-parser).
pub fn message_from_mime(
    id: String,
    folder_id: String,
    mime: Vec<u8>,
    received: DateTime<Utc>,
) -> Message {
    let parsed = mail_parser::MessageParser::default().parse(&mime);
    let addresses = |a: Option<&mail_parser::Address<'_>>| -> Vec<(String, String)> {
        a.map(|a| {
            a.iter()
                .filter_map(|x| {
                    Some((
                        x.name().unwrap_or_default().to_string(),
                        x.address()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let (subject, from, to, cc, bcc, mid, sent, body, attachments) = match &parsed {
        Some(p) => (
            p.subject().unwrap_or_default().to_string(),
            addresses(p.from()).into_iter().next(),
            addresses(p.to()),
            addresses(p.cc()),
            addresses(p.bcc()),
            p.message_id().map(|m| format!("<{m}>")),
            p.date()
                .and_then(|d| DateTime::parse_from_rfc3339(&d.to_rfc3339()).ok())
                .map(|d| d.with_timezone(&Utc)),
            p.body_text(0).map(|b| b.to_string()).unwrap_or_default(),
            p.attachments().any(counts_as_attachment),
        ),
        None => (
            String::new(),
            None,
            vec![],
            vec![],
            vec![],
            None,
            None,
            String::new(),
            false,
        ),
    };
    let now = Utc::now();
    Message {
        id,
        folder_id,
        mime,
        subject,
        from,
        to,
        cc,
        bcc,
        internet_message_id: mid
            .unwrap_or_else(|| format!("<{}@sim.graphgate>", uuid::Uuid::new_v4().simple())),
        received,
        sent: sent.unwrap_or(received),
        created: now,
        modified: now,
        is_read: false,
        is_draft: false,
        flag_status: "notFlagged".into(),
        categories: vec![],
        body_text: body,
        has_attachments: attachments,
        extended: BTreeMap::new(),
        attachments: Vec::new(),
        seq: 0,
        arrived: 0,
        changed: BTreeMap::new(),
    }
}

/// The raw MIME without its Bcc header (what recipients receive).
pub fn strip_bcc(mime: &[u8]) -> Vec<u8> {
    let header_end = find(mime, b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| find(mime, b"\n\n").map(|p| p + 1))
        .unwrap_or(mime.len());
    let (head, body) = mime.split_at(header_end);
    let mut out = Vec::with_capacity(mime.len());
    let mut skipping = false;
    for line in head.split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if continuation {
            if !skipping {
                out.extend_from_slice(line);
            }
            continue;
        }
        skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(body);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_ids_compare_like_exchange() {
        assert_eq!(
            normalise_property_id("Integer 0x0E07"),
            normalise_property_id("integer 0xe07")
        );
        assert_eq!(normalise_property_id("Integer 0x0E08"), "integer 0xe08");
    }

    #[test]
    fn each_field_alone_is_what_the_whole_resource_says() {
        let mut m = message_from_mime(
            "AAMkId".into(),
            "AAMkF".into(),
            b"From: A <a@x>\r\nTo: b@x\r\nCc: c@x\r\nSubject: s\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n"
                .to_vec(),
            Utc::now(),
        );
        m.seq = 7;
        m.categories = vec!["Red".into()];
        let full = message_json(&m);
        let object = full.as_object().unwrap();
        assert_eq!(object.len(), rendered().count());
        for name in MESSAGE_PROPERTIES.iter().chain(["@odata.etag"].iter()) {
            assert_eq!(message_field(&m, name).as_ref(), full.get(*name), "{name}");
        }
        assert_eq!(full["@odata.etag"], "W/\"7\"");
        assert_eq!(full["from"]["emailAddress"]["address"], "a@x");
        assert_eq!(full["sender"], full["from"]);
        assert_eq!(full["toRecipients"][0]["emailAddress"]["address"], "b@x");
        assert_eq!(
            full["body"]["content"].as_str().map(str::trim),
            Some("body")
        );
        assert_eq!(full["flag"]["flagStatus"], m.flag_status.as_str());
    }

    #[test]
    fn bcc_is_stripped_with_its_continuation_lines() {
        let mime = b"To: a@x\r\nBcc: b@x,\r\n c@x\r\nSubject: s\r\n\r\nBcc: body stays\r\n";
        assert_eq!(
            strip_bcc(mime),
            b"To: a@x\r\nSubject: s\r\n\r\nBcc: body stays\r\n".to_vec()
        );
    }
}
