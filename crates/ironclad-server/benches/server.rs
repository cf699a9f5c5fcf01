//! Server benchmarks (issue 4, item 10), with their baselines run in the
//! same process:
//!
//! 1. **ingest**: HTTP ingest over loopback. The real server
//!    (`serve::bind` + `Server::run`, durability `fsync`, the default) on
//!    127.0.0.1:0 over a journal in a temp dir; `IRONCLAD_BENCH_CONCURRENCY`
//!    (default 32) client tasks share one keep-alive `reqwest::Client` and
//!    POST batches of 100 events (~100-byte payloads, 64 streams) until
//!    `IRONCLAD_BENCH_EVENTS` (default 500,000) are acknowledged (201).
//!    Baseline in the same run: `Journal::append` with the same 100-event
//!    batches and the same concurrency, in process, on a fresh journal on the
//!    same disk.
//! 2. **fanout**: 100 (`IRONCLAD_BENCH_SUBSCRIBERS`) tokio-tungstenite
//!    clients subscribe to `GET /v1/subscribe` (anonymous, from the head);
//!    an in-process producer then appends events, first at a steady rate
//!    (`IRONCLAD_BENCH_FANOUT_RATE` events/s, default 1,000, for
//!    `IRONCLAD_BENCH_FANOUT_STEADY` events, default 10,000), then as fast as
//!    it can (`IRONCLAD_BENCH_FANOUT_EVENTS`, default 50,000). Every client
//!    checks that it receives every position exactly once and in order
//!    (asserted), and records lag = receipt time − the event's
//!    `created_at_us` (the same wall clock, same process; `created_at_us` is
//!    taken by the writer just before the commit, so lag includes the
//!    fsync).
//!
//! Run: `cargo bench -p ironclad-server --bench server` (set
//! `IRONCLAD_BENCH_ONLY=ingest` or `=fanout` to run one). Client and server
//! share the runtime's 2 worker threads (and the machine's cores).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ironclad::{ExpectedVersion, Journal, NewEvent};
use ironclad_server::serve;
use ironclad_server::ServerConfig;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

const BATCH: u64 = 100;
const STREAMS: u64 = 64;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A ~100-byte payload.
fn payload(i: u64, k: u64) -> String {
    format!(
        r#"{{"order":{i},"line":{k},"sku":"sku-0000000000","qty":1,"note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#
    )
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i])
}

struct Running {
    addr: SocketAddr,
    journal: Journal,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), serve::ServeError>>,
}

/// The real server on 127.0.0.1:0 over a journal in `dir`, default
/// configuration (durability fsync), no tokens.
async fn start_server(dir: &std::path::Path) -> Running {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_path_buf(),
        ..ServerConfig::default()
    };
    let journal = Journal::open(config.journal_config()).expect("open journal");
    let server = serve::bind(config, journal.clone(), None)
        .await
        .expect("bind");
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        journal,
        stop,
        task,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("server task").expect("server run");
    }
}

/// Waits (up to 5 s) for the committed head to reach `n`. The writer
/// answers an append's waiters before it publishes the new head, so right
/// after the last acknowledgement the head can still be one commit behind.
async fn head_reaches(journal: &Journal, n: u64) {
    let mut head = journal.committed_head();
    tokio::time::timeout(Duration::from_secs(5), head.wait_for(|h| *h >= n))
        .await
        .expect("committed head reaches the last acknowledged position")
        .expect("journal open");
    assert_eq!(*head.borrow(), n, "nothing beyond what was acknowledged");
}

// ---------------------------------------------------------------- ingest

/// In-process baseline: `n` events in 100-event appends, `conc` in flight,
/// on a fresh journal in `dir`. Returns events/s.
async fn append_rate(dir: &std::path::Path, n: u64, conc: u64) -> f64 {
    let config = ServerConfig {
        data_dir: dir.to_path_buf(),
        ..ServerConfig::default()
    };
    let journal = Journal::open(config.journal_config()).expect("open");
    let next = Arc::new(AtomicU64::new(0));
    let batches = n / BATCH;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let j = journal.clone();
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= batches {
                    break;
                }
                let events = (0..BATCH)
                    .map(|k| NewEvent::new("bench", payload(i, k)))
                    .collect();
                let r = j
                    .append(
                        &format!("orders-{}", i % STREAMS),
                        ExpectedVersion::Any,
                        events,
                    )
                    .await
                    .expect("append");
                assert_eq!(r.events.len() as u64, BATCH);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("append task");
    }
    let rate = (batches * BATCH) as f64 / started.elapsed().as_secs_f64();
    head_reaches(&journal, batches * BATCH).await;
    journal
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
    rate
}

