//! `ironclad serve` end to end, against real server processes on ephemeral
//! ports: ingest answers (201, 200, 409 with the current version, 400,
//! 429 with Retry-After), reads and listings, the bind refusal without
//! tokens, configuration layering, and a SIGTERM graceful shutdown after
//! which every acknowledged event is still there.

use crate::serve_support;

use serde_json::json;
use serve_support::{client, event, send, start, try_start};

#[tokio::test(flavor = "multi_thread")]
async fn ingest_and_read_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), &[], &[]);
    let http = client();
    let url = server.url("/v1/streams/orders-7/events");
    let body = json!({"expected_version": "no_stream", "events": [event(1, json!({"total": 42})), event(2, json!([1, 2]))]});

    let created = send(http.post(&url).json(&body)).await;
    assert_eq!(created.status, 201, "{}", created.json);
    assert_eq!(created.json["status"], "appended");
    assert_eq!(created.json["events"][1]["version"], 2);

    let again = send(http.post(&url).json(&body)).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json["status"], "already_appended");
    assert_eq!(again.json["events"], created.json["events"]);

    let stale = send(
        http.post(&url)
            .json(&json!({"expected_version": 1, "events": [event(3, json!(3))]})),
    )
    .await;
    assert_eq!(stale.status, 409);
    assert_eq!(stale.code(), Some("wrong_expected_version"));
    assert_eq!(
        stale.json["error"]["details"]["actual"], 2,
        "the current version"
    );

    let bad = send(
        http.post(&url)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.code(), Some("invalid_json"));
    let bad_name = send(
        http.post(server.url("/v1/streams/%00/events"))
            .json(&json!({"events": [event(4, json!(4))]})),
    )
    .await;
    assert_eq!(bad_name.status, 400);
    assert_eq!(bad_name.code(), Some("invalid_request"));

    let page = send(http.get(server.url("/v1/streams/orders-7/events?from=2&limit=5"))).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.json["events"][0]["version"], 2);
    assert_eq!(page.json["events"][0]["payload"], json!([1, 2]));
    assert_eq!(page.json["next"], serde_json::Value::Null);
    let missing = send(http.get(server.url("/v1/streams/orders-8/events"))).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), Some("not_found"));
    let streams = send(http.get(server.url("/v1/streams"))).await;
    assert_eq!(streams.json["streams"][0]["stream"], "orders-7");
    assert_eq!(streams.json["streams"][0]["version"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_is_429_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ironclad.toml");
    std::fs::write(
        &config,
        "[server.limits]\nevents_per_request_max = 4\nqueue_wait_ms = 0\n\
         [server.journal]\nqueue_events_max = 4\nbusy_timeout_ms = 20000\n",
    )
    .expect("write config");
    let data = dir.path().join("data");
    let server = start(&data, &["--config", config.to_str().expect("utf-8")], &[]);
    let http = client();
    let url = server.url("/v1/streams/s/events");
    let seeded = send(
        http.post(&url)
            .json(&json!({"events": [event(100, json!(0))]})),
    )
    .await;
    assert_eq!(seeded.status, 201);

    // Another connection holds SQLite's write lock: the writer waits on it
    // with the first append's 4 events queued, so the queue is full.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let db = data.join("ironclad.db");
    let locker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).expect("open db");
        conn.execute_batch("BEGIN IMMEDIATE").expect("write lock");
        locked_tx.send(()).expect("signal");
        let _ = held.recv();
        conn.execute_batch("ROLLBACK").expect("release");
    });
    locked.recv().expect("locked");
    let filler = {
        let http = http.clone();
        let url = url.clone();
        let events: Vec<_> = (0..4).map(|i| event(i, json!(i as u64))).collect();
        tokio::spawn(async move { send(http.post(&url).json(&json!({"events": events}))).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let full = send(
        http.post(&url)
            .json(&json!({"events": [event(9, json!(9))]})),
    )
    .await;
    assert_eq!(full.status, 429, "{}", full.json);
    assert_eq!(full.code(), Some("queue_full"));
    assert_eq!(full.retry_after.as_deref(), Some("1"));
    release.send(()).expect("release");
    locker.join().expect("locker");
    let filled = filler.await.expect("filler");
    assert_eq!(filled.status, 201, "{}", filled.json);
    let retried = send(
        http.post(&url)
            .json(&json!({"events": [event(9, json!(9))]})),
    )
    .await;
    assert_eq!(
        retried.status, 201,
        "the same request succeeds once there is room"
    );
}

#[test]
fn refuses_a_public_bind_without_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = try_start(dir.path(), &["--listen", "0.0.0.0:0"], &[])
        .err()
        .expect("must refuse");
    assert!(err.contains("exit status: 2"), "{err}");
    assert!(
        err.contains("--insecure-no-auth"),
        "the message says what to do: {err}"
    );

    let open = start(
        dir.path(),
        &["--listen", "0.0.0.0:0", "--insecure-no-auth"],
        &[],
    );
    assert!(open.addr.ip().is_unspecified());
    drop(open);
    let with_tokens = start(
        dir.path(),
        &["--listen", "0.0.0.0:0"],
        &[("IRONCLAD_TOKENS", "producer:producer-token-1")],
    );
    assert!(with_tokens.addr.ip().is_unspecified());
}

#[tokio::test(flavor = "multi_thread")]
async fn file_then_env_then_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ironclad.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:1\"\n[server.limits]\nbody_bytes_max = 2048\n",
    )
    .expect("write config");
    let path = config.to_str().expect("utf-8");
    // The environment overrides the file's body limit; the flag overrides
    // the environment's listen address (port 1 would fail to bind).
    let server = start(
        &dir.path().join("data"),
        &["--config", path, "--listen", "127.0.0.1:0"],
        &[
            ("IRONCLAD_BODY_BYTES_MAX", "8192"),
            ("IRONCLAD_LISTEN", "127.0.0.1:2"),
        ],
    );
    let http = client();
    let url = server.url("/v1/streams/s/events");
    let mid = json!({"events": [event(1, json!("x".repeat(4000)))]});
    assert_eq!(send(http.post(&url).json(&mid)).await.status, 201);
    let big = json!({"events": [event(2, json!("x".repeat(9000)))]});
    let a = send(http.post(&url).json(&big)).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.code(), Some("body_too_large"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_appends_and_keeps_every_ack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start(dir.path(), &[], &[]);
    let http = client();
    let base = server.base.clone();
    // Producers append until the server goes away; every 201 is recorded.
    let mut producers = Vec::new();
    for p in 0..4u128 {
        let http = http.clone();
        let base = base.clone();
        producers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..10_000u128 {
                let n = p * 1_000_000 + i;
                let body = json!({"events": [event(n, json!({"p": p as u64, "i": i as u64}))]});
                let resp = http
                    .post(format!("{base}/v1/streams/p-{p}/events"))
                    .json(&body)
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().as_u16() == 201 => acked.push(n),
                    Ok(r) if r.status().as_u16() == 503 => break,
                    Ok(r) => panic!("unexpected {}", r.status()),
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = server.signal_and_wait("-TERM");
        (status, server.stderr())
    })
    .await
    .expect("wait");
    assert!(
        status.0.success(),
        "graceful exit: {:?}\n{}",
        status.0,
        status.1
    );
    let mut acked = Vec::new();
    for p in producers {
        acked.extend(p.await.expect("producer"));
    }
    assert!(!acked.is_empty(), "some appends were acknowledged");

    let server = start(dir.path(), &[], &[]);
    let mut stored = std::collections::HashSet::new();
    for p in 0..4u128 {
        let mut from = 1u64;
        loop {
            let page = send(
                http.get(server.url(&format!("/v1/streams/p-{p}/events?from={from}&limit=1000"))),
            )
            .await;
            if page.status == 404 {
                break;
            }
            for e in page.json["events"].as_array().expect("events") {
                stored.insert(e["id"].as_str().expect("id").to_string());
            }
            match page.json["next"].as_u64() {
                Some(next) => from = next,
                None => break,
            }
        }
    }
    for n in &acked {
        let id = uuid::Uuid::from_u128(0x0190_a6f0_0000_7000_8000_0000_0000_0000 + n).to_string();
        assert!(
            stored.contains(&id),
            "acknowledged event {id} is missing after restart"
        );
    }
}
