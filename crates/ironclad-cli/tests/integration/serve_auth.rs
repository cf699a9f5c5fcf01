//! The authentication matrix of the ingest and read endpoints against a
//! real `ironclad serve` with tokens for each role: no token, an unknown
//! token, a malformed header, producer, consumer and admin, against
//! append, read and list; and consumer names bound to tokens through
//! `IRONCLAD_TOKENS`, with the start-up warning about unbound ones.

use crate::serve_support;

use serde_json::json;
use serve_support::{client, event, send, start};

#[tokio::test(flavor = "multi_thread")]
async fn every_principal_against_every_ingest_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(
        dir.path(),
        &[],
        &[(
            "IRONCLAD_TOKENS",
            "producer:producer-token-1,consumer:consumer-token-1,admin:admin-token-1",
        )],
    );
    let http = client();
    let seed = send(
        http.post(server.url("/v1/streams/s/events"))
            .bearer_auth("admin-token-1")
            .json(&json!({"events": [event(0, json!(0))]})),
    )
    .await;
    assert_eq!(seed.status, 201);

    let principals: [(&str, Option<&str>); 6] = [
        ("none", None),
        ("unknown", Some("Bearer not-a-token")),
        ("malformed", Some("Token producer-token-1")),
        ("producer", Some("Bearer producer-token-1")),
        ("consumer", Some("Bearer consumer-token-1")),
        ("admin", Some("Bearer admin-token-1")),
    ];
    let endpoints: [(&str, &str, [u16; 6]); 3] = [
        (
            "POST",
            "/v1/streams/s/events",
            [401, 401, 401, 201, 403, 201],
        ),
        (
            "GET",
            "/v1/streams/s/events",
            [401, 401, 401, 200, 200, 200],
        ),
        ("GET", "/v1/streams", [401, 401, 401, 200, 200, 200]),
    ];
    let mut n = 0u128;
    for (method, path, want) in endpoints {
        for ((who, header), want) in principals.iter().zip(want) {
            n += 1;
            let mut req = match method {
                "POST" => http
                    .post(server.url(path))
                    .json(&json!({"events": [event(n, json!(n as u64))]})),
                _ => http.get(server.url(path)),
            };
            if let Some(h) = header {
                req = req.header("authorization", *h);
            }
            let a = send(req).await;
            assert_eq!(a.status, want, "{method} {path} as {who}: {}", a.json);
            let expected_code = match want {
                401 => Some("unauthorized"),
                403 => Some("forbidden"),
                _ => None,
            };
            assert_eq!(a.code(), expected_code, "{method} {path} as {who}");
            assert!(
                !a.json.to_string().contains("token-1"),
                "tokens never echoed"
            );
        }
    }
    assert!(!server.stderr().contains("token-1"), "tokens never logged");
}

/// `IRONCLAD_TOKENS` binds a consumer token to names with
/// `consumer=NAME|PREFIX*:token`: the bound token is refused (403
/// `forbidden`) as another consumer, the unbound one is not, and the
/// start-up log warns about the unbound one.
#[tokio::test(flavor = "multi_thread")]
async fn env_tokens_bind_consumer_names_and_serve_warns_about_unbound_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(
        dir.path(),
        &[],
        &[(
            "IRONCLAD_TOKENS",
            "consumer=billing|audit-*:bill-token-1,consumer:free-token-1,admin:admin-token-1",
        )],
    );
    let http = client();
    let seed = send(
        http.post(server.url("/v1/streams/s/events"))
            .bearer_auth("admin-token-1")
            .json(&json!({"events": [event(0, json!(0))]})),
    )
    .await;
    assert_eq!(seed.status, 201);
    let ack = |token: &'static str, name: &str| {
        http.post(server.url(&format!("/v1/consumers/{name}/ack")))
            .bearer_auth(token)
            .json(&json!({"position": 1}))
    };
    for (token, name, want) in [
        ("bill-token-1", "billing", 200),
        ("bill-token-1", "audit-eu", 200),
        ("bill-token-1", "audit", 403),
        ("free-token-1", "audit", 200),
        ("admin-token-1", "anything", 200),
    ] {
        let a = send(ack(token, name)).await;
        assert_eq!(a.status, want, "{token} as {name}: {}", a.json);
        if want == 403 {
            assert_eq!(a.code(), Some("forbidden"));
            assert_eq!(a.json["error"]["details"]["consumer"], name);
        }
    }
    let stderr = server.stderr();
    assert!(
        stderr.contains(
            "1 of 2 consumer tokens (server.tokens entries 2) are bound to no consumer names"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("token-1"), "tokens never logged");
}
