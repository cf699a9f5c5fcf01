//! Readiness follows the store: once a read meets a damaged database file,
//! `/readyz` answers 503 naming the file, while `/healthz` (the process is
//! alive) stays 200.

use std::io::{Seek, SeekFrom, Write};

use axum::http::StatusCode;
use ironclad::ExpectedVersion;

use crate::ingest_support::app;

const STREAM: &str = "bulk";

#[tokio::test]
async fn readyz_fails_once_the_database_is_found_damaged() {
    let test = app();
    for chunk in 0..20 {
        let events = (0..100)
            .map(|i| {
                let note = format!("{chunk}-{i}-").repeat(60);
                ironclad::NewEvent::from_value("bulk.added", &serde_json::json!({ "note": note }))
            })
            .collect();
        test.journal
            .append(STREAM, ExpectedVersion::Any, events)
            .await
            .expect("append");
    }
    assert_eq!(test.get("/readyz").await.status, StatusCode::OK);
    // Into the main file: with `os` durability the events sit in the WAL.
    test.journal.wal_checkpoint().await.expect("WAL checkpoint");

    // Garble 64 KiB in the middle of the file (page-aligned), where the
    // event table's pages are, as a disk returning bad sectors would.
    let db = test.journal.config().db_path();
    let len = std::fs::metadata(&db).expect("db").len();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .expect("open db");
    file.seek(SeekFrom::Start(len / 2 / 4096 * 4096))
        .expect("seek");
    file.write_all(&[0xA5; 64 * 1024]).expect("garble");
    file.sync_all().expect("sync");
    drop(file);

    let read = test
        .get(&format!("/v1/streams/{STREAM}/events?from=1&limit=1000"))
        .await;
    let read2 = test
        .get(&format!("/v1/streams/{STREAM}/events?from=1001&limit=1000"))
        .await;
    assert!(
        !(read.status.is_success() && read2.status.is_success()),
        "a read across the garbled pages fails: {} {}",
        read.status,
        read2.status
    );
    let ready = test.get("/readyz").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.json
    );
    let message = ready.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&db.display().to_string()), "{message}");
    assert_eq!(test.get("/healthz").await.status, StatusCode::OK);
}
