//! The typed HTTP client. Every call bounds its time (the `reqwest` client's
//! timeout) and maps a non-2xx answer to [`ClientError::Api`] with the
//! server's `{error:{code,message,details}}`. Cancel-safe: dropping a call's
//! future abandons the request; an append may still have been applied, so
//! resend it with the same event ids (appends are idempotent by id).

use std::time::Duration;

use ironclad_core::ledger::LedgerMismatch;
use ironclad_core::model::AppendResult;
use ironclad_core::wire::{
    AckRequest, AppendRequest, CircuitActionBody, CircuitRequest, CircuitResponse, ConsumerBody,
    DlqEntryBody, DlqExportQuery, DlqListQuery, DlqPage, DlqPurgeResponse, DlqRetryResponse,
    DlqSelector, DlqStatsResponse, DumpsResponse, ErrorEnvelope, LeasesResponse, PollPage,
    ReadPage, ReplayResponse, SinksResponse, StreamPage, VerifyRequest, VerifyResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

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

    /// The first mismatch, when this is a `ledger_mismatch` answer whose
    /// details say which.
    pub fn ledger_mismatch(&self) -> Option<LedgerMismatch> {
        match self {
            ClientError::Api { code, details, .. } if code == "ledger_mismatch" => {
                LedgerMismatch::deserialize(details).ok()
            }
            _ => None,
        }
    }
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

/// A typed client for one server. Cheap to clone (one connection pool).
/// Its `Debug` output never shows the bearer token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Clients end up in logs and panic messages (and inside a
        // `RealtimeClient`'s Debug): the token must not.
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
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

    fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| {
            ClientError::Decode(format!(
                "{e}: is the server the same version as this client?"
            ))
        })
    }

    /// `GET` a path and decode its answer.
    async fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, ClientError> {
        let (_, b) = self.send(self.http.get(self.url(path_and_query))).await?;
        Self::decode(&b.0)
    }

    /// `POST` a JSON body to a path and decode its answer.
    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let (_, b) = self.send(self.http.post(self.url(path)).json(body)).await?;
        Self::decode(&b.0)
    }

    /// `POST /v1/streams/{stream}/events`.
    pub async fn append(
        &self,
        stream: &str,
        body: &AppendRequest,
    ) -> Result<AppendResult, ClientError> {
        self.post(&format!("/v1/streams/{}/events", encode(stream)), body)
            .await
    }

    /// `GET /v1/streams/{stream}/events?from&limit`.
    pub async fn read(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> Result<ReadPage, ClientError> {
        let path = format!("/v1/streams/{}/events", encode(stream));
        self.get(&format!("{path}?from={from}&limit={limit}")).await
    }

    /// `GET /v1/poll?after&wait_ms&limit`: events after a position, waiting
    /// up to `wait_ms` for one.
    pub async fn poll(
        &self,
        after: u64,
        wait_ms: u64,
        limit: usize,
    ) -> Result<PollPage, ClientError> {
        self.get(&format!(
            "/v1/poll?after={after}&wait_ms={wait_ms}&limit={limit}"
        ))
        .await
    }

    /// `GET /v1/poll` as a named consumer: with `after` omitted the server
    /// starts after the consumer's stored checkpoint.
    pub async fn poll_as(
        &self,
        after: Option<u64>,
        consumer: Option<&str>,
        wait_ms: u64,
        limit: usize,
    ) -> Result<PollPage, ClientError> {
        let mut query = format!("wait_ms={wait_ms}&limit={limit}");
        if let Some(after) = after {
            query.push_str(&format!("&after={after}"));
        }
        if let Some(c) = consumer {
            query.push_str(&format!("&consumer={}", encode(c)));
        }
        self.get(&format!("/v1/poll?{query}")).await
    }

    /// `GET` any API path (with its query string), as JSON: for endpoints
    /// this client has no typed call for.
    pub async fn get_json(&self, path_and_query: &str) -> Result<serde_json::Value, ClientError> {
        self.get(path_and_query).await
    }

    /// `POST` a JSON body to any API path, as JSON: for endpoints this
    /// client has no typed call for.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.post(path, body).await
    }

    /// `GET /v1/streams?after&limit`.
    pub async fn streams(&self, after: &str, limit: usize) -> Result<StreamPage, ClientError> {
        self.get(&format!(
            "/v1/streams?after={}&limit={limit}",
            encode(after)
        ))
        .await
    }

    /// `GET /v1/consumers/{name}`: a consumer's stored checkpoint.
    pub async fn consumer(&self, name: &str) -> Result<ConsumerBody, ClientError> {
        self.get(&format!("/v1/consumers/{}", encode(name))).await
    }

    /// `POST /v1/consumers/{name}/ack`: everything up to `position` is
    /// handled; answers once the checkpoint is durable.
    pub async fn ack(&self, name: &str, position: u64) -> Result<ConsumerBody, ClientError> {
        let path = format!("/v1/consumers/{}/ack", encode(name));
        self.post(&path, &AckRequest { position }).await
    }

    /// `GET /v1/admin/sinks`: per-sink status with live circuits.
    pub async fn sinks(&self) -> Result<SinksResponse, ClientError> {
        self.get("/v1/admin/sinks").await
    }

    /// `POST /v1/admin/sinks/{sink}/circuit`.
    pub async fn circuit(
        &self,
        sink: &str,
        action: CircuitActionBody,
    ) -> Result<CircuitResponse, ClientError> {
        let path = format!("/v1/admin/sinks/{}/circuit", encode(sink));
        self.post(&path, &CircuitRequest { action }).await
    }

    /// `POST /v1/admin/ledger/verify`. A mismatch is
    /// [`ClientError::Api`] with code `ledger_mismatch`, whose details
    /// [`ClientError::ledger_mismatch`] decodes.
    pub async fn verify_ledger(&self, body: &VerifyRequest) -> Result<VerifyResponse, ClientError> {
        self.post("/v1/admin/ledger/verify", body).await
    }

    /// `GET /v1/admin/leases`.
    pub async fn leases(&self) -> Result<LeasesResponse, ClientError> {
        self.get("/v1/admin/leases").await
    }

    /// `GET /v1/admin/dumps`.
    pub async fn dumps(&self) -> Result<DumpsResponse, ClientError> {
        self.get("/v1/admin/dumps").await
    }

    /// `POST /v1/admin/dumps/{name}/replay`.
    pub async fn replay_dump(&self, name: &str) -> Result<ReplayResponse, ClientError> {
        let path = format!("/v1/admin/dumps/{}/replay", encode(name));
        self.post(&path, &serde_json::json!({})).await
    }

    /// `GET /v1/admin/dlq/stats`.
    pub async fn dlq_stats(&self) -> Result<DlqStatsResponse, ClientError> {
        self.get("/v1/admin/dlq/stats").await
    }

    /// `GET /v1/admin/dlq`: one page of dead letters.
    pub async fn dlq_list(&self, q: &DlqListQuery) -> Result<DlqPage, ClientError> {
        self.get(&format!("/v1/admin/dlq{}", query(q)?)).await
    }

    /// `GET /v1/admin/dlq/{sink}/{position}`: one dead letter; its event's
    /// payload keeps the server's text.
    pub async fn dlq_show(&self, sink: &str, position: u64) -> Result<DlqEntryBody, ClientError> {
        self.get(&format!("/v1/admin/dlq/{}/{position}", encode(sink)))
            .await
    }

    /// `GET /v1/admin/dlq/export`: the matching dead letters as JSON lines,
    /// the bytes as the server sent them.
    pub async fn dlq_export(&self, q: &DlqExportQuery) -> Result<Vec<u8>, ClientError> {
        let query = query(q)?;
        let req = self
            .http
            .get(self.url(&format!("/v1/admin/dlq/export{query}")));
        Ok(self.send(req).await?.1 .0)
    }

    /// `POST /v1/admin/dlq/retry`.
    pub async fn dlq_retry(&self, sel: &DlqSelector) -> Result<DlqRetryResponse, ClientError> {
        self.post("/v1/admin/dlq/retry", sel).await
    }

    /// `POST /v1/admin/dlq/purge`.
    pub async fn dlq_purge(&self, sel: &DlqSelector) -> Result<DlqPurgeResponse, ClientError> {
        self.post("/v1/admin/dlq/purge", sel).await
    }
}

/// The query string (`?k=v&…`, or nothing) of a wire query type: its
/// fields that have a value, strings and numbers as they are.
fn query<Q: Serialize>(q: &Q) -> Result<String, ClientError> {
    let value = serde_json::to_value(q).map_err(|e| ClientError::Decode(e.to_string()))?;
    let fields = value.as_object().cloned().unwrap_or_default();
    let parts: Vec<String> = fields
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(format!("{k}={}", encode(&s))),
            other => Some(format!("{k}={}", encode(&other.to_string()))),
        })
        .collect();
    Ok(if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    })
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
    fn debug_output_never_shows_the_token() {
        let client =
            Client::new("http://127.0.0.1:7070", Some("tok-very-secret-1".into())).expect("client");
        let shown = format!("{client:?} {client:#?}");
        assert!(!shown.contains("tok-very-secret-1"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("127.0.0.1:7070"),
            "{shown}"
        );
        let anonymous = format!("{:?}", Client::new("http://h", None).expect("client"));
        assert!(anonymous.contains("token: None"), "{anonymous}");
    }

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
