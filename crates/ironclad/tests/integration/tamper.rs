//! Guards the tamper-evident ledger (SPEC §3): the database's own triggers
//! reject UPDATE and DELETE on events; an edited payload is reported as an
//! `EventHash` mismatch at exactly the edited event; a careless truncation
//! is caught by the stream-head check (`StreamHead`), while a careful one
//! (head row fixed up too) still chains and fails only against an exported
//! head (`HeadMissing`); `INSERT OR REPLACE` is blocked on connections with
//! recursive triggers and caught by the hashes otherwise; a rewritten
//! tail that chains perfectly still fails against the exported head
//! (`HeadMismatch`); a payload whose stored type was changed from TEXT to
//! BLOB is reported at that event (`ColumnType`), not as a SQLite type error. Edits are made with a separate rusqlite connection to
//! the closed journal's file, as an attacker with file access would.

use crate::common;

use std::path::Path;

use ironclad::{
    ExpectedVersion, LedgerHead, MismatchKind, NewEvent, RecordedEvent, VerifyError, VerifyOptions,
};

const STREAMS: [&str; 3] = ["orders-1", "orders-2", "audit"];

/// Writes 30 events over three streams and shuts down; returns them.
async fn populate(dir: &Path) -> Vec<RecordedEvent> {
    let journal = common::open(common::fast_config(dir));
    for i in 0..10 {
        for s in STREAMS {
            let payload =
                serde_json::json!({ "n": i, "note": format!("entry {i} for {s}"), "ok": true });
            journal
                .append(
                    s,
                    ExpectedVersion::Any,
                    vec![NewEvent::from_value("entry.added", &payload)],
                )
                .await
                .expect("append");
        }
    }
    let events = common::read_everything(&journal);
    assert_eq!(events.len(), 30);
    common::verify_ok(&journal);
    common::shutdown(&journal).await;
    events
}

fn verify(dir: &Path, against: Option<LedgerHead>) -> Result<ironclad::VerifyReport, VerifyError> {
    let reader = ironclad::LogReader::open_sqlite(&common::config(dir)).expect("open reader");
    reader.verify(
        &VerifyOptions {
            stream: None,
            against,
        },
        &mut |_| {},
    )
}

fn mismatch(r: Result<ironclad::VerifyReport, VerifyError>) -> ironclad::LedgerMismatch {
    match r {
        Err(VerifyError::Mismatch(m)) => *m,
        other => panic!("expected a ledger mismatch, got {other:?}"),
    }
}

/// A connection to the closed journal's file with the UPDATE trigger
/// dropped, as an attacker with file access would have.
fn without_update_trigger(dir: &Path) -> rusqlite::Connection {
    let conn = common::raw_connection(dir);
    conn.execute_batch("DROP TRIGGER events_append_only_update")
        .unwrap();
    conn
}

/// The event of `stream` at `version`.
fn event_at(events: &[RecordedEvent], stream: &str, version: u64) -> RecordedEvent {
    events
        .iter()
        .find(|e| e.stream == stream && e.version == version)
        .expect("target event")
        .clone()
}

fn payload_at(conn: &rusqlite::Connection, position: u64) -> String {
    conn.query_row(
        "SELECT payload FROM events WHERE position = ?1",
        [position as i64],
        |r| r.get(0),
    )
    .expect("payload")
}

#[tokio::test]
async fn triggers_reject_update_and_delete() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let events = populate(&dir).await;
    let conn = common::raw_connection(&dir);
    let target = &events[4];
    let before = payload_at(&conn, target.position);

    let err = conn
        .execute(
            "UPDATE events SET payload = '{\"n\":999}' WHERE position = ?1",
            [target.position as i64],
        )
        .expect_err("UPDATE on events must be rejected");
    assert!(err.to_string().contains("append-only"), "message: {err}");

    let err = conn
        .execute(
            "DELETE FROM events WHERE position = ?1",
            [target.position as i64],
        )
        .expect_err("DELETE on events must be rejected");
    assert!(err.to_string().contains("append-only"), "message: {err}");
    let err = conn
        .execute("DELETE FROM events", [])
        .expect_err("bulk DELETE rejected");
    assert!(err.to_string().contains("append-only"), "message: {err}");

    let count: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 30, "nothing was deleted");
    assert_eq!(
        payload_at(&conn, target.position),
        before,
        "nothing was updated"
    );
    drop(conn);
    assert_eq!(
        verify(&dir, None).expect("untouched log verifies").checked,
        30
    );
}

