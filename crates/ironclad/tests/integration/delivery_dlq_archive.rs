//! Archiving dead letters, against a real SQLite journal in a temp dir with
//! the DLQ rows written directly (no sink needed to fail):
//! - the archive holds each event verbatim, as `ironclad read` prints it,
//!   even when `serde_json::Value` cannot hold its payload;
//! - an archive that cannot be written stops the purge and the janitor,
//!   and nothing is deleted;
//! - only the row that was archived is deleted: a dead letter re-created at
//!   the same position between archiving and deleting is kept;
//! - purges and the janitor archive in chunks bounded by bytes, and the
//!   reader reads every chunk back.
//!
//! Every test ends on the two invariants: per sink, appended = delivered +
//! dead-lettered (in the store + archived) + pending
//! (`common::accounting::check`), and nothing leaves the DLQ unless an
//! fsynced archive holds it exactly as it was (`check_archived`).

use crate::common;
use crate::delivery_harness as h;

use std::io::Read as _;
use std::path::Path;

use flate2::read::MultiGzDecoder;
use ironclad::delivery::archive::{
    list_archives, read_archive, ArchivedDlqEntry, ARCHIVE_CHUNK_BYTES_MAX,
};
use ironclad::delivery::dlq::{self, ArchiveCause, DlqError};
use ironclad::delivery::routes::{RouteSpec, Routes};
use ironclad::store::delivery::{DlqFilter, DlqReason, DlqRow, Settle, StateApplied, StateWrite};
use ironclad::store::Store;
use ironclad::{Journal, NewEvent, RecordedEvent};
use tempfile::TempDir;

const STREAM: &str = "orders";
/// A week: the janitor's TTL never archives in these tests.
const TTL_S: u64 = 7 * 24 * 3600;

/// A journal whose sink [`h::SINK`] has dead-lettered one event per payload.
struct Dlq {
    _tmp: TempDir,
    dir: std::path::PathBuf,
    journal: Journal,
    sink_id: i64,
    routes: Routes,
}

impl Dlq {
    /// Appends one event per payload and dead-letters them all in one
    /// settle, moving the cursor past them.
    async fn new(payloads: &[String]) -> Dlq {
        let tmp = common::tempdir();
        let dir = common::data_dir(&tmp);
        let journal = common::open(common::fast_config(&dir));
        let register = StateWrite::RegisterSink {
            name: h::SINK.into(),
        };
        let Ok(StateApplied::Sink(sink_id)) = journal.write_state(register).await else {
            panic!("registering returns the sink id");
        };
        for p in payloads {
            h::append(&journal, STREAM, vec![NewEvent::new("t", p.clone())]).await;
        }
        let events = common::read_everything(&journal.reader());
        let settle = Settle {
            sink_id,
            cursor_to: events.last().map(|e| e.position),
            dead_letters: events
                .iter()
                .map(|e| dead(sink_id, e, 1, now_ms()))
                .collect(),
            ..Settle::default()
        };
        journal
            .write_state(StateWrite::Settle(settle))
            .await
            .expect("dead-letter");
        let routes = Routes::compile(&[RouteSpec {
            streams: "*".into(),
            sink: h::SINK.into(),
        }])
        .expect("routes");
        Dlq {
            _tmp: tmp,
            dir,
            journal,
            sink_id,
            routes,
        }
    }

    fn rows(&self) -> Vec<DlqRow> {
        h::dlq_rows(&**self.journal.store())
    }

    /// Purges the sink's whole DLQ; returns how many were deleted.
    async fn purge(&self) -> u64 {
        dlq::purge(&self.journal, &self.filter())
            .await
            .expect("purge")
    }

    fn filter(&self) -> DlqFilter {
        DlqFilter {
            sink_id: Some(self.sink_id),
            ..DlqFilter::default()
        }
    }

