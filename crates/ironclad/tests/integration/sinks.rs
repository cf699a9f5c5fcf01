//! The built-in sinks against real destinations (SPEC §4): `HttpSink`
//! against the failure-injecting loopback receiver (`common/receiver.rs`),
//! with no mocks: every status, reset and timeout crosses a real TCP
//! connection. `JsonlSink` against the real file system. Events are real:
//! appended with a `Journal` and read back.

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::receiver::{Receiver, Schedule};
use ironclad::delivery::classify::Outcome;
use ironclad::delivery::signature::SigningKey;
use ironclad::delivery::sink::{Sink, SinkResponse};
use ironclad::delivery::sinks::http::{batch_body, batch_idempotency_key, per_event_outcomes};
use ironclad::delivery::sinks::{HttpSink, HttpSinkError, HttpSinkOptions, JsonlSink, LogSink};
use ironclad::{ExpectedVersion, NewEvent, Op, RecordedEvent};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use uuid::Uuid;

const SECRET: &[u8] = b"ironclad-test-secret-0123456789";
const RETRY: Outcome = Outcome::Retry {
    retry_after_ms: None,
};

/// Appends one event per type to a fresh journal and reads them back.
async fn recorded(types: &[&str]) -> (TempDir, Vec<RecordedEvent>) {
    let tmp = common::tempdir();
    let journal = common::open(common::fast_config(&common::data_dir(&tmp)));
    let events: Vec<NewEvent> = types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            NewEvent::new(*t, format!(r#"{{"n": {i}, "note": "caf\u00e9 \"x\""}}"#))
                .with_entity(Op::Update, format!("order-{i}"))
                .with_metadata("tenant", "t1")
        })
        .collect();
    journal
        .append("orders", ExpectedVersion::Any, events)
        .await
        .expect("append");
    let out = journal.reader().read("orders", 1, 1000).expect("read");
    common::shutdown(&journal).await;
    assert_eq!(out.len(), types.len());
    (tmp, out)
}

fn ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

fn http_sink(url: &str, keys: Vec<SigningKey>, timeout: Duration) -> HttpSink {
    HttpSink::new(HttpSinkOptions {
        name: "hook".into(),
        url: url.into(),
        keys,
        request_timeout: timeout,
        headers: vec![("X-Tenant".into(), "t1".into())],
    })
    .expect("valid sink options")
}

fn signed_sink(receiver: &Receiver) -> HttpSink {
    http_sink(
        &receiver.url(),
        vec![SigningKey::new(SECRET).unwrap()],
        Duration::from_secs(5),
    )
}

