//! End-to-end tests of the `ironclad` binary: real processes, real data
//! directories. Guards the CLI contract: pipelined append with per-line
//! errors, documented exit codes, read/streams/ledger output, tamper
//! detection through the CLI, the data-directory lock across processes,
//! migrate --status, demo and bench.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn ironclad(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ironclad"));
    c.arg("--data-dir").arg(dir.join("data"));
    c.env_remove("IRONCLAD_DATA_DIR");
    c
}

fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ironclad");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Runs `cmd` and returns its output, failing the test with its stderr
/// unless it succeeded.
fn succeeds(mut cmd: Command) -> Output {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    out
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn append(dir: &Path, stream: &str, input: &str) -> Output {
    let mut cmd = ironclad(dir);
    cmd.args(["append", stream]);
    run_with_stdin(cmd, input)
}

#[test]
fn append_pipelines_acks_in_order_and_reports_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let input = "{\"n\":1}\nnot json\n{\"n\":2}\n\n[1,2,3]\n{\"n\":\n";
    let out = append(tmp.path(), "orders", input);
    assert_eq!(out.status.code(), Some(4), "some lines rejected → exit 4");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2:"), "names the bad line: {stderr}");
    assert!(
        stderr.contains("line 6:"),
        "names the truncated line: {stderr}"
    );
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    let acks = json_lines(&out.stdout);
    assert_eq!(acks.len(), 3, "three good lines acked");
    for (i, ack) in acks.iter().enumerate() {
        assert_eq!(ack["stream"], "orders");
        assert_eq!(ack["version"], (i + 1) as u64, "acks in input order");
        assert!(ack["id"].as_str().is_some_and(|s| s.len() == 36));
    }
    let mut read = ironclad(tmp.path());
    read.args(["read", "orders"]);
    let out = read.output().unwrap();
    assert!(out.status.success());
    let raw = String::from_utf8_lossy(&out.stdout);
    assert!(
        raw.contains(r#""payload":[1,2,3]"#),
        "stored compact, printed verbatim: {raw}"
    );
    let events = json_lines(&out.stdout);
    let payloads: Vec<&Value> = events.iter().map(|e| &e["payload"]).collect();
    assert_eq!(
        payloads,
        [
            &serde_json::json!({"n":1}),
            &serde_json::json!({"n":2}),
            &serde_json::json!([1, 2, 3])
        ]
    );
    assert_eq!(events[0]["id"], acks[0]["id"]);
}

#[test]
fn expected_version_is_enforced_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(append(tmp.path(), "s", "1\n2\n").status.success());
    let mut cmd = ironclad(tmp.path());
    cmd.args(["append", "s", "--expected-version", "2"]);
    let ok = run_with_stdin(cmd, "3\n4\n");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let versions: Vec<u64> = json_lines(&ok.stdout)
        .iter()
        .map(|a| a["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [3, 4]);
    let mut cmd = ironclad(tmp.path());
    cmd.args(["append", "s", "--expected-version", "1"]);
    let bad = run_with_stdin(cmd, "5\n");
    assert_eq!(bad.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("wrong expected version"));
}

#[test]
fn streams_head_and_verify_agree() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(append(tmp.path(), "a", "1\n2\n3\n").status.success());
    assert!(append(tmp.path(), "b", "4\n").status.success());
    let mut streams = ironclad(tmp.path());
    streams.args(["--json", "streams"]);
    let heads = json_lines(&streams.output().unwrap().stdout).remove(0)["streams"].clone();
    assert_eq!(heads.as_array().map(Vec::len), Some(2));
    assert_eq!(
        (heads[0]["stream"].as_str(), heads[0]["version"].as_u64()),
        (Some("a"), Some(3))
    );
    let mut head = ironclad(tmp.path());
    head.args(["ledger", "head"]);
    let head = json_lines(&head.output().unwrap().stdout).remove(0);
    assert_eq!(head["position"], 4);
    let mut verify = ironclad(tmp.path());
    verify.args(["--json", "ledger", "verify"]);
    let out = verify.output().unwrap();
    assert!(out.status.success());
    let report = json_lines(&out.stdout).remove(0);
    assert_eq!(report["ok"], true);
    assert_eq!(report["checked"], 4);
    assert_eq!(report["head"], head);
}

#[test]
fn tampering_and_truncation_fail_verify_with_exit_3() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(append(
        tmp.path(),
        "ledger",
        "{\"amount\":100}\n{\"amount\":200}\n{\"amount\":300}\n"
    )
    .status
    .success());
    let mut head = ironclad(tmp.path());
    head.args(["ledger", "head"]);
    let head_file = tmp.path().join("head.json");
    std::fs::write(&head_file, head.output().unwrap().stdout).unwrap();

    let db = rusqlite::Connection::open(tmp.path().join("data/ironclad.db")).unwrap();
    let err = db.execute(
        "UPDATE events SET payload = '{\"amount\":999}' WHERE position = 2",
        [],
    );
    assert!(err.unwrap_err().to_string().contains("append-only"));
    db.execute_batch("DROP TRIGGER events_append_only_update")
        .unwrap();
    db.execute(
        "UPDATE events SET payload = '{\"amount\":900}' WHERE position = 2",
        [],
    )
    .unwrap();
    drop(db);

    let mut verify = ironclad(tmp.path());
    verify.args(["ledger", "verify"]);
    let out = verify.output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("EventHash")
            && stderr.contains("\"ledger\"")
            && stderr.contains("version 2")
            && stderr.contains("position 2"),
        "{stderr}"
    );

    // Truncation: restore a consistent log without the tail, then check against the old head.
    let tmp2 = tempfile::tempdir().unwrap();
    assert!(append(tmp2.path(), "t", "1\n2\n3\n").status.success());
    let mut head = ironclad(tmp2.path());
    head.args(["ledger", "head"]);
    let saved = String::from_utf8(head.output().unwrap().stdout).unwrap();
    let db = rusqlite::Connection::open(tmp2.path().join("data/ironclad.db")).unwrap();
    db.execute_batch(
        "DROP TRIGGER events_append_only_delete; DELETE FROM events WHERE position = 3; \
         UPDATE streams SET version = 2, head_hash = (SELECT hash FROM events WHERE position = 2)",
    )
    .unwrap();
    drop(db);
    let mut plain = ironclad(tmp2.path());
    plain.args(["ledger", "verify"]);
    assert!(
        plain.output().unwrap().status.success(),
        "chain alone cannot see a clean truncation"
    );
    let mut against = ironclad(tmp2.path());
    against.args(["ledger", "verify", "--against", saved.trim()]);
    let out = against.output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HeadMissing"));
    let mut bad_head = ironclad(tmp2.path());
    bad_head.args(["ledger", "verify", "--against", head_file.to_str().unwrap()]);
    assert_eq!(
        bad_head.output().unwrap().status.code(),
        Some(3),
        "a head from another log does not match"
    );
}

