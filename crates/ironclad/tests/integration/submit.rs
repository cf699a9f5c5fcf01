//! `submit()` (SPEC §2, §4 "Emergency dump"): fire-and-forget appends are
//! never dropped by a failing store. Guards: a transient failure is retried
//! and the append commits once; a store that keeps failing sends submitted
//! appends to a durable emergency dump, which replays idempotently with
//! nothing lost; and when even the dump fails, the journal fails closed and
//! refuses all new work. A submitted append the store *rejects* (wrong
//! expected version, idempotency conflict) is recorded with its reason in a
//! rejection dump and reported by the next flush (and by shutdown if no
//! flush did). Invariant: a `submit()`ted append is either committed, or
//! durably recorded with its reason, never silently dropped. The store is
//! the real SQLite store wrapped by the fault-injecting `FlakyStore`; the
//! dump is written to the real disk.

use crate::common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::flaky::FlakyStore;
use ironclad::config::{APPEND_BYTES_LIMIT, PAYLOAD_BYTES_LIMIT};
use ironclad::emergency::{dump_rejection, list_dumps, read_dump, RejectReason};
use ironclad::store::sqlite::{SqliteOptions, SqliteStore};
use ironclad::validate::append_bytes;
use ironclad::{
    AppendError, ControlError, ExpectedVersion, Journal, JournalConfig, NewEvent, ValidationError,
    VerifyOptions,
};
use uuid::Uuid;

fn flaky_journal(
    dir: &std::path::Path,
) -> (Journal<FlakyStore>, Arc<AtomicBool>, Arc<AtomicUsize>) {
    flaky_journal_with(dir, |_| {})
}

fn flaky_journal_with(
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut JournalConfig),
) -> (Journal<FlakyStore>, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let mut cfg = common::fast_config(dir);
    cfg.submit_retry_delays_ms = vec![1, 5];
    tweak(&mut cfg);
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

/// A fresh journal whose stream `s` holds `first`, and the ids of a submit
/// to `s` expecting no stream, which the store will reject.
async fn a_stale_submit(
    first: NewEvent,
) -> (tempfile::TempDir, std::path::PathBuf, Journal, Vec<Uuid>) {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::fast_config(&dir));
    let no_stream = ExpectedVersion::NoStream;
    journal.append("s", no_stream, vec![first]).await.unwrap();
    let ids = journal.submit("s", no_stream, vec![ev(2)]).await.unwrap();
    (tmp, dir, journal, ids)
}

/// The one rejection dump a `SubmitRejected` names, checked to hold exactly
/// the append with `ids`, rejected for `reason`.
fn assert_recorded(err: ControlError, ids: &[Uuid], reason: RejectReason) -> std::path::PathBuf {
    let ControlError::SubmitRejected { count, dumps } = err else {
        panic!("expected SubmitRejected, got {err:?}");
    };
    assert_eq!((count, dumps.len()), (1, 1), "{dumps:?}");
    assert_eq!(dump_rejection(&dumps[0]), Some(reason));
    let records = read_dump(&dumps[0]).unwrap();
    let record_ids: Vec<Uuid> = records[0].events.iter().map(|e| e.id).collect();
    assert_eq!((records.len(), record_ids.as_slice()), (1, ids));
    let why = records[0]
        .rejected
        .as_ref()
        .expect("the record keeps its reason");
    assert_eq!(why.reason, reason);
    dumps[0].clone()
}