fn retry_after(outcome: Outcome) -> Option<u64> {
    match outcome {
        Outcome::Retry { retry_after_ms } => retry_after_ms,
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_delivered_signed_and_applied_once_per_event() {
    let (_tmp, events) = recorded(&["a", "b", "c"]).await;
    let receiver = Receiver::start(Schedule::default().secret(SECRET)).await;
    let sink = signed_sink(&receiver);
    let got = sink.deliver(&events).await;
    assert_eq!(got.batch, Outcome::Delivered);
    assert_eq!(got.detail, "");
    assert_eq!(got.per_event, vec![Some(Outcome::Delivered); 3]);
    assert_eq!(receiver.applied(), ids(&events));
    let seen = receiver.received_events();
    for (s, e) in seen.iter().zip(&events) {
        assert_eq!(s.idempotency_key, e.id);
        assert_eq!(s.id, e.id);
        assert_eq!(
            (s.stream.as_str(), s.version, s.position),
            ("orders", e.version, e.position)
        );
        assert_eq!(s.entity, e.entity);
        assert_eq!(s.payload["note"], "café \"x\"");
    }
    // Re-sending the same batch is acknowledged and deduplicated.
    assert_eq!(sink.deliver(&events).await.batch, Outcome::Delivered);
    assert_eq!(receiver.applied(), ids(&events));
    assert_eq!(receiver.duplicates(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_and_batch_size_headers() {
    let (_tmp, events) = recorded(&["a", "b"]).await;
    let receiver = Receiver::start(Schedule::default()).await;
    let sink = http_sink(&receiver.url(), Vec::new(), Duration::from_secs(5));
    assert_eq!(sink.deliver(&events[..1]).await.batch, Outcome::Delivered);
    assert_eq!(sink.deliver(&events).await.batch, Outcome::Delivered);
    assert_eq!(sink.deliver(&events).await.batch, Outcome::Delivered);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].idempotency_key, Some(events[0].id.to_string()));
    assert_eq!(requests[0].batch_size.as_deref(), Some("1"));
    let joined = format!("{},{}", events[0].id, events[1].id);
    let want = hex::encode(Sha256::digest(joined.as_bytes()));
    assert_eq!(requests[1].idempotency_key.as_deref(), Some(want.as_str()));
    assert_eq!(requests[1].batch_size.as_deref(), Some("2"));
    assert_eq!(
        requests[2].idempotency_key, requests[1].idempotency_key,
        "the same batch repeats the same key"
    );
    assert!(
        requests.iter().all(|r| r.signature.is_none()),
        "no keys, no signature"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_verifies_only_with_the_right_secret() {
    let (_tmp, events) = recorded(&["a"]).await;
    let receiver = Receiver::start(Schedule::default().secret(SECRET)).await;
    let wrong = http_sink(
        &receiver.url(),
        vec![SigningKey::new(b"some-other-secret-0123456789").unwrap()],
        Duration::from_secs(5),
    );
    let got = wrong.deliver(&events).await;
    assert_eq!(got.batch, Outcome::Permanent);
    assert_eq!(got.detail, "HTTP 401");
    let unsigned = http_sink(&receiver.url(), Vec::new(), Duration::from_secs(5));
    assert_eq!(unsigned.deliver(&events).await.batch, Outcome::Permanent);
    assert!(receiver.applied().is_empty());
    // Rotation: the new key first, the receiver's (old) one second.
    let rotating = http_sink(
        &receiver.url(),
        vec![
            SigningKey::new(b"the-new-secret-0123456789").unwrap(),
            SigningKey::new(SECRET).unwrap(),
        ],
        Duration::from_secs(5),
    );
    assert_eq!(rotating.deliver(&events).await.batch, Outcome::Delivered);
    let last = receiver.requests().pop().unwrap();
    let header = last.signature.unwrap();
    assert!(header.starts_with("t="), "{header}");
    assert_eq!(header.matches(",v1=").count(), 2, "{header}");
    assert_eq!(receiver.applied(), ids(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_outages_retry() {
    let (_tmp, events) = recorded(&["a", "b"]).await;
    let receiver = Receiver::start(Schedule::default()).await;
    let sink = http_sink(&receiver.url(), Vec::new(), Duration::from_secs(5));
    receiver.down();
    let got = sink.deliver(&events).await;
    assert_eq!(got.batch, RETRY);
    assert_eq!(got.detail, "HTTP 503");
    assert!(got.per_event.is_empty());
    receiver.up();
    receiver.outage_for(Duration::from_millis(300));
    assert_eq!(sink.deliver(&events).await.batch, RETRY);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sink.deliver(&events).await.batch, Outcome::Delivered);
    assert_eq!(receiver.applied(), ids(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_carries_retry_after() {
    let (_tmp, events) = recorded(&["a"]).await;
    let receiver = Receiver::start(Schedule::default().throttle(1..2, 2)).await;
    let sink = http_sink(&receiver.url(), Vec::new(), Duration::from_secs(5));
    let got = sink.deliver(&events).await;
    assert_eq!(got.detail, "HTTP 429");
    assert_eq!(retry_after(got.batch), Some(2000));
    assert_eq!(sink.deliver(&events).await.batch, Outcome::Delivered);
    receiver.throttle_for(Duration::from_secs(60), 7);
    assert_eq!(retry_after(sink.deliver(&events).await.batch), Some(7000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_permanent_or_conflict() {
    let (_tmp, events) = recorded(&["poison", "conflict"]).await;
    let receiver = Receiver::start(Schedule::default()).await;
    let sink = http_sink(&receiver.url(), Vec::new(), Duration::from_secs(5));
    let poison = sink.deliver(&events[..1]).await;
    assert_eq!(poison.batch, Outcome::Permanent);
    assert_eq!(poison.detail, "HTTP 400, 1 of 1 events refused");
    let conflict = sink.deliver(&events[1..]).await;
    assert_eq!(conflict.batch, Outcome::Conflict);
    assert_eq!(conflict.outcome_of(0), Outcome::Conflict);
    assert!(
        receiver.applied().is_empty(),
        "refused events are not applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_event_results_split_a_batch() {
    let (_tmp, events) = recorded(&["a", "conflict", "poison", "d"]).await;
    let receiver = Receiver::start(Schedule::default()).await;
    let sink = http_sink(&receiver.url(), Vec::new(), Duration::from_secs(5));
    let got = sink.deliver(&events).await;
    assert_eq!(got.batch, Outcome::Delivered);
    assert_eq!(got.detail, "HTTP 200, 2 of 4 events refused");
    let outcomes: Vec<Outcome> = (0..events.len()).map(|i| got.outcome_of(i)).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Delivered,
            Outcome::Conflict,
            Outcome::Permanent,
            Outcome::Delivered
        ]
    );
    assert_eq!(receiver.applied(), vec![events[0].id, events[3].id]);

    // An event's own 503 retries that event alone.
    receiver.set_schedule(Schedule::default().event_rule(|e| {
        if e.event_type == "a" {
            200
        } else {
            503
        }
    }));
    let got = sink.deliver(&events[..2]).await;
    assert_eq!(got.batch, Outcome::Delivered, "a mixed answer is a 200");
    assert_eq!(got.outcome_of(0), Outcome::Delivered);
    assert_eq!(got.outcome_of(1), RETRY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_retries_with_a_transport_detail() {
    let (_tmp, events) = recorded(&["a", "b"]).await;
    let receiver = Receiver::start(Schedule::default().reset_every(1)).await;
    let sink = http_sink(&receiver.url(), Vec::new(), Duration::from_secs(5));
    let got = sink.deliver(&events).await;
    assert_eq!(got.batch, RETRY);
    // A real TCP RST, not a status.
    assert_eq!(got.detail, "connection reset");
    assert!(receiver.requests()[0].reset);
    // Applied, then reset: the sender cannot know, and re-sends.
    assert_eq!(receiver.applied(), ids(&events));
    receiver.set_schedule(Schedule::default());
    assert_eq!(sink.deliver(&events).await.batch, Outcome::Delivered);
    assert_eq!(receiver.applied(), ids(&events));
    assert_eq!(receiver.duplicates(), 2);

    receiver.set_schedule(Schedule::default().reset_every(1).reset_before_apply());
    let (_tmp2, more) = recorded(&["c"]).await;
    assert_eq!(sink.deliver(&more).await.batch, RETRY);
    assert!(!receiver.applied().contains(&more[0].id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_times_out_and_retries() {
    let (_tmp, events) = recorded(&["a"]).await;
    let receiver =
        Receiver::start(Schedule::default().latency_every(1, Duration::from_secs(3))).await;
    let sink = http_sink(&receiver.url(), Vec::new(), Duration::from_millis(300));
    let started = Instant::now();
    let got = sink.deliver(&events).await;
    assert_eq!(got.batch, RETRY);
    assert_eq!(got.detail, "timeout after 300 ms");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// Cancel safety: an attempt dropped mid-request (the dispatcher's deadline)
/// leaves nothing behind, and the re-send is deduplicated by the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_attempt_can_simply_be_sent_again() {
    let (_tmp, events) = recorded(&["a", "b"]).await;
    let receiver =
        Receiver::start(Schedule::default().latency_every(1, Duration::from_millis(300))).await;
    let sink = http_sink(&receiver.url(), Vec::new(), Duration::from_secs(5));
    let dropped = tokio::time::timeout(Duration::from_millis(50), sink.deliver(&events)).await;
    assert!(dropped.is_err(), "the deadline passed first");
    receiver.set_schedule(Schedule::default());
    assert_eq!(sink.deliver(&events).await.batch, Outcome::Delivered);
    assert_eq!(receiver.applied(), ids(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_retries() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_tmp, events) = recorded(&["a"]).await;
    let sink = http_sink(
        &format!("http://127.0.0.1:{port}/hook"),
        Vec::new(),
        Duration::from_secs(5),
    );
    let got = sink.deliver(&events).await;
    assert_eq!(got.batch, RETRY);
    assert!(got.detail.starts_with("connection"), "{}", got.detail);
}

/// Resending every retried batch against a receiver that fails, resets and
/// throttles at random ends with every event applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_through_chaos_applies_every_event_once() {
    let types: Vec<&str> = vec!["e"; 40];
    let (_tmp, events) = recorded(&types).await;
    // Seed 7 lets requests 4 and 8 reach the reset (see `Schedule`): the
    // draws are deterministic, so this stays true.
    let schedule = Schedule::default()
        .failure_rate(0.3, 7)
        .reset_every(4)
        .throttle(2..3, 0);
    let receiver = Receiver::start(schedule).await;
    let sink = signed_sink(&receiver);
    let mut retries = 0;
    for batch in events.chunks(7) {
        loop {
            let got: SinkResponse = sink.deliver(batch).await;
            if got.batch == Outcome::Delivered {
                break;
            }
            assert!(matches!(got.batch, Outcome::Retry { .. }), "{got:?}");
            retries += 1;
            assert!(retries < 200, "no progress");
        }
    }
    assert!(retries > 0, "the schedule injected failures");
    assert_eq!(receiver.applied(), ids(&events));
    let unique: HashSet<Uuid> = receiver.applied().into_iter().collect();
    assert_eq!(unique.len(), events.len());
    assert!(
        receiver.duplicates() > 0,
        "reset-after-apply re-sends were deduplicated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_and_batch_key_follow_the_wire_format() {
    let (_tmp, events) = recorded(&["a", "b"]).await;
    let body = batch_body(&events).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let wire = v["events"].as_array().unwrap();
    assert_eq!(wire.len(), 2);
    for (w, e) in wire.iter().zip(&events) {
        assert_eq!(w["idempotency_key"], e.id.to_string());
        assert_eq!(w["id"], e.id.to_string());
        assert_eq!(w["type"], e.event_type);
        assert_eq!(
            w["payload"]["n"],
            serde_json::from_str::<serde_json::Value>(&e.payload).unwrap()["n"]
        );
    }
    assert_eq!(
        batch_idempotency_key(&events[..1]),
        events[0].id.to_string()
    );
    let joined = format!("{},{}", events[0].id, events[1].id);
    assert_eq!(
        batch_idempotency_key(&events),
        hex::encode(Sha256::digest(joined.as_bytes()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_event_results_map_by_key_and_tolerate_garbage() {
    let (_tmp, events) = recorded(&["a", "b", "c"]).await;
    let body = format!(
        r#"{{"results":[{{"idempotency_key":"{}","status":409}},{{"idempotency_key":"{}","status":200,"x":1}},{{"idempotency_key":"{}","status":400}},{{"idempotency_key":"{}","status":500}}]}}"#,
        events[2].id,
        events[0].id,
        Uuid::now_v7(),
        events[2].id,
    );
    assert_eq!(
        per_event_outcomes(&events, body.as_bytes()),
        vec![Some(Outcome::Delivered), None, Some(Outcome::Conflict)],
        "unknown keys ignored, the first report of a key counts"
    );
    let unknown_only = format!(
        r#"{{"results":[{{"idempotency_key":"{}","status":400}}]}}"#,
        Uuid::now_v7()
    );
    for garbage in [
        &b""[..],
        b"null",
        b"<html>",
        b"{\"results\":7}",
        b"{\"results\":[{\"idempotency_key\":\"nope\",\"status\":200}]}",
        b"{\"results\":[{\"idempotency_key\":\"00000000-0000-0000-0000-000000000000\",\"status\":70000}]}",
        b"\xff\xfe",
        unknown_only.as_bytes(),
    ] {
        assert!(per_event_outcomes(&events, garbage).is_empty());
    }
}

#[test]
fn sink_options_are_checked() {
    let opts = |url: &str| HttpSinkOptions {
        name: "hook".into(),
        url: url.into(),
        keys: Vec::new(),
        request_timeout: Duration::from_secs(5),
        headers: Vec::new(),
    };
    assert!(HttpSink::new(opts("http://127.0.0.1:1/hook")).is_ok());
    assert!(HttpSink::new(opts("https://example.com/")).is_ok());
    for bad in [
        "ftp://x/",
        "not a url",
        "/relative",
        "unix:/tmp/sock",
        "http://",
    ] {
        assert!(
            matches!(HttpSink::new(opts(bad)), Err(HttpSinkError::BadUrl { .. })),
            "{bad}"
        );
    }
    let mut o = opts("https://example.com/");
    o.headers = vec![("Idempotency-Key".into(), "x".into())];
    assert!(matches!(
        HttpSink::new(o),
        Err(HttpSinkError::BadHeader { .. })
    ));
    let mut o = opts("https://example.com/");
    o.headers = vec![("Authorization".into(), "Bearer\nsecret-token".into())];
    let err = HttpSink::new(o).unwrap_err();
    assert!(matches!(err, HttpSinkError::BadHeader { .. }));
    assert!(!err.to_string().contains("secret-token"), "{err}");
    let mut o = opts("https://user:pw@example.com/?token=secret-token");
    o.request_timeout = Duration::ZERO;
    let err = HttpSink::new(o).unwrap_err();
    assert!(matches!(err, HttpSinkError::BadOption { .. }));
    let mut o = opts("https://example.com/?token=secret-token");
    o.keys = vec![SigningKey::new(SECRET).unwrap(); 17];
    assert!(matches!(
        HttpSink::new(o),
        Err(HttpSinkError::BadOption { .. })
    ));
    let sink = HttpSink::new(opts("https://example.com/?token=secret-token")).unwrap();
    assert!(!format!("{sink:?}").contains("secret-token"));
}

fn read_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_lines_are_written_fsynced_and_appended_across_instances() {
    let (tmp, events) = recorded(&["a", "b", "c"]).await;
    let path = tmp.path().join("out").join("events.jsonl");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let sink = JsonlSink::open("file", &path).unwrap();
        assert_eq!(sink.name(), "file");
        assert_eq!(sink.deliver(&events[..2]).await, SinkResponse::delivered());
    }
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 2);
    for (line, e) in lines.iter().zip(&events) {
        assert_eq!(line["idempotency_key"], e.id.to_string());
        assert_eq!(line["version"], e.version);
        assert_eq!(line["payload"]["note"], "café \"x\"");
        assert_eq!(line["metadata"]["tenant"], "t1");
    }
    // A new instance appends; it never truncates.
    let sink = JsonlSink::open("file", &path).unwrap();
    assert_eq!(sink.deliver(&events[2..]).await, SinkResponse::delivered());
    let keys: Vec<String> = read_lines(&path)
        .iter()
        .map(|l| l["idempotency_key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        keys,
        events.iter().map(|e| e.id.to_string()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jsonl_concurrent_batches_do_not_interleave() {
    let (tmp, events) = recorded(&["x"; 50]).await;
    let path = tmp.path().join("events.jsonl");
    let sink = Arc::new(JsonlSink::open("file", &path).unwrap());
    let mut tasks = Vec::new();
    for chunk in events.chunks(5) {
        let sink = Arc::clone(&sink);
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move { sink.deliver(&chunk).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), SinkResponse::delivered());
    }
    let lines = read_lines(&path);
    assert_eq!(lines.len(), events.len());
    let keys: HashSet<&str> = lines
        .iter()
        .map(|l| l["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), events.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_sink_delivers_everything() {
    let (_tmp, events) = recorded(&["a", "b"]).await;
    let sink = LogSink::new("log");
    assert_eq!(sink.deliver(&events).await, SinkResponse::delivered());
}
