//! `submit()` (SPEC §2, §4 "Emergency dump"): fire-and-forget appends are
//! never dropped by a failing store. Guards: a transient failure is retried
//! and the append commits once; a store that keeps failing sends submitted
//! appends to a durable emergency dump, which replays idempotently with
//! nothing lost; and when even the dump fails, the journal fails closed and
//! refuses all new work. The store is the real SQLite store wrapped by the
//! fault-injecting `FlakyStore`; the dump is written to the real disk.

use crate::common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::flaky::FlakyStore;
use ironclad::emergency::list_dumps;
use ironclad::store::sqlite::{SqliteOptions, SqliteStore};
use ironclad::{AppendError, ControlError, ExpectedVersion, Journal, NewEvent, VerifyOptions};
use uuid::Uuid;

fn flaky_journal(
    dir: &std::path::Path,
) -> (Journal<FlakyStore>, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let mut cfg = common::fast_config(dir);
    cfg.submit_retry_delays_ms = vec![1, 5];
    std::fs::create_dir_all(dir).unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let fail_next = Arc::new(AtomicUsize::new(0));
    let store = FlakyStore {
        inner: SqliteStore::open(SqliteOptions::from_config(&cfg)).unwrap(),
        fail: Arc::clone(&fail),
        fail_next: Arc::clone(&fail_next),
        gate: Arc::default(),
    };
    (
        Journal::with_store(store, cfg, None).unwrap(),
        fail,
        fail_next,
    )
}

fn ev(n: u32) -> NewEvent {
    NewEvent::new("t", format!(r#"{{"n":{n}}}"#))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_and_commits_once() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let (journal, _fail, fail_next) = flaky_journal(&dir);
    fail_next.store(1, Ordering::SeqCst);
    let ids = journal
        .submit("s", ExpectedVersion::Any, vec![ev(1)])
        .await
        .unwrap();
    journal.flush().await.expect("the retry made it durable");
    let stored = journal.read("s", 1, 10).unwrap();
    assert_eq!(stored.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert!(list_dumps(&dir).unwrap().is_empty(), "no dump needed");
    journal.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_sends_submitted_appends_to_a_dump_and_replay_loses_nothing() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let (journal, fail, _) = flaky_journal(&dir);
    journal
        .submit("s", ExpectedVersion::Any, vec![ev(0)])
        .await
        .unwrap();
    journal.flush().await.unwrap();
    fail.store(true, Ordering::SeqCst);
    let mut submitted: Vec<Uuid> = Vec::new();
    for n in 1..=20 {
        submitted.extend(
            journal
                .submit("s", ExpectedVersion::Any, vec![ev(n), ev(n + 100)])
                .await
                .unwrap(),
        );
    }
    // Dumped is protected: the barrier is clean although the store failed.
    journal.flush().await.expect("dumped appends are durable");
    // An awaited append in the same outage is answered with the error.
    assert!(matches!(
        journal
            .append("s", ExpectedVersion::Any, vec![ev(999)])
            .await,
        Err(AppendError::Store(_))
    ));
    assert!(matches!(
        journal.flush().await,
        Err(ControlError::NotDurable(_))
    ));
    assert_eq!(
        journal.read("s", 1, 100).unwrap().len(),
        1,
        "the store kept failing"
    );
    let dumps = list_dumps(&dir).unwrap();
    assert!(!dumps.is_empty());

    fail.store(false, Ordering::SeqCst);
    let (mut appended, mut already) = (0, 0);
    for d in &dumps {
        let r = journal.replay_dump(&d.path, &mut |_| {}).await.unwrap();
        appended += r.appended_events;
        already += r.already_appended_events;
    }
    assert_eq!((appended, already), (40, 0));
    let stored: HashSet<Uuid> = common::read_everything(&journal.reader())
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(stored.len(), 41);
    assert!(
        submitted.iter().all(|id| stored.contains(id)),
        "every submitted event is present"
    );
    journal
        .verify(&VerifyOptions::default(), &mut |_| {})
        .expect("ledger verifies");
    journal.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dump_fails_the_journal_closed() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let (journal, fail, _) = flaky_journal(&dir);
    // A file where the dump directory must go: the dump itself fails.
    std::fs::write(dir.join(ironclad::emergency::DUMP_DIR), b"in the way").unwrap();
    fail.store(true, Ordering::SeqCst);
    journal
        .submit("s", ExpectedVersion::Any, vec![ev(1)])
        .await
        .unwrap();
    assert!(
        matches!(journal.flush().await, Err(ControlError::NotDurable(_))),
        "loudly not durable"
    );
    for _ in 0..2 {
        assert!(matches!(
            journal.submit("s", ExpectedVersion::Any, vec![ev(2)]).await,
            Err(AppendError::FailedClosed)
        ));
        assert!(matches!(
            journal.append("s", ExpectedVersion::Any, vec![ev(3)]).await,
            Err(AppendError::FailedClosed)
        ));
    }
    let msg = AppendError::FailedClosed.to_string();
    assert!(
        msg.contains("failed closed") && msg.contains("dump replay"),
        "{msg}"
    );
    let _ = journal.shutdown(Duration::from_secs(10)).await;
}
