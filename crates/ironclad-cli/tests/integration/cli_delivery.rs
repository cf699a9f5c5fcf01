//! End-to-end tests of the delivery commands (`run`, `status`, `dlq …`):
//! real `ironclad` processes delivering to a real loopback HTTP receiver
//! started inside the test. Guards: every appended event reaches the
//! receiver (once per idempotency key on a clean run), refused events land
//! in the DLQ with reason `permanent` and can be listed, shown, exported,
//! retried and purged (archived, never just deleted), `status` works while
//! `run` holds the lock, SIGTERM stops `run` gracefully (exit 0, lock
//! released, nothing lost even when a batch in flight is released), and
//! bad configurations are usage errors (exit 2) that name the problem.

#![cfg(unix)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

// ---------------------------------------------------------------- receiver

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Accepted deliveries per idempotency key.
    accepted: HashMap<String, u32>,
    /// Refusals per idempotency key.
    refused: HashMap<String, u32>,
    /// Event types by key.
    types: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct Shared {
    seen: Arc<Mutex<Seen>>,
    /// Answer 400 for events whose `type` is `poison`.
    refuse_poison: Arc<AtomicBool>,
    /// Wait this long before answering (and recording) a batch.
    delay_ms: Arc<AtomicU64>,
    /// Requests received so far (counted on arrival, before any delay).
    requests: Arc<AtomicU64>,
}

