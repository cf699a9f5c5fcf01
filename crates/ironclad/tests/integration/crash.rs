//! Guards crash durability and atomicity with a real SIGKILL (SPEC §2
//! "Durability", "append is atomic"). The test binary re-runs itself as a
//! child that appends multi-event batches and prints one `ACK` line per
//! acknowledged append; the parent kills it at a random moment, reopens the
//! same data directory and checks: every acknowledged batch is fully present
//! at the acknowledged versions; no batch is partially visible; versions are
//! contiguous per stream; the ledger verifies; the directory lock was
//! released by the kernel. Repeated 20+ times on one accumulating directory.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use ironclad::{AppendStatus, ExpectedVersion, Journal, NewEvent};

const CHILD_ENV: &str = "IRONCLAD_CRASH_CHILD_DIR";
const ROUNDS: usize = 20;
const CHILD_PRODUCERS: usize = 4;
const CHILD_STREAMS: usize = 5;
/// The child gives up on its own after this long, in case the parent died.
const CHILD_MAX_LIFETIME: Duration = Duration::from_secs(60);

/// The child side: does nothing unless started by the parent with `CHILD_ENV`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child runtime");
    rt.block_on(child_main(PathBuf::from(dir)));
    // Only reached if the parent never killed us.
    std::process::exit(2);
}

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    // One write per line: a line is either fully in the pipe or not at all.
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

async fn child_main(dir: PathBuf) {
    let journal = match Journal::open(common::config(&dir)) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("crash child: open failed: {e}");
            std::process::exit(3);
        }
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    // The harness has printed "test crash_child ... " without a newline:
    // start a fresh line so READY stands alone.
    emit("\nREADY");
    for p in 0..CHILD_PRODUCERS {
        let journal = journal.clone();
        let run = run.clone();
        tokio::spawn(async move {
            for k in 0u64.. {
                let batch = format!("{run}-{p}-{k}");
                let stream = format!("crash-{}", rand::random_range(0..CHILD_STREAMS));
                let n: usize = rand::random_range(1..=5);
                let events = (0..n)
                    .map(|i| {
                        let payload = serde_json::json!({
                            "batch": batch, "index": i, "count": n,
                            "note": "crash-test payload ✓",
                        });
                        NewEvent::from_value("crash.event", &payload)
                    })
                    .collect();
                match journal.append(&stream, ExpectedVersion::Any, events).await {
                    Ok(r) => {
                        assert_eq!(r.status, AppendStatus::Appended);
                        emit(&format!("ACK {batch} {stream} {n} {}", r.events[0].version));
                        // A short random pause keeps the log (and the
                        // parent's full re-check each round) small, while
                        // some producer is almost always mid-commit.
                        let pause = rand::random_range(0..1_000);
                        tokio::time::sleep(Duration::from_micros(pause)).await;
                    }
                    Err(e) => {
                        eprintln!("crash child: append failed: {e}");
                        std::process::exit(4);
                    }
                }
            }
        });
    }
    tokio::time::sleep(CHILD_MAX_LIFETIME).await;
}

/// One acknowledged append, as the child reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    stream: String,
    n: usize,
    first_version: u64,
}

fn parse_ack(line: &str) -> Option<(String, Ack)> {
    let mut parts = line.split(' ');
    if parts.next()? != "ACK" {
        return None;
    }
    let batch = parts.next()?.to_string();
    let stream = parts.next()?.to_string();
    let n = parts.next()?.parse().ok()?;
    let first_version = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((
        batch,
        Ack {
            stream,
            n,
            first_version,
        },
    ))
}

#[derive(Debug, Default)]
struct Totals {
    events: usize,
    batches: usize,
    acked_present: usize,
}

/// One stored event of a batch: (index, count, stream, version, position).
type Member = (usize, usize, String, u64, u64);

