//! The DLQ archive (SPEC §4 "Dead-letter queue"): dead letters that leave
//! the DLQ — evicted over the size limit, expired past the TTL, or purged by
//! an operator — are written here first, never just deleted.
//!
//! An archive is a gzip file of JSON lines, one [`ArchivedDlqEntry`] per
//! line, in `<data>/dlq-archive/`, named
//! `dlq-<unix ms, 20 digits>-<UUIDv7>.jsonl.gz`, so names sort by time and
//! two archives never share a name, even within one millisecond. Each file
//! is written once, with [`crate::durable::write_atomic`]: to a `.tmp` name,
//! fsynced, renamed into place, and the directory fsynced (and the data
//! directory too when the archive directory was just created). A crash
//! leaves a complete archive or a `.tmp` file
//! that [`list_archives`] ignores; nothing ever rewrites or appends to an
//! archive.
//!
//! Callers archive, then delete from the DLQ. A crash in between archives
//! the same entries again on the next attempt, so an entry may appear in
//! two archives: `(sink, position, event_id)` identifies it.
//!
//! Each entry holds its event verbatim ([`ArchivedEvent`]): the bytes
//! `ironclad read` prints, payload spelling included, so an event whose
//! payload `serde_json::Value` cannot hold (`1e999999`, a 400-digit
//! integer) is archived whole. Older archives, whose `event` was re-encoded
//! through `Value`, read back as they were written.
//!
//! Reading is bounded ([`ARCHIVE_DECOMPRESSED_BYTES_MAX`],
//! [`ARCHIVE_LINE_BYTES_MAX`]) and writing refuses what reading would
//! refuse; a damaged file is a typed error ([`ArchiveError::Corrupt`],
//! [`ArchiveError::BadLine`]), never a panic. Callers that archive many
//! entries split them into files of at most [`ARCHIVE_CHUNK_BYTES_MAX`]
//! line bytes ([`entry_line_bytes`]), so neither memory nor a file grows
//! with the DLQ's size.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;
use uuid::Uuid;

use crate::durable::{self, DurableWriteError};
use crate::model::RecordedEvent;

#[cfg(test)]
mod tests;

/// Directory, under the data directory, that holds DLQ archives.
pub const ARCHIVE_DIR: &str = "dlq-archive";
/// Most bytes read from one archive once decompressed (1 GiB), so a
/// decompression bomb cannot exhaust memory.
pub const ARCHIVE_DECOMPRESSED_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Longest line in an archive: one entry, its event envelope included.
pub const ARCHIVE_LINE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most line bytes (newlines included) one archive written by a purge or
/// the janitor holds, unless a single entry is larger and goes alone. It
/// bounds the memory a chunk holds too: 16 MiB is 16 entries of 1 MiB
/// payloads, where a count alone (1,000) would hold about 1 GB.
pub const ARCHIVE_CHUNK_BYTES_MAX: u64 = 16 * 1024 * 1024;

// A chunk, or a single entry of the longest line, must be readable whole.
const _: () = assert!(ARCHIVE_CHUNK_BYTES_MAX <= ARCHIVE_DECOMPRESSED_BYTES_MAX);
const _: () = assert!((ARCHIVE_LINE_BYTES_MAX as u64) < ARCHIVE_DECOMPRESSED_BYTES_MAX);

const PREFIX: &str = "dlq-";
const SUFFIX: &str = ".jsonl.gz";

/// One dead letter as archived: the DLQ entry, why it left, and the event
/// itself when it was still available.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ArchivedDlqEntry {
    /// The sink it failed to reach.
    pub sink: String,
    /// The event's global position.
    pub position: u64,
    /// The event's id (its idempotency key).
    pub event_id: Uuid,
    /// Delivery attempts made.
    pub attempts: u32,
    /// When the first attempt failed, in milliseconds since the Unix epoch.
    pub first_failure_unix_ms: u64,
    /// When the last attempt failed, in milliseconds since the Unix epoch.
    pub last_failure_unix_ms: u64,
    /// The last failure, as recorded in the DLQ.
    pub last_error: String,
    /// Why it was dead-lettered: `max_attempts`, `permanent`, `conflict` or
    /// `expired`.
    pub reason: String,
    /// When it was archived, in milliseconds since the Unix epoch.
    pub archived_unix_ms: u64,
    /// Why it left the DLQ: `evicted`, `expired` or `purged`.
    pub archive_cause: String,
    /// The full event envelope. Always written; `None` only when reading
    /// an old archive whose line says `"event":null`.
    #[serde(default)]
    pub event: Option<ArchivedEvent>,
}

