//! Dead-letter queue operations (SPEC §4, §7 `dlq …`): stats, list, show,
//! retry, purge, export, and the janitor's eviction and expiry.
//!
//! Every removal archives first: entries are written to a fsynced,
//! compressed archive ([`crate::delivery::archive`]) and only then deleted
//! from the store, in one writer transaction that also counts them in the
//! sink's `archived_total`. A crash between the two leaves the entry in both
//! places; the next run archives it again (archives are at-least-once, keyed
//! by sink and position), and nothing is ever only deleted.
//!
//! The delete names each row by its whole content, not its position: a dead
//! letter re-created at the same position after the archive was written
//! (`dlq retry`, then a new failure) differs from it and is kept. Purges and
//! the janitor archive in chunks of at most 1,000 entries and
//! [`ARCHIVE_CHUNK_BYTES_MAX`] line bytes, so memory and archive files stay
//! bounded however large the payloads.
//!
//! These work on a [`Journal`] whether or not a delivery engine runs on it;
//! with an engine running, use the engine's wrappers so its dispatchers
//! reload after a `retry`.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use thiserror::Error;

use crate::delivery::archive::{
    entry_line_bytes, write_archive, ArchiveError, ArchivedDlqEntry, ArchivedEvent,
    ARCHIVE_CHUNK_BYTES_MAX,
};
use crate::error::{ControlError, StoreError};
use crate::journal::{Journal, LogReader};
use crate::model::RecordedEvent;
use crate::store::delivery::{DlqFilter, DlqRow, DlqStats, SinkRow, StateApplied, StateWrite};
use crate::store::Store;

/// Most entries one `list` page returns.
pub const DLQ_PAGE_MAX: usize = 1_000;

/// Entries moved or archived per writer transaction. Archiving is bounded
/// by bytes as well ([`ARCHIVE_CHUNK_BYTES_MAX`]).
const CHUNK: usize = 1_000;

/// A DLQ operation failed.
#[derive(Debug, Error)]
pub enum DlqError {
    /// No sink of that name has ever been registered.
    #[error("unknown sink {0:?}: `ironclad status` lists the sinks")]
    UnknownSink(String),
    /// No such entry.
    #[error("no dead letter for sink {sink:?} at position {position}")]
    NotFound {
        /// The sink.
        sink: String,
        /// The position asked for.
        position: u64,
    },
    /// The page size is out of range.
    #[error("page size {0} is out of range: use 1..={DLQ_PAGE_MAX}")]
    PageSize(usize),
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing through the journal failed.
    #[error(transparent)]
    Write(#[from] ControlError),
    /// The archive could not be written; nothing was deleted.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A dead letter names an event the log does not hold, so it cannot be
    /// archived whole; nothing was archived or deleted.
    #[error("the dead letter of sink {sink:?} at position {position} names an event missing from the log; nothing was archived or deleted: run `ironclad ledger verify` and restore the data directory from a backup")]
    EventMissing {
        /// The sink.
        sink: String,
        /// The dead letter's position.
        position: u64,
    },
    /// Writing the export failed.
    #[error("export: {0}")]
    Export(std::io::Error),
}

/// A dead letter with its sink's name and, where present, its event.
#[derive(Debug, Clone, Serialize)]
pub struct DlqEntry {
    /// The sink's name.
    pub sink: String,
    /// The stored row.
    #[serde(flatten)]
    pub row: DlqRow,
    /// The event (always present unless the store is damaged).
    pub event: Option<RecordedEvent>,
}

/// DLQ totals of one sink.
#[derive(Debug, Clone, Serialize)]
pub struct SinkDlqStats {
    /// The sink.
    pub sink: String,
    /// Entries in the store.
    #[serde(flatten)]
    pub stats: DlqStats,
    /// Entries moved to the archive so far.
    pub archived_total: u64,
}

/// Why entries are archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveCause {
    /// The DLQ was over its size limit.
    Evicted,
    /// The entry outlived its TTL.
    Expired,
    /// An operator purged it.
    Purged,
}

impl ArchiveCause {
    /// The name stored in the archive.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveCause::Evicted => "evicted",
            ArchiveCause::Expired => "expired",
            ArchiveCause::Purged => "purged",
        }
    }
}

fn unix_ms() -> u64 {
    u64::try_from(crate::clock::now_us() / 1000).unwrap_or(0)
}

/// The registered sinks.
pub fn sinks<S: Store>(journal: &LogReader<S>) -> Result<Vec<SinkRow>, DlqError> {
    Ok(journal.store().sinks()?)
}

