//! A live subscription to `ironclad serve` that survives the network:
//! [`RealtimeClient`].
//!
//! # What it does
//!
//! [`RealtimeClient::start`] spawns one background task that
//!
//! - connects the WebSocket `GET /v1/subscribe?from=P[&consumer=NAME]`
//!   (`ws://` or `wss://`, from the [`Client`]'s base URL, with its bearer
//!   token) and forwards every event frame, **in position order**, into a
//!   bounded channel;
//! - remembers the last position it delivered and drops anything at or
//!   below it, so a caller never sees a duplicate; it resumes every new
//!   connection from a position it has handled (see
//!   [Acknowledgements](self#acknowledgements)), and the server streams in
//!   position order from there, so there is no gap either;
//! - on a disconnect or a failed connect, retries with exponential backoff
//!   and full jitter ([`backoff`]);
//! - after [`RealtimeOptions::ws_failures_before_poll`] consecutive
//!   WebSocket failures, long-polls `GET /v1/poll?after=<last delivered>`
//!   (with `&consumer=NAME` for a named consumer; with
//!   [`RealtimeOptions::resume_from_checkpoint`] and nothing delivered yet,
//!   without `after`, so the server starts after the stored checkpoint)
//!   instead, tries the WebSocket again every
//!   [`RealtimeOptions::probe_ws_every_ms`], and switches back as soon as
//!   one connects;
//! - publishes its [`ConnectionState`] on a watch channel
//!   ([`RealtimeClient::state`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ironclad_client::realtime::{RealtimeClient, RealtimeOptions};
//! use ironclad_client::Client;
//!
//! let client = Client::new("http://127.0.0.1:7070", Some("consumer-token".into()))?;
//! let options = RealtimeOptions {
//!     consumer: Some("billing".into()),
//!     ..RealtimeOptions::default()
//! };
//! let (rt, mut events) = RealtimeClient::start(client, options);
//! let mut state = rt.state();
//! tokio::spawn(async move {
//!     while state.changed().await.is_ok() {
//!         eprintln!("subscription: {:?}", *state.borrow());
//!     }
//! });
//! while let Some(ev) = events.recv().await {
//!     println!("{}", ev.json.get());
//!     rt.ack(ev.position).await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Bounds
//!
//! The event channel holds at most [`RealtimeOptions::buffer_events_max`]
//! events. When it is full the task stops reading the socket (or stops
//! polling), so a slow caller applies backpressure to the server instead
//! of growing memory. Note that the server disconnects a subscriber that
//! stays behind for long (`slow consumer`); the client then reconnects
//! from where it was, losing nothing. WebSocket messages and frames are
//! limited to [`RealtimeOptions::message_bytes_max`]; a connection that
//! is silent (not even a ping) for [`RealtimeOptions::idle_timeout_ms`]
//! is dropped and reconnected.
//!
//! A named consumer's acknowledgement state holds only the delivered
//! events not yet acknowledged. Once
//! [`RealtimeOptions::ack_window_events`] events were delivered from the
//! oldest unacknowledged one on, the task delivers nothing more (and does
//! not reconnect) until the caller acknowledges it; meanwhile the state is
//! [`ConnectionState::Parked`] with an [`AckWindowFull`] naming the event.
//!
//! # Acknowledgements
//!
//! With a [`RealtimeOptions::consumer`], [`RealtimeClient::ack`] records
//! that an event was handled. On a WebSocket it sends
//! `{"type":"ack","position":N}` (one per event, in any order: the server
//! advances the checkpoint through contiguous acknowledgements). Otherwise
//! (polling, or between connections) it calls
//! `POST /v1/consumers/{name}/ack`, which is **cumulative** ("everything up
//! to N is handled"): while not on a WebSocket, acknowledge in position
//! order; this client only posts the highest position up to which every
//! delivered event was acknowledged. A checkpoint may lag behind what was
//! handled, never run ahead of it, so the worst case after a restart from
//! the checkpoint is a redelivery.
//!
//! The server treats a session of a named consumer started with `from=P`
//! as having handled everything up to `P`. So a named consumer resumes
//! with `from=<P_acked>`, the highest position such that every event
//! delivered at or below it was acknowledged (an unnamed one resumes with
//! `from=<last delivered>`). The server then sends the events after
//! `P_acked` again: those already delivered are not delivered twice; the
//! client acknowledges again, on the new connection, those the caller had
//! acknowledged, and forwards the caller's later acks of the others. An
//! event delivered but not acknowledged is thus never declared handled:
//! after a restart from the stored checkpoint it is delivered again
//! (at-least-once). With [`RealtimeOptions::resume_from_checkpoint`], the
//! first connection omits `from` and starts after the stored checkpoint.
//!
//! # Cancel safety
//!
//! - [`mpsc::Receiver::recv`] on the event channel is cancel-safe: an
//!   event is either returned or stays queued.
//! - [`RealtimeClient::ack`]: if its future is dropped, the ack may or may
//!   not have been sent. Acks are idempotent; send it again.
//! - [`RealtimeClient::shutdown`]: dropping its future still stops the
//!   task (the client is consumed, and dropping a `RealtimeClient` aborts
//!   its task). Dropping the event receiver also stops the task.
//! - The task itself may be stopped at any await point: it holds nothing
//!   that must be written back. Its state becomes
//!   [`ConnectionState::Stopped`] however it ends.

