//! The operations endpoints over real HTTP on loopback (SPEC §6
//! "Operations", §9): `/metrics` in Prometheus text format with the SPEC §9
//! metrics that exist (ingest after an append, delivery after a delivery,
//! the breaker state gauge, the DLQ, dumps, ledger), `/healthz`, `/readyz`
//! (503 once the journal is shut down), and `/openapi.json`: it parses,
//! documents the admin and ops paths, and — read from the route modules'
//! source, since axum cannot list a router's routes — documents every
//! route the router registers.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use ironclad::delivery::config::DeliveryConfig;
use ironclad::delivery::engine::DeliveryEngine;
use ironclad::emergency::{write_dump, DumpRecord};
use ironclad::store::sqlite::SqliteStore;
use ironclad::{Durability, ExpectedVersion, Journal, JournalConfig, NewEvent};
use ironclad_server::auth::{Auth, Role};
use ironclad_server::handlers::ops::install_metrics_recorder;
use ironclad_server::{AppState, ServerConfig};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::task::JoinHandle;

const ADMIN: &str = "admin-token-cccccccccccccccc";
const SECRET: &str = "0123456789abcdef0123456789abcdef";
const PATIENCE: Duration = Duration::from_secs(30);

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
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        task,
    }
}

impl Server {
    /// Status, content type and body text.
    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String, String) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, ctype, resp.text().await.expect("body"))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn temp() -> (TempDir, std::path::PathBuf) {
    install_metrics_recorder();
    let tmp = tempfile::Builder::new()
        .prefix("ironclad-ops-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path().join("data");
    (tmp, dir)
}

fn open(dir: &Path) -> Journal {
    Journal::open(JournalConfig::new(dir).durability(Durability::Os)).expect("open")
}

fn state(
    journal: &Journal,
    engine: Option<Arc<DeliveryEngine<SqliteStore>>>,
    auth: Auth,
) -> AppState {
    AppState {
        journal: journal.clone(),
        engine,
        config: Arc::new(ServerConfig::default()),
        auth: Arc::new(auth),
    }
}

/// A loopback webhook that refuses everything with 400 (permanent).
async fn refusing_receiver() -> (String, JoinHandle<()>) {
    let app = axum::Router::new().route("/hook", post(|| async { StatusCode::BAD_REQUEST }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), task)
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
[delivery.sinks.batch]
linger_ms = 0

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

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The metric names present in a Prometheus text exposition.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            n.trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_the_spec_metrics_that_exist() {
    let (tmp, dir) = temp();
    let journal = open(&dir);
    let (url, receiver) = refusing_receiver().await;
    let config = DeliveryConfig::from_toml_str(&delivery_toml(tmp.path(), &url)).expect("config");
    let engine = Arc::new(
        DeliveryEngine::start(journal.clone(), config)
            .await
            .expect("engine"),
    );
    let server = serve(state(
        &journal,
        Some(Arc::clone(&engine)),
        Auth::new([(ADMIN.to_string(), Role::Admin)]),
    ))
    .await;

    // Ingest: appends, and one refused append.
    for i in 0..3 {
        journal
            .append(
                "good-1",
                ExpectedVersion::Any,
                vec![NewEvent::new("created", format!("{{\"i\":{i}}}"))],
            )
            .await
            .expect("append");
    }
    let refused = journal
        .append("", ExpectedVersion::Any, vec![NewEvent::new("t", "{}")])
        .await;
    assert!(refused.is_err());
    journal
        .append(
            "bad-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("x", "{}")],
        )
        .await
        .expect("append");
    // Delivery to `good`, a dead letter on `bad`.
    eventually("delivery and a dead letter", || async {
        let statuses = engine.status().expect("status");
        let good = statuses.iter().find(|s| s.sink == "good");
        let bad = statuses.iter().find(|s| s.sink == "bad");
        good.is_some_and(|g| g.delivered_total == 3) && bad.is_some_and(|b| b.dlq_entries == 1)
    })
    .await;
    // Admin actions that count: retry, purge, circuit, ledger, dump replay.
    let (s, _) = server
        .post("/v1/admin/dlq/purge", json!({"sink": "bad"}))
        .await;
    assert_eq!(s, 200);
    let (s, _) = server
        .post("/v1/admin/dlq/retry", json!({"sink": "bad"}))
        .await;
    assert_eq!(s, 200);
    let (s, _) = server
        .post(
            "/v1/admin/sinks/bad/circuit",
            json!({"action": "force_open"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = server
        .post(
            "/v1/admin/ledger/verify",
            json!({"against": {"position": 1, "hash": "cd".repeat(32)}}),
        )
        .await;
    assert_eq!(s, 409);
    let ids = [uuid::Uuid::now_v7()];
    let record = DumpRecord::new(
        "dumped",
        ExpectedVersion::Any,
        &ids,
        &[NewEvent::new("d", "{}")],
    )
    .expect("record");
    let path = write_dump(&dir, &[record], 1).expect("dump");
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let (s, _) = server
        .post(&format!("/v1/admin/dumps/{name}/replay"), Value::Null)
        .await;
    assert_eq!(s, 200);

    let (status, ctype, text) = server.get("/metrics", Some(ADMIN)).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    let names = metric_names(&text);
    let expected = [
        // Ingest.
        "ironclad_ingest_queue_depth_events",
        "ironclad_ingest_queue_capacity_events",
        "ironclad_ingest_queue_depth_bytes",
        "ironclad_ingest_queue_capacity_bytes",
        "ironclad_ingest_rejected_total",
        "ironclad_ingest_appended_events_total",
        "ironclad_ingest_commit_batch_events",
        "ironclad_ingest_commit_latency_seconds",
        "ironclad_ingest_ack_latency_seconds",
        // Delivery, per sink.
        "ironclad_delivery_attempts_total",
        "ironclad_delivery_delivered_total",
        "ironclad_delivery_dropped_total",
        "ironclad_delivery_batch_events",
        "ironclad_delivery_latency_seconds",
        "ironclad_delivery_pending_events",
        // Circuit breaker.
        "ironclad_breaker_state",
        // DLQ.
        "ironclad_dlq_added_total",
        "ironclad_dlq_retried_total",
        "ironclad_dlq_purged_total",
        // Dumps, ledger.
        "ironclad_dump_replayed_events_total",
        "ironclad_ledger_verify_failures_total",
    ];
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|n| !names.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "missing from /metrics: {missing:?}\n{text}"
    );
    assert!(
        text.contains("ironclad_breaker_state{sink=\"good\"} 0"),
        "the breaker state gauge is labelled by sink:\n{text}"
    );
    assert!(text.contains("ironclad_ingest_rejected_total{reason=\"invalid\"}"));
    assert!(text.contains("ironclad_delivery_delivered_total{sink=\"good\"} 3"));
    assert!(text.contains("# HELP ironclad_ingest_appended_events_total"));
    // Histograms have buckets.
    assert!(text.contains("ironclad_ingest_commit_latency_seconds_bucket{"));

    // Admin only: other roles and no token are refused.
    assert_eq!(server.get("/metrics", None).await.0, 401);
    drop(server);
    engine.shutdown(Duration::from_secs(10)).await;
    let _ = journal.shutdown(Duration::from_secs(30)).await;
    receiver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz() {
    let (_tmp, dir) = temp();
    let journal = open(&dir);
    let server = serve(state(
        &journal,
        None,
        Auth::new([(ADMIN.to_string(), Role::Admin)]),
    ))
    .await;
    let (status, ctype, body) = server.get("/healthz", None).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).ok(),
        Some(json!({"status": "ok"}))
    );
    let (status, _, body) = server.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).ok(),
        Some(json!({"status": "ready"}))
    );

    journal
        .shutdown(Duration::from_secs(30))
        .await
        .expect("shutdown");
    let (status, _, body) = server.get("/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json error");
    assert_eq!(v["error"]["code"], "unavailable");
    // Still alive: liveness does not depend on the journal.
    assert_eq!(server.get("/healthz", None).await.0, 200);
}

/// The `(METHOD, path)` pairs the OpenAPI document holds.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            if let Some(ops) = item.as_object() {
                for method in ops.keys() {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    out
}

/// The `(METHOD, path)` pairs registered with `.route("…", get(…).post(…))`
/// in `src/handlers/**/*.rs`. axum cannot list a router's routes, so the
/// registrations are read from the source; a path that is not a string
/// literal is reported as such.
fn registered_routes() -> Vec<(String, String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/handlers");
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read src/handlers") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read route file");
        let short = file
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(&file)
            .display()
            .to_string();
        for (path, methods) in scan_routes(&text) {
            for m in methods {
                out.push((m, path.clone(), short.clone()));
            }
        }
    }
    out
}

