//! `GraphError`: what can go wrong talking to Microsoft Graph, classified by
//! Graph's error `code` (never its `message`), with a plain-words remedy for
//! the person running the gateway and a transient/permanent split for the
//! SMTP spool. Codes follow Microsoft's "Microsoft Graph error responses and
//! resource types" and the Exchange error codes listed in graph-facts.md.

use crate::auth::AuthError;

/// The class of a Graph error answer, decided from `code` and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphErrorKind {
    /// 403 `ErrorAccessDenied` / `Authorization_RequestDenied`.
    AccessDenied,
    /// `MailboxNotEnabledForRESTAPI`: on-premises, unlicensed or guest mailbox.
    MailboxNotEnabled,
    /// 403 `ErrorSendAsDenied`.
    SendAsDenied,
    /// `ErrorQuotaExceeded`: the mailbox is full.
    QuotaExceeded,
    /// 400 `ErrorInvalidRecipients`.
    InvalidRecipients,
    /// `ErrorMessageSizeExceeded` or HTTP 413.
    MessageSizeExceeded,
    /// 404 `ErrorItemNotFound` and other not-found answers.
    NotFound,
    /// `ErrorInvalidUser`: the mailbox address does not exist.
    InvalidUser,
    /// 429 `TooManyRequests` (after the retries allowed were spent).
    Throttled,
    /// 503/504 `serviceNotAvailable`/`UnknownError` on 5xx.
    Unavailable,
    /// 401 `InvalidAuthenticationToken` even after a fresh token.
    Unauthorized,
    /// Any other 4xx: the request was wrong.
    BadRequest,
    /// Anything else.
    Other,
}

/// Graph's error answer, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: GraphErrorKind,
    pub status: u16,
    /// Graph's `error.code`, e.g. `ErrorAccessDenied`.
    pub code: String,
    /// Graph's `error.message` (for logs only; never branched on).
    pub message: String,
    /// `innerError.request-id`, to quote to Microsoft support.
    pub request_id: Option<String>,
}

