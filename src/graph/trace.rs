//! The Graph trace: every request the client sends and every answer it
//! gets, one JSON object a line, written when `microsoft.graph_trace` (or
//! `--graph-trace FILE`) names a file. It is what a user attaches to a bug
//! report against a real tenant, and what a simulator regression test is
//! built from (docs/graph-trace.md).
//!
//! Redacted before anything reaches the file:
//! - the `Authorization` header is never written (Entra's token requests do
//!   not go through this client at all);
//! - query values that authorise by themselves (the `authtoken` of an
//!   upload session's URL and the like) become `REDACTED`;
//! - message content: every non-JSON body (base64 MIME for `sendMail` and
//!   drafts, `$value` answers, upload chunks), and inside JSON the values of
//!   `content`, `contentBytes`, `bodyPreview` and `uniqueBody`, also inside
//!   `$batch` requests and answers, whose non-JSON bodies are strings.
//!
//! Kept: methods, paths, ids, query options (`$select`, `$filter`, delta
//! and skip tokens, which authorise nothing without a bearer token),
//! statuses, `Retry-After`, request ids, error bodies, subjects, addresses
//! and flags. Review a trace before sharing it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use http::HeaderMap;
use serde_json::{Map, Value, json};

/// JSON keys whose string values are message content.
const CONTENT_KEYS: &[&str] = &["content", "contentBytes", "bodyPreview", "uniqueBody"];

/// Query parameters whose values authorise a request by themselves.
const SECRET_PARAMS: &[&str] = &[
    "authtoken",
    "access_token",
    "tempauth",
    "sig",
    "signature",
    "code",
    "client_secret",
];

/// Response headers worth keeping (the rest is noise or cookies).
const KEPT_RESPONSE_HEADERS: &[&str] = &[
    "retry-after",
    "request-id",
    "client-request-id",
    "content-type",
    "location",
    "www-authenticate",
    "x-ms-ags-diagnostic",
];

/// Request headers worth keeping (never `Authorization`).
const KEPT_REQUEST_HEADERS: &[&str] = &[
    "prefer",
    "content-type",
    "content-range",
    "if-match",
    "client-request-id",
];

/// An open trace file; one line is written whole under the lock.
pub struct GraphTrace {
    out: Mutex<BufWriter<File>>,
}

impl std::fmt::Debug for GraphTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GraphTrace")
    }
}

/// One exchange, as the client saw it.
pub struct Exchange<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub url: &'a str,
    pub request_headers: &'a [(&'static str, String)],
    pub request_body: Option<(&'a [u8], &'a str)>,
    pub outcome: Outcome<'a>,
}

/// What came back.
pub enum Outcome<'a> {
    Answer {
        status: u16,
        headers: &'a HeaderMap,
        body: &'a [u8],
    },
    Failed(&'a str),
}

impl GraphTrace {
    /// Open `path` for appending, readable by its owner only.
    pub fn open(path: &Path) -> std::io::Result<GraphTrace> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path)?;
        Ok(GraphTrace {
            out: Mutex::new(BufWriter::new(file)),
        })
    }

    /// Append one exchange. A write failure is logged, never fatal: the
    /// trace is a diagnostic, not part of delivery.
    pub fn record(&self, exchange: &Exchange<'_>) {
        let line = render(exchange).to_string();
        let Ok(mut out) = self.out.lock() else {
            return;
        };
        let written = out
            .write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(e) = written {
            tracing::warn!("could not write the Graph trace: {e}");
        }
    }
}

/// The JSON line of one exchange, redacted.
pub fn render(exchange: &Exchange<'_>) -> Value {
    let mut request_headers = Map::new();
    for (name, value) in exchange.request_headers {
        if KEPT_REQUEST_HEADERS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(name))
        {
            request_headers.insert(name.to_ascii_lowercase(), Value::String(value.clone()));
        }
    }
    let mut record = json!({
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "client_request_id": exchange.request_id,
        "method": exchange.method,
        "route": exchange.route,
        "url": redact_url(exchange.url),
        "request": {
            "headers": request_headers,
            "body": exchange
                .request_body
                .map(|(body, content_type)| redact_body(body, content_type))
                .unwrap_or(Value::Null),
        },
    });
    record["response"] = match &exchange.outcome {
        Outcome::Answer {
            status,
            headers,
            body,
        } => {
            let mut kept = Map::new();
            for name in KEPT_RESPONSE_HEADERS {
                if let Some(v) = headers.get(*name).and_then(|v| v.to_str().ok()) {
                    kept.insert((*name).to_string(), Value::String(v.to_string()));
                }
            }
            let content_type = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            json!({
                "status": status,
                "headers": kept,
                "body": redact_body(body, content_type),
            })
        }
        Outcome::Failed(error) => json!({ "error": error }),
    };
    record
}

