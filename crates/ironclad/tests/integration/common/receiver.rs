//! A real HTTP webhook receiver for the delivery tests, with failure
//! injection: an axum app on `127.0.0.1:0` that speaks the wire format of
//! `docs/webhook.md`, verifies `Ironclad-Signature`, deduplicates events by
//! `idempotency_key` like a correct receiver must, and records what it saw.
//!
//! Failures are injected by a [`Schedule`] that tests may swap at run time:
//! a seeded rate of 503s, latency spikes, 429s with `Retry-After`, outage
//! windows, per-event 409/400 refusals chosen by a predicate, and
//! connection resets mid-request. A reset is a real one: the connection's
//! socket is closed with `SO_LINGER` 0 (a TCP RST) instead of writing the
//! response, so the client sees a transport error, not a status.
//!
//! An event counts as *applied* only when the receiver's answer for it is
//! 2xx, or, for a reset request, when the schedule says the receiver applied
//! the batch before the connection died (the default, and the hard case for
//! effectively-once delivery: the sender cannot know it was applied).
#![allow(dead_code)]

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use ironclad::delivery::signature::{self, SigningKey};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// Largest request body accepted (16 MiB).
const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Decides the HTTP status of one event (2xx: accept and apply it).
pub type EventRule = Arc<dyn Fn(&ReceivedEvent) -> u16 + Send + Sync>;

/// The default [`EventRule`]: type `conflict` → 409, type `poison` → 400,
/// anything else → 200.
pub fn default_event_rule() -> EventRule {
    Arc::new(|e: &ReceivedEvent| match e.event_type.as_str() {
        "conflict" => 409,
        "poison" => 400,
        _ => 200,
    })
}

/// 429s for a range of request numbers.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// 1-based request numbers answered 429.
    pub requests: Range<u64>,
    /// The `Retry-After` value, in seconds.
    pub retry_after_s: u64,
}

/// How the receiver misbehaves. `Schedule::default()` behaves perfectly
/// (apart from the event rule's refusals of `conflict` and `poison`).
#[derive(Clone)]
pub struct Schedule {
    /// Fraction (0..=1) of requests answered 503, drawn from a RNG seeded
    /// with `seed`, so a run replays exactly.
    pub failure_rate: f64,
    /// Seed of the failure-rate RNG.
    pub seed: u64,
    /// Every Nth request (0: none) sleeps `latency` before answering.
    pub latency_every: u64,
    /// The latency spike.
    pub latency: Duration,
    /// 429s with `Retry-After` for a window of request numbers.
    pub throttle: Option<Throttle>,
    /// Every Nth request (0: none) has its connection reset instead of an
    /// answer.
    pub reset_every: u64,
    /// Whether a reset request's batch is applied before the reset (true,
    /// the default) or not at all.
    pub apply_before_reset: bool,
    /// Each event's own status.
    pub event_rule: EventRule,
    /// The status of a response whose events got different statuses.
    pub mixed_status: u16,
    /// When non-empty, requests must carry a valid `Ironclad-Signature`
    /// for one of these keys, else 401.
    pub secrets: Vec<SigningKey>,
    /// Every request sleeps this long after its events are applied and
    /// before it is answered: a sender that dies meanwhile leaves events
    /// applied but never acknowledged.
    pub answer_latency: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            failure_rate: 0.0,
            seed: 0,
            latency_every: 0,
            latency: Duration::ZERO,
            throttle: None,
            reset_every: 0,
            apply_before_reset: true,
            event_rule: default_event_rule(),
            mixed_status: 200,
            secrets: Vec::new(),
            answer_latency: Duration::ZERO,
        }
    }
}

impl Schedule {
    /// Answers a `rate` fraction of requests with 503, seeded.
    pub fn failure_rate(mut self, rate: f64, seed: u64) -> Self {
        self.failure_rate = rate;
        self.seed = seed;
        self
    }

    /// Every `n`th request sleeps `latency` first.
    pub fn latency_every(mut self, n: u64, latency: Duration) -> Self {
        self.latency_every = n;
        self.latency = latency;
        self
    }