fn sink_by_name<S: Store>(journal: &LogReader<S>, name: &str) -> Result<SinkRow, DlqError> {
    sinks(journal)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| DlqError::UnknownSink(name.to_string()))
}

/// Resolves an optional sink name into a filter's sink id.
pub fn filter_for<S: Store>(
    journal: &LogReader<S>,
    sink: Option<&str>,
    mut filter: DlqFilter,
) -> Result<DlqFilter, DlqError> {
    if let Some(name) = sink {
        filter.sink_id = Some(sink_by_name(journal, name)?.sink_id);
    }
    Ok(filter)
}

/// Totals per sink.
pub fn stats<S: Store>(journal: &LogReader<S>) -> Result<Vec<SinkDlqStats>, DlqError> {
    let store = journal.store();
    let mut out = Vec::new();
    for s in store.sinks()? {
        out.push(SinkDlqStats {
            stats: store.dlq_stats(s.sink_id)?,
            archived_total: s.archived_total,
            sink: s.name,
        });
    }
    Ok(out)
}

/// The name of sink `sink_id`, or `#<id>` for a sink no longer listed.
fn sink_name(names: &[SinkRow], sink_id: i64) -> String {
    names
        .iter()
        .find(|s| s.sink_id == sink_id)
        .map_or_else(|| format!("#{sink_id}"), |s| s.name.clone())
}

fn entries<S: Store>(
    journal: &LogReader<S>,
    rows: Vec<DlqRow>,
    names: &[SinkRow],
) -> Result<Vec<DlqEntry>, DlqError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let sink = sink_name(names, row.sink_id);
        let event = journal.store().event_at(row.position)?;
        out.push(DlqEntry { sink, row, event });
    }
    Ok(out)
}

/// One page of entries matching `filter`, after the key `after`
/// (sink id, position) of the previous page's last entry.
pub fn list<S: Store>(
    journal: &LogReader<S>,
    filter: &DlqFilter,
    after: Option<(i64, u64)>,
    limit: usize,
) -> Result<Vec<DlqEntry>, DlqError> {
    if limit == 0 || limit > DLQ_PAGE_MAX {
        return Err(DlqError::PageSize(limit));
    }
    let rows = journal.store().dlq_list(filter, after, limit)?;
    entries(journal, rows, &sinks(journal)?)
}

/// One entry.
pub fn show<S: Store>(
    journal: &LogReader<S>,
    sink: &str,
    position: u64,
) -> Result<DlqEntry, DlqError> {
    let s = sink_by_name(journal, sink)?;
    let filter = DlqFilter {
        sink_id: Some(s.sink_id),
        ..DlqFilter::default()
    };
    let rows =
        journal
            .store()
            .dlq_list(&filter, Some((s.sink_id, position.saturating_sub(1))), 1)?;
    let row = rows
        .into_iter()
        .find(|r| r.position == position)
        .ok_or_else(|| DlqError::NotFound {
            sink: sink.to_string(),
            position,
        })?;
    let mut v = entries(journal, vec![row], &[s])?;
    v.pop().ok_or_else(|| DlqError::NotFound {
        sink: sink.to_string(),
        position,
    })
}

/// Every entry matching `filter`, one page at a time, to `f`.
fn for_each_page<S: Store>(
    journal: &LogReader<S>,
    filter: &DlqFilter,
    mut f: impl FnMut(Vec<DlqRow>) -> Result<(), DlqError>,
) -> Result<(), DlqError> {
    let mut after = None;
    loop {
        let page = journal.store().dlq_list(filter, after, CHUNK)?;
        let Some(last) = page.last() else { break };
        after = Some((last.sink_id, last.position));
        f(page)?;
    }
    Ok(())
}

/// Sends every entry matching `filter` back to retrying (attempts reset,
/// due now). Returns how many moved. A running engine must reload its
/// dispatchers afterwards (the engine's wrapper does).
pub async fn retry<S: Store>(journal: &Journal<S>, filter: &DlqFilter) -> Result<u64, DlqError> {
    let mut pages = Vec::new();
    for_each_page(journal, filter, |page| {
        pages.push(page);
        Ok(())
    })?;
    let mut moved = 0;
    for page in pages {
        let mut by_sink: std::collections::BTreeMap<i64, Vec<u64>> = Default::default();
        for r in page {
            by_sink.entry(r.sink_id).or_default().push(r.position);
        }
        for (sink_id, positions) in by_sink {
            if let StateApplied::Rows(n) = journal
                .write_state(StateWrite::DlqRequeue {
                    sink_id,
                    positions,
                    now_unix_ms: unix_ms(),
                })
                .await?
            {
                moved += n;
            }
        }
    }
    metrics::counter!(crate::metrics::DLQ_RETRIED_TOTAL).increment(moved);
    Ok(moved)
}

