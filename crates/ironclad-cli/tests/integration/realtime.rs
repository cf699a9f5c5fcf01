//! The `RealtimeClient` (crate `ironclad-client`) against real
//! `ironclad serve` processes on ephemeral ports:
//!
//! 1. end to end: append → subscribe → acknowledge → durable checkpoint;
//! 2. SIGKILL the server under a subscriber reading a continuous stream of
//!    appends, restart it on the same data directory and port: every
//!    acknowledged event arrives exactly once, in position order, with no
//!    gaps, and the state goes through `Backoff` back to `Live`;
//! 3. the polling fallback: a proxy refuses WebSocket upgrades, the client
//!    long-polls (`Live(Poll)`) without losing or repeating events, and
//!    returns to `Live(WebSocket)` once upgrades pass again.
//! 4. acknowledgements across reconnects: a named consumer's events that
//!    were delivered but not acknowledged are neither delivered twice nor
//!    declared handled, so a restart from the stored checkpoint delivers
//!    them again.

use crate::serve_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironclad_client::realtime::{
    ConnectionState, Event, RealtimeClient, RealtimeOptions, Transport,
};
use ironclad_client::{AppendBody, Client, EventBody, WireExpected};
use serde_json::value::RawValue;
use serve_support::{start, try_start, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(30);

/// Options that retry quickly.
pub(crate) fn fast_options() -> RealtimeOptions {
    RealtimeOptions {
        backoff_ms_base: 20,
        backoff_ms_max: 300,
        poll_wait_ms: 300,
        probe_ws_every_ms: 300,
        connect_timeout_ms: 2_000,
        buffer_events_max: 64,
        ..RealtimeOptions::default()
    }
}

/// An append of the events numbered `ids` (fixed ids, so a retry is
/// idempotent).
fn batch(ids: std::ops::Range<u128>) -> AppendBody {
    AppendBody {
        expected_version: Some(WireExpected::Keyword("any".into())),
        events: ids
            .map(|n| EventBody {
                id: Some(uuid::Uuid::from_u128(
                    0x0190_a6f0_0000_7000_8000_0000_0000_0000 + n,
                )),
                event_type: "test.rt".into(),
                op: Default::default(),
                entity: None,
                payload: RawValue::from_string(format!("{{\"n\":{n}}}")).expect("json"),
                metadata: Default::default(),
            })
            .collect(),
    }
}

/// Appends, retrying (same ids) until the server acknowledges; returns the
/// positions.
pub(crate) async fn append_retrying(
    client: &Client,
    stream: &str,
    ids: std::ops::Range<u128>,
) -> Vec<u64> {
    let body = batch(ids);
    let deadline = Instant::now() + WAIT;
    loop {
        match client.append(stream, &body).await {
            Ok(out) => return out.events.iter().map(|a| a.position).collect(),
            Err(e) => {
                assert!(Instant::now() < deadline, "append kept failing: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Every position in `streams`, in position order (the whole log, as the
/// tests write only these streams).
async fn log_positions(client: &Client, streams: &[&str]) -> Vec<u64> {
    let mut all = Vec::new();
    for s in streams {
        let mut from = 1;
        loop {
            let page = client.read(s, from, 500).await.expect("read");
            for ev in &page.events {
                all.push(ironclad_client::EventPosition::of(ev).expect("position"));
            }
            match page.next {
                Some(n) => from = n,
                None => break,
            }
        }
    }
    all.sort_unstable();
    all
}

/// Collects delivered events' positions in the background (checking each
/// event's JSON carries the same position).
pub(crate) fn collect(mut rx: mpsc::Receiver<Event>) -> Arc<Mutex<Vec<u64>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let v: serde_json::Value = serde_json::from_str(ev.json.get()).expect("event JSON");
            assert_eq!(v["position"], ev.position, "{}", ev.json.get());
            out.lock().expect("lock").push(ev.position);
        }
    });
    seen
}

/// Records every state the watch shows.
fn record_states(mut rx: watch::Receiver<ConnectionState>) -> Arc<Mutex<Vec<ConnectionState>>> {
    let states = Arc::new(Mutex::new(vec![*rx.borrow_and_update()]));
    let out = states.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let s = *rx.borrow_and_update();
            out.lock().expect("lock").push(s);
        }
        out.lock().expect("lock").push(*rx.borrow());
    });
    states
}

