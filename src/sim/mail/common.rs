//! What every simulated mail handler shares: the access checks Graph makes
//! (which mailbox, which permission), query options, rendering and paging.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::SimState;
use super::model::{self, MESSAGE_PROPERTIES, Mailbox, Message, message_field, message_json};
use crate::sim::caller::Caller;
use crate::sim::errors::GraphError;

pub(super) type Params = Path<HashMap<String, String>>;
pub(super) type QueryMap = Query<HashMap<String, String>>;
pub(super) type Answer = Result<Response, GraphError>;

/// Graph's request size limit (about 4 MB).
pub(super) const MAX_REQUEST: usize = 4 * 1024 * 1024;
/// Exchange Online's default message size limit.
pub(super) const MAX_MESSAGE: usize = 35 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Need {
    Read,
    Write,
    Send,
}

/// The mailbox a request addresses, after the access checks Graph makes.
pub(super) struct Target {
    pub(super) user_id: String,
    pub(super) upn: String,
}

pub(super) fn target(
    state: &SimState,
    caller: &Caller,
    params: &Params,
    need: Need,
) -> Result<Target, GraphError> {
    let tenant = state.tenant();
    let user = match params.get("id") {
        None => {
            let Some(uid) = &caller.user_id else {
                return Err(GraphError::bad_request(
                    "BadRequest",
                    "/me request is only valid with delegated authentication flow.",
                ));
            };
            tenant.user(uid)
        }
        Some(id) => tenant.user(id),
    };
    let Some(user) = user else {
        return Err(GraphError::new(
            StatusCode::NOT_FOUND,
            "ErrorInvalidUser",
            "The requested user is invalid.",
        ));
    };
    if !user.mailbox_enabled {
        return Err(GraphError::new(
            StatusCode::NOT_FOUND,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        ));
    }
    let permission = match need {
        Need::Read => "Mail.Read",
        Need::Write => "Mail.ReadWrite",
        Need::Send => "Mail.Send",
    };
    let allowed = match &caller.user_id {
        None => caller.has(permission),
        Some(uid) if uid.eq_ignore_ascii_case(&user.id) => caller.has(permission),
        Some(uid) => {
            let me = tenant.user(uid);
            let rights = me.is_some_and(|me| match need {
                Need::Send => me.send_as.iter().any(|m| m.eq_ignore_ascii_case(&user.upn)),
                _ => me
                    .full_access
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&user.upn)),
            });
            rights && caller.has(&format!("{permission}.Shared"))
        }
    };
    if !allowed {
        return Err(GraphError::access_denied());
    }
    if caller.user_id.is_none() && state.mail().app_access_blocked(&user.id) {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "ErrorAccessDenied",
            "Access to OData is disabled.",
        ));
    }
    Ok(Target {
        user_id: user.id.clone(),
        upn: user.upn.clone(),
    })
}

pub(super) fn with_mailbox<R>(
    state: &SimState,
    target: &Target,
    f: impl FnOnce(&mut Mailbox) -> Result<R, GraphError>,
) -> Result<R, GraphError> {
    state
        .mail()
        .with(&target.user_id, f)
        .unwrap_or_else(|| Err(GraphError::not_found("mailbox")))
}

pub(super) fn base_url(state: &SimState) -> String {
    state.config().public_url.trim_end_matches('/').to_string()
}

pub(super) fn prefix(params: &Params) -> String {
    match params.get("id") {
        Some(id) => format!("users/{id}"),
        None => "me".into(),
    }
}

pub(super) fn immutable_ids(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("IdType=\"ImmutableId\""))
}

pub(super) fn max_page_size(headers: &HeaderMap) -> Option<usize> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("odata.maxpagesize="))
        .and_then(|n| n.trim().parse().ok())
}

pub(super) fn top(query: &QueryMap, default: usize) -> Result<usize, GraphError> {
    match query.get("$top") {
        None => Ok(default),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(GraphError::bad_request(
                "ErrorInvalidUrlQuery",
                format!("Invalid value '{t}' for $top; it must be between 1 and 1000."),
            )),
        },
    }
}

pub(super) fn skip(query: &QueryMap) -> usize {
    query.get("$skip").and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// `$select` checked against the message type's properties.
pub(super) fn select(query: &QueryMap) -> Result<Option<Vec<String>>, GraphError> {
    let Some(list) = query.get("$select") else {
        return Ok(None);
    };
    let mut fields = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !MESSAGE_PROPERTIES.contains(&name) {
            return Err(GraphError::bad_request(
                "RequestBroker--ParseUri",
                format!(
                    "Could not find a property named '{name}' on type 'Microsoft.OutlookServices.Message'."
                ),
            ));
        }
        fields.push(name.to_string());
    }
    Ok(Some(fields))
}

/// Extended properties named in `$expand=singleValueExtendedProperties($filter=id eq '…' or …)`.
pub(super) fn expanded_properties(query: &QueryMap) -> Option<Vec<String>> {
    let expand = query.get("$expand")?;
    if !expand.starts_with("singleValueExtendedProperties") {
        return None;
    }
    Some(
        expand
            .split('\'')
            .skip(1)
            .step_by(2)
            .map(model::normalise_property_id)
            .collect(),
    )
}

pub(super) fn render(
    m: &Message,
    select: &Option<Vec<String>>,
    expand: &Option<Vec<String>>,
) -> Value {
    let mut out = match select {
        None => message_json(m),
        Some(fields) => {
            // Only the fields named are built (a delta page of 500 built
            // every property of each message, bodies included, to keep a
            // dozen).
            let mut o = serde_json::Map::new();
            for f in ["@odata.etag", "id"] {
                if let Some(v) = message_field(m, f) {
                    o.insert(f.into(), v);
                }
            }
            for f in fields {
                if f == "internetMessageHeaders" {
                    o.insert(f.clone(), headers_json(&m.mime));
                } else if let Some(v) = message_field(m, f) {
                    o.insert(f.clone(), v);
                }
            }
            Value::Object(o)
        }
    };
    if let Some(ids) = expand {
        let props: Vec<Value> = ids
            .iter()
            .filter_map(|id| {
                property(m, id).map(|(spelling, value)| json!({"id": spelling, "value": value}))
            })
            .collect();
        if !props.is_empty() {
            out["singleValueExtendedProperties"] = Value::Array(props);
        }
    }
    out
}

/// An extended property's Exchange spelling and value; the size property
/// is computed (Exchange's storage size: more than the MIME length).
pub(super) fn property(m: &Message, normalised: &str) -> Option<(String, String)> {
    if normalised == "integer 0xe08" {
        return Some(("Integer 0xe08".into(), (m.mime.len() + 412).to_string()));
    }
    m.extended.get(normalised).cloned()
}

pub(super) fn headers_json(mime: &[u8]) -> Value {
    let parsed = mail_parser::MessageParser::default().parse_headers(mime);
    let list = parsed
        .map(|p| {
            p.headers_raw()
                .map(|(name, value)| json!({"name": name, "value": value.trim()}))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    Value::Array(list)
}

pub(super) fn collection(context: String, items: Vec<Value>, next: Option<String>) -> Response {
    let mut body = json!({"@odata.context": context, "value": items});
    if let Some(next) = next {
        body["@odata.nextLink"] = json!(next);
    }
    Json(body).into_response()
}
