//! Emergency dump files (SPEC §4 "Emergency dump"): the on-disk format, and
//! writing, listing, reading, quarantining and archiving dumps.
//!
//! A dump holds appends that were accepted but are not in the store. It is
//! JSON lines, one [`DumpRecord`] (one whole append, ids included) per line,
//! in `<data>/emergency/`. Two writers produce them, both on the journal's
//! writer thread: `submit()`ted appends the store kept failing to commit,
//! and `submit()`ted appends the store *rejected* (wrong expected version,
//! idempotency conflict), which carry their [`Rejection`] and whose file
//! name says so (see [`dump_rejection`]), so `ironclad dump list` shows why
//! without reading them. A dump is written with
//! [`crate::durable::write_atomic`]: to a temporary name, fsynced, renamed
//! into place and the directory fsynced (and the data directory too when
//! the first dump creates `emergency/`), so a crash leaves either a complete
//! dump or only a `.tmp` file that listing ignores.
//!
//! Replaying re-appends each record with its original ids, which makes
//! replay idempotent; a replayed dump is moved to `emergency/archive/`. A
//! record that cannot be appended stops the replay, unless the operator
//! asks to set such records aside: they are then written durably to a
//! quarantine file next to the dump (see [`write_quarantine`]) before the
//! dump is archived. A dump record is never deleted: it is replayed, or
//! quarantined, and the dump itself is only ever moved.
//!
//! One line holds one append, so the line limit is derived from the append
//! limit ([`DUMP_LINE_BYTES_MAX`]); the writer refuses, and the reader
//! rejects, exactly the same lines.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;
use uuid::Uuid;

use crate::config::APPEND_BYTES_LIMIT;
use crate::durable::{self, DurableWriteError};
use crate::model::{ExpectedVersion, NewEvent, Op};

/// Directory, under the data directory, that holds dumps.
pub const DUMP_DIR: &str = "emergency";
/// Directory, under [`DUMP_DIR`], that holds replayed dumps.
pub const ARCHIVE_DIR: &str = "archive";
/// Bytes a dump line may hold beyond its append's queued size (the size
/// [`APPEND_BYTES_LIMIT`] bounds, which counts every string as JSON-escaped
/// and 128 bytes per event for the event's keys): the record's envelope,
/// i.e. the stream key, the expected version at its longest, the
/// [`Rejection`] with its detail (at most [`REJECTION_DETAIL_BYTES_MAX`],
/// escaped at worst six bytes per byte), brackets and the newline. A test
/// checks the worst case stays within it.
pub const DUMP_RECORD_OVERHEAD_BYTES: usize = 64 * 1024;
/// Longest line written to or read from a dump, newline excluded: a line
/// is one record, one record is one append. Derived from the append limit
/// so that every append the journal accepts can be dumped *and* replayed.
pub const DUMP_LINE_BYTES_MAX: usize = APPEND_BYTES_LIMIT + DUMP_RECORD_OVERHEAD_BYTES;
/// Longest [`Rejection::detail`] kept: the store's message, cut at a
/// character boundary, so the record's overhead stays bounded.
pub const REJECTION_DETAIL_BYTES_MAX: usize = 1024;
/// Most records in one dump.
pub const DUMP_RECORDS_MAX: usize = 1_000_000;

/// One append, exactly as it was accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpRecord {
    /// Target stream.
    pub stream: String,
    /// The append's precondition.
    pub expected: ExpectedVersion,
    /// The events, ids resolved.
    pub events: Vec<DumpEvent>,
    /// Set when the store rejected this append at `submit()`: why. Replay
    /// tries it again (the stream may have changed), but a wrong expected
    /// version or an idempotency conflict usually refuses it again; set it
    /// aside with `ironclad dump replay --quarantine-failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Rejection>,
}

/// Why the store rejected a submitted append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The stream was not at the append's expected version.
    WrongExpectedVersion,
    /// An id was already used for different content.
    IdempotencyConflict,
}

