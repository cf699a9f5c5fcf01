//! The typed HTTP client. Every call bounds its time (the `reqwest` client's
//! timeout) and maps a non-2xx answer to [`ClientError::Api`] with the
//! server's `{error:{code,message,details}}`. Cancel-safe: dropping a call's
//! future abandons the request; an append may still have been applied, so
//! resend it with the same event ids (appends are idempotent by id).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;
use uuid::Uuid;

/// Longest a single request may take, long-polls included (their wait is
/// capped below this).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The base URL is not an absolute `http(s)://` URL.
    #[error("bad server URL {0:?}: use http://HOST:PORT or https://HOST:PORT")]
    BadUrl(String),
    /// The server answered with an API error.
    #[error("server answered {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The stable error code (`docs/api-errors.md`).
        code: String,
        /// What happened and what to do.
        message: String,
        /// Structured details.
        details: serde_json::Value,
        /// Seconds to wait before retrying, from `Retry-After`.
        retry_after_s: Option<u64>,
    },
    /// The request did not complete (connect, timeout, reset).
    #[error("request to the server failed: {0}; check that `ironclad serve` runs at that address")]
    Transport(#[from] reqwest::Error),
    /// The answer is not what the API documents.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
}

impl ClientError {
    /// The server's error code, if the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// One event to append.
#[derive(Debug, Clone, Serialize)]
pub struct EventBody {
    /// Idempotency key; the server generates a UUIDv7 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `event` (default), `create`, `update` or `delete`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// The entity key (ordering lane).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// The payload, as JSON text.
    pub payload: Box<RawValue>,
    /// String metadata.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// An append request.
#[derive(Debug, Clone, Serialize)]
pub struct AppendBody {
    /// `"any"`, `"no_stream"`, `"stream_exists"` or an exact version.
    pub expected_version: serde_json::Value,
    /// The events.
    pub events: Vec<EventBody>,
}

/// Where one appended event landed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct AppendAck {
    /// The event id.
    pub id: Uuid,
    /// Its stream version.
    pub version: u64,
    /// Its global position.
    pub position: u64,
}

/// The answer to an append.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AppendOutcome {
    /// `appended` (new) or `already_appended` (an idempotent repeat).
    pub status: String,
    /// One ack per event, in the order sent.
    pub events: Vec<AppendAck>,
}

/// A page of a stream.
#[derive(Debug, Deserialize)]
pub struct Page {
    /// Events, verbatim.
    pub events: Vec<Box<RawValue>>,
    /// The `from` of the next page, when this one was full.
    pub next: Option<u64>,
}

/// A page of a long-poll.
#[derive(Debug, Deserialize)]
pub struct PollPage {
    /// Events in position order, verbatim.
    pub events: Vec<Box<RawValue>>,
    /// The `after` of the next poll.
    pub next: u64,
}

/// The part of an event the client itself needs.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct EventPosition {
    /// The global position.
    pub position: u64,
}

impl EventPosition {
    /// The position of an event given as JSON text.
    pub fn of(event: &RawValue) -> Result<u64, ClientError> {
        serde_json::from_str::<EventPosition>(event.get())
            .map(|p| p.position)
            .map_err(|e| ClientError::Decode(format!("event without a position: {e}")))
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
    #[serde(default)]
    details: serde_json::Value,
}

/// A typed client for one server. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the server at `base_url` (`http://127.0.0.1:7070`),
    /// sending `token` as a bearer token when given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Client, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BadUrl(base_url.to_string()));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Client { http, base, token })
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The bearer token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, bytes_body::Body), ClientError> {
        let resp = self.auth(req).send().await?;
        let status = resp.status().as_u16();
        let retry_after_s = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = resp.bytes().await?;
        if (200..300).contains(&status) {
            return Ok((status, bytes_body::Body(body.to_vec())));
        }
        match serde_json::from_slice::<ErrorEnvelope>(&body) {
            Ok(e) => Err(ClientError::Api {
                status,
                code: e.error.code,
                message: e.error.message,
                details: e.error.details,
                retry_after_s,
            }),
            Err(_) => Err(ClientError::Api {
                status,
                code: "unknown".into(),
                message: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
                details: serde_json::Value::Null,
                retry_after_s,
            }),
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `POST /v1/streams/{stream}/events`.
    pub async fn append(
        &self,
        stream: &str,
        body: &AppendBody,
    ) -> Result<AppendOutcome, ClientError> {
        let path = format!("/v1/streams/{}/events", encode(stream));
        let (_, b) = self
            .send(self.http.post(self.url(&path)).json(body))
            .await?;
        Self::decode(&b.0)
    }

    /// `GET /v1/streams/{stream}/events?from&limit`.
    pub async fn read(&self, stream: &str, from: u64, limit: usize) -> Result<Page, ClientError> {
        let path = format!("/v1/streams/{}/events", encode(stream));
        let req = self
            .http
            .get(self.url(&format!("{path}?from={from}&limit={limit}")));
        let (_, b) = self.send(req).await?;
        Self::decode(&b.0)
    }

    /// `GET /v1/poll?after&wait_ms&limit`: events after a position, waiting
    /// up to `wait_ms` for one.
    pub async fn poll(
        &self,
        after: u64,
        wait_ms: u64,
        limit: usize,
    ) -> Result<PollPage, ClientError> {
        let req = self.http.get(self.url(&format!(
            "/v1/poll?after={after}&wait_ms={wait_ms}&limit={limit}"
        )));
        let (_, b) = self.send(req).await?;
        Self::decode(&b.0)
    }

    /// `GET` any API path (with its query string), as JSON. For the admin
    /// and listing endpoints, whose shapes `docs/api-admin.md` documents.
    pub async fn get_json(&self, path_and_query: &str) -> Result<serde_json::Value, ClientError> {
        let (_, b) = self.send(self.http.get(self.url(path_and_query))).await?;
        Self::decode(&b.0)
    }

    /// `POST` a JSON body to any API path, as JSON.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let (_, b) = self.send(self.http.post(self.url(path)).json(body)).await?;
        Self::decode(&b.0)
    }

    /// `GET /v1/streams?after&limit`.
    pub async fn streams(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<serde_json::Value, ClientError> {
        let q = format!("/v1/streams?after={}&limit={limit}", encode(after));
        self.get_json(&q).await
    }

    /// `GET /v1/admin/sinks`: per-sink status with live circuits.
    pub async fn sinks(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/v1/admin/sinks").await
    }

    /// `POST /v1/admin/ledger/verify`.
    pub async fn verify_ledger(
        &self,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.post_json("/v1/admin/ledger/verify", body).await
    }
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

mod bytes_body {
    /// A successful answer's body.
    pub struct Body(pub Vec<u8>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(encode("orders-1_a.b~"), "orders-1_a.b~");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(
            Client::new("localhost:7070", None),
            Err(ClientError::BadUrl(_))
        ));
        assert!(Client::new("http://127.0.0.1:7070/", None).is_ok());
    }
}
