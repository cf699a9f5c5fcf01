//! Handler-level tests of the ingest and read API (SPEC §6) through the full
//! router over a real journal: every status the endpoints answer, and a
//! property test that no request body, path or query makes a handler panic
//! or answer 5xx.

use crate::ingest_support;

use axum::http::{Method, StatusCode};
use ingest_support::{app, event};
use proptest::prelude::*;
use serde_json::json;

#[tokio::test]
async fn append_answers_201_then_200_then_409_with_the_current_version() {
    let t = app();
    let body = json!({"expected_version": "no_stream", "events": [event(1, json!({"b": 1, "a": [1.50, 2e3]})), event(2, json!("x"))]});
    let first = t.append("orders-1", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.json);
    assert_eq!(first.json["status"], "appended");
    assert_eq!(first.json["events"][1]["version"], 2);
    assert_eq!(first.json["events"][1]["position"], 2);

    let again = t.append("orders-1", body).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json);
    assert_eq!(again.json["status"], "already_appended");
    assert_eq!(again.json["events"], first.json["events"]);

    let stale = t
        .append(
            "orders-1",
            json!({"expected_version": 1, "events": [event(3, json!(1))]}),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.code(), Some("wrong_expected_version"));
    assert_eq!(stale.json["error"]["details"]["actual"], 2);
    assert_eq!(stale.json["error"]["details"]["expected"], 1);

    let conflict = t
        .append(
            "orders-1",
            json!({"events": [event(1, json!({"other": true}))]}),
        )
        .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.code(), Some("idempotency_conflict"));

    let exists = t
        .append(
            "orders-1",
            json!({"expected_version": "stream_exists", "events": [event(4, json!(null))]}),
        )
        .await;
    assert_eq!(exists.status, StatusCode::CREATED);

    // Payloads come back byte for byte (whitespace aside).
    let read = t.get("/v1/streams/orders-1/events?from=1&limit=1").await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json["next"], 2);
    // (The exact payload text is checked in the next test.)
    assert_eq!(
        read.json["events"][0]["payload"],
        json!({"b": 1, "a": [1.5, 2000.0]})
    );
}