fn append_body(i: u64) -> String {
    let mut s = String::with_capacity(16 * 1024);
    s.push_str(r#"{"expected_version":"any","events":["#);
    for k in 0..BATCH {
        if k > 0 {
            s.push(',');
        }
        s.push_str(r#"{"type":"bench","payload":"#);
        s.push_str(&payload(i, k));
        s.push('}');
    }
    s.push_str("]}");
    s
}

#[derive(serde::Deserialize)]
struct AppendReply {
    status: String,
    events: Vec<serde::de::IgnoredAny>,
}

/// HTTP ingest: `n` events as 100-event POSTs, `conc` requests in flight.
/// Returns (events/s, request latencies in µs, sorted).
async fn http_rate(addr: SocketAddr, n: u64, conc: u64) -> (f64, Vec<u32>) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conc as usize)
        .build()
        .expect("client");
    let batches = n / BATCH;
    // Bodies are built before the clock starts, so the client's share of
    // the 2 cores is sending and reading, not formatting.
    let bodies: Arc<Vec<axum::body::Bytes>> = Arc::new(
        (0..batches)
            .map(|i| axum::body::Bytes::from(append_body(i)))
            .collect(),
    );
    let urls: Arc<Vec<String>> = Arc::new(
        (0..STREAMS)
            .map(|s| format!("http://{addr}/v1/streams/orders-{s}/events"))
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let client = client.clone();
        let next = Arc::clone(&next);
        let bodies = Arc::clone(&bodies);
        let urls = Arc::clone(&urls);
        tasks.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= batches {
                    break;
                }
                let t = Instant::now();
                let r = client
                    .post(&urls[(i % STREAMS) as usize])
                    .header("content-type", "application/json")
                    .body(bodies[i as usize].clone())
                    .send()
                    .await
                    .expect("post");
                let status = r.status().as_u16();
                let body = r.bytes().await.expect("reply body");
                assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
                let reply: AppendReply = serde_json::from_slice(&body).expect("reply json");
                assert_eq!(reply.status, "appended");
                assert_eq!(reply.events.len() as u64, BATCH);
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
            lat
        });
    }
    let mut lat = Vec::with_capacity(batches as usize);
    while let Some(r) = tasks.join_next().await {
        lat.extend(r.expect("client task"));
    }
    let rate = (batches * BATCH) as f64 / started.elapsed().as_secs_f64();
    lat.sort_unstable();
    (rate, lat)
}

async fn ingest() {
    let n = env_u64("IRONCLAD_BENCH_EVENTS", 500_000);
    let conc = env_u64("IRONCLAD_BENCH_CONCURRENCY", 32);
    let tmp = tempfile::tempdir().expect("tempdir");

    let base = append_rate(&tmp.path().join("baseline"), n, conc).await;

    let server = start_server(&tmp.path().join("server")).await;
    let (rate, lat) = http_rate(server.addr, n, conc).await;
    head_reaches(&server.journal, n / BATCH * BATCH).await;
    let head = *server.journal.committed_head().borrow();
    let stored = server.journal.read_all(head, 1).expect("read").len();
    server.stop().await;
    assert_eq!(
        head,
        n / BATCH * BATCH,
        "every acknowledged event committed"
    );
    assert_eq!(stored, 1);

    println!(
        "ingest: {} events, batches of {BATCH} (~100-byte payloads, {STREAMS} streams), {conc} requests in flight, durability fsync",
        n / BATCH * BATCH
    );
    println!("  HTTP ingest (loopback)     {rate:>12.0} events/s");
    println!(
        "    request latency µs       p50 {:.0}  p99 {:.0}  max {:.0}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    println!("  baseline: Journal::append {base:>12.0} events/s  (same batches, same concurrency, in process)");
    println!("  ratio HTTP/in-process      {:>12.2}", rate / base);
    println!(
        "  target ≥ 100,000 events/s  {}",
        if rate >= 100_000.0 { "met" } else { "MISSED" }
    );
}

// ---------------------------------------------------------------- fanout

#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    event: FrameEvent,
}

#[derive(serde::Deserialize)]
struct FrameEvent {
    position: u64,
    created_at_us: i64,
}