impl RejectReason {
    /// The reason as it appears in records, file names and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::WrongExpectedVersion => "wrong_expected_version",
            RejectReason::IdempotencyConflict => "idempotency_conflict",
        }
    }
}

/// A rejection recorded with a dumped append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The kind of rejection.
    pub reason: RejectReason,
    /// The store's message, at most [`REJECTION_DETAIL_BYTES_MAX`] bytes.
    pub detail: String,
}

impl Rejection {
    /// A rejection with `detail` cut to [`REJECTION_DETAIL_BYTES_MAX`].
    pub fn new(reason: RejectReason, detail: &str) -> Self {
        let mut end = detail.len().min(REJECTION_DETAIL_BYTES_MAX);
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        Rejection {
            reason,
            detail: detail[..end].to_string(),
        }
    }
}

/// One event of a [`DumpRecord`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DumpEvent {
    /// The idempotency key that makes replay safe.
    pub id: Uuid,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Entity operation.
    pub op: Op,
    /// Entity key.
    #[serde(default)]
    pub entity: Option<String>,
    /// Payload, verbatim.
    pub payload: Box<RawValue>,
    /// Metadata.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl PartialEq for DumpEvent {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
            && self.event_type == o.event_type
            && self.op == o.op
            && self.entity == o.entity
            && self.payload.get() == o.payload.get()
            && self.metadata == o.metadata
    }
}

impl DumpRecord {
    /// Builds a record from an append; `ids[i]` is the id of `events[i]`.
    /// Fails if a payload is not JSON (it was validated before queueing, so
    /// this means a caller bypassed validation).
    pub fn new(
        stream: &str,
        expected: ExpectedVersion,
        ids: &[Uuid],
        events: &[NewEvent],
    ) -> Result<Self, DumpError> {
        let events = ids
            .iter()
            .zip(events)
            .map(|(id, e)| {
                Ok(DumpEvent {
                    id: *id,
                    event_type: e.event_type.clone(),
                    op: e.op,
                    entity: e.entity.clone(),
                    payload: RawValue::from_string(e.payload.clone())
                        .map_err(|err| DumpError::Encode(err.to_string()))?,
                    metadata: e.metadata.clone(),
                })
            })
            .collect::<Result<_, DumpError>>()?;
        Ok(DumpRecord {
            stream: stream.to_string(),
            expected,
            events,
            rejected: None,
        })
    }

    /// The same record, marked as rejected by the store.
    pub fn with_rejection(mut self, rejection: Rejection) -> Self {
        self.rejected = Some(rejection);
        self
    }

    /// The append to re-submit: every event carries its original id.
    pub fn to_events(&self) -> Vec<NewEvent> {
        self.events
            .iter()
            .map(|e| NewEvent {
                id: Some(e.id),
                event_type: e.event_type.clone(),
                op: e.op,
                entity: e.entity.clone(),
                payload: e.payload.get().to_string(),
                metadata: e.metadata.clone(),
            })
            .collect()
    }
}

