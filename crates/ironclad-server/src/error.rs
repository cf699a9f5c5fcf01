//! The one error shape of the API (SPEC §6): `{"error": {"code", "message",
//! "details"}}` with a stable, documented `code` (`docs/api-errors.md`).
//! Codes are part of the API: add new ones, never rename or reuse one.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// Every error code the API returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body is not valid JSON or not the expected shape.
    InvalidJson,
    /// A field failed validation (stream name, event, id, …).
    InvalidRequest,
    /// The body is larger than `body_bytes_max`.
    BodyTooLarge,
    /// More events in one request than `events_per_request_max`.
    TooManyEvents,
    /// The JSON nests deeper than allowed.
    JsonTooDeep,
    /// No bearer token, or an unknown one.
    Unauthorized,
    /// The token's role may not call this endpoint.
    Forbidden,
    /// No such resource (stream, DLQ entry, sink, dump).
    NotFound,
    /// The expected version did not match the stream's.
    WrongExpectedVersion,
    /// An event id was already used with different content.
    IdempotencyConflict,
    /// The ingest queue is full: retry after `Retry-After`.
    QueueFull,
    /// The server is shutting down or failed closed: retry elsewhere or later.
    Unavailable,
    /// The request took longer than the server allows.
    Timeout,
    /// Too many connections.
    TooManyConnections,
    /// The ledger does not verify.
    LedgerMismatch,
    /// An unexpected failure (store I/O, …); the message says what.
    Internal,
    /// The path exists but not for this HTTP method.
    MethodNotAllowed,
    /// A body that is not declared `Content-Type: application/json`.
    UnsupportedMediaType,
    /// The request's `Origin` is neither the server's own nor configured.
    OriginNotAllowed,
    /// The request's `Host` is not one the server answers to (DNS rebinding).
    HostNotAllowed,
    /// The request could not be parsed as HTTP/1 (request line, header or
    /// path), answered before any router runs.
    BadRequest,
    /// The request head is too large or has too many headers.
    HeadersTooLarge,
    /// The request target (path and query) is too long.
    UriTooLong,
    /// The database file is damaged: not retryable; restore it from a backup.
    DatabaseCorrupt,
    /// The disk holding the database is full: free space, then retry.
    InsufficientStorage,
    /// The request bodies in flight already fill `inflight_body_bytes_max`:
    /// retry after `Retry-After`.
    ServerBusy,
}

impl ErrorCode {
    /// The HTTP status that goes with the code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidJson
            | ErrorCode::InvalidRequest
            | ErrorCode::TooManyEvents
            | ErrorCode::JsonTooDeep => StatusCode::BAD_REQUEST,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::WrongExpectedVersion | ErrorCode::IdempotencyConflict => {
                StatusCode::CONFLICT
            }
            ErrorCode::QueueFull => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable | ErrorCode::TooManyConnections | ErrorCode::ServerBusy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::LedgerMismatch => StatusCode::CONFLICT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::OriginNotAllowed | ErrorCode::HostNotAllowed => StatusCode::FORBIDDEN,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorCode::DatabaseCorrupt => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        }
    }
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 26] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidRequest,
        ErrorCode::BodyTooLarge,
        ErrorCode::TooManyEvents,
        ErrorCode::JsonTooDeep,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::WrongExpectedVersion,
        ErrorCode::IdempotencyConflict,
        ErrorCode::QueueFull,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::TooManyConnections,
        ErrorCode::LedgerMismatch,
        ErrorCode::Internal,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::OriginNotAllowed,
        ErrorCode::HostNotAllowed,
        ErrorCode::BadRequest,
        ErrorCode::HeadersTooLarge,
        ErrorCode::UriTooLong,
        ErrorCode::DatabaseCorrupt,
        ErrorCode::InsufficientStorage,
        ErrorCode::ServerBusy,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::TooManyEvents => "too_many_events",
            ErrorCode::JsonTooDeep => "json_too_deep",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::WrongExpectedVersion => "wrong_expected_version",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::LedgerMismatch => "ledger_mismatch",
            ErrorCode::Internal => "internal",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
            ErrorCode::HostNotAllowed => "host_not_allowed",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::DatabaseCorrupt => "database_corrupt",
            ErrorCode::InsufficientStorage => "insufficient_storage",
            ErrorCode::ServerBusy => "server_busy",
        }
    }
}