/// The URL with every authorising query value replaced.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(unparsable URL)".into();
    };
    if parsed.query().is_none() {
        return parsed.to_string();
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let secret = SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s));
            let v = if secret {
                "REDACTED".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

/// A body as it goes into the trace: JSON with its content values
/// redacted, anything else as its size only.
pub fn redact_body(body: &[u8], content_type: &str) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    let json_type = content_type.is_empty()
        || content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if json_type && let Ok(mut value) = serde_json::from_slice::<Value>(body) {
        redact_json(&mut value);
        return value;
    }
    Value::String(format!(
        "REDACTED: {} bytes of {}",
        body.len(),
        if content_type.is_empty() {
            "unknown type"
        } else {
            content_type
        }
    ))
}

/// Replace message content inside a JSON value, in place. `$batch` inner
/// bodies that are strings (base64 of a non-JSON answer, or a MIME
/// request) are content too.
pub fn redact_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let batch_item = map.contains_key("status") && map.contains_key("id")
                || map.contains_key("method") && map.contains_key("url");
            for (key, v) in map.iter_mut() {
                let content = CONTENT_KEYS.contains(&key.as_str())
                    || (batch_item && key == "body" && v.is_string());
                if content {
                    redact_value(v);
                } else {
                    redact_json(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

fn redact_value(v: &mut Value) {
    match v {
        Value::String(s) => *v = Value::String(format!("REDACTED: {} characters", s.len())),
        Value::Object(_) | Value::Array(_) => {
            // `uniqueBody` and the like are objects: redact their strings.
            if let Value::Object(map) = v {
                for inner in map.values_mut() {
                    redact_value(inner);
                }
            } else if let Value::Array(items) = v {
                items.iter_mut().for_each(redact_value);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls_lose_their_token_and_delta_links_keep_theirs() {
        let url = "https://outlook.office.com/api/v2.0/Users('a')/Messages('b')/AttachmentSessions('c')?authtoken=eyJ0eXAi.secret";
        let redacted = redact_url(url);
        assert!(!redacted.contains("eyJ0eXAi"), "{redacted}");
        assert!(redacted.contains("authtoken=REDACTED"), "{redacted}");
        let delta =
            "https://graph.microsoft.com/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=abc";
        assert!(redact_url(delta).contains("deltatoken=abc"));
    }

    #[test]
    fn message_content_is_redacted_and_metadata_kept() {
        let body = json!({
            "subject": "Quarterly figures",
            "body": {"contentType": "html", "content": "<p>secret plans</p>"},
            "bodyPreview": "secret plans",
            "attachments": [{"@odata.type": "#microsoft.graph.fileAttachment",
                "name": "a.pdf", "contentBytes": "JVBERi0xLjQK"}],
            "toRecipients": [{"emailAddress": {"address": "bob@example.com"}}],
        });
        let out = redact_body(body.to_string().as_bytes(), "application/json");
        let text = out.to_string();
        assert!(!text.contains("secret plans"), "{text}");
        assert!(!text.contains("JVBERi0xLjQK"), "{text}");
        assert!(text.contains("Quarterly figures") && text.contains("bob@example.com"));
        assert_eq!(out["attachments"][0]["name"], "a.pdf");
    }

    #[test]
    fn mime_and_batch_string_bodies_are_redacted() {
        let mime = b"RnJvbTogYUBiLmMKClNlY3JldA==";
        let out = redact_body(mime, "text/plain");
        assert_eq!(out, json!("REDACTED: 28 bytes of text/plain"));
        let batch = json!({"responses": [
            {"id": "1", "status": 200, "headers": {"Content-Type": "text/plain"},
             "body": "RnJvbTogYUBiLmMKClNlY3JldA=="},
            {"id": "2", "status": 200, "body": {"id": "m2", "isRead": true}},
        ]});
        let out = redact_body(batch.to_string().as_bytes(), "application/json");
        assert_eq!(
            out["responses"][0]["body"],
            json!("REDACTED: 28 characters")
        );
        assert_eq!(out["responses"][1]["body"]["isRead"], true);
        let requests = json!({"requests": [
            {"id": "1", "method": "POST", "url": "/me/sendMail",
             "headers": {"Content-Type": "text/plain"}, "body": "RnJvbTo="},
        ]});
        let out = redact_body(requests.to_string().as_bytes(), "application/json");
        assert_eq!(out["requests"][0]["body"], json!("REDACTED: 8 characters"));
    }

    #[test]
    fn the_authorization_header_is_never_written() {
        let headers = HeaderMap::new();
        let line = render(&Exchange {
            request_id: "r1",
            method: "GET",
            route: "GET messages/{id}",
            url: "https://graph.microsoft.com/v1.0/me/messages/x",
            request_headers: &[
                ("Authorization", "Bearer eyJsecret".into()),
                ("Prefer", "IdType=\"ImmutableId\"".into()),
            ],
            request_body: None,
            outcome: Outcome::Answer {
                status: 200,
                headers: &headers,
                body: b"{\"id\":\"x\"}",
            },
        });
        let text = line.to_string();
        assert!(!text.contains("eyJsecret"), "{text}");
        assert!(text.contains("ImmutableId"));
        assert_eq!(line["response"]["status"], 200);
    }
}
