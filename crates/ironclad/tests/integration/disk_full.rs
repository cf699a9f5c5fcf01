//! A full disk, for real: a child process appends under `RLIMIT_FSIZE`
//! (set with `ulimit -f`, with SIGXFSZ ignored so writes fail with EFBIG
//! instead of killing it), so SQLite's WAL cannot grow. Guards: appends that
//! cannot be written are answered with a typed store error, never
//! acknowledged; the writer survives the failures and keeps answering; and
//! after the limit is gone every acknowledged event is present, nothing is
//! partly visible, the ledger verifies, and the journal accepts appends again.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ironclad::{AppendError, ExpectedVersion, NewEvent, VerifyOptions};

const CHILD_ENV: &str = "IRONCLAD_DISK_FULL_CHILD_DIR";
/// The file-size limit, in 512-byte blocks for `sh`'s `ulimit -f`: 3 MiB.
const LIMIT_BLOCKS: u32 = 6 * 1024;

/// The child: appends 3-event batches of ~2 KiB payloads until well past the
/// limit, printing `ACK <batch> <stream> <first_version>` or `ERR <batch>
/// <message>` per append, then exits normally.
#[test]
fn disk_full_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only meaningful as the re-executed child
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let journal = common::open(common::config(std::path::Path::new(&dir)));
        let pad = "x".repeat(2048);
        let mut errors = 0;
        for batch in 0..4000u32 {
            let stream = format!("s-{}", batch % 4);
            let events = (0..3)
                .map(|i| {
                    NewEvent::new(
                        "fill",
                        format!(r#"{{"batch":{batch},"i":{i},"pad":"{pad}"}}"#),
                    )
                })
                .collect();
            match journal.append(&stream, ExpectedVersion::Any, events).await {
                Ok(r) => println!("ACK {batch} {stream} {}", r.events[0].version),
                Err(AppendError::Store(e)) => {
                    println!("ERR {batch} {e}");
                    errors += 1;
                    if errors >= 20 {
                        break; // the writer kept answering through 20 failures
                    }
                }
                Err(other) => panic!("unexpected error kind: {other:?}"),
            }
        }
        let _ = journal.shutdown(Duration::from_secs(10)).await;
    });
}

#[test]
fn a_full_disk_never_acknowledges_and_loses_nothing() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = format!("ulimit -f {LIMIT_BLOCKS} && trap '' XFSZ && exec \"$0\" \"$@\"");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(exe)
        .args([
            "--exact",
            "disk_full::disk_full_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child under ulimit");
    let mut acked: HashMap<u32, (String, u64)> = HashMap::new();
    let mut errors = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let parts: Vec<&str> = line.splitn(4, ' ').collect();
        match parts.as_slice() {
            ["ACK", batch, stream, version] => {
                acked.insert(
                    batch.parse().unwrap(),
                    (stream.to_string(), version.parse().unwrap()),
                );
            }
            ["ERR", batch, rest @ ..] => {
                errors.push((batch.parse::<u32>().unwrap(), rest.join(" ")))
            }
            _ => {}
        }
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "the child exits normally, not killed by SIGXFSZ: {status:?}"
    );
    assert!(
        acked.len() > 50,
        "some appends fit under the limit: {}",
        acked.len()
    );
    assert!(
        errors.len() >= 20,
        "the limit was hit and reported: {errors:?}"
    );
    assert!(
        errors
            .iter()
            .all(|(_, m)| m.contains("check free disk space")),
        "errors say what to check: {errors:?}"
    );

    // Without the limit: every ack is there, whole, and the ledger verifies.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let journal = common::open(common::config(&dir));
        let all = common::read_everything(&journal.reader());
        let mut per_batch: HashMap<u32, Vec<(String, u64, u32)>> = HashMap::new();
        for e in &all {
            let v: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
            let batch = v["batch"].as_u64().unwrap() as u32;
            let i = v["i"].as_u64().unwrap() as u32;
            per_batch
                .entry(batch)
                .or_default()
                .push((e.stream.clone(), e.version, i));
        }
        for (batch, (stream, first)) in &acked {
            let got = per_batch
                .get(batch)
                .unwrap_or_else(|| panic!("acked batch {batch} missing"));
            let expect: Vec<(String, u64, u32)> = (0..3)
                .map(|i| (stream.clone(), first + i as u64, i))
                .collect();
            assert_eq!(got, &expect, "acked batch {batch} whole and in place");
        }
        for (batch, events) in &per_batch {
            assert_eq!(events.len(), 3, "batch {batch} is all or nothing");
        }
        for (batch, _) in &errors {
            assert!(
                !acked.contains_key(batch),
                "a failed append was never acked"
            );
        }
        let report = journal
            .verify(&VerifyOptions::default(), &mut |_| {})
            .expect("ledger verifies");
        assert_eq!(report.checked, all.len() as u64);
        let r = journal
            .append(
                "after",
                ExpectedVersion::NoStream,
                vec![NewEvent::new("ok", "1")],
            )
            .await
            .expect("appends work once there is room");
        assert_eq!(r.events[0].position, all.len() as u64 + 1);
        common::shutdown(&journal).await;
    });
}
