//! Body admission over real HTTP on loopback (`ironclad_server::body_budget`):
//! the bodies of the requests in flight share `inflight_body_bytes_max`
//! (503 `server_busy` with `Retry-After` beyond it, nothing appended, the
//! budget whole again afterwards), and a `Content-Length` over
//! `body_bytes_max` is 413 at once, from the header alone.
//!
//! Requests that must be in flight together are raw TCP connections that
//! send `Expect: 100-continue`: hyper answers `100 Continue` only once the
//! handler reads the body, that is once the body was admitted, so the test
//! knows the reservation is held without sleeping.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ironclad::{Durability, Journal};
use ironclad_server::config::ServerConfig;
use ironclad_server::serve;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Patience for any one answer.
const PATIENCE: Duration = Duration::from_secs(20);
/// The one-body limit of these tests.
const BODY_MAX: usize = 1 << 20;
/// The in-flight budget: two holders of [`HOLDER_BYTES`] fit, with
/// [`BUDGET_MAX`] − 2 × [`HOLDER_BYTES`] = 97,152 bytes to spare.
const BUDGET_MAX: usize = 2 << 20;
/// The declared body of each holder.
const HOLDER_BYTES: usize = 1_000_000;

/// `ironclad serve`'s server, in this process, on an ephemeral port.
struct Running {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(edit: impl FnOnce(&mut ServerConfig)) -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ServerConfig {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..ServerConfig::default()
        };
        config.journal.durability = Durability::Os;
        edit(&mut config);
        let journal = Journal::open(config.journal_config()).expect("open journal");
        let server = serve::bind(config, journal, None).await.expect("bind");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = server
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Running {
            _dir: dir,
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(PATIENCE, &mut self.task).await;
    }
}

