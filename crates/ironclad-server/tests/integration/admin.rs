//! The admin API over real HTTP on loopback (SPEC §6 "Admin"): the router
//! served by `axum::serve` on 127.0.0.1:0, over a real SQLite journal in a
//! temp dir and, where sinks matter, a real delivery engine with a JSONL
//! sink (`good`) and an HTTP sink (`bad`) pointed at a loopback receiver
//! that answers 400 (permanent: straight to the DLQ) until told otherwise.
//!
//! Covers every admin endpoint's happy path and its errors (codes and
//! statuses), and the auth matrix: each admin endpoint and `/metrics` ×
//! {no token, bad token, producer, consumer, admin} → 401/401/403/403/2xx,
//! and everything allowed with authentication off.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use ironclad::delivery::config::DeliveryConfig;
use ironclad::delivery::dlq;
use ironclad::delivery::engine::DeliveryEngine;
use ironclad::emergency::{write_dump, DumpRecord};
use ironclad::store::delivery::{DlqFilter, DlqReason};
use ironclad::store::sqlite::SqliteStore;
use ironclad::{Durability, ExpectedVersion, Journal, JournalConfig, NewEvent};
use ironclad_server::auth::{Auth, Role};
use ironclad_server::handlers::ops::install_metrics_recorder;
use ironclad_server::{AppState, ServerConfig};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::task::JoinHandle;

const PRODUCER: &str = "producer-token-aaaaaaaaaaaa";
const CONSUMER: &str = "consumer-token-bbbbbbbbbbbb";
const ADMIN: &str = "admin-token-cccccccccccccccc";
const SECRET: &str = "0123456789abcdef0123456789abcdef";
const PATIENCE: Duration = Duration::from_secs(30);

/// A loopback webhook receiver: 400 while `fail` is set, 200 otherwise.
struct Receiver {
    url: String,
    fail: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receiver() -> Receiver {
    let fail = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&fail);
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            let flag = Arc::clone(&flag);
            async move {
                if flag.load(Ordering::SeqCst) {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("receiver addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        url: format!("http://{addr}/hook"),
        fail,
        task,
    }
}

/// A journal in a temp dir, optionally a delivery engine over it.
struct Env {
    _tmp: TempDir,
    dir: PathBuf,
    journal: Journal,
    engine: Option<Arc<DeliveryEngine<SqliteStore>>>,
    receiver: Option<Receiver>,
}

impl Env {
    async fn new(with_engine: bool) -> Env {
        install_metrics_recorder();
        let tmp = tempfile::Builder::new()
            .prefix("ironclad-admin-")
            .tempdir()
            .expect("temp dir");
        let dir = tmp.path().join("data");
        let journal =
            Journal::open(JournalConfig::new(&dir).durability(Durability::Os)).expect("open");
        let (engine, receiver) = if with_engine {
            let r = receiver().await;
            let config = DeliveryConfig::from_toml_str(&delivery_toml(tmp.path(), &r.url))
                .expect("delivery config");
            let engine = DeliveryEngine::start(journal.clone(), config)
                .await
                .expect("engine starts");
            (Some(Arc::new(engine)), Some(r))
        } else {
            (None, None)
        };
        Env {
            _tmp: tmp,
            dir,
            journal,
            engine,
            receiver,
        }
    }

    fn state(&self, auth: Auth) -> AppState {
        AppState {
            journal: self.journal.clone(),
            engine: self.engine.clone(),
            config: Arc::new(ServerConfig::default()),
            auth: Arc::new(auth),
        }
    }

    async fn append(&self, stream: &str, n: usize) {
        for i in 0..n {
            self.journal
                .append(
                    stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new("created", format!("{{\"i\":{i}}}"))],
                )
                .await
                .expect("append");
        }
    }

    fn set_receiver_failing(&self, fail: bool) {
        if let Some(r) = &self.receiver {
            r.fail.store(fail, Ordering::SeqCst);
        }
    }

    async fn close(self) {
        if let Some(engine) = &self.engine {
            engine.shutdown(Duration::from_secs(10)).await;
        }
        let _ = self.journal.shutdown(Duration::from_secs(30)).await;
    }
}

fn delivery_toml(base: &Path, url: &str) -> String {
    format!(
        r#"[[delivery.sinks]]
name = "good"
kind = "jsonl"
path = "{good}"
[delivery.sinks.batch]
linger_ms = 0

[[delivery.sinks]]
name = "bad"
kind = "http"
url = "{url}"
secret = "{SECRET}"
request_timeout_ms = 5000
[delivery.sinks.batch]
linger_ms = 0
events_max = 1
[delivery.sinks.retry]
delay_ms_base = 5
delay_ms_max = 50
attempts_max = 1000
elapsed_ms_max = 60000
retry_after_ms_cap = 2000
[delivery.sinks.breaker]
window = {{ kind = "count", calls = 100 }}
minimum_calls = 100
failure_rate_threshold_pct = 100
consecutive_failures_threshold = 0
open_ms_base = 100
open_ms_max = 500
half_open_permits = 1

[[delivery.routes]]
streams = "good-*"
sink = "good"
[[delivery.routes]]
streams = "bad-*"
sink = "bad"
"#,
        good = base.join("good.jsonl").display()
    )
}

fn tokens() -> Auth {
    Auth::new([
        (PRODUCER.to_string(), Role::Producer),
        (CONSUMER.to_string(), Role::Consumer),
        (ADMIN.to_string(), Role::Admin),
    ])
}

/// The router served on an ephemeral loopback port.
struct Server {
    base: String,
    client: reqwest::Client,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(state: AppState) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = ironclad_server::handlers::router(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        task,
    }
}

/// A response: status and body (JSON, or the text as a JSON string).
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    /// Asserts an error answer: status, code, and the envelope's shape.
    #[track_caller]
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.code(), code, "{:?}", self.body);
        assert!(self.body["error"]["message"].is_string(), "{:?}", self.body);
        assert!(self.body["error"]["details"].is_object(), "{:?}", self.body);
    }

    #[track_caller]
    fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, 200, "{:?}", self.body);
        &self.body
    }
}

