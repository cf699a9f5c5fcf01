//! Fault injection around the real SQLite store. `FlakyStore` wraps a real
//! `SqliteStore` and makes chosen group commits fail *before* they reach
//! SQLite, like an I/O error would. Guards: a failed commit answers every
//! append in it with an error and writes nothing; `flush` reports that its
//! barrier is not durable; retrying with the same ids then succeeds exactly
//! once; the ledger verifies throughout. Also: a batch full of resends
//! converges, `wal_checkpoint` reports readers that block WAL truncation, and
//! `created_at` never runs backwards along positions, even across restarts.

use crate::common;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ironclad::lockfile::DataDirLock;

use ironclad::store::sqlite::{SqliteOptions, SqliteStore};
use ironclad::store::{PreparedAppend, Store, StoreWriter};
use ironclad::{
    AppendError, AppendStatus, ControlError, ExpectedVersion, Journal, NewEvent, StoreError,
};
use uuid::Uuid;

use common::flaky::FlakyStore;

fn ev(n: u64) -> NewEvent {
    NewEvent::new("t", format!("{{\"n\":{n}}}")).with_id(Uuid::now_v7())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commit_writes_nothing_and_retry_succeeds_once() {
    let tmp = common::tempdir();
    let cfg = common::fast_config(&common::data_dir(&tmp));
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let store = FlakyStore {
        inner: SqliteStore::open(SqliteOptions::from_config(&cfg)).unwrap(),
        fail: Arc::clone(&fail),
        fail_next: Arc::default(),
        gate: Arc::default(),
    };
    let journal = Journal::with_store(store, cfg, None).unwrap();

    let first = journal
        .append("s", ExpectedVersion::Any, vec![ev(1)])
        .await
        .unwrap();
    assert_eq!(first.events[0].version, 1);
    journal.flush().await.expect("nothing failed yet");

    fail.store(true, Ordering::SeqCst);
    let lost: Vec<NewEvent> = (2..=4).map(ev).collect();
    let mut tickets = Vec::new();
    for e in &lost {
        tickets.push(
            journal
                .enqueue("s", ExpectedVersion::Any, vec![e.clone()])
                .await
                .unwrap(),
        );
    }
    for t in tickets {
        match t.await {
            Err(AppendError::Store(e)) => assert!(e.to_string().contains("injected")),
            other => panic!("expected a store error, got {other:?}"),
        }
    }
    match journal.flush().await {
        Err(ControlError::NotDurable(e)) => assert!(e.to_string().contains("injected")),
        other => panic!("flush must report the failed commit, got {other:?}"),
    }
    assert_eq!(
        journal.read("s", 1, 100).unwrap().len(),
        1,
        "a failed commit writes nothing"
    );

    fail.store(false, Ordering::SeqCst);
    journal
        .flush()
        .await
        .expect("the failure was reported once; the barrier is clean again");
    for (i, e) in lost.iter().enumerate() {
        let r = journal
            .append("s", ExpectedVersion::Any, vec![e.clone()])
            .await
            .unwrap();
        assert_eq!(
            r.status,
            AppendStatus::Appended,
            "not written before, so written now"
        );
        assert_eq!(r.events[0].version, 2 + i as u64);
        let again = journal
            .append("s", ExpectedVersion::Any, vec![e.clone()])
            .await
            .unwrap();
        assert_eq!(again.status, AppendStatus::AlreadyAppended);
        assert_eq!(again.events, r.events);
    }
    // Conservation: every acknowledged event is present exactly once.
    let all = common::read_everything(&journal.reader());
    assert_eq!(all.len(), 4);
    let ids: HashSet<Uuid> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 4);
    journal
        .verify(&Default::default(), &mut |_| {})
        .expect("ledger verifies after a failed commit");
    journal
        .shutdown(std::time::Duration::from_secs(10))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_resends_converges() {
    let tmp = common::tempdir();
    let journal = common::open(common::fast_config(&common::data_dir(&tmp)));
    let events: Vec<NewEvent> = (0..2000).map(ev).collect();
    for e in &events {
        journal
            .append("s", ExpectedVersion::Any, vec![e.clone()])
            .await
            .unwrap();
    }
    // Queue every resend, interleaved with new appends, before awaiting any:
    // they share group commits, and every resend collides on its id.
    let mut tickets = Vec::new();
    for (i, e) in events.iter().enumerate() {
        tickets.push((
            true,
            journal
                .enqueue("s", ExpectedVersion::Any, vec![e.clone()])
                .await
                .unwrap(),
        ));
        if i % 10 == 0 {
            tickets.push((
                false,
                journal
                    .enqueue("s", ExpectedVersion::Any, vec![ev(9)])
                    .await
                    .unwrap(),
            ));
        }
    }
    let mut new_versions = Vec::new();
    for (resend, t) in tickets {
        let r = t.await.unwrap();
        if resend {
            assert_eq!(r.status, AppendStatus::AlreadyAppended);
            assert!(r.events[0].version <= 2000);
        } else {
            assert_eq!(r.status, AppendStatus::Appended);
            new_versions.push(r.events[0].version);
        }
    }
    assert_eq!(new_versions, (2001..=2200).collect::<Vec<_>>());
    common::shutdown(&journal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_checkpoint_reports_readers_that_pin_the_wal() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::fast_config(&dir));
    journal
        .append("s", ExpectedVersion::Any, vec![ev(1)])
        .await
        .unwrap();
    // A reader in another connection holds a snapshot open...
    let reader = rusqlite::Connection::open(common::db_path(&dir)).unwrap();
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM events;")
        .unwrap();
    // ...while new commits land after it.
    journal
        .append("s", ExpectedVersion::Any, vec![ev(2)])
        .await
        .unwrap();
    match journal.wal_checkpoint().await {
        Err(ControlError::Store(StoreError::Busy(msg))) => assert!(msg.contains("readers")),
        other => panic!("expected Busy, got {other:?}"),
    }
    reader.execute_batch("COMMIT").unwrap();
    journal
        .wal_checkpoint()
        .await
        .expect("truncates once the reader is gone");
    common::shutdown(&journal).await;
}

#[test]
fn created_at_never_runs_backwards_even_across_writers() {
    let tmp = common::tempdir();
    let cfg = common::fast_config(&common::data_dir(&tmp));
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let store = SqliteStore::open(SqliteOptions::from_config(&cfg)).unwrap();
    let append = |n: u64| PreparedAppend {
        stream: "s".into(),
        expected: ExpectedVersion::Any,
        ids: vec![Uuid::now_v7()],
        events: vec![ev(n)],
    };
    let mut w = store.open_writer().unwrap();
    w.commit(&[append(1)], 5_000).unwrap().remove(0).unwrap();
    // The clock steps back 4 ms.
    w.commit(&[append(2)], 1_000).unwrap().remove(0).unwrap();
    drop(w);
    // A new writer (a restart) with a clock still behind.
    let mut w = store.open_writer().unwrap();
    w.commit(&[append(3)], 10).unwrap().remove(0).unwrap();
    let times: Vec<i64> = store
        .read_all(1, 10)
        .unwrap()
        .iter()
        .map(|e| e.created_at_us)
        .collect();
    assert_eq!(times, [5_000, 5_000, 5_000]);
    w.commit(&[append(4)], 9_000).unwrap().remove(0).unwrap();
    assert_eq!(store.read_all(4, 1).unwrap()[0].created_at_us, 9_000);
}

/// A flakily gated journal over a real store, holding the real directory lock.
fn gated_journal(dir: &std::path::Path) -> (Journal<FlakyStore>, Arc<AtomicBool>, Arc<Mutex<()>>) {
    let cfg = common::fast_config(dir);
    let lock = DataDirLock::acquire(dir).unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let gate: Arc<Mutex<()>> = Arc::default();
    let store = FlakyStore {
        inner: SqliteStore::open(SqliteOptions::from_config(&cfg)).unwrap(),
        fail: Arc::clone(&fail),
        fail_next: Arc::default(),
        gate: Arc::clone(&gate),
    };
    (
        Journal::with_store(store, cfg, Some(lock)).unwrap(),
        fail,
        gate,
    )
}

/// Queues one append and drops its ticket at once: nobody awaits it.
async fn fire_and_forget(journal: &Journal<FlakyStore>) {
    drop(
        journal
            .enqueue("s", ExpectedVersion::Any, vec![ev(1)])
            .await
            .unwrap(),
    );
}

/// Polls a future once, so an async call sends its command now.
fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

// Holding the gate across awaits is the point: it blocks the writer
// *thread* (a std thread, not a task) mid-commit while the test goes on.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flush_covering_a_failed_commit_reports_it() {
    let tmp = common::tempdir();
    let (journal, fail, gate) = gated_journal(&common::data_dir(&tmp));
    fail.store(true, Ordering::SeqCst);
    let held = gate.lock().unwrap();
    fire_and_forget(&journal).await;
    // Two barriers are sent while that append's commit is still in progress.
    let mut a = Box::pin(journal.flush());
    let mut b = Box::pin(journal.flush());
    assert!(poll_once(&mut a).is_pending() && poll_once(&mut b).is_pending());
    drop(held);
    for (name, r) in [("first", a.await), ("second", b.await)] {
        assert!(
            matches!(r, Err(ControlError::NotDurable(_))),
            "{name} flush: {r:?}"
        );
    }
    assert!(
        journal.read_all(1, 10).unwrap().is_empty(),
        "the append is not there"
    );
    fail.store(false, Ordering::SeqCst);
    journal
        .flush()
        .await
        .expect("reported; later barriers are clean");
    journal.shutdown(Duration::from_secs(10)).await.unwrap();
}

