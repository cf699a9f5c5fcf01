//! `/openapi.json` says what this server does (issue 9 #23): the document is
//! fitted to the configuration (limits, tokens), query parameters are query
//! parameters, ranges and shapes match the handlers; and JSON of the wrong
//! shape is `invalid_request` with a message in the API's words, as
//! `docs/api-errors.md` says. `scripts/conformance.sh` checks the same with
//! schemathesis against a running server.

use axum::body::Body;
use axum::http::Method;
use serde_json::{json, Value};

use crate::ingest_support::{app, app_with, tokens, TestApp};

async fn document(app: &TestApp) -> Value {
    let answer = app.get("/openapi.json").await;
    assert_eq!(answer.status, 200);
    answer.json
}

/// The parameter `name` of `method path`.
fn param<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn the_document_fits_the_server_configuration() {
    let app = app_with(|c| {
        c.limits.read_limit_max = 77;
        c.limits.events_per_request_max = 5;
    });
    let doc = document(&app).await;
    for name in ["after", "wait_ms", "limit", "streams", "consumer"] {
        let p = param(&doc, "/v1/poll", "get", name);
        assert_eq!(p["in"], "query", "poll {name}: {p}");
        assert_ne!(p["required"], true, "poll {name}: {p}");
    }
    for name in ["from", "streams", "consumer"] {
        assert_eq!(param(&doc, "/v1/subscribe", "get", name)["in"], "query");
    }
    for (path, method) in [
        ("/v1/poll", "get"),
        ("/v1/streams", "get"),
        ("/v1/streams/{stream}/events", "get"),
    ] {
        let limit = &param(&doc, path, method, "limit")["schema"];
        assert_eq!(
            (limit["minimum"].as_u64(), limit["maximum"].as_u64()),
            (Some(1), Some(77)),
            "{path}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    let events = &schemas["AppendRequest"]["properties"]["events"];
    assert_eq!(
        (events["minItems"].as_u64(), events["maxItems"].as_u64()),
        (Some(1), Some(5))
    );
    let event = &schemas["WireEvent"]["properties"];
    assert!(
        event["payload"].get("type").is_none(),
        "any JSON value: {}",
        event["payload"]
    );
    assert_eq!(
        event["op"]["enum"],
        json!(["event", "create", "update", "delete"])
    );
    let position = &schemas["AckRequest"]["properties"]["position"];
    assert_eq!(position["maximum"].as_u64(), Some(u64::MAX), "{position}");
    assert_eq!(position["format"], "uint64");
    assert!(schemas["DlqSelector"]["anyOf"].is_array());
    // No tokens: nothing asks for one.
    let text = doc.to_string();
    assert!(
        !text.contains("\"security\""),
        "security declared without tokens"
    );
    assert!(doc["paths"]["/v1/poll"]["get"]["responses"]
        .get("401")
        .is_none());
    let append = &doc["paths"]["/v1/streams/{stream}/events"]["post"]["responses"];
    assert!(append["415"]["description"]
        .as_str()
        .is_some_and(|d| d.contains("unsupported_media_type")));
    assert!(append["503"]["description"]
        .as_str()
        .is_some_and(|d| d.contains("server_busy")));
}

#[tokio::test]
async fn with_tokens_every_guarded_endpoint_documents_401_and_403() {
    let app = app_with(|c| c.tokens = tokens());
    let doc = document(&app).await;
    let subscribe = &doc["paths"]["/v1/subscribe"]["get"];
    assert!(subscribe["security"].is_array(), "{subscribe}");
    for status in ["401", "403"] {
        assert!(
            subscribe["responses"].get(status).is_some(),
            "subscribe {status}"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

/// Sends `body` to `uri` and returns the error code and message.
async fn refused(app: &TestApp, uri: &str, body: &str) -> (u16, String, String) {
    let a = app
        .call(Method::POST, uri, None, Body::from(body.to_string()))
        .await;
    let message = a.json["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (
        a.status.as_u16(),
        a.code().unwrap_or_default().to_string(),
        message,
    )
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_invalid_request_in_the_apis_words() {
    let app = app();
    let append = "/v1/streams/s/events";
    let cases = [
        (append, r#"{"events":[{"type":"t","payload":1,"op":null}]}"#),
        (
            append,
            r#"{"expected_version":0.0,"events":[{"type":"t","payload":1}]}"#,
        ),
        (append, r#"[{"type":"t","payload":1}]"#),
        ("/v1/consumers/c/ack", r#"{"position":"1"}"#),
        ("/v1/consumers/c/ack", r#"{"position":1.5}"#),
        ("/v1/admin/ledger/verify", "null"),
        ("/v1/admin/ledger/verify", "[null, null]"),
        ("/v1/admin/ledger/verify", r#"{"stream":7}"#),
        ("/v1/admin/dlq/retry", r#"{"failed_before_ms":"x"}"#),
        ("/v1/admin/dlq/purge", r#"{"reason":"sometimes"}"#),
    ];
    for (uri, body) in cases {
        let (status, code, message) = refused(&app, uri, body).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_request"),
            "{uri} {body}: {message}"
        );
        for rust in [
            "struct",
            "Request",
            "WireExpected",
            "u64",
            "enum ",
            "sequence",
        ] {
            assert!(
                !message.contains(rust),
                "{uri} {body}: {rust} in {message:?}"
            );
        }
    }
    let (_, _, message) = refused(&app, append, cases[1].1).await;
    assert!(message.contains("expected_version: \"any\""), "{message}");
    for (uri, body) in [
        (append, "{"),
        ("/v1/consumers/c/ack", "{\"position\": 1,}"),
        ("/v1/admin/ledger/verify", "nul"),
    ] {
        let (status, code, message) = refused(&app, uri, body).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_json"),
            "{uri} {body}: {message}"
        );
    }
}
