//! The write probe: after writes failed (a full disk, an I/O error), the
//! journal's writer thread runs it while idle, so that readiness clears
//! once the disk has room again even if nothing else writes.
//!
//! It must fail for the same reasons an append fails, so it allocates pages
//! (`SQLITE_FULL` at a size cap), grows the WAL and syncs it (a full disk,
//! a file-size limit, a failing device), but it leaves nothing anyone can
//! read: the row it inserts is deleted in the same transaction.

use rusqlite::Connection;

use crate::error::StoreError;

/// A version no migration uses: the probe row can never be mistaken for
/// one, and it never outlives its transaction.
const PROBE_VERSION: i64 = -1;

/// Pages of the probe row: more than a page, so it needs overflow pages.
const PROBE_PAGES: i64 = 2;

/// Inserts and deletes one multi-page row in one committed transaction.
/// On error the caller rolls back.
pub(super) fn probe_write(conn: &Connection) -> Result<(), StoreError> {
    let page_bytes: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    conn.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, zeroblob(?2), 0)",
        rusqlite::params![PROBE_VERSION, page_bytes * PROBE_PAGES],
    )?;
    conn.execute(
        "DELETE FROM schema_migrations WHERE version = ?1",
        [PROBE_VERSION],
    )?;
    conn.execute_batch("COMMIT")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExpectedVersion, NewEvent};
    use crate::store::sqlite::{SqliteOptions, SqliteStore};
    use crate::store::{PreparedAppend, Store, StoreWriter};
    use crate::Durability;

    fn append(n: usize) -> Vec<PreparedAppend> {
        let pad = "x".repeat(3000);
        vec![PreparedAppend {
            stream: "s".into(),
            expected: ExpectedVersion::Any,
            ids: (0..n).map(|_| uuid::Uuid::now_v7()).collect(),
            events: (0..n)
                .map(|i| NewEvent::new("fill", format!(r#"{{"i":{i},"pad":"{pad}"}}"#)))
                .collect(),
        }]
    }

    fn pragma(conn: &Connection, name: &str) -> i64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .expect(name)
    }

    /// A real `SQLITE_FULL`: SQLite's `max_page_count` caps the file. Commits
    /// and the probe fail with the typed error naming the file; once the
    /// cap is raised (room returns) both succeed, and the probe left no row.
    #[test]
    fn a_full_database_is_named_and_the_probe_sees_room_return() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ironclad.db");
        let store = SqliteStore::open(SqliteOptions {
            path: path.clone(),
            durability: Durability::Os,
            busy_timeout_ms: 1000,
            read_connections_max: 1,
            stream_cache_entries_max: 16,
        })
        .expect("open");
        let mut writer = store.open_writer().expect("writer");
        writer.commit(&append(2), 1).expect("room at first");
        let conn = writer.connection();
        let pages = pragma(conn, "page_count");
        pragma(conn, &format!("max_page_count = {pages}"));
        let e = writer.commit(&append(20), 2).expect_err("no room");
        match &e {
            StoreError::DiskFull(full) => assert_eq!(full.path, path),
            other => panic!("expected DiskFull, got {other:?}"),
        }
        assert!(e.to_string().contains("free disk space"), "{e}");
        let probe = writer.probe_write().expect("SQLite probes");
        assert!(matches!(probe, Err(StoreError::DiskFull(_))), "{probe:?}");
        assert_eq!(store.health(), Ok(()), "a full disk is not damage");

        pragma(
            writer.connection(),
            &format!("max_page_count = {}", pages * 100),
        );
        writer
            .probe_write()
            .expect("SQLite probes")
            .expect("room again");
        writer
            .commit(&append(20), 3)
            .expect("appends succeed again");
        let left: i64 = writer
            .connection()
            .query_row(
                "SELECT count(*) FROM schema_migrations WHERE version < 0",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(left, 0, "the probe leaves nothing behind");
        assert_eq!(store.read_all(1, 100).expect("read").len(), 22);
    }
}