/// Waits until the collector has seen `position` (or panics).
pub(crate) async fn wait_for_position(seen: &Mutex<Vec<u64>>, position: u64, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if seen
            .lock()
            .expect("lock")
            .last()
            .is_some_and(|&p| p >= position)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: position {position} not received; got {:?}",
            seen.lock().expect("lock").last()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the state is `want`.
pub(crate) async fn wait_for_state(
    rx: &mut watch::Receiver<ConnectionState>,
    want: ConnectionState,
) {
    let r = tokio::time::timeout(WAIT, rx.wait_for(|s| *s == want))
        .await
        .map(|r| r.map(|_| ()));
    match r {
        Ok(r) => r.expect("state watch open"),
        Err(_) => panic!("state never became {want:?}; it is {:?}", *rx.borrow()),
    }
}

fn assert_exactly_once(received: &[u64], log: &[u64]) {
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "not strictly in position order (a duplicate or a reordering)"
    );
    assert_eq!(
        received.len(),
        log.len(),
        "received {} events, the log has {}",
        received.len(),
        log.len()
    );
    assert_eq!(received, log, "received events differ from the log (a gap)");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_arrive_in_order_and_acks_move_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = tokio::task::block_in_place(|| start(dir.path(), &[], &[]));
    let client = Client::new(&server.base, None).expect("client");
    // Some history before subscribing, some after.
    let mut acked = append_retrying(&client, "orders-1", 0..10).await;
    let (rt, mut rx) = RealtimeClient::start(
        client.clone(),
        RealtimeOptions {
            consumer: Some("billing".into()),
            ..fast_options()
        },
    );
    let mut state = rt.state();
    wait_for_state(&mut state, ConnectionState::Live(Transport::WebSocket)).await;
    acked.extend(append_retrying(&client, "orders-2", 10..25).await);
    acked.extend(append_retrying(&client, "orders-1", 25..30).await);
    let last = *acked.last().expect("appended");

    let mut received = Vec::new();
    while received.last() != Some(&last) {
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("an event in time")
            .expect("channel open");
        rt.ack(ev.position).await.expect("ack");
        received.push(ev.position);
    }
    assert_eq!(received, acked, "every appended event, in position order");
    assert!(matches!(
        rt.ack(last + 1).await,
        Err(ironclad_client::realtime::RealtimeError::NotDelivered { .. })
    ));

    // The checkpoint worker persists the contiguous acknowledgements.
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(c) = client.get_json("/v1/consumers/billing").await {
            if c["position"] == last {
                break;
            }
        }
        assert!(Instant::now() < deadline, "checkpoint never reached {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    rt.shutdown().await;
    assert_eq!(*state.borrow_and_update(), ConnectionState::Stopped);
    assert!(rx.recv().await.is_none(), "the channel ends after shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_and_restart_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = tokio::task::block_in_place(|| start(dir.path(), &[], &[]));
    let addr = server.addr;
    let client = Client::new(&server.base, None).expect("client");
    let (rt, rx) = RealtimeClient::start(
        client.clone(),
        RealtimeOptions {
            // Stay on the WebSocket: this test is about resuming it.
            ws_failures_before_poll: u32::MAX,
            ..fast_options()
        },
    );
    let states = record_states(rt.state());
    let seen = collect(rx);

    // A continuous stream of appends, each retried until acknowledged.
    const TOTAL: u128 = 600;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicU64::new(0));
    let appender = {
        let (client, acked, done) = (client.clone(), acked.clone(), done.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while n < TOTAL {
                let k = 3.min(TOTAL - n);
                let ps = append_retrying(&client, "load", n..n + k).await;
                acked.lock().expect("lock").extend(ps);
                n += k;
                done.store(n as u64, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    // Kill the server mid-stream, while the subscriber is reading.
    let deadline = Instant::now() + WAIT;
    while done.load(Ordering::SeqCst) < 150 || seen.lock().expect("lock").len() < 100 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = tokio::task::block_in_place(|| server.signal_and_wait("-KILL"));
    assert!(!status.success());
    drop(server);
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Same data directory, same port.
    let listen = addr.to_string();
    let server: Server = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + WAIT;
        loop {
            match try_start(dir.path(), &["--listen", &listen], &[]) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "restart failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    });
    assert_eq!(server.addr, addr);

    tokio::time::timeout(Duration::from_secs(120), appender)
        .await
        .expect("appends finish")
        .expect("appender");
    let acked = acked.lock().expect("lock").clone();
    let last = *acked.iter().max().expect("appended");
    wait_for_position(&seen, last, "after the restart").await;

    let log = log_positions(&client, &["load"]).await;
    let received = seen.lock().expect("lock").clone();
    assert_exactly_once(&received, &log);
    for p in &acked {
        assert!(
            received.binary_search(p).is_ok(),
            "acknowledged position {p} not received"
        );
    }

    let states = states.lock().expect("lock").clone();
    let backoff = states
        .iter()
        .position(|s| matches!(s, ConnectionState::Backoff { .. }))
        .unwrap_or_else(|| panic!("no Backoff state: {states:?}"));
    assert!(
        states[..backoff].contains(&ConnectionState::Live(Transport::WebSocket)),
        "live before the kill: {states:?}"
    );
    assert!(
        states[backoff..].contains(&ConnectionState::Live(Transport::WebSocket)),
        "live again after the restart: {states:?}"
    );
    assert_eq!(
        *rt.state().borrow(),
        ConnectionState::Live(Transport::WebSocket)
    );
    rt.shutdown().await;
}

/// A TCP proxy that answers `400` to `GET /v1/subscribe…` while `block` is
/// set, and forwards everything else.
pub(crate) struct Proxy {
    pub(crate) base: String,
    pub(crate) block: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn proxy(upstream: SocketAddr, block: bool) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let block = Arc::new(AtomicBool::new(block));
    let flag = block.clone();
    let task = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(proxy_conn(conn, upstream, flag.clone()));
        }
    });
    Proxy { base, block, task }
}

async fn proxy_conn(mut conn: TcpStream, upstream: SocketAddr, block: Arc<AtomicBool>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    if block.load(Ordering::SeqCst) && head.starts_with(b"GET /v1/subscribe") {
        let body = br#"{"error":{"code":"proxy","message":"websockets blocked by the test proxy","details":null}}"#;
        let resp = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = conn.write_all(resp.as_bytes()).await;
        let _ = conn.write_all(body).await;
        let _ = conn.shutdown().await;
        return;
    }
    let Ok(mut up) = TcpStream::connect(upstream).await else {
        return;
    };
    if up.write_all(&head).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn falls_back_to_polling_and_back_to_the_websocket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = tokio::task::block_in_place(|| start(dir.path(), &[], &[]));
    let direct = Client::new(&server.base, None).expect("client");
    let proxy = proxy(server.addr, true).await;
    let via_proxy = Client::new(&proxy.base, None).expect("client");

    let mut acked = append_retrying(&direct, "a", 0..20).await;
    let (rt, rx) = RealtimeClient::start(
        via_proxy,
        RealtimeOptions {
            consumer: Some("fallback".into()),
            ws_failures_before_poll: 3,
            ..fast_options()
        },
    );
    let states = record_states(rt.state());
    let seen = collect(rx);
    let mut state = rt.state();
    wait_for_state(&mut state, ConnectionState::Live(Transport::Poll)).await;

    // Events keep flowing while polling, in order, across streams.
    for i in 0..10u128 {
        acked.extend(
            append_retrying(
                &direct,
                if i % 2 == 0 { "a" } else { "b" },
                20 + i * 5..25 + i * 5,
            )
            .await,
        );
    }
    let last_polled = *acked.last().expect("appended");
    wait_for_position(&seen, last_polled, "while polling").await;
    assert_eq!(*state.borrow(), ConnectionState::Live(Transport::Poll));
    // While polling, an ack is a cumulative HTTP ack, up to where every
    // delivered event was acknowledged.
    let delivered = seen.lock().expect("lock").clone();
    for &p in &delivered[1..] {
        rt.ack(p).await.expect("ack over HTTP");
    }
    assert!(
        direct.get_json("/v1/consumers/fallback").await.is_err(),
        "no checkpoint past an unacknowledged event"
    );
    rt.ack(delivered[0]).await.expect("ack over HTTP");
    let c = direct
        .get_json("/v1/consumers/fallback")
        .await
        .expect("checkpoint");
    assert_eq!(c["position"], last_polled);

    // Let WebSockets through, with appends running.
    let appender = {
        let direct = direct.clone();
        tokio::spawn(async move {
            let mut ps = Vec::new();
            for i in 0..40u128 {
                ps.extend(append_retrying(&direct, "b", 100 + i * 2..102 + i * 2).await);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ps
        })
    };
    proxy.block.store(false, Ordering::SeqCst);
    wait_for_state(&mut state, ConnectionState::Live(Transport::WebSocket)).await;
    acked.extend(appender.await.expect("appender"));
    acked.extend(append_retrying(&direct, "a", 200..210).await);
    let last = *acked.last().expect("appended");
    wait_for_position(&seen, last, "after switching back").await;
    assert_eq!(*state.borrow(), ConnectionState::Live(Transport::WebSocket));

    let log = log_positions(&direct, &["a", "b"]).await;
    let received = seen.lock().expect("lock").clone();
    assert_exactly_once(&received, &log);
    assert_eq!(received, acked);

    let states = states.lock().expect("lock").clone();
    let polled = states
        .iter()
        .position(|s| *s == ConnectionState::Live(Transport::Poll))
        .expect("went to polling");
    assert!(
        !states[..polled].contains(&ConnectionState::Live(Transport::WebSocket)),
        "no WebSocket got through the blocking proxy: {states:?}"
    );
    assert!(
        states[..polled]
            .iter()
            .filter(|s| matches!(s, ConnectionState::Backoff { .. }))
            .count()
            >= 2,
        "backed off between WebSocket failures before polling: {states:?}"
    );
    rt.shutdown().await;
    drop(proxy);
}

/// SIGKILLs `server` and starts it again on the same data directory and
/// port.
async fn kill_and_restart(mut server: Server, dir: &std::path::Path) -> Server {
    let addr = server.addr;
    let status = tokio::task::block_in_place(|| server.signal_and_wait("-KILL"));
    assert!(!status.success());
    drop(server);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let listen = addr.to_string();
    let server = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + WAIT;
        loop {
            match try_start(dir, &["--listen", &listen], &[]) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "restart failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    });
    assert_eq!(server.addr, addr);
    server
}

/// The next event, in time.
pub(crate) async fn next_event(rx: &mut mpsc::Receiver<Event>) -> u64 {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .expect("channel open")
        .position
}

/// Waits until the consumer's stored checkpoint is `position`.
async fn wait_for_checkpoint(client: &Client, consumer: &str, position: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(c) = client.get_json(&format!("/v1/consumers/{consumer}")).await {
            if c["position"] == position {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "checkpoint of {consumer} never reached {position}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the connection dropped and came back on the WebSocket.
async fn wait_for_reconnect(rx: &mut watch::Receiver<ConnectionState>) {
    let live = ConnectionState::Live(Transport::WebSocket);
    tokio::time::timeout(WAIT, rx.wait_for(|s| *s != live))
        .await
        .expect("the connection drops")
        .expect("state watch open");
    wait_for_state(rx, live).await;
}

fn named(consumer: &str, resume_from_checkpoint: bool) -> RealtimeOptions {
    RealtimeOptions {
        consumer: Some(consumer.into()),
        resume_from_checkpoint,
        ws_failures_before_poll: u32::MAX,
        ..fast_options()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unacknowledged_events_are_not_declared_handled_on_reconnect() {
    const N: usize = 10;
    const K: usize = 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = tokio::task::block_in_place(|| start(dir.path(), &[], &[]));
    let client = Client::new(&server.base, None).expect("client");
    let ps = append_retrying(&client, "ack-gap", 0..N as u128).await;

    let (rt, mut rx) = RealtimeClient::start(client.clone(), named("ledger", false));
    let mut state = rt.state();
    for &p in &ps {
        assert_eq!(next_event(&mut rx).await, p);
    }
    // The first K, and one later, out of order.
    for &p in &ps[..K] {
        rt.ack(p).await.expect("ack");
    }
    rt.ack(ps[7]).await.expect("ack");
    wait_for_checkpoint(&client, "ledger", ps[K - 1]).await;

    let server = kill_and_restart(server, dir.path()).await;
    wait_for_reconnect(&mut state).await;

    // Nothing delivered twice: the next events are the new ones.
    let more = append_retrying(&client, "ack-gap", N as u128..N as u128 + 2).await;
    for &p in &more {
        assert_eq!(
            next_event(&mut rx).await,
            p,
            "a duplicate after reconnecting"
        );
    }
    // The caller acks the rest; the session acks ps[7] again by itself.
    for &p in ps[K..].iter().chain(&more) {
        if p != ps[7] {
            rt.ack(p).await.expect("ack");
        }
    }
    let last = *more.last().expect("appended");
    wait_for_checkpoint(&client, "ledger", last).await;
    rt.shutdown().await;
    assert!(rx.recv().await.is_none());

    // A new client from the stored checkpoint gets nothing old.
    let (rt, mut rx) = RealtimeClient::start(client.clone(), named("ledger", true));
    let mut state = rt.state();
    wait_for_state(&mut state, ConnectionState::Live(Transport::WebSocket)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = append_retrying(&client, "ack-gap", 100..101).await;
    assert_eq!(next_event(&mut rx).await, fresh[0], "an old event again");
    rt.shutdown().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn unacknowledged_events_are_redelivered_after_restarts() {
    const N: usize = 10;
    const K: usize = 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = tokio::task::block_in_place(|| start(dir.path(), &[], &[]));
    let client = Client::new(&server.base, None).expect("client");
    let ps = append_retrying(&client, "ack-gap", 0..N as u128).await;

    let (rt, mut rx) = RealtimeClient::start(client.clone(), named("audit", false));
    let mut state = rt.state();
    for &p in &ps {
        assert_eq!(next_event(&mut rx).await, p);
    }
    for &p in &ps[..K] {
        rt.ack(p).await.expect("ack");
    }
    wait_for_checkpoint(&client, "audit", ps[K - 1]).await;

    // The server restarts, the client reconnects (and would have declared
    // everything delivered as handled), then the client restarts too.
    let server = kill_and_restart(server, dir.path()).await;
    wait_for_reconnect(&mut state).await;
    // A new event, handled: its ack must not carry the unacknowledged
    // ones along.
    let more = append_retrying(&client, "ack-gap", N as u128..N as u128 + 1).await;
    assert_eq!(
        next_event(&mut rx).await,
        more[0],
        "a duplicate after reconnecting"
    );
    rt.ack(more[0]).await.expect("ack");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    rt.shutdown().await;
    assert_eq!(
        client
            .get_json("/v1/consumers/audit")
            .await
            .expect("consumer")["position"],
        ps[K - 1]
    );

    let (rt, mut rx) = RealtimeClient::start(client.clone(), named("audit", true));
    for &p in ps[K..].iter().chain(&more) {
        assert_eq!(next_event(&mut rx).await, p, "not redelivered");
    }
    rt.shutdown().await;
    drop(server);
}
