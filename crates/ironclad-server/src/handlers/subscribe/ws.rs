//! `GET /v1/subscribe`: one WebSocket session.
//!
//! # Protocol
//!
//! Query: `consumer` (optional name, 1 to 128 of `[A-Za-z0-9_.-]`), `from`
//! (optional position), `streams` (optional glob). The session starts after
//! `from`, else after the `Last-Event-ID` header's position, else after the
//! consumer's checkpoint; an anonymous session with none of these starts at
//! the committed head (live events only; `from=0` replays the whole log).
//!
//! Server to client, text frames: `{"type":"event","event":{…}}`, one per
//! event in position order, no gaps (among events matching `streams`) and
//! no duplicates within a session. Client to server:
//! `{"type":"ack","position":N}` for each event handled, in any order (named
//! consumers only). The checkpoint advances through contiguous
//! acknowledgements ([`crate::checkpoint`]).
//!
//! # Closing
//!
//! The server closes with a code and a reason:
//! - 1008 `slow consumer: buffer of N events full`: the session's outgoing
//!   buffer (`buffer_events`) stayed full for `slow_grace` while there was
//!   more to send, because the client does not read fast enough;
//! - 1008 `ping timeout: …`: nothing heard (not even a pong) within
//!   `pong_timeout`; the server pings every `ping_interval`;
//! - 1008 `bad message: …`, 1003 for binary frames, 1009 (by the protocol
//!   layer) for messages over `message_bytes_max`;
//! - 1008 `replaced by a newer session of consumer …`;
//! - 1008 `ack window full: position P is unacknowledged …`: a named
//!   consumer was sent `ack_window_events` events from its oldest
//!   unacknowledged one on and there is more to send. Reconnecting resumes
//!   after its checkpoint, so P is sent again;
//! - 1013 when too many consumers are tracked; 1011 when reading fails;
//!   1001 when the server shuts down.
//!
//! A named consumer with `unacked_max` events unacknowledged is paused (not
//! disconnected) until acknowledgements arrive: it is busy. One that keeps
//! acknowledging later events while an old one stays unacknowledged has
//! likely lost it, so at the ack window it is closed rather than paused
//! (a pause would wait forever); the window bounds the server's
//! acknowledgement state and what a reconnect sends again.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseCode, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use ironclad_core::wire::{ClientFrame, ServerFrame, SubscribeQuery};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::subscriptions::{
    check_consumer, query_error, stored_checkpoint, CallerExt, StreamFilter, Subscriptions,
};
use crate::checkpoint::{AckOutcome, AckTracker, CheckpointError};
use crate::config::SubscribeConfig;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::blocking::blocking;

/// Longest close reason: a close frame's payload is at most 125 bytes, two
/// of them the code.
const CLOSE_REASON_BYTES_MAX: usize = 123;

/// Messages the writer sends without waiting in between, before a flush.
const WRITE_BATCH_MAX: usize = 64;

/// Pause before re-reading when the head says there is more but the read
/// found nothing (never expected; keeps a surprise from spinning).
const EMPTY_READ_PAUSE: Duration = Duration::from_millis(10);

/// Opens a subscription (WebSocket upgrade).
#[utoipa::path(
    get,
    path = "/v1/subscribe",
    tag = "subscribe",
    params(SubscribeQuery, ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this position")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol: event frames follow"),
        (status = 400, description = "`invalid_request`: bad query, header, a named consumer's `from` beyond the committed head, or not a WebSocket request", body = crate::error::ErrorEnvelope),
        (status = 401, description = "`unauthorized`: no or unknown token", body = crate::error::ErrorEnvelope),
        (status = 403, description = "`forbidden`: not a consumer or admin token", body = crate::error::ErrorEnvelope),
        (status = 503, description = "Too many subscriptions", body = crate::error::ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn subscribe(
    State(subs): State<Subscriptions>,
    caller: CallerExt,
    headers: HeaderMap,
    query: Result<Query<SubscribeQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(query_error)?;
    let consumer = check_consumer(q.consumer, &caller)?;
    let filter = StreamFilter::parse(q.streams.as_deref())?;
    let last_event_id = last_event_id(&headers)?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "{}: /v1/subscribe is a WebSocket endpoint; connect with a WebSocket client, or long-poll GET /v1/poll",
                e.body_text()
            ),
        )
    })?;
    let permit = subs.sessions.clone().try_acquire_owned().map_err(|_| {
        let max = subs.config.sessions_max;
        ApiError::new(
            ErrorCode::TooManyConnections,
            format!("{max} subscriptions are open: retry after the Retry-After delay"),
        )
        .with_details(serde_json::json!({ "sessions_max": max }))
        .retry_after(1)
    })?;
    let stored = match &consumer {
        Some(c) => stored_checkpoint(&subs.app, c).await?,
        None => 0,
    };
    let explicit = q.from.or(last_event_id);
    let head = *subs.app.journal.committed_head().borrow();
    // A named consumer starting past the log would skip every event up to
    // that position once they exist: refused as an ack past it is.
    if let (Some(_), Some(from)) = (&consumer, explicit) {
        if from > head {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "from {from} is beyond the last committed position {head}: a named consumer resumes from a position it has seen"
                ),
            )
            .with_details(serde_json::json!({ "from": from, "head": head })));
        }
    }
    let params = Params {
        consumer,
        stored,
        start: explicit,
        head,
        filter,
    };
    let cfg = subs.config();
    Ok(upgrade
        .max_message_size(cfg.message_bytes_max)
        .max_frame_size(cfg.message_bytes_max)
        .on_upgrade(move |socket| session(socket, subs, params, permit)))
}

