//! Requests hyper refuses before any router runs (issue 9 #17) answer with
//! the API's JSON error body, not hyper's empty one: raw TCP against the
//! real server (its connection wrapper is what is tested).

use crate::served::{raw, raw_bytes, start, Raw};

/// Sends `request` to a fresh server and checks the answer is `status`
/// with a JSON error of `code`.
async fn refused(request: Vec<u8>, status: u16, code: &str) -> Raw {
    let server = start(|_| {}, None).await;
    let r = raw(server.addr, request).await;
    assert_eq!(r.status, status, "{}", r.head);
    assert!(
        r.head.contains("content-type: application/json"),
        "{}",
        r.head
    );
    assert!(
        r.head
            .contains(&format!("content-length: {}\r\n", r.body.len())),
        "{}",
        r.head
    );
    let json = r.json();
    assert_eq!(json["error"]["code"], code, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{json}"
    );
    assert!(json["error"]["details"].is_object(), "{json}");
    server.stop().await;
    r
}

#[tokio::test]
async fn a_garbage_request_line_is_400_bad_request() {
    refused(b"GARBAGE\r\n\r\n".to_vec(), 400, "bad_request").await;
    refused(
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn raw_0xff_in_the_path_is_400_bad_request() {
    refused(
        b"GET /v1/streams/\xff\xfe HTTP/1.1\r\nhost: localhost\r\n\r\n".to_vec(),
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_http_version_is_400_bad_request() {
    refused(
        b"GET /healthz HTTP/2.0\r\nhost: localhost\r\n\r\n".to_vec(),
        400,
        "bad_request",
    )
    .await;
    refused(
        b"GET /healthz HTTP/1.7\r\nhost: localhost\r\n\r\n".to_vec(),
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn malformed_headers_are_400_bad_request() {
    for header in [
        "bad header: x",
        "content-length: ten",
        "content-length: 1\r\ncontent-length: 2",
    ] {
        let request =
            format!("POST /v1/streams/s/events HTTP/1.1\r\nhost: localhost\r\n{header}\r\n\r\n");
        refused(request.into_bytes(), 400, "bad_request").await;
    }
}

#[tokio::test]
async fn a_1_mib_header_is_431_headers_too_large() {
    let mut request = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    request.extend_from_slice(b"\r\n\r\n");
    refused(request, 431, "headers_too_large").await;
}

#[tokio::test]
async fn ten_thousand_headers_are_431_headers_too_large() {
    let mut request = String::from("GET /healthz HTTP/1.1\r\nhost: localhost\r\n");
    for i in 0..10_000 {
        request.push_str(&format!("x-h{i}: v\r\n"));
    }
    request.push_str("\r\n");
    refused(request.into_bytes(), 431, "headers_too_large").await;
}

#[tokio::test]
async fn a_target_over_64_kib_is_414_uri_too_long() {
    let request = format!(
        "GET /v1/streams?after={} HTTP/1.1\r\nhost: localhost\r\n\r\n",
        "a".repeat(70_000)
    );
    refused(request.into_bytes(), 414, "uri_too_long").await;
}

/// A good request then garbage on one connection: the first answer passes
/// through untouched, the second is the JSON error.
#[tokio::test]
async fn an_answer_before_the_refused_head_is_untouched() {
    let server = start(|_| {}, None).await;
    let request = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\nGARBAGE\r\n\r\n".to_vec();
    let bytes = raw_bytes(server.addr, request).await;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let second = text.find("HTTP/1.1 400 ").unwrap_or(0);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(second > 0, "two answers: {text}");
    let (first, refusal) = text.split_at(second);
    assert!(
        first.contains(r#""status":"ok""#) || first.contains("ok"),
        "{first}"
    );
    assert!(refusal.starts_with("HTTP/1.1 400 "), "{refusal}");
    assert!(refusal.contains(r#""code":"bad_request""#), "{refusal}");
    server.stop().await;
}

/// The limit the module documents: an HTTP/2 preface gets no answer at
/// all (hyper closes; an HTTP/1 body would mean nothing to an h2 client).
#[tokio::test]
async fn an_http2_preface_is_closed_without_an_answer() {
    let server = start(|_| {}, None).await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let bytes = raw_bytes(server.addr, preface).await;
    assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
    server.stop().await;
}
