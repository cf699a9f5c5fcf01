//! `--server URL --token T`: the commands that work against a running
//! `ironclad serve` print exactly what they print against a local data
//! directory (SPEC §7), `tail` follows live events, and tokens are
//! enforced with clear errors. Real server processes on ephemeral ports.

use crate::serve_support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use serve_support::{ironclad, start, Server};

const ADMIN: &str = "admin-token-r";
const PRODUCER: &str = "producer-token-r";
const CONSUMER: &str = "consumer-token-r";
const TOKENS: &str = "admin:admin-token-r,producer:producer-token-r,consumer:consumer-token-r";

/// A webhook receiver that refuses (400, permanent) every event of type
/// `poison` and accepts the rest.
pub(crate) struct Hook {
    pub(crate) url: String,
    _runtime: tokio::runtime::Runtime,
}

async fn hook(Json(body): Json<Value>) -> Json<Value> {
    let results: Vec<Value> = body["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|ev| {
            let status = if ev["type"] == "poison" { 400 } else { 200 };
            json!({"idempotency_key": ev["idempotency_key"], "status": status})
        })
        .collect();
    Json(json!({ "results": results }))
}

impl Hook {
    pub(crate) fn start() -> Hook {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = Router::new().route("/hook", post(hook));
            axum::serve(listener, app).await.unwrap();
        });
        Hook {
            url: format!("http://{addr}/hook"),
            _runtime: runtime,
        }
    }
}