#[test]
fn second_process_gets_locked_by_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let mut first = ironclad(tmp.path());
    first
        .args(["append", "s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = first.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"1\n").unwrap();
    stdin.flush().unwrap();
    // Wait for the first ack: by then the lock is certainly held.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("\"version\":1"), "{line}");
    let second = append(tmp.path(), "s", "2\n");
    assert_eq!(second.status.code(), Some(5), "locked → exit 5");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("locked by pid {}", child.id())),
        "{stderr}"
    );
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert!(
        append(tmp.path(), "s", "2\n").status.success(),
        "lock released on exit"
    );
}

#[test]
fn migrate_status_and_migrate() {
    let tmp = tempfile::tempdir().unwrap();
    let mut status = ironclad(tmp.path());
    status.args(["--json", "migrate", "--status"]);
    let s = json_lines(&status.output().unwrap().stdout).remove(0);
    assert_eq!(s["db_version"], 0);
    let mut migrate = ironclad(tmp.path());
    migrate.args(["--json", "migrate"]);
    let m = json_lines(&migrate.output().unwrap().stdout).remove(0);
    assert_eq!(
        m["applied"],
        serde_json::json!((1..=ironclad::store::sqlite::SCHEMA_VERSION).collect::<Vec<_>>())
    );
    let mut again = ironclad(tmp.path());
    again.args(["--json", "migrate"]);
    let m = json_lines(&again.output().unwrap().stdout).remove(0);
    assert_eq!(m["applied"], serde_json::json!([]), "re-running is a no-op");
    let mut status = ironclad(tmp.path());
    status.args(["--json", "migrate", "--status"]);
    let s = json_lines(&status.output().unwrap().stdout).remove(0);
    assert_eq!(
        (s["db_version"].as_u64(), s["binary_version"].as_u64()),
        (
            Some(u64::from(ironclad::store::sqlite::SCHEMA_VERSION)),
            Some(u64::from(ironclad::store::sqlite::SCHEMA_VERSION))
        )
    );
}