/// An event as archived: its JSON text kept verbatim, exactly as
/// `ironclad read` prints the stored event (`RecordedEvent`, its payload
/// as raw JSON). Equal when the text is equal.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(transparent)]
pub struct ArchivedEvent(Box<RawValue>);

impl ArchivedEvent {
    /// The stored event's JSON text, as `ironclad read` prints it.
    pub fn from_event(event: &RecordedEvent) -> Result<Self, ArchiveError> {
        // `RecordedEvent` serializes its payload as raw JSON, so no number
        // or key passes through `serde_json::Value` and none is lost.
        let text = serde_json::to_string(event).map_err(encode_err(event.position))?;
        RawValue::from_string(text)
            .map(ArchivedEvent)
            .map_err(encode_err(event.position))
    }

    /// The event's JSON text, verbatim.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for ArchivedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// An archive could not be written or read.
#[derive(Debug, Error)]
pub enum ArchiveError {
    /// A file-system operation failed.
    #[error("DLQ archive i/o on {path}: {source}; check free space and permissions of the data directory")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// An entry could not be encoded whole; nothing was archived or
    /// deleted.
    #[error("the dead letter at position {position} could not be encoded for the DLQ archive ({reason}); nothing was archived or deleted: run `ironclad ledger verify` and report this")]
    Encode {
        /// The event's position.
        position: u64,
        /// The encoder's message.
        reason: String,
    },
    /// The file is not a complete gzip stream: truncated or damaged.
    #[error(
        "{path}: not a valid gzip archive ({reason}); the file is damaged, keep it for inspection"
    )]
    Corrupt {
        /// The archive.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// A line is not an archived entry.
    #[error("{path} line {line}: not a DLQ archive entry ({reason}); the file is damaged, keep it for inspection")]
    BadLine {
        /// The archive.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
    /// A limit was exceeded while writing or reading. When writing,
    /// nothing was archived or deleted.
    #[error("{path}: {what}")]
    TooLarge {
        /// The archive.
        path: PathBuf,
        /// Which limit.
        what: String,
    },
}

/// An archive found by [`list_archives`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveFile {
    /// Its path.
    pub path: PathBuf,
    /// Its size on disk (compressed), in bytes.
    pub bytes: u64,
    /// When it was written, in milliseconds since the Unix epoch, from its
    /// name.
    pub written_unix_ms: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn encode_err(position: u64) -> impl FnOnce(serde_json::Error) -> ArchiveError {
    move |e| ArchiveError::Encode {
        position,
        reason: e.to_string(),
    }
}

/// The durable-write helpers' failures keep this module's `Io` shape, so
/// callers match one variant for every file-system failure.
impl From<DurableWriteError> for ArchiveError {
    fn from(e: DurableWriteError) -> Self {
        ArchiveError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// `<data_dir>/dlq-archive`.
pub fn archive_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(ARCHIVE_DIR)
}

/// Writes `entries` as one new archive and makes it durable before
/// returning its path. `now_unix_ms` names the file. Writes nothing and
/// returns `None` when `entries` is empty. Blocking.
pub fn write_archive(
    data_dir: &Path,
    entries: &[ArchivedDlqEntry],
    now_unix_ms: u64,
) -> Result<Option<PathBuf>, ArchiveError> {
    if entries.is_empty() {
        return Ok(None);
    }
    let dir = archive_dir(data_dir);
    // UUIDv7s from one process increase, so archives written in the same
    // millisecond still sort in write order and never collide.
    let name = format!(
        "{PREFIX}{now_unix_ms:020}-{}{SUFFIX}",
        Uuid::now_v7().simple()
    );
    let path = dir.join(&name);
    durable::write_atomic(&dir, &name, |w| write_entries(w, &path, entries))?;
    Ok(Some(path))
}

/// Writes `entries` gzipped to `out`; `path` names the archive in errors.
/// Refuses, before anything is renamed into place, a line or a file that
/// reading would refuse.
fn write_entries(
    out: &mut impl Write,
    path: &Path,
    entries: &[ArchivedDlqEntry],
) -> Result<(), ArchiveError> {
    let mut gz = GzEncoder::new(out, Compression::default());
    let mut line = Vec::new();
    let mut total_bytes = 0u64;
    let too_large = |what: String| {
        ArchiveError::TooLarge {
        path: path.to_path_buf(),
        what: format!("{what}; nothing was archived or deleted: `ironclad dlq export` the entry, then `dlq retry` or purge it by position"),
    }
    };
    for entry in entries {
        line.clear();
        serde_json::to_writer(&mut line, entry).map_err(encode_err(entry.position))?;
        if line.len() > ARCHIVE_LINE_BYTES_MAX {
            return Err(too_large(format!(
                "the entry for event {} is over {ARCHIVE_LINE_BYTES_MAX} bytes",
                entry.event_id
            )));
        }
        line.push(b'\n');
        total_bytes += line.len() as u64;
        if total_bytes > ARCHIVE_DECOMPRESSED_BYTES_MAX {
            return Err(too_large(format!(
                "the entries are over {ARCHIVE_DECOMPRESSED_BYTES_MAX} bytes in one archive"
            )));
        }
        gz.write_all(&line).map_err(io_err(path))?;
    }
    gz.finish().map(drop).map_err(io_err(path))
}

/// The bytes `entry` takes in an archive before compression, its newline
/// included: what [`ARCHIVE_CHUNK_BYTES_MAX`] and the reader's limits
/// count. Encodes without keeping the text.
pub fn entry_line_bytes(entry: &ArchivedDlqEntry) -> Result<u64, ArchiveError> {
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, entry).map_err(encode_err(entry.position))?;
    Ok(counter.0 + 1)
}

/// A writer that only counts what it is given.
struct ByteCounter(u64);

impl Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The archives in `<data_dir>/dlq-archive/`, oldest first (by name).
/// `.tmp` files (a crash mid-write) and other files are not listed; a
/// missing directory lists nothing.
pub fn list_archives(data_dir: &Path) -> Result<Vec<ArchiveFile>, ArchiveError> {
    let dir = archive_dir(data_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name();
        let Some(written_unix_ms) = name.to_str().and_then(parse_name) else {
            continue;
        };
        let path = entry.path();
        let meta = entry.metadata().map_err(io_err(&path))?;
        if meta.is_file() {
            out.push(ArchiveFile {
                path,
                bytes: meta.len(),
                written_unix_ms,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The time in an archive's name, or `None` if it is not an archive's name.
fn parse_name(name: &str) -> Option<u64> {
    let stem = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (ms, id) = stem.split_once('-')?;
    let ok = ms.len() == 20 && ms.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty();
    ok.then(|| ms.parse().ok()).flatten()
}

/// Every entry of the archive at `path`, in order. Fails on a damaged file
/// or line (named) and beyond the size limits.
pub fn read_archive(path: &Path) -> Result<Vec<ArchivedDlqEntry>, ArchiveError> {
    let mut out = Vec::new();
    for_each_entry(path, |e| out.push(e))?;
    Ok(out)
}

/// How many archived entries belong to `sink`, over every archive. Reads
/// them all: meant for stats and tests, not a hot path.
pub fn count_archived(data_dir: &Path, sink: &str) -> Result<u64, ArchiveError> {
    let mut count = 0u64;
    for file in list_archives(data_dir)? {
        for_each_entry(&file.path, |e| {
            if e.sink == sink {
                count += 1;
            }
        })?;
    }
    Ok(count)
}

/// Streams the entries of one archive to `f`, one line at a time.
fn for_each_entry(path: &Path, mut f: impl FnMut(ArchivedDlqEntry)) -> Result<(), ArchiveError> {
    let file = File::open(path).map_err(io_err(path))?;
    // One byte over the limit is read so that reaching it is detectable.
    let mut reader = BufReader::new(
        MultiGzDecoder::new(BufReader::new(file)).take(ARCHIVE_DECOMPRESSED_BYTES_MAX + 1),
    );
    let too_large = |what: String| ArchiveError::TooLarge {
        path: path.to_path_buf(),
        what,
    };
    let mut total = 0u64;
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = (&mut reader)
            .take(ARCHIVE_LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| decode_err(path, e))?;
        if read == 0 {
            break;
        }
        total += read as u64;
        if total > ARCHIVE_DECOMPRESSED_BYTES_MAX {
            return Err(too_large(format!(
                "over {ARCHIVE_DECOMPRESSED_BYTES_MAX} bytes decompressed"
            )));
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > ARCHIVE_LINE_BYTES_MAX {
            return Err(too_large(format!(
                "line {number} is over {ARCHIVE_LINE_BYTES_MAX} bytes"
            )));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let entry = serde_json::from_slice(&line).map_err(|e| ArchiveError::BadLine {
            path: path.to_path_buf(),
            line: number,
            reason: e.to_string(),
        })?;
        f(entry);
    }
    Ok(())
}

/// Decoder errors (bad header, bad deflate data, checksum mismatch,
/// truncation) mean a damaged file; anything else is the file system's.
fn decode_err(path: &Path, e: io::Error) -> ArchiveError {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => {
            ArchiveError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        }
        _ => io_err(path)(e),
    }
}
