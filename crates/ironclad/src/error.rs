//! One error enum per operation (open, append, read, control, verify).
//!
//! Messages say what happened and what to do next. Store-level failures are
//! wrapped, never stringly flattened, so callers can still match on them.

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use uuid::Uuid;

use crate::expected::WrongExpectedVersion;
use crate::ledger::LedgerMismatch;
use crate::validate::ValidationError;

/// A failure inside a storage backend.
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("sqlite: {0}{hint}", hint = sqlite_hint(.0))]
    Sqlite(#[from] rusqlite::Error),
    /// A file-system operation failed.
    #[error("i/o on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The operation could not run now because of other connections; retry.
    #[error("busy: {0}")]
    Busy(String),
    /// A stored row cannot be decoded: the database is damaged or was edited.
    #[error("corrupt row: {0}; run `ironclad ledger verify` to locate the damage")]
    Corrupt(String),
    /// An event's column holds another storage type than Ironclad writes.
    #[error(transparent)]
    ColumnType(Box<ColumnTypeError>),
    /// SQLite found the database file damaged (`SQLITE_CORRUPT`,
    /// `SQLITE_NOTADB`, or a failed integrity check at open).
    #[error(transparent)]
    CorruptDatabase(CorruptDatabase),
    /// SQLite could not grow the database or its WAL (`SQLITE_FULL`):
    /// nothing of the failed write was stored.
    #[error(transparent)]
    DiskFull(DiskFull),
    /// The database file exists but is empty: what it held is gone.
    #[error("database file {path} is empty (0 bytes): the events it held are gone (the file was truncated, or the disk lost it), and Ironclad will not create an empty journal over it; restore the data directory from a backup, or, if it never held events, delete the file to start a new journal")]
    EmptyDatabaseFile {
        /// The database file.
        path: PathBuf,
    },
    /// The database file exists but holds no Ironclad journal.
    #[error("{path} is not an Ironclad database ({found}), and Ironclad will not create a journal over it: if this is your data directory, its database was replaced or damaged, so restore it from a backup; otherwise point --data-dir at another directory")]
    NotIronclad {
        /// The database file.
        path: PathBuf,
        /// What the file holds instead.
        found: String,
    },
}

/// A damaged database file, named with what to do. Ironclad refuses to open
/// one, and [`crate::LogReader::health`] reports one found while running.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("database file {path} is damaged ({detail}), so Ironclad will not serve it: stop every process using it, keep a copy of the data directory, and restore it from a backup (`sqlite3 {path} .recover` may salvage rows into a new file)")]
pub struct CorruptDatabase {
    /// The database file.
    pub path: PathBuf,
    /// What SQLite reported.
    pub detail: String,
}

/// The disk (or a size limit) left no room to write, named with what to do.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the disk holding {path} is full ({detail}), so the write was refused and nothing of it was stored: free disk space (or raise the file-size limit or quota); writes succeed again without a restart, and appends can be retried with the same ids")]
pub struct DiskFull {
    /// The database file.
    pub path: PathBuf,
    /// What SQLite reported.
    pub detail: String,
}

/// Why [`crate::Journal::health`] says the journal cannot take writes now.
#[derive(Debug, Clone, Error)]
pub enum Unhealthy {
    /// The database file is damaged; only a restore helps (sticky until
    /// the journal is reopened).
    #[error(transparent)]
    Damaged(CorruptDatabase),
    /// The latest write (group commit, state write or write probe) failed;
    /// cleared by the next write that succeeds.
    #[error("writes to the journal are failing: {0}; the journal keeps trying (every append, and a probe write every second while idle) and is ready again once one succeeds")]
    WritesFailing(Arc<StoreError>),
}

/// An event row whose column holds a value of another SQLite storage class
/// than Ironclad writes there (say a TEXT payload rewritten as a BLOB).
/// Ironclad never writes such a row, so it was edited outside Ironclad;
/// `ledger verify` reports it as a `column_type` mismatch at this event.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("event at position {position}{at}: column `{column}` holds {found}, but Ironclad stores {expected} there, so the row was edited outside Ironclad; run `ironclad ledger verify` to locate the damage", at = stream_version(.stream.as_deref(), *.version))]
pub struct ColumnTypeError {
    /// The event's position.
    pub position: u64,
    /// Its stream, when that column decoded.
    pub stream: Option<String>,
    /// Its version, when that column decoded.
    pub version: Option<u64>,
    /// The column.
    pub column: &'static str,
    /// The storage class Ironclad writes there (`TEXT`, `BLOB`, `INTEGER`).
    pub expected: &'static str,
    /// The storage class found (`NULL`, `INTEGER`, `REAL`, `TEXT`, `BLOB`).
    pub found: &'static str,
}

