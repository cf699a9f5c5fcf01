//! The embedded SQLite backend: WAL mode, one writer connection, a small pool
//! of read-only connections (SPEC §8). Schema and pragmas: `docs/design.md`.

mod check;
mod delivery;
mod migrate;
mod probe;
mod rows;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::config::Durability;
use crate::error::{CorruptDatabase, MigrateError, StoreError};
use crate::model::{LedgerHead, RecordedEvent, StreamHead};
use crate::store::delivery::{
    ConsumerRow, DlqFilter, DlqRow, DlqStats, RetryRow, RetryStats, SinkRow, StreamBacklog,
};
use crate::store::Store;

pub(crate) use check::{check_schema, inspect_file, name_damage, FileState};
pub use migrate::{migrate, schema_status, MigrationStatus, SCHEMA_VERSION};
pub use writer::SqliteWriter;

/// Settings the SQLite backend needs from the journal configuration.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Database file.
    pub path: PathBuf,
    /// Maps to `synchronous=FULL` (fsync) or `NORMAL` (os).
    pub durability: Durability,
    /// `busy_timeout`.
    pub busy_timeout_ms: u64,
    /// Most idle reader connections kept.
    pub read_connections_max: usize,
    /// Most stream heads the writer caches.
    pub stream_cache_entries_max: usize,
}

impl SqliteOptions {
    /// The SQLite settings implied by a journal configuration.
    pub fn from_config(config: &crate::config::JournalConfig) -> Self {
        SqliteOptions {
            path: config.db_path(),
            durability: config.durability,
            busy_timeout_ms: config.busy_timeout_ms,
            read_connections_max: config.read_connections_max,
            stream_cache_entries_max: config.stream_cache_entries_max,
        }
    }
}

/// The SQLite store. Reads borrow a pooled read-only connection; they never
/// take the write lock, so they never wait on a commit (WAL snapshot reads).
pub struct SqliteStore {
    opts: SqliteOptions,
    readers: Mutex<Vec<Connection>>,
    damage: Arc<check::DamageWatch>,
}

