//! Handler-level authentication matrix for the ingest and read endpoints:
//! every principal (none, unknown token, malformed header, producer,
//! consumer, admin) against every endpoint. The same matrix runs against a
//! real server process in `crates/ironclad-cli/tests/serve_auth.rs`.

use crate::ingest_support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use ingest_support::{app_with, event, tokens};
use serde_json::json;
use tower::ServiceExt;

#[tokio::test]
async fn every_role_against_every_ingest_endpoint() {
    let t = app_with(|c| c.tokens = tokens());
    // The stream must exist for reads to be 200.
    t.journal
        .append(
            "s",
            ironclad::ExpectedVersion::Any,
            vec![ironclad::NewEvent::new("t", "1")],
        )
        .await
        .expect("seed");
    let principals: [(&str, Option<&str>); 6] = [
        ("none", None),
        ("unknown", Some("Bearer not-a-token")),
        ("basic", Some("Basic cHJvZHVjZXI6eA==")),
        ("producer", Some("Bearer producer-token-1")),
        ("consumer", Some("Bearer consumer-token-1")),
        ("admin", Some("Bearer admin-token-1")),
    ];
    // Expected status per principal, in the order above.
    let endpoints: [(Method, &str, [u16; 6]); 3] = [
        (
            Method::POST,
            "/v1/streams/s/events",
            [401, 401, 401, 201, 403, 201],
        ),
        (
            Method::GET,
            "/v1/streams/s/events",
            [401, 401, 401, 200, 200, 200],
        ),
        (Method::GET, "/v1/streams", [401, 401, 401, 200, 200, 200]),
    ];
    let mut n = 0u128;
    for (method, uri, want) in endpoints {
        for ((who, header), want) in principals.iter().zip(want) {
            n += 1;
            let body = if method == Method::POST {
                Body::from(json!({"events": [event(n, json!(n as u64))]}).to_string())
            } else {
                Body::empty()
            };
            let mut req = Request::builder()
                .method(method.clone())
                .uri(uri)
                .header("content-type", "application/json");
            if let Some(h) = header {
                req = req.header("authorization", *h);
            }
            let resp = t
                .router
                .clone()
                .oneshot(req.body(body).expect("request"))
                .await
                .expect("infallible");
            let status = resp.status();
            let bytes = resp.into_body().collect().await.expect("body").to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            assert_eq!(status.as_u16(), want, "{method} {uri} as {who}: {v}");
            let code = v["error"]["code"].as_str();
            match want {
                401 => assert_eq!(code, Some("unauthorized"), "{who}"),
                403 => assert_eq!(code, Some("forbidden"), "{who}"),
                _ => assert_eq!(code, None),
            }
            // The token never appears in an answer.
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("token-1") && !text.contains("not-a-token"),
                "{text}"
            );
        }
    }
    assert_eq!(StatusCode::OK.as_u16(), 200);
}
