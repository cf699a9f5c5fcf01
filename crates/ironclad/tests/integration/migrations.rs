//! Guards schema migrations (SPEC §8 "Migrations") on real files: the
//! committed legacy v0 fixture (`tests/fixtures/legacy_v0.{sql,db}`) is
//! migrated by `Journal::open` with every row kept (id, stream, version,
//! type, payload, created_at in µs, position = seq) and a verifying ledger;
//! re-running the migration is a no-op; a database newer than the binary is
//! refused naming both versions; an empty directory migrates to the current
//! version; a legacy row that cannot be carried over fails the open and
//! leaves the legacy data exactly as it was.

use crate::common;

use std::path::{Path, PathBuf};

use ironclad::store::sqlite::{migrate, schema_status, MigrationStatus, SCHEMA_VERSION};
use ironclad::{
    ExpectedVersion, Journal, LogReader, MigrateError, NewEvent, Op, OpenError, StoreError,
};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
struct LegacyRow {
    seq: i64,
    id: String,
    stream: String,
    version: i64,
    event_type: String,
    payload: String,
    created_at_ms: i64,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

fn legacy_rows(conn: &rusqlite::Connection) -> Vec<LegacyRow> {
    let mut stmt = conn
        .prepare(
            "SELECT seq, id, stream, version, type, payload, created_at FROM events ORDER BY seq",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(LegacyRow {
                seq: r.get(0)?,
                id: r.get(1)?,
                stream: r.get(2)?,
                version: r.get(3)?,
                event_type: r.get(4)?,
                payload: r.get(5)?,
                created_at_ms: r.get(6)?,
            })
        })
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

fn table_names(conn: &rusqlite::Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger') ORDER BY name")
        .unwrap();
    let names = stmt.query_map([], |r| r.get(0)).unwrap();
    names.collect::<Result<_, _>>().unwrap()
}

fn status(dir: &Path) -> MigrationStatus {
    schema_status(&common::raw_connection(dir)).expect("schema_status")
}

/// Copies the committed v0 database into a fresh data directory.
fn install_legacy(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(fixture("legacy_v0.db"), common::db_path(dir)).expect("copy fixture");
}

#[test]
fn fixture_db_matches_its_sql() {
    let sql = std::fs::read_to_string(fixture("legacy_v0.sql")).unwrap();
    let from_sql = rusqlite::Connection::open_in_memory().unwrap();
    from_sql.execute_batch(&sql).unwrap();
    let db = rusqlite::Connection::open_with_flags(
        fixture("legacy_v0.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let rows = legacy_rows(&db);
    assert_eq!(
        rows,
        legacy_rows(&from_sql),
        "regenerate legacy_v0.db from legacy_v0.sql"
    );
    assert_eq!(rows.len(), 50);
    let streams: std::collections::BTreeSet<_> = rows.iter().map(|r| r.stream.as_str()).collect();
    assert_eq!(streams.len(), 3);
    assert!(
        rows.iter().any(|r| !r.payload.is_ascii()),
        "fixture carries unicode payloads"
    );
    assert!(!table_names(&db).contains(&"schema_migrations".to_string()));
}

#[tokio::test]
async fn legacy_v0_is_migrated_without_loss() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    install_legacy(&dir);
    let rows = legacy_rows(&common::raw_connection(&dir));
    let before = status(&dir);
    assert_eq!(before.db_version, 0);
    assert!(before.legacy_v0);
    assert!(before.applied.is_empty());
    assert_eq!(
        before.pending.iter().map(|p| p.0).collect::<Vec<_>>(),
        (1..=SCHEMA_VERSION).collect::<Vec<_>>()
    );

    // A read-only reader never migrates: it refuses and changes nothing.
    match LogReader::open_sqlite(&common::fast_config(&dir)) {
        Err(OpenError::Config(msg)) => assert!(msg.contains("version 0"), "{msg}"),
        Err(other) => panic!("reader on v0: expected a config error, got {other}"),
        Ok(_) => panic!("a reader must refuse an unmigrated database"),
    }
    assert_eq!(status(&dir), before);

    let journal = common::open(common::fast_config(&dir));
    let events = common::read_everything(&journal);
    assert_eq!(events.len(), rows.len(), "every legacy row is carried over");
    for (row, ev) in rows.iter().zip(&events) {
        assert_eq!(ev.id, Uuid::parse_str(&row.id).unwrap(), "seq {}", row.seq);
        assert_eq!(ev.stream, row.stream, "seq {}", row.seq);
        assert_eq!(ev.version as i64, row.version, "seq {}", row.seq);
        assert_eq!(ev.position as i64, row.seq, "position is the legacy seq");
        assert_eq!(ev.event_type, row.event_type, "seq {}", row.seq);
        assert_eq!(
            ev.payload, row.payload,
            "payload byte for byte, seq {}",
            row.seq
        );
        assert_eq!(
            ev.created_at_us,
            row.created_at_ms * 1000,
            "seq {}",
            row.seq
        );
        assert_eq!(ev.op, Op::Event);
        assert_eq!(ev.entity, None);
        assert!(ev.metadata.is_empty());
    }
    let summary = common::check_log_structure(&events);
    common::check_stream_heads(&journal, &summary);
    assert_eq!(common::verify_ok(&journal).checked, rows.len() as u64);

    // The migrated heads are live: appends continue each chain.
    let last_user = rows
        .iter()
        .filter(|r| r.stream == "user-42")
        .map(|r| r.version)
        .max()
        .unwrap();
    let r = journal
        .append(
            "user-42",
            ExpectedVersion::Exact(last_user as u64),
            vec![NewEvent::new(
                "user.logged_out",
                r#"{"reason":"migrated ✓"}"#,
            )],
        )
        .await
        .expect("append after migration");
    assert_eq!(r.events[0].version, last_user as u64 + 1);
    assert_eq!(r.events[0].position, rows.len() as u64 + 1);
    assert_eq!(common::verify_ok(&journal).checked, rows.len() as u64 + 1);
    common::shutdown(&journal).await;

    let after = status(&dir);
    assert_eq!(after.db_version, SCHEMA_VERSION);
    assert!(!after.legacy_v0);
    assert!(after.pending.is_empty());
    assert_eq!(
        after.applied.iter().map(|a| a.0).collect::<Vec<_>>(),
        (1..=SCHEMA_VERSION).collect::<Vec<_>>()
    );
    let tables = table_names(&common::raw_connection(&dir));
    assert!(
        !tables.contains(&"legacy_v0_events".to_string()),
        "{tables:?}"
    );
    assert!(
        tables.contains(&"events_append_only_update".to_string()),
        "{tables:?}"
    );
}

#[tokio::test]
async fn rerunning_the_migration_is_a_noop() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    install_legacy(&dir);
    let journal = common::open(common::fast_config(&dir));
    let events = common::read_everything(&journal);
    let head = journal.ledger_head().unwrap();
    common::shutdown(&journal).await;
    let first = status(&dir);
    assert_eq!(first.applied.len(), SCHEMA_VERSION as usize);

    for _ in 0..2 {
        let journal = common::open(common::fast_config(&dir));
        assert_eq!(
            common::read_everything(&journal),
            events,
            "data unchanged by re-running"
        );
        assert_eq!(journal.ledger_head().unwrap(), head);
        common::shutdown(&journal).await;
        assert_eq!(status(&dir).applied, first.applied, "no step applied twice");
    }
    let mut conn = common::raw_connection(&dir);
    assert_eq!(migrate(&mut conn).expect("migrate"), Vec::<u32>::new());
    assert_eq!(schema_status(&conn).unwrap(), first);
}

#[tokio::test]
async fn newer_database_is_refused_naming_both_versions() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::fast_config(&dir));
    journal
        .append("s", ExpectedVersion::Any, vec![NewEvent::new("t", "{}")])
        .await
        .unwrap();
    common::shutdown(&journal).await;
    common::raw_connection(&dir)
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'from the future', 0)",
            [],
        )
        .unwrap();

    // Twice: a refused open must release the directory lock.
    for _ in 0..2 {
        match Journal::open(common::fast_config(&dir)) {
            Err(OpenError::Migrate(e @ MigrateError::DatabaseNewer { .. })) => {
                assert!(matches!(
                    e,
                    MigrateError::DatabaseNewer {
                        db_version: 999,
                        binary_version: SCHEMA_VERSION
                    }
                ));
                let msg = e.to_string();
                assert!(
                    msg.contains("version 999")
                        && msg.contains(&format!("version {SCHEMA_VERSION}")),
                    "{msg}"
                );
            }
            Err(other) => panic!("expected DatabaseNewer, got {other}"),
            Ok(_) => panic!("a newer database must be refused"),
        }
    }
    match LogReader::open_sqlite(&common::fast_config(&dir)) {
        Err(OpenError::Migrate(MigrateError::DatabaseNewer {
            db_version: 999,
            binary_version: SCHEMA_VERSION,
        })) => {}
        Err(other) => panic!("reader: expected DatabaseNewer, got {other}"),
        Ok(_) => panic!("reader: a newer database must be refused"),
    }
    let st = status(&dir);
    assert_eq!(st.db_version, 999, "the refusal changed nothing");
    let count: i64 = common::raw_connection(&dir)
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn empty_directory_migrates_to_the_current_version() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    assert!(!dir.exists());
    let journal = common::open(common::fast_config(&dir));
    assert_eq!(journal.ledger_head().unwrap(), None);
    assert_eq!(common::verify_ok(&journal).checked, 0);
    common::shutdown(&journal).await;
    let st = status(&dir);
    assert_eq!(st.db_version, SCHEMA_VERSION);
    assert!(!st.legacy_v0);
    assert!(st.pending.is_empty());
    assert_eq!(
        st.applied.iter().map(|a| a.0).collect::<Vec<_>>(),
        (1..=SCHEMA_VERSION).collect::<Vec<_>>()
    );
    assert!(st.applied[0].2 > 0, "applied_at is recorded");
    let tables = table_names(&common::raw_connection(&dir));
    for t in [
        "events",
        "streams",
        "schema_migrations",
        "events_append_only_delete",
    ] {
        assert!(
            tables.contains(&t.to_string()),
            "{t} missing from {tables:?}"
        );
    }
}