/// An API error: what went wrong, for a program (`code`) and a person
/// (`message`), with structured `details`. It leaves as the wire
/// contract's [`ErrorEnvelope`] ([`error_body`]).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The stable code.
    pub code: ErrorCode,
    /// What happened and what to do next.
    pub message: String,
    /// Structured context (e.g. `{"expected": 3, "actual": 5}`).
    pub details: serde_json::Value,
    /// Seconds the client should wait, sent as `Retry-After`.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: serde_json::Value::Object(Default::default()),
            retry_after_s: None,
        }
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Adds a `Retry-After`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = error_body(&self);
        let mut resp = (self.code.status(), body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(s) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// The JSON body of an error response, for callers that must write one by
/// hand (the connection limiter answers before any router runs).
pub fn error_body(error: &ApiError) -> Vec<u8> {
    let envelope = ErrorEnvelope {
        error: ErrorObject {
            code: error.code.as_str().to_string(),
            message: error.message.clone(),
            details: error.details.clone(),
        },
    };
    serde_json::to_vec(&envelope).unwrap_or_else(|_| {
        br#"{"error":{"code":"internal","message":"error encoding failed","details":{}}}"#.to_vec()
    })
}

/// Middleware: every error response leaves as our JSON shape. Errors that
/// axum or hyper produce themselves (unknown path, wrong method, a body over
/// the limit, a malformed path or query) are plain text; this rewrites
/// them with the code their status implies. Responses that are already
/// JSON, and every success, pass untouched.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::BodyTooLarge,
            "the request body is larger than the server's body_bytes_max: send fewer or smaller events per request",
        ),
        StatusCode::NOT_FOUND => (
            ErrorCode::NotFound,
            "no such endpoint: see /openapi.json for the API",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "this endpoint does not take this HTTP method: see /openapi.json",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            ErrorCode::Timeout,
            "the request took longer than the server allows: retry, with smaller requests",
        ),
        StatusCode::UNAUTHORIZED => (ErrorCode::Unauthorized, "authentication failed"),
        StatusCode::FORBIDDEN => (ErrorCode::Forbidden, "this token may not call this endpoint"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            ErrorCode::UnsupportedMediaType,
            "unsupported content type: send `Content-Type: application/json`",
        ),
        s if s.is_client_error() => (
            ErrorCode::InvalidRequest,
            "the request is malformed (path, query or headers): check it against /openapi.json",
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            ErrorCode::Unavailable,
            "the server cannot take this request now: retry later",
        ),
        _ => (ErrorCode::Internal, "the server failed to answer this request"),
    };
    let mut rewritten = ApiError::new(code, message);
    if let Some(after) = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        rewritten = rewritten.retry_after(after);
    }
    // The original status wins (e.g. 422 from an extractor stays 422).
    let mut out = rewritten.into_response();
    *out.status_mut() = status;
    out
}

/// The error envelope every failure answers with: the wire contract's
/// (the server writes it from an [`ApiError`], the client reads it back).
pub use ironclad_core::wire::{ErrorEnvelope, ErrorObject};

/// The schema of [`ErrorCode`]: a string enum built from
/// [`ErrorCode::ALL`], so new codes appear without editing this file.
pub struct ErrorCodeSchema;

impl PartialSchema for ErrorCodeSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .description(Some(
                "A stable error code: new codes may be added, none is renamed or reused",
            ))
            .into()
    }
}

impl ToSchema for ErrorCodeSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// Maps a refused or failed append onto its API error.
impl From<ironclad::AppendError> for ApiError {
    fn from(e: ironclad::AppendError) -> Self {
        use ironclad::AppendError as A;
        let message = e.to_string();
        match e {
            A::Invalid(v) => validation_error(v),
            A::WrongExpectedVersion(w) => ApiError::new(ErrorCode::WrongExpectedVersion, message)
                .with_details(serde_json::json!({
                    "expected": expected_to_json(w.expected),
                    "actual": w.actual,
                    "current_version": w.actual,
                })),
            A::IdempotencyConflict { id, detail } => {
                ApiError::new(ErrorCode::IdempotencyConflict, message)
                    .with_details(serde_json::json!({ "id": id, "detail": detail }))
            }
            A::Full { what } => ApiError::new(
                ErrorCode::QueueFull,
                format!("the ingest queue is full ({what}): retry after the Retry-After delay, with the same event ids"),
            )
            .with_details(serde_json::json!({ "bound": what }))
            .retry_after(1),
            A::ShuttingDown => ApiError::new(
                ErrorCode::Unavailable,
                "the server is shutting down and accepts no new appends: retry against the restarted server",
            )
            .retry_after(5),
            A::FailedClosed => ApiError::new(ErrorCode::Unavailable, message).retry_after(30),
            A::Store(e) => store_condition(&e).unwrap_or_else(|| retry_same_ids(message)),
            A::WriterGone | A::Dumped { .. } => retry_same_ids(message),
        }
    }
}