/// Dead letters written to a durable archive and not yet deleted: what
/// [`archive_chunk`] returns and [`remove_archived`] takes.
#[derive(Debug, Clone)]
pub struct ArchivedChunk {
    /// The archive written.
    pub path: PathBuf,
    /// The rows it holds, exactly as read: only rows still equal to one of
    /// these are deleted.
    pub rows: Vec<DlqRow>,
    /// The archive's line bytes before compression.
    pub line_bytes: u64,
}

/// The first half of [`archive_and_remove`]: archives a prefix of `rows`
/// (at least one, at most [`ARCHIVE_CHUNK_BYTES_MAX`] line bytes unless the
/// first alone is larger) with their events verbatim, durably. `None` when
/// `rows` is empty. Fails, writing nothing, when an entry cannot be
/// encoded whole or its event is missing.
pub async fn archive_chunk<S: Store>(
    journal: &Journal<S>,
    rows: &[DlqRow],
    cause: ArchiveCause,
) -> Result<Option<ArchivedChunk>, DlqError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let names = sinks(journal)?;
    let now = unix_ms();
    let mut entries = Vec::new();
    let mut chunk = Vec::new();
    let mut line_bytes = 0u64;
    for row in rows {
        let entry = archived_entry(journal, row, &names, cause, now)?;
        let bytes = entry_line_bytes(&entry)?;
        // Checked before adding, so a chunk stays within the budget and an
        // entry over it goes alone; the rest wait for the next chunk.
        if !entries.is_empty() && line_bytes + bytes > ARCHIVE_CHUNK_BYTES_MAX {
            break;
        }
        line_bytes += bytes;
        entries.push(entry);
        chunk.push(row.clone());
    }
    let dir = journal.config().data_dir.clone();
    let path = tokio::task::spawn_blocking(move || write_archive(&dir, &entries, now))
        .await
        .map_err(|e| DlqError::Export(std::io::Error::other(e.to_string())))??;
    Ok(path.map(|path| ArchivedChunk {
        path,
        rows: chunk,
        line_bytes,
    }))
}

/// One row as archived, with its event read from the log.
fn archived_entry<S: Store>(
    journal: &Journal<S>,
    row: &DlqRow,
    names: &[SinkRow],
    cause: ArchiveCause,
    now_unix_ms: u64,
) -> Result<ArchivedDlqEntry, DlqError> {
    let sink = sink_name(names, row.sink_id);
    let event = journal
        .store()
        .event_at(row.position)?
        .ok_or_else(|| DlqError::EventMissing {
            sink: sink.clone(),
            position: row.position,
        })?;
    Ok(ArchivedDlqEntry {
        sink,
        position: row.position,
        event_id: row.event_id,
        attempts: row.attempts,
        first_failure_unix_ms: row.first_failure_unix_ms,
        last_failure_unix_ms: row.last_failure_unix_ms,
        last_error: row.last_error.clone(),
        reason: row.reason.as_str().to_string(),
        archived_unix_ms: now_unix_ms,
        archive_cause: cause.as_str().to_string(),
        event: Some(ArchivedEvent::from_event(&event)?),
    })
}

/// The second half of [`archive_and_remove`]: deletes the rows of `chunk`
/// that are still exactly as archived (a dead letter re-created since, at
/// the same position, is kept for a later archive), counting them in
/// `archived_total`. Returns how many were deleted.
pub async fn remove_archived<S: Store>(
    journal: &Journal<S>,
    chunk: ArchivedChunk,
) -> Result<u64, DlqError> {
    let mut by_sink: std::collections::BTreeMap<i64, Vec<DlqRow>> = Default::default();
    for row in chunk.rows {
        by_sink.entry(row.sink_id).or_default().push(row);
    }
    let mut removed = 0;
    for (sink_id, rows) in by_sink {
        if let StateApplied::Rows(n) = journal
            .write_state(StateWrite::DlqRemoveArchived { sink_id, rows })
            .await?
        {
            removed += n;
        }
    }
    Ok(removed)
}

