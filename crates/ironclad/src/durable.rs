//! Durable file writes: the one place that knows which fsyncs make a new
//! file, a replaced file or a new directory survive power loss.
//!
//! A file's data is durable once the file is fsynced; its *name* is durable
//! only once the directory holding the name is fsynced; and a directory that
//! was just created is itself a name in its parent, so the parent must be
//! fsynced too. Getting one of the three wrong loses data silently and only
//! on power loss, which no ordinary test sees. Emergency dumps, DLQ
//! archives, `dlq export` and the JSONL sink therefore all go through this
//! module instead of each carrying its own copy of the sequence:
//!
//! - [`write_atomic`]: write a temporary file, fsync it, rename it over the
//!   target, fsync the directory (readers see the old file or the new one,
//!   never a part).
//! - [`open_or_create`]: open a file for appending, and make it durable
//!   when this call created it.
//! - [`create_dir_durable`], [`rename_durable`], [`sync_dir`]: the steps the
//!   two above are built from, for callers that move files between
//!   directories.
//!
//! Every step is reported to [`record_ops`] on the calling thread when a
//! test asks for it (a no-op otherwise), so tests can check that the parent
//! fsync really happens: its absence cannot be observed any other way short
//! of cutting the power.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;
use uuid::Uuid;

/// Suffix of the temporary files [`write_atomic`] writes. Listings of
/// directories written with it must skip names ending in it: they are the
/// remains of a write that a crash interrupted.
pub const TMP_SUFFIX: &str = ".tmp";

/// Which step of a durable write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurableStep {
    /// Creating a directory.
    CreateDir,
    /// Creating or opening a file.
    Open,
    /// Writing or flushing a file's contents.
    Write,
    /// Fsyncing a file.
    SyncFile,
    /// Renaming a file into place.
    Rename,
    /// Fsyncing a directory.
    SyncDir,
    /// Checking the target's name.
    Name,
}

impl fmt::Display for DurableStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DurableStep::CreateDir => "create the directory",
            DurableStep::Open => "create or open",
            DurableStep::Write => "write",
            DurableStep::SyncFile => "fsync",
            DurableStep::Rename => "rename into place",
            DurableStep::SyncDir => "fsync the directory",
            DurableStep::Name => "use as a file name",
        })
    }
}

