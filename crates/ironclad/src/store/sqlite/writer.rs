//! The SQLite writer: commits a group of appends in one transaction.
//!
//! Happy path per event: one expected-version check against a cached stream
//! head, two SHA-256s, one INSERT. Idempotency is enforced by the UNIQUE index
//! on `events.id`: an INSERT that hits it rolls the transaction back, marks
//! every append whose ids exist or repeat within the batch for the slow path
//! (look the ids up, decide `AlreadyAppended` or `IdempotencyConflict`), and
//! redoes the batch: a batch of resends commits in two attempts. Each redo
//! marks at least one more append, so n + 1 attempts is a hard bound.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rusqlite::{Connection, ErrorCode, OptionalExtension};

use crate::error::StoreError;
use crate::expected::check_expected;
use crate::hash::{event_hash, global_hash, EventFields, HASH_VERSION};
use crate::model::{AppendResult, AppendStatus, EventAck, Hash, ZERO_HASH};
use crate::store::{AppendOutcome, AppendRejection, PreparedAppend, StoreWriter};
use ironclad_core::idempotency::{self, Decision, StoredEvent};

use super::check::DamageWatch;
use super::rows::{self, metadata_from, metadata_text, to_i64};

#[derive(Debug, Clone, Copy)]
struct StreamState {
    stream_id: i64,
    version: u64,
    hash: Hash,
}

/// The one write connection plus the committed heads it caches.
pub struct SqliteWriter {
    conn: Connection,
    /// Committed stream heads. Only updated after COMMIT succeeds.
    cache: HashMap<String, StreamState>,
    cache_entries_max: usize,
    /// Committed global head (position, global hash).
    global: (u64, Hash),
    /// Committed `created_at` of the last event: time never runs backwards
    /// along positions, across restarts and clock steps alike.
    last_created_us: i64,
    /// The connection's normal busy timeout, restored after a WAL checkpoint.
    busy_timeout: std::time::Duration,
    scratch: Vec<u8>,
    /// Names damage SQLite reports, shared with the store's readers.
    damage: Arc<DamageWatch>,
}

enum Attempt {
    Done(Vec<AppendOutcome>),
    Redo,
}

const INSERT_EVENT: &str = "INSERT INTO events (position, id, stream_id, version, type, op, \
     entity, payload, metadata, created_at, hash_version, prev_hash, hash, global_hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

fn is_id_collision(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, Some(msg)) => {
            f.code == ErrorCode::ConstraintViolation && msg.contains("events.id")
        }
        _ => false,
    }
}

impl SqliteWriter {
    pub(crate) fn new(
        conn: Connection,
        cache_entries_max: usize,
        busy_timeout: std::time::Duration,
        damage: Arc<DamageWatch>,
    ) -> Result<Self, StoreError> {
        let mut w = SqliteWriter {
            conn,
            cache: HashMap::new(),
            cache_entries_max: cache_entries_max.max(1),
            global: (0, ZERO_HASH),
            last_created_us: 0,
            busy_timeout,
            scratch: Vec::with_capacity(4096),
            damage,
        };
        w.reload().map_err(|e| w.damage.note(e))?;
        Ok(w)
    }

    /// Forgets cached heads and re-reads the global head: after any failed
    /// transaction the cache may be ahead of the database.
    fn reload(&mut self) -> Result<(), StoreError> {
        self.cache.clear();
        self.global = match rows::ledger_head(&self.conn)? {
            Some(h) => (h.position, h.hash),
            None => (0, ZERO_HASH),
        };
        self.last_created_us = self
            .conn
            .query_row(
                "SELECT created_at FROM events ORDER BY position DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        Ok(())
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit() {
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "rollback failed");
            }
        }
    }

    fn attempt(
        &mut self,
        batch: &[PreparedAppend],
        created_at_us: i64,
        slow: &mut [bool],
    ) -> Result<Attempt, StoreError> {
        let conn = &self.conn;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut touched: HashMap<&str, StreamState> = HashMap::new();
        let mut global = self.global;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut insert = conn.prepare_cached(INSERT_EVENT)?;
        for (i, cmd) in batch.iter().enumerate() {
            debug_assert_eq!(cmd.ids.len(), cmd.events.len());
            if slow[i] {
                if let Some(outcome) = existing_outcome(conn, cmd)? {
                    outcomes.push(outcome);
                    continue;
                }
            }
            let known = match touched.get(cmd.stream.as_str()) {
                Some(s) => Some(*s),
                None => match self.cache.get(&cmd.stream) {
                    Some(s) => Some(*s),
                    None => load_stream(conn, &cmd.stream)?,
                },
            };
            let actual = known.map_or(0, |s| s.version);
            if let Err(w) = check_expected(cmd.expected, actual) {
                // Idempotency comes before the version check: a resend of an
                // append that already committed finds its stream moved on by
                // that very append, and must get `AlreadyAppended` (or a
                // conflict), not `WrongExpectedVersion`. Only this rejection
                // path pays for the id lookup.
                let known = if slow[i] {
                    None
                } else {
                    existing_outcome(conn, cmd)?
                };
                outcomes.push(known.unwrap_or(Err(AppendRejection::WrongExpectedVersion(w))));
                continue;
            }
            let mut state = match known {
                Some(s) => s,
                None => create_stream(conn, &cmd.stream)?,
            };
            let head = (&mut state, &mut global);
            let acks =
                match insert_events(&mut insert, &mut self.scratch, cmd, head, created_at_us)? {
                    Inserted::All(acks) => acks,
                    // Already decided by its ids and still colliding: not a
                    // resend, so the constraint error is the answer.
                    Inserted::IdCollision(e) if slow[i] => return Err(e.into()),
                    Inserted::IdCollision(_) => {
                        drop(insert);
                        self.rollback();
                        slow[i] = true;
                        mark_collisions(conn, batch, slow)?;
                        return Ok(Attempt::Redo);
                    }
                };
            touched.insert(cmd.stream.as_str(), state);
            outcomes.push(Ok(AppendResult {
                status: AppendStatus::Appended,
                events: acks,
            }));
        }
        drop(insert);
        let mut head = conn.prepare_cached(
            "UPDATE streams SET version = ?2, head_hash = ?3 WHERE stream_id = ?1",
        )?;
        for s in touched.values() {
            head.execute(rusqlite::params![
                s.stream_id,
                to_i64(s.version),
                s.hash.as_slice()
            ])?;
        }
        drop(head);
        conn.execute_batch("COMMIT")?;
        // Committed: now, and only now, the cache may move forward.
        if self.cache.len() + touched.len() > self.cache_entries_max {
            self.cache.clear();
        }
        for (name, s) in touched {
            self.cache.insert(name.to_string(), s);
        }
        self.global = global;
        Ok(Attempt::Done(outcomes))
    }
}

