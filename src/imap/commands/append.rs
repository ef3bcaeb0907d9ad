//! APPEND (RFC 3501 §6.3.11, UIDPLUS RFC 4315 §3): the mailbox model
//! creates the message in Graph as a non-draft message of the target
//! folder, with its date and flags (`\Seen`, `\Flagged`, `\Answered`,
//! `$Forwarded`, keywords as categories); the tagged OK carries
//! `[APPENDUID]` once the folder's sync has given the new message its UID.
//! When the target is the selected folder, the command boundary's report
//! announces it (`* n EXISTS`). A `literal8` (BINARY, RFC 3516 §4.2)
//! has its `binary` parts stored as base64. Costs one message creation (see the
//! backend's append route) and one delta query on the folder.

use super::Ctx;
use std::num::NonZeroU32;

use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_next::imap_types::flag::Flag;
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::Code;

use crate::imap::session::{Reply, local_name};
use crate::mailbox::{Flags, flags};

pub(crate) async fn handle(
    ctx: &mut Ctx<'_, '_>,
    mailbox: &Mailbox<'_>,
    list: &[Flag<'_>],
    date: Option<&DateTime>,
    message: &LiteralOrLiteral8<'_>,
) -> Reply {
    let state = &ctx.conn.state;
    let Some(auth) = state.account() else {
        return Reply::bad("not logged in");
    };
    let folder_name = local_name(mailbox);
    let Ok(folder) = auth.model.folder(&folder_name) else {
        return Reply::no(format!("[TRYCREATE] no folder named {folder_name:?}"));
    };
    let (data, literal8) = match message {
        LiteralOrLiteral8::Literal(l) => (l.data(), false),
        LiteralOrLiteral8::Literal8(l) => (l.data.as_ref(), true),
    };
    // A large literal was written to a spool file as it came (stream.rs).
    let bytes = match ctx.sink.take_spooled(data) {
        None => bytes::Bytes::from(data.to_vec()),
        Some(spooled) => match read_spooled(spooled).await {
            Ok(bytes) => bytes,
            Err(e) => {
                return Reply::no(format!(
                    "the message could not be kept in its spool file: {e} (check the free \
                     space of the temporary directory, TMPDIR)"
                ));
            }
        },
    };
    // RFC 3516 §4.2: a literal8 may carry parts in the `binary` transfer
    // encoding (NUL included), which no literal, Graph MIME or cached byte
    // stream keeps: they are stored as base64, and BINARY[part] gives
    // their octets back.
    let bytes = if literal8 {
        crate::mime::imap::binary::encode_binary_parts(&bytes)
            .map(bytes::Bytes::from)
            .unwrap_or(bytes)
    } else {
        bytes
    };
    let date = date.map(|d| d.as_ref().with_timezone(&chrono::Utc));
    match auth
        .model
        .append(
            &folder,
            bytes,
            &append_flags(list),
            date,
            &ctx.server.shared.cache,
        )
        .await
    {
        Ok(uid) => {
            let mut reply = Reply::ok("APPEND completed");
            if let (Some(uid), Some(uid_validity)) = (
                uid.and_then(|u| NonZeroU32::new(u.0)),
                NonZeroU32::new(folder.uid_validity.0),
            ) {
                reply.status = Ok((
                    Some(Code::AppendUid { uid_validity, uid }),
                    "APPEND completed".into(),
                ));
            }
            reply
        }
        Err(e) => Reply::no(format!("Graph refused the message: {e}")),
    }
}

/// The bytes of a spooled literal, in one buffer of their exact size.
async fn read_spooled(
    spooled: std::io::Result<crate::imap::stream::Spooled>,
) -> std::io::Result<bytes::Bytes> {
    let mut spooled = spooled?;
    tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Seek as _};
        spooled.file.seek(std::io::SeekFrom::Start(0))?;
        let mut out = Vec::with_capacity(usize::try_from(spooled.len).unwrap_or(0));
        spooled.file.read_to_end(&mut out)?;
        Ok(bytes::Bytes::from(out))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The flags an APPENDed message is created with (`\Deleted` and
/// `\Draft` cannot be set at creation through Graph).
fn append_flags(list: &[Flag<'_>]) -> Flags {
    let mut out = Flags::default();
    for f in list {
        match f {
            Flag::Seen => out.bits |= flags::SEEN,
            Flag::Flagged => out.bits |= flags::FLAGGED,
            Flag::Answered => out.bits |= flags::ANSWERED,
            Flag::Keyword(k) if k.as_ref().eq_ignore_ascii_case("$Forwarded") => {
                out.bits |= flags::FORWARDED
            }
            Flag::Keyword(k) => out.keywords.push(k.as_ref().to_string()),
            _ => {}
        }
    }
    out.keywords.sort();
    out.keywords.dedup();
    out
}

/// An APPEND whose literal holds NUL bytes, which imap-types refuses
/// (RFC 3501's `CHAR8` excludes %x00) and imap-next therefore discards as
/// malformed: parsed again with each NUL as 0x80, the byte
/// `mailbox/appended.rs` stores for it (as Dovecot does), so the message is
/// stored instead of answered `BAD`. `None` for anything else.
pub(crate) fn with_nul_replaced(discarded: &[u8]) -> Option<Command<'static>> {
    use imap_codec::decode::Decoder as _;
    if !discarded.contains(&0) {
        return None;
    }
    let fixed: Vec<u8> = discarded
        .iter()
        .map(|&b| if b == 0 { 0x80 } else { b })
        .collect();
    let (_, command) = imap_codec::CommandCodec::default().decode(&fixed).ok()?;
    matches!(command.body, CommandBody::Append { .. }).then(|| command.into_static())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_with_nul_is_parsed_with_0x80_and_nothing_else_is() {
        let cmd = b"a APPEND INBOX {13}\r\nSubject: \0x\r\n\r\n";
        let command = with_nul_replaced(cmd).expect("an APPEND");
        match command.body {
            CommandBody::Append { message, .. } => {
                let data = match &message {
                    LiteralOrLiteral8::Literal(l) => l.data().to_vec(),
                    LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
                };
                assert_eq!(data, b"Subject: \x80x\r\n");
            }
            other => panic!("{other:?}"),
        }
        assert!(with_nul_replaced(b"a APPEND INBOX {3}\r\nabc\r\n").is_none());
        assert!(with_nul_replaced(b"a LOGIN \0 x\r\n").is_none());
    }
}
