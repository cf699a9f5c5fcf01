//! Emergency dump replay (SPEC §4): a dump written durably is re-appended
//! with its original ids, so records that had reached the store are
//! `AlreadyAppended` and nothing is written twice; a replayed dump is
//! archived, never deleted; a record that cannot be appended stops the
//! replay with its record number and leaves the dump in place; replaying
//! again is safe. The ledger verifies after every replay. The first dump
//! into a data directory also fsyncs the data directory, which holds the
//! new `emergency/` entry (checked through `ironclad::durable::record_ops`,
//! since only power loss would show its absence). With
//! `quarantine_failed`, a record that cannot be appended is set aside in a
//! fsynced quarantine file next to the dump and the replay goes on.
//! Invariant: a dump record is never deleted without being replayed or
//! quarantined durably. The line limit is the same for writer and reader,
//! tested at true size at and one byte past it.

use crate::common;

use std::path::Path;

use ironclad::durable::{record_ops, DurableOp};
use ironclad::emergency::{
    archive_dump, list_dumps, read_dump, write_dump, write_quarantine, DumpError, DumpRecord,
    QuarantineEntry, QuarantinedRecord, DUMP_DIR, DUMP_LINE_BYTES_MAX,
};
use ironclad::{ExpectedVersion, NewEvent, ReplayError, ReplayOptions, VerifyOptions};
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
    let (stale, _) = record("a", ExpectedVersion::NoStream, 2);
    let (_tmp, journal, path) = a_dump_with_a_stale_record(stale, None);
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

/// A journal in a fresh directory and a dump for it: a record of stream
/// `a`, then `stale` (which expects `a` not to exist), then `after`.
fn a_dump_with_a_stale_record(
    stale: DumpRecord,
    after: Option<DumpRecord>,
) -> (tempfile::TempDir, ironclad::Journal, std::path::PathBuf) {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::fast_config(&dir));
    let (ok, _) = record("a", ExpectedVersion::Any, 1);
    let records: Vec<DumpRecord> = [Some(ok), Some(stale), after]
        .into_iter()
        .flatten()
        .collect();
    let path = write_dump(&dir, &records, 9).unwrap();
    (tmp, journal, path)
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

/// Invariant: a dump record is never deleted without being replayed or
/// quarantined durably. The failing record goes to a quarantine file next
/// to the dump (not listed as a dump), the records after it are replayed,
/// and only then is the dump archived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_record_is_set_aside_durably_and_the_replay_goes_on() {
    let (stale, _) = record("a", ExpectedVersion::NoStream, 2);
    let (after, _) = record("b", ExpectedVersion::Any, 3);
    let (tmp, journal, path) = a_dump_with_a_stale_record(stale.clone(), Some(after));
    let dir = common::data_dir(&tmp);
    let options = ReplayOptions {
        quarantine_failed: true,
    };
    let report = journal
        .replay_dump_with(&path, options, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        (report.records, report.appended_events, report.quarantined),
        (3, 4, 1)
    );
    let quarantine = report.quarantined_to.expect("named in the report");
    assert_eq!(quarantine.parent(), path.parent(), "next to the dump");
    let text = std::fs::read_to_string(&quarantine).unwrap();
    let set_aside: Vec<QuarantinedRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(set_aside.len(), 1);
    assert_eq!(
        (set_aside[0].record_number, &set_aside[0].record),
        (2, &stale)
    );
    assert!(set_aside[0].error.contains("wrong expected version"));
    assert!(
        report.archived_to.exists() && !path.exists(),
        "archived after"
    );
    assert!(
        list_dumps(&dir).unwrap().is_empty(),
        "a quarantine file is no dump"
    );
    assert_eq!(
        journal.stream_head("b").unwrap().unwrap().version,
        2,
        "went on"
    );
    common::shutdown(&journal).await;
}

