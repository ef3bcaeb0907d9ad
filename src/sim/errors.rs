//! Error bodies in Microsoft's shapes: Graph's
//! `{"error":{"code","message","innerError":{…}}}` and Entra ID's OAuth
//! error with AADSTS codes. Both sides of the simulator build their errors
//! here so that every error on the wire has the same shape Microsoft uses.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde_json::json;

/// A Graph error response.
#[derive(Debug, Clone)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra headers (`Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn not_found(what: &str) -> Self {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            format!("The specified object was not found in the store., {what}"),
        )
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        GraphError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn access_denied() -> Self {
        GraphError::new(
            StatusCode::FORBIDDEN,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        )
    }

    /// The JSON body, as Graph writes it.
    pub fn body(&self) -> serde_json::Value {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": now,
                    "request-id": uuid::Uuid::new_v4().to_string(),
                    "client-request-id": uuid::Uuid::new_v4().to_string(),
                }
            }
        })
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                response.headers_mut().insert(*name, v);
            }
        }
        response
    }
}

/// An Entra ID (v2 endpoint) OAuth error response, HTTP 400 unless stated.
#[derive(Debug, Clone)]
pub struct EntraError {
    pub status: StatusCode,
    /// OAuth error: `invalid_grant`, `invalid_client`, `authorization_pending`…
    pub error: &'static str,
    /// The AADSTS number, 0 for the device-flow polling answers that carry
    /// one in Microsoft's service too (they do: 70016 pending, 70019 expired…)
    pub aadsts: u32,
    pub description: String,
}

impl EntraError {
    pub fn new(error: &'static str, aadsts: u32, description: impl Into<String>) -> Self {
        EntraError {
            status: StatusCode::BAD_REQUEST,
            error,
            aadsts,
            description: description.into(),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn body(&self) -> serde_json::Value {
        let now = chrono::Utc::now();
        let trace_id = uuid::Uuid::new_v4().to_string();
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let timestamp = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
        json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
                self.aadsts, self.description, trace_id, correlation_id, timestamp
            ),
            "error_codes": [self.aadsts],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!(
                "https://login.microsoftonline.com/error?code={}", self.aadsts
            ),
        })
    }
}

impl IntoResponse for EntraError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        response.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-cache"),
        );
        response
    }
}
