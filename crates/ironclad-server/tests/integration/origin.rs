//! Cross-site writes and DNS rebinding (issue 9 #1), against the real
//! server on loopback with no tokens (the default setup): a body must be
//! declared JSON (415), a foreign `Origin` is refused (403, WebSocket
//! upgrades included), and without tokens a `Host` name that could be
//! rebound is refused (403). Each refusal is checked to have changed
//! nothing.

use std::time::{Duration, Instant};

use axum::routing::post;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::served::{start, Served, PATIENCE};

const EVENTS: &str = "/v1/streams/s/events";
const JSON: (&str, &str) = ("content-type", "application/json");

fn one_event(n: u128) -> Vec<u8> {
    let id = uuid::Uuid::from_u128(0x0190_a6f0_0000_7000_8000_0000_0000_0000 + n);
    serde_json::json!({"events": [{"id": id, "type": "t", "payload": {"n": n as u64}}]})
        .to_string()
        .into_bytes()
}

/// Events in stream `s` (0 when it has none).
async fn events_in_s(server: &Served) -> usize {
    let read = server
        .send("GET", "/v1/streams/s/events?from=1", &[], b"")
        .await;
    read.json()["events"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_text_plain_append_is_415_and_nothing_is_appended() {
    let server = start(|_| {}, None).await;
    for headers in [
        &[("content-type", "text/plain")][..],
        &[("content-type", "application/x-www-form-urlencoded")][..],
        &[][..],
    ] {
        let r = server.send("POST", EVENTS, headers, &one_event(1)).await;
        assert_eq!(r.status, 415, "{headers:?}: {r:?}");
        assert_eq!(r.code(), "unsupported_media_type", "{r:?}");
        assert!(r.head.contains("content-type: application/json"), "{r:?}");
    }
    // The DLQ purge, with a body that would purge everything.
    let purge = server
        .send(
            "POST",
            "/v1/admin/dlq/purge",
            &[("content-type", "text/plain")],
            br#"{"all":true}"#,
        )
        .await;
    assert_eq!(
        (purge.status, purge.code().as_str()),
        (415, "unsupported_media_type")
    );
    assert_eq!(events_in_s(&server).await, 0, "nothing was appended");
    let ok = server
        .send(
            "POST",
            EVENTS,
            &[("Content-Type", "application/json; charset=utf-8")],
            &one_event(1),
        )
        .await;
    assert_eq!(ok.status, 201, "{ok:?}");
    assert_eq!(events_in_s(&server).await, 1);
    server.stop().await;
}

/// An HTTP sink whose receiver always answers 400: every event for
/// `bad-*` goes straight to the DLQ.
const DELIVERY: &str = r#"
[[delivery.sinks]]
name = "bad"
kind = "http"
url = "URL"
secret = "0123456789abcdef0123456789abcdef"
[delivery.sinks.batch]
linger_ms = 0
[[delivery.routes]]
streams = "bad-*"
sink = "bad"
"#;

async fn refusing_receiver() -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/hook",
        post(|| async { axum::http::StatusCode::BAD_REQUEST }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), task)
}

async fn dead_letters(server: &Served) -> u64 {
    let stats = server.send("GET", "/v1/admin/dlq/stats", &[], b"").await;
    stats.json()["sinks"]
        .as_array()
        .and_then(|sinks| sinks.iter().find(|s| s["sink"] == "bad"))
        .and_then(|s| s["entries"].as_u64())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_foreign_origin_may_not_append_or_purge_the_dlq() {
    let (url, receiver) = refusing_receiver().await;
    let server = start(|_| {}, Some(&DELIVERY.replace("URL", &url))).await;
    let appended = server
        .send("POST", "/v1/streams/bad-1/events", &[JSON], &one_event(7))
        .await;
    assert_eq!(appended.status, 201, "{appended:?}");
    let deadline = Instant::now() + PATIENCE;
    while dead_letters(&server).await != 1 {
        assert!(Instant::now() < deadline, "the event never reached the DLQ");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let evil = ("origin", "http://evil.example");
    let r = server
        .send("POST", EVENTS, &[JSON, evil], &one_event(1))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "origin_not_allowed"),
        "{r:?}"
    );
    assert_eq!(
        r.json()["error"]["details"]["origin"],
        "http://evil.example"
    );
    let purge = server
        .send(
            "POST",
            "/v1/admin/dlq/purge",
            &[JSON, evil],
            br#"{"all":true}"#,
        )
        .await;
    assert_eq!(
        (purge.status, purge.code().as_str()),
        (403, "origin_not_allowed")
    );
    // `null` (sandboxed frames, file: pages) is no origin of ours either.
    let null = server
        .send("POST", EVENTS, &[JSON, ("origin", "null")], &one_event(1))
        .await;
    assert_eq!(null.status, 403);
    assert_eq!(events_in_s(&server).await, 0, "nothing was appended");
    assert_eq!(dead_letters(&server).await, 1, "nothing was purged");

    // The server's own origin may.
    let own = format!("http://{}", server.addr);
    let purge = server
        .send(
            "POST",
            "/v1/admin/dlq/purge",
            &[JSON, ("origin", &own)],
            br#"{"all":true}"#,
        )
        .await;
    assert_eq!(purge.status, 200, "{purge:?}");
    assert_eq!(dead_letters(&server).await, 0);
    server.stop().await;
    receiver.abort();
}

