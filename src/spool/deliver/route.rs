//! Which MIME the draft route sends as the draft and which attachments it
//! adds: the whole message, a split of the spool file, or — after Graph
//! refused a request for its size — a split of the message in memory.

use bytes::Bytes;

use super::{MAX_DIRECT_MIME, Outcome};
use crate::graph::{GraphError, GraphErrorKind};
use crate::mime::split::{AttachmentPart, SplitError, plan_split, plan_split_file};
use crate::spool::Spool;
use crate::store::SpoolEntry;

/// Graph refused the request for its size (413, or
/// `ErrorMessageSizeExceeded` on a request under [`MAX_DIRECT_MIME`]): the
/// request was not carried out, so nothing was sent or created, and the
/// draft route with the attachments split off can still take it
/// (graph-facts.md, "MIME request size").
pub(super) fn is_size_refusal(e: &GraphError) -> bool {
    e.status() == Some(413) || e.kind() == Some(GraphErrorKind::MessageSizeExceeded)
}

/// Where the draft route takes a message from.
pub(super) enum Route {
    /// Small: one draft from the whole MIME (read from the spool).
    Whole,
    /// Above [`MAX_DIRECT_MIME`]: split while reading the spool file.
    LargeFile,
    /// Refused for its size in one request: this whole MIME (prefix
    /// included), split in memory into a smaller draft and attachments.
    Refused(Bytes),
}

/// Where the attachments split off a message are read from.
pub(super) enum Source {
    File(std::path::PathBuf),
    Memory(Bytes),
}

impl Spool {
    /// The draft's MIME and the attachments to add to it, by `route`;
    /// with the whole MIME when a size refusal may still split it.
    pub(super) async fn draft_plan(
        &self,
        entry: &SpoolEntry,
        route: Route,
        body: Option<Bytes>,
    ) -> Result<(Vec<u8>, Vec<AttachmentPart>, Source, Option<Bytes>), Outcome> {
        let too_large = |text: String| Outcome::Failed {
            code: 552,
            enhanced: "5.3.4".into(),
            text,
        };
        match route {
            Route::Whole => match self.message_mime(entry, body).await {
                Ok(mime) => {
                    let whole = Bytes::from(mime);
                    Ok((
                        whole.to_vec(),
                        Vec::new(),
                        Source::Memory(whole.clone()),
                        Some(whole),
                    ))
                }
                Err(why) => Err(self.not_sent(entry, why)),
            },
            Route::LargeFile => {
                let path = std::path::PathBuf::from(&entry.path);
                let prefix = entry.prefix.clone().into_bytes();
                let file = path.clone();
                let planned = tokio::task::spawn_blocking(move || {
                    plan_split_file(&file, &prefix, MAX_DIRECT_MIME)
                })
                .await;
                match planned {
                    Ok(Ok(plan)) => {
                        Ok((plan.draft_mime, plan.attachments, Source::File(path), None))
                    }
                    Ok(Err(SplitError::Io(e))) => {
                        Err(self.not_sent(entry, format!("cannot read the spool file: {e}")))
                    }
                    Ok(Err(e)) => Err(too_large(e.to_string())),
                    Err(e) => Err(self.not_sent(entry, format!("the split task failed: {e}"))),
                }
            }
            Route::Refused(mime) => {
                // Strictly smaller than the request Graph refused.
                let limit = MAX_DIRECT_MIME.min(mime.len().saturating_sub(1));
                let refused = |why: String| {
                    too_large(format!(
                        "Microsoft Graph refused the message's {} bytes as too large for one \
                         request, and {why}",
                        mime.len()
                    ))
                };
                match plan_split(std::io::Cursor::new(mime.as_ref()), b"", limit) {
                    Ok(plan) if plan.attachments.is_empty() => Err(refused(
                        "it has no attachments to send separately; send large content as an \
                         attachment"
                            .into(),
                    )),
                    Ok(plan) => Ok((
                        plan.draft_mime,
                        plan.attachments,
                        Source::Memory(mime.clone()),
                        None,
                    )),
                    Err(e) => Err(refused(e.to_string())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ApiError;
    use crate::graph::error::classify;

    fn api(status: u16, code: &str) -> GraphError {
        GraphError::Api(ApiError {
            kind: classify(status, code),
            status,
            code: code.into(),
            message: String::new(),
            request_id: None,
        })
    }

    #[test]
    fn size_refusals_are_413_or_error_message_size_exceeded() {
        assert!(is_size_refusal(&api(413, "RequestEntityTooLarge")));
        assert!(is_size_refusal(&api(413, "")));
        assert!(is_size_refusal(&api(400, "ErrorMessageSizeExceeded")));
        assert!(!is_size_refusal(&api(400, "ErrorInvalidRecipients")));
        assert!(!is_size_refusal(&api(503, "serviceNotAvailable")));
        assert!(!is_size_refusal(&GraphError::TooLarge("x".into())));
    }
}