    /// Requests numbered in `requests` (1-based) get 429 with `Retry-After`.
    pub fn throttle(mut self, requests: Range<u64>, retry_after_s: u64) -> Self {
        self.throttle = Some(Throttle {
            requests,
            retry_after_s,
        });
        self
    }

    /// Every `n`th request's connection is reset.
    pub fn reset_every(mut self, n: u64) -> Self {
        self.reset_every = n;
        self
    }

    /// Reset requests are not applied (the easy case).
    pub fn reset_before_apply(mut self) -> Self {
        self.apply_before_reset = false;
        self
    }

    /// Replaces the per-event rule.
    pub fn event_rule(
        mut self,
        rule: impl Fn(&ReceivedEvent) -> u16 + Send + Sync + 'static,
    ) -> Self {
        self.event_rule = Arc::new(rule);
        self
    }

    /// Requires signatures made with `secret`.
    pub fn secret(mut self, secret: &[u8]) -> Self {
        self.secrets
            .push(SigningKey::new(secret).expect("test secret is 16..=1024 bytes"));
        self
    }

    /// Every request sleeps `latency` after applying its events, before
    /// answering.
    pub fn answer_latency(mut self, latency: Duration) -> Self {
        self.answer_latency = latency;
        self
    }
}

/// One event as the receiver parsed it from a request body.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedEvent {
    /// The per-event deduplication key.
    pub idempotency_key: Uuid,
    /// The event id (equal to the key).
    pub id: Uuid,
    /// Its stream.
    pub stream: String,
    /// Its stream version.
    pub version: u64,
    /// Its global position.
    pub position: u64,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its entity.
    pub entity: Option<String>,
    /// Its payload.
    pub payload: serde_json::Value,
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// 1-based arrival number.
    pub number: u64,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// The `Ironclad-Batch-Size` header.
    pub batch_size: Option<String>,
    /// The `Ironclad-Signature` header.
    pub signature: Option<String>,
    /// The events' keys, in body order (empty if the body did not parse).
    pub event_keys: Vec<Uuid>,
    /// The status answered; `None` while in progress or when reset.
    pub status: Option<u16>,
    /// Whether the connection was reset instead of answered.
    pub reset: bool,
    /// When the handler started on it (before any injected latency).
    pub received_at: Instant,
    /// When it was answered or reset (`None` while in progress, or when
    /// the sender went away first and the handler was dropped).
    pub answered_at: Option<Instant>,
    /// Every request header, for tests that tag requests (for example
    /// with a sink's configured `headers`).
    pub headers: HeaderMap,
    /// The keys this request applied (first time or again), in body order.
    /// Set when applied, so it holds even if the request is then never
    /// answered.
    pub applied_keys: Vec<Uuid>,
}

impl ReceivedRequest {
    /// The value of request header `name`, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Clone, Copy)]
enum Outage {
    Up,
    Until(Instant),
    Down,
}

struct Inner {
    schedule: Schedule,
    rng: u64,
    requests: Vec<ReceivedRequest>,
    events: Vec<ReceivedEvent>,
    applied: Vec<Uuid>,
    applied_set: HashSet<Uuid>,
    duplicates: u64,
    outage: Outage,
    throttle_until: Option<(Instant, u64)>,
}

impl Inner {
    /// SplitMix64: a tiny deterministic generator, enough for a failure rate.
    fn next_f64(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn apply(&mut self, key: Uuid) {
        if self.applied_set.insert(key) {
            self.applied.push(key);
        } else {
            self.duplicates += 1;
        }
    }
}

type Shared = Arc<Mutex<Inner>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running receiver. Dropping it stops the server.
pub struct Receiver {
    addr: SocketAddr,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver on a free loopback port.
    pub async fn start(schedule: Schedule) -> Receiver {
        let tcp = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = tcp.local_addr().expect("local_addr");
        let shared: Shared = Arc::new(Mutex::new(Inner {
            rng: schedule.seed,
            schedule,
            requests: Vec::new(),
            events: Vec::new(),
            applied: Vec::new(),
            applied_set: HashSet::new(),
            duplicates: 0,
            outage: Outage::Up,
            throttle_until: None,
        }));
        let app = Router::new()
            .route("/hook", post(hook))
            .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
            .with_state(Arc::clone(&shared));
        let listener = ResettableListener { inner: tcp };
        let server = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<ConnHandle>();
            let _ = axum::serve(listener, service).await;
        });
        Receiver {
            addr,
            shared,
            server,
        }
    }

