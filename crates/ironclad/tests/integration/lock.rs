//! Guards the one-engine-per-directory lock and the lifecycle controls
//! (SPEC §2 "Barrier and lifecycle", §8): a second `Journal::open` on a
//! locked directory fails with `Locked` naming the holder's pid, both from
//! this process and from another process (re-exec'd child); the lock is
//! released by `shutdown`, by dropping every handle once the writer drains,
//! and by the kernel when the holder is SIGKILLed. `flush` is a barrier for
//! everything queued before it, `wal_checkpoint` truncates the WAL, and
//! `LogReader::open_sqlite` reads (and verifies) while the journal is open.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ironclad::{AppendStatus, ExpectedVersion, Journal, LogReader, NewEvent, OpenError};

const CHILD_ENV: &str = "IRONCLAD_LOCK_CHILD_DIR";

fn ev(i: usize) -> NewEvent {
    NewEvent::new("lock.test", format!(r#"{{"i":{i}}}"#))
}

fn wal_len(dir: &Path) -> u64 {
    let mut wal = common::db_path(dir).into_os_string();
    wal.push("-wal");
    std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len())
}

fn expect_locked(dir: &Path, pid: u32) {
    let err = match Journal::open(common::fast_config(dir)) {
        Ok(_) => panic!("a second engine must not open a locked directory"),
        Err(e) => e,
    };
    match &err {
        OpenError::Locked { pid: found, path } => {
            assert_eq!(found, &pid.to_string());
            assert_eq!(path, dir);
        }
        other => panic!("expected Locked, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&format!("locked by pid {pid}")), "{msg}");
}

#[tokio::test]
async fn second_open_in_process_is_locked_until_shutdown() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::fast_config(&dir));
    journal
        .append("l", ExpectedVersion::Any, vec![ev(0)])
        .await
        .unwrap();
    expect_locked(&dir, std::process::id());
    let recorded = std::fs::read_to_string(dir.join("LOCK")).unwrap();
    assert_eq!(recorded.trim(), std::process::id().to_string());
    // Still locked after a failed attempt: the failure did not disturb the holder.
    expect_locked(&dir, std::process::id());
    journal
        .append("l", ExpectedVersion::Exact(1), vec![ev(1)])
        .await
        .unwrap();

    common::shutdown(&journal).await;
    let reopened = common::open(common::fast_config(&dir));
    assert_eq!(reopened.stream_head("l").unwrap().unwrap().version, 2);
    common::shutdown(&reopened).await;
}

#[tokio::test]
async fn dropping_every_handle_commits_the_queue_and_releases_the_lock() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::fast_config(&dir));
    for i in 0..25 {
        // Tickets dropped unawaited: the appends must still commit.
        drop(
            journal
                .enqueue("dropped", ExpectedVersion::Any, vec![ev(i)])
                .await
                .unwrap(),
        );
    }
    drop(journal);
    // The writer drains and exits in the background; wait for the lock.
    let give_up = Instant::now() + Duration::from_secs(30);
    let reopened = loop {
        match Journal::open(common::fast_config(&dir)) {
            Ok(j) => break j,
            Err(OpenError::Locked { .. }) if Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("lock never released after drop: {e}"),
        }
    };
    assert_eq!(common::verify_ok(&reopened).checked, 25);
    common::shutdown(&reopened).await;
}

#[tokio::test]
async fn flush_is_a_barrier_and_wal_checkpoint_truncates_the_wal() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::config(&dir));
    let mut tickets = Vec::new();
    for i in 0..50 {
        tickets.push(
            journal
                .enqueue("f", ExpectedVersion::Any, vec![ev(i)])
                .await
                .unwrap(),
        );
    }
    journal.flush().await.expect("flush");
    // Before any ticket is awaited, everything queued before flush is visible.
    assert_eq!(
        journal.stream_head("f").unwrap().map(|h| h.version),
        Some(50)
    );
    for t in tickets {
        assert_eq!(t.await.unwrap().status, AppendStatus::Appended);
    }

    assert!(wal_len(&dir) > 0, "appends went to the WAL");
    journal.wal_checkpoint().await.expect("wal checkpoint");
    assert_eq!(wal_len(&dir), 0, "wal_checkpoint truncates the WAL");
    // Still fully readable, and appends continue after a WAL checkpoint.
    assert_eq!(common::verify_ok(&journal).checked, 50);
    journal
        .append("f", ExpectedVersion::Exact(50), vec![ev(50)])
        .await
        .unwrap();
    assert!(wal_len(&dir) > 0);
    journal.flush().await.unwrap();
    journal.wal_checkpoint().await.unwrap();
    assert_eq!(wal_len(&dir), 0);
    common::shutdown(&journal).await;
}

#[tokio::test]
async fn reader_reads_while_the_journal_is_open() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    assert!(
        matches!(
            LogReader::open_sqlite(&common::fast_config(&dir)),
            Err(OpenError::NoDatabase { .. })
        ),
        "no database yet"
    );
    let journal = common::open(common::fast_config(&dir));
    for i in 0..10 {
        journal
            .append("r", ExpectedVersion::Any, vec![ev(i)])
            .await
            .unwrap();
    }
    let reader = LogReader::open_sqlite(&common::fast_config(&dir)).expect("reader while open");
    assert_eq!(reader.read("r", 1, 100).unwrap().len(), 10);
    // The reader takes no lock: the journal still holds it, and keeps writing.
    expect_locked(&dir, std::process::id());
    for i in 10..20 {
        journal
            .append("r", ExpectedVersion::Any, vec![ev(i)])
            .await
            .unwrap();
    }
    let events = reader.read("r", 11, 100).unwrap();
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        (11..=20).collect::<Vec<_>>()
    );
    assert_eq!(
        reader.ledger_head().unwrap(),
        journal.ledger_head().unwrap()
    );
    assert_eq!(common::verify_ok(&reader).checked, 20);
    common::shutdown(&journal).await;
    assert_eq!(
        reader.read_all(1, 100).unwrap().len(),
        20,
        "readable after shutdown"
    );
}

/// Child side of the cross-process test: holds the journal until killed.
#[test]
fn lock_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let journal = Journal::open(common::fast_config(Path::new(&dir))).expect("child open");
        journal
            .append("child", ExpectedVersion::Any, vec![ev(0)])
            .await
            .unwrap();
        println!("\nHOLDING");
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    std::process::exit(2);
}

#[cfg(unix)]
#[tokio::test]
async fn another_process_gets_locked_by_its_pid_until_killed() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let mut child = common::spawn_self("lock::lock_child", &[(CHILD_ENV, dir.to_str().unwrap())]);
    let stdout = child.stdout.take().unwrap();
    let holding = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .any(|l| l.map(|l| l == "HOLDING").unwrap_or(false))
    })
    .await
    .unwrap();
    if !holding {
        let _ = child.kill();
        panic!("child never took the lock: {:?}", child.wait());
    }
    expect_locked(&dir, child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel released the dead child's lock.
    let journal = common::open(common::fast_config(&dir));
    assert_eq!(journal.stream_head("child").unwrap().unwrap().version, 1);
    common::shutdown(&journal).await;
}