/// " (stream "s" version v)" for what of an event's identity is known.
fn stream_version(stream: Option<&str>, version: Option<u64>) -> String {
    match (stream, version) {
        (Some(s), Some(v)) => format!(" (stream {s:?} version {v})"),
        (Some(s), None) => format!(" (stream {s:?})"),
        _ => String::new(),
    }
}

/// What an operator should check for the SQLite errors that mean the
/// environment, not Ironclad, is failing.
fn sqlite_hint(e: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure) => {
            " (check free disk space, file-size limits and the disk's health)"
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            " (another connection holds the database; retry, or stop the other process)"
        }
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            " (check the data directory's permissions and mount)"
        }
        _ => "",
    }
}

/// The schema could not be brought to this binary's version.
#[derive(Debug, Error)]
pub enum MigrateError {
    /// The database was written by a newer Ironclad.
    #[error("database schema is version {db_version}, newer than this binary's version {binary_version}: upgrade ironclad, or restore a backup made for this version")]
    DatabaseNewer {
        /// Version recorded in the database.
        db_version: u32,
        /// Highest version this binary knows.
        binary_version: u32,
    },
    /// A migration step failed; nothing of that step was applied.
    #[error("migration to version {to} failed and was rolled back: {source}")]
    Step {
        /// The target version of the failed step.
        to: u32,
        /// The underlying error.
        source: StoreError,
    },
    /// The store could not be read to learn its version.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `Journal::open` failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory or lock file could not be created or opened.
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// There is no database in the data directory (read-only opens only).
    #[error("no database in {data_dir} yet: append something first, or check --data-dir")]
    NoDatabase {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// Another engine holds the data directory.
    #[error("data directory {path} is locked by pid {pid}: stop that process, or use another --data-dir")]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// The pid recorded in the lock file (`unknown` if unreadable).
        pid: String,
    },
    /// Migrating the schema failed.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// The store failed while opening.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An append was refused or is not acknowledged. Every variant but `Store`
/// and `WriterGone` means no event of this append was written; after those
/// two, retry with the same ids to learn the outcome.
#[derive(Debug, Clone, Error)]
pub enum AppendError {
    /// The input broke a rule; fix the input.
    #[error("invalid append: {0}")]
    Invalid(#[from] ValidationError),
    /// The stream is not at the expected version.
    #[error(transparent)]
    WrongExpectedVersion(#[from] WrongExpectedVersion),
    /// An id was already used for different content (or only some ids of the
    /// append exist).
    #[error("idempotency conflict on event {id}: {detail}; use a new id for new content")]
    IdempotencyConflict {
        /// The conflicting id.
        id: Uuid,
        /// What differs.
        detail: String,
    },
    /// `try_append` found the queue full; retry later or use `append`.
    #[error("ingest queue is full ({what}): retry later, or use append() to wait for room")]
    Full {
        /// Which bound was hit: `events` or `bytes`.
        what: &'static str,
    },
    /// The journal is shutting down and takes no new work.
    #[error("journal is shutting down and accepts no new appends")]
    ShuttingDown,
    /// The store failed while committing the batch this append was in. The
    /// append is not acknowledged: it was most likely not written, but if the
    /// failure struck after the data reached the disk (e.g. in the final
    /// fsync) it may be. Retrying with the same ids is safe either way.
    #[error("commit failed and the append is not acknowledged: {0}; retry with the same ids (idempotency makes a retry safe)")]
    Store(Arc<StoreError>),
    /// The writer thread is gone (it panicked or the journal was dropped).
    #[error("journal writer has stopped: reopen the journal")]
    WriterGone,
    /// A submitted append could not be committed even after retries, and is
    /// durable in an emergency dump instead.
    #[error("the store kept failing, so this submitted append was written to the emergency dump {path}: replay it with `ironclad dump replay` once the store is healthy")]
    Dumped {
        /// The dump file.
        path: PathBuf,
    },
    /// An emergency dump failed: the journal refuses all new work.
    #[error("the journal failed closed: the store failed and so did the emergency dump, so it takes no new work; fix the disk, then restart and run `ironclad dump replay`")]
    FailedClosed,
}

/// A read failed.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The stream name is invalid.
    #[error("invalid read: {0}")]
    Invalid(#[from] ValidationError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `flush`, `wal_checkpoint` or `shutdown` failed.
#[derive(Debug, Error)]
pub enum ControlError {
    /// The journal is already shut down.
    #[error("journal is shut down")]
    ShutDown,
    /// The writer thread is gone.
    #[error("journal writer has stopped: reopen the journal")]
    WriterGone,
    /// A group commit covered by this barrier failed: the appends in it were
    /// answered with errors and are not durable.
    #[error(
        "a commit before this barrier failed, so not everything accepted before it is durable: {0}"
    )]
    NotDurable(Arc<StoreError>),
    /// `submit()`ted appends covered by this barrier, or not yet reported
    /// by any, were rejected by the store (wrong expected version or
    /// idempotency conflict): none of their events was written, and each is
    /// recorded with its reason in an emergency dump. Each rejection is
    /// reported by the first barrier (flush or shutdown) answered after it
    /// is recorded, and by every flush sent before then; later ones do not
    /// report it again (its dump stays listed until replayed or
    /// quarantined).
    #[error("{count} submitted append(s) were rejected by the store (wrong expected version or idempotency conflict), so none of their events was written; each is recorded with its reason in {}: see `ironclad dump list`, then replay what can now succeed, or set it aside with `ironclad dump replay --quarantine-failed`", list_paths(.dumps))]
    SubmitRejected {
        /// How many submitted appends were rejected.
        count: u64,
        /// The emergency dumps recording them (the latest 1000 at most).
        dumps: Vec<PathBuf>,
    },
    /// Shutdown committed everything, but the final WAL checkpoint failed;
    /// the data is durable in the WAL and is checkpointed at the next open.
    #[error("the final WAL checkpoint failed (the data is durable in the WAL and will be checkpointed at the next open): {0}")]
    FinalWalCheckpoint(Arc<StoreError>),
    /// A change to the state beside the log (delivery progress, dead
    /// letters, checkpoints) failed and was not applied; the journal is
    /// unready until a write succeeds (see [`crate::Journal::health`]).
    #[error("{0}")]
    StateWrite(Arc<StoreError>),
    /// The deadline passed before the queue drained.
    #[error("shutdown deadline passed with work still queued: the writer keeps draining in the background, but acknowledgements after the deadline are not awaited")]
    DeadlineExceeded,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `a, b, c`, for messages naming files.
fn list_paths(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// `verify_ledger` could not complete, or found a mismatch.
#[derive(Debug, Error)]
pub enum VerifyError {
    /// The ledger does not verify.
    #[error("{0}")]
    Mismatch(Box<LedgerMismatch>),
    /// Reading failed.
    #[error(transparent)]
    Store(StoreError),
    /// The stream name is invalid.
    #[error("invalid stream: {0}")]
    Invalid(#[from] ValidationError),
    /// The options cannot be combined.
    #[error("{0}")]
    Usage(String),
}

/// A row whose column holds the wrong storage class is a finding of the
/// verification, reported at its event like any other mismatch, not a
/// failure to read.
impl From<StoreError> for VerifyError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ColumnType(c) => {
                VerifyError::Mismatch(Box::new(crate::ledger::column_type_mismatch(
                    c.stream.as_deref(),
                    c.version,
                    c.position,
                    c.column,
                    c.expected,
                    c.found,
                )))
            }
            other => VerifyError::Store(other),
        }
    }
}

/// `Journal::replay_dump` stopped. Records before `record` were appended
/// (or found already appended); the dump was not archived, and replaying it
/// again is safe because every event keeps its id.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The dump could not be read or archived.
    #[error(transparent)]
    Dump(#[from] crate::emergency::DumpError),
    /// A record could not be appended.
    #[error("record {record} of the dump could not be appended: {error}; fix the cause (e.g. a stream that moved past the record's expected version) and replay again, or set such records aside with `ironclad dump replay --quarantine-failed` (a record that was rejected at submit is usually rejected again)")]
    Append {
        /// 1-based record (line) number.
        record: usize,
        /// Why.
        error: AppendError,
    },
}
