//! One engine per data directory (SPEC §8): an exclusive `flock` on
//! `<data>/LOCK`, which also records the holder's pid for the error message.
//! The kernel drops the lock when the process dies, even by SIGKILL, so a
//! crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::OpenError;

/// Held for as long as the engine runs; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock on `dir`, creating the directory if needed. Fails with
    /// [`OpenError::Locked`] naming the holder's pid when another engine
    /// (in this process or another) holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, OpenError> {
        let io_err = |source| OpenError::DataDir {
            path: dir.to_path_buf(),
            source,
        };
        // Durably: the database created in it next is only as durable as
        // the directory's own entry in its parent.
        crate::durable::create_dir_durable(dir).map_err(|e| OpenError::DataDir {
            path: e.path,
            source: e.source,
        })?;
        let path = dir.join("LOCK");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = match file.read_to_string(&mut text) {
                    Ok(_) if !text.trim().is_empty() => text.trim().to_string(),
                    _ => "unknown".to_string(),
                };
                return Err(OpenError::Locked {
                    path: dir.to_path_buf(),
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        write!(file, "{}", std::process::id()).map_err(io_err)?;
        file.flush().map_err(io_err)?;
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
