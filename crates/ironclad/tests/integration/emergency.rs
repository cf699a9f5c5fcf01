//! Emergency dump replay (SPEC §4): a dump written durably is re-appended
//! with its original ids, so records that had reached the store are
//! `AlreadyAppended` and nothing is written twice; a replayed dump is
//! archived, never deleted; a record that cannot be appended stops the
//! replay with its record number and leaves the dump in place; replaying
//! again is safe. The ledger verifies after every replay. The first dump
//! into a data directory also fsyncs the data directory, which holds the
//! new `emergency/` entry (checked through `ironclad::durable::record_ops`,
//! since only power loss would show its absence).

use crate::common;

use std::path::Path;

use ironclad::durable::{record_ops, DurableOp};
use ironclad::emergency::{archive_dump, list_dumps, write_dump, DumpRecord, DUMP_DIR};
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

/// Where `op` first occurs in `ops`, or a panic listing them.
fn position(ops: &[DurableOp], op: &DurableOp) -> usize {
    ops.iter()
        .position(|o| o == op)
        .unwrap_or_else(|| panic!("{op:?} not in {ops:#?}"))
}

/// The temporary file renamed to `target`, and where the rename is.
fn renamed_to(ops: &[DurableOp], target: &Path) -> (std::path::PathBuf, usize) {
    ops.iter()
        .enumerate()
        .find_map(|(i, o)| match o {
            DurableOp::Rename { from, to } if to == target => Some((from.clone(), i)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no rename to {} in {ops:#?}", target.display()))
}

#[test]
fn the_first_dump_fsyncs_the_data_directory_that_holds_emergency() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    std::fs::create_dir(&dir).unwrap();
    let emergency = dir.join(DUMP_DIR);
    let (r, _) = record("a", ExpectedVersion::Any, 1);
    let (path, ops) = record_ops(|| write_dump(&dir, std::slice::from_ref(&r), 1).unwrap());

    // `emergency/` is a new name in the data directory: without this
    // fsync a power cut can lose the directory and the dump with it.
    let created = position(&ops, &DurableOp::CreateDir(emergency.clone()));
    let data_synced = position(&ops, &DurableOp::SyncDir(dir.clone()));
    assert!(
        created < data_synced,
        "data dir fsynced after mkdir: {ops:#?}"
    );
    // The dump's bytes are fsynced under the temporary name, renamed into
    // place, and the rename made durable by fsyncing `emergency/`.
    let (tmp_file, rename) = renamed_to(&ops, &path);
    assert_eq!(tmp_file.parent(), Some(emergency.as_path()));
    assert!(position(&ops, &DurableOp::SyncFile(tmp_file)) < rename);
    assert!(rename_then_sync(&ops, &path, &emergency), "{ops:#?}");
    assert_eq!(list_dumps(&dir).unwrap().len(), 1);

    // Later dumps reuse the directory: no mkdir, no data-dir fsync.
    let (second, ops) = record_ops(|| write_dump(&dir, &[r], 2).unwrap());
    assert!(!ops.contains(&DurableOp::SyncDir(dir.clone())), "{ops:#?}");
    assert!(rename_then_sync(&ops, &second, &emergency));
}

/// Whether `ops` renames into `target` and fsyncs `dir` after that.
fn rename_then_sync(ops: &[DurableOp], target: &Path, dir: &Path) -> bool {
    let (_, rename) = renamed_to(ops, target);
    ops[rename..].contains(&DurableOp::SyncDir(dir.to_path_buf()))
}

#[test]
fn archiving_a_dump_fsyncs_both_directories_and_the_new_archive_directory() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let (r, _) = record("a", ExpectedVersion::Any, 1);
    let path = write_dump(&dir, &[r], 1).unwrap();
    let emergency = dir.join(DUMP_DIR);
    let (archived, ops) = record_ops(|| archive_dump(&path).unwrap());
    let archive = emergency.join(ironclad::emergency::ARCHIVE_DIR);
    let created = position(&ops, &DurableOp::CreateDir(archive.clone()));
    assert!(rename_then_sync(&ops, &archived, &archive));
    // `emergency/` holds both the new `archive/` entry and the dump's old
    // name: fsynced after both changed.
    assert!(rename_then_sync(&ops, &archived, &emergency));
    assert!(created < position(&ops, &DurableOp::SyncDir(emergency)));
}