/// A damaged dump: lines that are not records (a torn JSON line, bytes
/// that are not UTF-8) refuse the whole dump without quarantine, and with
/// it are set aside verbatim, never dropped, while every record replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_dump_lines_are_quarantined_verbatim_never_dropped() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::fast_config(&dir));
    let (a, _) = record("a", ExpectedVersion::Any, 1);
    let (b, _) = record("b", ExpectedVersion::Any, 2);
    let path = write_dump(&dir, &[a, b], 9).unwrap();
    let torn = br#"{"stream":"c","expected":"any","ids":["#.to_vec();
    let binary = vec![0xff, 0xfe, b'x', 0x00];
    let mut bytes = std::fs::read(&path).unwrap();
    let first_end = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    let tail = bytes.split_off(first_end);
    for bad in [&torn, &binary] {
        bytes.extend_from_slice(bad);
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(&tail);
    std::fs::write(&path, &bytes).unwrap();

    match journal.replay_dump(&path, &mut |_| {}).await {
        Err(ReplayError::Dump(DumpError::BadLine { line: 2, .. })) => {}
        other => panic!("without quarantine a bad line refuses the dump: {other:?}"),
    }
    assert!(path.exists() && journal.read_all(1, 10).unwrap().is_empty());

    let options = ReplayOptions {
        quarantine_failed: true,
    };
    let report = journal
        .replay_dump_with(&path, options, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        (report.records, report.appended_events, report.quarantined),
        (2, 4, 2)
    );
    let text = std::fs::read_to_string(report.quarantined_to.expect("named")).unwrap();
    let lines: Vec<QuarantineEntry> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    match lines.as_slice() {
        [QuarantineEntry::Line(t), QuarantineEntry::Line(x)] => {
            assert_eq!((t.line_number, x.line_number), (2, 3));
            assert_eq!(t.line.as_deref().map(str::as_bytes), Some(&torn[..]));
            assert_eq!(x.line_hex.as_deref(), Some(hex_of(&binary).as_str()));
            assert!(t.error.contains("not a dump record"), "{}", t.error);
        }
        other => panic!("both lines set aside: {other:?}"),
    }
    assert!(report.archived_to.exists() && !path.exists());
    common::shutdown(&journal).await;
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_quarantine_file_is_renamed_into_place_and_its_directory_fsynced() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let (r, _) = record("a", ExpectedVersion::Any, 1);
    let dump = write_dump(&dir, std::slice::from_ref(&r), 1).unwrap();
    let entry = QuarantinedRecord {
        dump: dump.clone(),
        record_number: 1,
        error: "refused".into(),
        record: r,
    };
    let (path, ops) = record_ops(|| write_quarantine(&dump, &[entry], 2).unwrap());
    assert!(
        rename_then_sync(&ops, &path, &dir.join(DUMP_DIR)),
        "{ops:#?}"
    );
}

/// A record whose dump line is exactly `line_bytes` long.
fn record_of_line_bytes(line_bytes: usize) -> DumpRecord {
    let id = Uuid::nil();
    let make = |payload_bytes: usize| {
        let payload = format!("\"{}\"", "a".repeat(payload_bytes - 2));
        DumpRecord::new(
            "s",
            ExpectedVersion::Any,
            &[id],
            &[NewEvent::new("t", payload)],
        )
        .unwrap()
    };
    let empty = serde_json::to_vec(&make(2)).unwrap().len();
    make(2 + line_bytes - empty)
}

/// Writer and reader share one line limit, at true size: a line of exactly
/// `DUMP_LINE_BYTES_MAX` bytes is written and read back; one byte more is
/// refused by the writer (nothing written) and by the reader. Before the
/// fix the writer had no limit and the reader's was 64 MiB. Peak disk use:
/// one dump of the limit's size, in a temporary directory.
#[test]
fn a_line_at_the_limit_is_written_and_read_and_one_byte_more_is_refused_by_both() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let path = write_dump(&dir, &[record_of_line_bytes(DUMP_LINE_BYTES_MAX)], 1).unwrap();
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    assert_eq!(
        file_bytes,
        DUMP_LINE_BYTES_MAX as u64 + 1,
        "the line and its newline"
    );
    assert_eq!(read_dump(&path).unwrap().len(), 1);

    let over = record_of_line_bytes(DUMP_LINE_BYTES_MAX + 1);
    let refused = write_dump(&dir, std::slice::from_ref(&over), 2);
    assert!(
        matches!(refused, Err(DumpError::TooLarge { .. })),
        "{refused:?}"
    );
    assert_eq!(list_dumps(&dir).unwrap().len(), 1, "nothing written");
    let mut line = serde_json::to_vec(&over).unwrap();
    drop(over);
    line.push(b'\n');
    std::fs::write(&path, line).unwrap();
    let read = read_dump(&path);
    assert!(
        matches!(read, Err(DumpError::TooLarge { .. })),
        "{:?}",
        read.map(|r| r.len())
    );
}