/// Errors of the Graph client.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Graph answered with an error.
    #[error("Graph answered {} {}: {}", .0.status, .0.code, .0.message)]
    Api(ApiError),
    /// The delta token expired (410 Gone or `syncStateNotFound`): the folder
    /// must be synchronised again from scratch.
    #[error("the delta token of this folder expired; a full resync is needed")]
    DeltaReset,
    /// No token could be obtained.
    #[error("could not obtain an access token: {0}")]
    Auth(#[from] AuthError),
    /// The connection failed, timed out or was reset.
    #[error("transport error talking to Graph: {0}")]
    Transport(String),
    /// No connection could be opened (refused, unreachable, TLS handshake
    /// failed): the request was never sent, so even a send may be tried
    /// again without doubt.
    #[error("could not connect to Graph (nothing was sent): {0}")]
    Unreachable(String),
    /// Graph's answer could not be understood.
    #[error("malformed answer from Graph: {0}")]
    Malformed(String),
    /// A size bound of the client was exceeded.
    #[error("limit exceeded: {0}")]
    TooLarge(String),
    /// The request could not be built (bad configuration or argument).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl GraphError {
    /// Graph's `code`, when Graph answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Api(e) => Some(&e.code),
            _ => None,
        }
    }

    /// The HTTP status, when Graph answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Api(e) => Some(e.status),
            GraphError::DeltaReset => Some(410),
            _ => None,
        }
    }

    pub fn kind(&self) -> Option<GraphErrorKind> {
        match self {
            GraphError::Api(e) => Some(e.kind),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (the SMTP spool keeps the
    /// message and retries; otherwise it bounces).
    pub fn is_transient(&self) -> bool {
        match self {
            GraphError::Api(e) => matches!(
                e.kind,
                GraphErrorKind::Throttled | GraphErrorKind::Unavailable
            ),
            GraphError::Transport(_) | GraphError::Unreachable(_) => true,
            // Network trouble reaching Entra ID passes; an answer from
            // Entra ID (revoked grant, bad secret, no consent) does not.
            GraphError::Auth(e) => !matches!(e, AuthError::Entra { .. }) && !e.requires_login(),
            GraphError::DeltaReset
            | GraphError::Malformed(_)
            | GraphError::TooLarge(_)
            | GraphError::Invalid(_) => false,
        }
    }

    /// One sentence for a person: what to do about it.
    pub fn remedy(&self) -> &'static str {
        match self {
            GraphError::Api(e) => match e.kind {
                // The same code as any refusal; only the message tells an
                // Exchange policy that leaves this mailbox out of the app's
                // reach (graph-facts.md "Errors"). Used for the advice
                // only, never for what the gateway does.
                GraphErrorKind::AccessDenied
                    if e.message.contains("Access to OData is disabled") =>
                {
                    "An Exchange Online policy keeps this app out of this mailbox (\"Access to OData is disabled.\"): an Exchange admin checks it with `Test-ServicePrincipalAuthorization -Identity <app id> -Resource <mailbox>` (RBAC for Applications) or `Test-ApplicationAccessPolicy -Identity <mailbox> -AppId <app id>`, then adds the mailbox to the app's management scope or policy group; or sign in with `graphgate login` as a user instead of app-only."
                }
                GraphErrorKind::AccessDenied => {
                    "Grant the app the Mail.ReadWrite and Mail.Send permissions (delegated, or application with admin consent) and check that no Exchange RBAC scope or application access policy excludes this mailbox."
                }
                GraphErrorKind::MailboxNotEnabled => {
                    "This mailbox cannot be reached through Graph: it is on-premises, has no Exchange Online licence, or is a guest account; use a licensed Exchange Online mailbox."
                }
                GraphErrorKind::SendAsDenied => {
                    "Grant this account Send As on the sending address in the Exchange admin center (and Mail.Send.Shared for delegated sign-ins)."
                }
                GraphErrorKind::QuotaExceeded => {
                    "The mailbox is full: delete or archive mail, or raise its quota in the Exchange admin center."
                }
                GraphErrorKind::InvalidRecipients => {
                    "Check the To, Cc and Bcc addresses: the message has no valid recipient."
                }
                // 413: the request, not the message, was too large for
                // Graph (about 4 MB per request).
                GraphErrorKind::MessageSizeExceeded if e.status == 413 => {
                    "The request was larger than Microsoft Graph takes in one request (about 4 MB): send large content as attachments, which graphgate uploads separately."
                }
                GraphErrorKind::MessageSizeExceeded => {
                    "The message is larger than the mailbox allows (35 MB by default): send a smaller message or ask an admin to raise the limit."
                }
                GraphErrorKind::NotFound => {
                    "The item no longer exists on the server; refresh the folder."
                }
                GraphErrorKind::InvalidUser => {
                    "The mailbox address is not known in the tenant: check the configured user or shared mailbox."
                }
                GraphErrorKind::Throttled => {
                    "Microsoft is throttling this mailbox; nothing to do, the gateway retries later."
                }
                GraphErrorKind::Unavailable => {
                    "Microsoft Graph is temporarily unavailable; the gateway retries later."
                }
                GraphErrorKind::Unauthorized => {
                    "The access token was refused: sign in again with `graphgate login`."
                }
                GraphErrorKind::BadRequest | GraphErrorKind::Other => {
                    "Graph refused the request; the error code and request id identify it for support."
                }
            },
            GraphError::DeltaReset => {
                "Nothing to do: the folder is synchronised again from scratch."
            }
            GraphError::Auth(_) => {
                "Sign in again with `graphgate login`, or check the app's client secret or certificate."
            }
            GraphError::Transport(_) | GraphError::Unreachable(_) => {
                "Check the network connection to graph.microsoft.com (proxy, firewall, DNS); the gateway retries."
            }
            GraphError::Malformed(_) => {
                "Graph sent an answer the gateway does not understand; report it with the request id."
            }
            GraphError::TooLarge(_) => "The item is larger than the gateway accepts.",
            GraphError::Invalid(_) => "Check the gateway configuration.",
        }
    }
}

/// The class of an error answer: `code` first, then the HTTP status.
pub fn classify(status: u16, code: &str) -> GraphErrorKind {
    let code_is = |c: &str| code.eq_ignore_ascii_case(c);
    if code_is("ErrorAccessDenied")
        || code_is("Authorization_RequestDenied")
        || code_is("AccessDenied")
    {
        GraphErrorKind::AccessDenied
    } else if code_is("MailboxNotEnabledForRESTAPI") || code_is("MailboxNotSupportedForRESTAPI") {
        GraphErrorKind::MailboxNotEnabled
    } else if code_is("ErrorSendAsDenied") {
        GraphErrorKind::SendAsDenied
    } else if code_is("ErrorQuotaExceeded") {
        GraphErrorKind::QuotaExceeded
    } else if code_is("ErrorInvalidRecipients") {
        GraphErrorKind::InvalidRecipients
    } else if code_is("ErrorMessageSizeExceeded") || status == 413 {
        GraphErrorKind::MessageSizeExceeded
    } else if code_is("ErrorInvalidUser") {
        GraphErrorKind::InvalidUser
    } else if code_is("ErrorItemNotFound") || status == 404 {
        GraphErrorKind::NotFound
    } else if status == 429 || code_is("TooManyRequests") || code_is("ApplicationThrottled") {
        GraphErrorKind::Throttled
    } else if status == 503 || status == 504 || code_is("serviceNotAvailable") {
        GraphErrorKind::Unavailable
    } else if status == 401 {
        GraphErrorKind::Unauthorized
    } else if status == 403 {
        GraphErrorKind::AccessDenied
    } else if (400..500).contains(&status) {
        GraphErrorKind::BadRequest
    } else {
        GraphErrorKind::Other
    }
}

/// Whether an answer is a throttling refusal, i.e. the request was not
/// carried out and may be sent again whatever its method: any 429, and a
/// 503 whose code is `ApplicationThrottled` or `TooManyRequests`. Graph's
/// throttling guidance documents MailboxConcurrency refusals as 429
/// `ApplicationThrottled` "Application is over its MailboxConcurrency
/// limit."; whether Exchange also answers them 503 is unverified
/// (graph-facts.md, "Unverified"), so a 503 that names throttling is read
/// as one. Other 503s may follow a POST that was carried out (a gateway
/// timeout) and are resent only when idempotent.
pub fn is_throttle_refusal(status: u16, body: &[u8]) -> bool {
    status == 429
        || (status == 503
            && matches!(
                super::decode::decode_error(status, body),
                GraphError::Api(ref a) if a.code.eq_ignore_ascii_case("ApplicationThrottled")
                    || a.code.eq_ignore_ascii_case("TooManyRequests")
            ))
}

/// Whether an error answer means "the delta token is no longer valid".
pub fn is_delta_reset(status: u16, code: &str) -> bool {
    status == 410
        || ((400..500).contains(&status)
            && (code.eq_ignore_ascii_case("syncStateNotFound")
                || code.eq_ignore_ascii_case("resyncRequired")
                || code.eq_ignore_ascii_case("SyncStateInvalid")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_503_is_a_throttle_refusal_only_when_its_code_says_so() {
        let body = |code: &str| {
            format!(
                r#"{{"error":{{"code":"{code}","message":"Application is over its MailboxConcurrency limit."}}}}"#
            )
        };
        assert!(is_throttle_refusal(429, b""));
        assert!(is_throttle_refusal(
            503,
            body("ApplicationThrottled").as_bytes()
        ));
        assert!(!is_throttle_refusal(
            503,
            body("serviceNotAvailable").as_bytes()
        ));
        assert!(!is_throttle_refusal(503, b"<html>busy</html>"));
        assert!(!is_throttle_refusal(
            504,
            body("ApplicationThrottled").as_bytes()
        ));
    }

    fn api(status: u16, code: &str) -> GraphError {
        GraphError::Api(ApiError {
            kind: classify(status, code),
            status,
            code: code.into(),
            message: "m".into(),
            request_id: None,
        })
    }

    #[test]
    fn classes_follow_the_code_not_the_message() {
        assert_eq!(
            classify(403, "ErrorSendAsDenied"),
            GraphErrorKind::SendAsDenied
        );
        assert_eq!(
            classify(404, "MailboxNotEnabledForRESTAPI"),
            GraphErrorKind::MailboxNotEnabled
        );
        assert_eq!(classify(404, "ErrorItemNotFound"), GraphErrorKind::NotFound);
        assert_eq!(classify(429, "TooManyRequests"), GraphErrorKind::Throttled);
        assert_eq!(classify(413, ""), GraphErrorKind::MessageSizeExceeded);
        assert_eq!(
            classify(400, "ErrorInvalidRecipients"),
            GraphErrorKind::InvalidRecipients
        );
        assert!(api(503, "serviceNotAvailable").is_transient());
        assert!(!api(403, "ErrorAccessDenied").is_transient());
        assert!(api(403, "ErrorSendAsDenied").remedy().contains("Send As"));
        assert!(
            api(404, "MailboxNotEnabledForRESTAPI")
                .remedy()
                .contains("on-premises")
        );
    }

    #[test]
    fn delta_reset_is_410_or_sync_state_not_found() {
        assert!(is_delta_reset(410, ""));
        assert!(is_delta_reset(400, "syncStateNotFound"));
        assert!(!is_delta_reset(400, "ErrorInvalidUrlQuery"));
    }

    #[test]
    fn a_413_is_the_request_size_not_the_mailbox_limit() {
        let request = api(413, "RequestEntityTooLarge").remedy();
        assert!(request.contains("one request"), "{request}");
        let message = api(400, "ErrorMessageSizeExceeded").remedy();
        assert!(message.contains("35 MB"), "{message}");
    }
}