    /// Conservation, and every archived entry's event exactly as `ironclad
    /// read` prints it. Returns the accounting and the archived entries.
    fn check(&self) -> (common::accounting::Accounting, Vec<ArchivedDlqEntry>) {
        let acc = common::accounting::check(&self.journal.reader(), &self.routes, h::SINK);
        let archived = h::archived_entries(&self.dir);
        for a in &archived {
            let event = self
                .journal
                .store()
                .event_at(a.position)
                .expect("read")
                .expect("the event is in the log");
            let printed = serde_json::to_string(&event).expect("print");
            let kept = a.event.as_ref().expect("the event is archived").get();
            assert_eq!(kept, printed, "archived verbatim at {}", a.position);
        }
        (acc, archived)
    }
}

/// Now, in milliseconds since the Unix epoch: dead letters must be recent,
/// or the janitor's TTL archives them before its size limit does.
fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.expect("a clock after 1970").as_millis() as u64
}

/// The dead letter of `event` after `attempts` failures, the first at
/// `at_ms`.
fn dead(sink_id: i64, event: &RecordedEvent, attempts: u32, at_ms: u64) -> DlqRow {
    DlqRow {
        sink_id,
        position: event.position,
        event_id: event.id,
        lane: format!("s:{}", event.stream),
        attempts,
        first_failure_unix_ms: at_ms,
        last_failure_unix_ms: at_ms + u64::from(attempts),
        last_error: format!("HTTP 400 after {attempts} attempts"),
        reason: DlqReason::Permanent,
    }
}

/// Whether an archive holds `row` exactly as it is.
fn holds(archived: &[ArchivedDlqEntry], row: &DlqRow) -> bool {
    archived.iter().any(|a| {
        a.position == row.position
            && a.event_id == row.event_id
            && a.attempts == row.attempts
            && a.first_failure_unix_ms == row.first_failure_unix_ms
            && a.last_failure_unix_ms == row.last_failure_unix_ms
            && a.last_error == row.last_error
            && a.reason == row.reason.as_str()
    })
}

#[tokio::test]
async fn payloads_serde_json_value_cannot_hold_are_archived_verbatim() {
    let digits = "9".repeat(400);
    let payloads = [
        "1e999999".to_string(),
        format!("{{\"n\":{digits}}}"),
        r#"{"z":2.50,"a":[1E3,-0.0]}"#.to_string(),
    ];
    let env = Dlq::new(&payloads).await;
    let before = env.rows();
    assert_eq!(env.purge().await, 3);
    let (acc, archived) = env.check();
    assert_eq!((acc.dead.len(), acc.archived), (0, 3));
    assert!(before.iter().all(|r| holds(&archived, r)));
    for (a, payload) in archived.iter().zip(&payloads) {
        let text = a.event.as_ref().expect("event").get();
        assert!(text.contains(&format!("\"payload\":{payload},")), "{text}");
    }
    common::shutdown(&env.journal).await;
}

#[tokio::test]
async fn an_archive_that_cannot_be_written_stops_purge_and_janitor_deleting_nothing() {
    let env = Dlq::new(&["{}".to_string(), "[1]".to_string()]).await;
    // A file where the archive directory belongs: every write fails.
    std::fs::write(env.dir.join("dlq-archive"), b"in the way").expect("block");
    let before = env.rows();
    let err = dlq::purge(&env.journal, &env.filter()).await.unwrap_err();
    assert!(matches!(err, DlqError::Archive(_)), "{err}");
    let err = dlq::janitor_pass(&env.journal, 0, TTL_S).await.unwrap_err();
    assert!(matches!(err, DlqError::Archive(_)), "{err}");
    assert_eq!(env.rows(), before, "nothing deleted");
    let acc = common::accounting::check(&env.journal.reader(), &env.routes, h::SINK);
    assert_eq!((acc.dead.len(), acc.archived), (2, 0));
    common::shutdown(&env.journal).await;
}