#[tokio::test]
async fn bad_legacy_row_fails_the_open_and_rolls_back() {
    // (case, SQL that damages the fixture, text the error must contain)
    let cases = [
        (
            "non-UUID id",
            "INSERT INTO events (id, stream, version, type, payload, created_at)
             VALUES ('not-a-uuid', 'user-42', 21, 'user.logged_in', '{}', 1717409999999)",
            "not-a-uuid",
        ),
        (
            "version gap",
            "INSERT INTO events (id, stream, version, type, payload, created_at)
             VALUES ('5b0e3f7e-8a55-4c1e-9d0f-2f3a4b5c6d7e', 'user-42', 23, 'user.logged_in', '{}', 1717409999999)",
            "jumps from version 20 to 23",
        ),
    ];
    for (case, damage, needle) in cases {
        let tmp = common::tempdir();
        let dir = common::data_dir(&tmp);
        install_legacy(&dir);
        let conn = common::raw_connection(&dir);
        conn.execute(damage, []).unwrap();
        let rows = legacy_rows(&conn);
        let tables = table_names(&conn);
        drop(conn);
        assert_eq!(rows.len(), 51);

        match Journal::open(common::fast_config(&dir)) {
            Err(OpenError::Migrate(MigrateError::Step {
                to: 1,
                source: StoreError::Corrupt(msg),
            })) => {
                assert!(msg.contains("seq 51"), "{case}: names the row: {msg}");
                assert!(msg.contains(needle), "{case}: says what is wrong: {msg}");
            }
            Err(other) => panic!("{case}: expected a failed step, got {other}"),
            Ok(_) => panic!("{case}: a bad legacy row must fail the migration"),
        }

        let conn = common::raw_connection(&dir);
        assert_eq!(table_names(&conn), tables, "{case}: schema rolled back");
        assert_eq!(legacy_rows(&conn), rows, "{case}: legacy rows untouched");
        let st = schema_status(&conn).unwrap();
        assert_eq!((st.db_version, st.legacy_v0), (0, true), "{case}");

        // Once the row is repaired, the same directory migrates.
        conn.execute("DELETE FROM events WHERE seq = 51", [])
            .unwrap();
        drop(conn);
        let journal = common::open(common::fast_config(&dir));
        assert_eq!(common::verify_ok(&journal).checked, 50, "{case}");
        common::shutdown(&journal).await;
    }
}