/// Opens a connection with the pragmas Ironclad relies on.
pub(crate) fn open_connection(
    opts: &SqliteOptions,
    read_only: bool,
) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(&opts.path, flags)?;
    conn.busy_timeout(Duration::from_millis(opts.busy_timeout_ms))?;
    if !read_only {
        // WAL: readers never block the writer and vice versa.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "could not enable WAL mode (got {mode:?}); is the file on a network file system?"
            )));
        }
        // fullfsync: on macOS/iOS plain fsync does not flush the drive cache;
        // F_FULLFSYNC does. Ignored elsewhere.
        let sync = match opts.durability {
            Durability::Fsync => {
                "PRAGMA synchronous=FULL; PRAGMA fullfsync=ON; PRAGMA checkpoint_fullfsync=ON;"
            }
            Durability::Os => "PRAGMA synchronous=NORMAL;",
        };
        conn.execute_batch(sync)?;
        // recursive_triggers: makes INSERT OR REPLACE fire the append-only
        // DELETE trigger on this connection instead of silently replacing.
        conn.execute_batch(
            // WAL-checkpoint every 1000 pages (4 MiB) of WAL: larger intervals
            // and 8 KiB pages were measured and did not pay (BENCHMARKS.md).
            "PRAGMA wal_autocheckpoint=1000;
             PRAGMA journal_size_limit=67108864;
             PRAGMA cache_size=-65536;
             PRAGMA temp_store=MEMORY;
             PRAGMA recursive_triggers=ON;",
        )?;
    } else {
        conn.execute_batch("PRAGMA query_only=ON; PRAGMA cache_size=-16384;")?;
    }
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `opts.path`,
    /// after checking it (see [`SqliteStore::migrate_in_place`]).
    pub fn open(opts: SqliteOptions) -> Result<Self, MigrateError> {
        SqliteStore::migrate_in_place(&opts)?;
        Ok(SqliteStore::unmigrated(opts))
    }

    /// Creates the database if it is missing, or else checks it, then
    /// migrates it, with the same connection settings the engine uses,
    /// without starting a writer. Returns the versions applied (empty when
    /// already current). An existing file is refused if it is empty, holds
    /// no Ironclad schema, or fails `PRAGMA quick_check`. The caller must
    /// hold the data-directory lock.
    pub fn migrate_in_place(opts: &SqliteOptions) -> Result<Vec<u32>, MigrateError> {
        let path = &opts.path;
        let checked = || -> Result<Vec<u32>, MigrateError> {
            let created = match inspect_file(path)? {
                FileState::Missing => check::create_new(path)?,
                FileState::Present => {
                    // Read-only: nothing, not even WAL mode, is written to
                    // a file before it has passed.
                    let conn = open_connection(opts, true)?;
                    check_schema(&conn, path)?;
                    check::quick_check(&conn, path)?;
                    Vec::new()
                }
            };
            let mut conn = open_connection(opts, false)?;
            Ok([created, migrate(&mut conn)?].concat())
        };
        checked().map_err(|e| check::name_migrate_damage(e, path))
    }

    /// Checks the database file at `path` as opening does, read-only and
    /// without `quick_check` (for reports such as `ironclad migrate
    /// --status`): false when it is missing; an empty (0-byte) file, a file
    /// that is not SQLite, and an SQLite database without Ironclad's schema
    /// are errors that say what happened.
    pub fn check_file(path: &Path) -> Result<bool, StoreError> {
        match inspect_file(path)? {
            FileState::Missing => Ok(false),
            FileState::Present => {
                let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                check_schema(&conn, path)?;
                Ok(true)
            }
        }
    }

    /// Wraps an already-migrated database without touching its schema (the
    /// caller has checked the version).
    pub(crate) fn unmigrated(opts: SqliteOptions) -> Self {
        SqliteStore {
            damage: Arc::new(check::DamageWatch::new(opts.path.clone())),
            opts,
            readers: Mutex::new(Vec::new()),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.opts.path
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.readers.lock().map(|mut v| v.pop()).unwrap_or(None);
        let conn = match pooled {
            Some(c) => c,
            None => open_connection(&self.opts, true).map_err(|e| self.damage.note(e))?,
        };
        let out = f(&conn).map_err(|e| self.damage.note(e));
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < self.opts.read_connections_max {
                pool.push(conn);
            }
        }
        out
    }
}

impl Store for SqliteStore {
    type Writer = SqliteWriter;

    fn open_writer(&self) -> Result<SqliteWriter, StoreError> {
        let conn = open_connection(&self.opts, false).map_err(|e| self.damage.note(e))?;
        SqliteWriter::new(
            conn,
            self.opts.stream_cache_entries_max,
            Duration::from_millis(self.opts.busy_timeout_ms),
            Arc::clone(&self.damage),
        )
    }

    fn health(&self) -> Result<(), CorruptDatabase> {
        match self.damage.seen() {
            Some(c) => Err(c.clone()),
            None => Ok(()),
        }
    }

    fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.with_reader(|c| {
            let sql = format!(
                "{} WHERE s.name = ?1 AND e.version >= ?2 ORDER BY e.version LIMIT ?3",
                rows::SELECT_EVENTS
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                rusqlite::params![stream, rows::to_i64(from_version), rows::limit(limit)],
                rows::event_from_row,
            )?;
            rows::collect(rows)
        })
    }

    fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.with_reader(|c| {
            let sql = format!(
                "{} WHERE e.position >= ?1 ORDER BY e.position LIMIT ?2",
                rows::SELECT_EVENTS
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                rusqlite::params![rows::to_i64(from_position), rows::limit(limit)],
                rows::event_from_row,
            )?;
            rows::collect(rows)
        })
    }

    fn stream_head(&self, stream: &str) -> Result<Option<StreamHead>, StoreError> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, version, head_hash FROM streams WHERE name = ?1 AND version > 0",
            )?;
            let head = stmt.query_row([stream], rows::head_from_row).optional()?;
            head.transpose()
        })
    }

    fn list_streams(&self, after: &str, limit: usize) -> Result<Vec<StreamHead>, StoreError> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, version, head_hash FROM streams
                 WHERE name > ?1 AND version > 0 ORDER BY name LIMIT ?2",
            )?;
            let rows = stmt.query_map(
                rusqlite::params![after, rows::limit(limit)],
                rows::head_from_row,
            )?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
    }

    fn ledger_head(&self) -> Result<Option<LedgerHead>, StoreError> {
        self.with_reader(rows::ledger_head)
    }

    fn event_at(&self, position: u64) -> Result<Option<RecordedEvent>, StoreError> {
        let mut v = self.read_all(position, 1)?;
        Ok(v.pop().filter(|e| e.position == position))
    }

    fn sinks(&self) -> Result<Vec<SinkRow>, StoreError> {
        self.with_reader(delivery::sinks)
    }

    fn retry_rows(
        &self,
        sink_id: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RetryRow>, StoreError> {
        self.with_reader(|c| delivery::retry_rows(c, sink_id, after, limit))
    }

    fn retry_stats(&self, sink_id: i64) -> Result<RetryStats, StoreError> {
        self.with_reader(|c| delivery::retry_stats(c, sink_id))
    }

    fn dlq_list(
        &self,
        filter: &DlqFilter,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<DlqRow>, StoreError> {
        self.with_reader(|c| delivery::dlq_list(c, filter, after, limit))
    }

    fn dlq_oldest(&self, sink_id: i64, limit: usize) -> Result<Vec<DlqRow>, StoreError> {
        self.with_reader(|c| delivery::dlq_oldest(c, sink_id, limit))
    }

    fn dlq_stats(&self, sink_id: i64) -> Result<DlqStats, StoreError> {
        self.with_reader(|c| delivery::dlq_stats(c, sink_id))
    }

    fn backlog_after(&self, after: u64, limit: usize) -> Result<Vec<StreamBacklog>, StoreError> {
        self.with_reader(|c| delivery::backlog_after(c, after, limit))
    }

    fn consumer(&self, name: &str) -> Result<Option<ConsumerRow>, StoreError> {
        self.with_reader(|c| delivery::consumer(c, name))
    }

    fn consumers(&self, after: &str, limit: usize) -> Result<Vec<ConsumerRow>, StoreError> {
        self.with_reader(|c| delivery::consumers(c, after, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_carry_the_pragmas_relied_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (durability, synchronous, fullfsync) in
            [(Durability::Fsync, 2, 1), (Durability::Os, 1, 0)]
        {
            let opts = SqliteOptions {
                path: dir.path().join(format!("{durability:?}.db")),
                durability,
                busy_timeout_ms: 1234,
                read_connections_max: 1,
                stream_cache_entries_max: 1,
            };
            let c = open_connection(&opts, false).expect("writer connection");
            let q = |c: &Connection, p: &str| -> i64 {
                c.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                    .expect(p)
            };
            let mode: String = c
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .expect("mode");
            assert_eq!(mode, "wal");
            assert_eq!(q(&c, "synchronous"), synchronous, "{durability:?}");
            assert_eq!(q(&c, "fullfsync"), fullfsync, "{durability:?}");
            assert_eq!(q(&c, "recursive_triggers"), 1);
            assert_eq!(q(&c, "busy_timeout"), 1234);
            assert_eq!(q(&c, "wal_autocheckpoint"), 1000);
            let r = open_connection(&opts, true).expect("reader connection");
            assert_eq!(q(&r, "query_only"), 1);
            assert_eq!(q(&r, "busy_timeout"), 1234);
        }
    }
}
