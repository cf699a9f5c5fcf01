//! Emergency dump files (SPEC §4 "Emergency dump"): the on-disk format, and
//! writing, listing, reading and archiving dumps.
//!
//! A dump holds appends that were accepted but could not be made durable in
//! the store. It is JSON lines, one [`DumpRecord`] (one whole append, ids
//! included) per line, in `<data>/emergency/`. A dump is written with
//! [`crate::durable::write_atomic`]: to a temporary name, fsynced, renamed
//! into place and the directory fsynced (and the data directory too when
//! the first dump creates `emergency/`), so a crash leaves either a complete
//! dump or only a `.tmp` file that listing ignores. Replaying re-appends
//! each record with its original ids, which makes replay idempotent; a
//! replayed dump is moved to `emergency/archive/`.
//!
//! Not built yet: the automatic trigger (`submit()` and shutdown dumping
//! when the store keeps failing, and failing closed when the dump fails).
//! Today dumps are produced by this module's API and consumed by
//! `Journal::replay_dump` and `ironclad dump list|replay`.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;
use uuid::Uuid;

use crate::durable::{self, DurableWriteError};
use crate::model::{ExpectedVersion, NewEvent, Op};

/// Directory, under the data directory, that holds dumps.
pub const DUMP_DIR: &str = "emergency";
/// Directory, under [`DUMP_DIR`], that holds replayed dumps.
pub const ARCHIVE_DIR: &str = "archive";
/// Longest line read from a dump: a record is at most one append.
pub const DUMP_LINE_BYTES_MAX: usize = 64 * 1024 * 1024;
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
        })
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
/// durable (file and directory fsynced) before returning its path. Blocking.
pub fn write_dump(
    data_dir: &Path,
    records: &[DumpRecord],
    now_us: i64,
) -> Result<PathBuf, DumpError> {
    let dir = data_dir.join(DUMP_DIR);
    let name = format!(
        "dump-{now_us:020}-{}-{}.jsonl",
        std::process::id(),
        Uuid::now_v7().simple()
    );
    // Encoded before anything touches the disk: a record that cannot be
    // encoded fails the dump without leaving a file.
    let mut buf = Vec::new();
    for r in records {
        serde_json::to_writer(&mut buf, r).map_err(|e| DumpError::Encode(e.to_string()))?;
        buf.push(b'\n');
    }
    let path = dir.join(&name);
    durable::write_atomic(&dir, &name, |w| w.write_all(&buf).map_err(io(&path)))?;
    Ok(path)
}

/// Complete dumps waiting to be replayed, oldest first. Leftover `.tmp`
/// files (a crash during a write) are not dumps and are not listed.
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

/// Reads every record of a dump, failing on the first bad line (named).
pub fn read_dump(path: &Path) -> Result<Vec<DumpRecord>, DumpError> {
    let file = File::open(path).map_err(io(path))?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.len() > DUMP_LINE_BYTES_MAX {
            return Err(DumpError::TooLarge {
                path: path.to_path_buf(),
                what: format!("line {} is over {DUMP_LINE_BYTES_MAX} bytes", i + 1),
            });
        }
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|e| DumpError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        records.push(record);
        if records.len() > DUMP_RECORDS_MAX {
            return Err(DumpError::TooLarge {
                path: path.to_path_buf(),
                what: format!("more than {DUMP_RECORDS_MAX} records"),
            });
        }
    }
    Ok(records)
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