pub mod backoff;
mod task;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ironclad_core::ack::AckTracker;
use serde_json::value::RawValue;
use thiserror::Error;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::api::{Client, ClientError};

pub use ironclad_core::ack::AckWindowFull;

/// Default [`RealtimeOptions::ack_window_events`] (the server's default
/// `ack_window_events` too).
pub const ACK_WINDOW_EVENTS_DEFAULT: usize = 100_000;

/// How long [`RealtimeClient::shutdown`] waits for the task to close its
/// connection before aborting it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Tuning of a [`RealtimeClient`]. `Default` suits most uses.
#[derive(Debug, Clone)]
pub struct RealtimeOptions {
    /// Deliver events with a position above this (0: the whole log).
    pub from_position: u64,
    /// A named consumer: the server keeps its checkpoint, and
    /// [`RealtimeClient::ack`] moves it.
    pub consumer: Option<String>,
    /// With a [`consumer`](Self::consumer): ignore
    /// [`from_position`](Self::from_position) and start after the
    /// consumer's stored checkpoint (the first connection sends no
    /// `from`).
    pub resume_from_checkpoint: bool,
    /// Backoff of the first retry (upper bound, before jitter), ms.
    pub backoff_ms_base: u64,
    /// Longest backoff, ms.
    pub backoff_ms_max: u64,
    /// Consecutive WebSocket failures after which the client long-polls.
    /// A failure is a connect that fails, or a connection that ends before
    /// delivering anything. 0 behaves as 1.
    pub ws_failures_before_poll: u32,
    /// `wait_ms` of each long-poll.
    pub poll_wait_ms: u64,
    /// `limit` of each long-poll.
    pub poll_limit: usize,
    /// While polling, how often to try the WebSocket again, ms. Probes run
    /// between polls, so the effective interval is at least one poll
    /// (`poll_wait_ms` when the log is quiet).
    pub probe_ws_every_ms: u64,
    /// Capacity of the event channel (at least 1).
    pub buffer_events_max: usize,
    /// Largest WebSocket message or frame accepted, bytes (an event is at
    /// most the server's payload limit, 1 MiB by default, plus its
    /// envelope).
    pub message_bytes_max: usize,
    /// Longest a WebSocket connect (TCP, TLS and upgrade) may take, ms.
    pub connect_timeout_ms: u64,
    /// A WebSocket that is silent this long (the server pings every 15 s)
    /// is dropped and reconnected, ms.
    pub idle_timeout_ms: u64,
    /// With a [`consumer`](Self::consumer): most events delivered from the
    /// oldest one the caller has not acknowledged on. At the window the
    /// task delivers nothing more and reports
    /// [`ConnectionState::Parked`] until that event is acknowledged. Keep
    /// it at most the server's `ack_window_events`.
    pub ack_window_events: usize,
}

impl Default for RealtimeOptions {
    fn default() -> Self {
        RealtimeOptions {
            from_position: 0,
            consumer: None,
            resume_from_checkpoint: false,
            backoff_ms_base: 200,
            backoff_ms_max: 30_000,
            ws_failures_before_poll: 3,
            poll_wait_ms: 10_000,
            poll_limit: 100,
            probe_ws_every_ms: 30_000,
            buffer_events_max: 1_024,
            message_bytes_max: 4 * 1024 * 1024,
            connect_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            ack_window_events: ACK_WINDOW_EVENTS_DEFAULT,
        }
    }
}

/// How events currently arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `GET /v1/subscribe`.
    WebSocket,
    /// `GET /v1/poll`.
    Poll,
}

