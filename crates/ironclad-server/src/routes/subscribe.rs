//! Endpoint group `subscribe` (SPEC §6 "Subscriptions"): live WebSocket
//! subscriptions with named consumer checkpoints, and the long-polling
//! fallback. All need a consumer (or admin) token.
//!
//! - `GET /v1/subscribe?consumer=NAME&from=POSITION&streams=GLOB`
//!   (WebSocket, [`subscribe`]): streams committed events with position > the
//!   start, then live ones, as text frames
//!   `{"type":"event","event":{…}}`. The client acknowledges with
//!   `{"type":"ack","position":N}`.
//! - `GET /v1/poll?after=POSITION&wait_ms=N&limit=L&streams=GLOB`
//!   ([`poll()`]): `{"events":[…],"next":POSITION}`, waiting up to `wait_ms`
//!   when there is nothing yet.
//! - `POST /v1/consumers/{name}/ack` `{"position":N}`: moves a consumer's
//!   checkpoint to `N` (cumulative: "everything up to N is handled") and
//!   answers once it is durable, `{"consumer","position"}`.
//! - `GET /v1/consumers/{name}`: the stored checkpoint,
//!   `{"consumer","position","updated_at_us"}`, or 404.
//!
//! `streams` is one glob over stream names with the syntax of delivery
//! routes (`ironclad::delivery::routes`): `*`, `?`, `[a-z]`, `{a,b}`, `\`.
//!
//! # Decoupled from ingest
//!
//! Subscribers never receive events from the writer. A session waits on
//! the journal's committed-head watch (one `u64` that the writer updates
//! after each group commit; updating it never blocks) and then reads the
//! committed events from the store in pages, on its own task. A subscriber
//! that is slow, stuck or gone therefore cannot hold the writer or the
//! ingest queue back: at worst it falls behind, its bounded outgoing
//! buffer fills, and it is disconnected with the reason
//! `slow consumer: buffer of N events full`. It resumes from its
//! checkpoint (or `Last-Event-ID`) when it reconnects.

pub(crate) mod poll;
pub(crate) mod ws;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use ironclad::delivery::config::RouteSpec;
use ironclad::delivery::routes::Routes;
use ironclad::store::Store;
use tokio::sync::Semaphore;

use crate::auth::{require, Access};
use crate::checkpoint::{validate_consumer_name, CheckpointConfig, CheckpointError, Checkpoints};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

pub use poll::{consumer, consumer_ack, poll, AckRequest, ConsumerBody, PollPage, PollQuery};
pub use ws::{subscribe, SubscribeQuery};

/// Longest `wait_ms` a long-poll may ask for; it is further kept below the
/// server's request timeout.
pub const POLL_WAIT_MS_MAX: u64 = 30_000;

/// Limits and timings of subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeConfig {
    /// The checkpoint worker's batching.
    pub checkpoint: CheckpointConfig,
    /// Events a session may have queued for its socket; when full, the
    /// subscriber is disconnected as a slow consumer.
    pub buffer_events: usize,
    /// How long the outgoing buffer may stay full, with more to send,
    /// before the subscriber is disconnected as a slow consumer.
    pub slow_grace: Duration,
    /// Events a named consumer may have unacknowledged; at this many the
    /// session stops reading until acknowledgements arrive.
    pub unacked_max: usize,
    /// Events read from the store per page.
    pub page_events: usize,
    /// Interval between the server's pings.
    pub ping_interval: Duration,
    /// A session that has not answered a ping (or sent anything) for this
    /// long is closed.
    pub pong_timeout: Duration,
    /// Time allowed for the closing handshake (sending the close frame,
    /// and the client's reply).
    pub close_timeout: Duration,
    /// Largest message a client may send, bytes.
    pub message_bytes_max: usize,
    /// Most WebSocket sessions at once (a subscription outlives the HTTP
    /// request, so it is counted here, not by the connection limit).
    pub sessions_max: usize,
    /// Longest long-poll wait (see [`POLL_WAIT_MS_MAX`]).
    pub poll_wait_max: Duration,
    /// Most events a long-poll reads while looking for ones matching its
    /// `streams` filter, before it answers with what it has.
    pub poll_scan_events_max: usize,
}

impl Default for SubscribeConfig {
    fn default() -> Self {
        SubscribeConfig {
            checkpoint: CheckpointConfig::default(),
            buffer_events: 1_024,
            slow_grace: Duration::from_millis(500),
            unacked_max: 10_000,
            page_events: 512,
            ping_interval: Duration::from_secs(15),
            pong_timeout: Duration::from_secs(45),
            close_timeout: Duration::from_secs(5),
            message_bytes_max: 64 * 1024,
            sessions_max: 1_024,
            poll_wait_max: Duration::from_millis(POLL_WAIT_MS_MAX),
            poll_scan_events_max: 100_000,
        }
    }
}