/// A dump could not be written, read or archived.
#[derive(Debug, Error)]
pub enum DumpError {
    /// A file-system operation failed.
    #[error("emergency dump i/o on {path}: {source}; check free space and permissions of the data directory")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record could not be encoded.
    #[error("emergency dump record could not be encoded: {0}")]
    Encode(String),
    /// A line of a dump is not a record.
    #[error("{path} line {line}: not a dump record ({reason}); the file may be damaged, inspect it before replaying")]
    BadLine {
        /// The dump file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
    /// A dump exceeds a limit.
    #[error("{path}: {what}")]
    TooLarge {
        /// The dump file.
        path: PathBuf,
        /// Which limit.
        what: String,
    },
}

/// A dump file found by [`list_dumps`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DumpInfo {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DumpError + '_ {
    move |source| DumpError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The durable-write helpers' failures keep this module's `Io` shape, so
/// callers match one variant for every file-system failure.
impl From<DurableWriteError> for DumpError {
    fn from(e: DurableWriteError) -> Self {
        DumpError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Writes `records` as a new dump in `<data_dir>/emergency/` and makes it
/// durable (file and directory fsynced) before returning its path. Fails
/// with [`DumpError::TooLarge`], writing nothing, if a record's line would
/// exceed [`DUMP_LINE_BYTES_MAX`] (a dump that could never be replayed).
/// Blocking.
pub fn write_dump(
    data_dir: &Path,
    records: &[DumpRecord],
    now_us: i64,
) -> Result<PathBuf, DumpError> {
    write_dump_named(data_dir, records, dump_name(now_us, None))
}

/// Like [`write_dump`], for submitted appends the store rejected for
/// `reason`: the file name carries the reason (see [`dump_rejection`]).
pub fn write_rejected_dump(
    data_dir: &Path,
    reason: RejectReason,
    records: &[DumpRecord],
    now_us: i64,
) -> Result<PathBuf, DumpError> {
    write_dump_named(data_dir, records, dump_name(now_us, Some(reason)))
}

/// `dump-<time>-<pid>-<unique>[.<reason>].jsonl`: sorts by time, never
/// collides, and names a rejection without the file being read.
fn dump_name(now_us: i64, reason: Option<RejectReason>) -> String {
    let tag = reason
        .map(|r| format!(".{}", r.as_str()))
        .unwrap_or_default();
    format!(
        "dump-{now_us:020}-{}-{}{tag}.jsonl",
        std::process::id(),
        Uuid::now_v7().simple()
    )
}

fn write_dump_named(
    data_dir: &Path,
    records: &[DumpRecord],
    name: String,
) -> Result<PathBuf, DumpError> {
    let dir = data_dir.join(DUMP_DIR);
    let path = dir.join(&name);
    // Encoded before anything touches the disk: a record that cannot be
    // encoded, or is too long to replay, fails the dump without a file.
    let buf = encode_lines(records, DUMP_LINE_BYTES_MAX, &path)?;
    durable::write_atomic(&dir, &name, |w| w.write_all(&buf).map_err(io(&path)))?;
    Ok(path)
}

/// JSON lines of `items`, each at most `line_bytes_max` bytes.
fn encode_lines<T: Serialize>(
    items: &[T],
    line_bytes_max: usize,
    path: &Path,
) -> Result<Vec<u8>, DumpError> {
    let mut buf = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let start = buf.len();
        serde_json::to_writer(&mut buf, item).map_err(|e| DumpError::Encode(e.to_string()))?;
        if buf.len() - start > line_bytes_max {
            return Err(DumpError::TooLarge {
                path: path.to_path_buf(),
                what: format!(
                    "record {} would be a line of {} bytes, over the {line_bytes_max}-byte limit \
                     that replay reads; nothing was written",
                    i + 1,
                    buf.len() - start
                ),
            });
        }
        buf.push(b'\n');
    }
    Ok(buf)
}

/// The reason in a dump's file name, if it holds submitted appends the
/// store rejected (see [`write_rejected_dump`]); `None` for a dump of
/// appends the store failed to commit.
pub fn dump_rejection(path: &Path) -> Option<RejectReason> {
    let name = path.file_name()?.to_str()?.strip_suffix(".jsonl")?;
    match name.rsplit_once('.')?.1 {
        "wrong_expected_version" => Some(RejectReason::WrongExpectedVersion),
        "idempotency_conflict" => Some(RejectReason::IdempotencyConflict),
        _ => None,
    }
}

/// Complete dumps waiting to be replayed, oldest first. Leftover `.tmp`
/// files (a crash during a write) are not dumps and are not listed, nor
/// are quarantine files.
pub fn list_dumps(data_dir: &Path) -> Result<Vec<DumpInfo>, DumpError> {
    let dir = data_dir.join(DUMP_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(&dir))?;
        let path = entry.path();
        let is_dump = path.extension().is_some_and(|e| e == "jsonl")
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dump-"));
        if is_dump {
            let bytes = entry.metadata().map_err(io(&path))?.len();
            out.push(DumpInfo { path, bytes });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Reads every record of a dump, failing on the first bad line (named),
/// or on a line over [`DUMP_LINE_BYTES_MAX`] (read no further than one byte
/// past the limit, so a damaged file cannot exhaust memory).
pub fn read_dump(path: &Path) -> Result<Vec<DumpRecord>, DumpError> {
    read_dump_lines(path)?
        .into_iter()
        .map(|l| match l {
            DumpLine::Record(r) => Ok(r),
            DumpLine::Bad { line, reason, .. } => Err(DumpError::BadLine {
                path: path.to_path_buf(),
                line,
                reason,
            }),
        })
        .collect()
}

/// A non-blank line of a dump, as [`read_dump_lines`] found it.
#[derive(Debug, Clone, PartialEq)]
pub enum DumpLine {
    /// A record.
    Record(DumpRecord),
    /// A line that is not a record (a damaged file), kept verbatim.
    Bad {
        /// 1-based line number.
        line: usize,
        /// The line's bytes, without its newline.
        bytes: Vec<u8>,
        /// Why it is not a record.
        reason: String,
    },
}

/// Reads every non-blank line of a dump, as a record or as a bad line,
/// for a replay that sets bad lines aside instead of stopping. Fails on a
/// line over [`DUMP_LINE_BYTES_MAX`] or more than [`DUMP_RECORDS_MAX`]
/// lines, as [`read_dump`] does.
pub fn read_dump_lines(path: &Path) -> Result<Vec<DumpLine>, DumpError> {
    let mut reader = BufReader::new(File::open(path).map_err(io(path))?);
    let mut lines = Vec::new();
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        line.clear();
        number += 1;
        // The limit, one byte more to see it broken, and the newline.
        let window = DUMP_LINE_BYTES_MAX as u64 + 2;
        let n = (&mut reader)
            .take(window)
            .read_until(b'\n', &mut line)
            .map_err(io(path))?;
        if n == 0 {
            return Ok(lines);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.len() > DUMP_LINE_BYTES_MAX {
            return Err(DumpError::TooLarge {
                path: path.to_path_buf(),
                what: format!("line {number} is over {DUMP_LINE_BYTES_MAX} bytes; the file may be damaged, inspect it"),
            });
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines.push(match serde_json::from_slice(&line) {
            Ok(record) => DumpLine::Record(record),
            Err(e) => DumpLine::Bad {
                line: number,
                bytes: line.clone(),
                reason: e.to_string(),
            },
        });
        if lines.len() > DUMP_RECORDS_MAX {
            return Err(DumpError::TooLarge {
                path: path.to_path_buf(),
                what: format!("more than {DUMP_RECORDS_MAX} records"),
            });
        }
    }
}

/// Prefix of quarantine files. They sit next to their dump, and are not
/// dumps: listing and `replay --all` skip them.
pub const QUARANTINE_PREFIX: &str = "quarantine-";

/// A dump record that a replay could not append and set aside, as one line
/// of a quarantine file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedRecord {
    /// The dump it came from.
    pub dump: PathBuf,
    /// Its 1-based position among the dump's records.
    pub record_number: usize,
    /// Why the replay could not append it.
    pub error: String,
    /// The record, unchanged: to retry it, fix it and write it to a new dump.
    pub record: DumpRecord,
}

/// A line of a dump that is not a record, set aside by a replay, as one
/// line of a quarantine file. The line is kept whole: as `line` when it is
/// UTF-8, else as `line_hex`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedLine {
    /// The dump it came from.
    pub dump: PathBuf,
    /// Its 1-based line number in the dump.
    pub line_number: usize,
    /// Why it is not a record.
    pub error: String,
    /// The line, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// The line's bytes in hex, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_hex: Option<String>,
}

impl QuarantinedLine {
    /// Line `line_number` of `dump`, `bytes`, not a record because of `error`.
    pub fn new(dump: &Path, line_number: usize, bytes: Vec<u8>, error: String) -> Self {
        let (line, line_hex) = match String::from_utf8(bytes) {
            Ok(text) => (Some(text), None),
            Err(e) => (None, Some(hex::encode(e.as_bytes()))),
        };
        QuarantinedLine {
            dump: dump.to_path_buf(),
            line_number,
            error,
            line,
            line_hex,
        }
    }
}

/// One line of a quarantine file: a record that could not be appended, or
/// a line that was not a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QuarantineEntry {
    /// A record the store refused.
    Record(QuarantinedRecord),
    /// A line that is not a record.
    Line(QuarantinedLine),
}

/// Writes the records a replay of `dump` set aside to a new quarantine
/// file next to it (`quarantine-<time>-<dump's name>`), durably, before
/// the dump may be archived. Returns its path. Blocking.
pub fn write_quarantine<T: Serialize>(
    dump: &Path,
    records: &[T],
    now_us: i64,
) -> Result<PathBuf, DumpError> {
    let dir = dump.parent().unwrap_or(Path::new("."));
    let dump_name = dump.file_name().unwrap_or_default().to_string_lossy();
    let name = format!("{QUARANTINE_PREFIX}{now_us:020}-{dump_name}");
    let path = dir.join(&name);
    // No line limit: quarantine files are read by people and tools, never
    // by `read_dump`, and a record at the dump limit must still fit.
    let buf = encode_lines(records, usize::MAX, &path)?;
    durable::write_atomic(dir, &name, |w| w.write_all(&buf).map_err(io(&path)))?;
    Ok(path)
}

/// Moves a replayed dump into `emergency/archive/`, durably (both
/// directories fsynced). Returns the new path. Never deletes.
pub fn archive_dump(path: &Path) -> Result<PathBuf, DumpError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let archive = dir.join(ARCHIVE_DIR);
    durable::create_dir_durable(&archive)?;
    let name = path.file_name().unwrap_or_default();
    let target = archive.join(name);
    durable::rename_durable(path, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::append_bytes;
    use proptest::prelude::*;

    fn line_bytes(record: &DumpRecord) -> usize {
        serde_json::to_vec(record)
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
    }

    /// The line limit is derived from the append limit: a record's line
    /// exceeds its append's queued size by at most the record overhead,
    /// here with every string escaped at its worst (six bytes per control
    /// character), the longest expected version and the longest rejection.
    #[test]
    fn the_worst_envelope_fits_the_record_overhead() {
        assert_eq!(
            DUMP_LINE_BYTES_MAX,
            APPEND_BYTES_LIMIT + DUMP_RECORD_OVERHEAD_BYTES
        );
        let worst = "\u{1}\"\\".repeat(80);
        let event = NewEvent::new(&worst, "{}")
            .with_entity(Op::Create, &worst)
            .with_metadata(&worst, &worst);
        let stream = "\"\\".repeat(128);
        let detail = "\u{1}".repeat(4 * REJECTION_DETAIL_BYTES_MAX);
        let record = DumpRecord::new(
            &stream,
            ExpectedVersion::Exact(u64::MAX),
            &[Uuid::max()],
            std::slice::from_ref(&event),
        )
        .unwrap()
        .with_rejection(Rejection::new(RejectReason::IdempotencyConflict, &detail));
        let queued = append_bytes(&stream, &[event]);
        assert!(line_bytes(&record) <= queued + DUMP_RECORD_OVERHEAD_BYTES);
    }

    fn arb_event() -> impl Strategy<Value = NewEvent> {
        let text = || any::<String>().prop_filter("not empty", |s| !s.is_empty());
        let meta = prop::collection::btree_map(any::<String>(), any::<String>(), 0..4);
        let payload = prop::sample::select(vec!["{}", "[1,2.5e3]", r#"{"a":"\u0001 \"q\""}"#]);
        (text(), prop::option::of(text()), meta, payload).prop_map(|(t, entity, meta, p)| {
            let mut e = NewEvent::new(t, p);
            if let Some(entity) = entity {
                e = e.with_entity(Op::Update, entity);
            }
            e.metadata = meta;
            e
        })
    }

    proptest! {
        /// Any append's record, rejected or not, fits its queued size plus
        /// the overhead; without a rejection, within 128 bytes of it.
        #[test]
        fn a_line_never_outgrows_its_append_by_more_than_the_overhead(
            stream in any::<String>(),
            events in prop::collection::vec(arb_event(), 1..5),
            detail in any::<String>(),
            version in any::<u64>(),
        ) {
            let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
            let record = DumpRecord::new(&stream, ExpectedVersion::Exact(version), &ids, &events)
                .unwrap();
            let queued = append_bytes(&stream, &events);
            prop_assert!(line_bytes(&record) <= queued + 128);
            let rejected = record.with_rejection(Rejection::new(RejectReason::WrongExpectedVersion, &detail));
            prop_assert!(line_bytes(&rejected) <= queued + DUMP_RECORD_OVERHEAD_BYTES);
        }
    }

    #[test]
    fn a_rejection_dump_names_its_reason_and_keeps_it_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let why = Rejection::new(RejectReason::WrongExpectedVersion, "stream moved");
        let rec = record(1).with_rejection(why.clone());
        let path =
            write_rejected_dump(dir.path(), why.reason, std::slice::from_ref(&rec), 5).unwrap();
        assert_eq!(
            dump_rejection(&path),
            Some(RejectReason::WrongExpectedVersion)
        );
        assert_eq!(list_dumps(dir.path()).unwrap()[0].path, path, "listed");
        assert_eq!(read_dump(&path).unwrap(), [rec]);
        let plain = write_dump(dir.path(), &[record(2)], 6).unwrap();
        assert_eq!(dump_rejection(&plain), None);
        // A long detail is cut at a character boundary.
        let long = Rejection::new(RejectReason::IdempotencyConflict, &"é".repeat(1000));
        assert!(long.detail.len() <= REJECTION_DETAIL_BYTES_MAX && long.detail.starts_with('é'));
    }

    fn record(n: u32) -> DumpRecord {
        let e = NewEvent::new("t", format!(r#"{{"n":{n},"s":"a b"}}"#)).with_metadata("k", "v");
        DumpRecord::new(
            "s",
            ExpectedVersion::Exact(n.into()),
            &[Uuid::now_v7()],
            &[e],
        )
        .unwrap()
    }

    #[test]
    fn write_list_read_archive_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            list_dumps(dir.path()).unwrap().is_empty(),
            "no directory yet"
        );
        let records: Vec<DumpRecord> = (0..5).map(record).collect();
        let path = write_dump(dir.path(), &records, 42).unwrap();
        // A crash mid-write leaves only a .tmp file, which is not a dump.
        fs::write(
            dir.path().join(DUMP_DIR).join("dump-x.jsonl.tmp"),
            b"{\"torn",
        )
        .unwrap();
        let listed = list_dumps(dir.path()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].path, path);
        assert_eq!(read_dump(&path).unwrap(), records);
        assert_eq!(records[0].to_events()[0].payload, r#"{"n":0,"s":"a b"}"#);
        let archived = archive_dump(&path).unwrap();
        assert!(archived.exists() && !path.exists());
        assert!(list_dumps(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_dump(dir.path(), &[record(1)], 1).unwrap();
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("{\"stream\":\n");
        fs::write(&path, text).unwrap();
        match read_dump(&path) {
            Err(DumpError::BadLine { line: 2, .. }) => {}
            other => panic!("expected a bad line 2, got {other:?}"),
        }
    }

    #[test]
    fn an_unwritable_directory_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the dump directory should be.
        fs::write(dir.path().join(DUMP_DIR), b"").unwrap();
        let err = write_dump(dir.path(), &[record(1)], 1).unwrap_err();
        assert!(matches!(err, DumpError::Io { .. }), "{err}");
        assert!(err.to_string().contains("check free space"));
    }
}