#[tokio::test]
async fn the_own_origin_and_configured_origins_are_accepted() {
    let server = start(
        |c| c.allowed_origins = vec!["http://app.example:3000".into()],
        None,
    )
    .await;
    let own = format!("http://{}", server.addr);
    let localhost = format!("localhost:{}", server.addr.port());
    let own_localhost = format!("http://{localhost}");
    let cases = [
        vec![JSON, ("origin", own.as_str())],
        vec![JSON, ("origin", "http://app.example:3000")],
        vec![
            JSON,
            ("host", localhost.as_str()),
            ("origin", own_localhost.as_str()),
        ],
    ];
    for (n, headers) in cases.iter().enumerate() {
        let r = server
            .send("POST", EVENTS, headers, &one_event(n as u128))
            .await;
        assert_eq!(r.status, 201, "{headers:?}: {r:?}");
    }
    let other = server
        .send(
            "POST",
            EVENTS,
            &[JSON, ("origin", "http://app.example:3001")],
            &one_event(9),
        )
        .await;
    assert_eq!(other.status, 403, "another port is another origin");
    assert_eq!(events_in_s(&server).await, 3);
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_from_a_foreign_origin_is_403_not_101() {
    let server = start(|_| {}, None).await;
    let url = format!("ws://{}/v1/subscribe", server.addr);
    let mut evil = url.as_str().into_client_request().expect("request");
    evil.headers_mut()
        .insert("origin", "http://evil.example".parse().expect("header"));
    match tokio_tungstenite::connect_async(evil).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 403);
            let body = resp.body().clone().unwrap_or_default();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!(json["error"]["code"], "origin_not_allowed", "{json}");
        }
        other => panic!("expected 403, got {:?}", other.map(|(_, r)| r.status())),
    }
    let mut own = url.as_str().into_client_request().expect("request");
    let origin = format!("http://{}", server.addr);
    own.headers_mut()
        .insert("origin", origin.parse().expect("header"));
    let (ws, resp) = tokio_tungstenite::connect_async(own)
        .await
        .expect("same origin upgrades");
    assert_eq!(resp.status().as_u16(), 101);
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn a_rebound_host_is_refused_without_tokens() {
    let server = start(|c| c.allowed_hosts = vec!["box.lan".into()], None).await;
    let port = server.addr.port();
    let evil = format!("evil.example:{port}");
    for path in ["/v1/streams", "/healthz"] {
        let r = server.send("GET", path, &[("host", &evil)], b"").await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "host_not_allowed"),
            "{r:?}"
        );
    }
    // Same-origin as far as the browser knows, yet refused.
    let origin = format!("http://{evil}");
    let r = server
        .send(
            "POST",
            EVENTS,
            &[JSON, ("host", &evil), ("origin", &origin)],
            &one_event(1),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (403, "host_not_allowed"));
    assert_eq!(events_in_s(&server).await, 0, "nothing was appended");
    for host in [
        format!("localhost:{port}"),
        "localhost".into(),
        format!("box.lan:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = server
            .send("POST", EVENTS, &[JSON, ("host", &host)], &one_event(2))
            .await;
        assert!(matches!(r.status, 200 | 201), "{host}: {r:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn with_tokens_a_host_name_passes_unless_allowed_hosts_is_set() {
    use ironclad_server::auth::Role;
    use ironclad_server::config::TokenConfig;
    let tokens = vec![TokenConfig {
        token: "producer-token-1".into(),
        role: Role::Producer,
        consumers: None,
    }];
    let open = start(|c| c.tokens = tokens.clone(), None).await;
    let host = format!("ironclad.example.com:{}", open.addr.port());
    let bearer = ("authorization", "Bearer producer-token-1");
    let r = open
        .send(
            "POST",
            EVENTS,
            &[JSON, bearer, ("host", &host)],
            &one_event(1),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    open.stop().await;
    let pinned = start(
        |c| {
            c.tokens = tokens;
            c.allowed_hosts = vec!["box.lan".into()];
        },
        None,
    )
    .await;
    let r = pinned
        .send(
            "POST",
            EVENTS,
            &[JSON, bearer, ("host", &host)],
            &one_event(1),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (403, "host_not_allowed"));
    pinned.stop().await;
}
