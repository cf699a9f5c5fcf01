//! What the SQLite store checks before it trusts a database file, and how it
//! names damage found later (`docs/design.md`, "Opening a database").
//!
//! A missing file is the only case in which a new journal is created, and it
//! is created whole (under a temporary name, migrated, then renamed into
//! place), so a crash can never leave an empty or schema-less `ironclad.db`
//! behind. Any such file found later therefore lost its data, or is not
//! Ironclad's, and is refused instead of being migrated into an empty
//! journal. A file that passes is checked with `PRAGMA quick_check` when a
//! writer opens it. Errors SQLite reports as `SQLITE_CORRUPT` or
//! `SQLITE_NOTADB` while running become [`CorruptDatabase`], which names the
//! file, and are remembered for readiness probes.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::error::{CorruptDatabase, DiskFull, MigrateError, StoreError};

use super::migrate::{migrate, table_exists};

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Most problems `quick_check` lists in an error message.
const QUICK_CHECK_ERRORS_MAX: u32 = 3;

/// How much of the file the check maps: SQLite's own ceiling
/// (`SQLITE_MAX_MMAP_SIZE`); past it, pages are read as usual.
const QUICK_CHECK_MMAP_BYTES: u64 = 0x7fff_0000;

/// Whether the database file is there to be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileState {
    /// No file: a new journal may be created.
    Missing,
    /// A non-empty file with an SQLite header.
    Present,
}

/// Looks at the file without SQLite: missing, empty, or not SQLite at all.
pub(crate) fn inspect_file(path: &Path) -> Result<FileState, StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(e) => return Err(io(e)),
    };
    if file.metadata().map_err(io)?.len() == 0 {
        return Err(StoreError::EmptyDatabaseFile {
            path: path.to_path_buf(),
        });
    }
    let mut header = [0u8; 16];
    match file.read_exact(&mut header) {
        Ok(()) if &header == SQLITE_MAGIC => Ok(FileState::Present),
        Ok(()) => Err(not_ironclad(
            path,
            "its first bytes are not an SQLite header",
        )),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
            Err(not_ironclad(path, "it is shorter than an SQLite header"))
        }
        Err(e) => Err(io(e)),
    }
}

fn not_ironclad(path: &Path, found: impl Into<String>) -> StoreError {
    StoreError::NotIronclad {
        path: path.to_path_buf(),
        found: found.into(),
    }
}

/// Refuses an SQLite database that holds neither Ironclad's schema nor its
/// legacy v0 `events` table.
pub(crate) fn check_schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    if table_exists(conn, "schema_migrations")? || table_exists(conn, "events")? {
        return Ok(());
    }
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
        [],
        |r| r.get(0),
    )?;
    Err(not_ironclad(
        path,
        match tables {
            0 => "an SQLite database with no tables".to_string(),
            n => format!("an SQLite database with {n} tables, none of them Ironclad's"),
        },
    ))
}

/// Runs `PRAGMA quick_check`: every page of every b-tree is read and its
/// structure checked (not that indexes match their tables, and not the
/// contents of records: the hash chain and `ledger verify` cover those).
/// Reads through a memory map for the check only: with one `read` call per
/// page it took three times as long on 1 GB (`BENCHMARKS.md`).
pub(crate) fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.execute_batch(&format!("PRAGMA mmap_size={QUICK_CHECK_MMAP_BYTES}"))?;
    let found = quick_check_rows(conn);
    conn.execute_batch("PRAGMA mmap_size=0")?;
    let found = found?;
    if found.len() == 1 && found[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::CorruptDatabase(CorruptDatabase {
        path: path.to_path_buf(),
        detail: format!("quick_check: {}", found.join("; ")),
    }))
}

