//! Delivery throughput benchmarks (issue 3, item 12), with their baselines
//! run in the same process:
//!
//! 1. **drain**: a backlog of `IRONCLAD_BENCH_EVENTS` (default 500,000)
//!    events is delivered by the engine to a loopback HTTP receiver in
//!    batches of 500. Baseline: the same batches POSTed straight to the same
//!    receiver by a bare loop (no store, no settle): the ceiling of the
//!    transport, so the ratio reads as engine efficiency.
//! 2. **outage**: the receiver is down for `IRONCLAD_BENCH_OUTAGE_S`
//!    (default 60) seconds while `IRONCLAD_BENCH_OUTAGE_EVENTS` (default
//!    1,000,000) events are appended; then it recovers, and we time the drain
//!    and report peak RSS.
//!
//! Run: `cargo bench -p ironclad --bench delivery` (set `IRONCLAD_BENCH_ONLY=drain`
//! or `=outage` to run one). The receiver parses every body as JSON and
//! counts events by idempotency key, as a real consumer would.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use ironclad::delivery::config::DeliveryConfig;
use ironclad::delivery::engine::DeliveryEngine;
use ironclad::{Durability, ExpectedVersion, Journal, JournalConfig, NewEvent};

#[derive(serde::Deserialize)]
struct Batch {
    events: Vec<BatchEvent>,
}

#[derive(serde::Deserialize)]
struct BatchEvent {
    idempotency_key: uuid::Uuid,
}

#[derive(Default)]
struct Counts {
    events: AtomicU64,
    requests: AtomicU64,
    down: AtomicBool,
}

async fn receive(State(c): State<Arc<Counts>>, body: Bytes) -> StatusCode {
    if c.down.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    // A typed parse, as a consumer deduplicating by key would do: every
    // byte is still lexed and validated, the payloads are not built.
    let Ok(batch) = serde_json::from_slice::<Batch>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let n = batch
        .events
        .iter()
        .filter(|e| !e.idempotency_key.is_nil())
        .count() as u64;
    c.events.fetch_add(n, Ordering::Relaxed);
    c.requests.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

async fn start_receiver() -> (String, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&counts));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("receiver address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), counts)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn config(url: &str) -> DeliveryConfig {
    let toml = format!(
        r#"
[[delivery.sinks]]
name = "bench"
kind = "http"
url = "{url}"
secret = "bench-secret-0123456789abcdef"
[delivery.sinks.batch]
events_max = 500
linger_ms = 0
[delivery.sinks.retry]
delay_ms_base = 100
delay_ms_max = 2000
attempts_max = 1000
elapsed_ms_max = 3600000
[[delivery.routes]]
streams = "*"
sink = "bench"
"#
    );
    DeliveryConfig::from_toml_str(&toml).expect("bench config")
}