#[tokio::test]
async fn edited_payload_is_reported_at_that_event() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let events = populate(&dir).await;
    let target = event_at(&events, "orders-2", 6);

    let conn = without_update_trigger(&dir);
    let original = payload_at(&conn, target.position);
    // Flip one bit of one ASCII letter of the note: still valid UTF-8 and JSON.
    let mut bytes = original.clone().into_bytes();
    let at = original.find("entry").expect("note text") + 1;
    bytes[at] ^= 0x01;
    let edited = String::from_utf8(bytes).expect("still UTF-8");
    assert_ne!(edited, original);
    serde_json::from_str::<serde_json::Value>(&edited).expect("still JSON");
    let changed = conn
        .execute(
            "UPDATE events SET payload = ?1 WHERE position = ?2",
            rusqlite::params![edited, target.position as i64],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let m = mismatch(verify(&dir, None));
    assert_eq!(m.kind, MismatchKind::EventHash, "{m}");
    assert_eq!(m.stream, target.stream);
    assert_eq!(m.version, target.version);
    assert_eq!(m.position, target.position);
    assert_eq!(
        m.actual,
        hex::encode(target.hash),
        "the stored hash is reported as found"
    );
    assert_ne!(m.expected, m.actual);
    let text = m.to_string();
    assert!(
        text.contains(&target.stream) && text.contains(&target.position.to_string()),
        "{text}"
    );

    // A stream-only check of that stream finds the same event; other streams pass.
    let reader = ironclad::LogReader::open_sqlite(&common::config(&dir)).unwrap();
    let only = |s: &str| {
        reader.verify(
            &VerifyOptions {
                stream: Some(s.to_string()),
                against: None,
            },
            &mut |_| {},
        )
    };
    let m2 = mismatch(only("orders-2"));
    assert_eq!(
        (m2.kind, m2.version, m2.position),
        (MismatchKind::EventHash, target.version, target.position)
    );
    assert_eq!(
        only("orders-1").expect("untouched stream verifies").checked,
        10
    );
}

#[tokio::test]
async fn edited_global_hash_is_reported() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let events = populate(&dir).await;
    let target = events[17].clone();
    let conn = without_update_trigger(&dir);
    let mut forged = target.global_hash;
    forged[0] ^= 0xff;
    conn.execute(
        "UPDATE events SET global_hash = ?1 WHERE position = ?2",
        rusqlite::params![forged.as_slice(), target.position as i64],
    )
    .unwrap();
    drop(conn);
    let m = mismatch(verify(&dir, None));
    assert_eq!(m.kind, MismatchKind::GlobalHash, "{m}");
    assert_eq!(
        (m.stream.as_str(), m.version, m.position),
        (target.stream.as_str(), target.version, target.position)
    );
    assert_eq!(m.expected, hex::encode(target.global_hash));
    assert_eq!(m.actual, hex::encode(forged));
}

