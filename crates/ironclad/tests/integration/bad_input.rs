//! Guards the bad-input contract (SPEC §2 "Bad input", "Backpressure",
//! "Barrier and lifecycle"): every `ValidationError` variant is reachable
//! through `Journal::append` (and `try_append`) with its own distinct,
//! non-empty message, and nothing is written; rejected appends (invalid,
//! wrong expected version, idempotency conflict) never fail the good appends
//! queued around them; `try_append` returns `Full` deterministically (the
//! writer is held on SQLite's write lock while the queue fills) for both the
//! event and the byte bound, while `append` waits for room; after `shutdown`
//! every entry point refuses with `ShuttingDown`/`ShutDown` (a repeated
//! `shutdown` waits and returns Ok), and appends
//! queued before it were drained. Bad configurations and bad read arguments
//! are typed errors too.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use ironclad::{
    AppendError, AppendStatus, ControlError, ExpectedVersion, Journal, JournalConfig, NewEvent,
    OpenError, ReadError, ValidationError, VerifyError, VerifyOptions,
};
use uuid::Uuid;

const PAYLOAD_MAX: usize = 1024;
const EVENTS_MAX: usize = 100;

fn small_config(dir: &Path) -> JournalConfig {
    let mut cfg = common::fast_config(dir);
    cfg.limits.payload_bytes_max = PAYLOAD_MAX;
    cfg.limits.events_per_append_max = EVENTS_MAX;
    cfg.queue_bytes_max = PAYLOAD_MAX + 64 * 1024; // the smallest allowed
    cfg.busy_timeout_ms = 60_000;
    cfg
}

/// Exhaustive on purpose: a new variant must be added to this test.
fn variant(e: &ValidationError) -> &'static str {
    match e {
        ValidationError::StreamNameEmpty { .. } => "StreamNameEmpty",
        ValidationError::StreamNameTooLong { .. } => "StreamNameTooLong",
        ValidationError::StreamNameControlChar { .. } => "StreamNameControlChar",
        ValidationError::NoEvents => "NoEvents",
        ValidationError::TooManyEvents { .. } => "TooManyEvents",
        ValidationError::PayloadTooLarge { .. } => "PayloadTooLarge",
        ValidationError::PayloadTooDeep { .. } => "PayloadTooDeep",
        ValidationError::PayloadNotJson { .. } => "PayloadNotJson",
        ValidationError::BadEventType { .. } => "BadEventType",
        ValidationError::BadEntity { .. } => "BadEntity",
        ValidationError::MetadataTooLarge { .. } => "MetadataTooLarge",
        ValidationError::AppendTooLarge { .. } => "AppendTooLarge",
        ValidationError::DuplicateId { .. } => "DuplicateId",
        ValidationError::ContainsNul { .. } => "ContainsNul",
        ValidationError::EventTypeControlChar { .. } => "EventTypeControlChar",
        ValidationError::EntityControlChar { .. } => "EntityControlChar",
    }
}
const VARIANTS: usize = 16;