#[test]
fn demo_appends_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = ironclad(tmp.path());
    demo.args(["--json", "demo", "--producers", "4", "--appends", "50"]);
    let out = demo.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = json_lines(&out.stdout).remove(0);
    let appended = s["appended_events"].as_u64().unwrap();
    assert!(appended >= 200, "4 producers × 50 appends of 1–3 events");
    assert_eq!(s["ledger_verified_events"].as_u64(), Some(appended));
}

#[test]
fn bench_reports_rates_and_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bench = ironclad(tmp.path());
    bench.args([
        "--json",
        "bench",
        "append",
        "--producers",
        "4",
        "--events",
        "400",
        "--baseline",
        "--baseline-events",
        "20",
        "--dir",
    ]);
    bench.arg(tmp.path());
    let out = bench.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json_lines(&out.stdout).remove(0);
    assert_eq!(r["events"], 400);
    assert!(r["events_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["ack_p99_ms"].as_f64().unwrap() >= r["ack_p50_ms"].as_f64().unwrap());
    assert!(r["ratio_vs_baseline"].as_f64().is_some());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".ironclad-bench-")
        })
        .collect();
    assert!(leftovers.is_empty(), "scratch directory removed");
}

#[test]
fn usage_errors_exit_2_and_missing_data_is_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bad = ironclad(tmp.path());
    bad.args(["append"]);
    assert_eq!(bad.output().unwrap().status.code(), Some(2));
    let mut read = ironclad(tmp.path());
    read.args(["read", "nothing"]);
    let out = read.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database in"));
    let mut bad_name = ironclad(tmp.path());
    bad_name.args(["append", ""]);
    let out = run_with_stdin(bad_name, "1\n");
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stream name is empty"));
}