/// `(path, methods)` of each `.route(` call in `text`.
fn scan_routes(text: &str) -> Vec<(String, Vec<String>)> {
    const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(".route(") {
        let start = from + i + ".route(".len();
        from = start;
        // The argument list, up to the matching parenthesis.
        let mut depth = 1;
        let mut j = start;
        let mut in_str = false;
        while j < bytes.len() && depth > 0 {
            match bytes[j] {
                b'"' if j == 0 || bytes[j - 1] != b'\\' => in_str = !in_str,
                b'(' if !in_str => depth += 1,
                b')' if !in_str => depth -= 1,
                _ => {}
            }
            j += 1;
        }
        let args = &text[start..j.saturating_sub(1)];
        let trimmed = args.trim_start();
        let path = if let Some(rest) = trimmed.strip_prefix('"') {
            rest.split('"').next().unwrap_or("").to_string()
        } else {
            format!(
                "<not a literal: {}>",
                trimmed.split(',').next().unwrap_or("")
            )
        };
        let mut methods = Vec::new();
        for m in METHODS {
            let pat = format!("{m}(");
            let mut k = 0;
            while let Some(p) = args[k..].find(&pat) {
                let at = k + p;
                let before = args[..at].chars().next_back();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    methods.push(m.to_uppercase());
                    break;
                }
                k = at + pat.len();
            }
        }
        if methods.is_empty() {
            methods.push("<unknown method>".to_string());
        }
        out.push((path, methods));
    }
    out
}