// Holding the gate across awaits is the point: it blocks the writer
// *thread* (a std thread, not a task) mid-commit while the test goes on.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_shutdown_waits_for_the_writer_and_frees_the_lock() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let (journal, _fail, gate) = gated_journal(&dir);
    let held = gate.lock().unwrap();
    let ticket = journal
        .enqueue("s", ExpectedVersion::Any, vec![ev(1)])
        .await
        .unwrap();
    // The writer is stuck in a commit, so a short deadline passes.
    assert!(matches!(
        journal.shutdown(Duration::from_millis(50)).await,
        Err(ControlError::DeadlineExceeded)
    ));
    assert!(matches!(
        DataDirLock::acquire(&dir),
        Err(ironclad::OpenError::Locked { .. })
    ));
    drop(held);
    journal
        .shutdown(Duration::from_secs(30))
        .await
        .expect("waits for the writer to stop");
    assert_eq!(
        ticket.await.unwrap().status,
        AppendStatus::Appended,
        "drained, not dropped"
    );
    DataDirLock::acquire(&dir).expect("the lock is free once shutdown returns Ok");
    journal
        .shutdown(Duration::from_secs(1))
        .await
        .expect("idempotent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitespace_only_differences_are_the_same_content() {
    let tmp = common::tempdir();
    let journal = common::open(common::fast_config(&common::data_dir(&tmp)));
    let id = Uuid::now_v7();
    let compact = NewEvent::new("t", r#"{"a":[1,2],"b":"x y"}"#).with_id(id);
    let pretty = NewEvent::new("t", "{\n  \"a\": [1, 2],\n  \"b\": \"x y\"\n}\n").with_id(id);
    let first = journal
        .append("s", ExpectedVersion::Any, vec![pretty])
        .await
        .unwrap();
    assert_eq!(first.status, AppendStatus::Appended);
    let stored = journal.read("s", 1, 1).unwrap().remove(0);
    assert_eq!(
        stored.payload, r#"{"a":[1,2],"b":"x y"}"#,
        "stored compact; string contents untouched"
    );
    let again = journal
        .append("s", ExpectedVersion::Any, vec![compact])
        .await
        .unwrap();
    assert_eq!(again.status, AppendStatus::AlreadyAppended);
    assert_eq!(again.events, first.events);
    let other = NewEvent::new("t", r#"{"a":[1,2],"b":"x  y"}"#).with_id(id);
    assert!(
        matches!(
            journal.append("s", ExpectedVersion::Any, vec![other]).await,
            Err(AppendError::IdempotencyConflict { .. })
        ),
        "whitespace inside a string is content"
    );
    common::shutdown(&journal).await;
}

// The gate is held across awaits on purpose (see above).
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shutdown_call_learns_an_unreported_failure() {
    let tmp = common::tempdir();
    let (journal, fail, gate) = gated_journal(&common::data_dir(&tmp));
    fail.store(true, Ordering::SeqCst);
    let held = gate.lock().unwrap();
    fire_and_forget(&journal).await;
    assert!(matches!(
        journal.shutdown(Duration::from_millis(50)).await,
        Err(ControlError::DeadlineExceeded)
    ));
    drop(held);
    for call in ["second", "third"] {
        let r = journal.shutdown(Duration::from_secs(30)).await;
        assert!(
            matches!(r, Err(ControlError::NotDurable(_))),
            "{call} call: {r:?}"
        );
    }
}