/// Parses `Last-Event-ID` (a position).
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "Last-Event-ID must be the position (a non-negative integer) of the last event received",
            )
        })
}

struct Params {
    consumer: Option<String>,
    stored: u64,
    start: Option<u64>,
    head: u64,
    filter: StreamFilter,
}

/// What the writer should do.
#[derive(Debug, Clone)]
enum Closing {
    Open,
    /// Send this close frame, then stop.
    Frame(CloseFrame),
    /// Finish the closing handshake the client started (or give up on a
    /// client that is gone).
    Quiet,
}

/// A close frame with the reason cut to fit.
fn close(code: CloseCode, reason: impl Into<String>) -> CloseFrame {
    let mut reason = reason.into();
    if reason.len() > CLOSE_REASON_BYTES_MAX {
        let mut cut = CLOSE_REASON_BYTES_MAX;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// A failed read: an oversized message is answered with 1009 and the
/// limit, a protocol violation with 1002; anything else (a reset, a dead
/// peer) ends the session without a close frame.
fn read_failure(e: &axum::Error, max: usize) -> Option<CloseFrame> {
    let text = e.to_string();
    if text.contains("Space limit exceeded") {
        Some(close(
            close_code::SIZE,
            format!("message too large: the limit is {max} bytes"),
        ))
    } else if text.contains("protocol error") || text.contains("UTF-8") {
        Some(close(close_code::PROTOCOL, format!("bad frame: {text}")))
    } else {
        None
    }
}

/// Why a session ended, for the metric label.
fn reason_label(frame: &Option<CloseFrame>) -> &'static str {
    let Some(f) = frame else { return "client" };
    match f.code {
        close_code::AWAY => "shutdown",
        close_code::ERROR => "error",
        close_code::AGAIN => "overloaded",
        _ if f.reason.starts_with("slow consumer") => "slow_consumer",
        _ if f.reason.starts_with("ping timeout") => "ping_timeout",
        _ if f.reason.starts_with("replaced") => "replaced",
        _ if f.reason.starts_with("ack window") => "ack_window",
        _ => "bad_input",
    }
}

async fn session(
    socket: WebSocket,
    subs: Subscriptions,
    params: Params,
    _permit: OwnedSemaphorePermit,
) {
    metrics::gauge!("ironclad_subscribe_sessions").increment(1.0);
    let cfg = subs.config.clone();
    let (sink, mut stream) = socket.split();
    let (events_tx, events_rx) = mpsc::channel(cfg.buffer_events.max(1));
    let (ctrl_tx, ctrl_rx) = mpsc::channel(8);
    let (closing_tx, closing_rx) = watch::channel(Closing::Open);
    let writer = tokio::spawn(write_loop(
        sink,
        events_rx,
        ctrl_rx,
        closing_rx,
        cfg.close_timeout,
    ));
    let consumer = params.consumer.clone();
    let mut live = Live {
        subs: subs.clone(),
        consumer: None,
        filter: params.filter.clone(),
        events_tx,
        ctrl_tx,
        next: 0,
        last_sent: 0,
        acks: AckTracker::new(0),
    };
    let frame = live.run(params, &mut stream).await;
    metrics::counter!("ironclad_subscribe_closed_total", "reason" => reason_label(&frame))
        .increment(1);
    let initiated = frame.is_some();
    let _ = closing_tx.send(match frame {
        Some(f) => Closing::Frame(f),
        None => Closing::Quiet,
    });
    let registered = live.consumer.take();
    drop(live);
    // The writer bounds its own closing handshake by `close_timeout`.
    let _ = tokio::time::timeout(cfg.close_timeout * 2, writer).await;
    if initiated {
        // Wait for the client's close reply, so the connection is not
        // reset under data it has yet to read.
        let _ = tokio::time::timeout(cfg.close_timeout, async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    if let (Some(name), Some(session)) = (consumer, registered) {
        subs.checkpoints().close(&name, session).await;
    }
    metrics::gauge!("ironclad_subscribe_sessions").decrement(1.0);
}

/// The reading side of a session.
struct Live {
    subs: Subscriptions,
    /// The consumer and its session id, once registered.
    consumer: Option<u64>,
    filter: StreamFilter,
    events_tx: mpsc::Sender<Message>,
    ctrl_tx: mpsc::Sender<Message>,
    /// Next position to read.
    next: u64,
    /// Every position up to this was read (sent or filtered out).
    last_sent: u64,
    /// What was sent and acknowledged (named consumers only), with the
    /// ack window.
    acks: AckTracker,
}

impl Live {
    /// Runs the session until it must close; returns the close frame to
    /// send (`None`: the client closed or is gone).
    async fn run(
        &mut self,
        params: Params,
        stream: &mut SplitStream<WebSocket>,
    ) -> Option<CloseFrame> {
        let cfg = self.subs.config.clone();
        let journal = self.subs.app.journal.clone();
        // The sender half must outlive the loop: for an anonymous session
        // the eviction signal never fires.
        let (_never, unnamed) = oneshot::channel::<()>();
        let (start, mut evicted) = match self.register(&params).await {
            Ok(Some((start, evicted))) => (start, evicted),
            Ok(None) => (params.start.unwrap_or(params.head), unnamed),
            Err(frame) => return Some(frame),
        };
        self.next = start.saturating_add(1);
        self.last_sent = start;
        self.acks = AckTracker::with_window(start, cfg.ack_window_events);
        let mut evicted_done = false;
        let mut head_rx = journal.committed_head();
        let mut ping =
            tokio::time::interval_at(Instant::now() + cfg.ping_interval, cfg.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut full_since: Option<Instant> = None;
        loop {
            let head = *head_rx.borrow_and_update();
            let behind = self.next <= head;
            let window_open = self.consumer.is_none() || self.acks.pending() < cfg.unacked_max;
            if let (true, true, Some(full)) = (behind, window_open, self.acks.window_full()) {
                return Some(close(close_code::POLICY, full.to_string()));
            }
            // Full while there is more to send: the client is not keeping
            // up. `slow_grace` absorbs scheduling hiccups of the writer.
            let full = behind && window_open && self.events_tx.capacity() == 0;
            let full_until = match slow_deadline(full, &mut full_since, &cfg) {
                Ok(until) => until,
                Err(frame) => return Some(frame),
            };
            let can_pump = behind && window_open && !full;
            tokio::select! {
                biased;
                msg = stream.next() => match msg {
                    None => return None,
                    Some(Err(e)) => return read_failure(&e, cfg.message_bytes_max),
                    Some(Ok(m)) => {
                        last_heard = Instant::now();
                        if let Some(end) = self.incoming(m, params.consumer.as_deref()).await {
                            return end;
                        }
                    }
                },
                r = &mut evicted, if !evicted_done => match r {
                    Ok(()) => {
                        let name = params.consumer.as_deref().unwrap_or_default();
                        return Some(close(
                            close_code::POLICY,
                            format!("replaced by a newer session of consumer {name}"),
                        ));
                    }
                    Err(_) => evicted_done = true,
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > cfg.pong_timeout {
                        return Some(close(
                            close_code::POLICY,
                            format!(
                                "ping timeout: no pong within {} ms",
                                cfg.pong_timeout.as_millis()
                            ),
                        ));
                    }
                    // A full control queue means pings are already waiting.
                    let _ = self.ctrl_tx.try_send(Message::Ping(Bytes::new()));
                },
                r = head_rx.changed(), if !behind => {
                    if r.is_err() {
                        return Some(close(
                            close_code::AWAY,
                            "server shutting down: reconnect to resume",
                        ));
                    }
                },
                _ = room(&self.events_tx), if full => {},
                _ = tokio::time::sleep_until(full_until), if full => {},
                _ = std::future::ready(()), if can_pump => {
                    if let Err(frame) = self.pump(head, params.consumer.as_deref()).await {
                        return Some(frame);
                    }
                },
            }
        }
    }

    /// Registers a named consumer: its (possibly newer than stored)
    /// checkpoint, or the asked start, and its eviction signal. `None` for
    /// an anonymous session; `Err` is the close frame to send.
    async fn register(
        &mut self,
        params: &Params,
    ) -> Result<Option<(u64, oneshot::Receiver<()>)>, CloseFrame> {
        let Some(name) = &params.consumer else {
            return Ok(None);
        };
        let window = self.subs.config.ack_window_events;
        match self
            .subs
            .checkpoints()
            .open(name, params.stored, window)
            .await
        {
            Ok(opened) => {
                self.consumer = Some(opened.session);
                let start = params.start.unwrap_or(opened.checkpoint);
                Ok(Some((start, opened.evicted)))
            }
            Err(e @ CheckpointError::TooManyConsumers(_)) => {
                Err(close(close_code::AGAIN, e.to_string()))
            }
            Err(e) => Err(close(close_code::AWAY, e.to_string())),
        }
    }

    /// Handles one client message; `Some` ends the session.
    async fn incoming(&mut self, m: Message, consumer: Option<&str>) -> Option<Option<CloseFrame>> {
        let text = match m {
            Message::Text(t) => t,
            Message::Binary(_) => {
                return Some(Some(close(
                    close_code::UNSUPPORTED,
                    "binary messages are not supported: send JSON text",
                )))
            }
            // Pings are answered by the protocol layer; pongs only count
            // as signs of life.
            Message::Ping(_) | Message::Pong(_) => return None,
            Message::Close(_) => return Some(None),
        };
        let position = match serde_json::from_str::<ClientFrame>(&text) {
            Ok(ClientFrame::Ack { position }) => position,
            Err(e) => {
                return Some(Some(close(
                    close_code::POLICY,
                    format!("bad message: {e}; send {{\"type\":\"ack\",\"position\":N}}"),
                )))
            }
        };
        let (Some(name), Some(session)) = (consumer, self.consumer) else {
            return Some(Some(close(
                close_code::POLICY,
                "bad message: acks need a named consumer: subscribe with ?consumer=NAME",
            )));
        };
        if position > self.last_sent {
            return Some(Some(close(
                close_code::POLICY,
                format!("bad message: ack for position {position}, which was not sent"),
            )));
        }
        // Duplicates, filtered-out positions and positions before the
        // session's start are harmless and ignored.
        if self.acks.ack(position) != AckOutcome::Ignored {
            if let Err(e) = self.subs.checkpoints().ack(name, session, position).await {
                return Some(Some(close(close_code::AWAY, e.to_string())));
            }
        }
        None
    }

    /// Reads one page after `next` and queues its matching events.
    async fn pump(&mut self, head: u64, consumer: Option<&str>) -> Result<(), CloseFrame> {
        let cfg = self.subs.config.clone();
        let room = self.events_tx.capacity();
        // A page sends at most as many events as it reads, so reading no
        // more than the room of both windows keeps within them.
        let window = match self.consumer {
            Some(_) => cfg
                .unacked_max
                .saturating_sub(self.acks.pending())
                .min(self.acks.window_room()),
            None => usize::MAX,
        };
        let n = cfg.page_events.min(room).min(window).max(1);
        let from = self.next;
        let journal = self.subs.app.journal.clone();
        let page = blocking(move || Ok(journal.read_all(from, n)?))
            .await
            .map_err(|e| {
                close(
                    close_code::ERROR,
                    format!("reading the log failed: {}; reconnect to resume", e.message),
                )
            })?;
        let Some(last) = page.last().map(|e| e.position) else {
            tracing::debug!(
                from,
                head,
                "committed head ahead of readable events; retrying"
            );
            tokio::time::sleep(EMPTY_READ_PAUSE).await;
            return Ok(());
        };
        let mut frames = Vec::new();
        let mut positions = Vec::new();
        for ev in page.iter().filter(|e| self.filter.matches(&e.stream)) {
            let text = serde_json::to_string(&ServerFrame::event(ev))
                .map_err(|e| close(close_code::ERROR, format!("encoding an event failed: {e}")))?;
            frames.push(Message::Text(text.into()));
            positions.push(ev.position);
        }
        // The worker learns what was sent before the client can ack it.
        if let (Some(name), Some(session)) = (consumer, self.consumer) {
            for &p in &positions {
                // Within the window by the page size above.
                self.acks
                    .sent(p)
                    .map_err(|full| close(close_code::POLICY, full.to_string()))?;
            }
            self.acks.scanned(last);
            self.subs
                .checkpoints()
                .sent(name, session, positions, last)
                .await
                .map_err(|e| close(close_code::AWAY, e.to_string()))?;
        }
        for frame in frames {
            if self.events_tx.try_send(frame).is_err() {
                // Only this task queues events and the page fits the room
                // measured above, so this is the writer having stopped.
                return Err(close(close_code::ERROR, "the connection's writer stopped"));
            }
        }
        self.next = last.saturating_add(1);
        self.last_sent = last;
        Ok(())
    }
}

/// Resolves once the outgoing buffer has room for one more event.
async fn room(tx: &mpsc::Sender<Message>) {
    // The slot is given back at once: this only waits.
    let _ = tx.reserve().await;
}

/// Sends queued control messages and events to the socket until told to
/// close; then sends the close frame (or completes the client's closing
/// handshake) within `close_timeout`. A send in progress is abandoned when
/// closing is requested, so a stuck client cannot delay its own
/// disconnection (the close frame still queues behind data already handed
/// to the socket).
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut events: mpsc::Receiver<Message>,
    mut ctrl: mpsc::Receiver<Message>,
    mut closing: watch::Receiver<Closing>,
    close_timeout: Duration,
) {
    loop {
        if !matches!(*closing.borrow_and_update(), Closing::Open) {
            break;
        }
        let first = tokio::select! {
            biased;
            r = closing.changed() => {
                if r.is_err() {
                    break;
                }
                continue;
            }
            m = ctrl.recv() => m,
            m = events.recv() => m,
        };
        let Some(first) = first else {
            // The session ended; `closing` says how.
            let _ = closing.changed().await;
            break;
        };
        let sent = tokio::select! {
            biased;
            _ = closing.changed() => break,
            r = send_batch(&mut sink, first, &mut events) => r,
        };
        if sent.is_err() {
            return;
        }
    }
    let how = closing.borrow().clone();
    let _ = tokio::time::timeout(close_timeout, async move {
        match how {
            Closing::Frame(f) => sink.send(Message::Close(Some(f))).await,
            Closing::Open | Closing::Quiet => sink.close().await,
        }
    })
    .await;
}

/// Writes `first` and whatever events are already queued (up to
/// [`WRITE_BATCH_MAX`]), then flushes once.
async fn send_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    first: Message,
    events: &mut mpsc::Receiver<Message>,
) -> Result<(), axum::Error> {
    sink.feed(first).await?;
    for _ in 1..WRITE_BATCH_MAX {
        match events.try_recv() {
            Ok(m) => sink.feed(m).await?,
            Err(_) => break,
        }
    }
    sink.flush().await
}

/// While the send buffer is `full`, the instant the slow-consumer grace
/// runs out (`Err`: it has, close with this frame); otherwise now. Tracks
/// since when it has been full in `full_since`.
fn slow_deadline(
    full: bool,
    full_since: &mut Option<Instant>,
    cfg: &SubscribeConfig,
) -> Result<Instant, CloseFrame> {
    if !full {
        *full_since = None;
        return Ok(Instant::now());
    }
    let since = *full_since.get_or_insert_with(Instant::now);
    if since.elapsed() >= cfg.slow_grace {
        return Err(close(
            close_code::POLICY,
            format!("slow consumer: buffer of {} events full", cfg.buffer_events),
        ));
    }
    Ok(since + cfg.slow_grace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let f = close(close_code::POLICY, "é".repeat(100));
        assert!(f.reason.len() <= CLOSE_REASON_BYTES_MAX);
        assert!(f.reason.chars().all(|c| c == 'é'));
        let f = close(close_code::POLICY, "slow consumer: buffer of 8 events full");
        assert_eq!(f.reason.as_str(), "slow consumer: buffer of 8 events full");
    }

    #[test]
    fn client_messages_are_strict() {
        assert!(matches!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"ack","position":3}"#),
            Ok(ClientFrame::Ack { position: 3 })
        ));
        for bad in [
            r#"{"type":"ack"}"#,
            r#"{"type":"ack","position":-1}"#,
            r#"{"type":"ack","position":1,"x":2}"#,
            r#"{"type":"nack","position":1}"#,
            r#"{"position":1}"#,
            "[]",
            "",
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }
}
