//! Subscriptions over real sockets (SPEC §6 "Subscriptions"): the
//! subscribe routes served by `axum::serve` on 127.0.0.1:0 over a real
//! SQLite journal in a temp dir, with `tokio-tungstenite` as the WebSocket
//! client and `reqwest` for the polling path.
//!
//! Covers: ingest → subscribe → ack → persisted checkpoint, and resuming
//! from it after a restart; resuming from `from` and from `Last-Event-ID`
//! with no gaps and no duplicates; live events; contiguous, monotonic
//! checkpoints (acks 3, 1, 2); filtered subscriptions crossing filtered-out
//! positions; eviction by a newer session; a slow consumer cut off with its
//! reason while ingest completes; ping/pong keeping a session alive and a
//! silent one timing out; bad input closing with a reason; long-polling
//! (at once with data, waiting for an append, timing out); consumer
//! endpoints; and the consumer role.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ironclad::store::delivery::{CheckpointUpdate, StateWrite};
use ironclad::store::Store;
use ironclad::{Durability, ExpectedVersion, Journal, JournalConfig, NewEvent};
use ironclad_server::auth::{Auth, Role};
use ironclad_server::checkpoint::CheckpointConfig;
use ironclad_server::config::SubscribeConfig;
use ironclad_server::handlers::subscribe::{router_with, Subscriptions};
use ironclad_server::{AppState, ServerConfig};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// Quick batching, so tests see persisted checkpoints soon.
pub(crate) fn fast() -> SubscribeConfig {
    SubscribeConfig {
        checkpoint: CheckpointConfig {
            flush_interval: Duration::from_millis(20),
            ..CheckpointConfig::default()
        },
        ..SubscribeConfig::default()
    }
}

pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) ws_base: String,
    pub(crate) journal: Journal,
    pub(crate) subs: Subscriptions,
    task: JoinHandle<()>,
}

impl Server {
    pub(crate) async fn start(dir: &Path, config: SubscribeConfig, auth: Auth) -> Server {
        let journal = Journal::open(JournalConfig::new(dir).durability(Durability::Os))
            .expect("open journal");
        let state = AppState {
            journal: journal.clone(),
            engine: None,
            config: Arc::new(ServerConfig::default()),
            auth: Arc::new(auth),
        };
        let subs = Subscriptions::new(state, config);
        let app = router_with(subs.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server {
            base: format!("http://{addr}"),
            ws_base: format!("ws://{addr}"),
            journal,
            subs,
            task,
        }
    }

    /// Flushes checkpoints, stops serving and shuts the journal down (open
    /// sessions are closed with 1001 when the journal stops).
    pub(crate) async fn stop(self) {
        self.subs.checkpoints().flush().await.expect("flush");
        self.task.abort();
        self.journal
            .shutdown(Duration::from_secs(30))
            .await
            .expect("journal shutdown");
    }

    pub(crate) async fn append(&self, stream: &str, n: usize) -> Vec<u64> {
        let events = (0..n)
            .map(|i| NewEvent::new("t", format!("{{\"i\":{i}}}")))
            .collect();
        let r = self
            .journal
            .append(stream, ExpectedVersion::Any, events)
            .await
            .expect("append");
        r.events.iter().map(|e| e.position).collect()
    }

    pub(crate) async fn connect(&self, query: &str) -> Ws {
        self.connect_with(query, None).await
    }

    async fn connect_with(&self, query: &str, last_event_id: Option<&str>) -> Ws {
        let mut req = format!("{}/v1/subscribe?{query}", self.ws_base)
            .into_client_request()
            .expect("request");
        if let Some(id) = last_event_id {
            req.headers_mut()
                .insert("last-event-id", id.parse().expect("header"));
        }
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(req))
            .await
            .expect("connect in time")
            .expect("connect");
        ws
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let resp = reqwest::get(format!("{}{path}", self.base))
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Waits until the consumer's stored checkpoint is `want`.
    pub(crate) async fn wait_checkpoint(&self, consumer: &str, want: u64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (status, body) = self.get(&format!("/v1/consumers/{consumer}")).await;
            if status == 200 && body["position"] == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "checkpoint of {consumer} never reached {want}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(crate) fn stored(&self, consumer: &str) -> Option<u64> {
        self.journal
            .store()
            .consumer(consumer)
            .expect("read consumer")
            .map(|c| c.position)
    }
}

pub(crate) fn data_dir(tmp: &TempDir) -> PathBuf {
    tmp.path().join("data")
}

pub(crate) fn tmp() -> TempDir {
    tempfile::Builder::new()
        .prefix("ironclad-subscribe-")
        .tempdir()
        .expect("temp dir")
}

#[derive(Debug)]
pub(crate) enum Frame {
    Event(Value),
    Closed(Option<(u16, String)>),
}

pub(crate) async fn recv(ws: &mut Ws) -> Frame {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a frame in time");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).expect("JSON frame");
                assert_eq!(v["type"], "event", "{v}");
                return Frame::Event(v["event"].clone());
            }
            Some(Ok(Message::Close(f))) => {
                return Frame::Closed(f.map(|f| (u16::from(f.code), f.reason.to_string())))
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Frame::Closed(None),
        }
    }
}