    /// The webhook URL.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Replaces the schedule (and reseeds the failure RNG).
    pub fn set_schedule(&self, schedule: Schedule) {
        let mut inner = lock(&self.shared);
        inner.rng = schedule.seed;
        inner.schedule = schedule;
    }

    /// Answers every request 503 for `d` from now.
    pub fn outage_for(&self, d: Duration) {
        lock(&self.shared).outage = Outage::Until(Instant::now() + d);
    }

    /// Answers every request 503 until [`Receiver::up`].
    pub fn down(&self) {
        lock(&self.shared).outage = Outage::Down;
    }

    /// Ends an outage.
    pub fn up(&self) {
        lock(&self.shared).outage = Outage::Up;
    }

    /// Answers every request 429 with `Retry-After: retry_after_s` for `d`.
    pub fn throttle_for(&self, d: Duration, retry_after_s: u64) {
        lock(&self.shared).throttle_until = Some((Instant::now() + d, retry_after_s));
    }

    /// How many requests arrived.
    pub fn received_count(&self) -> usize {
        lock(&self.shared).requests.len()
    }

    /// Every request, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.shared).requests.clone()
    }

    /// Every event received (duplicates and refused ones included), in
    /// arrival order.
    pub fn received_events(&self) -> Vec<ReceivedEvent> {
        lock(&self.shared).events.clone()
    }

    /// Each applied event's key once, in first-applied order.
    pub fn applied(&self) -> Vec<Uuid> {
        lock(&self.shared).applied.clone()
    }

    /// How many times an already-applied event was applied again (and
    /// deduplicated).
    pub fn duplicates(&self) -> u64 {
        lock(&self.shared).duplicates
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What the handler answers, before it is turned into a response.
enum Answer {
    Status(u16, Option<u64>),
    Results(u16, Vec<(Uuid, u16)>),
    Reset,
}

#[derive(Deserialize)]
struct Body {
    events: Vec<ReceivedEvent>,
}

async fn hook(
    State(shared): State<Shared>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (number, schedule) = {
        let mut inner = lock(&shared);
        let number = inner.requests.len() as u64 + 1;
        inner.requests.push(ReceivedRequest {
            number,
            idempotency_key: header("idempotency-key"),
            batch_size: header("ironclad-batch-size"),
            signature: header(signature::HEADER_NAME),
            event_keys: Vec::new(),
            status: None,
            reset: false,
            received_at: Instant::now(),
            answered_at: None,
            headers: headers.clone(),
            applied_keys: Vec::new(),
        });
        (number, inner.schedule.clone())
    };
    if schedule.latency_every > 0 && number.is_multiple_of(schedule.latency_every) {
        tokio::time::sleep(schedule.latency).await;
    }
    let answer = decide(&shared, &schedule, number, &headers, &body);
    if !schedule.answer_latency.is_zero() {
        tokio::time::sleep(schedule.answer_latency).await;
    }
    let index = (number - 1) as usize;
    let mut inner = lock(&shared);
    inner.requests[index].answered_at = Some(Instant::now());
    match answer {
        Answer::Reset => {
            inner.requests[index].reset = true;
            drop(inner);
            conn.reset();
            // Never written: the connection fails on the first write.
            StatusCode::OK.into_response()
        }
        Answer::Status(status, retry_after) => {
            inner.requests[index].status = Some(status);
            let mut response = status_code(status).into_response();
            if let Some(s) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(s));
            }
            response
        }
        Answer::Results(status, results) => {
            inner.requests[index].status = Some(status);
            let results: Vec<serde_json::Value> = results
                .iter()
                .map(|(k, s)| serde_json::json!({"idempotency_key": k, "status": s}))
                .collect();
            let body = serde_json::json!({ "results": results }).to_string();
            (
                status_code(status),
                [("content-type", "application/json")],
                body,
            )
                .into_response()
        }
    }
}

