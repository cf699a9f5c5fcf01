//! Replaying an emergency dump into the journal (SPEC §4), and setting
//! aside the records that cannot be appended.
//!
//! Every record is re-appended with its original ids, so records that did
//! reach the store come back `AlreadyAppended` and nothing is written twice.
//! A record the store refuses for a reason of its own stops the replay, or,
//! when the operator asks for it, is written durably to a quarantine file
//! next to the dump. The dump is archived only once every record was
//! replayed or quarantined: a dump record is never deleted unaccounted for.

use std::path::{Path, PathBuf};

use crate::emergency::{
    self, DumpError, DumpLine, QuarantineEntry, QuarantinedLine, QuarantinedRecord,
};
use crate::error::{AppendError, ReplayError};
use crate::metrics as m;
use crate::model::{AppendResult, AppendStatus};
use crate::store::Store;

use super::Journal;

/// How a replay treats a record it cannot append.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Set aside each record the store refuses for a reason of its own (a
    /// wrong expected version, an idempotency conflict, invalid content) in
    /// a quarantine file next to the dump, and go on; lines of the dump
    /// that are not records at all (a damaged file) go there too, verbatim.
    /// Without it, the replay stops at the first such record, and a dump
    /// with a bad line is refused before anything is appended. A failing store stops the
    /// replay either way: that is not the record's fault.
    pub quarantine_failed: bool,
}

/// What a replayed dump did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Records (appends) in the dump.
    pub records: usize,
    /// Events written by the replay.
    pub appended_events: u64,
    /// Events that were already in the store.
    pub already_appended_events: u64,
    /// Records and unreadable lines set aside (see
    /// [`ReplayOptions::quarantine_failed`]).
    pub quarantined: usize,
    /// The quarantine file holding them, if any were.
    pub quarantined_to: Option<PathBuf>,
    /// Where the dump was archived.
    pub archived_to: PathBuf,
}

impl ReplayReport {
    fn tally(&mut self, result: &AppendResult) {
        let n = result.events.len() as u64;
        match result.status {
            AppendStatus::Appended => {
                metrics::counter!(m::REPLAYED_EVENTS_TOTAL).increment(n);
                self.appended_events += n
            }
            AppendStatus::AlreadyAppended => self.already_appended_events += n,
        }
    }
}

/// Whether `error` is the record's own (appending it again will fail the
/// same way), rather than the journal's.
fn refuses_the_record(error: &AppendError) -> bool {
    matches!(
        error,
        AppendError::WrongExpectedVersion(_)
            | AppendError::IdempotencyConflict { .. }
            | AppendError::Invalid(_)
    )
}

/// Runs blocking dump file work off the async threads.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, DumpError> + Send + 'static,
) -> Result<T, ReplayError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ReplayError::Dump(DumpError::Encode(format!("{what} task failed: {e}"))))?
        .map_err(ReplayError::Dump)
}

/// The dump's records, and, when `options` quarantine, its lines that are
/// not records, to be set aside. Without quarantine a bad line refuses the
/// whole dump, as [`emergency::read_dump`] does.
async fn read_records(
    path: &Path,
    options: ReplayOptions,
) -> Result<(Vec<emergency::DumpRecord>, Vec<QuarantineEntry>), ReplayError> {
    let owned = path.to_path_buf();
    if !options.quarantine_failed {
        let records = blocking("reader", move || emergency::read_dump(&owned)).await?;
        return Ok((records, Vec::new()));
    }
    let lines = blocking("reader", move || emergency::read_dump_lines(&owned)).await?;
    let (mut records, mut bad) = (Vec::new(), Vec::new());
    for line in lines {
        match line {
            DumpLine::Record(r) => records.push(r),
            DumpLine::Bad {
                line,
                bytes,
                reason,
            } => {
                let reason = format!("not a dump record: {reason}");
                bad.push(QuarantineEntry::Line(QuarantinedLine::new(
                    path, line, bytes, reason,
                )));
            }
        }
    }
    Ok((records, bad))
}

impl<S: Store> Journal<S> {
    /// Replays an emergency dump, stopping at the first record that cannot
    /// be appended; see [`Journal::replay_dump_with`].
    pub async fn replay_dump(
        &self,
        path: &Path,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<ReplayReport, ReplayError> {
        self.replay_dump_with(path, ReplayOptions::default(), progress)
            .await
    }

    /// Replays an emergency dump: re-appends every record with its original
    /// ids (so records that did reach the store come back
    /// `AlreadyAppended` and are not written twice), then archives the
    /// dump. A record that cannot be appended stops the replay, leaving the
    /// dump in place, unless `options` quarantine it: then it is written to
    /// a quarantine file (fsynced) before the dump is archived. `progress`
    /// is called with the number of records done. Not cancel-safe in the
    /// sense that records already appended stay appended; replaying again
    /// is safe.
    pub async fn replay_dump_with(
        &self,
        path: &Path,
        options: ReplayOptions,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<ReplayReport, ReplayError> {
        let (records, mut quarantine) = read_records(path, options).await?;
        let mut report = ReplayReport {
            records: records.len(),
            appended_events: 0,
            already_appended_events: 0,
            quarantined: 0,
            quarantined_to: None,
            archived_to: path.to_path_buf(),
        };
        for (i, record) in records.into_iter().enumerate() {
            let appended = self
                .append(&record.stream, record.expected, record.to_events())
                .await;
            match appended {
                Ok(result) => report.tally(&result),
                Err(error) if options.quarantine_failed && refuses_the_record(&error) => quarantine
                    .push(QuarantineEntry::Record(QuarantinedRecord {
                        dump: path.to_path_buf(),
                        record_number: i + 1,
                        error: error.to_string(),
                        record,
                    })),
                Err(error) => {
                    return Err(ReplayError::Append {
                        record: i + 1,
                        error,
                    })
                }
            }
            progress(i + 1);
        }
        if !quarantine.is_empty() {
            report.quarantined = quarantine.len();
            let (dump, now) = (path.to_path_buf(), crate::clock::now_us());
            let written = blocking("quarantine", move || {
                emergency::write_quarantine(&dump, &quarantine, now)
            });
            // Durable before the dump is archived: an archived dump counts
            // as done, so what it could not append must be set aside first.
            report.quarantined_to = Some(written.await?);
            metrics::counter!(m::QUARANTINED_RECORDS_TOTAL).increment(report.quarantined as u64);
        }
        let owned = path.to_path_buf();
        report.archived_to = blocking("archive", move || emergency::archive_dump(&owned)).await?;
        Ok(report)
    }
}