/// The next `n` events' positions.
pub(crate) async fn positions(ws: &mut Ws, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    while out.len() < n {
        match recv(ws).await {
            Frame::Event(e) => out.push(e["position"].as_u64().expect("position")),
            Frame::Closed(f) => panic!("closed after {out:?}: {f:?}"),
        }
    }
    out
}

/// No event arrives within `d`.
pub(crate) async fn quiet(ws: &mut Ws, d: Duration) {
    if let Ok(frame) = tokio::time::timeout(d, recv(ws)).await {
        panic!("expected nothing, got {frame:?}");
    }
}

pub(crate) async fn ack(ws: &mut Ws, position: u64) {
    ws.send(Message::Text(
        json!({"type": "ack", "position": position})
            .to_string()
            .into(),
    ))
    .await
    .expect("send ack");
}

pub(crate) async fn closed_with(ws: &mut Ws) -> (u16, String) {
    loop {
        match recv(ws).await {
            Frame::Event(_) => continue,
            Frame::Closed(Some(f)) => return f,
            Frame::Closed(None) => panic!("closed without a close frame"),
        }
    }
}

#[tokio::test]
async fn ingest_subscribe_ack_persists_and_resumes_after_restart() {
    let tmp = tmp();
    let dir = data_dir(&tmp);
    let server = Server::start(&dir, fast(), Auth::default()).await;
    assert_eq!(server.append("orders", 5).await, vec![1, 2, 3, 4, 5]);

    let mut ws = server.connect("consumer=billing").await;
    assert_eq!(positions(&mut ws, 5).await, vec![1, 2, 3, 4, 5]);
    for p in 1..=5 {
        ack(&mut ws, p).await;
    }
    server.wait_checkpoint("billing", 5).await;

    // Live events after the backlog; only 6 is acknowledged.
    server.append("orders", 3).await;
    assert_eq!(positions(&mut ws, 3).await, vec![6, 7, 8]);
    ack(&mut ws, 6).await;
    server.wait_checkpoint("billing", 6).await;
    ws.close(None).await.expect("close");
    server.stop().await;

    // Restart over the same directory: the consumer resumes after 6.
    let server = Server::start(&dir, fast(), Auth::default()).await;
    assert_eq!(server.stored("billing"), Some(6));
    let mut ws = server.connect("consumer=billing").await;
    assert_eq!(positions(&mut ws, 2).await, vec![7, 8]);
    quiet(&mut ws, Duration::from_millis(200)).await;
    ack(&mut ws, 7).await;
    ack(&mut ws, 8).await;
    server.wait_checkpoint("billing", 8).await;
    let (status, body) = server.get("/v1/consumers/billing").await;
    assert_eq!(status, 200);
    assert_eq!(body["consumer"], "billing");
    assert!(body["updated_at_us"].as_i64().unwrap_or(0) > 0, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn resume_from_position_and_last_event_id_without_gaps_or_duplicates() {
    let tmp = tmp();
    let server = Server::start(&data_dir(&tmp), fast(), Auth::default()).await;
    server.append("a", 10).await;
    server.append("b", 10).await;

    let mut seen = Vec::new();
    let mut ws = server.connect("from=0").await;
    seen.extend(positions(&mut ws, 7).await);
    ws.close(None).await.expect("close");

    // Resume with Last-Event-ID while appends keep landing.
    let journal = server.journal.clone();
    let writer = tokio::spawn(async move {
        for _ in 0..10 {
            journal
                .append("c", ExpectedVersion::Any, vec![NewEvent::new("t", "{}")])
                .await
                .expect("append");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let last = seen.last().copied().unwrap_or(0).to_string();
    let mut ws = server.connect_with("", Some(&last)).await;
    seen.extend(positions(&mut ws, 23).await);
    writer.await.expect("writer");
    quiet(&mut ws, Duration::from_millis(200)).await;
    assert_eq!(
        seen,
        (1..=30).collect::<Vec<u64>>(),
        "no gaps, no duplicates"
    );

    // `from` wins over the header.
    let mut ws = server.connect_with("from=25", Some("3")).await;
    assert_eq!(positions(&mut ws, 5).await, vec![26, 27, 28, 29, 30]);

    // A bad header is refused before the upgrade.
    let mut req = format!("{}/v1/subscribe", server.ws_base)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("last-event-id", "yesterday".parse().expect("header"));
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 400)
        }
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }
    server.stop().await;
}

#[tokio::test]
async fn live_events_arrive_after_subscribing() {
    let tmp = tmp();
    let server = Server::start(&data_dir(&tmp), fast(), Auth::default()).await;
    server.append("s", 3).await;
    // Anonymous, no position: live only.
    let mut ws = server.connect("").await;
    quiet(&mut ws, Duration::from_millis(100)).await;
    server.append("s", 2).await;
    assert_eq!(positions(&mut ws, 2).await, vec![4, 5]);
    server.append("t", 1).await;
    assert_eq!(positions(&mut ws, 1).await, vec![6]);
    // Shutting the journal down closes live sessions with 1001.
    server.stop().await;
    let (code, reason) = closed_with(&mut ws).await;
    assert_eq!(code, 1001);
    assert!(reason.starts_with("server shutting down"), "{reason}");
}

#[tokio::test]
async fn checkpoint_moves_only_through_contiguous_acks_and_never_back() {
    let tmp = tmp();
    let server = Server::start(&data_dir(&tmp), fast(), Auth::default()).await;
    server.append("s", 3).await;
    let mut ws = server.connect("consumer=c2").await;
    assert_eq!(positions(&mut ws, 3).await, vec![1, 2, 3]);

    ack(&mut ws, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = server.get("/v1/consumers/c2").await;
    assert_eq!(status, 404, "3 alone moves nothing: {body}");
    assert_eq!(body["error"]["code"], "not_found");

    ack(&mut ws, 1).await;
    server.wait_checkpoint("c2", 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.stored("c2"), Some(1), "2 is still missing");
    ack(&mut ws, 2).await;
    server.wait_checkpoint("c2", 3).await;

    // Backwards: the cumulative ack answers the higher checkpoint, and a
    // direct backwards write is ignored by the store.
    let (status, body) = server
        .post("/v1/consumers/c2/ack", json!({"position": 1}))
        .await;
    assert_eq!((status, body["position"].clone()), (200, json!(3)));
    server
        .journal
        .write_state(StateWrite::SetCheckpoints(vec![CheckpointUpdate {
            consumer: "c2".into(),
            position: 2,
        }]))
        .await
        .expect("write");
    assert_eq!(server.stored("c2"), Some(3));
    server.stop().await;
}

#[tokio::test]
async fn filtered_subscription_crosses_filtered_out_positions() {
    let tmp = tmp();
    let server = Server::start(&data_dir(&tmp), fast(), Auth::default()).await;
    server.append("orders-1", 1).await; // 1
    server.append("users", 1).await; // 2
    server.append("orders-2", 1).await; // 3
    server.append("users", 2).await; // 4, 5
    let mut ws = server.connect("consumer=f&streams=orders-*").await;
    assert_eq!(positions(&mut ws, 2).await, vec![1, 3]);
    quiet(&mut ws, Duration::from_millis(100)).await;
    ack(&mut ws, 3).await;
    ack(&mut ws, 1).await;
    server.wait_checkpoint("f", 5).await;
    // Acking a filtered-out position that was read is harmless.
    ack(&mut ws, 4).await;
    server.append("orders-3", 1).await; // 6
    assert_eq!(positions(&mut ws, 1).await, vec![6]);

    // A bad glob is refused before the upgrade.
    let req = format!("{}/v1/subscribe?streams=a[", server.ws_base)
        .into_client_request()
        .expect("request");
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 400)
        }
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }
    server.stop().await;
}