/// An append body of exactly `bytes` bytes (one event, padded payload).
fn append_body(n: u128, bytes: usize) -> Vec<u8> {
    let id = uuid::Uuid::from_u128(0x0190_a6f0_0000_7000_8000_0000_0000_0000 + n);
    let head = format!(r#"{{"events":[{{"id":"{id}","type":"t","payload":""#);
    let tail = r#""}]}"#;
    let pad = bytes - head.len() - tail.len();
    let mut body = head.into_bytes();
    body.resize(body.len() + pad, b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

/// An HTTP answer read off a raw connection.
struct RawAnswer {
    status: u16,
    head: String,
    json: serde_json::Value,
}

/// Reads one response (head, then `content-length` bytes of body).
async fn read_answer(conn: &mut TcpStream) -> RawAnswer {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(PATIENCE, conn.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
    let status = head[9..12].parse().expect("status code");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("content-length"));
    let mut body = got[head_end..].to_vec();
    while body.len() < length {
        let n = tokio::time::timeout(PATIENCE, conn.read(&mut buf))
            .await
            .expect("the body in time")
            .expect("read");
        assert!(n > 0, "closed inside the body");
        body.extend_from_slice(&buf[..n]);
    }
    RawAnswer {
        status,
        head,
        json: serde_json::from_slice(&body[..length]).unwrap_or_default(),
    }
}

/// An append in flight holding its reservation: headers sent, admitted
/// (`100 Continue` received), half of the body sent.
struct Holder {
    conn: TcpStream,
    rest: Vec<u8>,
}

impl Holder {
    async fn start(addr: SocketAddr, stream: &str, n: u128) -> Holder {
        let body = append_body(n, HOLDER_BYTES);
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /v1/streams/{stream}/events HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.expect("write head");
        let answer = read_answer(&mut conn).await;
        assert_eq!(
            answer.status, 100,
            "a holder is admitted: {} {}",
            answer.head, answer.json
        );
        let (first, rest) = body.split_at(body.len() / 2);
        conn.write_all(first).await.expect("write half");
        Holder {
            conn,
            rest: rest.to_vec(),
        }
    }

    /// Sends the rest of the body; the append's answer.
    async fn finish(mut self) -> RawAnswer {
        self.conn.write_all(&self.rest).await.expect("write rest");
        read_answer(&mut self.conn).await
    }
}

async fn events_in(http: &reqwest::Client, server: &Running, stream: &str) -> usize {
    let url = server.url(&format!("/v1/streams/{stream}/events"));
    let resp = http.get(url).send().await.expect("read");
    if resp.status() == 404 {
        return 0;
    }
    let page: serde_json::Value = resp.json().await.expect("page");
    page["events"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_beyond_the_inflight_budget_are_503_server_busy_and_the_budget_comes_back() {
    let server = Running::start(|c| {
        c.limits.body_bytes_max = BODY_MAX;
        c.limits.inflight_body_bytes_max = BUDGET_MAX;
    })
    .await;
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("client");
    let append = |stream: &str, body: Vec<u8>| {
        http.post(server.url(&format!("/v1/streams/{stream}/events")))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let a = Holder::start(server.addr, "held", 1).await;
    let b = Holder::start(server.addr, "held", 2).await;

    // 2,000,000 of 2,097,152 bytes are reserved: 200 kB do not fit.
    let busy = append("busy", append_body(10, 200_000))
        .await
        .expect("send");
    assert_eq!(busy.status(), 503);
    assert_eq!(
        busy.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let json: serde_json::Value = busy.json().await.expect("a JSON body");
    assert_eq!(json["error"]["code"], "server_busy", "{json}");
    assert_eq!(
        json["error"]["details"]["inflight_body_bytes_max"],
        BUDGET_MAX
    );
    assert_eq!(
        events_in(&http, &server, "busy").await,
        0,
        "nothing appended"
    );

    // A chunked body (no Content-Length) reserves body_bytes_max.
    let mut chunked = TcpStream::connect(server.addr).await.expect("connect");
    chunked
        .write_all(b"POST /v1/streams/busy/events HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
        .await
        .expect("write");
    let refused = read_answer(&mut chunked).await;
    assert_eq!(
        (refused.status, &refused.json["error"]["code"]),
        (503, &"server_busy".into())
    );

    // What fits is served while the holders wait.
    let small = append("small", append_body(11, 90_000))
        .await
        .expect("send");
    assert_eq!(small.status(), 201, "{:?}", small.text().await);

    assert_eq!(a.finish().await.status, 201);
    assert_eq!(b.finish().await.status, 201);
    assert_eq!(events_in(&http, &server, "held").await, 2);

    // Every reservation came back: the whole budget admits two holders
    // and the 200 kB append again (a leak of as little as 97 kB would not).
    let a = Holder::start(server.addr, "again", 3).await;
    let b = Holder::start(server.addr, "again", 4).await;
    assert_eq!(a.finish().await.status, 201);
    assert_eq!(b.finish().await.status, 201);
    let retried = append("busy", append_body(10, 200_000))
        .await
        .expect("send");
    assert_eq!(retried.status(), 201);
    assert_eq!(events_in(&http, &server, "busy").await, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_over_the_limit_is_413_at_once_from_the_header_alone() {
    let server = Running::start(|c| {
        c.limits.body_bytes_max = 4096;
        c.limits.request_timeout_ms = 60_000;
    })
    .await;
    let mut conn = TcpStream::connect(server.addr).await.expect("connect");
    let started = Instant::now();
    conn.write_all(b"POST /v1/streams/s/events HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"ev")
        .await
        .expect("write");
    let answer = read_answer(&mut conn).await;
    let took = started.elapsed();
    assert_eq!(answer.status, 413, "{}", answer.head);
    assert_eq!(
        answer.json["error"]["code"], "body_too_large",
        "{}",
        answer.json
    );
    assert_eq!(answer.json["error"]["details"]["max"], 4096);
    assert_eq!(answer.json["error"]["details"]["bytes"], 100_000);
    assert!(
        took < Duration::from_secs(2),
        "answered after {took:?}; the request timeout is 60 s"
    );
    server.stop().await;
}