#[tokio::test]
async fn truncation_and_rewrite_are_caught_only_against_an_exported_head() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let events = populate(&dir).await;
    let last = events.last().unwrap().clone();

    let reader = ironclad::LogReader::open_sqlite(&common::config(&dir)).unwrap();
    let head = reader.ledger_head().unwrap().expect("head");
    assert_eq!(head.position, last.position);
    assert_eq!(head.hash, last.global_hash);
    drop(reader);
    assert!(
        verify(&dir, Some(head)).is_ok(),
        "an intact log matches its own head"
    );

    // (c) Truncation: drop the trigger and delete the last event.
    let conn = common::raw_connection(&dir);
    conn.execute_batch("DROP TRIGGER events_append_only_delete")
        .unwrap();
    assert_eq!(
        conn.execute(
            "DELETE FROM events WHERE position = ?1",
            [last.position as i64]
        )
        .unwrap(),
        1
    );
    // A careless truncation leaves the `streams` head row ahead of the chain.
    let m = mismatch(verify(&dir, None));
    assert_eq!(m.kind, MismatchKind::StreamHead, "{m}");
    assert_eq!(
        (m.stream.as_str(), m.version),
        (last.stream.as_str(), last.version)
    );
    // The single-stream check sees it too: the head names a missing event.
    let reader = ironclad::LogReader::open_sqlite(&common::config(&dir)).unwrap();
    let only = VerifyOptions {
        stream: Some(last.stream.clone()),
        against: None,
    };
    let m = mismatch(reader.verify(&only, &mut |_| {}));
    assert_eq!(
        (m.kind, m.version),
        (MismatchKind::StreamHead, last.version),
        "{m}"
    );
    assert!(m.actual.contains("no such event"), "{m}");
    drop(reader);
    // A careful attacker fixes the head row too; then the chain alone
    // cannot tell, and only the exported head can.
    conn.execute(
        "UPDATE streams SET version = ?1, head_hash = ?2 WHERE name = ?3",
        rusqlite::params![
            (last.version - 1) as i64,
            last.prev_hash.as_slice(),
            last.stream
        ],
    )
    .unwrap();
    let report = verify(&dir, None).expect("a carefully truncated log still chains");
    assert_eq!(report.checked, 29);
    assert_eq!(report.head.map(|h| h.position), Some(last.position - 1));
    let m = mismatch(verify(&dir, Some(head)));
    assert_eq!(m.kind, MismatchKind::HeadMissing, "{m}");
    assert_eq!(m.position, head.position);
    assert_eq!(m.expected, hex::encode(head.hash));

    // (d) Rewrite: with the stream head consistent, let the journal append
    // a different event. It lands at the same position with a valid chain
    // but a different hash.
    drop(conn);
    let journal = common::open(common::fast_config(&dir));
    let r = journal
        .append(
            &last.stream,
            ExpectedVersion::Exact(last.version - 1),
            vec![NewEvent::new(
                "entry.added",
                r#"{"n":9,"note":"rewritten history","ok":false}"#,
            )],
        )
        .await
        .expect("append onto the rewritten tail");
    assert_eq!(
        r.events[0].position, last.position,
        "same position as the deleted event"
    );
    assert_eq!(
        r.events[0].version, last.version,
        "same version as the deleted event"
    );
    common::shutdown(&journal).await;

    let report = verify(&dir, None).expect("the rewritten log chains on its own");
    assert_eq!(report.checked, 30);
    let new_head = report.head.expect("head");
    assert_eq!(new_head.position, head.position);
    assert_ne!(new_head.hash, head.hash);
    let m = mismatch(verify(&dir, Some(head)));
    assert_eq!(m.kind, MismatchKind::HeadMismatch, "{m}");
    assert_eq!(
        (m.stream.as_str(), m.version, m.position),
        (last.stream.as_str(), last.version, last.position)
    );
    assert_eq!(m.expected, hex::encode(head.hash));
    assert_eq!(m.actual, hex::encode(new_head.hash));
}