fn quick_check_rows(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(&format!("PRAGMA quick_check({QUICK_CHECK_ERRORS_MAX})"))?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Creates a new, migrated database at `path` atomically: built under a
/// temporary name in rollback-journal mode (so closing it leaves one
/// self-contained file), fsynced, then renamed into place. Leftovers of a
/// crash in here carry that temporary name and are removed first.
/// Returns the migrations applied.
pub(crate) fn create_new(path: &Path) -> Result<Vec<u32>, MigrateError> {
    let tmp = sibling(path, ".new");
    for leftover in [tmp.clone(), sibling(&tmp, "-journal")] {
        match std::fs::remove_file(&leftover) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(StoreError::Io {
                    path: leftover,
                    source: e,
                }
                .into())
            }
            _ => {}
        }
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(&tmp, flags).map_err(StoreError::from)?;
    conn.execute_batch("PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;")
        .map_err(StoreError::from)?;
    let applied = migrate(&mut conn)?;
    conn.close().map_err(|(_, e)| StoreError::from(e))?;
    let io = |source| StoreError::Io {
        path: tmp.clone(),
        source,
    };
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    crate::durable::rename_durable(&tmp, path).map_err(|e| StoreError::Io {
        path: e.path,
        source: e.source,
    })?;
    Ok(applied)
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Names damage SQLite reports on a database file, and remembers the first
/// one for [`crate::store::Store::health`]. Shared by the store's readers
/// and its writer.
#[derive(Debug)]
pub(crate) struct DamageWatch {
    path: PathBuf,
    seen: OnceLock<CorruptDatabase>,
}

impl DamageWatch {
    /// Watches the database at `path`.
    pub(crate) fn new(path: PathBuf) -> Self {
        DamageWatch {
            path,
            seen: OnceLock::new(),
        }
    }

    /// Passes `e` through, except that `SQLITE_CORRUPT` and `SQLITE_NOTADB`
    /// become [`StoreError::CorruptDatabase`] naming the file, and are
    /// remembered.
    pub(crate) fn note(&self, e: StoreError) -> StoreError {
        let e = name_damage(e, &self.path);
        if let StoreError::CorruptDatabase(c) = &e {
            if self.seen.set(c.clone()).is_ok() {
                tracing::error!(error = %c, "the database file is damaged");
            }
        }
        e
    }

    /// The first damage seen, if any.
    pub(crate) fn seen(&self) -> Option<&CorruptDatabase> {
        self.seen.get()
    }
}

/// `SQLITE_CORRUPT` and `SQLITE_NOTADB` as [`StoreError::CorruptDatabase`]
/// naming `path`, `SQLITE_FULL` as [`StoreError::DiskFull`]; every other
/// error unchanged.
pub(crate) fn name_damage(e: StoreError, path: &Path) -> StoreError {
    match e {
        StoreError::Sqlite(s) if s.sqlite_error_code() == Some(ErrorCode::DiskFull) => {
            StoreError::DiskFull(DiskFull {
                path: path.to_path_buf(),
                detail: s.to_string(),
            })
        }
        StoreError::Sqlite(s)
            if matches!(
                s.sqlite_error_code(),
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
            ) =>
        {
            StoreError::CorruptDatabase(CorruptDatabase {
                path: path.to_path_buf(),
                detail: s.to_string(),
            })
        }
        other => other,
    }
}

/// [`name_damage`] for the errors of opening and migrating.
pub(crate) fn name_migrate_damage(e: MigrateError, path: &Path) -> MigrateError {
    match e {
        MigrateError::Store(s) => MigrateError::Store(name_damage(s, path)),
        MigrateError::Step { to, source } => MigrateError::Step {
            to,
            source: name_damage(source, path),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_cannot_be_a_journal_are_told_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ironclad.db");
        assert_eq!(inspect_file(&path).expect("missing"), FileState::Missing);
        std::fs::write(&path, b"").expect("write");
        assert!(matches!(
            inspect_file(&path),
            Err(StoreError::EmptyDatabaseFile { .. })
        ));
        std::fs::write(&path, b"SQLite").expect("write");
        assert!(matches!(
            inspect_file(&path),
            Err(StoreError::NotIronclad { .. })
        ));
        std::fs::write(&path, [b'x'; 4096]).expect("write");
        let e = inspect_file(&path).expect_err("not SQLite");
        assert!(e.to_string().contains("not an SQLite header"), "{e}");
    }

    #[test]
    fn a_new_database_is_created_whole_and_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ironclad.db");
        std::fs::write(sibling(&path, ".new"), b"left by a crash").expect("write");
        create_new(&path).expect("create");
        assert_eq!(inspect_file(&path).expect("present"), FileState::Present);
        assert!(!sibling(&path, ".new").exists());
        let conn = Connection::open(&path).expect("open");
        check_schema(&conn, &path).expect("an Ironclad schema");
        quick_check(&conn, &path).expect("intact");
    }
}