/// The connection state of a [`RealtimeClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening a WebSocket.
    Connecting,
    /// Receiving events over this transport.
    Live(Transport),
    /// Waiting `retry_in_ms` before retry number `attempt` (1-based).
    Backoff {
        /// Consecutive failures so far.
        attempt: u32,
        /// The (jittered) delay before the next try, ms.
        retry_in_ms: u64,
    },
    /// Delivering nothing more until the caller acknowledges the oldest
    /// unacknowledged event, which holds the ack window full (see
    /// [`RealtimeOptions::ack_window_events`]).
    Parked(AckWindowFull),
    /// The task ended ([`RealtimeClient::shutdown`], dropped client or
    /// receiver).
    Stopped,
}

/// One event, as the server sent it.
#[derive(Debug)]
pub struct Event {
    /// Its global position.
    pub position: u64,
    /// The event's JSON, byte for byte.
    pub json: Box<RawValue>,
}

/// An [`RealtimeClient::ack`] failed.
#[derive(Debug, Error)]
pub enum RealtimeError {
    /// Acks need [`RealtimeOptions::consumer`].
    #[error("acknowledgements need a named consumer: set RealtimeOptions::consumer")]
    NoConsumer,
    /// The position was never delivered (acking it would be a lie).
    #[error("position {position} was not delivered yet (last delivered: {last_delivered})")]
    NotDelivered {
        /// The position acked.
        position: u64,
        /// The last position delivered.
        last_delivered: u64,
    },
    /// The HTTP ack failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// State shared between the handle and the task.
#[derive(Debug, Default)]
struct Shared {
    /// The last position put in the event channel.
    last_delivered: AtomicU64,
    /// Where acks go while a WebSocket session is live.
    ws_acks: Mutex<Option<mpsc::Sender<u64>>>,
    /// What the caller acknowledged (named consumers).
    acks: Mutex<AckState>,
    /// Signalled after each of the caller's acks (wakes a parked task).
    acked: Notify,
}

/// The acknowledgements of a named consumer, over the positions actually
/// delivered: an [`AckTracker`] holding only the unacknowledged ones,
/// within the ack window.
#[derive(Debug)]
struct AckState {
    /// `None` until the first delivery when starting from the stored
    /// checkpoint (the resume point is then the server's).
    tracker: Option<AckTracker>,
    window_events: usize,
}

impl Default for AckState {
    fn default() -> Self {
        AckState::new(Some(0), ACK_WINDOW_EVENTS_DEFAULT)
    }
}

impl AckState {
    /// Acknowledgements from `floor` on (`None`: from the stored checkpoint).
    fn new(floor: Option<u64>, window_events: usize) -> Self {
        AckState {
            tracker: floor.map(|f| AckTracker::with_window(f, window_events)),
            window_events,
        }
    }

    /// `P_acked`: every delivered position at or below it was acknowledged.
    fn floor(&self) -> Option<u64> {
        self.tracker.as_ref().map(AckTracker::checkpoint)
    }

    /// Records a delivery; refused when the window is full.
    fn delivered(&mut self, position: u64) -> Result<(), AckWindowFull> {
        let window = self.window_events;
        // The server started after its checkpoint and skipped nothing it
        // sent before `position`.
        let tracker = self
            .tracker
            .get_or_insert_with(|| AckTracker::with_window(position.saturating_sub(1), window));
        tracker.sent(position).map(|_| ())
    }

    /// Records the caller's ack and advances the floor.
    fn ack(&mut self, position: u64) {
        if let Some(t) = &mut self.tracker {
            t.ack(position);
        }
    }

    /// Whether the caller acknowledged the delivered `position`.
    fn is_acked(&self, position: u64) -> bool {
        self.tracker
            .as_ref()
            .is_some_and(|t| t.is_acknowledged(position))
    }

    /// Why nothing more may be delivered, if so.
    fn window_full(&self) -> Option<AckWindowFull> {
        self.tracker.as_ref().and_then(AckTracker::window_full)
    }
}

/// A live, self-healing subscription. See the [module docs](self).
#[derive(Debug)]
pub struct RealtimeClient {
    client: Client,
    consumer: Option<String>,
    shared: Arc<Shared>,
    state: watch::Receiver<ConnectionState>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RealtimeClient {
    /// Starts the subscription's task (on the current tokio runtime; panics
    /// outside one) and returns the handle and the event channel.
    pub fn start(
        client: Client,
        options: RealtimeOptions,
    ) -> (RealtimeClient, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(options.buffer_events_max.max(1));
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting);
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared::default());
        let from_checkpoint = options.consumer.is_some() && options.resume_from_checkpoint;
        let from = if from_checkpoint {
            0
        } else {
            options.from_position
        };
        shared.last_delivered.store(from, Ordering::SeqCst);
        if let Ok(mut a) = shared.acks.lock() {
            *a = AckState::new(
                (!from_checkpoint).then_some(from),
                options.ack_window_events,
            );
        }
        let consumer = options.consumer.clone();
        let run = task::Task::new(
            client.clone(),
            options,
            shared.clone(),
            tx,
            state_tx,
            stop_rx,
        );
        let task = tokio::spawn(run.run());
        let handle = RealtimeClient {
            client,
            consumer,
            shared,
            state: state_rx,
            stop: stop_tx,
            task: Some(task),
        };
        (handle, rx)
    }

