//! The real server (`serve::bind` + `Server::run`, our accept loop and
//! connection wrapper) on 127.0.0.1:0 over a journal in a temp dir, and a
//! raw-TCP HTTP/1.1 client, for tests about bytes on the wire (headers the
//! HTTP clients will not send, heads hyper refuses).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ironclad::delivery::config::DeliveryConfig;
use ironclad::delivery::engine::DeliveryEngine;
use ironclad::{Durability, Journal};
use ironclad_server::serve::{self, ServeError};
use ironclad_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any one exchange may take.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running server.
pub struct Served {
    /// The bound address.
    pub addr: SocketAddr,
    /// The journal it serves.
    pub journal: Journal,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
    _dir: tempfile::TempDir,
}

/// Starts a server with `edit` applied to its configuration, and a
/// delivery engine when `delivery_toml` is given (`{dir}` in it is replaced
/// by the temp dir).
pub async fn start(edit: impl FnOnce(&mut ServerConfig), delivery_toml: Option<&str>) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        ..ServerConfig::default()
    };
    config.journal.durability = Durability::Os;
    edit(&mut config);
    let journal = Journal::open(config.journal_config()).expect("open journal");
    let engine = match delivery_toml {
        Some(text) => {
            let text = text.replace("{dir}", &dir.path().display().to_string());
            let delivery = DeliveryConfig::from_toml_str(&text).expect("delivery config");
            let engine = DeliveryEngine::start(journal.clone(), delivery)
                .await
                .expect("engine starts");
            Some(Arc::new(engine))
        }
        None => None,
    };
    let server = serve::bind(config, journal.clone(), engine)
        .await
        .expect("bind");
    let addr = server.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Served {
        addr,
        journal,
        stop: Some(tx),
        task: Some(task),
        _dir: dir,
    }
}

impl Served {
    /// Shuts the server down and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(PATIENCE, task).await;
        }
    }

    /// Sends `method path` with `headers` (a `Host` of the bound address
    /// unless one is given) and `body`, and reads the answer.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Raw {
        let mut head = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("host: {}\r\n", self.addr));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        raw(self.addr, bytes).await
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// An answer as read off the socket.
#[derive(Debug)]
pub struct Raw {
    /// The status code.
    pub status: u16,
    /// The head, lower-cased.
    pub head: String,
    /// The body (everything after the head, up to the close).
    pub body: Vec<u8>,
}

impl Raw {
    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The error code of an error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Writes `request` (from a task of its own, so a server that stops
/// reading cannot stall the test) and reads until the server closes.
pub async fn raw(addr: SocketAddr, request: Vec<u8>) -> Raw {
    let mut bytes = raw_bytes(addr, request).await;
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let body = bytes.split_off((split + 4).min(bytes.len()));
    let head = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Raw { status, head, body }
}

/// Everything the server writes back for `request`, until it closes.
pub async fn raw_bytes(addr: SocketAddr, request: Vec<u8>) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        // Keep the write half open: a FIN might end the exchange early.
        tokio::time::sleep(PATIENCE).await;
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, read.read_to_end(&mut out)).await;
    writer.abort();
    out
}
