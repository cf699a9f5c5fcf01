//! The background task of a [`RealtimeClient`](super::RealtimeClient): a
//! WebSocket session loop with backoff, and the long-polling fallback.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ironclad_core::wire::frames::{ClientFrame, ServerFrame, FRAME_EVENT};
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::backoff::jittered_delay_ms;
use super::{ConnectionState, Event, RealtimeOptions, Shared, Transport};
use crate::api::{encode, Client, EventPosition};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Acks queued for the WebSocket writer.
const ACK_QUEUE: usize = 256;

/// A session that stayed up this long counts as a success even if the log
/// was quiet (it resets the failure count).
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// Time allowed for the closing handshake when stopping.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest server text quoted in a log line.
const QUOTE_BYTES_MAX: usize = 200;

/// Sets the state to `Stopped` however the task ends (return, abort).
struct StateGuard(watch::Sender<ConnectionState>);

impl StateGuard {
    fn set(&self, s: ConnectionState) {
        self.0.send_if_modified(|cur| {
            let changed = *cur != s;
            *cur = s;
            changed
        });
    }
}

impl Drop for StateGuard {
    fn drop(&mut self) {
        self.set(ConnectionState::Stopped);
    }
}

/// Clears the WebSocket ack route when a session ends.
struct AckRoute<'a>(&'a Shared);

impl Drop for AckRoute<'_> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.0.ws_acks.lock() {
            *g = None;
        }
    }
}

/// The task was told to stop (or nobody listens any more).
struct Stop;

/// How a WebSocket session ended.
enum SessionEnd {
    Stop,
    /// The connection ended; `productive` if it delivered events or lasted.
    Ended {
        productive: bool,
        reason: String,
    },
}

/// What polling ended with.
enum PollEnd {
    Stop,
    /// A probe connected (with this `from`): continue on this WebSocket.
    WebSocket(Box<Ws>, Option<u64>),
}

pub(super) struct Task {
    client: Client,
    opts: RealtimeOptions,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Event>,
    state: StateGuard,
    stop: watch::Receiver<bool>,
    /// The last position delivered.
    last: u64,
    /// The highest position the current WebSocket session sent (or its
    /// `from`): acks above it would be refused by the server.
    session_seen: u64,
}

impl Task {
    pub(super) fn new(
        client: Client,
        opts: RealtimeOptions,
        shared: Arc<Shared>,
        tx: mpsc::Sender<Event>,
        state: watch::Sender<ConnectionState>,
        stop: watch::Receiver<bool>,
    ) -> Task {
        Task {
            last: shared.last_delivered.load(Ordering::SeqCst),
            session_seen: 0,
            client,
            opts,
            shared,
            tx,
            state: StateGuard(state),
            stop,
        }
    }

    /// Runs until stopped.
    pub(super) async fn run(mut self) {
        let threshold = self.opts.ws_failures_before_poll.max(1);
        // Consecutive WebSocket failures (a dropped session counts as one).
        let mut failures: u32 = 0;
        let mut pending: Option<(Box<Ws>, Option<u64>)> = None;
        loop {
            let ws = match pending.take() {
                Some(ws) => Ok(ws),
                None => {
                    // A full ack window would make the server close the new
                    // session again at once: wait for the caller first.
                    if self.wait_for_window(None).await.is_err() {
                        return;
                    }
                    self.state.set(ConnectionState::Connecting);
                    let from = self.resume_from();
                    match until_stop(
                        &mut self.stop,
                        &self.tx,
                        connect(&self.client, &self.opts, from),
                    )
                    .await
                    {
                        Err(Stop) => return,
                        Ok(r) => r.map(|ws| (ws, from)),
                    }
                }
            };
            match ws {
                Ok((ws, from)) => match self.ws_session(*ws, from).await {
                    SessionEnd::Stop => return,
                    SessionEnd::Ended { productive, reason } => {
                        tracing::info!(%reason, last = self.last, "subscription connection ended; reconnecting");
                        if productive {
                            failures = 0;
                        }
                        failures = failures.saturating_add(1);
                    }
                },
                Err(e) => {
                    tracing::info!(error = %e, failures = failures + 1, "subscription connect failed");
                    failures = failures.saturating_add(1);
                }
            }
            if failures >= threshold {
                tracing::info!(failures, "WebSocket keeps failing; long-polling instead");
                match self.poll_mode().await {
                    PollEnd::Stop => return,
                    PollEnd::WebSocket(ws, from) => {
                        failures = 0;
                        pending = Some((ws, from));
                        continue;
                    }
                }
            }
            if self.backoff(failures).await.is_err() {
                return;
            }
        }
    }

