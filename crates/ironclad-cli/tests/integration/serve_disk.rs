//! A full disk that recovers, against the real `ironclad serve` process:
//! the test lowers the server's file-size limit with `prlimit` (the server
//! runs with SIGXFSZ ignored, so its writes fail with EFBIG as on a full
//! disk, and the WAL cannot grow), then lifts it. Guards: a failed append
//! says what to do and when to retry; `/readyz` answers 503 naming the
//! cause while writes fail, even when idle, and 200 once there is room,
//! with no append needed (the writer's probe write); after that recovery,
//! SIGTERM stops the server with exit status 0.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::serve_support::{client, event, send, start_ignoring_sigxfsz, Answer};

/// Sets the soft file-size limit of process `pid` (bytes, or `unlimited`).
fn set_fsize(pid: u32, soft: &str) {
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--fsize={soft}:unlimited"))
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success(), "prlimit --fsize={soft} failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_readiness_until_room_returns_then_sigterm_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start_ignoring_sigxfsz(dir.path(), &[]);
    let http = client();
    let url = server.url("/v1/streams/fill/events");
    let ready = || send(http.get(server.url("/readyz")));
    let pad = "x".repeat(8 * 1024);
    let body = |n: u128| json!({ "events": [event(n, json!({ "pad": pad }))] });
    assert_eq!(send(http.post(&url).json(&body(0))).await.status, 201);
    assert_eq!(ready().await.status, 200);

    let wal = std::fs::metadata(dir.path().join("ironclad.db-wal")).map_or(0, |m| m.len());
    set_fsize(server.pid(), &(wal + 32 * 1024).to_string());
    let mut refused: Option<Answer> = None;
    for n in 1..200 {
        let a = send(http.post(&url).json(&body(n))).await;
        if a.status != 201 {
            refused = Some(a);
            break;
        }
    }
    let refused = refused.expect("the file-size limit was hit");
    assert!(
        matches!(refused.status, 503 | 507) && refused.retry_after.is_some(),
        "a retryable refusal with Retry-After: {} {}",
        refused.status,
        refused.json
    );
    let message = refused.json["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("free disk space"), "{message}");

    let unready = ready().await;
    assert_eq!(unready.status, 503, "{}", unready.json);
    let why = unready.json["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("writes to the journal are failing") && why.contains("free disk space"),
        "{why}"
    );
    // Idle, with no room, the probe write keeps failing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(ready().await.status, 503, "still full, still unready");

    set_fsize(server.pid(), "unlimited");
    let lifted = Instant::now();
    while ready().await.status != 200 {
        assert!(
            lifted.elapsed() < Duration::from_secs(10),
            "readiness returns once there is room, with no append"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "ready again {} ms after room returned",
        lifted.elapsed().as_millis()
    );
    assert_eq!(send(http.post(&url).json(&body(1000))).await.status, 201);

    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let status = server.signal_and_wait("-TERM");
        (status, server.stderr())
    })
    .await
    .expect("wait");
    assert!(
        status.success(),
        "a server whose disk recovered exits 0 on SIGTERM: {status:?}\n{stderr}"
    );
}
