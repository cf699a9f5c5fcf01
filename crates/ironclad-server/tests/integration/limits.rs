//! Handler-level tests of the request limits (SPEC §6): each answers its
//! status and stable error code. The connection-level limits (header
//! timeout, connections) need sockets and are tested against a real server
//! process in `crates/ironclad-cli/tests/serve_limits.rs`.

use crate::ingest_support;

use axum::http::{Method, StatusCode};
use ingest_support::{app_with, event};
use serde_json::json;

#[tokio::test]
async fn a_body_over_the_limit_is_413_body_too_large() {
    let t = app_with(|c| c.limits.body_bytes_max = 2048);
    let big = json!({"events": [event(1, json!("x".repeat(4096)))]});
    let a = t.append("s", big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.code(), Some("body_too_large"));
    let small = t
        .append("s", json!({"events": [event(1, json!("x"))]}))
        .await;
    assert_eq!(small.status, StatusCode::CREATED);
}

#[tokio::test]
async fn more_events_than_allowed_is_400_too_many_events() {
    let t = app_with(|c| c.limits.events_per_request_max = 3);
    let events: Vec<_> = (0..4).map(|i| event(i, json!(i as u64))).collect();
    let a = t.append("s", json!({"events": events})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.code(), Some("too_many_events"));
    assert_eq!(a.json["error"]["details"]["max"], 3);
    assert_eq!(a.json["error"]["details"]["count"], 4);
    let ok = t.append("s", json!({"events": events[..3]})).await;
    assert_eq!(ok.status, StatusCode::CREATED);
}

#[tokio::test]
async fn nesting_deeper_than_allowed_is_400_json_too_deep() {
    let t = app_with(|c| c.limits.json_depth_max = 8);
    let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let body = |n: usize| format!(r#"{{"events":[{{"type":"t","payload":{}}}]}}"#, nest(n));
    let ok = t
        .call(Method::POST, "/v1/streams/s/events", None, body(8))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.json);
    let deep = t
        .call(Method::POST, "/v1/streams/s/events", None, body(9))
        .await;
    assert_eq!(deep.status, StatusCode::BAD_REQUEST);
    assert_eq!(deep.code(), Some("json_too_deep"));
    // Hostile nesting costs a linear scan, not the stack.
    let hostile = "[".repeat(1_000_000);
    let a = t
        .call(Method::POST, "/v1/streams/s/events", None, hostile)
        .await;
    assert_eq!(a.code(), Some("json_too_deep"));
}

#[tokio::test]
async fn reads_over_read_limit_max_are_400() {
    let t = app_with(|c| c.limits.read_limit_max = 10);
    let a = t.get("/v1/streams?limit=11").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.code(), Some("invalid_request"));
    assert_eq!(a.json["error"]["details"]["max"], 10);
}

#[tokio::test]
async fn a_full_queue_is_429_queue_full_with_retry_after() {
    // A queue of 4 events, with the writer stuck behind another connection's
    // write lock: the first append fills the queue, the second cannot wait.
    let t = app_with(|c| {
        c.limits.events_per_request_max = 4;
        c.limits.queue_wait_ms = 50;
        c.journal.queue_events_max = 4;
        c.journal.busy_timeout_ms = 10_000;
    });
    // Create the stream first so the database exists with its schema.
    let first = t
        .append("s", json!({"events": [event(100, json!(0))]}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let db = t.dir.path().join("ironclad.db");
    let blocker = rusqlite_lock(&db);
    let events: Vec<_> = (0..4).map(|i| event(i, json!(i as u64))).collect();
    let router = t.router.clone();
    let body = json!({"events": events}).to_string();
    let fill = tokio::spawn(async move {
        use tower::ServiceExt;
        let req = axum::http::Request::post("/v1/streams/s/events")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .expect("request");
        router.oneshot(req).await.map(|r| r.status())
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let full = t.append("s", json!({"events": [event(9, json!(9))]})).await;
    assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS, "{}", full.json);
    assert_eq!(full.code(), Some("queue_full"));
    assert_eq!(
        full.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    drop(blocker);
    let filled = fill.await.expect("task").expect("infallible");
    assert_eq!(filled, StatusCode::CREATED);
    let retried = t.append("s", json!({"events": [event(9, json!(9))]})).await;
    assert_eq!(retried.status, StatusCode::CREATED);
}

/// Holds SQLite's write lock on `db` until dropped.
fn rusqlite_lock(db: &std::path::Path) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let db = db.to_path_buf();
    std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&db).expect("open db");
        conn.execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        let _ = ready_tx.send(());
        let _ = rx.recv();
        let _ = conn.execute_batch("ROLLBACK");
    });
    ready_rx.recv().expect("lock taken");
    tx
}

#[test]
fn limits_are_range_checked_with_the_field_named() {
    let mut c = ironclad_server::ServerConfig::default();
    c.limits.body_bytes_max = 10;
    let e = c.check().expect_err("too small");
    assert!(e.to_string().contains("body_bytes_max"), "{e}");
    let mut c = ironclad_server::ServerConfig::default();
    c.limits.events_per_request_max = 10;
    c.journal.queue_events_max = 5;
    let e = c.check().expect_err("cannot queue a full request");
    assert!(e.to_string().contains("queue_events_max"), "{e}");
}
