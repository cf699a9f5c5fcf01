//! Readiness follows the store: once a read meets a damaged database file,
//! `/readyz` answers 503 naming the file, while `/healthz` (the process is
//! alive) stays 200; and requests that meet the damage answer 500
//! `database_corrupt` naming the file, not a retryable 503. (A full disk
//! that recovers is tested against the real `ironclad serve` process, in
//! `crates/ironclad-cli/tests/integration/serve_disk.rs`.)

use std::io::{Seek, SeekFrom, Write};

use axum::http::{header, Method, StatusCode};
use ironclad::ExpectedVersion;

use crate::ingest_support::{app, Answer};

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

    let reads = [
        test.get(&format!("/v1/streams/{STREAM}/events?from=1&limit=1000"))
            .await,
        test.get(&format!("/v1/streams/{STREAM}/events?from=1001&limit=1000"))
            .await,
    ];
    let failed: Vec<_> = reads.iter().filter(|r| !r.status.is_success()).collect();
    assert!(!failed.is_empty(), "a read across the garbled pages fails");
    for read in failed {
        assert_corrupt(read, &db.display().to_string());
    }
    let verify = test
        .call(
            Method::POST,
            "/v1/admin/ledger/verify",
            None,
            serde_json::json!({}).to_string(),
        )
        .await;
    assert_corrupt(&verify, &db.display().to_string());
    // An append may or may not cross the damage; if it does, it is named
    // the same way, never "retry later".
    let append = test
        .append(
            STREAM,
            serde_json::json!({ "events": [{ "type": "t", "payload": 1 }] }),
        )
        .await;
    if !append.status.is_success() {
        assert_corrupt(&append, &db.display().to_string());
    }
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

/// A 500 `database_corrupt` naming the file: not retryable, so no
/// `Retry-After`.
fn assert_corrupt(answer: &Answer, db: &str) {
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("database_corrupt")),
        "{}",
        answer.json
    );
    assert!(answer.headers.get(header::RETRY_AFTER).is_none());
    assert_eq!(answer.json["error"]["details"]["path"], db);
    assert_eq!(answer.json["error"]["details"]["retryable"], false);
    let message = answer.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("restore it from a backup"), "{message}");
}