/// What a request sends.
enum Body {
    None,
    Json(Value),
    Raw(&'static str),
}

impl Server {
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Body) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.client.get(&url),
            "POST" => self.client.post(&url),
            other => panic!("method {other}"),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(s) => req
                .header("content-type", "application/json")
                .body(s.to_string()),
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, Some(ADMIN), Body::None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(ADMIN), Body::Json(body)).await
    }
}

/// Polls `f` until it returns `Some`, or fails after [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn sink_stats<'a>(stats: &'a Value, sink: &str) -> Option<&'a Value> {
    stats["sinks"]
        .as_array()?
        .iter()
        .find(|s| s["sink"] == sink)
}

async fn dlq_entries(server: &Server, sink: &str) -> u64 {
    let stats = server.get("/v1/admin/dlq/stats").await;
    sink_stats(stats.assert_ok(), sink)
        .and_then(|s| s["entries"].as_u64())
        .unwrap_or(0)
}

async fn wait_dlq(server: &Server, sink: &str, n: u64) {
    eventually(&format!("{n} dead letters on {sink}"), || async {
        (dlq_entries(server, sink).await == n).then_some(())
    })
    .await;
}

/// A dump of one append of `n` events to `stream` with `expected`.
fn dump(dir: &Path, stream: &str, expected: ExpectedVersion, n: usize) -> String {
    let events: Vec<NewEvent> = (0..n)
        .map(|i| NewEvent::new("dumped", format!("{{\"d\":{i}}}")))
        .collect();
    let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::now_v7()).collect();
    let record = DumpRecord::new(stream, expected, &ids, &events).expect("record");
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let path = write_dump(dir, &[record], now_us).expect("write dump");
    path.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_show_retry_purge_on_a_running_engine() {
    let env = Env::new(true).await;
    let server = serve(env.state(Auth::default())).await;
    env.append("bad-1", 3).await;
    env.append("good-1", 2).await;
    wait_dlq(&server, "bad", 3).await;

    // Stats: per sink, by reason.
    let stats = server.get("/v1/admin/dlq/stats").await;
    let bad = sink_stats(stats.assert_ok(), "bad")
        .expect("bad listed")
        .clone();
    assert_eq!(bad["by_reason"]["permanent"], 3, "{bad}");
    assert!(bad["oldest_failure_unix_ms"].as_u64().is_some());
    assert_eq!(bad["archived_total"], 0);
    assert_eq!(
        sink_stats(&stats.body, "good").expect("good listed")["entries"],
        0
    );

    // List: pages and their cursor.
    let page1 = server.get("/v1/admin/dlq?sink=bad&limit=2").await;
    let p1 = page1.assert_ok();
    assert_eq!(p1["entries"].as_array().map(Vec::len), Some(2), "{p1}");
    let next = p1["next"]
        .as_str()
        .expect("a full page has a next")
        .to_string();
    let page2 = server
        .get(&format!("/v1/admin/dlq?sink=bad&limit=2&after={next}"))
        .await;
    let p2 = page2.assert_ok();
    assert_eq!(p2["entries"].as_array().map(Vec::len), Some(1), "{p2}");
    assert!(p2["next"].is_null());
    let first = &p1["entries"][0];
    assert_eq!(first["sink"], "bad");
    assert_eq!(first["reason"], "permanent");
    assert_eq!(first["event"]["stream"], "bad-1");
    assert!(first["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("400")));
    let positions: Vec<u64> = p1["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(p2["entries"].as_array().into_iter().flatten())
        .filter_map(|e| e["position"].as_u64())
        .collect();
    assert_eq!(positions.len(), 3);
    let all = server
        .get("/v1/admin/dlq?reason=permanent&stream=bad-1")
        .await;
    assert_eq!(all.assert_ok()["entries"].as_array().map(Vec::len), Some(3));
    let none = server.get("/v1/admin/dlq?failed_before_ms=1").await;
    assert_eq!(
        none.assert_ok()["entries"].as_array().map(Vec::len),
        Some(0)
    );

    // List errors.
    for bad_query in [
        "reason=bogus",
        "limit=0",
        "limit=1001",
        "limit=many",
        "after=garbage",
        "after=1:x",
        "failed_before_ms=-3",
    ] {
        server
            .get(&format!("/v1/admin/dlq?{bad_query}"))
            .await
            .assert_error(400, "invalid_request");
    }
    server
        .get("/v1/admin/dlq?sink=nope")
        .await
        .assert_error(404, "not_found");

    // Show.
    let p = positions[0];
    let one = server.get(&format!("/v1/admin/dlq/bad/{p}")).await;
    let e = one.assert_ok();
    assert_eq!(e["position"], p);
    assert_eq!(e["event"]["position"], p);
    assert!(e["event_id"].as_str().is_some_and(|s| s.len() == 36));
    server
        .get("/v1/admin/dlq/bad/999999")
        .await
        .assert_error(404, "not_found");
    server
        .get(&format!("/v1/admin/dlq/nope/{p}"))
        .await
        .assert_error(404, "not_found");
    server
        .get("/v1/admin/dlq/bad/not-a-number")
        .await
        .assert_error(400, "invalid_request");

    // Retry and purge refuse empty, contradictory and misspelt selectors.
    for path in ["/v1/admin/dlq/retry", "/v1/admin/dlq/purge"] {
        let empty = server.post(path, json!({})).await;
        empty.assert_error(400, "invalid_request");
        assert_eq!(empty.body["error"]["details"]["reason"], "empty_selector");
        server
            .call("POST", path, Some(ADMIN), Body::None)
            .await
            .assert_error(400, "invalid_json");
        server
            .call("POST", path, Some(ADMIN), Body::Raw("{not json"))
            .await
            .assert_error(400, "invalid_json");
        server
            .post(path, json!({"sinkk": "bad"}))
            .await
            .assert_error(400, "invalid_request");
        server
            .post(path, json!({"reason": "bogus"}))
            .await
            .assert_error(400, "invalid_request");
        server
            .post(path, json!({"all": true, "sink": "bad"}))
            .await
            .assert_error(400, "invalid_request");
        server
            .post(path, json!({"position": p}))
            .await
            .assert_error(400, "invalid_request");
        server
            .post(
                path,
                json!({"sink": "bad", "position": p, "stream": "bad-1"}),
            )
            .await
            .assert_error(400, "invalid_request");
        server
            .post(path, json!({"sink": "bad", "position": 999_999}))
            .await
            .assert_error(404, "not_found");
        server
            .post(path, json!({"sink": "nope"}))
            .await
            .assert_error(404, "not_found");
        // Oversized bodies are refused before parsing.
        let huge = json!({ "stream": "x".repeat(100 * 1024) });
        server
            .post(path, huge)
            .await
            .assert_error(413, "body_too_large");
        // A valid selector matching nothing moves nothing.
        let zero = server.post(path, json!({"sink": "good"})).await;
        let key = if path.ends_with("retry") {
            "retried"
        } else {
            "purged"
        };
        assert_eq!(zero.assert_ok()[key], 0);
    }

    // Retry one entry on the running engine: the receiver now accepts, and
    // the engine redelivers it without a restart.
    env.set_receiver_failing(false);
    let retried = server
        .post("/v1/admin/dlq/retry", json!({"sink": "bad", "position": p}))
        .await;
    let r = retried.assert_ok();
    assert_eq!(r["retried"], 1);
    assert_eq!(r["engine_reloaded"], true);
    eventually("the retried entry to be delivered", || async {
        let sinks = server.get("/v1/admin/sinks").await;
        let bad = sink_stats(sinks.assert_ok(), "bad")?.clone();
        (bad["delivered_total"] == 1 && bad["dlq_entries"] == 2).then_some(())
    })
    .await;
    server
        .get(&format!("/v1/admin/dlq/bad/{p}"))
        .await
        .assert_error(404, "not_found");

    // Purge the rest: archived first, then removed.
    let purged = server
        .post(
            "/v1/admin/dlq/purge",
            json!({"sink": "bad", "reason": "permanent"}),
        )
        .await;
    let pr = purged.assert_ok();
    assert_eq!(pr["purged"], 2, "{pr}");
    let files = pr["files"].as_array().expect("files");
    assert!(!files.is_empty(), "{pr}");
    for f in files {
        assert!(
            Path::new(f.as_str().expect("path")).exists(),
            "archive {f} exists"
        );
    }
    assert!(pr["archive_dir"]
        .as_str()
        .is_some_and(|d| d.starts_with(&*env.dir.to_string_lossy())));
    let stats = server.get("/v1/admin/dlq/stats").await;
    let bad = sink_stats(stats.assert_ok(), "bad").expect("bad");
    assert_eq!(bad["entries"], 0);
    assert_eq!(bad["archived_total"], 2);

    // {"all": true} is accepted (and finds nothing left).
    env.set_receiver_failing(true);
    env.append("bad-2", 1).await;
    wait_dlq(&server, "bad", 1).await;
    let all = server
        .post("/v1/admin/dlq/purge", json!({"all": true}))
        .await;
    assert_eq!(all.assert_ok()["purged"], 1);
    drop(server);
    env.close().await;
}

/// What the library's export writes for these filters, locally.
fn library_export(env: &Env, sink: Option<&str>, filter: DlqFilter) -> Vec<u8> {
    let f = dlq::filter_for(&env.journal, sink, filter).expect("filter");
    let mut out = Vec::new();
    dlq::export(&env.journal, &f, &mut out).expect("export");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_export_answers_the_library_export_for_admins_only() {
    let env = Env::new(true).await;
    let server = serve(env.state(tokens())).await;
    env.append("bad-1", 3).await;
    env.append("bad-2", 2).await;
    env.append("good-1", 2).await;
    wait_dlq(&server, "bad", 5).await;

    let export = |query: &'static str, token: Option<&'static str>| {
        let server = &server;
        async move {
            let mut req = server
                .client
                .get(format!("{}/v1/admin/dlq/export{query}", server.base));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = resp.bytes().await.expect("body").to_vec();
            (status, content_type, body)
        }
    };

    // Everything, byte for byte what the library writes, as JSON lines.
    let (status, content_type, body) = export("", Some(ADMIN)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "application/x-ndjson");
    assert_eq!(body, library_export(&env, None, DlqFilter::default()));
    let lines: Vec<Value> = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 5);
    assert!(body.ends_with(b"\n"));
    assert!(lines.iter().all(|e| e["sink"] == "bad"
        && e["reason"] == "permanent"
        && e["event"]["stream"]
            .as_str()
            .is_some_and(|s| s.starts_with("bad-"))));

    // Filters: the list's, narrowing the same way.
    let (status, _, body) = export("?sink=bad&reason=permanent&stream=bad-2", Some(ADMIN)).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        library_export(
            &env,
            Some("bad"),
            DlqFilter {
                reason: Some(DlqReason::Permanent),
                stream: Some("bad-2".into()),
                ..DlqFilter::default()
            }
        )
    );
    assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 2);
    for empty in ["?sink=good", "?failed_before_ms=1", "?stream=nope"] {
        let (status, content_type, body) = export(empty, Some(ADMIN)).await;
        assert_eq!(status, 200, "{empty}");
        assert_eq!(content_type, "application/x-ndjson");
        assert!(
            body.is_empty(),
            "{empty}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    // Errors: bad filters, an unknown sink, and paging or misspelt
    // parameters (which would otherwise widen the export).
    for bad_query in [
        "reason=bogus",
        "failed_before_ms=-3",
        "limit=10",
        "after=1:2",
        "snk=bad",
    ] {
        server
            .get(&format!("/v1/admin/dlq/export?{bad_query}"))
            .await
            .assert_error(400, "invalid_request");
    }
    server
        .get("/v1/admin/dlq/export?sink=nope")
        .await
        .assert_error(404, "not_found");

    // Admin only.
    for (token, status, code) in [
        (None, 401, "unauthorized"),
        (Some("not-a-token"), 401, "unauthorized"),
        (Some(PRODUCER), 403, "forbidden"),
        (Some(CONSUMER), 403, "forbidden"),
    ] {
        server
            .call("GET", "/v1/admin/dlq/export", token, Body::None)
            .await
            .assert_error(status, code);
    }
    drop(server);
    env.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_and_circuits() {
    let env = Env::new(true).await;
    let server = serve(env.state(Auth::default())).await;
    env.append("good-1", 2).await;
    let sinks = eventually("good delivers", || async {
        let a = server.get("/v1/admin/sinks").await;
        let good = sink_stats(a.assert_ok(), "good")?;
        (good["delivered_total"] == 2).then(|| a.body.clone())
    })
    .await;
    let good = sink_stats(&sinks, "good").expect("good");
    assert_eq!(good["circuit"], "closed");
    assert_eq!(good["pending"], 0);
    assert!(good["cursor_position"].as_u64().is_some_and(|c| c >= 2));
    assert!(sink_stats(&sinks, "bad").is_some());

    for (action, state, code) in [
        ("force_open", "forced_open", 3),
        ("close", "closed", 0),
        ("disable", "disabled", 4),
        ("reset", "closed", 0),
        ("force_open", "forced_open", 3),
    ] {
        let a = server
            .post("/v1/admin/sinks/bad/circuit", json!({ "action": action }))
            .await;
        let body = a.assert_ok();
        assert_eq!(body["sink"], "bad");
        assert_eq!(body["state"], state, "{action}");
        assert_eq!(body["state_code"], code, "{action}");
        let listed = server.get("/v1/admin/sinks").await;
        assert_eq!(
            sink_stats(listed.assert_ok(), "bad").expect("bad")["circuit"],
            state,
            "the listing shows the live circuit after {action}"
        );
    }
    // A forced-open circuit holds events back: nothing reaches the DLQ.
    env.append("bad-1", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dlq_entries(&server, "bad").await, 0);
    server
        .post("/v1/admin/sinks/bad/circuit", json!({"action": "close"}))
        .await
        .assert_ok();
    wait_dlq(&server, "bad", 1).await;

    // Errors.
    server
        .post("/v1/admin/sinks/nope/circuit", json!({"action": "close"}))
        .await
        .assert_error(404, "not_found");
    server
        .post("/v1/admin/sinks/bad/circuit", json!({"action": "explode"}))
        .await
        .assert_error(400, "invalid_request");
    server
        .post(
            "/v1/admin/sinks/bad/circuit",
            json!({"action": "close", "extra": 1}),
        )
        .await
        .assert_error(400, "invalid_request");
    server
        .call(
            "POST",
            "/v1/admin/sinks/bad/circuit",
            Some(ADMIN),
            Body::None,
        )
        .await
        .assert_error(400, "invalid_json");
    server
        .call(
            "POST",
            "/v1/admin/sinks/bad/circuit",
            Some(ADMIN),
            Body::Raw("null"),
        )
        .await
        .assert_error(400, "invalid_request");
    drop(server);
    env.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_engine_sinks_are_not_found_and_the_dlq_still_works() {
    let env = Env::new(false).await;
    let server = serve(env.state(Auth::default())).await;
    let a = server.get("/v1/admin/sinks").await;
    a.assert_error(404, "not_found");
    assert_eq!(a.body["error"]["details"]["resource"], "delivery_engine");
    server
        .post("/v1/admin/sinks/any/circuit", json!({"action": "close"}))
        .await
        .assert_error(404, "not_found");
    let stats = server.get("/v1/admin/dlq/stats").await;
    assert_eq!(stats.assert_ok()["sinks"], json!([]));
    let list = server.get("/v1/admin/dlq").await;
    assert_eq!(list.assert_ok()["entries"], json!([]));
    let retry = server
        .post("/v1/admin/dlq/retry", json!({"all": true}))
        .await;
    assert_eq!(retry.assert_ok()["retried"], 0);
    assert_eq!(retry.body["engine_reloaded"], false);
    server
        .get("/v1/admin/dlq/any/1")
        .await
        .assert_error(404, "not_found");
    drop(server);
    env.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dumps_list_and_replay() {
    let env = Env::new(false).await;
    let server = serve(env.state(Auth::default())).await;
    assert_eq!(
        server.get("/v1/admin/dumps").await.assert_ok()["dumps"],
        json!([])
    );
    let name = dump(&env.dir, "dumped-1", ExpectedVersion::Any, 3);
    let listed = server.get("/v1/admin/dumps").await;
    let dumps = listed.assert_ok()["dumps"]
        .as_array()
        .expect("dumps")
        .clone();
    assert_eq!(dumps.len(), 1);
    assert_eq!(listed.body["truncated"], false);
    assert_eq!(dumps[0]["name"], name.as_str());
    assert!(dumps[0]["bytes"].as_u64().is_some_and(|b| b > 0));

    let replayed = server
        .post(&format!("/v1/admin/dumps/{name}/replay"), json!(null))
        .await;
    let r = replayed.assert_ok();
    assert_eq!(r["records"], 1);
    assert_eq!(r["appended_events"], 3);
    assert_eq!(r["already_appended_events"], 0);
    assert!(r["archived_to"]
        .as_str()
        .is_some_and(|p| p.contains("archive")));
    let head = env.journal.stream_head("dumped-1").expect("head");
    assert_eq!(head.map(|h| h.version), Some(3));
    assert_eq!(
        server.get("/v1/admin/dumps").await.assert_ok()["dumps"],
        json!([])
    );
    // Gone once replayed; never outside the dump directory.
    for bad in [
        name.as_str(),
        "nope.jsonl",
        "..%2F..%2Fironclad.db",
        "%2Fetc%2Fpasswd",
    ] {
        server
            .call(
                "POST",
                &format!("/v1/admin/dumps/{bad}/replay"),
                Some(ADMIN),
                Body::None,
            )
            .await
            .assert_error(404, "not_found");
    }

    // A record that cannot be appended: the append's own code, the dump
    // stays for a later replay.
    let stale = dump(&env.dir, "dumped-1", ExpectedVersion::Exact(1), 1);
    let a = server
        .post(&format!("/v1/admin/dumps/{stale}/replay"), json!(null))
        .await;
    a.assert_error(409, "wrong_expected_version");
    assert_eq!(a.body["error"]["details"]["record"], 1);
    assert_eq!(
        server.get("/v1/admin/dumps").await.assert_ok()["dumps"][0]["name"],
        stale.as_str()
    );

    // A damaged dump names its line.
    let damaged = "dump-00000000000000000001-1-damaged.jsonl";
    std::fs::write(env.dir.join("emergency").join(damaged), "{not a record}\n")
        .expect("write damaged dump");
    let a = server
        .post(&format!("/v1/admin/dumps/{damaged}/replay"), json!(null))
        .await;
    a.assert_error(400, "invalid_request");
    assert_eq!(a.body["error"]["details"]["line"], 1);
    drop(server);
    env.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_verify_and_leases() {
    let env = Env::new(false).await;
    let server = serve(env.state(Auth::default())).await;
    let empty = server
        .call("POST", "/v1/admin/ledger/verify", Some(ADMIN), Body::None)
        .await;
    assert_eq!(empty.assert_ok()["checked"], 0);
    assert!(empty.body["head"].is_null());

    env.append("ledger-a", 3).await;
    env.append("ledger-b", 2).await;
    let all = server.post("/v1/admin/ledger/verify", json!({})).await;
    let v = all.assert_ok();
    assert_eq!(v["ok"], true);
    assert_eq!(v["checked"], 5);
    assert_eq!(v["head"]["position"], 5);
    let head = v["head"].clone();
    assert!(head["hash"].as_str().is_some_and(|h| h.len() == 64));

    let one = server
        .post("/v1/admin/ledger/verify", json!({"stream": "ledger-a"}))
        .await;
    assert_eq!(one.assert_ok()["checked"], 3);
    let against = server
        .post("/v1/admin/ledger/verify", json!({ "against": head }))
        .await;
    assert_eq!(against.assert_ok()["checked"], 5);

    // A head that was never in this log: 409 with the first mismatch.
    let forged = json!({ "against": { "position": 3, "hash": "ab".repeat(32) } });
    let a = server.post("/v1/admin/ledger/verify", forged).await;
    a.assert_error(409, "ledger_mismatch");
    assert_eq!(a.body["error"]["details"]["kind"], "head_mismatch");
    assert_eq!(a.body["error"]["details"]["position"], 3);
    let missing = json!({ "against": { "position": 99, "hash": "ab".repeat(32) } });
    let a = server.post("/v1/admin/ledger/verify", missing).await;
    a.assert_error(409, "ledger_mismatch");
    assert_eq!(a.body["error"]["details"]["kind"], "head_missing");

    // Errors.
    server
        .post(
            "/v1/admin/ledger/verify",
            json!({"stream": "ledger-a", "against": head}),
        )
        .await
        .assert_error(400, "invalid_request");
    server
        .post("/v1/admin/ledger/verify", json!({"stream": ""}))
        .await
        .assert_error(400, "invalid_request");
    server
        .post("/v1/admin/ledger/verify", json!({"streem": "ledger-a"}))
        .await
        .assert_error(400, "invalid_request");
    server
        .post(
            "/v1/admin/ledger/verify",
            json!({"against": {"position": 1, "hash": "xyz"}}),
        )
        .await
        .assert_error(400, "invalid_request");

    // Leases: single-node mode holds none, and says so.
    let leases = server.get("/v1/admin/leases").await;
    assert_eq!(
        leases.assert_ok(),
        &json!({"mode": "single-node", "leases": []})
    );
    drop(server);
    env.close().await;
}

/// Every admin endpoint and `/metrics`, with a request that succeeds for an
/// admin. `{P}` is replaced by a dead letter's position, `{DUMP}` by a
/// fresh dump's name.
const PROTECTED: &[(&str, &str, &str)] = &[
    ("GET", "/v1/admin/dlq/stats", ""),
    ("GET", "/v1/admin/dlq?sink=bad&limit=10", ""),
    ("GET", "/v1/admin/dlq/export?sink=bad", ""),
    ("GET", "/v1/admin/dlq/bad/{P}", ""),
    ("POST", "/v1/admin/dlq/retry", r#"{"sink":"good"}"#),
    ("POST", "/v1/admin/dlq/purge", r#"{"sink":"good"}"#),
    ("GET", "/v1/admin/sinks", ""),
    (
        "POST",
        "/v1/admin/sinks/good/circuit",
        r#"{"action":"reset"}"#,
    ),
    ("GET", "/v1/admin/dumps", ""),
    ("POST", "/v1/admin/dumps/{DUMP}/replay", ""),
    ("POST", "/v1/admin/ledger/verify", ""),
    ("GET", "/v1/admin/leases", ""),
    ("GET", "/metrics", ""),
];

/// Endpoints that need no token: every caller gets 200.
const OPEN: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
];

async fn call_endpoint(
    server: &Server,
    env: &Env,
    (method, path, body): (&str, &str, &str),
    position: u64,
    token: Option<&str>,
) -> Answer {
    let mut path = path.replace("{P}", &position.to_string());
    if path.contains("{DUMP}") {
        // A fresh dump per call, so an admin call can replay it.
        let name = dump(&env.dir, "matrix", ExpectedVersion::Any, 1);
        path = path.replace("{DUMP}", &name);
    }
    let body = if body.is_empty() {
        Body::None
    } else {
        Body::Json(serde_json::from_str(body).expect("test body"))
    };
    server.call(method, &path, token, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix_of_admin_and_ops_endpoints() {
    let env = Env::new(true).await;
    let secured = serve(env.state(tokens())).await;
    let open = serve(env.state(Auth::default())).await;
    env.append("bad-1", 1).await;
    env.append("good-1", 1).await;
    wait_dlq(&secured, "bad", 1).await;
    let position = secured.get("/v1/admin/dlq?sink=bad").await.assert_ok()["entries"][0]
        ["position"]
        .as_u64()
        .expect("position");

    let cases: [(&str, Option<&str>, u16); 5] = [
        ("no token", None, 401),
        ("bad token", Some("not-a-token"), 401),
        ("producer", Some(PRODUCER), 403),
        ("consumer", Some(CONSUMER), 403),
        ("admin", Some(ADMIN), 200),
    ];
    let mut failures = Vec::new();
    for &endpoint in PROTECTED {
        for (who, token, want) in cases {
            let a = call_endpoint(&secured, &env, endpoint, position, token).await;
            if a.status != want {
                failures.push(format!(
                    "{} {} as {who}: {} (want {want}): {:?}",
                    endpoint.0, endpoint.1, a.status, a.body
                ));
            }
            match want {
                401 if a.status == 401 => a.assert_error(401, "unauthorized"),
                403 if a.status == 403 => a.assert_error(403, "forbidden"),
                _ => {}
            }
        }
        // Authentication off: everything is allowed, token or not.
        for token in [None, Some("anything")] {
            let a = call_endpoint(&open, &env, endpoint, position, token).await;
            if a.status != 200 {
                failures.push(format!(
                    "{} {} without auth ({token:?}): {}: {:?}",
                    endpoint.0, endpoint.1, a.status, a.body
                ));
            }
        }
    }
    for &(method, path) in OPEN {
        for (who, token, _) in cases {
            for server in [&secured, &open] {
                let a = server.call(method, path, token, Body::None).await;
                if a.status != 200 {
                    failures.push(format!("{method} {path} as {who}: {}", a.status));
                }
            }
        }
    }
    // A malformed Authorization header is a 401 too.
    let a = secured
        .client
        .get(format!("{}/v1/admin/leases", secured.base))
        .header("authorization", format!("Basic {ADMIN}"))
        .send()
        .await
        .expect("request");
    assert_eq!(a.status().as_u16(), 401);
    assert!(failures.is_empty(), "auth matrix:\n{}", failures.join("\n"));
    drop(secured);
    drop(open);
    env.close().await;
}