/// What one subscriber saw.
struct Seen {
    /// Highest position received (every one below it, in order).
    last: u64,
    /// Lag of each event, µs, in position order.
    lag_us: Vec<u32>,
    /// Receipt time of the last event (µs since the epoch).
    last_at_us: i64,
    /// Reconnections after a close by the server.
    reconnects: u32,
    /// Close reasons seen.
    closes: Vec<String>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, from: Option<u64>) -> Ws {
    let url = match from {
        Some(p) => format!("ws://{addr}/v1/subscribe?from={p}"),
        None => format!("ws://{addr}/v1/subscribe"),
    };
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws
}

/// Reads until position `total` (shared: the producer sets it when done;
/// `u64::MAX` until then). Asserts exactly once, in order, no gaps. On a
/// close by the server, reconnects from the last position received (what
/// a resuming client does) and counts it.
async fn subscriber(
    addr: SocketAddr,
    mut ws: Ws,
    total: Arc<AtomicU64>,
    done: Arc<tokio::sync::Notify>,
) -> Seen {
    let mut seen = Seen {
        last: 0,
        lag_us: Vec::new(),
        last_at_us: 0,
        reconnects: 0,
        closes: Vec::new(),
    };
    loop {
        if seen.last >= total.load(Ordering::Acquire) {
            let _ = ws.close(None).await;
            return seen;
        }
        let msg = tokio::select! {
            m = ws.next() => m,
            // Wakes readers that are caught up when the producer finishes.
            _ = done.notified() => continue,
        };
        match msg {
            Some(Ok(Message::Text(text))) => {
                let at = now_us();
                let f: Frame = serde_json::from_str(text.as_str()).expect("event frame");
                assert_eq!(f.kind, "event");
                assert_eq!(
                    f.event.position,
                    seen.last + 1,
                    "positions arrive once each, in order"
                );
                seen.last = f.event.position;
                seen.last_at_us = at;
                seen.lag_us
                    .push((at - f.event.created_at_us).clamp(0, i64::from(u32::MAX)) as u32);
            }
            Some(Ok(Message::Close(frame))) => {
                seen.closes
                    .push(frame.map(|f| f.reason.to_string()).unwrap_or_default());
                seen.reconnects += 1;
                ws = connect(addr, Some(seen.last)).await;
            }
            Some(Ok(_)) => {} // pings are answered by tungstenite
            Some(Err(e)) => {
                seen.closes.push(format!("error: {e}"));
                seen.reconnects += 1;
                ws = connect(addr, Some(seen.last)).await;
            }
            None => {
                seen.closes.push("eof".into());
                seen.reconnects += 1;
                ws = connect(addr, Some(seen.last)).await;
            }
        }
    }
}

struct Phase {
    events: u64,
    produce_s: f64,
    deliver_s: f64,
    lags: Vec<u32>,
    reconnects: u32,
    closes: Vec<String>,
}