/// `INSERT OR REPLACE` deletes the old row without firing DELETE triggers
/// unless `recursive_triggers` is on. Ironclad turns it on for its own
/// connections, so the append-only trigger stops a REPLACE there; a foreign
/// connection without it can slip a REPLACE past the triggers, and then the
/// hash chain is what catches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_or_replace_is_blocked_with_recursive_triggers_and_caught_without() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let events = populate(&dir).await;
    let victim = &events[3];
    let replace = "INSERT OR REPLACE INTO events (position, id, stream_id, version, type, op, \
        entity, payload, metadata, created_at, hash_version, prev_hash, hash, global_hash) \
        SELECT position, id, stream_id, version, type, op, entity, '{\"forged\":true}', metadata, \
        created_at, hash_version, prev_hash, hash, global_hash FROM events WHERE position = ?1";

    let guarded = common::raw_connection(&dir);
    guarded
        .execute_batch("PRAGMA recursive_triggers=ON")
        .unwrap();
    let err = guarded
        .execute(replace, [victim.position as i64])
        .expect_err("the delete trigger fires for REPLACE");
    assert!(err.to_string().contains("append-only"), "{err}");
    assert!(verify(&dir, None).is_ok(), "nothing changed");
    drop(guarded);

    let foreign = common::raw_connection(&dir);
    assert_eq!(
        foreign.execute(replace, [victim.position as i64]).unwrap(),
        1
    );
    drop(foreign);
    let m = mismatch(verify(&dir, None));
    assert_eq!(m.kind, MismatchKind::EventHash, "{m}");
    assert_eq!((m.position, m.version), (victim.position, victim.version));
}

/// A payload rewritten as a BLOB with the same bytes still hashes the same,
/// but Ironclad never writes one: verify must name the event, after
/// checking the events before it, and a plain read must say what is wrong.
#[tokio::test]
async fn payload_stored_as_blob_is_reported_at_that_event() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let events = populate(&dir).await;
    let target = event_at(&events, "audit", 4);
    let conn = without_update_trigger(&dir);
    let changed = conn
        .execute(
            "UPDATE events SET payload = CAST(payload AS BLOB) WHERE position = ?1",
            [target.position as i64],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let stored: String = conn
        .query_row(
            "SELECT typeof(payload) FROM events WHERE position = ?1",
            [target.position as i64],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, "blob");
    drop(conn);

    let m = mismatch(verify(&dir, None));
    assert_eq!(m.kind, MismatchKind::ColumnType, "{m}");
    assert_eq!(
        (m.stream.as_str(), m.version, m.position),
        (target.stream.as_str(), target.version, target.position)
    );
    assert_eq!(m.expected, "payload stored as TEXT");
    assert_eq!(m.actual, "payload stored as BLOB");

    let reader = ironclad::LogReader::open_sqlite(&common::config(&dir)).unwrap();
    let only = VerifyOptions {
        stream: Some(target.stream.clone()),
        against: None,
    };
    let m = mismatch(reader.verify(&only, &mut |_| {}));
    assert_eq!(
        (m.kind, m.version, m.position),
        (MismatchKind::ColumnType, target.version, target.position)
    );
    let err = reader
        .read(&target.stream, 1, 100)
        .expect_err("the edited row does not decode");
    let text = err.to_string();
    assert!(
        text.contains(&format!("position {}", target.position))
            && text.contains("`payload` holds BLOB"),
        "{text}"
    );
}

/// An edit before a BLOB payload is still the first mismatch reported,
/// even when both fall in one page of the verification.
#[tokio::test]
async fn an_earlier_edit_is_reported_before_a_blob_payload() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let events = populate(&dir).await;
    let (edited, blob) = (&events[5], &events[20]);
    let conn = without_update_trigger(&dir);
    conn.execute(
        "UPDATE events SET payload = '{\"forged\":true}' WHERE position = ?1",
        [edited.position as i64],
    )
    .unwrap();
    conn.execute(
        "UPDATE events SET payload = CAST(payload AS BLOB) WHERE position = ?1",
        [blob.position as i64],
    )
    .unwrap();
    drop(conn);
    let m = mismatch(verify(&dir, None));
    assert_eq!(
        (m.kind, m.position),
        (MismatchKind::EventHash, edited.position),
        "{m}"
    );
}