async fn openapi_doc(server: &Server) -> Value {
    let (status, ctype, body) = server.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    serde_json::from_str(&body).expect("openapi.json is JSON")
}

async fn doc_server() -> (TempDir, Journal, Server) {
    let (tmp, dir) = temp();
    let journal = open(&dir);
    let server = serve(state(
        &journal,
        None,
        Auth::new([(ADMIN.to_string(), Role::Admin)]),
    ))
    .await;
    (tmp, journal, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_the_admin_and_ops_paths() {
    let (_tmp, journal, server) = doc_server().await;
    let doc = openapi_doc(&server).await;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "Ironclad");
    let have = documented(&doc);
    let want = [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/v1/admin/dlq/stats"),
        ("GET", "/v1/admin/dlq"),
        ("GET", "/v1/admin/dlq/{sink}/{position}"),
        ("POST", "/v1/admin/dlq/retry"),
        ("POST", "/v1/admin/dlq/purge"),
        ("GET", "/v1/admin/sinks"),
        ("POST", "/v1/admin/sinks/{sink}/circuit"),
        ("GET", "/v1/admin/dumps"),
        ("POST", "/v1/admin/dumps/{name}/replay"),
        ("POST", "/v1/admin/ledger/verify"),
        ("GET", "/v1/admin/leases"),
    ];
    for (m, p) in want {
        assert!(
            have.contains(&(m.to_string(), p.to_string())),
            "{m} {p} not documented"
        );
    }
    // Schemas come from the code: the error envelope and its codes, the
    // request and response types, the bearer scheme.
    let schemas = &doc["components"]["schemas"];
    let codes = schemas["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum");
    for code in [
        "not_found",
        "invalid_request",
        "invalid_json",
        "ledger_mismatch",
        "unauthorized",
        "forbidden",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} missing from ErrorCode"
        );
    }
    for schema in [
        "ErrorEnvelope",
        "DlqSelector",
        "DlqPage",
        "DlqEntryBody",
        "SinksResponse",
        "CircuitRequest",
        "VerifyResponse",
        "LeasesResponse",
        "ReplayResponse",
    ] {
        assert!(schemas[schema].is_object(), "schema {schema} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(
        doc["paths"]["/v1/admin/leases"]["get"]["security"].is_array(),
        "admin paths declare the bearer requirement"
    );
    assert!(doc["paths"]["/healthz"]["get"]["security"].is_null());
    // The list query's parameters are documented.
    let params = doc["paths"]["/v1/admin/dlq"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let names: BTreeSet<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
    for n in [
        "sink",
        "reason",
        "stream",
        "failed_before_ms",
        "limit",
        "after",
    ] {
        assert!(names.contains(n), "query parameter {n}");
    }
    drop(server);
    let _ = journal.shutdown(Duration::from_secs(30)).await;
}

/// Routes registered by `file`s matching `only` and missing from the
/// document, and documented paths the router does not serve.
async fn coverage(server: &Server, doc: &Value, only: &dyn Fn(&str) -> bool) -> Vec<String> {
    let have = documented(doc);
    let mut problems = Vec::new();
    let routes = registered_routes();
    assert!(!routes.is_empty(), "the scanner found no routes");
    for (method, path, file) in &routes {
        if only(file) && !have.contains(&(method.clone(), path.clone())) {
            problems.push(format!(
                "{method} {path} ({file}) is routed but not in /openapi.json"
            ));
        }
    }
    // The other way: each documented path is served (a route's 404 has a
    // JSON error body; axum's fallback 404 is empty; 405 = wrong method).
    for (method, path) in &have {
        let routed_by_scanned = routes
            .iter()
            .any(|(m, p, f)| m == method && p == path && only(f));
        if !routed_by_scanned {
            continue;
        }
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let req = match method.as_str() {
            "GET" => server.client.get(format!("{}{concrete}", server.base)),
            "POST" => server.client.post(format!("{}{concrete}", server.base)),
            _ => continue,
        };
        let Ok(Ok(resp)) =
            tokio::time::timeout(Duration::from_secs(2), req.bearer_auth(ADMIN).send()).await
        else {
            continue; // A long-poll or upgrade that waits: it is routed.
        };
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        if status == 405 || (status == 404 && body.is_empty()) {
            problems.push(format!(
                "{method} {path} is documented but not routed ({status})"
            ));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_and_ops_route_is_documented() {
    let (_tmp, journal, server) = doc_server().await;
    let doc = openapi_doc(&server).await;
    let mine = |f: &str| f.contains("handlers/admin") || f.ends_with("handlers/ops.rs");
    let problems = coverage(&server, &doc, &mine).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    drop(server);
    let _ = journal.shutdown(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented() {
    let (_tmp, journal, server) = doc_server().await;
    let doc = openapi_doc(&server).await;
    let problems = coverage(&server, &doc, &|_| true).await;
    assert!(
        problems.is_empty(),
        "routes missing from /openapi.json:\n{}",
        problems.join("\n")
    );
    drop(server);
    let _ = journal.shutdown(Duration::from_secs(30)).await;
}
