//! Shared helpers for the `ironclad serve` process tests: start the real
//! binary on an ephemeral port, read its address from stdout, stop it with
//! a signal, and talk HTTP to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `ironclad serve`.
pub struct Server {
    child: Child,
    /// The bound address.
    pub addr: SocketAddr,
    /// `http://addr`.
    pub base: String,
    /// The data directory.
    pub data_dir: PathBuf,
    stderr: mpsc::Receiver<String>,
}

/// A command for the binary with no inherited `IRONCLAD_*` variables.
pub fn ironclad() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ironclad"));
    for (k, _) in std::env::vars() {
        if k.starts_with("IRONCLAD_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Starts `ironclad serve --listen 127.0.0.1:0 --data-dir DIR ARGS…` with
/// `env`, and waits for its `listening on` line.
pub fn start(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    try_start(data_dir, args, env).unwrap_or_else(|e| panic!("server did not start: {e}"))
}

/// Like [`start`], but returns the exit status and stderr if the server
/// exits instead of listening.
pub fn try_start(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Server, String> {
    try_start_with(ironclad(), data_dir, args, env)
}

/// Like [`start`], but through `sh`, with SIGXFSZ ignored: a process that
/// passes its file-size limit (`prlimit --fsize`) then sees its writes fail
/// with EFBIG, as on a full disk, instead of being killed.
pub fn start_ignoring_sigxfsz(data_dir: &Path, args: &[&str]) -> Server {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("trap '' XFSZ && exec \"$0\" \"$@\"")
        .arg(ironclad().get_program());
    for (k, _) in std::env::vars() {
        if k.starts_with("IRONCLAD_") {
            sh.env_remove(k);
        }
    }
    try_start_with(sh, data_dir, args, &[]).unwrap_or_else(|e| panic!("server did not start: {e}"))
}

/// Starts `cmd serve …` (see [`try_start`]).
fn try_start_with(
    mut cmd: Command,
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Server, String> {
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (line_tx, line_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match line_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let addr: SocketAddr =
                        addr.trim().parse().map_err(|e| format!("{line}: {e}"))?;
                    let base = format!("http://{addr}");
                    return Ok(Server {
                        child,
                        addr,
                        base,
                        data_dir: data_dir.to_path_buf(),
                        stderr: err_rx,
                    });
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            std::thread::sleep(Duration::from_millis(100));
            let err: Vec<String> = err_rx.try_iter().collect();
            return Err(format!("exited with {status}: {}", err.join("\n")));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("no `listening on` line in time".into());
        }
    }
}

impl Server {
    /// A URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `-TERM`) and waits for the exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP client with short timeouts.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A decoded answer.
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// `Retry-After`, if any.
    pub retry_after: Option<String>,
    /// The body as JSON (`Null` if not JSON).
    pub json: serde_json::Value,
}

impl Answer {
    /// The error code of an error body.
    pub fn code(&self) -> Option<&str> {
        self.json["error"]["code"].as_str()
    }
}

/// Sends a request and decodes the answer.
pub async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = resp.bytes().await.unwrap_or_default();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        retry_after,
        json,
    }
}

/// One event with a fixed id (`n` picks it).
pub fn event(n: u128, payload: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "id": uuid::Uuid::from_u128(0x0190_a6f0_0000_7000_8000_0000_0000_0000 + n).to_string(),
        "type": "test.event",
        "payload": payload,
    })
}