/// Maps a read failure onto its API error.
impl From<ironclad::ReadError> for ApiError {
    fn from(e: ironclad::ReadError) -> Self {
        match e {
            ironclad::ReadError::Invalid(v) => validation_error(v),
            ironclad::ReadError::Store(s) => store_error(&s, "reading"),
        }
    }
}

/// Seconds a client is told to wait after a full disk: freeing space takes
/// an operator, not a moment.
const DISK_FULL_RETRY_AFTER_SECS: u64 = 10;

/// The store failures that are a condition of the server, not of the
/// request, each with its own code: a damaged database file (500
/// `database_corrupt`, not retryable, no `Retry-After`) and a full disk
/// (507 `insufficient_storage`, with `Retry-After`). `None` for others.
pub fn store_condition(e: &ironclad::StoreError) -> Option<ApiError> {
    match e {
        ironclad::StoreError::CorruptDatabase(c) => Some(
            ApiError::new(ErrorCode::DatabaseCorrupt, c.to_string()).with_details(
                serde_json::json!({ "path": c.path.display().to_string(), "retryable": false }),
            ),
        ),
        ironclad::StoreError::DiskFull(d) => Some(
            ApiError::new(ErrorCode::InsufficientStorage, d.to_string())
                .with_details(serde_json::json!({
                    "path": d.path.display().to_string(),
                    "retry_with_same_ids": true,
                }))
                .retry_after(DISK_FULL_RETRY_AFTER_SECS),
        ),
        _ => None,
    }
}

/// Maps a store failure met while `doing` something: a condition of the
/// server ([`store_condition`]), else `unavailable`, retryable.
pub fn store_error(e: &ironclad::StoreError, doing: &str) -> ApiError {
    store_condition(e).unwrap_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("{doing} failed: {e}; retry later"),
        )
        .retry_after(1)
    })
}

/// `unavailable` for an append whose outcome a resend with the same ids
/// will tell.
fn retry_same_ids(message: String) -> ApiError {
    ApiError::new(ErrorCode::Unavailable, message)
        .with_details(serde_json::json!({ "retry_with_same_ids": true }))
        .retry_after(1)
}

/// An expected version as the API writes it: `"any"`, `"no_stream"`,
/// `"stream_exists"` or a number.
pub fn expected_to_json(e: ironclad::ExpectedVersion) -> serde_json::Value {
    serde_json::to_value(ironclad_core::wire::WireExpected::from(e)).unwrap_or_default()
}

fn validation_error(v: ironclad::ValidationError) -> ApiError {
    use ironclad::ValidationError as V;
    let message = v.to_string();
    match v {
        V::TooManyEvents { count, max } => ApiError::new(ErrorCode::TooManyEvents, message)
            .with_details(serde_json::json!({ "count": count, "max": max })),
        V::PayloadTooDeep { index, max } => ApiError::new(ErrorCode::JsonTooDeep, message)
            .with_details(serde_json::json!({ "index": index, "max": max })),
        V::AppendTooLarge { bytes, max } => ApiError::new(ErrorCode::BodyTooLarge, message)
            .with_details(serde_json::json!({ "bytes": bytes, "max": max })),
        V::PayloadTooLarge { index, len, max } => ApiError::new(ErrorCode::InvalidRequest, message)
            .with_details(serde_json::json!({ "index": index, "len": len, "max": max })),
        V::PayloadNotJson { index, .. } => ApiError::new(ErrorCode::InvalidJson, message)
            .with_details(serde_json::json!({ "index": index })),
        other => ApiError::new(ErrorCode::InvalidRequest, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_documented() {
        let doc = include_str!("../../../docs/api-errors.md");
        for code in ErrorCode::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.status().as_u16());
            assert!(doc.contains(&row), "docs/api-errors.md lacks the row {row}");
        }
    }

    /// A real `SQLITE_FULL` is produced in `ironclad`'s store tests
    /// (`store::sqlite::probe`); here, what the API makes of it.
    #[test]
    fn a_full_disk_is_507_with_retry_after_and_says_to_free_space() {
        let full = ironclad::StoreError::DiskFull(ironclad::DiskFull {
            path: "/data/ironclad.db".into(),
            detail: "sqlite: database or disk is full".into(),
        });
        let e = ApiError::from(ironclad::AppendError::Store(std::sync::Arc::new(full)));
        assert_eq!(e.code.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(e.code.as_str(), "insufficient_storage");
        assert_eq!(e.retry_after_s, Some(DISK_FULL_RETRY_AFTER_SECS));
        assert_eq!(e.details["retry_with_same_ids"], true);
        assert!(
            e.message.contains("/data/ironclad.db") && e.message.contains("free disk space"),
            "{}",
            e.message
        );
    }

    #[test]
    fn wire_names_match_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap_or_default();
            assert_eq!(json, serde_json::Value::from(code.as_str()));
        }
    }
}