/// Invariant: a `submit()`ted append is either committed, or durably
/// recorded with its reason; never silently dropped. Before the fix both
/// rejected submits vanished and every flush returned Ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_submit_is_recorded_with_its_reason_and_the_next_flush_reports_it() {
    let first = ev(1).with_id(Uuid::now_v7());
    let (_tmp, dir, journal, stale) = a_stale_submit(first.clone()).await;
    let committed = journal
        .submit("s", ExpectedVersion::Any, vec![ev(3)])
        .await
        .unwrap();
    let err = journal
        .flush()
        .await
        .expect_err("the rejection is reported");
    let msg = err.to_string();
    assert!(
        msg.contains("1 submitted append") && msg.contains("--quarantine-failed"),
        "{msg}"
    );
    let path = assert_recorded(err, &stale, RejectReason::WrongExpectedVersion);
    assert!(
        list_dumps(&dir).unwrap().iter().any(|d| d.path == path),
        "dump list shows it"
    );
    journal
        .flush()
        .await
        .expect("reported once: a later flush is clean");

    // Same id, other content: an idempotency conflict, recorded the same way.
    let conflicting = NewEvent::new("t", r#"{"other":1}"#).with_id(first.id.unwrap());
    let ids = journal
        .submit("s", ExpectedVersion::Any, vec![conflicting])
        .await
        .unwrap();
    let err = journal.flush().await.expect_err("reported");
    assert_recorded(err, &ids, RejectReason::IdempotencyConflict);
    let stored: Vec<Uuid> = journal
        .read("s", 1, 10)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        stored,
        [first.id.unwrap(), committed[0]],
        "nothing rejected was written"
    );
    common::shutdown(&journal).await;
}

/// A rejection no flush reported is reported by shutdown, so a caller that
/// only submits and shuts down still hears of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_a_rejection_no_flush_reported() {
    let (_tmp, _dir, journal, ids) = a_stale_submit(ev(1)).await;
    let err = journal
        .shutdown(Duration::from_secs(10))
        .await
        .expect_err("reported");
    assert_recorded(err, &ids, RejectReason::WrongExpectedVersion);
}

/// An event whose append to stream `s` is exactly `bytes` queued bytes: the
/// largest payload, padded with metadata entries.
fn event_of_append_bytes(bytes: usize) -> NewEvent {
    let mut event = NewEvent::new("t", format!("\"{}\"", "a".repeat(PAYLOAD_BYTES_LIMIT - 2)));
    let entry_max = ironclad::Limits::default().metadata_entry_bytes_max;
    for i in 0.. {
        let left = bytes - append_bytes("s", std::slice::from_ref(&event));
        // An entry costs 16 bytes plus its key and value.
        let key = format!("m{i:03}");
        let value_len = (left - 16 - key.len()).min(entry_max - key.len());
        event = event.with_metadata(key, "v".repeat(value_len));
        if append_bytes("s", std::slice::from_ref(&event)) == bytes {
            return event;
        }
    }
    unreachable!("the loop returns once padded")
}

/// The append limit and the dump's line limit agree, at true size: an
/// append of exactly `APPEND_BYTES_LIMIT` queued bytes (the largest
/// payload) is accepted, dumped by a failing store, and read back from the
/// dump, i.e. replayable; one byte more is refused at submit even though
/// the queue would hold it. Before the fix the append was dumped but
/// `read_dump` refused its 256 MiB line (the limit was 64 MiB), and the
/// larger append was accepted. Peak disk use: one 256 MiB dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_at_the_limit_is_dumped_and_readable_and_one_byte_more_is_refused() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let (journal, fail, _) = flaky_journal_with(&dir, |cfg| {
        cfg.limits.payload_bytes_max = PAYLOAD_BYTES_LIMIT;
        cfg.queue_bytes_max = 2 * APPEND_BYTES_LIMIT;
    });
    fail.store(true, Ordering::SeqCst);
    let at_limit = event_of_append_bytes(APPEND_BYTES_LIMIT);
    let ids = journal
        .submit("s", ExpectedVersion::Any, vec![at_limit])
        .await
        .unwrap();
    journal.flush().await.expect("dumped appends are durable");
    let dumps = list_dumps(&dir).unwrap();
    let records = read_dump(&dumps[0].path).expect("a dump of the largest append reads back");
    assert_eq!(records[0].events[0].id, ids[0]);
    assert_eq!(
        records[0].events[0].payload.get().len(),
        PAYLOAD_BYTES_LIMIT
    );
    drop(records);

    let over = event_of_append_bytes(APPEND_BYTES_LIMIT + 1);
    match journal.submit("s", ExpectedVersion::Any, vec![over]).await {
        Err(AppendError::Invalid(ValidationError::AppendTooLarge { bytes, max })) => {
            assert_eq!((bytes, max), (APPEND_BYTES_LIMIT + 1, APPEND_BYTES_LIMIT))
        }
        other => panic!("expected AppendTooLarge, got {other:?}"),
    }
    let _ = journal.shutdown(Duration::from_secs(30)).await;
}