#[test]
fn envelope_import_is_idempotent_and_read_is_verbatim() {
    let tmp = tempfile::tempdir().unwrap();
    let input = concat!(
        r#"{"id":"0190f3c2-7e5a-7cc0-8000-000000000001","type":"price.set","payload":{"z":1,"a":12345678901234567890123,"f":1.10}}"#,
        "\n",
        r#"{"id":"0190f3c2-7e5a-7cc0-8000-000000000002","op":"create","entity":"sku-1","metadata":{"src":"import"},"payload":[1, 2]}"#,
        "\n",
        r#"{"payload":1,"bogus":true}"#,
        "\n",
    );
    let mut cmd = ironclad(tmp.path());
    cmd.args(["append", "prices", "--envelope"]);
    let first = run_with_stdin(cmd, input);
    assert_eq!(
        first.status.code(),
        Some(4),
        "the bogus envelope line is rejected"
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains("line 3:"));
    let acks = json_lines(&first.stdout);
    assert_eq!(acks.len(), 2);
    assert_eq!(acks[0]["id"], "0190f3c2-7e5a-7cc0-8000-000000000001");
    assert!(acks[0].get("already_appended").is_none());

    // Re-running the same import writes nothing new.
    let mut cmd = ironclad(tmp.path());
    cmd.args(["append", "prices", "--envelope"]);
    let again = run_with_stdin(cmd, input);
    let acks2 = json_lines(&again.stdout);
    assert_eq!(acks2.len(), 2);
    let summary = String::from_utf8_lossy(&again.stderr);
    assert!(
        summary.contains("appended 0 events; 2 were already appended; 1 lines rejected"),
        "{summary}"
    );
    for (a, b) in acks.iter().zip(&acks2) {
        assert_eq!(
            (a["version"].clone(), a["position"].clone()),
            (b["version"].clone(), b["position"].clone())
        );
        assert_eq!(b["already_appended"], true);
    }

    // `read` emits the stored payload bytes verbatim: key order, big
    // numbers and number spelling survive.
    let mut read = ironclad(tmp.path());
    read.args(["read", "prices"]);
    let out = String::from_utf8(read.output().unwrap().stdout).unwrap();
    assert!(
        out.contains(r#""payload":{"z":1,"a":12345678901234567890123,"f":1.10}"#),
        "{out}"
    );
    assert!(
        out.contains(r#""entity":"sku-1""#) && out.contains(r#""op":"create""#),
        "{out}"
    );
}

#[test]
fn empty_head_and_usage_errors_in_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let mut migrate = ironclad(tmp.path());
    migrate.args(["migrate"]);
    assert!(migrate.output().unwrap().status.success());
    let mut head = ironclad(tmp.path());
    head.args(["ledger", "head"]);
    let empty_head = String::from_utf8(head.output().unwrap().stdout).unwrap();
    assert_eq!(json_lines(empty_head.as_bytes())[0]["position"], 0);
    assert!(append(tmp.path(), "s", "1\n").status.success());
    let mut verify = ironclad(tmp.path());
    verify.args(["ledger", "verify", "--against", empty_head.trim()]);
    assert!(
        verify.output().unwrap().status.success(),
        "an empty log's head is a prefix of every log"
    );
    let mut both = ironclad(tmp.path());
    both.args([
        "ledger",
        "verify",
        "--stream",
        "s",
        "--against",
        empty_head.trim(),
    ]);
    let out = both.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--against"));
}

/// End to end: a dump whose middle record can no longer be appended (its
/// stream moved past the expected version). A plain replay stops there and
/// keeps the dump; `--quarantine-failed` sets the record aside in a
/// quarantine file named in the output, replays the rest and archives the
/// dump. Invariant: a dump record is never deleted without being replayed
/// or quarantined durably.
#[test]
fn dump_replay_quarantine_failed() {
    use ironclad::emergency::{write_dump, DumpRecord, QuarantinedRecord};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let record = |stream: &str, expected| {
        let events = vec![ironclad::NewEvent::new("t", r#"{"from":"dump"}"#)];
        DumpRecord::new(stream, expected, &[uuid::Uuid::now_v7()], &events).unwrap()
    };
    let stale = record("x", ironclad::ExpectedVersion::NoStream);
    let records = [
        record("x", ironclad::ExpectedVersion::Any),
        stale.clone(),
        record("y", ironclad::ExpectedVersion::Any),
    ];
    let path = write_dump(&data, &records, 1).unwrap();
    let mut plain = ironclad(tmp.path());
    plain.args(["dump", "replay", "--all"]);
    let out = plain.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--quarantine-failed"),
        "{stderr}"
    );
    assert!(path.exists(), "a plain replay keeps the dump");

    let mut replay = ironclad(tmp.path());
    replay.args(["--json", "dump", "replay", "--all", "--quarantine-failed"]);
    let report = json_lines(&succeeds(replay).stdout).remove(0)["replayed"][0].clone();
    assert_eq!(
        (report["quarantined"].as_u64(), report["records"].as_u64()),
        (Some(1), Some(3))
    );
    let quarantine = std::path::PathBuf::from(report["quarantined_to"].as_str().unwrap());
    let text = std::fs::read_to_string(&quarantine).unwrap();
    let set_aside: QuarantinedRecord = serde_json::from_str(text.trim()).unwrap();
    assert_eq!((set_aside.record_number, set_aside.record), (2, stale));
    assert!(
        !path.exists(),
        "archived once every record was replayed or quarantined"
    );
    let mut read = ironclad(tmp.path());
    read.args(["read", "y"]);
    assert_eq!(
        json_lines(&read.output().unwrap().stdout).len(),
        1,
        "the replay went on"
    );
    let mut list = ironclad(tmp.path());
    list.args(["--json", "dump", "list"]);
    assert_eq!(
        json_lines(&list.output().unwrap().stdout)[0]["dumps"],
        serde_json::json!([])
    );
}

/// A dump of submitted appends the store rejected is listed with its
/// reason, read from the file name.
#[test]
fn dump_list_shows_why_submits_were_rejected() {
    use ironclad::emergency::{write_rejected_dump, DumpRecord, RejectReason, Rejection};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let events = vec![ironclad::NewEvent::new("t", "{}")];
    let why = Rejection::new(RejectReason::WrongExpectedVersion, "stream moved");
    let record = DumpRecord::new(
        "s",
        ironclad::ExpectedVersion::NoStream,
        &[uuid::Uuid::now_v7()],
        &events,
    )
    .unwrap()
    .with_rejection(why);
    write_rejected_dump(&data, RejectReason::WrongExpectedVersion, &[record], 1).unwrap();
    let mut list = ironclad(tmp.path());
    list.args(["--json", "dump", "list"]);
    let listed = json_lines(&list.output().unwrap().stdout).remove(0)["dumps"].clone();
    assert_eq!(listed[0]["rejected"], "wrong_expected_version");
    let mut list = ironclad(tmp.path());
    list.args(["dump", "list"]);
    let text = String::from_utf8_lossy(&list.output().unwrap().stdout).into_owned();
    assert!(
        text.contains("rejected at submit: wrong_expected_version"),
        "{text}"
    );
}

#[test]
fn dump_list_and_replay() {
    use ironclad::emergency::{write_dump, DumpRecord};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let events = vec![ironclad::NewEvent::new("t", r#"{"from":"dump"}"#)];
    let ids = vec![uuid::Uuid::now_v7()];
    let record = DumpRecord::new("rescued", ironclad::ExpectedVersion::Any, &ids, &events).unwrap();
    let path = write_dump(&data, &[record], 1).unwrap();
    let mut list = ironclad(tmp.path());
    list.args(["--json", "dump", "list"]);
    let listed = json_lines(&list.output().unwrap().stdout).remove(0)["dumps"].clone();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["path"], path.to_str().unwrap());
    let mut replay = ironclad(tmp.path());
    replay.args(["--json", "dump", "replay", "--all"]);
    let out = replay.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_lines(&out.stdout).remove(0)["replayed"][0].clone();
    assert_eq!(report["appended_events"], 1);
    let mut read = ironclad(tmp.path());
    read.args(["read", "rescued"]);
    let events = json_lines(&read.output().unwrap().stdout);
    assert_eq!(events[0]["id"], ids[0].to_string());
    let mut list = ironclad(tmp.path());
    list.args(["--json", "dump", "list"]);
    assert_eq!(
        json_lines(&list.output().unwrap().stdout)[0]["dumps"],
        serde_json::json!([]),
        "archived"
    );
}

/// Bytes flipped in a leaf page of `events` in the middle of the file: the
/// writer's open (`append`) refuses the database, and a read that meets the
/// page fails; both exit 1 naming the file. A 0-byte database is refused
/// as lost data, not sent to `ironclad migrate`.
#[test]
fn damaged_and_empty_databases_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let line = format!("{{\"note\":\"{}\"}}\n", "x".repeat(600));
    assert!(append(tmp.path(), "bulk", &line.repeat(2_000))
        .status
        .success());
    let db_path = tmp.path().join("data/ironclad.db");
    let db = rusqlite::Connection::open(&db_path).unwrap();
    let leaves: Vec<i64> = db
        .prepare(
            "SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' ORDER BY pageno",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(db);
    let mut bytes = std::fs::read(&db_path).unwrap();
    let start = (leaves[leaves.len() / 2] as usize - 1) * 4096;
    bytes[start..start + 64].iter_mut().for_each(|b| *b = !*b);
    std::fs::write(&db_path, &bytes).unwrap();

    // Exit 1 with the error on stderr.
    let failed = |out: Output| -> String {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        stderr
    };
    let read = || {
        let mut read = ironclad(tmp.path());
        read.args(["read", "bulk"]);
        read.output().unwrap()
    };
    let named = db_path.display().to_string();
    for stderr in [
        failed(append(tmp.path(), "bulk", "{\"n\":1}\n")),
        failed(read()),
    ] {
        assert!(
            stderr.contains(&named) && stderr.contains("damaged"),
            "{stderr}"
        );
    }

    std::fs::write(&db_path, b"").unwrap();
    let stderr = failed(read());
    assert!(
        stderr.contains("0 bytes") && !stderr.contains("migrate"),
        "{stderr}"
    );
}

/// `--quarantine-failed` is local only: against a server it is refused as
/// a usage error (exit 2) before any request, instead of being ignored.
#[test]
fn dump_replay_quarantine_failed_is_refused_with_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = ironclad(tmp.path())
        .args([
            "--server",
            "http://127.0.0.1:9",
            "dump",
            "replay",
            "--all",
            "--quarantine-failed",
        ])
        .env_remove("IRONCLAD_SERVER")
        .env_remove("IRONCLAD_TOKEN")
        .output()
        .expect("run ironclad");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--quarantine-failed is local only"),
        "{stderr}"
    );
}
