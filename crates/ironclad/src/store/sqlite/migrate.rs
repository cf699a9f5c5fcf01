//! Schema migrations for SQLite (SPEC §8 "Migrations").
//!
//! Each step runs under `BEGIN IMMEDIATE`, re-reads the version inside that
//! transaction (so two processes racing to migrate cannot both apply a step),
//! and commits its DDL together with its version row. A database newer than
//! this binary is refused. Version 0 is the legacy pre-versioning layout (a
//! bare `events` table without hashes); step 1 carries its rows over.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use uuid::Uuid;

use crate::error::{MigrateError, StoreError};
use crate::hash::{event_hash, global_hash, EventFields, HASH_VERSION};
use crate::model::{Hash, Op, ZERO_HASH};

use super::rows::metadata_text;

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = 3;

struct Migration {
    to: u32,
    name: &'static str,
    apply: fn(&Connection) -> Result<(), StoreError>,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        to: 1,
        name: "ledger schema: streams, hash-chained events, append-only triggers",
        apply: v1_ledger_schema,
    },
    Migration {
        to: 2,
        name: "delivery state: sink cursors, retry rows, dead-letter queue",
        apply: v2_delivery_schema,
    },
    Migration {
        to: 3,
        name: "consumer checkpoints: one monotonic position per named consumer",
        apply: v3_consumer_checkpoints,
    },
];

/// What `ironclad migrate --status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationStatus {
    /// The database's version (0 = empty or legacy).
    pub db_version: u32,
    /// This binary's version.
    pub binary_version: u32,
    /// Whether a legacy v0 `events` table is present.
    pub legacy_v0: bool,
    /// Applied steps: (version, name, applied_at_us).
    pub applied: Vec<(u32, String, i64)>,
    /// Steps this binary would apply.
    pub pending: Vec<(u32, String)>,
}

pub(crate) fn table_exists(c: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

fn read_version(c: &Connection) -> Result<u32, StoreError> {
    if !table_exists(c, "schema_migrations")? {
        return Ok(0);
    }
    let v: Option<i64> = c.query_row("SELECT max(version) FROM schema_migrations", [], |r| {
        r.get(0)
    })?;
    let v = v.unwrap_or(0);
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("schema version {v} out of range")))
}

fn is_legacy_v0(c: &Connection) -> Result<bool, StoreError> {
    Ok(!table_exists(c, "schema_migrations")? && table_exists(c, "events")?)
}

/// Reports the schema state without changing anything.
pub fn schema_status(c: &Connection) -> Result<MigrationStatus, StoreError> {
    let db_version = read_version(c)?;
    let mut applied = Vec::new();
    if table_exists(c, "schema_migrations")? {
        let mut stmt =
            c.prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)))?;
        for row in rows {
            let (v, name, at) = row?;
            applied.push((u32::try_from(v).unwrap_or(u32::MAX), name, at));
        }
    }
    let pending = MIGRATIONS
        .iter()
        .filter(|m| m.to > db_version)
        .map(|m| (m.to, m.name.to_string()))
        .collect();
    Ok(MigrationStatus {
        db_version,
        binary_version: SCHEMA_VERSION,
        legacy_v0: is_legacy_v0(c)?,
        applied,
        pending,
    })
}