#[tokio::test]
async fn a_newer_session_replaces_the_older_one() {
    let tmp = tmp();
    let server = Server::start(&data_dir(&tmp), fast(), Auth::default()).await;
    server.append("s", 2).await;
    let mut first = server.connect("consumer=dup").await;
    assert_eq!(positions(&mut first, 2).await, vec![1, 2]);
    ack(&mut first, 1).await;
    server.wait_checkpoint("dup", 1).await;
    let mut second = server.connect("consumer=dup").await;
    let (code, reason) = closed_with(&mut first).await;
    assert_eq!(code, 1008);
    assert!(
        reason.starts_with("replaced by a newer session"),
        "{reason}"
    );
    assert_eq!(positions(&mut second, 1).await, vec![2]);
    server.stop().await;
}

#[tokio::test]
async fn slow_consumer_is_cut_off_with_its_reason_and_ingest_never_stalls() {
    let tmp = tmp();
    let config = SubscribeConfig {
        buffer_events: 8,
        close_timeout: Duration::from_secs(20),
        ..fast()
    };
    let server = Server::start(&data_dir(&tmp), config, Auth::default()).await;
    let mut ws = server.connect("from=0&consumer=slow").await;

    // ~32 MB: far more than the socket buffers hold, while the client
    // reads nothing.
    let payload = format!("{{\"pad\":\"{}\"}}", "x".repeat(8 * 1024));
    let started = Instant::now();
    for _ in 0..40 {
        let events = (0..100)
            .map(|_| NewEvent::new("big", payload.clone()))
            .collect();
        tokio::time::timeout(
            Duration::from_secs(20),
            server.journal.append("big", ExpectedVersion::Any, events),
        )
        .await
        .expect("ingest is never held up by a subscriber")
        .expect("append");
    }
    let ingest = started.elapsed();
    assert!(
        ingest < Duration::from_secs(20),
        "4000 appends took {ingest:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Now read: what fitted in the buffers, then the close frame.
    let mut received = 0;
    let (code, reason) = loop {
        match recv(&mut ws).await {
            Frame::Event(_) => received += 1,
            Frame::Closed(Some(f)) => break f,
            Frame::Closed(None) => panic!("closed without a reason after {received} events"),
        }
    };
    assert_eq!(code, 1008);
    assert_eq!(reason, "slow consumer: buffer of 8 events full");
    assert!(received < 4000, "received {received}");
    server.stop().await;
}

#[tokio::test]
async fn pings_keep_a_reading_client_alive_and_a_silent_one_times_out() {
    let tmp = tmp();
    let config = SubscribeConfig {
        ping_interval: Duration::from_millis(100),
        pong_timeout: Duration::from_millis(400),
        ..fast()
    };
    let server = Server::start(&data_dir(&tmp), config, Auth::default()).await;

    // Reading (so answering pings) for well past the timeout.
    let mut ws = server.connect("").await;
    let mut pings = 0;
    let until = Instant::now() + Duration::from_millis(1_200);
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(50), ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(other))) => panic!("unexpected {other:?}"),
            Ok(other) => panic!("connection ended: {other:?}"),
            Err(_) => {}
        }
    }
    assert!(pings >= 5, "{pings} pings");
    server.append("s", 1).await;
    assert_eq!(positions(&mut ws, 1).await, vec![1]);

    // Not reading means not answering: closed with the reason.
    let mut silent = server.connect("").await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (code, reason) = closed_with(&mut silent).await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("ping timeout"), "{reason}");
    server.stop().await;
}