/// A loopback webhook receiver. Answers 200 with per-event results
/// (`{"results":[{"idempotency_key","status"}]}`): 400 for poison events
/// while `refuse_poison` is set, 200 for the rest.
struct Receiver {
    addr: SocketAddr,
    shared: Shared,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let shared = Shared::default();
        shared.refuse_poison.store(true, Ordering::SeqCst);
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(shared.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            addr,
            shared,
            _runtime: runtime,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn accepted(&self) -> HashMap<String, u32> {
        self.shared.seen.lock().unwrap().accepted.clone()
    }

    fn refused(&self) -> HashMap<String, u32> {
        self.shared.seen.lock().unwrap().refused.clone()
    }

    fn set_refuse_poison(&self, on: bool) {
        self.shared.refuse_poison.store(on, Ordering::SeqCst);
    }

    fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    fn set_delay_ms(&self, ms: u64) {
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }
}

async fn hook(State(shared): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let refuse = shared.refuse_poison.load(Ordering::SeqCst);
    let mut results = Vec::new();
    let mut seen = shared.seen.lock().unwrap();
    for ev in body["events"].as_array().cloned().unwrap_or_default() {
        let key = ev["idempotency_key"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ty = ev["type"].as_str().unwrap_or_default().to_string();
        let status = if refuse && ty == "poison" { 400 } else { 200 };
        let slot = if status == 200 {
            &mut seen.accepted
        } else {
            &mut seen.refused
        };
        *slot.entry(key.clone()).or_default() += 1;
        seen.types.insert(key.clone(), ty);
        results.push(json!({"idempotency_key": key, "status": status}));
    }
    Json(json!({ "results": results }))
}

// ----------------------------------------------------------------- helpers

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ironclad"));
    c.env_remove("IRONCLAD_DATA_DIR");
    c
}

fn data(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn ironclad(dir: &Path) -> Command {
    let mut c = bin();
    c.arg("--data-dir").arg(data(dir));
    c
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("spawn ironclad");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Appends envelope lines to `stream`; returns the acked ids in order.
fn append(dir: &Path, stream: &str, lines: &[Value]) -> Vec<String> {
    let mut cmd = ironclad(dir);
    cmd.args(["append", stream, "--envelope"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    json_lines(&out.stdout)
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

fn orders(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"type": "order.placed", "payload": {"n": i}}))
        .collect()
}

/// A config with one http sink `hook` routed `orders-*`, fast retries.
fn write_config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let path = dir.join("ironclad.toml");
    let text = format!(
        r#"{extra}
[[delivery.sinks]]
name = "hook"
kind = "http"
url = "{url}"
secret = "0123456789abcdef0123456789abcdef"
request_timeout_ms = 5000
[delivery.sinks.batch]
events_max = 20
linger_ms = 0
[delivery.sinks.retry]
delay_ms_base = 10
delay_ms_max = 50
attempts_max = 3

[[delivery.routes]]
streams = "orders-*"
sink = "hook"
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run_until_idle(dir: &Path, config: &Path) -> Vec<Value> {
    let mut cmd = ironclad(dir);
    cmd.args(["--json", "run", "--exit-when-idle", "--config"])
        .arg(config);
    let out = ok(cmd);
    let lines = json_lines(&out.stdout);
    let last = lines.last().expect("run printed nothing");
    assert_eq!(last["event"], "stopped", "{lines:?}");
    assert_eq!(last["in_flight_settled"], true);
    lines
}

/// `status --json` for sink `hook`.
fn status(dir: &Path, config: &Path) -> Value {
    let mut cmd = ironclad(dir);
    cmd.args(["--json", "status", "--config"]).arg(config);
    let doc = json_lines(&ok(cmd).stdout).remove(0);
    doc["sinks"]
        .as_array()
        .expect("one document {\"sinks\":[…]}")
        .iter()
        .find(|l| l["sink"] == "hook")
        .cloned()
        .expect("sink hook in status")
}

fn dlq(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = ironclad(dir);
    cmd.arg("--json").arg("dlq").args(args);
    cmd.output().unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(child: &Child) {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Waits for a child to exit, killing it after `timeout`.
fn wait_exit(mut child: Child, timeout: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "ironclad run did not exit within {timeout:?}:\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                stderr_of(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `ironclad --json run` (no --exit-when-idle) and waits for its
/// `started` line, by which time it holds the lock.
fn spawn_run(
    dir: &Path,
    config: &Path,
    extra: &[&str],
) -> (Child, std::thread::JoinHandle<Vec<String>>) {
    let mut cmd = ironclad(dir);
    cmd.args(["--json", "run", "--config"])
        .arg(config)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let _ = tx.send(line.clone());
            lines.push(line);
        }
        lines
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("run printed its started line");
    assert!(first.contains("\"event\":\"started\""), "{first}");
    (child, reader)
}

// ------------------------------------------------------------------- tests

#[test]
fn run_delivers_every_event_once_and_status_shows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let config = write_config(tmp.path(), &rx.url(), "");
    let mut ids = append(tmp.path(), "orders-1", &orders(30));
    ids.extend(append(tmp.path(), "orders-2", &orders(25)));
    append(tmp.path(), "audit", &orders(5)); // not routed

    let lines = run_until_idle(tmp.path(), &config);
    let stopped = lines.last().unwrap();
    assert_eq!(stopped["sinks"][0]["delivered_total"], 55);

    let accepted = rx.accepted();
    assert_eq!(
        accepted.len(),
        ids.len(),
        "every routed event, nothing else"
    );
    for id in &ids {
        assert_eq!(accepted.get(id), Some(&1), "{id} delivered exactly once");
    }
    let s = status(tmp.path(), &config);
    assert_eq!(s["pending"], 0);
    assert_eq!(s["delivered_total"], 55);
    assert_eq!(s["dlq_entries"], 0);
    assert_eq!(s["pending_complete"], true);
    assert!(s["cursor_position"].as_u64().unwrap() >= 55);

    // Without --config the routes are unknown and status says so.
    let mut cmd = ironclad(tmp.path());
    cmd.arg("status");
    let human = String::from_utf8(ok(cmd).stdout).unwrap();
    assert!(human.contains("hook"), "{human}");
    assert!(human.contains("routes unknown"), "{human}");

    // A second run finds nothing to do and sends nothing again.
    run_until_idle(tmp.path(), &config);
    assert_eq!(rx.accepted(), accepted);
}

#[test]
fn poison_events_go_to_the_dlq_and_can_be_listed_shown_exported_retried_and_purged() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let config = write_config(tmp.path(), &rx.url(), "");
    let mut lines = orders(10);
    lines.insert(3, json!({"type": "poison", "payload": {"bad": 1}}));
    lines.insert(7, json!({"type": "poison", "payload": {"bad": 2}}));
    let ids = append(tmp.path(), "orders-1", &lines);
    let poison: Vec<&String> = vec![&ids[3], &ids[7]];

    run_until_idle(tmp.path(), &config);
    assert_eq!(rx.accepted().len(), 10, "the good events are delivered");
    let s = status(tmp.path(), &config);
    assert_eq!(
        (
            s["pending"].as_u64(),
            s["delivered_total"].as_u64(),
            s["dlq_entries"].as_u64()
        ),
        (Some(0), Some(10), Some(2)),
        "conservation: 12 = 10 delivered + 2 dead-lettered + 0 pending"
    );

    // list
    let out = dlq(tmp.path(), &["list"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let page = json_lines(&out.stdout).remove(0);
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(page["next"].is_null(), "page not full, no cursor");
    for (e, id) in entries.iter().zip(&poison) {
        assert_eq!(e["sink"], "hook");
        assert_eq!(e["reason"], "permanent");
        assert_eq!(&e["event_id"], *id);
        assert_eq!(e["event"]["type"], "poison");
    }
    // filters and pagination
    let out = dlq(tmp.path(), &["list", "--reason", "max_attempts"]);
    assert_eq!(json_lines(&out.stdout)[0]["entries"], json!([]));
    let out = dlq(
        tmp.path(),
        &[
            "list", "--sink", "hook", "--stream", "orders-1", "--limit", "1",
        ],
    );
    let page = json_lines(&out.stdout).remove(0);
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    let next = page["next"]
        .as_str()
        .expect("full page → next cursor")
        .to_string();
    let out = dlq(tmp.path(), &["list", "--limit", "1", "--after", &next]);
    let page2 = json_lines(&out.stdout).remove(0);
    assert_eq!(&page2["entries"][0]["event_id"], poison[1]);
    let mut human = ironclad(tmp.path());
    human.args(["dlq", "list", "--limit", "1"]);
    let text = String::from_utf8(ok(human).stdout).unwrap();
    assert!(text.contains(&format!("next: {next}")), "{text}");
    let out = dlq(tmp.path(), &["list", "--reason", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("max_attempts, permanent"));

    // show
    let position = entries[0]["position"].as_u64().unwrap().to_string();
    let out = dlq(tmp.path(), &["show", "hook", &position]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let shown = json_lines(&out.stdout).remove(0);
    assert_eq!(&shown["event_id"], poison[0]);
    assert_eq!(shown["event"]["payload"], json!({"bad": 1}));
    let out = dlq(tmp.path(), &["show", "hook", "999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("no dead letter"),
        "{}",
        stderr_of(&out)
    );

    // export: stdout and --out
    let out = dlq(tmp.path(), &["export"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let exported = json_lines(&out.stdout);
    assert_eq!(exported.len(), 2);
    assert_eq!(exported[1]["event"]["payload"], json!({"bad": 2}));
    let file = tmp.path().join("dlq.jsonl");
    let out = dlq(
        tmp.path(),
        &[
            "export",
            "--reason",
            "permanent",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(json_lines(&out.stdout)[0]["exported"], 2);
    assert_eq!(json_lines(&std::fs::read(&file).unwrap()), exported);

    // retry: a bare retry is refused; --all moves both back.
    let out = dlq(tmp.path(), &["retry"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("--all"), "{}", stderr_of(&out));
    let out = dlq(tmp.path(), &["retry", "--all"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(json_lines(&out.stdout)[0]["retried"], 2);
    let s = status(tmp.path(), &config);
    assert_eq!(
        (
            s["dlq_entries"].as_u64(),
            s["retry_rows"].as_u64(),
            s["pending"].as_u64()
        ),
        (Some(0), Some(2), Some(2))
    );

    // The receiver now accepts them: the next run delivers them.
    rx.set_refuse_poison(false);
    run_until_idle(tmp.path(), &config);
    for id in &poison {
        assert_eq!(rx.accepted().get(*id), Some(&1));
        assert_eq!(rx.refused().get(*id), Some(&1));
    }
    let s = status(tmp.path(), &config);
    assert_eq!(
        (
            s["pending"].as_u64(),
            s["delivered_total"].as_u64(),
            s["dlq_entries"].as_u64()
        ),
        (Some(0), Some(12), Some(0))
    );

    // New poison, refused again; retry one by position, then purge.
    rx.set_refuse_poison(true);
    let more = append(
        tmp.path(),
        "orders-2",
        &[
            json!({"type": "poison", "payload": 1}),
            json!({"type": "poison", "payload": 2}),
            json!({"type": "poison", "payload": 3}),
        ],
    );
    run_until_idle(tmp.path(), &config);
    assert_eq!(status(tmp.path(), &config)["dlq_entries"], 3);
    let out = dlq(tmp.path(), &["list", "--stream", "orders-2"]);
    let first_pos = json_lines(&out.stdout)[0]["entries"][0]["position"]
        .as_u64()
        .unwrap()
        .to_string();
    let out = dlq(
        tmp.path(),
        &["retry", "--sink", "hook", "--position", &first_pos],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(json_lines(&out.stdout)[0]["retried"], 1);
    let out = dlq(tmp.path(), &["purge"]);
    assert_eq!(out.status.code(), Some(2), "a bare purge is refused");
    let out = dlq(tmp.path(), &["purge", "--all"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let report = json_lines(&out.stdout).remove(0);
    assert_eq!(report["archived"], 2);
    let archive_dir = data(tmp.path()).join("dlq-archive");
    assert_eq!(
        Path::new(report["archive_dir"].as_str().unwrap()),
        archive_dir
    );
    let files: Vec<_> = std::fs::read_dir(&archive_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".jsonl.gz"), "{files:?}");
    assert_eq!(report["files"].as_array().unwrap().len(), 1);
    let s = status(tmp.path(), &config);
    assert_eq!(
        (
            s["dlq_entries"].as_u64(),
            s["dlq_archived"].as_u64(),
            s["retry_rows"].as_u64()
        ),
        (Some(0), Some(2), Some(1))
    );
    let out = dlq(tmp.path(), &["stats"]);
    let st = json_lines(&out.stdout).remove(0)["sinks"][0].clone();
    assert_eq!(
        (st["entries"].as_u64(), st["archived_total"].as_u64()),
        (Some(0), Some(2))
    );
    assert!(more.len() == 3);
}

#[test]
fn sigterm_stops_run_gracefully_and_status_works_meanwhile() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let config = write_config(tmp.path(), &rx.url(), "");
    let ids = append(tmp.path(), "orders-1", &orders(40));
    let (child, reader) = spawn_run(tmp.path(), &config, &[]);

    wait_for("every event delivered", Duration::from_secs(30), || {
        rx.accepted().len() == ids.len()
    });
    // status works while run holds the lock, and sees the progress.
    wait_for(
        "status shows nothing pending",
        Duration::from_secs(30),
        || status(tmp.path(), &config)["pending"] == 0,
    );
    assert_eq!(status(tmp.path(), &config)["delivered_total"], 40);
    // Writers are refused with the documented exit code and pid.
    let out = dlq(tmp.path(), &["stats"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("locked by pid {}", child.id())),
        "{}",
        stderr_of(&out)
    );
    // So is a second engine.
    let mut second = ironclad(tmp.path());
    second
        .args(["run", "--exit-when-idle", "--config"])
        .arg(&config);
    assert_eq!(second.output().unwrap().status.code(), Some(5));
    // `append` is a writer too.
    let mut app = ironclad(tmp.path());
    app.args(["append", "orders-1"]);
    assert_eq!(app.output().unwrap().status.code(), Some(5));

    sigterm(&child);
    let out = wait_exit(child, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let lines: Vec<Value> = reader
        .join()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stopping = lines.iter().find(|l| l["event"] == "stopping").unwrap();
    assert_eq!(stopping["reason"], "SIGTERM");
    let stopped = lines.last().unwrap();
    assert_eq!(stopped["event"], "stopped");
    assert_eq!(stopped["in_flight_settled"], true);

    // The lock is released: a writer works again, and nothing was lost.
    let out = dlq(tmp.path(), &["stats"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let mut read = ironclad(tmp.path());
    read.args(["read", "orders-1"]);
    assert_eq!(json_lines(&ok(read).stdout).len(), 40);
    for id in &ids {
        assert_eq!(rx.accepted().get(id), Some(&1));
    }
}

#[test]
fn sigterm_mid_batch_releases_it_and_the_next_run_delivers_it() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    rx.set_delay_ms(3_000);
    let config = write_config(tmp.path(), &rx.url(), "");
    let ids = append(tmp.path(), "orders-1", &orders(50));
    let (child, reader) = spawn_run(tmp.path(), &config, &["--shutdown-deadline-ms", "100"]);
    // The first batch is out; the receiver holds it for 3 s.
    wait_for("the first batch to arrive", Duration::from_secs(30), || {
        rx.requests() > 0
    });
    sigterm(&child);
    let out = wait_exit(child, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let lines: Vec<Value> = reader
        .join()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stopped = lines.last().unwrap();
    assert_eq!(stopped["event"], "stopped");
    assert_eq!(
        stopped["in_flight_settled"], false,
        "the batch in flight was released: {lines:?}"
    );
    let s = status(tmp.path(), &config);
    assert!(s["pending"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(
        s["pending"].as_u64().unwrap() + s["delivered_total"].as_u64().unwrap(),
        50,
        "conservation after an interrupted batch"
    );

    rx.set_delay_ms(0);
    run_until_idle(tmp.path(), &config);
    let accepted = rx.accepted();
    for id in &ids {
        assert!(accepted.contains_key(id), "{id} never delivered");
    }
    let s = status(tmp.path(), &config);
    assert_eq!(
        (s["pending"].as_u64(), s["delivered_total"].as_u64()),
        (Some(0), Some(50))
    );
}

#[test]
fn bad_configs_are_usage_errors_that_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |text: &str| {
        let path = tmp.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let mut cmd = ironclad(tmp.path());
        cmd.args(["run", "--exit-when-idle", "--config"]).arg(&path);
        cmd.output().unwrap()
    };
    let cases: [(&str, &str); 5] = [
        ("", "no sinks"),
        (
            "[[delivery.sinks]]\nname = \"a\"\nkind = \"log\"\nbogus_key = 1\n",
            "bogus_key",
        ),
        (
            "[[delivery.sinks]]\nname = \"a\"\nkind = \"log\"\n[[delivery.routes]]\nstreams = \"*\"\nsink = \"b\"\n",
            "sink `b` is not defined",
        ),
        (
            "[[delivery.sinks]]\nname = \"h\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\n",
            "secret",
        ),
        ("this is not toml", "bad.toml"),
    ];
    for (text, needle) in cases {
        let out = run(text);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains(needle),
            "{text:?}: expected {needle:?} in {}",
            stderr_of(&out)
        );
    }
    let mut missing = ironclad(tmp.path());
    missing
        .args(["run", "--config"])
        .arg(tmp.path().join("nope.toml"));
    let out = missing.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("nope.toml"), "{}", stderr_of(&out));
    assert!(
        !data(tmp.path()).exists(),
        "a refused config touches no data"
    );
}

#[test]
fn data_dir_comes_from_the_config_unless_given() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let from_file = tmp.path().join("from-file");
    let config = write_config(
        tmp.path(),
        &rx.url(),
        &format!("data_dir = {:?}", from_file.to_str().unwrap()),
    );
    let mut app = bin();
    app.arg("--data-dir")
        .arg(&from_file)
        .args(["append", "orders-9"]);
    app.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = app.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"1\n2\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());

    // No --data-dir: the file's data_dir is used.
    let mut run = bin();
    run.current_dir(tmp.path())
        .args(["--json", "run", "--exit-when-idle", "--config"])
        .arg(&config);
    ok(run);
    assert_eq!(rx.accepted().len(), 2);
    let mut st = bin();
    st.current_dir(tmp.path())
        .args(["--json", "status", "--config"])
        .arg(&config);
    let s = json_lines(&ok(st).stdout).remove(0)["sinks"][0].clone();
    assert_eq!(s["delivered_total"], 2);
    let mut stats = bin();
    stats
        .current_dir(tmp.path())
        .args(["--json", "dlq", "stats", "--config"])
        .arg(&config);
    assert_eq!(json_lines(&ok(stats).stdout)[0]["sinks"][0]["sink"], "hook");
    assert!(!tmp.path().join("ironclad-data").exists());

    // --data-dir wins over the file.
    let mut st = ironclad(tmp.path());
    st.args(["status", "--config"]).arg(&config);
    let out = st.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("no database"),
        "{}",
        stderr_of(&out)
    );
}
