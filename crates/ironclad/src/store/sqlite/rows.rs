//! Row decoding for the SQLite backend: columns to envelope types.
//!
//! A row that does not decode (bad id length, unknown op code) is reported as
//! `StoreError::Corrupt`, and a column holding another storage class than
//! Ironclad writes (a BLOB payload) as `StoreError::ColumnType` naming the
//! event; never a panic: the file may have been edited.

use std::collections::BTreeMap;

use rusqlite::types::{FromSql, Type};
use rusqlite::{Connection, OptionalExtension, Row};
use uuid::Uuid;

use crate::error::{ColumnTypeError, StoreError};
use crate::model::{Hash, LedgerHead, Op, RecordedEvent, StreamHead};

/// The event projection every read uses; callers append `WHERE …`.
pub(crate) const SELECT_EVENTS: &str = "SELECT e.position, e.id, s.name, e.version, e.type, e.op, \
     e.entity, e.payload, e.metadata, e.created_at, e.hash_version, e.prev_hash, e.hash, \
     e.global_hash FROM events e JOIN streams s ON s.stream_id = e.stream_id";

/// Positions and versions are u64 in the API and INTEGER (i64) in SQLite;
/// values past i64::MAX cannot exist in the table, so saturate.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A LIMIT value: SQLite treats negative as unlimited, so clamp.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what} {v}")))
}

pub(crate) fn hash_from(bytes: &[u8], what: &str) -> Result<Hash, StoreError> {
    Hash::try_from(bytes)
        .map_err(|_| StoreError::Corrupt(format!("{what} is {} bytes, expected 32", bytes.len())))
}

/// Serializes metadata for storage: `NULL` when empty, else a JSON object with
/// sorted keys (deterministic, so equal maps give equal text).
pub(crate) fn metadata_text(md: &BTreeMap<String, String>) -> Option<String> {
    if md.is_empty() {
        None
    } else {
        serde_json::to_string(md).ok()
    }
}

pub(crate) fn metadata_from(text: Option<String>) -> Result<BTreeMap<String, String>, StoreError> {
    match text {
        None => Ok(BTreeMap::new()),
        Some(t) => serde_json::from_str(&t)
            .map_err(|e| StoreError::Corrupt(format!("metadata is not a string map: {e}"))),
    }
}

/// The columns of [`SELECT_EVENTS`], in order, with the storage class
/// Ironclad writes in each (`entity` and `metadata` may also be NULL).
const EVENT_COLUMNS: [(&str, &str); 14] = [
    ("position", "INTEGER"),
    ("id", "BLOB"),
    ("stream", "TEXT"),
    ("version", "INTEGER"),
    ("type", "TEXT"),
    ("op", "INTEGER"),
    ("entity", "TEXT"),
    ("payload", "TEXT"),
    ("metadata", "TEXT"),
    ("created_at", "INTEGER"),
    ("hash_version", "INTEGER"),
    ("prev_hash", "BLOB"),
    ("hash", "BLOB"),
    ("global_hash", "BLOB"),
];

/// Reads the columns of one event row, turning a value of the wrong storage
/// class into a [`ColumnTypeError`] that names the event, as far as its
/// identity has decoded, instead of SQLite's bare type error.
struct EventColumns<'a, 'r> {
    row: &'a Row<'r>,
    position: u64,
    stream: Option<String>,
    version: Option<u64>,
}

impl EventColumns<'_, '_> {
    fn get<T: FromSql>(&self, idx: usize) -> Result<T, StoreError> {
        self.row.get(idx).map_err(|e| match e {
            rusqlite::Error::InvalidColumnType(_, _, found) => {
                let (column, expected) = EVENT_COLUMNS[idx];
                StoreError::ColumnType(Box::new(ColumnTypeError {
                    position: self.position,
                    stream: self.stream.clone(),
                    version: self.version,
                    column,
                    expected,
                    found: storage_class(found),
                }))
            }
            other => other.into(),
        })
    }
}

fn storage_class(t: Type) -> &'static str {
    match t {
        Type::Null => "NULL",
        Type::Integer => "INTEGER",
        Type::Real => "REAL",
        Type::Text => "TEXT",
        Type::Blob => "BLOB",
    }
}

/// Decodes one row of [`SELECT_EVENTS`].
pub(crate) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Result<RecordedEvent, StoreError>> {
    // `position` is the rowid alias, which SQLite keeps an INTEGER.
    let position: i64 = row.get(0)?;
    Ok(decode_event(row, position))
}

fn decode_event(row: &Row<'_>, position: i64) -> Result<RecordedEvent, StoreError> {
    let position = to_u64(position, "position")?;
    let mut cols = EventColumns {
        row,
        position,
        stream: None,
        version: None,
    };
    cols.stream = Some(cols.get(2)?);
    cols.version = Some(to_u64(cols.get(3)?, "version")?);
    let id: Vec<u8> = cols.get(1)?;
    let op: i64 = cols.get(5)?;
    let hash_version: i64 = cols.get(10)?;
    let (prev_hash, hash, global_hash): (Vec<u8>, Vec<u8>, Vec<u8>) =
        (cols.get(11)?, cols.get(12)?, cols.get(13)?);
    Ok(RecordedEvent {
        id: Uuid::from_slice(&id).map_err(|_| {
            StoreError::Corrupt(format!("event id at position {position} is not 16 bytes"))
        })?,
        version: cols.version.unwrap_or_default(),
        position,
        event_type: cols.get(4)?,
        op: u8::try_from(op)
            .ok()
            .and_then(Op::from_code)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("unknown op code {op} at position {position}"))
            })?,
        entity: cols.get(6)?,
        payload: cols.get(7)?,
        metadata: metadata_from(cols.get(8)?)?,
        created_at_us: cols.get(9)?,
        hash_version: u32::try_from(hash_version)
            .map_err(|_| StoreError::Corrupt(format!("bad hash_version {hash_version}")))?,
        prev_hash: hash_from(&prev_hash, "prev_hash")?,
        hash: hash_from(&hash, "hash")?,
        global_hash: hash_from(&global_hash, "global_hash")?,
        stream: cols.stream.take().unwrap_or_default(),
    })
}

/// Flattens decoded rows, stopping at the first error.
pub(crate) fn collect<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T, StoreError>>>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

/// Decodes `SELECT name, version, head_hash FROM streams`.
pub(crate) fn head_from_row(row: &Row<'_>) -> rusqlite::Result<Result<StreamHead, StoreError>> {
    let stream: String = row.get(0)?;
    let version: i64 = row.get(1)?;
    let hash: Vec<u8> = row.get(2)?;
    Ok((|| {
        Ok(StreamHead {
            stream,
            version: to_u64(version, "stream version")?,
            hash: hash_from(&hash, "head_hash")?,
        })
    })())
}

/// The last event's position and global hash.
pub(crate) fn ledger_head(c: &Connection) -> Result<Option<LedgerHead>, StoreError> {
    let row: Option<(i64, Vec<u8>)> = c
        .query_row(
            "SELECT position, global_hash FROM events ORDER BY position DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        None => Ok(None),
        Some((p, h)) => Ok(Some(LedgerHead {
            position: to_u64(p, "position")?,
            hash: hash_from(&h, "global_hash")?,
        })),
    }
}