#[tokio::test]
async fn bad_input_closes_with_a_reason() {
    let tmp = tmp();
    let server = Server::start(&data_dir(&tmp), fast(), Auth::default()).await;
    server.append("s", 2).await;

    let mut ws = server.connect("consumer=bad").await;
    ws.send(Message::Text("not json".into()))
        .await
        .expect("send");
    let (code, reason) = closed_with(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("bad message"), "{reason}");

    let mut ws = server.connect("consumer=bad").await;
    assert_eq!(positions(&mut ws, 2).await, vec![1, 2]);
    ack(&mut ws, 99).await;
    let (code, reason) = closed_with(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(
        reason.contains("99") && reason.contains("not sent"),
        "{reason}"
    );

    let mut ws = server.connect("from=0").await;
    positions(&mut ws, 2).await;
    ack(&mut ws, 1).await;
    let (_, reason) = closed_with(&mut ws).await;
    assert!(reason.contains("named consumer"), "{reason}");

    let mut ws = server.connect("").await;
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("send");
    assert_eq!(closed_with(&mut ws).await.0, 1003);

    // Over the message limit: the protocol layer closes with 1009.
    let mut ws = server.connect("").await;
    let big = "x".repeat(SubscribeConfig::default().message_bytes_max + 1);
    let _ = ws.send(Message::Text(big.into())).await;
    assert_eq!(closed_with(&mut ws).await.0, 1009);

    // Bad names and unknown parameters never upgrade.
    for query in ["consumer=a%20b", "consumer=", "bogus=1", "from=-1"] {
        let req = format!("{}/v1/subscribe?{query}", server.ws_base)
            .into_client_request()
            .expect("request");
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 400, "{query}")
            }
            other => panic!("{query}: expected 400, got {:?}", other.map(|_| ())),
        }
    }
    // Not a WebSocket request at all.
    let (status, body) = server.get("/v1/subscribe").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_request");
    server.stop().await;
}