/// What inserting one append's events did.
enum Inserted {
    /// Every event is in, acknowledged in order.
    All(Vec<EventAck>),
    /// An event id is already stored (the unique index refused it); the
    /// transaction must be rolled back and the append decided by its ids.
    IdCollision(rusqlite::Error),
}

/// Inserts `cmd`'s events after `head` (the stream's and the global head),
/// chaining both hashes, and moves `head` forward event by event.
fn insert_events(
    insert: &mut rusqlite::CachedStatement<'_>,
    scratch: &mut Vec<u8>,
    cmd: &PreparedAppend,
    head: (&mut StreamState, &mut (u64, Hash)),
    created_at_us: i64,
) -> Result<Inserted, StoreError> {
    let (state, global) = head;
    let mut acks = Vec::with_capacity(cmd.events.len());
    for (id, ev) in cmd.ids.iter().zip(&cmd.events) {
        let version = state.version + 1;
        let position = global.0 + 1;
        let fields = EventFields {
            id,
            stream: &cmd.stream,
            version,
            position,
            created_at_us,
            event_type: &ev.event_type,
            op: ev.op,
            entity: ev.entity.as_deref(),
            payload: &ev.payload,
            metadata: &ev.metadata,
        };
        let h = event_hash(HASH_VERSION, &state.hash, &fields, scratch)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let g = global_hash(HASH_VERSION, &global.1, position, &h)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let res = insert.execute(rusqlite::params![
            to_i64(position),
            id.as_bytes().as_slice(),
            state.stream_id,
            to_i64(version),
            ev.event_type,
            ev.op.code(),
            ev.entity,
            ev.payload,
            metadata_text(&ev.metadata),
            created_at_us,
            HASH_VERSION,
            state.hash.as_slice(),
            h.as_slice(),
            g.as_slice(),
        ]);
        match res {
            Ok(_) => {}
            Err(e) if is_id_collision(&e) => return Ok(Inserted::IdCollision(e)),
            Err(e) => return Err(e.into()),
        }
        assert!(position > global.0 && version > state.version);
        state.version = version;
        state.hash = h;
        *global = (position, g);
        acks.push(EventAck {
            id: *id,
            version,
            position,
        });
    }
    Ok(Inserted::All(acks))
}

/// After a collision: marks, in one pass, every append whose ids already
/// exist or repeat an id of an earlier append in the batch, so a batch of
/// resends converges in two attempts instead of one redo per resend.
fn mark_collisions(
    conn: &Connection,
    batch: &[PreparedAppend],
    slow: &mut [bool],
) -> Result<(), StoreError> {
    let mut exists = conn.prepare_cached("SELECT 1 FROM events WHERE id = ?1")?;
    let mut seen = std::collections::HashSet::new();
    for (cmd, slow) in batch.iter().zip(slow.iter_mut()) {
        for id in &cmd.ids {
            let repeated = !seen.insert(*id);
            if !*slow && (repeated || exists.exists([id.as_bytes().as_slice()])?) {
                *slow = true;
            }
        }
    }
    Ok(())
}

