//! Admitting a request body, from its headers alone, before any of it is
//! read: a declared length over `body_bytes_max` is answered 413
//! `body_too_large` at once, and the bodies of all requests in flight
//! together may hold at most `inflight_body_bytes_max` bytes (503
//! `server_busy` with `Retry-After` beyond it).
//!
//! Why: `body_bytes_max` bounds one request, not the server. Handlers
//! buffer whole bodies (an append is decoded from one buffer), so 64
//! concurrent 8 MiB appends held 642 MB. And a `Content-Length` over the
//! limit with a short body used to wait for bytes that never came, ending
//! in 408 after the request timeout instead of 413.
//!
//! Accounting. A request reserves the bytes its body may hold before the
//! body is read: its `Content-Length` (hyper's exact size hint), or
//! `body_bytes_max` for a chunked body, whose length is unknown (send
//! `Content-Length` to reserve only what you send). A request with no body
//! (GETs, WebSocket upgrades, long-polls) reserves nothing. The reservation
//! is a [`BodyPermit`] owned by the middleware's future for as long as the
//! request is handled: the buffered body and the events decoded from it
//! are dropped by the time the handler answers, so this covers them, not
//! only the reading. Events the append handed to the journal are bounded
//! by the journal's own `queue_bytes_max`.
//!
//! Why it cannot leak: the count only goes up in [`BodyBudget::try_reserve`],
//! which returns the permit, and only goes down in the permit's `Drop`, by
//! exactly what it reserved. Whatever ends a request drops its future and
//! with it the permit: an answer, the request timeout, a client that hangs
//! up (hyper drops the service future), a panic unwinding. Nothing waits
//! for budget, so nothing can deadlock on it either: a request that does
//! not fit is refused at once.
//!
//! Memory comes back after a burst: when the reservations fall to zero
//! after large bodies, freed memory is handed back to the operating system
//! ([`crate::alloc_trim`]).
//!
//! A refused body is not buffered. It is read and thrown away in the
//! background (at most `body_bytes_max` bytes, within `request_timeout_ms`,
//! as an admitted body would have to arrive) so that a client still
//! sending it reads the answer instead of a connection reset; a client
//! that sent `Expect: 100-continue` is never asked for it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::alloc_trim::{release_freed_memory, TRIM_AFTER_BYTES};
use crate::config::ServerLimits;
use crate::error::{ApiError, ErrorCode};

/// Counter: requests answered 503 `server_busy` because the bodies in
/// flight filled `inflight_body_bytes_max`.
pub const BODY_BUDGET_REFUSED_TOTAL: &str = "ironclad_http_body_budget_refused_total";
/// Gauge: body bytes reserved by the requests in flight.
pub const INFLIGHT_BODY_BYTES: &str = "ironclad_http_inflight_body_bytes";

/// Registers the descriptions of this module's metrics.
pub fn describe_metrics() {
    metrics::describe_counter!(
        BODY_BUDGET_REFUSED_TOTAL,
        metrics::Unit::Count,
        "Requests answered 503 server_busy: the bodies in flight filled inflight_body_bytes_max"
    );
    metrics::describe_gauge!(
        INFLIGHT_BODY_BYTES,
        metrics::Unit::Bytes,
        "Body bytes reserved by the requests in flight"
    );
}

/// Seconds a `server_busy` answer asks the client to wait.
const RETRY_AFTER_S: u64 = 1;

/// A byte budget shared by the requests in flight.
#[derive(Debug)]
pub struct BodyBudget {
    bytes_max: usize,
    reserved: AtomicUsize,
    /// Bytes released since the last memory trim was started.
    released_since_trim: AtomicUsize,
    /// A trim is running (at most one at a time).
    trimming: AtomicBool,
    /// Trims started, for tests and logs.
    trims: AtomicU64,
}

/// Bytes reserved from a [`BodyBudget`], given back when dropped.
#[derive(Debug)]
#[must_use = "the reservation is given back as soon as the permit is dropped"]
pub struct BodyPermit {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl BodyBudget {
    /// A budget of `bytes_max` bytes, none reserved.
    pub fn new(bytes_max: usize) -> Arc<Self> {
        Arc::new(BodyBudget {
            bytes_max,
            reserved: AtomicUsize::new(0),
            released_since_trim: AtomicUsize::new(0),
            trimming: AtomicBool::new(false),
            trims: AtomicU64::new(0),
        })
    }

    /// Reserves `bytes` if they fit in what is left; `None` (and nothing
    /// reserved) if they do not.
    pub fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<BodyPermit> {
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |reserved| {
                reserved
                    .checked_add(bytes)
                    .filter(|&total| total <= self.bytes_max)
            })
            .ok()?;
        metrics::gauge!(INFLIGHT_BODY_BYTES).increment(bytes as f64);
        Some(BodyPermit {
            budget: Arc::clone(self),
            bytes,
        })
    }