/// Brings the database to [`SCHEMA_VERSION`], one transaction per step.
/// Returns the versions applied (empty when already current). Safe to re-run.
pub fn migrate(c: &mut Connection) -> Result<Vec<u32>, MigrateError> {
    let mut applied = Vec::new();
    loop {
        c.execute_batch("BEGIN IMMEDIATE")
            .map_err(StoreError::from)?;
        match step(c) {
            Ok(Some(v)) => {
                c.execute_batch("COMMIT").map_err(|e| MigrateError::Step {
                    to: v,
                    source: e.into(),
                })?;
                tracing::info!(version = v, "applied schema migration");
                applied.push(v);
            }
            Ok(None) => {
                c.execute_batch("COMMIT").map_err(StoreError::from)?;
                return Ok(applied);
            }
            Err(e) => {
                let _ = c.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
}

/// Inside an open transaction: applies the next step, if any.
fn step(c: &Connection) -> Result<Option<u32>, MigrateError> {
    let current = read_version(c)?;
    if current > SCHEMA_VERSION {
        return Err(MigrateError::DatabaseNewer {
            db_version: current,
            binary_version: SCHEMA_VERSION,
        });
    }
    let Some(m) = MIGRATIONS.iter().find(|m| m.to == current + 1) else {
        return Ok(None);
    };
    (m.apply)(c).map_err(|source| MigrateError::Step { to: m.to, source })?;
    c.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
        rusqlite::params![m.to, m.name, crate::clock::now_us()],
    )
    .map_err(|e| MigrateError::Step {
        to: m.to,
        source: e.into(),
    })?;
    Ok(Some(m.to))
}

fn v1_ledger_schema(c: &Connection) -> Result<(), StoreError> {
    let legacy = is_legacy_v0(c)?;
    if legacy {
        c.execute_batch("ALTER TABLE events RENAME TO legacy_v0_events")?;
    }
    c.execute_batch(
        "CREATE TABLE schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         );
         CREATE TABLE streams (
             stream_id INTEGER PRIMARY KEY,
             name      TEXT NOT NULL UNIQUE,
             version   INTEGER NOT NULL,
             head_hash BLOB NOT NULL
         );
         CREATE TABLE events (
             position     INTEGER PRIMARY KEY,
             id           BLOB NOT NULL UNIQUE,
             stream_id    INTEGER NOT NULL,
             version      INTEGER NOT NULL,
             type         TEXT NOT NULL,
             op           INTEGER NOT NULL,
             entity       TEXT,
             payload      TEXT NOT NULL,
             metadata     TEXT,
             created_at   INTEGER NOT NULL,
             hash_version INTEGER NOT NULL,
             prev_hash    BLOB NOT NULL,
             hash         BLOB NOT NULL,
             global_hash  BLOB NOT NULL,
             UNIQUE (stream_id, version)
         );
         CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
         BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE is not allowed'); END;
         CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
         BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE is not allowed'); END;",
    )?;
    if legacy {
        copy_legacy_v0(c)?;
        c.execute_batch("DROP TABLE legacy_v0_events")?;
    }
    Ok(())
}

/// Copies legacy rows into the hashed layout, in their original order,
/// keeping ids, streams, versions, types, payloads and times. Any row that
/// cannot be carried over fails the step (and rolls it back) with its seq.
fn copy_legacy_v0(c: &Connection) -> Result<(), StoreError> {
    let mut read = c.prepare(
        "SELECT seq, id, stream, version, type, payload, created_at
         FROM legacy_v0_events ORDER BY seq",
    )?;
    let mut insert_stream =
        c.prepare("INSERT INTO streams (name, version, head_hash) VALUES (?1, ?2, ?3)")?;
    let mut update_stream =
        c.prepare("UPDATE streams SET version = ?2, head_hash = ?3 WHERE stream_id = ?1")?;
    let mut insert_event = c.prepare(
        "INSERT INTO events (position, id, stream_id, version, type, op, entity, payload,
                             metadata, created_at, hash_version, prev_hash, hash, global_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    let mut streams: HashMap<String, (i64, u64, Hash)> = HashMap::new();
    let mut global = (0u64, ZERO_HASH);
    let mut scratch = Vec::new();
    let empty = Default::default();
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let id_text: String = r.get(1)?;
        let stream: String = r.get(2)?;
        let version: i64 = r.get(3)?;
        let event_type: String = r.get(4)?;
        let payload: String = r.get(5)?;
        let created_at_ms: i64 = r.get(6)?;
        let bad = |what: String| StoreError::Corrupt(format!("legacy v0 row seq {seq}: {what}"));
        let id = Uuid::parse_str(&id_text)
            .map_err(|e| bad(format!("id {id_text:?} is not a UUID: {e}")))?;
        let position = u64::try_from(seq).map_err(|_| bad("negative seq".into()))?;
        if position <= global.0 {
            return Err(bad("seq not increasing".into()));
        }
        let entry = match streams.get(&stream) {
            Some(e) => *e,
            None => {
                insert_stream.execute(rusqlite::params![stream, 0, ZERO_HASH.as_slice()])?;
                (c.last_insert_rowid(), 0, ZERO_HASH)
            }
        };
        let (stream_id, last_version, last_hash) = entry;
        if version != i64::try_from(last_version + 1).unwrap_or(i64::MAX) {
            return Err(bad(format!(
                "stream {stream:?} jumps from version {last_version} to {version}"
            )));
        }
        let version = last_version + 1;
        let created_at_us = created_at_ms.saturating_mul(1000);
        let fields = EventFields {
            id: &id,
            stream: &stream,
            version,
            position,
            created_at_us,
            event_type: &event_type,
            op: Op::Event,
            entity: None,
            payload: &payload,
            metadata: &empty,
        };
        let h = event_hash(HASH_VERSION, &last_hash, &fields, &mut scratch)
            .map_err(|e| bad(e.to_string()))?;
        let g =
            global_hash(HASH_VERSION, &global.1, position, &h).map_err(|e| bad(e.to_string()))?;
        insert_event.execute(rusqlite::params![
            seq,
            id.as_bytes().as_slice(),
            stream_id,
            version as i64,
            event_type,
            Op::Event.code(),
            payload,
            metadata_text(&empty),
            created_at_us,
            HASH_VERSION,
            last_hash.as_slice(),
            h.as_slice(),
            g.as_slice()
        ])?;
        streams.insert(stream, (stream_id, version, h));
        global = (position, g);
    }
    for (stream_id, version, hash) in streams.values() {
        update_stream.execute(rusqlite::params![
            stream_id,
            *version as i64,
            hash.as_slice()
        ])?;
    }
    let legacy_count: i64 =
        c.query_row("SELECT count(*) FROM legacy_v0_events", [], |r| r.get(0))?;
    let new_count: i64 = c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    if legacy_count != new_count {
        return Err(StoreError::Corrupt(format!(
            "legacy migration copied {new_count} of {legacy_count} rows"
        )));
    }
    Ok(())
}

/// Step 2: delivery state (SPEC §4, `docs/design.md` "Delivery state").
/// O(1) per delivered event: a cursor per sink, rows only for events that
/// failed at least once (or wait behind one that did) and for dead letters.
fn v2_delivery_schema(c: &Connection) -> Result<(), StoreError> {
    c.execute_batch(
        "CREATE TABLE sinks (
            sink_id          INTEGER PRIMARY KEY,
            name             TEXT NOT NULL UNIQUE,
            cursor_position  INTEGER NOT NULL DEFAULT 0,
            delivered_total  INTEGER NOT NULL DEFAULT 0,
            archived_total   INTEGER NOT NULL DEFAULT 0,
            circuit_override TEXT,
            updated_at       INTEGER NOT NULL
        );
        CREATE TABLE delivery_retries (
            sink_id          INTEGER NOT NULL REFERENCES sinks(sink_id),
            position         INTEGER NOT NULL,
            lane             TEXT NOT NULL,
            attempts         INTEGER NOT NULL,
            first_failure_at INTEGER NOT NULL,
            next_attempt_at  INTEGER NOT NULL,
            last_error       TEXT NOT NULL,
            PRIMARY KEY (sink_id, position)
        ) WITHOUT ROWID;
        CREATE TABLE dlq (
            sink_id          INTEGER NOT NULL REFERENCES sinks(sink_id),
            position         INTEGER NOT NULL,
            event_id         BLOB NOT NULL,
            lane             TEXT NOT NULL,
            attempts         INTEGER NOT NULL,
            first_failure_at INTEGER NOT NULL,
            last_failure_at  INTEGER NOT NULL,
            last_error       TEXT NOT NULL,
            reason           TEXT NOT NULL
                CHECK (reason IN ('max_attempts', 'permanent', 'conflict', 'expired')),
            PRIMARY KEY (sink_id, position)
        ) WITHOUT ROWID;
        CREATE INDEX dlq_by_age ON dlq (sink_id, last_failure_at);",
    )?;
    Ok(())
}

/// Step 3: named consumer checkpoints (SPEC §6 subscriptions). One row per
/// consumer; the writer only ever moves `position` forward
/// (`StateWrite::SetCheckpoints`). `updated_at` is µs since the epoch.
fn v3_consumer_checkpoints(c: &Connection) -> Result<(), StoreError> {
    c.execute_batch(
        "CREATE TABLE consumers (
            name       TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 128),
            position   INTEGER NOT NULL CHECK (position >= 0),
            updated_at INTEGER NOT NULL
        ) WITHOUT ROWID;",
    )?;
    Ok(())
}