/// One fan-out phase on a fresh server: `subs` subscribers, then `n`
/// events appended in `batch`-event appends, paced at `rate` events/s
/// (0 = as fast as possible, 16 appends in flight).
async fn fanout_phase(subs: u64, n: u64, batch: u64, rate: u64) -> Phase {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = start_server(&tmp.path().join("data")).await;
    let total = Arc::new(AtomicU64::new(u64::MAX));
    let done = Arc::new(tokio::sync::Notify::new());
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..subs {
        // Connected (upgrade answered) before anything is appended: the
        // session starts at the head as of the upgrade, 0 here.
        let ws = connect(server.addr, None).await;
        clients.spawn(subscriber(
            server.addr,
            ws,
            Arc::clone(&total),
            Arc::clone(&done),
        ));
    }
    assert_eq!(*server.journal.committed_head().borrow(), 0);

    let batches = n / batch;
    let started = Instant::now();
    let started_us = now_us();
    if rate == 0 {
        let mut inflight = tokio::task::JoinSet::new();
        for i in 0..batches {
            let j = server.journal.clone();
            let events = (0..batch)
                .map(|k| NewEvent::new("bench", payload(i, k)))
                .collect();
            inflight.spawn(async move {
                j.append(
                    &format!("orders-{}", i % STREAMS),
                    ExpectedVersion::Any,
                    events,
                )
                .await
                .map(|_| ())
            });
            while inflight.len() >= 16 {
                if let Some(r) = inflight.join_next().await {
                    r.expect("append task").expect("append");
                }
            }
        }
        while let Some(r) = inflight.join_next().await {
            r.expect("append task").expect("append");
        }
    } else {
        // Open loop: batch i is due at i * batch / rate; appends are
        // spawned so a slow commit does not lower the offered rate.
        let mut inflight = tokio::task::JoinSet::new();
        for i in 0..batches {
            let due = started + Duration::from_secs_f64((i * batch) as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
            let j = server.journal.clone();
            let events = (0..batch)
                .map(|k| NewEvent::new("bench", payload(i, k)))
                .collect();
            inflight.spawn(async move {
                j.append(
                    &format!("orders-{}", i % STREAMS),
                    ExpectedVersion::Any,
                    events,
                )
                .await
                .map(|_| ())
            });
            while let Some(r) = inflight.try_join_next() {
                r.expect("append task").expect("append");
            }
        }
        while let Some(r) = inflight.join_next().await {
            r.expect("append task").expect("append");
        }
    }
    let produce_s = started.elapsed().as_secs_f64();
    let events = batches * batch;
    head_reaches(&server.journal, events).await;
    total.store(events, Ordering::Release);
    done.notify_waiters();

    let mut lags = Vec::with_capacity((events * subs) as usize);
    let mut reconnects = 0;
    let mut closes = Vec::new();
    let mut last_at = 0i64;
    let mut finished = 0;
    let deadline = Duration::from_secs(120);
    while let Some(r) = tokio::time::timeout(deadline, clients.join_next())
        .await
        .expect("subscribers finished within 120 s")
    {
        let seen = r.expect("subscriber task");
        assert_eq!(seen.last, events, "subscriber received every event");
        assert_eq!(seen.lag_us.len() as u64, events, "exactly once");
        lags.extend_from_slice(&seen.lag_us);
        reconnects += seen.reconnects;
        closes.extend(seen.closes);
        last_at = last_at.max(seen.last_at_us);
        finished += 1;
    }
    assert_eq!(finished, subs);
    server.stop().await;
    lags.sort_unstable();
    Phase {
        events,
        produce_s,
        deliver_s: (last_at - started_us) as f64 / 1e6,
        lags,
        reconnects,
        closes,
    }
}

fn report(name: &str, subs: u64, p: &Phase) {
    let frames = p.events * subs;
    println!(
        "  {name}: {} events appended in {:.2} s ({:.0} events/s offered/appended)",
        p.events,
        p.produce_s,
        p.events as f64 / p.produce_s
    );
    println!(
        "    delivered              {:>12.0} frames/s across {subs} subscribers ({frames} frames in {:.2} s, first append to last receipt)",
        frames as f64 / p.deliver_s,
        p.deliver_s
    );
    println!(
        "    lag append→receipt ms  p50 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&p.lags, 0.50) / 1000.0,
        percentile(&p.lags, 0.99) / 1000.0,
        percentile(&p.lags, 1.0) / 1000.0
    );
    println!(
        "    every subscriber got every event once, in order: yes ({} reconnects{})",
        p.reconnects,
        if p.closes.is_empty() {
            String::new()
        } else {
            let mut c = p.closes.clone();
            c.sort();
            c.dedup();
            format!("; close reasons: {}", c.join(" | "))
        }
    );
}

async fn fanout() {
    let subs = env_u64("IRONCLAD_BENCH_SUBSCRIBERS", 100);
    let steady_n = env_u64("IRONCLAD_BENCH_FANOUT_STEADY", 10_000);
    let steady_rate = env_u64("IRONCLAD_BENCH_FANOUT_RATE", 1_000);
    let steady_batch = env_u64("IRONCLAD_BENCH_FANOUT_STEADY_BATCH", 10);
    let max_n = env_u64("IRONCLAD_BENCH_FANOUT_EVENTS", 50_000);
    println!("fanout: {subs} WebSocket subscribers (anonymous, from the head), durability fsync");
    if steady_n > 0 {
        let p = fanout_phase(subs, steady_n, steady_batch, steady_rate).await;
        report(
            &format!("steady {steady_rate} events/s in {steady_batch}-event appends"),
            subs,
            &p,
        );
    }
    if max_n > 0 {
        let p = fanout_phase(subs, max_n, BATCH, 0).await;
        report(
            "as fast as possible, 100-event appends, 16 in flight",
            subs,
            &p,
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: run
    // only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let only = std::env::var("IRONCLAD_BENCH_ONLY").unwrap_or_default();
    rt.block_on(async {
        if only.is_empty() || only == "ingest" {
            ingest().await;
        }
        if only.is_empty() || only == "fanout" {
            fanout().await;
        }
    });
}