#[tokio::test]
async fn a_dead_letter_recreated_after_archiving_is_kept() {
    let env = Dlq::new(&["{\"a\":1}".to_string(), "{\"b\":2}".to_string()]).await;
    let archived_rows = env.rows();
    let chunk = dlq::archive_chunk(&env.journal, &archived_rows, ArchiveCause::Purged)
        .await
        .expect("archive")
        .expect("a chunk");
    assert_eq!(chunk.rows, archived_rows);
    // Meanwhile: position 1 is retried and fails again, a new dead letter.
    let first = common::read_everything(&env.journal.reader()).remove(0);
    let requeue = StateWrite::DlqRequeue {
        sink_id: env.sink_id,
        positions: vec![first.position],
        now_unix_ms: now_ms(),
    };
    env.journal.write_state(requeue).await.expect("requeue");
    let again = dead(env.sink_id, &first, 3, now_ms());
    let settle = Settle {
        sink_id: env.sink_id,
        delete_retries: vec![first.position],
        dead_letters: vec![again.clone()],
        ..Settle::default()
    };
    env.journal
        .write_state(StateWrite::Settle(settle))
        .await
        .expect("dead again");

    let removed = dlq::remove_archived(&env.journal, chunk)
        .await
        .expect("remove");
    assert_eq!(removed, 1, "only the row still as archived");
    assert_eq!(
        env.rows(),
        vec![again.clone()],
        "the re-created row is kept"
    );
    let (acc, archived) = env.check();
    assert_eq!((acc.dead.len(), acc.archived), (1, 1));
    assert!(!holds(&archived, &again), "not archived yet");
    // The next purge archives it, then deletes it.
    assert_eq!(env.purge().await, 1);
    let (acc, archived) = env.check();
    assert_eq!((acc.dead.len(), acc.archived), (0, 2));
    assert!(archived_rows
        .iter()
        .chain([&again])
        .all(|r| holds(&archived, r)));
    common::shutdown(&env.journal).await;
}

/// Each archive's line bytes, read back through the archive reader.
fn chunk_sizes(dir: &Path) -> Vec<(u64, usize)> {
    let mut out = Vec::new();
    for file in list_archives(dir).expect("list") {
        let mut text = Vec::new();
        let gz = std::fs::File::open(&file.path).expect("open");
        MultiGzDecoder::new(gz)
            .read_to_end(&mut text)
            .expect("gunzip");
        let entries = read_archive(&file.path).expect("the reader reads every chunk");
        out.push((text.len() as u64, entries.len()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_and_janitor_chunk_large_payloads_by_bytes() {
    // 36 payloads of about 1 MB (compressible: the archives stay small on
    // disk, but the reader's limits count decompressed bytes).
    let payloads: Vec<String> = (0..36)
        .map(|i| format!("{{\"i\":{i},\"blob\":\"{}\"}}", "a".repeat(1_000_000)))
        .collect();
    let env = Dlq::new(&payloads).await;
    let before = env.rows();
    let report = dlq::janitor_pass(&env.journal, 2, TTL_S)
        .await
        .expect("janitor");
    assert_eq!(report.evicted, 34);
    let evicted = chunk_sizes(&env.dir);
    assert_eq!(env.purge().await, 2);
    let sizes = chunk_sizes(&env.dir);
    eprintln!("chunks (line bytes, entries): janitor {evicted:?}, all {sizes:?}");
    for &(bytes, entries) in &sizes {
        assert!(
            bytes <= ARCHIVE_CHUNK_BYTES_MAX || entries == 1,
            "a chunk of {entries} entries holds {bytes} bytes"
        );
    }
    assert_eq!(sizes.iter().map(|s| s.1).sum::<usize>(), 36);
    // Chunks are full: no more files than the budget requires, plus the
    // janitor's last partial chunk and the purge's.
    let total_bytes: u64 = sizes.iter().map(|s| s.0).sum();
    assert!(sizes.len() as u64 <= total_bytes.div_ceil(ARCHIVE_CHUNK_BYTES_MAX) + 1);
    let (acc, archived) = env.check();
    assert_eq!((acc.dead.len(), acc.archived), (0, 36));
    assert!(before.iter().all(|r| holds(&archived, r)));
    common::shutdown(&env.journal).await;
}
