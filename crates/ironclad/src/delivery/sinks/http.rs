//! The HTTP webhook sink (SPEC §4): POSTs each batch as one signed JSON
//! request and classifies the answer. The wire format (body, headers,
//! per-event results) is `docs/webhook.md`; the signature is
//! `docs/webhook-signature.md`.
//!
//! One `reqwest::Client` per sink pools connections to the destination.
//! Redirects are not followed and the client never retries by itself: the
//! dispatcher owns retries, the budget and the breaker, and a hidden retry
//! would send events twice without anyone counting the attempt.
//!
//! Failure details never contain the URL (it may carry a token), headers,
//! secrets or payloads: only a status code or the kind of transport error.

use std::collections::HashMap;
use std::error::Error as _;
use std::fmt::{self, Write as _};
use std::io;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Url};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use uuid::Uuid;

use super::{event_object_size_hint, write_event_object};
use crate::delivery::classify::{classify_http, classify_transport, Outcome, TransportError};
use crate::delivery::signature::{self, SigningKey, SIGNATURES_MAX};
use crate::delivery::sink::{Sink, SinkFuture, SinkResponse};
use crate::model::RecordedEvent;

/// The `Idempotency-Key` request header.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// The `Ironclad-Batch-Size` request header: the number of events in the body.
pub const BATCH_SIZE_HEADER: &str = "Ironclad-Batch-Size";
/// Largest response body read for per-event results (1 MiB). A bigger body
/// is not read: the batch is classified by its status alone.
pub const RESPONSE_BODY_BYTES_MAX: usize = 1024 * 1024;
/// Most extra headers a sink may be configured with.
pub const EXTRA_HEADERS_MAX: usize = 64;
/// Longest request timeout accepted (10 minutes).
pub const REQUEST_TIMEOUT_MAX: Duration = Duration::from_secs(600);

/// Idle pooled connections kept per host. Enough for a sink's concurrent
/// lanes to reuse connections without holding hundreds of sockets open.
const POOL_IDLE_PER_HOST: usize = 32;
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Headers the sink sets itself; configured headers may not replace them,
/// since the request's meaning (and its signature) depends on them.
const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "idempotency-key",
    "ironclad-signature",
    "ironclad-batch-size",
];

/// How to build an [`HttpSink`].
#[derive(Debug, Clone)]
pub struct HttpSinkOptions {
    /// The sink's name (unique per engine), used in metrics and logs.
    pub name: String,
    /// The endpoint: an absolute `http` or `https` URL. Use `https` outside
    /// tests: the signature authenticates the body, it does not encrypt it.
    pub url: String,
    /// Active signing keys, newest first (at most
    /// [`SIGNATURES_MAX`](crate::delivery::signature::SIGNATURES_MAX)). When
    /// empty, requests carry no `Ironclad-Signature` header.
    pub keys: Vec<SigningKey>,
    /// The whole request's time limit: connecting, sending, and reading the
    /// response. Must be more than zero and at most [`REQUEST_TIMEOUT_MAX`].
    pub request_timeout: Duration,
    /// Extra headers sent with every request (for example an
    /// `Authorization` header). Must not name a header the sink sets itself.
    pub headers: Vec<(String, String)>,
}