/// Appends `n` events of ~100 bytes over 64 streams, 100 per append, 16
/// appends in flight. Returns events/s.
async fn fill(journal: &Journal, n: u64) -> f64 {
    let started = Instant::now();
    let per = 100u64;
    let mut inflight = tokio::task::JoinSet::new();
    for i in 0..n.div_ceil(per) {
        let j = journal.clone();
        let events = (0..per)
            .map(|k| {
                NewEvent::new(
                    "bench",
                    format!(r#"{{"order":{i},"line":{k},"sku":"sku-0000000000","qty":1,"note":"xxxxxxxxxxxxxxxxxxxxxxxx"}}"#),
                )
            })
            .collect();
        inflight.spawn(async move {
            j.append(&format!("orders-{}", i % 64), ExpectedVersion::Any, events)
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
    n as f64 / started.elapsed().as_secs_f64()
}

/// The transport ceiling: the same batch bodies POSTed by a bare loop.
async fn raw_post_rate(url: &str, journal: &Journal, n: u64) -> f64 {
    let client = reqwest::Client::new();
    let events = journal.read_all(1, 500).expect("read");
    let body = ironclad::delivery::sinks::http::batch_body(&events).expect("body");
    let batches = n / 500;
    let started = Instant::now();
    for _ in 0..batches {
        let r = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("post");
        assert!(r.status().is_success());
    }
    (batches * 500) as f64 / started.elapsed().as_secs_f64()
}

/// Polls the sink's `delivered_total` (one row read; `status()` would
/// count the whole backlog each time and compete with the engine).
async fn wait_delivered(engine: &DeliveryEngine<ironclad::store::sqlite::SqliteStore>, total: u64) {
    use ironclad::store::Store;
    loop {
        let sinks = engine.journal().store().sinks().expect("sinks");
        if sinks.iter().all(|s| s.delivered_total >= total) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn drain() {
    let n = env_u64("IRONCLAD_BENCH_EVENTS", 500_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let journal = Journal::open(JournalConfig::new(tmp.path().join("data"))).expect("open");
    let (url, counts) = start_receiver().await;
    let append_rate = fill(&journal, n).await;
    let raw = raw_post_rate(&url, &journal, n.min(100_000)).await;
    counts.events.store(0, Ordering::Relaxed);
    counts.requests.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let engine = DeliveryEngine::start(journal.clone(), config(&url))
        .await
        .expect("start");
    wait_delivered(&engine, n).await;
    let secs = started.elapsed().as_secs_f64();
    let rate = n as f64 / secs;
    let received = counts.events.load(Ordering::Relaxed);
    let requests = counts.requests.load(Ordering::Relaxed);
    engine.shutdown(Duration::from_secs(5)).await;
    journal
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
    println!("drain: {n} events backlog, batches of 500, fsync durability");
    println!("  engine delivery        {rate:>12.0} events/s  ({secs:.2} s, {requests} requests, {received} events received)");
    println!("  baseline: bare POST    {raw:>12.0} events/s  (same bodies, no store)");
    println!("  ratio engine/bare      {:>12.2}", rate / raw);
    println!("  in-process append      {append_rate:>12.0} events/s  (same run, 100-event appends, 16 in flight)");
}

async fn outage() {
    let n = env_u64("IRONCLAD_BENCH_OUTAGE_EVENTS", 1_000_000);
    let outage_s = env_u64("IRONCLAD_BENCH_OUTAGE_S", 60);
    let tmp = tempfile::tempdir().expect("tempdir");
    let journal =
        Journal::open(JournalConfig::new(tmp.path().join("data")).durability(Durability::Fsync))
            .expect("open");
    let (url, counts) = start_receiver().await;
    counts.down.store(true, Ordering::Relaxed);
    let engine = DeliveryEngine::start(journal.clone(), config(&url))
        .await
        .expect("start");
    let outage_started = Instant::now();
    let append_rate = fill(&journal, n).await;
    let rss_before = peak_rss_mib();
    let left = Duration::from_secs(outage_s).saturating_sub(outage_started.elapsed());
    tokio::time::sleep(left).await;
    let outage_requests = counts.requests.load(Ordering::Relaxed);
    let retrying: u64 = {
        use ironclad::store::Store;
        let store = engine.journal().store();
        store
            .sinks()
            .expect("sinks")
            .iter()
            .map(|s| store.retry_stats(s.sink_id).map_or(0, |r| r.rows))
            .sum()
    };
    counts.down.store(false, Ordering::Relaxed);
    let started = Instant::now();
    // When the first batch gets through: the wait for the breaker's open
    // window and the retries' backoff, apart from the drain itself.
    let first = {
        let c = Arc::clone(&counts);
        tokio::spawn(async move {
            while c.events.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            started.elapsed().as_secs_f64()
        })
    };
    wait_delivered(&engine, n).await;
    let secs = started.elapsed().as_secs_f64();
    let first_s = first.await.unwrap_or(0.0);
    let breaker = engine
        .breaker("bench")
        .map(|b| b.state().as_str().to_string());
    engine.shutdown(Duration::from_secs(5)).await;
    journal
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
    println!("outage: {n} events appended during a {outage_s} s outage (503s), then recovery");
    println!("  append rate during outage  {append_rate:>10.0} events/s");
    println!("  retry rows at recovery     {retrying:>10}");
    println!("  requests during outage     {outage_requests:>10} (successful; 503s not counted)");
    println!(
        "  first delivery after       {first_s:>10.2} s (breaker open window + retry backoff)"
    );
    println!(
        "  drain after recovery       {:>10.0} events/s  ({secs:.2} s from recovery)",
        n as f64 / secs
    );
    println!(
        "  drain once flowing         {:>10.0} events/s  ({:.2} s from first delivery)",
        n as f64 / (secs - first_s),
        secs - first_s
    );
    println!("  peak RSS before drain      {rss_before:>10.1} MiB");
    println!("  peak RSS overall           {:>10.1} MiB", peak_rss_mib());
    println!(
        "  breaker after drain        {:>10}",
        breaker.unwrap_or_default()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // useful either: run only under `cargo bench`.
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
        if only.is_empty() || only == "drain" {
            drain().await;
        }
        if only.is_empty() || only == "outage" {
            outage().await;
        }
    });
}