    /// Bytes reserved now.
    pub fn reserved_bytes(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    /// The budget's size.
    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Memory trims started so far.
    pub fn trims(&self) -> u64 {
        self.trims.load(Ordering::Acquire)
    }

    /// After `bytes` were released leaving `reserved`: once nothing is
    /// reserved and enough was released since the last trim, trims on the
    /// blocking pool (outside a tokio runtime, not at all).
    fn released(self: &Arc<Self>, bytes: usize, reserved: usize) {
        let since = self
            .released_since_trim
            .fetch_add(bytes, Ordering::AcqRel)
            .saturating_add(bytes);
        if reserved != 0 || since < TRIM_AFTER_BYTES {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.trimming.swap(true, Ordering::AcqRel) {
            return;
        }
        self.released_since_trim.store(0, Ordering::Release);
        self.trims.fetch_add(1, Ordering::AcqRel);
        let budget = Arc::clone(self);
        runtime.spawn_blocking(move || {
            release_freed_memory();
            budget.trimming.store(false, Ordering::Release);
        });
    }
}

impl BodyPermit {
    /// Bytes this permit holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        let before = self.budget.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
        metrics::gauge!(INFLIGHT_BODY_BYTES).decrement(self.bytes as f64);
        self.budget
            .released(self.bytes, before.saturating_sub(self.bytes));
    }
}

/// The middleware's state: the shared budget and the one-body limit.
#[derive(Debug, Clone)]
pub struct Admission {
    budget: Arc<BodyBudget>,
    body_bytes_max: usize,
    /// How long a refused body is read and thrown away before its
    /// connection is closed.
    linger: Duration,
}

impl Admission {
    /// The admission of a server with `limits` (a fresh budget).
    pub fn new(limits: &ServerLimits) -> Self {
        Admission {
            budget: BodyBudget::new(limits.inflight_body_bytes_max),
            body_bytes_max: limits.body_bytes_max,
            linger: Duration::from_millis(limits.request_timeout_ms),
        }
    }

    /// The budget the requests reserve from.
    pub fn budget(&self) -> &Arc<BodyBudget> {
        &self.budget
    }
}

/// Middleware: refuses a body declared too large (413) or one that does
/// not fit in the budget (503 `server_busy`) before reading it; otherwise
/// holds the body's reservation while the request is handled.
pub async fn admit(State(admission): State<Admission>, req: Request, next: Next) -> Response {
    let hint = req.body().size_hint();
    let body_max = admission.body_bytes_max;
    let declared = usize::try_from(hint.lower()).unwrap_or(usize::MAX);
    if declared > body_max {
        let error = ApiError::new(
            ErrorCode::BodyTooLarge,
            format!(
                "the request declares a {} byte body, larger than the server's body_bytes_max of {body_max}: send fewer or smaller events per request",
                hint.lower()
            ),
        )
        .with_details(serde_json::json!({ "bytes": hint.lower(), "max": body_max }));
        return refuse(req, error, body_max, admission.linger);
    }
    // A chunked body may grow up to the limit; an empty one needs nothing.
    let bytes = match hint.exact() {
        Some(exact) => usize::try_from(exact).unwrap_or(usize::MAX),
        None => body_max,
    };
    if bytes == 0 {
        return next.run(req).await;
    }
    let Some(permit) = admission.budget.try_reserve(bytes) else {
        metrics::counter!(BODY_BUDGET_REFUSED_TOTAL).increment(1);
        let budget = admission.budget.bytes_max();
        let error = ApiError::new(
            ErrorCode::ServerBusy,
            format!(
                "the request bodies in flight already hold most of the server's inflight_body_bytes_max of {budget} bytes: retry after the Retry-After delay, with the same event ids"
            ),
        )
        .with_details(serde_json::json!({ "bytes": bytes, "inflight_body_bytes_max": budget }))
        .retry_after(RETRY_AFTER_S);
        return refuse(req, error, bytes, admission.linger);
    };
    let response = next.run(req).await;
    drop(permit);
    response
}

/// Answers `error` without buffering the body; throws up to `bytes_max`
/// of it away in the background, for up to `time`, so the client can read
/// the answer.
fn refuse(req: Request, error: ApiError, bytes_max: usize, time: Duration) -> Response {
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects_continue {
        tokio::spawn(linger(req.into_body(), bytes_max, time));
    }
    error.into_response()
}

/// Reads `body` and drops it, up to `bytes_max` bytes or for `time`; then
/// drops the rest unread (hyper closes the connection).
async fn linger(body: Body, bytes_max: usize, time: Duration) {
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(time, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read = read.saturating_add(chunk.len());
            if read >= bytes_max {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_the_budget_and_come_back_when_dropped() {
        let budget = BodyBudget::new(100);
        let a = budget.try_reserve(60).expect("fits");
        assert!(budget.try_reserve(41).is_none(), "60 + 41 > 100");
        assert_eq!(budget.reserved_bytes(), 60, "a refusal reserves nothing");
        let b = budget.try_reserve(40).expect("exactly fills it");
        assert_eq!((a.bytes(), b.bytes()), (60, 40));
        assert!(budget.try_reserve(1).is_none());
        drop(a);
        drop(b);
        assert_eq!(budget.reserved_bytes(), 0);
        assert!(budget.try_reserve(100).is_some(), "all of it is back");
        assert!(budget.try_reserve(usize::MAX).is_none(), "no overflow");
        assert_eq!(budget.reserved_bytes(), 0);
    }

    #[tokio::test]
    async fn memory_is_trimmed_once_reservations_fall_to_zero_after_large_bodies() {
        let budget = BodyBudget::new(4 * TRIM_AFTER_BYTES);
        let small = budget.try_reserve(1024).expect("fits");
        drop(budget.try_reserve(TRIM_AFTER_BYTES).expect("fits"));
        assert_eq!(budget.trims(), 0, "a request is still in flight");
        drop(small);
        assert_eq!(budget.trims(), 1, "idle after 64 MiB released");
        drop(budget.try_reserve(1024).expect("fits"));
        assert_eq!(budget.trims(), 1, "not again until 64 MiB more");
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_budget_nor_leak() {
        let budget = BodyBudget::new(1_000);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let budget = Arc::clone(&budget);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if let Some(p) = budget.try_reserve(300) {
                            assert!(budget.reserved_bytes() <= 1_000);
                            drop(p);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok(), "a reserving thread panicked");
        }
        assert_eq!(budget.reserved_bytes(), 0);
    }
}