/// The group's shared state: the server's state, the subscription limits,
/// and the checkpoint worker (started on first use, on the runtime that
/// serves the requests). Cheap to clone.
#[derive(Clone)]
pub struct Subscriptions {
    app: AppState,
    config: Arc<SubscribeConfig>,
    checkpoints: Arc<OnceLock<Checkpoints>>,
    sessions: Arc<Semaphore>,
}

impl Subscriptions {
    /// Subscriptions over `app` with `config`.
    pub fn new(app: AppState, config: SubscribeConfig) -> Self {
        Subscriptions {
            sessions: Arc::new(Semaphore::new(config.sessions_max)),
            app,
            config: Arc::new(config),
            checkpoints: Arc::new(OnceLock::new()),
        }
    }

    /// The checkpoint worker, started on first use. Must be called on a
    /// tokio runtime. Call [`Checkpoints::flush`] on it before shutting the
    /// journal down, so no acknowledgement is lost.
    pub fn checkpoints(&self) -> &Checkpoints {
        self.checkpoints.get_or_init(|| {
            Checkpoints::start(self.app.journal.clone(), self.config.checkpoint.clone())
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &SubscribeConfig {
        &self.config
    }
}

/// The group's routes, with the default [`SubscribeConfig`].
pub fn router(state: AppState) -> Router {
    router_with(Subscriptions::new(state, SubscribeConfig::default()))
}

/// The group's routes over `subs` (keep a clone to flush checkpoints at
/// shutdown).
pub fn router_with(subs: Subscriptions) -> Router {
    let guard = from_fn_with_state((subs.app.clone(), Access::Subscribe), require);
    Router::new()
        .route("/v1/subscribe", get(ws::subscribe))
        .route("/v1/poll", get(poll::poll))
        .route("/v1/consumers/{name}", get(poll::consumer))
        .route("/v1/consumers/{name}/ack", post(poll::consumer_ack))
        .route_layer(guard)
        .with_state(subs)
}

/// A compiled `streams` filter; `None` passes everything.
#[derive(Debug, Clone)]
pub(crate) struct StreamFilter(Option<Routes>);

/// The sink name the filter's single route is compiled under.
const FILTER_KEY: &str = "subscription";

impl StreamFilter {
    pub(crate) fn parse(glob: Option<&str>) -> Result<Self, ApiError> {
        let Some(glob) = glob.filter(|g| *g != "*") else {
            return Ok(StreamFilter(None));
        };
        let route = RouteSpec {
            streams: glob.to_string(),
            sink: FILTER_KEY.to_string(),
        };
        Routes::compile(&[route])
            .map(|r| StreamFilter(Some(r)))
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("streams: {e}; use a glob such as `orders-*` or `{{a,b}}`"),
                )
                .with_details(serde_json::json!({ "streams": glob }))
            })
    }

    pub(crate) fn matches(&self, stream: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|r| r.matches(FILTER_KEY, stream))
    }

    pub(crate) fn is_all(&self) -> bool {
        self.0.is_none()
    }
}

/// Checks an optional consumer name.
pub(crate) fn check_consumer(name: Option<String>) -> Result<Option<String>, ApiError> {
    match name {
        None => Ok(None),
        Some(n) => {
            validate_consumer_name(&n).map_err(|m| {
                ApiError::new(ErrorCode::InvalidRequest, m)
                    .with_details(serde_json::json!({ "consumer": n }))
            })?;
            Ok(Some(n))
        }
    }
}

/// The stored checkpoint of `consumer` (0 if it has none).
pub(crate) async fn stored_checkpoint(app: &AppState, consumer: &str) -> Result<u64, ApiError> {
    let journal = app.journal.clone();
    let name = consumer.to_string();
    blocking(move || {
        let row = journal.store().consumer(&name).map_err(store_error)?;
        Ok(row.map_or(0, |c| c.position))
    })
    .await
}

/// Runs a blocking store call off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("the read task failed: {e}; retry"),
        )
    })?
}

/// A store failure on the subscription paths: retryable.
pub(crate) fn store_error(e: ironclad::StoreError) -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        format!("reading failed: {e}; retry later"),
    )
    .retry_after(1)
}

impl From<CheckpointError> for ApiError {
    fn from(e: CheckpointError) -> Self {
        ApiError::new(ErrorCode::Unavailable, format!("{e}; retry later")).retry_after(1)
    }
}

pub(crate) fn query_error(e: QueryRejection) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("bad query string: {}", e.body_text()),
    )
}

pub(crate) fn path_error(e: PathRejection) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("bad path: {}", e.body_text()),
    )
}
