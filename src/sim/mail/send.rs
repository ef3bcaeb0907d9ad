//! sendMail and sending drafts: delivery to the tenant's users without Bcc,
//! NDRs for unknown addresses of the tenant, external deliveries recorded,
//! Send As checks, Sent Items copies.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use chrono::Utc;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::model::{self, Message};
use super::{ExternalDelivery, SimState};
use crate::sim::caller::Caller;
use crate::sim::errors::GraphError;

use super::common::*;
use super::exchange::store_as_exchange;
use super::folders::*;
use super::messages::*;

/// Deliver `m` (sent by `t`): a copy without Bcc to every tenant recipient's
/// Inbox, an NDR for unknown addresses in the tenant's domains, external
/// addresses recorded, and the sender's copy in Sent Items. `keep_id`: the
/// copy keeps `m`'s id (a draft sent under immutable ids), else it gets a
/// new one.
pub(super) fn deliver(
    state: &SimState,
    t: &Target,
    mut m: Message,
    save: bool,
    keep_id: bool,
) -> Result<(), GraphError> {
    let tenant = state.tenant();
    if m.to.is_empty() && m.cc.is_empty() && m.bcc.is_empty() {
        return Err(GraphError::bad_request(
            "ErrorInvalidRecipients",
            "A message can't be sent because it contains no recipients.",
        ));
    }
    if m.mime.len() > MAX_MESSAGE {
        return Err(GraphError::bad_request(
            "ErrorMessageSizeExceeded",
            "The message exceeds the maximum supported size.",
        ));
    }
    if let Some((_, from)) = &m.from {
        let sender = tenant.user(&t.user_id);
        let own = sender.is_some_and(|u| {
            u.upn.eq_ignore_ascii_case(from)
                || u.aliases.iter().any(|a| a.eq_ignore_ascii_case(from))
        });
        let send_as =
            sender.is_some_and(|u| u.send_as.iter().any(|s| s.eq_ignore_ascii_case(from)));
        if !own && !send_as {
            return Err(GraphError::new(
                StatusCode::FORBIDDEN,
                "ErrorSendAsDenied",
                "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account.",
            ));
        }
    }
    let delivered_mime = model::strip_bcc(&m.mime);
    let mut everyone: Vec<String> =
        m.to.iter()
            .chain(&m.cc)
            .chain(&m.bcc)
            .map(|(_, a)| a.clone())
            .collect();
    everyone.sort_by_key(|a| a.to_ascii_lowercase());
    everyone.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    let mut unknown = Vec::new();
    for address in everyone {
        match tenant.user_by_address(&address) {
            Some(user) if user.mailbox_enabled => {
                let mut copy = model::message_from_mime(
                    model::new_id("AAMkM"),
                    String::new(),
                    delivered_mime.clone(),
                    Utc::now(),
                );
                copy.bcc.clear();
                store_as_exchange(state, &mut copy, true);
                state.mail().with(&user.id, |mb| {
                    if let Some(inbox) = mb.folder_id("inbox") {
                        copy.folder_id = inbox;
                        mb.insert(copy);
                    }
                });
            }
            _ => {
                let domain = address.rsplit('@').next().unwrap_or_default();
                if tenant
                    .domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(domain))
                {
                    unknown.push(address);
                } else {
                    state.mail().record_external(ExternalDelivery {
                        from: t.upn.clone(),
                        to: address,
                        mime: delivered_mime.clone(),
                    });
                }
            }
        }
    }
    store_as_exchange(state, &mut m, false);
    state.mail().with(&t.user_id, |mb| {
        if !unknown.is_empty() {
            let ndr = format!(
                "From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@example.com>\r\nTo: {}\r\nSubject: Undeliverable: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour message couldn't be delivered to {} because the address couldn't be found.\r\n",
                t.upn,
                m.subject,
                unknown.join(", ")
            );
            if let Some(inbox) = mb.folder_id("inbox") {
                let mut n = model::message_from_mime(model::new_id("AAMkM"), inbox, ndr.into_bytes(), Utc::now());
                store_as_exchange(state, &mut n, true);
                mb.insert(n);
            }
        }
        if save && let Some(sent) = mb.folder_id("sentitems") {
            m.folder_id = sent;
            m.is_draft = false;
            m.is_read = true;
            if !keep_id {
                m.id = model::new_id("AAMkM");
            }
            mb.insert(m);
        }
    });
    Ok(())
}

pub async fn send_mail(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Send)?;
    if body.len() > MAX_REQUEST {
        return Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "The request payload is larger than the limit of the service (about 4 MB).",
        ));
    }
    let (message, save) = if is_mime_request(&headers) {
        let mime = decode_mime_request(&state, &body)?;
        // "user: sendMail": saveToSentItems is a parameter of the JSON body;
        // a MIME sendMail saves the message in Sent Items.
        (
            model::message_from_mime(model::new_id("AAMkM"), String::new(), mime, Utc::now()),
            true,
        )
    } else {
        let body = json_body(&body)?;
        let message = body.get("message").ok_or_else(|| {
            GraphError::bad_request(
                "ErrorInvalidRequest",
                "The 'message' parameter is required.",
            )
        })?;
        let save = body
            .get("saveToSentItems")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        (message_from_json(message, String::new(), &t.upn), save)
    };
    deliver(&state, &t, message, save, false)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn send_draft(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    headers: HeaderMap,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Send)?;
    let id = params.get("message_id").cloned().unwrap_or_default();
    let draft = with_mailbox(&state, &t, |mb| {
        let m = find(mb, &id)?;
        if !m.is_draft {
            return Err(GraphError::bad_request(
                "ErrorInvalidOperation",
                "Only drafts can be sent.",
            ));
        }
        Ok(mb.remove(&id))
    })?
    .ok_or_else(|| GraphError::not_found("message"))?;
    let mut draft = draft;
    if !draft.attachments.is_empty() {
        draft.mime = model::mime_with_attachments(&draft.mime, &draft.attachments);
        // Now part of the MIME (listed from it, not twice).
        draft.attachments.clear();
    }
    // PR_DELETE_AFTER_SUBMIT (`Boolean 0x0E01`) set on the draft: no copy
    // stays in Sent Items, as Exchange does.
    let save = !draft
        .extended
        .get(&model::normalise_property_id("Boolean 0x0E01"))
        .is_some_and(|(_, v)| v.eq_ignore_ascii_case("true"));
    // With `Prefer: IdType="ImmutableId"` the Sent Items copy keeps the
    // draft's id: an immutable id "doesn't change when the item is moved"
    // and sending moves the draft to Sent Items
    // (learn.microsoft.com/graph/outlook-immutable-id; graph-facts.md "Sent
    // copy and immutable ids"). Without it, a new id, as for any move.
    deliver(&state, &t, draft, save, immutable_ids(&headers))?;
    Ok(StatusCode::ACCEPTED.into_response())
}
