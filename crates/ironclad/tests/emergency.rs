//! Emergency dump replay (SPEC §4): a dump written durably is re-appended
//! with its original ids, so records that had reached the store are
//! `AlreadyAppended` and nothing is written twice; a replayed dump is
//! archived, never deleted; a record that cannot be appended stops the
//! replay with its record number and leaves the dump in place; replaying
//! again is safe. The ledger verifies after every replay.

mod common;

use ironclad::emergency::{list_dumps, write_dump, DumpRecord};
use ironclad::{ExpectedVersion, NewEvent, ReplayError, VerifyOptions};
use uuid::Uuid;

fn record(stream: &str, expected: ExpectedVersion, n: u32) -> (DumpRecord, Vec<NewEvent>) {
    let events: Vec<NewEvent> = (0..2)
        .map(|i| NewEvent::new("t", format!(r#"{{"n":{n},"i":{i}}}"#)).with_id(Uuid::now_v7()))
        .collect();
    let ids: Vec<Uuid> = events.iter().filter_map(|e| e.id).collect();
    (
        DumpRecord::new(stream, expected, &ids, &events).unwrap(),
        events,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_idempotent_and_archives() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::fast_config(&dir));
    let (r1, e1) = record("a", ExpectedVersion::NoStream, 1);
    let (r2, _) = record("a", ExpectedVersion::Exact(2), 2);
    let (r3, _) = record("b", ExpectedVersion::Any, 3);
    // r1 did reach the store before the dump was taken.
    journal
        .append("a", ExpectedVersion::NoStream, e1)
        .await
        .unwrap();
    let path = write_dump(&dir, &[r1, r2, r3], 7).unwrap();
    assert_eq!(list_dumps(&dir).unwrap().len(), 1);

    let mut seen = Vec::new();
    let report = journal
        .replay_dump(&path, &mut |n| seen.push(n))
        .await
        .unwrap();
    assert_eq!(
        (
            report.records,
            report.appended_events,
            report.already_appended_events
        ),
        (3, 4, 2)
    );
    assert_eq!(seen, [1, 2, 3]);
    assert!(
        report.archived_to.exists() && !path.exists(),
        "archived, not deleted"
    );
    assert!(list_dumps(&dir).unwrap().is_empty());
    assert_eq!(journal.stream_head("a").unwrap().unwrap().version, 4);
    assert_eq!(journal.stream_head("b").unwrap().unwrap().version, 2);

    // Replaying the archived copy again writes nothing.
    let again = journal
        .replay_dump(&report.archived_to, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        (again.appended_events, again.already_appended_events),
        (0, 6)
    );
    let checked = journal
        .verify(&VerifyOptions::default(), &mut |_| {})
        .unwrap()
        .checked;
    assert_eq!(checked, 6);
    common::shutdown(&journal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_cannot_be_appended_stops_the_replay_and_keeps_the_dump() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::fast_config(&dir));
    let (ok, _) = record("a", ExpectedVersion::Any, 1);
    let (stale, _) = record("a", ExpectedVersion::NoStream, 2);
    let path = write_dump(&dir, &[ok, stale], 9).unwrap();
    match journal.replay_dump(&path, &mut |_| {}).await {
        Err(ReplayError::Append { record: 2, error }) => {
            assert!(
                error.to_string().contains("wrong expected version"),
                "{error}"
            )
        }
        other => panic!("expected record 2 to fail, got {other:?}"),
    }
    assert!(path.exists(), "the dump stays until it replays cleanly");
    assert_eq!(
        journal.stream_head("a").unwrap().unwrap().version,
        2,
        "record 1 went in once"
    );
    common::shutdown(&journal).await;
}