/// Why an [`HttpSink`] could not be built. Messages never echo a URL or a
/// header value, which may hold credentials.
#[derive(Debug, Error)]
pub enum HttpSinkError {
    /// The URL does not parse, or is not an absolute `http`/`https` URL
    /// with a host.
    #[error("sink {sink:?}: the webhook URL is not usable: {reason}")]
    BadUrl {
        /// The sink's name.
        sink: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A configured header has an invalid name or value, or names a header
    /// the sink sets itself.
    #[error("sink {sink:?}: header {header:?} is not usable: {reason}")]
    BadHeader {
        /// The sink's name.
        sink: String,
        /// The header's name as configured (never its value).
        header: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Too many configured headers or signing keys, or an unusable timeout.
    #[error("sink {sink:?}: {reason}")]
    BadOption {
        /// The sink's name.
        sink: String,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client could not be built (for example, no TLS roots).
    #[error("sink {sink:?}: could not build the HTTP client: {source}")]
    Client {
        /// The sink's name.
        sink: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
}

/// The HTTP webhook sink. Cheap to share behind an `Arc`; one instance
/// serves any number of concurrent `deliver` calls.
pub struct HttpSink {
    name: String,
    url: Url,
    keys: Vec<SigningKey>,
    request_timeout: Duration,
    client: Client,
}

impl HttpSink {
    /// Checks `opts` and builds the sink with its pooled client.
    pub fn new(opts: HttpSinkOptions) -> Result<HttpSink, HttpSinkError> {
        let HttpSinkOptions {
            name,
            url,
            keys,
            request_timeout,
            headers,
        } = opts;
        let url = check_url(&name, &url)?;
        let bad_option = |reason: String| HttpSinkError::BadOption {
            sink: name.clone(),
            reason,
        };
        if keys.len() > SIGNATURES_MAX {
            return Err(bad_option(format!(
                "{} signing keys, more than the limit of {SIGNATURES_MAX}",
                keys.len()
            )));
        }
        if request_timeout.is_zero() || request_timeout > REQUEST_TIMEOUT_MAX {
            return Err(bad_option(format!(
                "request timeout must be more than 0 and at most {} s",
                REQUEST_TIMEOUT_MAX.as_secs()
            )));
        }
        if headers.len() > EXTRA_HEADERS_MAX {
            return Err(bad_option(format!(
                "{} extra headers, more than the limit of {EXTRA_HEADERS_MAX}",
                headers.len()
            )));
        }
        let default_headers = check_headers(&name, &headers)?;
        let client = Client::builder()
            .default_headers(default_headers)
            .user_agent(concat!("ironclad/", env!("CARGO_PKG_VERSION")))
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .build()
            .map_err(|source| HttpSinkError::Client {
                sink: name.clone(),
                source,
            })?;
        Ok(HttpSink {
            name,
            url,
            keys,
            request_timeout,
            client,
        })
    }

    /// One delivery attempt. Every await point is cancel-safe: dropping the
    /// future drops the request (closing its connection) and leaves no
    /// state behind, so the events are simply sent again later.
    async fn attempt(&self, events: &[RecordedEvent]) -> SinkResponse {
        let body = match batch_body(events) {
            Ok(body) => body,
            // Cannot happen for events read from the store (payloads that are
            // not JSON serialize as strings), and re-sending would fail again.
            Err(_) => {
                return SinkResponse::failed(Outcome::Permanent, "event could not be serialized")
            }
        };
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_KEY_HEADER, batch_idempotency_key(events))
            .header(BATCH_SIZE_HEADER, events.len());
        if !self.keys.is_empty() {
            // Signed now, at send time, so that every retry carries a fresh
            // timestamp (docs/webhook-signature.md, "Tolerance and replays").
            let now_s = crate::clock::now_us().max(0).unsigned_abs() / 1_000_000;
            match signature::sign(&self.keys, now_s, &body) {
                Ok(header) => request = request.header(signature::HEADER_NAME, header),
                // `new` bounds the number of keys, so this is unreachable;
                // an unsigned request would be refused by every receiver.
                Err(e) => return SinkResponse::failed(Outcome::Permanent, e.to_string()),
            }
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(e) => return self.transport_failure(&e),
        };
        let status = response.status().as_u16();
        // Classified when the headers arrive, so a Retry-After HTTP-date is
        // resolved against the time it was received.
        let now_ms = crate::clock::now_us().max(0).unsigned_abs() / 1_000;
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let batch = classify_http(status, retry_after.as_deref(), now_ms);
        // Only final answers from the receiver carry per-event results; a
        // 1xx/3xx body (a redirect page, say) is not read at all.
        if !matches!(status, 200..=299 | 400..=599) {
            return SinkResponse {
                batch,
                per_event: Vec::new(),
                detail: describe(status, batch, &[]),
            };
        }
        let body = match read_capped(response, RESPONSE_BODY_BYTES_MAX).await {
            Ok(body) => body,
            // The status arrived but the rest of the response did not: a
            // 2xx whose per-event refusals were lost must not count as
            // delivered, so the whole batch is retried (idempotency keys
            // make the re-send safe).
            Err(e) => return self.transport_failure(&e),
        };
        let per_event = body
            .as_deref()
            .map(|b| per_event_outcomes(events, b))
            .unwrap_or_default();
        let detail = describe(status, batch, &per_event);
        SinkResponse {
            batch,
            per_event,
            detail,
        }
    }

    /// The response to a request that failed before a complete HTTP
    /// response arrived.
    fn transport_failure(&self, e: &reqwest::Error) -> SinkResponse {
        let (kind, detail) = transport_kind(e, self.request_timeout);
        SinkResponse::failed(classify_transport(kind), detail)
    }
}

impl fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the host: the URL's path or query may hold a token.
        f.debug_struct("HttpSink")
            .field("name", &self.name)
            .field("host", &self.url.host_str())
            .field("keys", &self.keys.len())
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Sink for HttpSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, events: &'a [RecordedEvent]) -> SinkFuture<'a> {
        Box::pin(async move {
            if events.is_empty() {
                return SinkResponse::delivered();
            }
            self.attempt(events).await
        })
    }
}

/// Parses and checks the endpoint URL.
fn check_url(sink: &str, url: &str) -> Result<Url, HttpSinkError> {
    let bad = |reason: String| HttpSinkError::BadUrl {
        sink: sink.to_owned(),
        reason,
    };
    let parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(format!(
            "scheme {:?} is not http or https",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host".to_owned()));
    }
    Ok(parsed)
}

/// Checks the configured extra headers and builds the client's defaults.
fn check_headers(sink: &str, headers: &[(String, String)]) -> Result<HeaderMap, HttpSinkError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let bad = |reason: &str| HttpSinkError::BadHeader {
            sink: sink.to_owned(),
            header: name.clone(),
            reason: reason.to_owned(),
        };
        let header =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("not a valid header name"))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(bad("the sink sets this header itself"));
        }
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| bad("the value is not a valid header value"))?;
        // Configured headers are typically credentials: keep them out of
        // any debug output of the request.
        value.set_sensitive(true);
        map.append(header, value);
    }
    Ok(map)
}