    /// A watch on the connection state.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// The last position delivered into the event channel (the resume
    /// point).
    pub fn last_delivered(&self) -> u64 {
        self.shared.last_delivered.load(Ordering::SeqCst)
    }

    /// Acknowledges the event at `position` for the consumer (see the
    /// [module docs](self#acknowledgements) for the WebSocket and polling
    /// semantics).
    pub async fn ack(&self, position: u64) -> Result<(), RealtimeError> {
        let Some(name) = &self.consumer else {
            return Err(RealtimeError::NoConsumer);
        };
        let last_delivered = self.last_delivered();
        if position > last_delivered {
            return Err(RealtimeError::NotDelivered {
                position,
                last_delivered,
            });
        }
        // Recorded before it is sent: a session that receives the event
        // again acknowledges it itself.
        let floor = match self.shared.acks.lock() {
            Ok(mut a) => {
                a.ack(position);
                a.floor()
            }
            Err(_) => None,
        };
        self.shared.acked.notify_one();
        let ws = self
            .shared
            .ws_acks
            .lock()
            .map(|g| g.clone())
            .unwrap_or(None);
        if let Some(tx) = ws {
            if tx.send(position).await.is_ok() {
                return Ok(());
            }
        }
        // Cumulative: only up to what every delivered event below was
        // acknowledged.
        let Some(floor) = floor.filter(|&f| f > 0) else {
            return Ok(());
        };
        self.client.ack(name, floor).await?;
        Ok(())
    }

    /// Stops the task: closes the WebSocket (waiting up to 5 s for it) and
    /// ends the event channel. The state becomes
    /// [`ConnectionState::Stopped`].
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

impl Drop for RealtimeClient {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AckState, AckTracker};

    #[tokio::test]
    async fn debug_output_never_shows_the_token() {
        let client = super::Client::new("http://127.0.0.1:9", Some("rt-very-secret-2".into()))
            .expect("client");
        let (live, _events) = super::RealtimeClient::start(client, Default::default());
        let shown = format!("{live:?}");
        assert!(!shown.contains("rt-very-secret-2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn the_floor_advances_through_contiguous_acks_of_delivered_positions() {
        let mut a = AckState::new(Some(2), 100);
        for p in [3, 5, 6, 9] {
            a.delivered(p).expect("within the window");
        }
        a.ack(6);
        assert_eq!(a.floor(), Some(2));
        assert!(a.is_acked(6) && !a.is_acked(5));
        a.ack(3);
        assert_eq!(a.floor(), Some(3));
        a.ack(5);
        assert_eq!(a.floor(), Some(6), "4 was never delivered");
        a.ack(9);
        assert_eq!(a.floor(), Some(9));

        let mut b = AckState::new(None, 100);
        b.delivered(7).expect("within the window");
        assert_eq!(b.floor(), Some(6), "after the stored checkpoint");
        assert!(b.is_acked(6) && !b.is_acked(7));
    }

    /// Five million deliveries acknowledged behind one that is not hold one
    /// entry; at a window the next delivery is refused with a typed error
    /// naming the gap.
    #[test]
    fn millions_behind_one_unacknowledged_event_stay_bounded() {
        let mut a = AckState::new(Some(0), usize::MAX);
        for p in 1..=5_000_000u64 {
            a.delivered(p).expect("no window");
            if p != 2 {
                a.ack(p);
            }
        }
        assert_eq!(a.floor(), Some(1));
        assert_eq!(a.tracker.as_ref().map(AckTracker::pending), Some(1));

        let mut w = AckState::new(Some(0), 1_000);
        for p in 1..=1_000u64 {
            w.delivered(p).expect("within the window");
            if p != 1 {
                w.ack(p);
            }
        }
        let full = w.delivered(1_001).expect_err("the window is full");
        assert_eq!((full.oldest, full.window, full.checkpoint), (1, 1_000, 0));
        assert_eq!(w.window_full(), Some(full));
        w.ack(1);
        assert_eq!(w.window_full(), None);
        w.delivered(1_001).expect("room again");
    }
}