/// Archives a prefix of `rows` (see [`archive_chunk`]), durably, then
/// deletes what it archived from the store. Returns how many were deleted;
/// callers call again for the rows left.
pub async fn archive_and_remove<S: Store>(
    journal: &Journal<S>,
    rows: Vec<DlqRow>,
    cause: ArchiveCause,
) -> Result<u64, DlqError> {
    match archive_chunk(journal, &rows, cause).await? {
        Some(chunk) => remove_archived(journal, chunk).await,
        None => Ok(0),
    }
}

/// Archives, then deletes, every entry matching `filter`. Returns how many.
pub async fn purge<S: Store>(journal: &Journal<S>, filter: &DlqFilter) -> Result<u64, DlqError> {
    let mut total = 0;
    loop {
        // Always the first page: the previous one is gone.
        let page = journal.store().dlq_list(filter, None, CHUNK)?;
        if page.is_empty() {
            break;
        }
        let n = archive_and_remove(journal, page, ArchiveCause::Purged).await?;
        if n == 0 {
            break; // Someone else removed them; do not spin.
        }
        total += n;
    }
    metrics::counter!(crate::metrics::DLQ_PURGED_TOTAL).increment(total);
    Ok(total)
}

/// Writes every entry matching `filter` as JSON lines to `out`. Returns how
/// many. Read-only.
pub fn export<S: Store>(
    journal: &LogReader<S>,
    filter: &DlqFilter,
    out: &mut dyn Write,
) -> Result<u64, DlqError> {
    let names = sinks(journal)?;
    let mut n = 0;
    for_each_page(journal, filter, |page| {
        // One event in memory at a time: a page of 1,000 entries with
        // 1 MiB payloads would hold about 1 GB.
        for row in page {
            let Some(e) = entries(journal, vec![row], &names)?.pop() else {
                continue;
            };
            serde_json::to_writer(&mut *out, &e)
                .map_err(|err| DlqError::Export(std::io::Error::other(err)))?;
            out.write_all(b"\n").map_err(DlqError::Export)?;
            n += 1;
        }
        Ok(())
    })?;
    out.flush().map_err(DlqError::Export)?;
    Ok(n)
}

/// What one janitor pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JanitorReport {
    /// Entries archived because their TTL passed.
    pub expired: u64,
    /// Entries archived because the DLQ was over its limit.
    pub evicted: u64,
}

/// One janitor pass over every sink: archives entries older than `ttl_s`,
/// then the oldest entries beyond `entries_max`.
pub async fn janitor_pass<S: Store>(
    journal: &Journal<S>,
    entries_max: usize,
    ttl_s: u64,
) -> Result<JanitorReport, DlqError> {
    let mut report = JanitorReport::default();
    let cutoff = unix_ms().saturating_sub(ttl_s.saturating_mul(1000));
    for s in sinks(journal)? {
        let filter = DlqFilter {
            sink_id: Some(s.sink_id),
            failed_before_unix_ms: Some(cutoff),
            ..DlqFilter::default()
        };
        loop {
            let page = journal.store().dlq_list(&filter, None, CHUNK)?;
            if page.is_empty() {
                break;
            }
            let n = archive_and_remove(journal, page, ArchiveCause::Expired).await?;
            if n == 0 {
                break;
            }
            report.expired += n;
        }
        loop {
            let size = journal.store().dlq_stats(s.sink_id)?.entries;
            let over = usize::try_from(size)
                .unwrap_or(usize::MAX)
                .saturating_sub(entries_max);
            if over == 0 {
                break;
            }
            let oldest = journal.store().dlq_oldest(s.sink_id, over.min(CHUNK))?;
            let n = archive_and_remove(journal, oldest, ArchiveCause::Evicted).await?;
            if n == 0 {
                break;
            }
            report.evicted += n;
        }
        let st = journal.store().dlq_stats(s.sink_id)?;
        metrics::gauge!(crate::metrics::DLQ_SIZE, "sink" => s.name.clone()).set(st.entries as f64);
        let age_s = st
            .oldest_failure_unix_ms
            .map_or(0.0, |t| unix_ms().saturating_sub(t) as f64 / 1000.0);
        metrics::gauge!(crate::metrics::DLQ_OLDEST_SECONDS, "sink" => s.name).set(age_s);
    }
    metrics::counter!(crate::metrics::DLQ_EXPIRED_TOTAL).increment(report.expired);
    metrics::counter!(crate::metrics::DLQ_EVICTIONS_TOTAL).increment(report.evicted);
    Ok(report)
}