/// Reopens the directory and checks every invariant against all acks so far.
fn check_after_crash(
    dir: &Path,
    acked: &HashMap<String, Ack>,
    rt: &tokio::runtime::Runtime,
) -> Totals {
    // Taking the lock proves the kernel released the killed child's lock.
    let journal = common::open(common::config(dir));
    let events = common::read_everything(&journal);
    let summary = common::check_log_structure(&events);
    common::check_stream_heads(&journal, &summary);
    let report = common::verify_ok(&journal);
    assert_eq!(report.checked as usize, events.len());

    let mut batches: HashMap<String, Vec<Member>> = HashMap::new();
    for ev in &events {
        let p: serde_json::Value = serde_json::from_str(&ev.payload).expect("payload is JSON");
        let batch = p["batch"].as_str().expect("batch id").to_string();
        let index = p["index"].as_u64().expect("index") as usize;
        let count = p["count"].as_u64().expect("count") as usize;
        batches.entry(batch).or_default().push((
            index,
            count,
            ev.stream.clone(),
            ev.version,
            ev.position,
        ));
    }
    for (batch, members) in &mut batches {
        members.sort();
        let count = members[0].1;
        assert_eq!(
            members.len(),
            count,
            "batch {batch} is partially visible: {} of {count} events",
            members.len()
        );
        let (_, _, stream, first_version, first_position) = members[0].clone();
        for (i, (index, c, s, version, position)) in members.iter().enumerate() {
            assert_eq!(*index, i, "batch {batch}: indices 0..{count} once each");
            assert_eq!(*c, count, "batch {batch}: one count");
            assert_eq!(s, &stream, "batch {batch}: one stream");
            assert_eq!(
                *version,
                first_version + i as u64,
                "batch {batch}: contiguous versions"
            );
            assert_eq!(
                *position,
                first_position + i as u64,
                "batch {batch}: contiguous positions"
            );
        }
        if let Some(ack) = acked.get(batch) {
            assert_eq!(ack.stream, stream, "batch {batch}: acked stream");
            assert_eq!(ack.n, count, "batch {batch}: acked size");
            assert_eq!(
                ack.first_version, first_version,
                "batch {batch}: acked first version"
            );
        }
    }
    for (batch, ack) in acked {
        assert!(
            batches.contains_key(batch),
            "acknowledged batch {batch} ({} events on {}) was lost",
            ack.n,
            ack.stream
        );
    }
    rt.block_on(common::shutdown(&journal));
    Totals {
        events: events.len(),
        batches: batches.len(),
        acked_present: acked.len(),
    }
}

#[cfg(unix)]
#[test]
fn sigkill_never_loses_acked_or_exposes_partial_appends() {
    use std::os::unix::process::ExitStatusExt;

    const SIGKILL: i32 = 9;
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let dir_text = dir.to_str().expect("utf-8 temp path").to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut acked: HashMap<String, Ack> = HashMap::new();
    let mut totals = Totals::default();
    let mut acks_per_round = Vec::with_capacity(ROUNDS);

    for round in 0..ROUNDS {
        let mut child = common::spawn_self("crash::crash_child", &[(CHILD_ENV, &dir_text)]);
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    // A line cut by the kill has no newline: ignore it.
                    Ok(_) if line.ends_with('\n') => {
                        if tx.send(line.trim_end().to_string()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => break,
                }
            }
        });

        let mut lines = Vec::new();
        // Most rounds kill while producers are running; every fifth kills at
        // a random moment after spawn, possibly during startup or recovery.
        let early = round % 5 == 4;
        if !early {
            loop {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(l) if l == "READY" => break,
                    Ok(l) => lines.push(l),
                    Err(e) => {
                        let _ = child.kill();
                        let status = child.wait();
                        panic!(
                            "round {round}: child never became ready ({e:?}), status {status:?}"
                        );
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rand::random_range(50..=600)));
        child.kill().expect("kill child");
        let status = child.wait().expect("wait child");
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "round {round}: the child must die by SIGKILL, not exit on its own ({status:?})"
        );
        reader.join().expect("reader thread");
        lines.extend(rx.try_iter());

        let mut round_acks = 0usize;
        for l in &lines {
            if let Some((batch, ack)) = parse_ack(l) {
                let dup = acked.insert(batch.clone(), ack);
                assert!(dup.is_none(), "batch id {batch} acknowledged twice");
                round_acks += 1;
            }
        }
        acks_per_round.push(round_acks);
        totals = check_after_crash(&dir, &acked, &rt);
    }

    let acked_events: usize = acked.values().map(|a| a.n).sum();
    let unacked_batches = totals.batches - totals.acked_present;
    println!(
        "crash test: {ROUNDS} kills, {} acked batches ({acked_events} events), \
         {} batches ({} events) stored, {unacked_batches} committed-but-unacked batches; \
         acks per round {acks_per_round:?}",
        acked.len(),
        totals.batches,
        totals.events
    );
    assert!(totals.events >= acked_events);
    // The test only means something if the kills hit a live writer.
    assert!(
        acks_per_round.iter().filter(|&&n| n > 0).count() >= ROUNDS / 4,
        "too few rounds acknowledged anything before the kill: {acks_per_round:?}"
    );
}