    /// Where a new WebSocket session starts (`None`: omit `from`, start
    /// after the stored checkpoint). A named consumer resumes after what
    /// the caller acknowledged, since the server takes `from` as handled.
    fn resume_from(&self) -> Option<u64> {
        if self.opts.consumer.is_none() {
            return Some(self.last);
        }
        self.shared.acks.lock().ok().and_then(|a| a.floor())
    }

    /// Whether the caller acknowledged the delivered `position`.
    fn caller_acked(&self, position: u64) -> bool {
        self.opts.consumer.is_some() && self.shared.acks.lock().is_ok_and(|a| a.is_acked(position))
    }

    /// While the caller's ack window is full, shows
    /// [`ConnectionState::Parked`] and waits for its acks (forwarding them
    /// to the WebSocket, if any); then shows `Live` again.
    async fn wait_for_window(
        &mut self,
        mut ws: Option<(&mut Ws, &mut mpsc::Receiver<u64>)>,
    ) -> Result<(), DeliverError> {
        let mut parked = false;
        loop {
            let full = self.shared.acks.lock().ok().and_then(|a| a.window_full());
            let Some(full) = full else { break };
            if !parked {
                tracing::warn!("{full}: delivering nothing more until it is acknowledged");
                parked = true;
            }
            self.state.set(ConnectionState::Parked(full));
            let acked = self.shared.acked.notified();
            match ws.as_mut() {
                None => until_stop(&mut self.stop, &self.tx, acked)
                    .await
                    .map_err(|Stop| DeliverError::Stop)?,
                Some((ws, acks)) => tokio::select! {
                    biased;
                    _ = stopped(&mut self.stop, &self.tx) => return Err(DeliverError::Stop),
                    _ = acked => {}
                    Some(a) = acks.recv() => {
                        forward_ack(ws, a, self.session_seen).await.map_err(DeliverError::Ws)?;
                    }
                },
            }
        }
        if parked {
            let transport = if ws.is_some() {
                Transport::WebSocket
            } else {
                Transport::Poll
            };
            self.state.set(ConnectionState::Live(transport));
        }
        Ok(())
    }

    /// Sleeps the jittered delay of attempt `attempt`, showing it.
    async fn backoff(&mut self, attempt: u32) -> Result<(), Stop> {
        let delay = jittered_delay_ms(attempt, self.opts.backoff_ms_base, self.opts.backoff_ms_max);
        self.state.set(ConnectionState::Backoff {
            attempt,
            retry_in_ms: delay,
        });
        until_stop(
            &mut self.stop,
            &self.tx,
            tokio::time::sleep(Duration::from_millis(delay)),
        )
        .await
    }

    /// Puts one event in the channel unless it is not past `last`; waits
    /// for room (backpressure), serving WebSocket acks meanwhile. An event
    /// sent again on a new session is not delivered again; if the caller
    /// acknowledged it, the ack is sent again on this session.
    async fn deliver(
        &mut self,
        ev: Event,
        ws: Option<(&mut Ws, &mut mpsc::Receiver<u64>)>,
    ) -> Result<(), DeliverError> {
        if ev.position <= self.last {
            if let Some((ws, _)) = ws {
                if self.caller_acked(ev.position) {
                    send_ack(ws, ev.position).await.map_err(DeliverError::Ws)?;
                }
            }
            return Ok(());
        }
        let mut ws = ws;
        if self.opts.consumer.is_some() {
            let ws = ws.as_mut().map(|(w, a)| (&mut **w, &mut **a));
            self.wait_for_window(ws).await?;
        }
        let permit = match ws {
            None => {
                let tx = self.tx.clone();
                until_stop(&mut self.stop, &self.tx, tx.reserve_owned())
                    .await
                    .map_err(|Stop| DeliverError::Stop)?
            }
            Some((ws, acks)) => loop {
                tokio::select! {
                    biased;
                    _ = stopped(&mut self.stop, &self.tx) => return Err(DeliverError::Stop),
                    p = self.tx.clone().reserve_owned() => break p,
                    Some(a) = acks.recv() => {
                        forward_ack(ws, a, self.session_seen).await.map_err(DeliverError::Ws)?;
                    }
                }
            },
        };
        let Ok(permit) = permit else {
            return Err(DeliverError::Stop);
        };
        self.last = ev.position;
        if self.opts.consumer.is_some() {
            if let Ok(mut a) = self.shared.acks.lock() {
                // Only this task delivers, and it waited for room above.
                if let Err(e) = a.delivered(ev.position) {
                    tracing::warn!("{e}");
                }
            }
        }
        self.shared
            .last_delivered
            .store(ev.position, Ordering::SeqCst);
        permit.send(ev);
        Ok(())
    }