fn ok_event() -> NewEvent {
    NewEvent::new("thing.happened", r#"{"ok":true}"#)
}

fn many(n: usize) -> Vec<NewEvent> {
    (0..n).map(|_| ok_event()).collect()
}

#[tokio::test]
async fn every_validation_error_is_typed_distinct_and_writes_nothing() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(small_config(&dir));
    let dup = Uuid::new_v4();
    let big_payload = format!(r#"{{"blob":"{}"}}"#, "x".repeat(PAYLOAD_MAX));
    let near_max_payload = format!(r#"{{"blob":"{}"}}"#, "y".repeat(PAYLOAD_MAX - 20));
    let deep = "[".repeat(65) + &"]".repeat(65);
    let big_metadata: BTreeMap<String, String> = (0..65)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();

    // (stream, events, check of the specific error)
    type Check = Box<dyn Fn(&ValidationError) -> bool>;
    let cases: Vec<(String, Vec<NewEvent>, Check)> = vec![
        (
            "".into(),
            many(1),
            Box::new(|e| matches!(e, ValidationError::StreamNameEmpty { max: 256 })),
        ),
        (
            "s".repeat(257),
            many(1),
            Box::new(|e| matches!(e, ValidationError::StreamNameTooLong { len: 257, max: 256 })),
        ),
        (
            "orders\u{7}1".into(),
            many(1),
            Box::new(|e| {
                matches!(
                    e,
                    ValidationError::StreamNameControlChar {
                        byte_offset: 6,
                        code: 7
                    }
                )
            }),
        ),
        (
            "s".into(),
            vec![ok_event(), NewEvent::new("forged\n\u{1b}[31mINFO ok", "{}")],
            Box::new(|e| {
                matches!(
                    e,
                    ValidationError::EventTypeControlChar {
                        index: 1,
                        byte_offset: 6,
                        code: 10
                    }
                )
            }),
        ),
        (
            "s".into(),
            vec![NewEvent::new("t", "{}").with_entity(ironclad::Op::Update, "order-1\n\u{1b}[31m")],
            Box::new(|e| {
                matches!(
                    e,
                    ValidationError::EntityControlChar {
                        index: 0,
                        byte_offset: 7,
                        code: 10
                    }
                )
            }),
        ),
        (
            "s".into(),
            vec![],
            Box::new(|e| matches!(e, ValidationError::NoEvents)),
        ),
        (
            "s".into(),
            many(EVENTS_MAX + 1),
            Box::new(|e| {
                matches!(
                    e,
                    ValidationError::TooManyEvents {
                        count: 101,
                        max: EVENTS_MAX
                    }
                )
            }),
        ),
        (
            "s".into(),
            vec![ok_event(), NewEvent::new("t", big_payload.clone())],
            Box::new(
                move |e| matches!(e, ValidationError::PayloadTooLarge { index: 1, max: PAYLOAD_MAX, len } if *len == PAYLOAD_MAX + 11),
            ),
        ),
        (
            "s".into(),
            vec![NewEvent::new("t", deep)],
            Box::new(|e| matches!(e, ValidationError::PayloadTooDeep { index: 0, max: 64 })),
        ),
        (
            "s".into(),
            vec![
                ok_event(),
                ok_event(),
                NewEvent::new("t", r#"{"unterminated": "#),
            ],
            Box::new(
                |e| matches!(e, ValidationError::PayloadNotJson { index: 2, reason } if !reason.is_empty()),
            ),
        ),
        (
            "s".into(),
            vec![NewEvent::new("", "{}")],
            Box::new(|e| {
                matches!(
                    e,
                    ValidationError::BadEventType {
                        index: 0,
                        len: 0,
                        ..
                    }
                )
            }),
        ),
        (
            "s".into(),
            vec![NewEvent::new("t", "{}").with_entity(ironclad::Op::Create, "")],
            Box::new(|e| {
                matches!(
                    e,
                    ValidationError::BadEntity {
                        index: 0,
                        len: 0,
                        ..
                    }
                )
            }),
        ),
        (
            "s".into(),
            vec![NewEvent {
                metadata: big_metadata,
                ..ok_event()
            }],
            Box::new(|e| {
                matches!(
                    e,
                    ValidationError::MetadataTooLarge {
                        index: 0,
                        entries: 65,
                        ..
                    }
                )
            }),
        ),
        (
            "s".into(),
            (0..EVENTS_MAX)
                .map(|_| NewEvent::new("t", near_max_payload.clone()))
                .collect(),
            Box::new(
                |e| matches!(e, ValidationError::AppendTooLarge { bytes, max } if bytes > max),
            ),
        ),
        (
            "s".into(),
            vec![ok_event().with_id(dup), ok_event(), ok_event().with_id(dup)],
            Box::new(
                move |e| matches!(e, ValidationError::DuplicateId { id, first_index: 0, index: 2 } if *id == dup),
            ),
        ),
        (
            "s".into(),
            vec![ok_event(), ok_event().with_metadata("k", "a\0b")],
            Box::new(|e| {
                matches!(
                    e,
                    ValidationError::ContainsNul {
                        index: 1,
                        field: "metadata"
                    }
                )
            }),
        ),
    ];
    assert_eq!(cases.len(), VARIANTS);

    let mut names = HashSet::new();
    let mut messages = HashSet::new();
    for (stream, events, check) in cases {
        let err = match journal
            .append(&stream, ExpectedVersion::Any, events.clone())
            .await
        {
            Err(AppendError::Invalid(v)) => v,
            other => panic!("stream {stream:?}: expected a validation error, got {other:?}"),
        };
        assert!(check(&err), "unexpected details: {err:?}");
        // try_append and enqueue refuse the same way, before queueing.
        match journal.try_append(&stream, ExpectedVersion::Any, events.clone()) {
            Err(AppendError::Invalid(v)) => assert_eq!(v, err),
            other => panic!(
                "try_append: expected {err:?}, got {:?}",
                other.map(|_| "a ticket")
            ),
        }
        match journal.enqueue(&stream, ExpectedVersion::Any, events).await {
            Err(AppendError::Invalid(v)) => assert_eq!(v, err),
            other => panic!(
                "enqueue: expected {err:?}, got {:?}",
                other.map(|_| "a ticket")
            ),
        }
        let msg = err.to_string();
        assert!(!msg.trim().is_empty(), "{err:?} has an empty message");
        let outer = AppendError::Invalid(err.clone()).to_string();
        assert!(
            outer.contains(&msg),
            "the append error carries the reason: {outer}"
        );
        assert!(
            names.insert(variant(&err)),
            "variant {} hit twice",
            variant(&err)
        );
        assert!(messages.insert(msg.clone()), "message repeated: {msg}");
    }
    assert_eq!(names.len(), VARIANTS, "every variant was triggered");
    assert_eq!(messages.len(), VARIANTS, "every message is distinct");
    assert_eq!(
        journal.ledger_head().unwrap(),
        None,
        "no rejected append wrote anything"
    );
    common::shutdown(&journal).await;
}

#[tokio::test]
async fn bad_appends_do_not_fail_the_good_ones_around_them() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(small_config(&dir));
    let known = Uuid::new_v4();
    journal
        .append(
            "mixed",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("t", r#"{"v":0}"#).with_id(known)],
        )
        .await
        .unwrap();

    // Hold the writer on the SQLite lock so everything below queues up and
    // is committed together once the lock is released.
    let lock = common::WriteLock::acquire(&dir);
    let blocker = journal
        .enqueue("other", ExpectedVersion::Any, many(1))
        .await
        .unwrap();
    let good = |i: u32| vec![NewEvent::new("good", format!(r#"{{"i":{i}}}"#))];
    let g1 = journal
        .enqueue("mixed", ExpectedVersion::Any, good(1))
        .await
        .unwrap();
    let invalid = journal
        .enqueue(
            "mixed",
            ExpectedVersion::Any,
            vec![NewEvent::new("t", "not json")],
        )
        .await;
    assert!(matches!(
        invalid,
        Err(AppendError::Invalid(ValidationError::PayloadNotJson { .. }))
    ));
    let g2 = journal
        .enqueue("mixed", ExpectedVersion::Exact(2), good(2))
        .await
        .unwrap();
    let wrong = journal
        .enqueue("mixed", ExpectedVersion::Exact(99), good(99))
        .await
        .unwrap();
    let g3 = journal
        .enqueue("mixed", ExpectedVersion::StreamExists, good(3))
        .await
        .unwrap();
    let conflict = journal
        .enqueue(
            "mixed",
            ExpectedVersion::Any,
            vec![NewEvent::new("t", r#"{"v":"other"}"#).with_id(known)],
        )
        .await
        .unwrap();
    let g4 = journal
        .enqueue("mixed", ExpectedVersion::Exact(4), good(4))
        .await
        .unwrap();
    let resend = journal
        .enqueue(
            "mixed",
            ExpectedVersion::Any,
            vec![NewEvent::new("t", r#"{"v":0}"#).with_id(known)],
        )
        .await
        .unwrap();
    let g5 = journal
        .enqueue("mixed", ExpectedVersion::Any, good(5))
        .await
        .unwrap();
    lock.release();

    assert_eq!(blocker.await.unwrap().status, AppendStatus::Appended);
    let mut versions = Vec::new();
    for t in [g1, g2, g3, g4, g5] {
        let r = t
            .await
            .expect("a good append must not be failed by its neighbours");
        assert_eq!(r.status, AppendStatus::Appended);
        versions.push(r.events[0].version);
    }
    assert_eq!(versions, vec![2, 3, 4, 5, 6]);
    match wrong.await {
        Err(AppendError::WrongExpectedVersion(w)) => {
            assert_eq!(w.expected, ExpectedVersion::Exact(99));
            assert_eq!(w.actual, 3, "sees the appends queued before it");
            let msg = w.to_string();
            assert!(msg.contains("99") && msg.contains('3'), "{msg}");
        }
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }
    match conflict.await {
        Err(AppendError::IdempotencyConflict { id, .. }) => assert_eq!(id, known),
        other => panic!("expected IdempotencyConflict, got {other:?}"),
    }
    let r = resend.await.unwrap();
    assert_eq!(r.status, AppendStatus::AlreadyAppended);
    assert_eq!((r.events[0].version, r.events[0].position), (1, 1));

    let events = common::read_everything(&journal);
    assert_eq!(events.len(), 7, "1 initial + 1 blocker + 5 good");
    common::check_log_structure(&events);
    assert_eq!(journal.stream_head("mixed").unwrap().unwrap().version, 6);
    assert_eq!(common::verify_ok(&journal).checked, 7);
    common::shutdown(&journal).await;
}

#[tokio::test]
async fn try_append_is_full_when_the_event_bound_is_reached() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let mut cfg = small_config(&dir);
    cfg.queue_events_max = 4;
    cfg.limits.events_per_append_max = 4;
    let journal = common::open(cfg);

    let lock = common::WriteLock::acquire(&dir);
    // Permits return only after the commit: with the writer held, these four
    // events occupy the whole queue however fast the writer picks them up.
    let first = journal
        .enqueue("q", ExpectedVersion::Any, many(4))
        .await
        .unwrap();
    match journal.try_append("q", ExpectedVersion::Any, many(1)) {
        Err(e @ AppendError::Full { what: "events" }) => {
            assert!(e.to_string().contains("full"), "{e}")
        }
        other => panic!("expected Full(events), got {:?}", other.map(|_| "a ticket")),
    }
    // append() waits for room instead.
    let waiting = {
        let j = journal.clone();
        tokio::spawn(async move { j.append("q", ExpectedVersion::Any, many(2)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "append must wait while the queue is full"
    );
    lock.release();

    assert_eq!(first.await.unwrap().events.len(), 4);
    let r = waiting.await.unwrap().expect("append after room frees up");
    assert_eq!(r.events[0].version, 5);
    let ticket = journal
        .try_append("q", ExpectedVersion::Exact(6), many(4))
        .expect("room again once the queue drained");
    assert_eq!(ticket.await.unwrap().events[3].version, 10);
    common::shutdown(&journal).await;
}

#[tokio::test]
async fn try_append_is_full_when_the_byte_bound_is_reached() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(small_config(&dir));
    let capacity = journal.config().queue_bytes_max;
    let chunk = || -> Vec<NewEvent> {
        (0..10)
            .map(|i| {
                NewEvent::new(
                    "bulk",
                    format!(r#"{{"i":{i},"pad":"{}"}}"#, "p".repeat(900)),
                )
            })
            .collect()
    };
    let chunk_bytes: usize =
        "bytes".len() + chunk().iter().map(NewEvent::queued_bytes).sum::<usize>();
    let fits = capacity / chunk_bytes;
    assert!(fits >= 2, "test setup: several chunks fit");

    let lock = common::WriteLock::acquire(&dir);
    let mut tickets = Vec::new();
    for _ in 0..fits {
        tickets.push(
            journal
                .try_append("bytes", ExpectedVersion::Any, chunk())
                .expect("fits"),
        );
    }
    match journal.try_append("bytes", ExpectedVersion::Any, chunk()) {
        Err(AppendError::Full { what: "bytes" }) => {}
        other => panic!("expected Full(bytes), got {:?}", other.map(|_| "a ticket")),
    }
    // A small append still fits in what is left.
    let small = journal
        .try_append("bytes", ExpectedVersion::Any, many(1))
        .expect("small fits");
    lock.release();
    for t in tickets {
        assert_eq!(t.await.unwrap().status, AppendStatus::Appended);
    }
    small.await.unwrap();
    assert_eq!(common::read_everything(&journal).len(), fits * 10 + 1);
    common::shutdown(&journal).await;
}

#[tokio::test]
async fn after_shutdown_everything_refuses_and_queued_work_was_drained() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::config(&dir));
    let mut tickets = Vec::new();
    for i in 0..20 {
        let ev = NewEvent::new("drain", format!(r#"{{"i":{i}}}"#));
        tickets.push(
            journal
                .enqueue("d", ExpectedVersion::Any, vec![ev])
                .await
                .unwrap(),
        );
    }
    journal
        .shutdown(Duration::from_secs(60))
        .await
        .expect("shutdown");
    for t in tickets {
        assert_eq!(
            t.await.expect("queued before shutdown: committed").status,
            AppendStatus::Appended
        );
    }

    let is_shutting_down = |r: Result<(), AppendError>| match r {
        Err(e @ AppendError::ShuttingDown) => assert!(!e.to_string().is_empty()),
        other => panic!("expected ShuttingDown, got {other:?}"),
    };
    is_shutting_down(
        journal
            .append("d", ExpectedVersion::Any, many(1))
            .await
            .map(|_| ()),
    );
    is_shutting_down(
        journal
            .try_append("d", ExpectedVersion::Any, many(1))
            .map(|_| ()),
    );
    is_shutting_down(
        journal
            .enqueue("d", ExpectedVersion::Any, many(1))
            .await
            .map(|_| ()),
    );
    assert!(matches!(journal.flush().await, Err(ControlError::ShutDown)));
    assert!(matches!(
        journal.wal_checkpoint().await,
        Err(ControlError::ShutDown)
    ));
    // Shutdown itself is idempotent: a repeat waits for the stopped writer.
    assert!(matches!(
        journal.shutdown(Duration::from_secs(1)).await,
        Ok(())
    ));

    // Reads still work on the closed handle, and see the drained appends.
    assert_eq!(journal.stream_head("d").unwrap().unwrap().version, 20);
    drop(journal);
    let reopened = common::open(common::config(&dir));
    assert_eq!(common::verify_ok(&reopened).checked, 20);
    common::shutdown(&reopened).await;
}

#[test]
fn inconsistent_configs_are_refused_at_open() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let mut zero = common::fast_config(&dir);
    zero.queue_events_max = 0;
    let mut per_append = common::fast_config(&dir);
    per_append.queue_events_max = 10;
    per_append.limits.events_per_append_max = 11;
    let mut bytes = common::fast_config(&dir);
    bytes.queue_bytes_max = bytes.limits.payload_bytes_max;
    let mut messages = HashSet::new();
    for cfg in [zero, per_append, bytes] {
        match Journal::open(cfg) {
            Err(OpenError::Config(msg)) => assert!(messages.insert(msg)),
            Err(other) => panic!("expected a config error, got {other}"),
            Ok(_) => panic!("an inconsistent config must be refused"),
        }
    }
    assert!(
        !common::db_path(&dir).exists(),
        "nothing was created for a bad config"
    );
}

#[tokio::test]
async fn reads_with_bad_stream_names_are_typed_errors() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::fast_config(&dir));
    assert!(matches!(
        journal.read("", 1, 10),
        Err(ReadError::Invalid(ValidationError::StreamNameEmpty { .. }))
    ));
    assert!(matches!(
        journal.stream_head("a\nb"),
        Err(ReadError::Invalid(ValidationError::StreamNameControlChar {
            byte_offset: 1,
            ..
        }))
    ));
    let opts = VerifyOptions {
        stream: Some("x".repeat(300)),
        against: None,
    };
    assert!(matches!(
        journal.verify(&opts, &mut |_| {}),
        Err(VerifyError::Invalid(ValidationError::StreamNameTooLong {
            len: 300,
            ..
        }))
    ));
    assert_eq!(journal.read("never-written", 1, 10).unwrap(), vec![]);
    common::shutdown(&journal).await;
}