#[tokio::test]
async fn poll_answers_at_once_with_data_and_waits_for_an_append() {
    let tmp = tmp();
    let server = Arc::new(Server::start(&data_dir(&tmp), fast(), Auth::default()).await);
    server.append("orders-1", 2).await;
    server.append("users", 1).await;

    let started = Instant::now();
    let (status, page) = server.get("/v1/poll?after=0&wait_ms=10000").await;
    assert_eq!(status, 200);
    let got: Vec<u64> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["position"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(got, vec![1, 2, 3]);
    assert_eq!(page["next"], 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once"
    );

    // Limit and filter.
    let (_, page) = server.get("/v1/poll?after=0&limit=1").await;
    assert_eq!(
        (
            page["events"].as_array().map(Vec::len),
            page["next"].clone()
        ),
        (Some(1), json!(1))
    );
    let (_, page) = server.get("/v1/poll?after=0&streams=users").await;
    assert_eq!(page["events"][0]["stream"], "users");
    assert_eq!(page["next"], 3);

    // Nothing yet: waits, then answers with the new append.
    let poller = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let started = Instant::now();
            let r = server.get("/v1/poll?after=3&wait_ms=10000").await;
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poller.is_finished(), "the poll waits");
    server.append("orders-2", 1).await;
    let ((status, page), took) = poller.await.expect("poller");
    assert_eq!(status, 200);
    assert_eq!(page["events"][0]["position"], 4);
    assert_eq!(page["next"], 4);
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // Nothing at all: empty after wait_ms.
    let started = Instant::now();
    let (status, page) = server.get("/v1/poll?after=4&wait_ms=300").await;
    assert_eq!(status, 200);
    assert_eq!(page, json!({"events": [], "next": 4}));
    assert!(started.elapsed() >= Duration::from_millis(290));

    // Bad queries.
    for q in [
        "after=x",
        "limit=0",
        "limit=100000",
        "streams=[",
        "consumer=a%2Fb",
    ] {
        let (status, body) = server.get(&format!("/v1/poll?{q}")).await;
        assert_eq!(status, 400, "{q}: {body}");
    }

    // The polling path's checkpoint: ack, read it back, resume from it.
    let (status, body) = server
        .post("/v1/consumers/poller/ack", json!({"position": 2}))
        .await;
    assert_eq!((status, body["position"].clone()), (200, json!(2)));
    assert_eq!(server.stored("poller"), Some(2), "durable when answered");
    let (_, page) = server.get("/v1/poll?consumer=poller").await;
    assert_eq!(page["events"][0]["position"], 3);
    let (status, body) = server
        .post("/v1/consumers/poller/ack", json!({"position": 99}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_request"))
    );
    let (status, body) = server
        .post("/v1/consumers/poller/ack", json!({"pos": 1}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_request"))
    );
    let (status, _) = server.get("/v1/consumers/nobody").await;
    assert_eq!(status, 404);

    // A checkpoint stored before the worker knew the consumer still wins.
    server
        .journal
        .write_state(StateWrite::SetCheckpoints(vec![CheckpointUpdate {
            consumer: "old".into(),
            position: 4,
        }]))
        .await
        .expect("write");
    let (status, body) = server
        .post("/v1/consumers/old/ack", json!({"position": 1}))
        .await;
    assert_eq!((status, body["position"].clone()), (200, json!(4)));

    let server = Arc::into_inner(server).expect("sole owner");
    server.stop().await;
}

#[tokio::test]
async fn only_consumer_and_admin_tokens_subscribe() {
    let tmp = tmp();
    let auth = Auth::new([
        ("p-token".to_string(), Role::Producer),
        ("c-token".to_string(), Role::Consumer),
        ("a-token".to_string(), Role::Admin),
    ]);
    let server = Server::start(&data_dir(&tmp), fast(), auth).await;
    let client = reqwest::Client::new();
    for (token, want) in [
        (None, 401),
        (Some("wrong"), 401),
        (Some("p-token"), 403),
        (Some("c-token"), 200),
        (Some("a-token"), 200),
    ] {
        let mut req = client.get(format!("{}/v1/poll", server.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let status = req.send().await.expect("poll").status().as_u16();
        assert_eq!(status, want, "{token:?}");
    }
    let mut req = format!("{}/v1/subscribe", server.ws_base)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("authorization", "Bearer c-token".parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    server.append("s", 1).await;
    assert_eq!(positions(&mut ws, 1).await, vec![1]);
    let req = format!("{}/v1/subscribe", server.ws_base)
        .into_client_request()
        .expect("request");
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401)
        }
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    server.stop().await;
}

/// A named consumer may not start past the committed head (it would skip
/// every event up to there once they exist), as an ack past it is refused;
/// at the head it may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_consumer_cannot_start_beyond_the_head() {
    let tmp = tmp();
    let server = Server::start(&data_dir(&tmp), fast(), Auth::default()).await;
    assert_eq!(server.append("orders", 3).await, vec![1, 2, 3]);
    let url = |from: u64| format!("{}/v1/subscribe?consumer=c1&from={from}", server.ws_base);
    match tokio_tungstenite::connect_async(url(4)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 400);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
            assert!(
                body.contains("invalid_request") && body.contains("beyond"),
                "{body}"
            );
        }
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(url(3))
        .await
        .expect("from the head is fine");
    server.append("orders", 1).await;
    assert_eq!(positions(&mut ws, 1).await, vec![4]);
}
