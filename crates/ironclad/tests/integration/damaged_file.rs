//! Guards what Ironclad does with a database file it cannot trust
//! (`docs/design.md`, "Opening a database"): bytes flipped in the middle of
//! the file are refused at open with an error naming the file, and damage
//! met while running is named in the read's error and reported by
//! `health()`; a 0-byte file, an SQLite file without Ironclad's schema and a
//! file that is not SQLite at all are refused, never migrated into an empty
//! journal; a missing file still creates a new journal.

use crate::common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use ironclad::{
    ExpectedVersion, Journal, LogReader, MigrateError, NewEvent, OpenError, ReadError, StoreError,
};

const STREAM: &str = "bulk";

/// Writes 2,000 events of ~600 bytes (a file of ~2 MB, mostly b-tree leaf
/// pages of `events`) and shuts down.
async fn populate(dir: &Path) {
    let journal = common::open(common::fast_config(dir));
    for chunk in 0..20 {
        let events = (0..100)
            .map(|i| {
                let note = format!("{chunk}-{i}-").repeat(60);
                NewEvent::from_value("bulk.added", &serde_json::json!({ "note": note }))
            })
            .collect();
        journal
            .append(STREAM, ExpectedVersion::Any, events)
            .await
            .expect("append");
    }
    common::shutdown(&journal).await;
}

/// Inverts the first 64 bytes (the b-tree page header and cell pointers) of
/// the middle leaf page of the `events` table, as a disk that returns bad
/// sectors would. Returns that page's number.
fn flip_middle_page(dir: &Path) -> i64 {
    let db = common::db_path(dir);
    let conn = common::raw_connection(dir);
    let (page_bytes, pages): (i64, i64) = conn
        .query_row(
            "SELECT * FROM pragma_page_size, pragma_page_count",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("page size");
    let mut stmt = conn
        .prepare(
            "SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' ORDER BY pageno",
        )
        .expect("dbstat");
    let leaves: Vec<i64> = stmt
        .query_map([], |r| r.get(0))
        .expect("leaves")
        .collect::<Result<_, _>>()
        .expect("leaves");
    drop(stmt);
    drop(conn);
    let page = leaves[leaves.len() / 2];
    assert!(
        page > pages / 4 && page < pages * 3 / 4,
        "page {page} of {pages} is in the middle of the file"
    );
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&db)
        .expect("open file");
    let offset = u64::try_from((page - 1) * page_bytes).expect("offset");
    let mut bytes = [0u8; 64];
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.read_exact(&mut bytes).expect("read");
    bytes.iter_mut().for_each(|b| *b = !*b);
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.write_all(&bytes).expect("write");
    file.sync_all().expect("fsync");
    page
}

fn open_error(dir: &Path) -> OpenError {
    match Journal::open(common::fast_config(dir)) {
        Ok(_) => panic!("Journal::open must refuse this database"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn flipped_bytes_in_the_middle_are_refused_at_open_naming_the_file() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    populate(&dir).await;
    let page = flip_middle_page(&dir);
    let e = open_error(&dir);
    let text = e.to_string();
    match e {
        OpenError::Migrate(MigrateError::Store(StoreError::CorruptDatabase(c))) => {
            assert_eq!(c.path, common::db_path(&dir));
            assert!(c.detail.contains(&format!("page {page}")), "{text}");
        }
        other => panic!("expected a damaged database, got {other:?}"),
    }
    let named = common::db_path(&dir).display().to_string();
    assert!(
        text.contains(&named) && text.contains("damaged") && text.contains("backup"),
        "names the file and what to do: {text}"
    );
}

#[tokio::test]
async fn damage_met_while_running_is_named_and_reported_by_health() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    populate(&dir).await;
    let journal = common::open(common::fast_config(&dir));
    assert!(journal.health().is_ok());
    flip_middle_page(&dir);
    let err = journal
        .read(STREAM, 1, ironclad::READ_LIMIT_MAX)
        .expect_err("the read crosses the damaged page");
    let named = common::db_path(&dir).display().to_string();
    match &err {
        ReadError::Store(StoreError::CorruptDatabase(c)) => {
            assert_eq!(c.path, common::db_path(&dir))
        }
        other => panic!("expected a damaged database, got {other:?}"),
    }
    assert!(err.to_string().contains(&named), "{err}");
    match journal.health().expect_err("health reports the damage") {
        ironclad::Unhealthy::Damaged(seen) => assert_eq!(seen.path, common::db_path(&dir)),
        other => panic!("expected damage, got {other:?}"),
    }
    // The read-only side opens (it checks only the header and the schema),
    // and names the damage when a read meets it.
    let reader = LogReader::open_sqlite(&common::fast_config(&dir)).expect("reader opens");
    assert!(reader.read(STREAM, 1, ironclad::READ_LIMIT_MAX).is_err());
    assert!(reader.health().is_err());
    drop(journal);
}

/// What a file that must not be migrated is refused with: the variant, and
/// text that names the file. The file is left as it was.
fn assert_refused(dir: &Path, what: &str, matches: fn(&StoreError) -> bool) {
    let db = common::db_path(dir);
    let before = std::fs::read(&db).expect("read file");
    let e = open_error(dir);
    match &e {
        OpenError::Migrate(MigrateError::Store(s)) if matches(s) => {}
        other => panic!("{what}: unexpected error {other:?}"),
    }
    let text = e.to_string();
    assert!(text.contains(&db.display().to_string()), "{what}: {text}");
    let read = LogReader::open_sqlite(&common::fast_config(dir));
    let text = read.err().expect("the reader refuses too").to_string();
    assert!(!text.contains("migrate"), "{what}: {text}");
    assert!(text.contains(&db.display().to_string()), "{what}: {text}");
    assert_eq!(std::fs::read(&db).expect("read file"), before, "{what}");
}

#[test]
fn an_empty_or_foreign_database_file_is_refused_not_replaced() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let db = common::db_path(&dir);

    std::fs::write(&db, b"").expect("write");
    assert_refused(&dir, "0 bytes", |s| {
        matches!(s, StoreError::EmptyDatabaseFile { .. }) && s.to_string().contains("0 bytes")
    });

    std::fs::write(&db, "not a database, just text\n".repeat(200)).expect("write");
    assert_refused(
        &dir,
        "not SQLite",
        |s| matches!(s, StoreError::NotIronclad { found, .. } if found.contains("SQLite header")),
    );

    std::fs::remove_file(&db).expect("rm");
    let conn = rusqlite::Connection::open(&db).expect("create");
    conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
        .expect("foreign schema");
    drop(conn);
    assert_refused(
        &dir,
        "foreign schema",
        |s| matches!(s, StoreError::NotIronclad { found, .. } if found.contains("1 tables")),
    );
}

#[tokio::test]
async fn a_missing_file_still_creates_a_new_journal() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::fast_config(&dir));
    journal
        .append(
            STREAM,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("t", "1")],
        )
        .await
        .expect("append");
    common::shutdown(&journal).await;
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".new")),
        "no temporary file left: {names:?}"
    );
    assert_eq!(
        common::verify_ok(&common::open(common::fast_config(&dir))).checked,
        1
    );
}
