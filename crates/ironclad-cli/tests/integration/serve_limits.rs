//! Every request limit of `ironclad serve`, against real server processes:
//! body size (413 `body_too_large`), events per request (400
//! `too_many_events`), JSON depth (400 `json_too_deep`), the header read
//! timeout (a slowloris client is disconnected), the request timeout (a
//! body that never arrives gets 408 `timeout`), and the connection limit
//! (one connection over it gets 503 `too_many_connections`).

use crate::serve_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use serve_support::{client, event, send, start};

#[tokio::test(flavor = "multi_thread")]
async fn body_events_and_depth_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(
        dir.path(),
        &[],
        &[
            ("IRONCLAD_BODY_BYTES_MAX", "4096"),
            ("IRONCLAD_EVENTS_PER_REQUEST_MAX", "3"),
            ("IRONCLAD_JSON_DEPTH_MAX", "10"),
        ],
    );
    let http = client();
    let url = server.url("/v1/streams/s/events");

    let big = json!({"events": [event(1, json!("x".repeat(5000)))]});
    let a = send(http.post(&url).json(&big)).await;
    assert_eq!(
        (a.status, a.code()),
        (413, Some("body_too_large")),
        "{}",
        a.json
    );

    let four: Vec<_> = (0..4).map(|i| event(i, json!(i as u64))).collect();
    let a = send(http.post(&url).json(&json!({"events": four}))).await;
    assert_eq!((a.status, a.code()), (400, Some("too_many_events")));
    assert_eq!(a.json["error"]["details"]["max"], 3);

    let nest = |n: usize| format!("{}0{}", "[".repeat(n), "]".repeat(n));
    let deep = format!(r#"{{"events":[{{"type":"t","payload":{}}}]}}"#, nest(11));
    let a = send(
        http.post(&url)
            .header("content-type", "application/json")
            .body(deep),
    )
    .await;
    assert_eq!((a.status, a.code()), (400, Some("json_too_deep")));
    let ok = format!(r#"{{"events":[{{"type":"t","payload":{}}}]}}"#, nest(10));
    assert_eq!(
        send(
            http.post(&url)
                .header("content-type", "application/json")
                .body(ok)
        )
        .await
        .status,
        201
    );
}

/// Reads until EOF, an error, or `limit`; returns what arrived and when the
/// connection ended.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Instant>) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into(), Some(Instant::now())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into(), Some(Instant::now())),
        }
    }
    (String::from_utf8_lossy(&got).into(), None)
}

#[test]
fn slow_headers_are_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), &[], &[("IRONCLAD_HEADER_TIMEOUT_MS", "500")]);
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    let started = Instant::now();
    stream
        .write_all(b"GET /v1/streams HTTP/1.1\r\nHost: localhost\r\n")
        .expect("write");
    // Trickle one header byte every 100 ms, never finishing the head.
    let mut closed = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        if stream.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        let _ = stream.set_nonblocking(true);
        let mut buf = [0u8; 1024];
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(
                    text.starts_with("HTTP/1.1 408"),
                    "only a 408 may answer: {text}"
                );
                closed = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
        let _ = stream.set_nonblocking(false);
    }
    assert!(closed, "a slowloris client was not disconnected");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(4),
        "disconnected after {took:?}, want about the 500 ms header timeout"
    );
}

#[test]
fn a_body_that_never_arrives_is_408_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), &[], &[("IRONCLAD_REQUEST_TIMEOUT_MS", "500")]);
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .write_all(b"POST /v1/streams/s/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ev")
        .expect("write");
    let (text, closed) = read_until_closed(&mut stream, Duration::from_secs(5));
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"timeout""#), "{text}");
    let _ = closed;
}

#[test]
fn one_connection_over_the_limit_is_503_too_many_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), &[], &[("IRONCLAD_CONNECTIONS_MAX", "2")]);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(server.addr).expect("connect");
    third
        .write_all(b"GET /v1/streams HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let (text, closed) = read_until_closed(&mut third, Duration::from_secs(5));
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains(r#""code":"too_many_connections""#), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
    assert!(closed.is_some(), "the refused connection is closed");

    // Closing the held connections frees their slots.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(server.addr).expect("connect");
        s.write_all(b"GET /v1/streams HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("write");
        let (text, _) = read_until_closed(&mut s, Duration::from_secs(5));
        if text.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "slots were not freed: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