    /// Reads one WebSocket session (started after `from`) to its end.
    async fn ws_session(&mut self, mut ws: Ws, from: Option<u64>) -> SessionEnd {
        self.session_seen = from.unwrap_or(0);
        let (ack_tx, mut acks) = mpsc::channel::<u64>(ACK_QUEUE);
        let shared = self.shared.clone();
        let _route = if self.opts.consumer.is_some() {
            if let Ok(mut g) = shared.ws_acks.lock() {
                *g = Some(ack_tx);
            }
            Some(AckRoute(&shared))
        } else {
            drop(ack_tx);
            None
        };
        self.state.set(ConnectionState::Live(Transport::WebSocket));
        let started = Instant::now();
        let mut delivered = false;
        let idle = Duration::from_millis(self.opts.idle_timeout_ms.max(1));
        let ended = |delivered: bool, reason: String| SessionEnd::Ended {
            productive: delivered || started.elapsed() >= STABLE_SESSION,
            reason,
        };
        loop {
            let msg = tokio::select! {
                biased;
                _ = stopped(&mut self.stop, &self.tx) => {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
                    return SessionEnd::Stop;
                }
                Some(a) = acks.recv() => {
                    if let Err(e) = forward_ack(&mut ws, a, self.session_seen).await {
                        return ended(delivered, e);
                    }
                    continue;
                }
                r = tokio::time::timeout(idle, ws.next()) => match r {
                    Err(_) => return ended(delivered, format!("no message or ping for {} ms", idle.as_millis())),
                    Ok(None) => return ended(delivered, "connection closed".into()),
                    Ok(Some(Err(e))) => return ended(delivered, format!("connection failed: {e}")),
                    Ok(Some(Ok(m))) => m,
                },
            };
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(f) => {
                    let reason = match f {
                        Some(f) => {
                            format!("server closed with {}: {}", u16::from(f.code), f.reason)
                        }
                        None => "server closed the connection".into(),
                    };
                    return ended(delivered, reason);
                }
                Message::Binary(_) => {
                    return ended(delivered, "unexpected binary message".into());
                }
                // Pongs are sent by the protocol layer while reading.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            let ev = match parse_frame(text.as_str()) {
                Ok(Some(ev)) => ev,
                Ok(None) => continue,
                Err(e) => return ended(delivered, e),
            };
            self.session_seen = self.session_seen.max(ev.position);
            match self.deliver(ev, Some((&mut ws, &mut acks))).await {
                Ok(()) => delivered = true,
                Err(DeliverError::Stop) => {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
                    return SessionEnd::Stop;
                }
                Err(DeliverError::Ws(e)) => return ended(delivered, e),
            }
        }
    }

    /// Long-polls until stopped or a WebSocket probe connects.
    async fn poll_mode(&mut self) -> PollEnd {
        let probe_every = Duration::from_millis(self.opts.probe_ws_every_ms.max(1));
        let mut next_probe = Instant::now() + probe_every;
        let mut failures: u32 = 0;
        loop {
            if Instant::now() >= next_probe {
                let from = self.resume_from();
                match until_stop(
                    &mut self.stop,
                    &self.tx,
                    connect(&self.client, &self.opts, from),
                )
                .await
                {
                    Err(Stop) => return PollEnd::Stop,
                    Ok(Ok(ws)) => {
                        tracing::info!("WebSocket is back; leaving long-polling");
                        return PollEnd::WebSocket(ws, from);
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "WebSocket probe failed; still polling");
                        next_probe = Instant::now() + probe_every;
                    }
                }
            }
            // A named consumer that has delivered nothing yet and starts
            // from its stored checkpoint lets the server resume it there;
            // otherwise after the last delivered event.
            let after = self.resume_from().map(|_| self.last);
            let poll = self.client.poll_as(
                after,
                self.opts.consumer.as_deref(),
                self.opts.poll_wait_ms,
                self.opts.poll_limit.max(1),
            );
            let page = match until_stop(&mut self.stop, &self.tx, poll).await {
                Err(Stop) => return PollEnd::Stop,
                Ok(r) => r,
            };
            match page {
                Ok(page) => {
                    failures = 0;
                    self.state.set(ConnectionState::Live(Transport::Poll));
                    for json in page.events {
                        let position = match EventPosition::of(&json) {
                            Ok(p) => p,
                            Err(e) => {
                                tracing::warn!(error = %e, "skipping a polled event without a position");
                                continue;
                            }
                        };
                        if let Err(DeliverError::Stop) =
                            self.deliver(Event { position, json }, None).await
                        {
                            return PollEnd::Stop;
                        }
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::info!(error = %e, failures, "long-poll failed");
                    if self.backoff(failures).await.is_err() {
                        return PollEnd::Stop;
                    }
                }
            }
        }
    }
}

enum DeliverError {
    Stop,
    /// Writing an ack to the WebSocket failed.
    Ws(String),
}