/// A durable write failed. Nothing it was writing is visible under the
/// target name; a temporary file may remain only if removing it failed too.
#[derive(Debug, Error)]
#[error("cannot {step} {path}: {source}; check that the directory exists or can be created, its permissions, free space and the disk's health")]
pub struct DurableWriteError {
    /// The step that failed.
    pub step: DurableStep,
    /// The file or directory it failed on.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl DurableWriteError {
    fn new(step: DurableStep, path: &Path, source: io::Error) -> Self {
        DurableWriteError {
            step,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Callers whose API speaks `io::Error` keep the OS error's kind, so they
/// can still tell "not found" from "permission denied".
impl From<DurableWriteError> for io::Error {
    fn from(e: DurableWriteError) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}

fn err(step: DurableStep, path: &Path) -> impl FnOnce(io::Error) -> DurableWriteError + '_ {
    move |source| DurableWriteError::new(step, path, source)
}

/// One file-system step taken by this module, as seen by [`record_ops`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurableOp {
    /// A directory was created.
    CreateDir(PathBuf),
    /// A file was fsynced.
    SyncFile(PathBuf),
    /// A file was renamed.
    Rename {
        /// The old name.
        from: PathBuf,
        /// The new name.
        to: PathBuf,
    },
    /// A directory was fsynced.
    SyncDir(PathBuf),
}

thread_local! {
    /// `Some` while [`record_ops`] runs on this thread. Thread-local so
    /// that tests running in parallel never see each other's steps.
    static RECORDED: RefCell<Option<Vec<DurableOp>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns, with its result, every step this module took on
/// the calling thread meanwhile, in order. Steps taken on other threads
/// (a `spawn_blocking` task) are not seen. For tests: outside a call,
/// recording costs one thread-local check per step.
pub fn record_ops<R>(f: impl FnOnce() -> R) -> (R, Vec<DurableOp>) {
    let outer = RECORDED.with(|r| r.borrow_mut().replace(Vec::new()));
    let result = f();
    let ops = RECORDED.with(|r| std::mem::replace(&mut *r.borrow_mut(), outer));
    (result, ops.unwrap_or_default())
}

fn record(op: impl FnOnce() -> DurableOp) {
    RECORDED.with(|r| {
        if let Some(ops) = r.borrow_mut().as_mut() {
            ops.push(op());
        }
    });
}

/// The directory holding `path`: `.` for a bare name.
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs the directory `dir`, making the names created, renamed or removed
/// in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), DurableWriteError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err(DurableStep::SyncDir, dir))?;
    // Elsewhere a directory cannot be opened as a file; NTFS journals its
    // metadata itself.
    record(|| DurableOp::SyncDir(dir.to_path_buf()));
    Ok(())
}

fn sync_file(file: &File, path: &Path) -> Result<(), DurableWriteError> {
    file.sync_all().map_err(err(DurableStep::SyncFile, path))?;
    record(|| DurableOp::SyncFile(path.to_path_buf()));
    Ok(())
}

/// Creates `dir` and any missing ancestors, fsyncing the parent of each
/// directory it creates, so that the new directories survive power loss
/// along with what is later written into them. Returns whether `dir` was
/// created by this call. An existing directory costs one `stat`.
pub fn create_dir_durable(dir: &Path) -> Result<bool, DurableWriteError> {
    if dir.is_dir() {
        return Ok(false);
    }
    let parent = parent_of(dir);
    if dir.parent().is_some_and(|p| !p.as_os_str().is_empty()) {
        create_dir_durable(parent)?;
    }
    let created = match fs::create_dir(dir) {
        Ok(()) => {
            record(|| DurableOp::CreateDir(dir.to_path_buf()));
            true
        }
        // Another writer created it first; it may not have fsynced the
        // parent yet, so this call still does.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => false,
        Err(e) => return Err(DurableWriteError::new(DurableStep::CreateDir, dir, e)),
    };
    sync_dir(parent)?;
    Ok(created)
}

/// Renames `from` to `to` and fsyncs the directories of both names (once
/// when they are the same), so the move survives power loss with the file
/// under exactly one of its names. `to`'s directory must exist.
pub fn rename_durable(from: &Path, to: &Path) -> Result<(), DurableWriteError> {
    fs::rename(from, to).map_err(err(DurableStep::Rename, to))?;
    record(|| DurableOp::Rename {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
    });
    let (to_dir, from_dir) = (parent_of(to), parent_of(from));
    sync_dir(to_dir)?;
    if from_dir != to_dir {
        sync_dir(from_dir)?;
    }
    Ok(())
}

/// Writes the file `dir/name` atomically and durably: creates `dir` if
/// missing (see [`create_dir_durable`]), lets `write` fill a new temporary
/// file in `dir`, flushes and fsyncs it, renames it to `name` (replacing
/// any file of that name) and fsyncs `dir`. Returns what `write` returned.
///
/// Readers see the old file or the whole new one, never a part, and after
/// a crash at any point the target is old or new and at most a temporary
/// file `.<name>.<unique>.tmp` remains (see [`TMP_SUFFIX`]). On an error,
/// `write`'s own or this function's (converted with `From`), the temporary
/// file is removed, best effort. Blocking.
pub fn write_atomic<T, E>(
    dir: &Path,
    name: impl AsRef<OsStr>,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<DurableWriteError>,
{
    let name = name.as_ref();
    let target = dir.join(name);
    if Path::new(name).file_name() != Some(name) {
        let why = io::Error::new(io::ErrorKind::InvalidInput, "not a plain file name");
        return Err(DurableWriteError::new(DurableStep::Name, &target, why).into());
    }
    create_dir_durable(dir)?;
    // Unique, so concurrent writers of one name never share a temporary
    // file; hidden and suffixed, so listings can skip it.
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}{TMP_SUFFIX}", Uuid::new_v4().simple()));
    let tmp = dir.join(tmp_name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(err(DurableStep::Open, &tmp))?;
    let result = fill_and_sync(file, &tmp, write).and_then(|value| {
        rename_durable(&tmp, &target)?;
        Ok(value)
    });
    if result.is_err() {
        // Best effort: a leftover temporary file is never read, only wasted
        // space; the write's own error is the one to report.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `write_atomic`'s middle: fills the open temporary file, flushes its
/// buffer and fsyncs it.
fn fill_and_sync<T, E>(
    file: File,
    tmp: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<DurableWriteError>,
{
    let mut out = BufWriter::new(file);
    let value = write(&mut out)?;
    out.flush().map_err(err(DurableStep::Write, tmp))?;
    let file = out
        .into_inner()
        .map_err(|e| DurableWriteError::new(DurableStep::Write, tmp, e.into_error()))?;
    sync_file(&file, tmp)?;
    Ok(value)
}

/// Opens `path` with `options` (which say how: read, append, …), creating
/// the file if it does not exist. A file this call created is fsynced,
/// and so is its directory, so an acknowledged write into it cannot vanish
/// with the whole file after a crash. Never creates directories: a missing
/// one is an error of kind `NotFound`. Returns the file and whether it was
/// created. Blocking.
pub fn open_or_create(
    path: &Path,
    options: &OpenOptions,
) -> Result<(File, bool), DurableWriteError> {
    let created = options.clone().create_new(true).open(path);
    let file = match created {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let file = options.open(path).map_err(err(DurableStep::Open, path))?;
            return Ok((file, false));
        }
        Err(e) => return Err(DurableWriteError::new(DurableStep::Open, path, e)),
    };
    sync_file(&file, path)?;
    sync_dir(parent_of(path))?;
    Ok((file, true))
}

#[cfg(test)]
mod tests;