#[tokio::test]
async fn payload_text_is_kept_verbatim_on_the_wire() {
    let t = app();
    let raw = r#"{"events":[{"type":"t","payload":{"z": 1.50, "a": "\u00e9"}}]}"#;
    let a = t
        .call(Method::POST, "/v1/streams/s/events", None, raw.to_string())
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let events = t.journal.read("s", 1, 10).expect("read");
    assert_eq!(events[0].payload, r#"{"z":1.50,"a":"\u00e9"}"#);
}

#[tokio::test]
async fn bad_requests_get_400_with_a_code() {
    let t = app();
    let cases: Vec<(String, &str)> = vec![
        ("{".into(), "invalid_json"),
        ("".into(), "invalid_json"),
        ("[]".into(), "invalid_request"),
        (r#"{"events":[]}"#.into(), "invalid_request"),
        (r#"{"events":[{"type":"t"}]}"#.into(), "invalid_request"),
        (
            r#"{"events":[{"type":"t","payload":1,"extra":1}]}"#.into(),
            "invalid_request",
        ),
        (
            r#"{"events":[{"type":"","payload":1}]}"#.into(),
            "invalid_request",
        ),
        (
            r#"{"events":[{"id":"not-a-uuid","type":"t","payload":1}]}"#.into(),
            "invalid_request",
        ),
        (
            r#"{"expected_version":-1,"events":[{"type":"t","payload":1}]}"#.into(),
            "invalid_request",
        ),
        (
            r#"{"expected_version":"sometimes","events":[{"type":"t","payload":1}]}"#.into(),
            "invalid_request",
        ),
        (
            r#"{"events":[{"type":"t","op":"explode","payload":1}]}"#.into(),
            "invalid_request",
        ),
    ];
    for (body, code) in cases {
        let a = t
            .call(Method::POST, "/v1/streams/s/events", None, body.clone())
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.json);
        assert_eq!(a.code(), Some(code), "{body}: {}", a.json);
        assert!(a.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // A stream name with a control character (percent-encoded).
    let a = t
        .append("bad%01name", json!({"events": [event(1, json!(1))]}))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.code(), Some("invalid_request"));
    let long = "s".repeat(300);
    let a = t
        .append(&long, json!({"events": [event(1, json!(1))]}))
        .await;
    assert_eq!(a.code(), Some("invalid_request"));
}

#[tokio::test]
async fn reads_page_and_unknown_streams_are_404() {
    let t = app();
    for i in 0..5u128 {
        let a = t
            .append(
                &format!("s-{}", i % 2),
                json!({"events": [event(i, json!(i as u64))]}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED);
    }
    let page = t.get("/v1/streams/s-0/events?limit=2").await;
    assert_eq!(page.json["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(page.json["next"], 3);
    let last = t.get("/v1/streams/s-0/events?from=3&limit=2").await;
    assert_eq!(last.json["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(last.json["next"], serde_json::Value::Null);
    let past = t.get("/v1/streams/s-0/events?from=99").await;
    assert_eq!(past.status, StatusCode::OK);
    assert_eq!(past.json["events"], json!([]));
    let missing = t.get("/v1/streams/nope/events").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), Some("not_found"));
    for bad in [
        "/v1/streams/s-0/events?limit=0",
        "/v1/streams/s-0/events?limit=1001",
        "/v1/streams/s-0/events?from=-1",
        "/v1/streams/s-0/events?bogus=1",
        "/v1/streams?limit=abc",
    ] {
        let a = t.get(bad).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(a.code(), Some("invalid_request"), "{bad}");
    }

    let streams = t.get("/v1/streams?limit=1").await;
    assert_eq!(streams.json["streams"][0]["stream"], "s-0");
    assert_eq!(streams.json["streams"][0]["version"], 3);
    assert_eq!(streams.json["next"], "s-0");
    let rest = t.get("/v1/streams?after=s-0").await;
    assert_eq!(rest.json["streams"][0]["stream"], "s-1");
    assert_eq!(rest.json["next"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_shutting_down_journal_is_503_with_retry_after() {
    let t = app();
    t.journal
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .expect("shutdown");
    let a = t.append("s", json!({"events": [event(1, json!(1))]})).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.code(), Some("unavailable"));
    assert!(a.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn unknown_paths_and_methods_are_json_errors() {
    let t = app();
    let a = t.get("/v2/nothing").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.code(), Some("not_found"));
    let a = t
        .call(Method::DELETE, "/v1/streams/s/events", None, "")
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.code(), Some("method_not_allowed"));
}

/// Arbitrary JSON values, nested a little.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        ".{0,12}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("any"),
            Just("no_stream"),
            Just("stream_exists"),
            Just("type"),
            Just("payload"),
            Just("events")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("events".to_string()),
                    Just("expected_version".to_string()),
                    Just("type".to_string()),
                    Just("payload".to_string()),
                    Just("id".to_string()),
                    Just("op".to_string()),
                    Just("entity".to_string()),
                    Just("metadata".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies that are nearly valid appends, with each field sometimes wrong.
fn near_append() -> impl Strategy<Value = serde_json::Value> {
    let event = (
        prop::option::of(prop_oneof![
            any::<u128>()
                .prop_map(|n| serde_json::Value::from(uuid::Uuid::from_u128(n).to_string())),
            json_value(),
        ]),
        prop_oneof![".{0,8}".prop_map(serde_json::Value::from), json_value()],
        prop::option::of(json_value()),
        prop::option::of(prop_oneof![
            Just(serde_json::Value::from("create")),
            json_value()
        ]),
        prop::option::of(json_value()),
    )
        .prop_map(|(id, ty, payload, op, entity)| {
            let mut m = serde_json::Map::new();
            if let Some(id) = id {
                m.insert("id".into(), id);
            }
            m.insert("type".into(), ty);
            if let Some(p) = payload {
                m.insert("payload".into(), p);
            }
            if let Some(op) = op {
                m.insert("op".into(), op);
            }
            if let Some(e) = entity {
                m.insert("entity".into(), e);
            }
            serde_json::Value::Object(m)
        });
    (
        prop::option::of(prop_oneof![
            Just(json!("any")),
            Just(json!("no_stream")),
            (0u64..4).prop_map(serde_json::Value::from),
            json_value(),
        ]),
        prop::collection::vec(event, 0..4),
    )
        .prop_map(|(ev, events)| {
            let mut m = serde_json::Map::new();
            if let Some(ev) = ev {
                m.insert("expected_version".into(), ev);
            }
            m.insert("events".into(), serde_json::Value::from(events));
            serde_json::Value::Object(m)
        })
}

fn check_answer(a: &ingest_support::Answer) -> Result<(), TestCaseError> {
    prop_assert!(
        !a.status.is_server_error() || a.status == StatusCode::SERVICE_UNAVAILABLE,
        "server error {}: {}",
        a.status,
        a.json
    );
    if a.status.is_client_error() {
        prop_assert!(a.code().is_some(), "error without a code: {}", a.json);
    } else {
        prop_assert!(
            a.status == StatusCode::CREATED || a.status == StatusCode::OK,
            "unexpected {}",
            a.status
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// No body, path or query makes the handlers panic or fail with 5xx;
    /// every refusal is a JSON error with a code.
    #[test]
    fn no_request_panics_or_answers_5xx(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        value in json_value(),
        near in near_append(),
        stream in prop::collection::vec(any::<u8>(), 0..24),
        query in ".{0,24}",
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let t = app();
        let stream: String = stream.iter().map(|b| format!("%{b:02X}")).collect();
        let query: String = query.bytes().map(|b| format!("%{b:02X}")).collect();
        rt.block_on(async {
            for body in [bytes.clone(), value.to_string().into_bytes(), near.to_string().into_bytes()] {
                let a = t.call(Method::POST, &format!("/v1/streams/{stream}/events"), None, body).await;
                check_answer(&a)?;
                let a = t.call(Method::POST, "/v1/streams/s/events", None, near.to_string()).await;
                check_answer(&a)?;
            }
            for uri in [
                format!("/v1/streams/{stream}/events?from={query}"),
                format!("/v1/streams/s/events?limit={query}"),
                format!("/v1/streams?after={query}&limit=5"),
                format!("/v1/streams/{stream}/events?{query}"),
            ] {
                let a = t.get(&uri).await;
                prop_assert!(a.status != StatusCode::INTERNAL_SERVER_ERROR, "{uri}: {}", a.json);
                if !a.status.is_success() {
                    prop_assert!(a.code().is_some(), "{uri}: {}", a.json);
                }
            }
            Ok(())
        })?;
    }
}