/// Runs `f` unless the task is told to stop first.
async fn until_stop<F: Future>(
    stop: &mut watch::Receiver<bool>,
    tx: &mpsc::Sender<Event>,
    f: F,
) -> Result<F::Output, Stop> {
    tokio::select! {
        biased;
        _ = stopped(stop, tx) => Err(Stop),
        out = f => Ok(out),
    }
}

/// Resolves when the handle says stop, is gone, or the receiver is gone.
async fn stopped(stop: &mut watch::Receiver<bool>, tx: &mpsc::Sender<Event>) {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = tx.closed() => {}
    }
}

/// Sends the caller's ack of `position` if this session sent it (`seen`:
/// the highest position it sent). Otherwise the session has yet to send it
/// again, and acknowledges it then (the caller's ack is recorded first).
async fn forward_ack(ws: &mut Ws, position: u64, seen: u64) -> Result<(), String> {
    if position > seen {
        return Ok(());
    }
    send_ack(ws, position).await
}

async fn send_ack(ws: &mut Ws, position: u64) -> Result<(), String> {
    let text = serde_json::to_string(&ClientFrame::Ack { position })
        .map_err(|e| format!("encoding an ack failed: {e}"))?;
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| format!("sending an ack failed: {e}"))
}

/// An event frame's event; `None` for other frame types (ignored, for
/// forward compatibility).
fn parse_frame(text: &str) -> Result<Option<Event>, String> {
    let frame: ServerFrame<Box<RawValue>> =
        serde_json::from_str(text).map_err(|e| format!("bad frame from the server: {e}"))?;
    if frame.kind != FRAME_EVENT {
        return Ok(None);
    }
    let json = frame
        .event
        .ok_or_else(|| "event frame without an event".to_string())?;
    let position = EventPosition::of(&json).map_err(|e| e.to_string())?;
    Ok(Some(Event { position, json }))
}

/// `ws(s)://HOST/v1/subscribe?[from=…][&consumer=…]` for the client's base
/// URL.
fn subscribe_url(base: &str, from: Option<u64>, consumer: Option<&str>) -> String {
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    let mut params = Vec::new();
    if let Some(from) = from {
        params.push(format!("from={from}"));
    }
    if let Some(c) = consumer {
        params.push(format!("consumer={}", encode(c)));
    }
    format!("{ws_base}/v1/subscribe?{}", params.join("&"))
}

/// Opens a subscription after `from` (`None`: after the stored checkpoint).
async fn connect(
    client: &Client,
    opts: &RealtimeOptions,
    from: Option<u64>,
) -> Result<Box<Ws>, String> {
    let url = subscribe_url(client.base_url(), from, opts.consumer.as_deref());
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad subscription URL {url}: {e}"))?;
    if let Some(token) = client.token() {
        let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the token is not a valid header value".to_string())?;
        v.set_sensitive(true);
        req.headers_mut().insert(AUTHORIZATION, v);
    }
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(opts.message_bytes_max))
        .max_frame_size(Some(opts.message_bytes_max));
    let timeout = Duration::from_millis(opts.connect_timeout_ms.max(1));
    match tokio::time::timeout(
        timeout,
        tokio_tungstenite::connect_async_with_config(req, Some(cfg), true),
    )
    .await
    {
        Err(_) => Err(format!(
            "connecting timed out after {} ms",
            timeout.as_millis()
        )),
        Ok(Ok((ws, _resp))) => Ok(Box::new(ws)),
        Ok(Err(WsError::Http(resp))) => {
            let body = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(QUOTE_BYTES_MAX)]).into_owned())
                .unwrap_or_default();
            Err(format!(
                "the server refused the subscription: {} {body}",
                resp.status()
            ))
        }
        Ok(Err(e)) => Err(format!("connecting failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_base() {
        assert_eq!(
            subscribe_url("http://127.0.0.1:7070", Some(5), None),
            "ws://127.0.0.1:7070/v1/subscribe?from=5"
        );
        assert_eq!(
            subscribe_url("https://h.example/x", Some(0), Some("a b")),
            "wss://h.example/x/v1/subscribe?from=0&consumer=a%20b"
        );
        assert_eq!(
            subscribe_url("http://h", None, Some("c")),
            "ws://h/v1/subscribe?consumer=c"
        );
    }

    #[test]
    fn frames_parse() {
        let ev = parse_frame(r#"{"type":"event","event":{"position":7,"payload":{"a":1}}}"#)
            .expect("ok")
            .expect("event");
        assert_eq!(ev.position, 7);
        assert_eq!(ev.json.get(), r#"{"position":7,"payload":{"a":1}}"#);
        assert!(parse_frame(r#"{"type":"hello"}"#).expect("ok").is_none());
        assert!(parse_frame(r#"{"type":"event"}"#).is_err());
        assert!(parse_frame(r#"{"type":"event","event":{}}"#).is_err());
        assert!(parse_frame("nope").is_err());
    }
}