/// The request body: `{"events":[<event object>,…]}`, built in one buffer
/// sized up front.
pub fn batch_body(events: &[RecordedEvent]) -> Result<Vec<u8>, serde_json::Error> {
    let size: usize = events.iter().map(event_object_size_hint).sum();
    let mut body = Vec::with_capacity(size + events.len() + 16);
    body.extend_from_slice(b"{\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        write_event_object(&mut body, event)?;
    }
    body.extend_from_slice(b"]}");
    Ok(body)
}

/// The `Idempotency-Key` header of a batch: the event id for one event;
/// for several, the lowercase hex SHA-256 of the ids joined by `,`, so
/// that re-sending the same batch repeats the same key. Receivers still
/// deduplicate per event, on the body's `idempotency_key` fields: a batch
/// may be re-sent with different boundaries.
pub fn batch_idempotency_key(events: &[RecordedEvent]) -> String {
    if let [only] = events {
        return only.id.to_string();
    }
    let mut hasher = Sha256::new();
    let mut buf = Uuid::encode_buffer();
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            hasher.update(b",");
        }
        hasher.update(event.id.hyphenated().encode_lower(&mut buf).as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Reads at most `cap` bytes of the response body. `Ok(None)` when it is
/// larger (its per-event results are then ignored); `Err` when the body
/// did not arrive whole.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The per-event results body: `{"results":[{"idempotency_key":…,"status":…}]}`.
/// Unknown fields are ignored so receivers can add their own.
#[derive(Deserialize)]
struct ResultsBody {
    results: Vec<EventResult>,
}

/// One event's result as a receiver reports it.
#[derive(Deserialize)]
struct EventResult {
    idempotency_key: Uuid,
    status: u16,
}

/// Maps a response body's per-event results onto the batch: empty unless
/// the body is a well-formed results document naming at least one event of
/// the batch; otherwise exactly one entry per event. Keys not in the batch
/// are ignored; if a key is reported twice, the first report counts.
pub fn per_event_outcomes(events: &[RecordedEvent], body: &[u8]) -> Vec<Option<Outcome>> {
    let Ok(parsed) = serde_json::from_slice::<ResultsBody>(body) else {
        return Vec::new();
    };
    let index: HashMap<Uuid, usize> = events.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
    let mut outcomes = vec![None; events.len()];
    let mut any = false;
    for result in parsed.results {
        if let Some(&i) = index.get(&result.idempotency_key) {
            if outcomes[i].is_none() {
                // Retry-After is a property of the response, not of an event.
                outcomes[i] = Some(classify_http(result.status, None, 0));
                any = true;
            }
        }
    }
    if any {
        outcomes
    } else {
        Vec::new()
    }
}

/// The operator-readable detail of an HTTP answer: empty for a clean
/// success, `HTTP <status>` otherwise, plus a count of refused events when
/// the receiver reported per-event results.
fn describe(status: u16, batch: Outcome, per_event: &[Option<Outcome>]) -> String {
    let refused = per_event
        .iter()
        .filter(|o| matches!(o, Some(o) if *o != Outcome::Delivered))
        .count();
    if batch == Outcome::Delivered && refused == 0 {
        return String::new();
    }
    let mut detail = format!("HTTP {status}");
    if refused > 0 {
        let _ = write!(detail, ", {refused} of {} events refused", per_event.len());
    }
    detail
}

/// Maps a reqwest error to the transport failure it stands for, with its
/// detail. reqwest exposes only some kinds directly, so the error's source
/// chain is searched for the underlying I/O error.
fn transport_kind(e: &reqwest::Error, timeout: Duration) -> (TransportError, String) {
    if e.is_timeout() {
        return (
            TransportError::Timeout,
            format!("timeout after {} ms", timeout.as_millis()),
        );
    }
    let io_kind = io_error_kind(e);
    if e.is_connect() {
        if e.is_dns() {
            return (TransportError::Dns, "DNS lookup failed".to_owned());
        }
        // tokio-rustls reports TLS failures as InvalidData I/O errors.
        if io_kind == Some(io::ErrorKind::InvalidData) {
            return (TransportError::Tls, "TLS handshake failed".to_owned());
        }
        let detail = match io_kind {
            Some(io::ErrorKind::ConnectionRefused) => "connection refused",
            _ => "connection failed",
        };
        return (TransportError::Connect, detail.to_owned());
    }
    if e.is_decode() {
        return (
            TransportError::MalformedResponse,
            "malformed HTTP response".to_owned(),
        );
    }
    match io_kind {
        Some(io::ErrorKind::ConnectionReset) => (
            TransportError::ConnectionClosed,
            "connection reset".to_owned(),
        ),
        Some(io::ErrorKind::ConnectionAborted) => (
            TransportError::ConnectionClosed,
            "connection aborted".to_owned(),
        ),
        Some(io::ErrorKind::InvalidData) => (
            TransportError::MalformedResponse,
            "malformed HTTP response".to_owned(),
        ),
        // hyper's "connection closed before message completed" (no I/O
        // error underneath), broken pipes, unexpected EOFs: the connection
        // ended before a whole response came back.
        _ => (
            TransportError::ConnectionClosed,
            "connection closed before the response was complete".to_owned(),
        ),
    }
}

/// The kind of the first `std::io::Error` in `e`'s source chain.
fn io_error_kind(e: &reqwest::Error) -> Option<io::ErrorKind> {
    let mut source = e.source();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        source = err.source();
    }
    None
}