/// Decides the answer to request `number`, recording received and applied
/// events.
fn decide(
    shared: &Shared,
    schedule: &Schedule,
    number: u64,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer {
    if !schedule.secrets.is_empty() {
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verified = headers
            .get(signature::HEADER_NAME)
            .and_then(|v| v.to_str().ok())
            .map(|h| {
                signature::verify(
                    h,
                    &schedule.secrets,
                    body,
                    now_s,
                    signature::TOLERANCE_S_DEFAULT,
                )
            });
        if !matches!(verified, Some(Ok(_))) {
            return Answer::Status(401, None);
        }
    }
    let Ok(parsed) = serde_json::from_slice::<Body>(body) else {
        return Answer::Status(400, None);
    };
    let mut inner = lock(shared);
    let index = (number - 1) as usize;
    inner.requests[index].event_keys = parsed.events.iter().map(|e| e.idempotency_key).collect();
    inner.events.extend(parsed.events.iter().cloned());
    let now = Instant::now();
    match inner.outage {
        Outage::Down => return Answer::Status(503, None),
        Outage::Until(t) if now < t => return Answer::Status(503, None),
        _ => {}
    }
    if let Some((until, retry_after_s)) = inner.throttle_until {
        if now < until {
            return Answer::Status(429, Some(retry_after_s));
        }
    }
    if let Some(t) = &schedule.throttle {
        if t.requests.contains(&number) {
            return Answer::Status(429, Some(t.retry_after_s));
        }
    }
    if schedule.failure_rate > 0.0 && inner.next_f64() < schedule.failure_rate {
        return Answer::Status(503, None);
    }
    let results: Vec<(Uuid, u16)> = parsed
        .events
        .iter()
        .map(|e| (e.idempotency_key, (schedule.event_rule)(e)))
        .collect();
    let reset = schedule.reset_every > 0 && number.is_multiple_of(schedule.reset_every);
    if !reset || schedule.apply_before_reset {
        for (key, status) in &results {
            if (200..300).contains(status) {
                inner.apply(*key);
                inner.requests[index].applied_keys.push(*key);
            }
        }
    }
    if reset {
        return Answer::Reset;
    }
    let first = results.first().map_or(200, |r| r.1);
    let status = if results.iter().all(|r| r.1 == first) {
        first
    } else {
        schedule.mixed_status
    };
    Answer::Results(status, results)
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A handle on one accepted connection, given to handlers as connect info,
/// through which a handler resets the connection.
#[derive(Clone, Debug)]
pub struct ConnHandle {
    kill: Arc<AtomicBool>,
}

impl ConnHandle {
    /// Makes the connection fail (with a TCP RST) on its next read or
    /// write, which is the response's first write.
    fn reset(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, ResettableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP listener whose connections a handler can reset.
pub struct ResettableListener {
    inner: TcpListener,
}

impl Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((tcp, _)) => {
                    let kill = Arc::new(AtomicBool::new(false));
                    let handle = ConnHandle {
                        kill: Arc::clone(&kill),
                    };
                    return (ResettableStream { tcp, kill }, handle);
                }
                // Out of file descriptors and the like: back off briefly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr().map(|_| ConnHandle {
            kill: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// A TCP stream that fails every operation once its connection is reset,
/// after setting `SO_LINGER` 0 so that closing it sends an RST.
pub struct ResettableStream {
    tcp: TcpStream,
    kill: Arc<AtomicBool>,
}

impl ResettableStream {
    fn killed(&self) -> Option<io::Error> {
        if !self.kill.load(Ordering::SeqCst) {
            return None;
        }
        let _ = self.tcp.set_zero_linger();
        Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "reset by the test receiver",
        ))
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