pub(crate) fn write_config(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("ironclad.toml");
    let text = format!(
        r#"
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

/// Runs the binary with `args` and `stdin`; no inherited `IRONCLAD_*`.
fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = ironclad();
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn ironclad");
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ironclad --data-dir D ARGS…`.
fn local(data: &Path, args: &[&str], stdin: &str) -> Output {
    let d = data.to_str().unwrap();
    let mut all = vec!["--data-dir", d];
    all.extend_from_slice(args);
    run(&all, &[], stdin)
}

/// `ironclad --server URL ARGS…` with the token from the environment.
fn remote(server: &Server, token: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut all = vec!["--server", server.base.as_str()];
    all.extend_from_slice(args);
    match token {
        Some(t) => run(&all, &[("IRONCLAD_TOKEN", t)], stdin),
        None => run(&all, &[], stdin),
    }
}

/// Replaces relative ages (`850ms`, `12.3s`, `4m05s`, …), which move
/// between two runs, and collapses the column padding they change.
fn without_ages(s: &str) -> String {
    let is_age = |tok: &str| {
        let t = tok.trim_start_matches('(');
        t.chars().next().is_some_and(|c| c.is_ascii_digit())
            && t.chars().any(|c| matches!(c, 's' | 'm' | 'h' | 'd'))
            && t.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 's' | 'm' | 'h' | 'd'))
    };
    s.lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| if is_age(t) { "AGE" } else { t })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that the local and remote runs printed the same thing and
/// exited the same way.
fn assert_same(what: &str, l: &Output, r: &Output, ages: bool) {
    let norm = |s: String| if ages { without_ages(&s) } else { s };
    assert_eq!(
        l.status.code(),
        r.status.code(),
        "{what}: exit codes differ; local stderr: {} remote stderr: {}",
        text(&l.stderr),
        text(&r.stderr)
    );
    assert_eq!(
        norm(text(&l.stdout)),
        norm(text(&r.stdout)),
        "{what}: stdout differs (remote stderr: {})",
        text(&r.stderr)
    );
}

pub(crate) fn envelope_lines(stream_tag: &str, n: usize, poison_at: &[usize]) -> String {
    let mut s = String::new();
    for i in 0..n {
        let ty = if poison_at.contains(&i) {
            "poison"
        } else {
            "order.placed"
        };
        let id = format!("0190a6f0-0000-7000-8000-{:012}", i + 1);
        s.push_str(
            &json!({"id": id, "type": ty, "entity": format!("{stream_tag}-{i}"), "payload": {"n": i, "z": [1, 2], "a": "x"}})
                .to_string(),
        );
        s.push('\n');
    }
    s
}

#[test]
fn append_prints_the_same_acks_and_rejections_locally_and_remotely() {
    let tmp = tempfile::tempdir().unwrap();
    let local_dir = tmp.path().join("local");
    let server_dir = tmp.path().join("server");
    let server = start(&server_dir, &[], &[("IRONCLAD_TOKENS", TOKENS)]);
    let mut input = envelope_lines("o", 5, &[]);
    input.push_str("not an envelope\n\n");
    input.push_str(&json!({"type": "", "payload": 1}).to_string());
    input.push('\n');
    input.push_str(
        &envelope_lines("p", 7, &[])
            .lines()
            .skip(5)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    input.push('\n');
    let args = ["append", "orders-1", "--envelope"];
    let l = local(&local_dir, &args, &input);
    let r = remote(&server, Some(PRODUCER), &args, &input);
    assert_eq!(l.status.code(), Some(4), "{}", text(&l.stderr));
    assert_same("append", &l, &r, false);
    assert_eq!(text(&l.stderr), text(&r.stderr), "append: stderr differs");
    assert_eq!(text(&l.stdout).lines().count(), 7);
    // Again, with --json: every event is acknowledged as already appended.
    let args = ["--json", "append", "orders-1", "--envelope"];
    let l = local(&local_dir, &args, &input);
    let r = remote(&server, Some(PRODUCER), &args, &input);
    assert_same("append --json (repeat)", &l, &r, false);
    assert_eq!(
        text(&l.stderr),
        text(&r.stderr),
        "append --json: stderr differs"
    );
    assert!(text(&r.stdout).contains("\"already_appended\":true"));
    // Expected versions: a wrong one rejects every line, as locally.
    let args = ["append", "orders-1", "--expected-version", "3"];
    let l = local(&local_dir, &args, "1\n2\n");
    let r = remote(&server, Some(PRODUCER), &args, "1\n2\n");
    assert_eq!(l.status.code(), Some(4));
    assert_eq!(r.status.code(), Some(4), "{}", text(&r.stderr));
    assert!(r.stdout.is_empty());
    // A large import is batched and acknowledged in order.
    let big: String = (0..5_000).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    let r = remote(&server, Some(PRODUCER), &["append", "bulk"], &big);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let versions: Vec<u64> = text(&r.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["version"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(versions, (1..=5_000).collect::<Vec<_>>());
}

#[test]
fn read_streams_status_dlq_dump_and_ledger_print_the_same_locally_and_remotely() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let hook = Hook::start();
    let config = write_config(tmp.path(), &hook.url);
    let config_s = config.to_str().unwrap();
    let out = local(
        &data,
        &["append", "orders-1", "--envelope"],
        &envelope_lines("o", 6, &[1, 4]),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = local(
        &data,
        &["append", "misc"],
        "{\"b\": 1, \"a\": 2}\n[1, 2.50]\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = local(
        &data,
        &["run", "--exit-when-idle", "--config", config_s],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // An emergency dump to list (listing does not parse it).
    let emergency = data.join("emergency");
    std::fs::create_dir_all(&emergency).unwrap();
    std::fs::write(
        emergency.join("dump-00000000000000000001-1-0190a6f0000070008000000000000001.jsonl"),
        "{}\n",
    )
    .unwrap();

    // The DLQ commands take the data-directory lock: run them locally
    // while no server runs, then remotely.
    let dlq_cmds: Vec<Vec<&str>> = vec![
        vec!["dlq", "stats"],
        vec!["dlq", "list"],
        vec!["dlq", "list", "--limit", "1"],
        vec![
            "dlq",
            "list",
            "--reason",
            "permanent",
            "--stream",
            "orders-1",
        ],
        vec!["dlq", "show", "hook", "2"],
    ];
    let mut local_dlq = Vec::new();
    for args in &dlq_cmds {
        for json in [false, true] {
            let mut a = if json { vec!["--json"] } else { vec![] };
            a.extend_from_slice(args);
            let out = local(&data, &a, "");
            assert!(out.status.success(), "{a:?}: {}", text(&out.stderr));
            local_dlq.push((a, out));
        }
    }
    assert!(text(&local_dlq[0].1.stdout).contains("permanent=2"));
    // `dlq export`, to stdout and to a file: run locally now, remotely
    // below, and compare stdout, stderr, exit code and the file's bytes.
    let export_file = tmp.path().join("export.jsonl");
    let export_s = export_file.to_str().unwrap();
    let export_cmds: Vec<Vec<&str>> = vec![
        vec!["dlq", "export"],
        vec!["--json", "dlq", "export"],
        vec![
            "dlq",
            "export",
            "--sink",
            "hook",
            "--reason",
            "permanent",
            "--stream",
            "orders-1",
        ],
        vec!["dlq", "export", "--failed-before-ms", "1"],
        vec!["dlq", "export", "--sink", "nope"],
        vec!["dlq", "export", "--out", export_s],
        vec![
            "--json", "dlq", "export", "--sink", "hook", "--out", export_s,
        ],
    ];
    let mut local_exports = Vec::new();
    for a in &export_cmds {
        let _ = std::fs::remove_file(&export_file);
        let out = local(&data, a, "");
        let file = std::fs::read(&export_file).ok();
        local_exports.push((a, out, file));
    }
    let everything = &local_exports[0].1;
    assert!(everything.status.success(), "{}", text(&everything.stderr));
    assert_eq!(text(&everything.stdout).lines().count(), 2);
    assert_eq!(text(&everything.stderr), "exported 2 dead letters\n");
    assert_eq!(local_exports[4].1.status.code(), Some(1));
    assert_eq!(
        local_exports[5].2.as_deref(),
        Some(everything.stdout.as_slice()),
        "--out writes what stdout gets"
    );

    let server = start(
        &data,
        &["--config", config_s],
        &[("IRONCLAD_TOKENS", TOKENS)],
    );
    for (a, l) in &local_dlq {
        let r = remote(&server, Some(ADMIN), a, "");
        assert_same(&format!("{a:?}"), l, &r, true);
    }
    for (a, l, local_file) in &local_exports {
        let _ = std::fs::remove_file(&export_file);
        let r = remote(&server, Some(ADMIN), a, "");
        assert_same(&format!("{a:?}"), l, &r, false);
        if l.status.success() {
            assert_eq!(text(&l.stderr), text(&r.stderr), "{a:?}: stderr differs");
        }
        let remote_file = std::fs::read(&export_file).ok();
        assert_eq!(local_file, &remote_file, "{a:?}: the files differ");
    }

    // Read-only commands work locally while the server runs.
    let same: Vec<Vec<&str>> = vec![
        vec!["read", "orders-1"],
        vec!["read", "orders-1", "--from", "2", "--limit", "3"],
        vec!["read", "misc"],
        vec!["read", "misc", "--from", "99"],
        vec!["streams"],
        vec!["dump", "list"],
        vec!["ledger", "verify"],
        vec!["ledger", "verify", "--stream", "misc"],
    ];
    for args in &same {
        for json in [false, true] {
            let mut a = if json { vec!["--json"] } else { vec![] };
            a.extend_from_slice(args);
            let l = local(&data, &a, "");
            assert!(l.status.success(), "{a:?}: {}", text(&l.stderr));
            let r = remote(&server, Some(ADMIN), &a, "");
            assert_same(&format!("{a:?}"), &l, &r, false);
        }
    }
    // A stream that has no events is an error both ways (HTTP: 404), with
    // the same message; past the end of one that has is no lines, exit 0.
    for json in [false, true] {
        let mut a = if json { vec!["--json"] } else { vec![] };
        a.extend_from_slice(&["read", "no-such-stream"]);
        let l = local(&data, &a, "");
        let r = remote(&server, Some(ADMIN), &a, "");
        assert_eq!(l.status.code(), Some(1), "{}", text(&l.stderr));
        assert_same("read no-such-stream", &l, &r, false);
        assert_eq!(text(&l.stderr), text(&r.stderr));
        let e = text(&l.stderr);
        assert!(
            e.contains("no-such-stream") && e.contains("has no events"),
            "{e}"
        );
    }
    let past = local(&data, &["read", "misc", "--from", "99"], "");
    assert!(past.status.success() && past.stdout.is_empty());
    // `status`: locally from the config's routes, remotely from the server's.
    for json in [false, true] {
        let mut a = if json { vec!["--json"] } else { vec![] };
        let l = local(
            &data,
            &[a.clone(), vec!["status", "--config", config_s]].concat(),
            "",
        );
        assert!(l.status.success(), "{}", text(&l.stderr));
        a.push("status");
        let r = remote(&server, Some(ADMIN), &a, "");
        assert_same("status", &l, &r, false);
    }
    // The payloads come back byte for byte as stored.
    let r = remote(&server, Some(ADMIN), &["read", "misc"], "");
    assert!(
        text(&r.stdout).contains(r#""payload":{"b":1,"a":2}"#),
        "{}",
        text(&r.stdout)
    );
    assert!(
        text(&r.stdout).contains(r#""payload":[1,2.50]"#),
        "{}",
        text(&r.stdout)
    );
    // `ledger verify --against` an exported head.
    let head = text(&local(&data, &["ledger", "head"], "").stdout);
    let a = ["ledger", "verify", "--against", head.trim()];
    assert_same(
        "verify --against",
        &local(&data, &a, ""),
        &remote(&server, Some(ADMIN), &a, ""),
        false,
    );
    // A head the log never had: exit 3 either way, same report.
    let bad = json!({"position": 1, "hash": "00".repeat(32)}).to_string();
    for json in [false, true] {
        let mut a = if json { vec!["--json"] } else { vec![] };
        a.extend_from_slice(&["ledger", "verify", "--against", &bad]);
        let l = local(&data, &a, "");
        let r = remote(&server, Some(ADMIN), &a, "");
        assert_eq!(l.status.code(), Some(3), "{}", text(&l.stderr));
        assert_same("verify mismatch", &l, &r, false);
        assert_eq!(text(&l.stderr), text(&r.stderr));
    }
    // Commands that only make sense locally refuse --server (usage, 2).
    for a in [vec!["migrate"], vec!["demo"], vec!["ledger", "head"]] {
        let r = remote(&server, Some(ADMIN), &a, "");
        assert_eq!(r.status.code(), Some(2), "{a:?}: {}", text(&r.stderr));
        assert!(text(&r.stderr).contains("local"), "{}", text(&r.stderr));
    }
    // DLQ retry and purge act through the admin API.
    let r = remote(
        &server,
        Some(ADMIN),
        &[
            "--json",
            "dlq",
            "retry",
            "--sink",
            "hook",
            "--position",
            "2",
        ],
        "",
    );
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert_eq!(text(&r.stdout).trim(), r#"{"retried":1}"#);
    let r = remote(&server, Some(ADMIN), &["dlq", "retry"], "");
    assert_eq!(
        r.status.code(),
        Some(2),
        "a bare retry is refused before any request"
    );
}

/// Reads lines from a child's pipe on a thread.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn spawn_tail(
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let mut cmd = ironclad();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    (child, out, err)
}

fn take_lines(rx: &mpsc::Receiver<String>, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("tail printed only {i} of {n} lines"))
        })
        .collect()
}

#[test]
fn tail_follows_live_events_locally_and_remotely() {
    let tmp = tempfile::tempdir().unwrap();
    // Remote.
    let server = start(&tmp.path().join("s"), &[], &[("IRONCLAD_TOKENS", TOKENS)]);
    let r = remote(
        &server,
        Some(PRODUCER),
        &["append", "orders"],
        "{\"old\":1}\n",
    );
    assert!(r.status.success());
    let (mut child, out, err) = spawn_tail(
        &["--server", &server.base, "tail", "orders"],
        &[("IRONCLAD_TOKEN", CONSUMER)],
    );
    let ready = err
        .recv_timeout(Duration::from_secs(30))
        .expect("tail announces itself");
    assert!(ready.contains("after position 1"), "{ready}");
    for (stream, body) in [
        ("orders", "{\"n\":1}"),
        ("other", "{\"x\":1}"),
        ("orders", "{\"n\":2}"),
        ("orders", "{\"n\":3}"),
    ] {
        let r = remote(
            &server,
            Some(PRODUCER),
            &["append", stream],
            &format!("{body}\n"),
        );
        assert!(r.status.success(), "{}", text(&r.stderr));
    }
    let got = take_lines(&out, 3);
    let _ = child.kill();
    let _ = child.wait();
    let read = remote(
        &server,
        Some(CONSUMER),
        &["read", "orders", "--from", "2"],
        "",
    );
    let want: Vec<String> = text(&read.stdout).lines().map(str::to_string).collect();
    assert_eq!(got, want, "tail prints the new events as read does");

    // Local, while another process appends.
    let data = tmp.path().join("l");
    let out = local(&data, &["append", "orders"], "{\"old\":1}\n");
    assert!(out.status.success());
    let (mut child, out, err) = spawn_tail(
        &["--data-dir", data.to_str().unwrap(), "tail", "--all"],
        &[],
    );
    let ready = err
        .recv_timeout(Duration::from_secs(30))
        .expect("tail announces itself");
    assert!(ready.contains("every stream after position 1"), "{ready}");
    let a = local(&data, &["append", "orders"], "{\"n\":1}\n{\"n\":2}\n");
    assert!(a.status.success());
    let b = local(&data, &["append", "other"], "{\"x\":1}\n");
    assert!(b.status.success());
    let got = take_lines(&out, 3);
    let _ = child.kill();
    let _ = child.wait();
    let mut want: Vec<String> = text(&local(&data, &["read", "orders", "--from", "2"], "").stdout)
        .lines()
        .map(str::to_string)
        .collect();
    want.extend(
        text(&local(&data, &["read", "other"], "").stdout)
            .lines()
            .map(str::to_string),
    );
    assert_eq!(got, want);
}

#[test]
fn tokens_are_required_and_roles_enforced_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&tmp.path().join("d"), &[], &[("IRONCLAD_TOKENS", TOKENS)]);
    // No token.
    let r = remote(&server, None, &["append", "s"], "{\"a\":1}\n");
    assert_eq!(r.status.code(), Some(1));
    let e = text(&r.stderr);
    assert!(e.contains("unauthorized") && e.contains("--token"), "{e}");
    let r = remote(&server, None, &["dlq", "stats"], "");
    assert_eq!(r.status.code(), Some(1));
    // A wrong token, with --json: the error is JSON.
    let r = remote(&server, Some("nope"), &["--json", "streams"], "");
    assert_eq!(r.status.code(), Some(1));
    let v: Value = serde_json::from_str(text(&r.stderr).trim()).expect("JSON error");
    assert_eq!(v["error"]["exit_code"], 1);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unauthorized"));
    // The producer appends, but may not use the admin API.
    let r = remote(&server, Some(PRODUCER), &["append", "s"], "{\"a\":1}\n");
    assert!(r.status.success(), "{}", text(&r.stderr));
    let r = remote(&server, Some(PRODUCER), &["dlq", "stats"], "");
    assert_eq!(r.status.code(), Some(1));
    let e = text(&r.stderr);
    assert!(e.contains("forbidden") && e.contains("admin"), "{e}");
    // The token is never echoed.
    assert!(!e.contains(PRODUCER));
    // The flag works as well as the environment variable.
    let r = run(
        &["--server", &server.base, "--token", ADMIN, "dlq", "stats"],
        &[],
        "",
    );
    assert!(r.status.success(), "{}", text(&r.stderr));
    // An unreachable server is a clear failure.
    let r = run(&["--server", "http://127.0.0.1:1", "streams"], &[], "");
    assert!(
        r.stdout.is_empty(),
        "no table header before the error: {}",
        text(&r.stdout)
    );
    assert_eq!(r.status.code(), Some(1));
    assert!(
        text(&r.stderr).contains("ironclad serve"),
        "{}",
        text(&r.stderr)
    );
    let r = run(&["--server", "localhost:7070", "streams"], &[], "");
    assert_eq!(
        r.status.code(),
        Some(2),
        "a URL without a scheme is a usage error"
    );
}