fn load_stream(conn: &Connection, name: &str) -> Result<Option<StreamState>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT stream_id, version, head_hash FROM streams WHERE name = ?1")?;
    let row: Option<(i64, i64, Vec<u8>)> = stmt
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    match row {
        None => Ok(None),
        Some((stream_id, version, hash)) => Ok(Some(StreamState {
            stream_id,
            version: u64::try_from(version).map_err(|_| {
                StoreError::Corrupt(format!("stream {name:?} has version {version}"))
            })?,
            hash: rows::hash_from(&hash, "head_hash")?,
        })),
    }
}

fn create_stream(conn: &Connection, name: &str) -> Result<StreamState, StoreError> {
    let mut stmt =
        conn.prepare_cached("INSERT INTO streams (name, version, head_hash) VALUES (?1, 0, ?2)")?;
    stmt.execute(rusqlite::params![name, ZERO_HASH.as_slice()])?;
    Ok(StreamState {
        stream_id: conn.last_insert_rowid(),
        version: 0,
        hash: ZERO_HASH,
    })
}

/// The slow path: decides an append whose ids collided. `None` when none of
/// its ids exist after all (the collision was resolved by a rollback).
/// What the store holds under an append's ids, decided by the one
/// idempotency rule ([`idempotency::decide`]): `None` when none is stored.
fn existing_outcome(
    conn: &Connection,
    cmd: &PreparedAppend,
) -> Result<Option<AppendOutcome>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.name, e.type, e.op, e.entity, e.payload, e.metadata, e.version, e.position
         FROM events e JOIN streams s ON s.stream_id = e.stream_id WHERE e.id = ?1",
    )?;
    let mut stored = Vec::with_capacity(cmd.ids.len());
    for id in &cmd.ids {
        let row = stmt
            .query_row([id.as_bytes().as_slice()], |r| {
                Ok((
                    StoredEvent {
                        stream: r.get(0)?,
                        event_type: r.get(1)?,
                        op_code: r.get(2)?,
                        entity: r.get(3)?,
                        payload: r.get(4)?,
                        metadata: BTreeMap::new(),
                        version: r.get(6)?,
                        position: r.get(7)?,
                    },
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .optional()?;
        let row = match row {
            Some((event, metadata)) => Some(StoredEvent {
                metadata: metadata_from(metadata)?,
                ..event
            }),
            None => None,
        };
        stored.push(row);
    }
    let decision =
        idempotency::decide(cmd, &stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(match decision {
        Decision::New => None,
        Decision::Resend(result) => Some(Ok(result)),
        Decision::Conflict(rejection) => Some(Err(rejection)),
    })
}

impl StoreWriter for SqliteWriter {
    fn commit(
        &mut self,
        batch: &[PreparedAppend],
        created_at_us: i64,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.commit_batch(batch, created_at_us)
            .map_err(|e| self.damage.note(e))
    }

    fn wal_checkpoint(&mut self) -> Result<(), StoreError> {
        self.truncate_wal().map_err(|e| self.damage.note(e))
    }

    fn apply_state(
        &mut self,
        op: &crate::store::delivery::StateWrite,
        now_us: i64,
    ) -> Result<crate::store::delivery::StateApplied, StoreError> {
        super::delivery::apply(&self.conn, op, now_us).map_err(|e| self.damage.note(e))
    }

    fn probe_write(&mut self) -> Option<Result<(), StoreError>> {
        let result = super::probe::probe_write(&self.conn).map_err(|e| {
            self.rollback();
            self.damage.note(e)
        });
        Some(result)
    }
}

impl SqliteWriter {
    /// The write connection, for tests that set limits on it.
    #[cfg(test)]
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl SqliteWriter {
    fn commit_batch(
        &mut self,
        batch: &[PreparedAppend],
        created_at_us: i64,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let created_at_us = created_at_us.max(self.last_created_us);
        let mut slow = vec![false; batch.len()];
        for _ in 0..=batch.len() {
            match self.attempt(batch, created_at_us, &mut slow) {
                Ok(Attempt::Done(outcomes)) => {
                    assert_eq!(outcomes.len(), batch.len());
                    self.last_created_us = created_at_us;
                    return Ok(outcomes);
                }
                Ok(Attempt::Redo) => continue,
                Err(e) => {
                    self.rollback();
                    self.reload()?;
                    return Err(e);
                }
            }
        }
        // Unreachable by construction: each redo marks at least one more
        // append slow, and usually all of them at once (`mark_collisions`).
        self.rollback();
        self.reload()?;
        Err(StoreError::Corrupt("group commit did not converge".into()))
    }

    fn truncate_wal(&mut self) -> Result<(), StoreError> {
        // No busy wait: TRUNCATE waits for readers, and this runs on the
        // writer thread, so waiting would stall every append behind it.
        // A blocked WAL checkpoint reports Busy at once instead.
        self.conn.busy_timeout(std::time::Duration::ZERO)?;
        let outcome = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            });
        self.conn.busy_timeout(self.busy_timeout)?;
        let (busy, _log, _done) = outcome?;
        if busy != 0 {
            return Err(StoreError::Busy(
                "the WAL could not be truncated because readers still hold old snapshots; retry once they finish".into(),
            ));
        }
        Ok(())
    }
}
