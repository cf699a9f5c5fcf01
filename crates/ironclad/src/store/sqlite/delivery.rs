//! SQL for delivery state (schema v2) and consumer checkpoints (schema v3):
//! reads on pooled readers, writes on the single writer connection, each
//! write in one `BEGIN IMMEDIATE` transaction. Row shapes:
//! [`crate::store::delivery`].

use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use crate::error::StoreError;
use crate::store::delivery::{
    CheckpointUpdate, ConsumerRow, DlqFilter, DlqReason, DlqRow, DlqStats, RetryRow, RetryStats,
    Settle, SinkRow, StateApplied, StateWrite, StreamBacklog, STATE_WRITE_ROWS_MAX,
};

use super::rows::{collect, limit, to_i64};

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} is negative: {v}")))
}

fn to_u32(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} out of range: {v}")))
}

fn sink_from_row(r: &Row<'_>) -> rusqlite::Result<Result<SinkRow, StoreError>> {
    let (id, name, cursor, delivered, archived, ov): (i64, String, i64, i64, i64, Option<String>) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    );
    Ok((|| {
        Ok(SinkRow {
            sink_id: id,
            name,
            cursor_position: to_u64(cursor, "sink cursor")?,
            delivered_total: to_u64(delivered, "delivered_total")?,
            archived_total: to_u64(archived, "archived_total")?,
            circuit_override: ov,
        })
    })())
}

fn retry_from_row(r: &Row<'_>) -> rusqlite::Result<Result<RetryRow, StoreError>> {
    let (pos, lane, attempts, first, next, err): (i64, String, i64, i64, i64, String) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    );
    Ok((|| {
        Ok(RetryRow {
            position: to_u64(pos, "retry position")?,
            lane,
            attempts: to_u32(attempts, "retry attempts")?,
            first_failure_unix_ms: to_u64(first, "first_failure_at")?,
            next_attempt_unix_ms: to_u64(next, "next_attempt_at")?,
            last_error: err,
        })
    })())
}

const DLQ_COLUMNS: &str = "d.sink_id, d.position, d.event_id, d.lane, d.attempts, \
     d.first_failure_at, d.last_failure_at, d.last_error, d.reason";

fn dlq_from_row(r: &Row<'_>) -> rusqlite::Result<Result<DlqRow, StoreError>> {
    let sink_id: i64 = r.get(0)?;
    let pos: i64 = r.get(1)?;
    let id: Vec<u8> = r.get(2)?;
    let lane: String = r.get(3)?;
    let attempts: i64 = r.get(4)?;
    let first: i64 = r.get(5)?;
    let last: i64 = r.get(6)?;
    let err: String = r.get(7)?;
    let reason: String = r.get(8)?;
    Ok((|| {
        Ok(DlqRow {
            sink_id,
            position: to_u64(pos, "dlq position")?,
            event_id: Uuid::from_slice(&id)
                .map_err(|_| StoreError::Corrupt(format!("dlq event id at position {pos}")))?,
            lane,
            attempts: to_u32(attempts, "dlq attempts")?,
            first_failure_unix_ms: to_u64(first, "dlq first_failure_at")?,
            last_failure_unix_ms: to_u64(last, "dlq last_failure_at")?,
            last_error: err,
            reason: DlqReason::parse(&reason)
                .ok_or_else(|| StoreError::Corrupt(format!("dlq reason {reason:?}")))?,
        })
    })())
}

/// Every registered sink, by id.
pub(crate) fn sinks(c: &Connection) -> Result<Vec<SinkRow>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT sink_id, name, cursor_position, delivered_total, archived_total, circuit_override
         FROM sinks ORDER BY sink_id",
    )?;
    let rows = stmt.query_map([], sink_from_row)?;
    collect(rows)
}

/// Up to `n` retry rows of a sink with position > `after`, by position.
pub(crate) fn retry_rows(
    c: &Connection,
    sink_id: i64,
    after: u64,
    n: usize,
) -> Result<Vec<RetryRow>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT position, lane, attempts, first_failure_at, next_attempt_at, last_error
         FROM delivery_retries WHERE sink_id = ?1 AND position > ?2 ORDER BY position LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![sink_id, to_i64(after), limit(n)], retry_from_row)?;
    collect(rows)
}

/// Retry-row totals of a sink.
pub(crate) fn retry_stats(c: &Connection, sink_id: i64) -> Result<RetryStats, StoreError> {
    let (rows, failed, next): (i64, Option<i64>, Option<i64>) = c.query_row(
        "SELECT count(*), sum(attempts > 0), min(next_attempt_at)
         FROM delivery_retries WHERE sink_id = ?1",
        [sink_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(RetryStats {
        rows: to_u64(rows, "retry count")?,
        failed: to_u64(failed.unwrap_or(0), "retry count")?,
        next_due_unix_ms: next.map(|v| to_u64(v, "next_attempt_at")).transpose()?,
    })
}

/// Dead letters matching `f`, ordered by (sink, position), after the
/// `after` key, at most `n`.
pub(crate) fn dlq_list(
    c: &Connection,
    f: &DlqFilter,
    after: Option<(i64, u64)>,
    n: usize,
) -> Result<Vec<DlqRow>, StoreError> {
    let (after_sink, after_pos) = after.map_or((i64::MIN, -1), |(s, p)| (s, to_i64(p)));
    let sql = format!(
        "SELECT {DLQ_COLUMNS} FROM dlq d
         JOIN events e ON e.position = d.position
         JOIN streams s ON s.stream_id = e.stream_id
         WHERE (?1 IS NULL OR d.sink_id = ?1)
           AND (?2 IS NULL OR d.reason = ?2)
           AND (?3 IS NULL OR s.name = ?3)
           AND (?4 IS NULL OR d.last_failure_at <= ?4)
           AND (?8 IS NULL OR d.position = ?8)
           AND (d.sink_id, d.position) > (?5, ?6)
         ORDER BY d.sink_id, d.position LIMIT ?7"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            f.sink_id,
            f.reason.map(DlqReason::as_str),
            f.stream,
            f.failed_before_unix_ms.map(to_i64),
            after_sink,
            after_pos,
            limit(n),
            f.position.map(to_i64)
        ],
        dlq_from_row,
    )?;
    collect(rows)
}

/// The oldest (by last failure) `n` dead letters of a sink.
pub(crate) fn dlq_oldest(
    c: &Connection,
    sink_id: i64,
    n: usize,
) -> Result<Vec<DlqRow>, StoreError> {
    let sql = format!(
        "SELECT {DLQ_COLUMNS} FROM dlq d WHERE d.sink_id = ?1
         ORDER BY d.last_failure_at, d.position LIMIT ?2"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![sink_id, limit(n)], dlq_from_row)?;
    collect(rows)
}

/// Dead-letter totals of a sink.
pub(crate) fn dlq_stats(c: &Connection, sink_id: i64) -> Result<DlqStats, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT reason, count(*), min(last_failure_at) FROM dlq WHERE sink_id = ?1 GROUP BY reason",
    )?;
    let rows = stmt.query_map([sink_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut stats = DlqStats::default();
    for row in rows {
        let (reason, count, oldest) = row?;
        let reason = DlqReason::parse(&reason)
            .ok_or_else(|| StoreError::Corrupt(format!("dlq reason {reason:?}")))?;
        let count = to_u64(count, "dlq count")?;
        let oldest = to_u64(oldest, "dlq last_failure_at")?;
        stats.entries += count;
        stats.by_reason.push((reason, count));
        stats.oldest_failure_unix_ms = Some(
            stats
                .oldest_failure_unix_ms
                .map_or(oldest, |o| o.min(oldest)),
        );
    }
    Ok(stats)
}

/// Events with position > `after`, grouped by stream (at most `n` streams).
pub(crate) fn backlog_after(
    c: &Connection,
    after: u64,
    n: usize,
) -> Result<Vec<StreamBacklog>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT s.name, count(*), min(e.created_at) FROM events e
         JOIN streams s ON s.stream_id = e.stream_id
         WHERE e.position > ?1 GROUP BY e.stream_id ORDER BY s.name LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![to_i64(after), limit(n)], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (stream, events, oldest) = row?;
        out.push(StreamBacklog {
            stream,
            events: to_u64(events, "backlog count")?,
            oldest_created_at_us: oldest,
        });
    }
    Ok(out)
}

fn consumer_from_row(r: &Row<'_>) -> rusqlite::Result<Result<ConsumerRow, StoreError>> {
    let (name, pos, at): (String, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
    Ok(
        to_u64(pos, "consumer position").map(|position| ConsumerRow {
            name,
            position,
            updated_at_us: at,
        }),
    )
}

/// One consumer's checkpoint, if it has one.
pub(crate) fn consumer(c: &Connection, name: &str) -> Result<Option<ConsumerRow>, StoreError> {
    c.prepare_cached("SELECT name, position, updated_at FROM consumers WHERE name = ?1")?
        .query_row([name], consumer_from_row)
        .optional()?
        .transpose()
}

/// Up to `n` consumers with names after `after`, by name.
pub(crate) fn consumers(
    c: &Connection,
    after: &str,
    n: usize,
) -> Result<Vec<ConsumerRow>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT name, position, updated_at FROM consumers WHERE name > ?1 ORDER BY name LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit(n)], consumer_from_row)?;
    collect(rows)
}

/// Moves checkpoints forward only: the `WHERE` of the upsert skips an
/// update that is not ahead of the stored position. Returns how many moved.
fn set_checkpoints(
    c: &Connection,
    updates: &[CheckpointUpdate],
    now_us: i64,
) -> Result<u64, StoreError> {
    let mut up = c.prepare_cached(
        "INSERT INTO consumers (name, position, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET position = excluded.position,
             updated_at = excluded.updated_at
         WHERE excluded.position > consumers.position",
    )?;
    let mut moved = 0;
    for u in updates {
        moved += up.execute(params![u.consumer, to_i64(u.position), now_us])? as u64;
    }
    Ok(moved)
}

/// Applies one delivery write in its own transaction.
pub(crate) fn apply(
    c: &Connection,
    op: &StateWrite,
    now_us: i64,
) -> Result<StateApplied, StoreError> {
    if op.rows() > STATE_WRITE_ROWS_MAX {
        return Err(StoreError::Corrupt(format!(
            "a delivery write touching {} rows exceeds the limit of {STATE_WRITE_ROWS_MAX}; split it",
            op.rows()
        )));
    }
    // A transaction left open by an earlier failure would make every later
    // write fail at BEGIN: close it first (its writes were never committed).
    rollback_if_open(c);
    c.execute_batch("BEGIN IMMEDIATE")?;
    let out = apply_in_tx(c, op, now_us).and_then(|v| {
        // A failed COMMIT (busy, full disk, I/O) can leave the transaction
        // open; it is rolled back below like any other failure.
        c.execute_batch("COMMIT")?;
        Ok(v)
    });
    if out.is_err() {
        rollback_if_open(c);
    }
    out
}

/// Rolls back an open transaction, if any. Nothing in it was committed.
fn rollback_if_open(c: &Connection) {
    if !c.is_autocommit() {
        if let Err(e) = c.execute_batch("ROLLBACK") {
            tracing::warn!(error = %e, "rolling back a failed delivery write failed");
        }
    }
}

fn apply_in_tx(c: &Connection, op: &StateWrite, now_us: i64) -> Result<StateApplied, StoreError> {
    match op {
        StateWrite::RegisterSink { name } => {
            c.prepare_cached(
                "INSERT INTO sinks (name, updated_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            )?
            .execute(params![name, now_us])?;
            let id: i64 = c
                .prepare_cached("SELECT sink_id FROM sinks WHERE name = ?1")?
                .query_row([name], |r| r.get(0))?;
            Ok(StateApplied::Sink(id))
        }
        StateWrite::Settle(s) => settle(c, s, now_us).map(|()| StateApplied::Rows(1)),
        StateWrite::DlqRequeue {
            sink_id,
            positions,
            now_unix_ms,
        } => {
            let mut moved = 0;
            let mut ins = c.prepare_cached(
                "INSERT OR REPLACE INTO delivery_retries
                 (sink_id, position, lane, attempts, first_failure_at, next_attempt_at, last_error)
                 SELECT sink_id, position, lane, 0, ?3, ?3, last_error FROM dlq
                 WHERE sink_id = ?1 AND position = ?2",
            )?;
            let mut del =
                c.prepare_cached("DELETE FROM dlq WHERE sink_id = ?1 AND position = ?2")?;
            for p in positions {
                let n = ins.execute(params![sink_id, to_i64(*p), to_i64(*now_unix_ms)])?;
                if n == 1 {
                    del.execute(params![sink_id, to_i64(*p)])?;
                    moved += 1;
                }
            }
            Ok(StateApplied::Rows(moved))
        }
        StateWrite::DlqRemoveArchived { sink_id, rows } => {
            let removed = remove_archived(c, *sink_id, rows)?;
            c.prepare_cached(
                "UPDATE sinks SET archived_total = archived_total + ?2, updated_at = ?3
                 WHERE sink_id = ?1",
            )?
            .execute(params![sink_id, to_i64(removed), now_us])?;
            Ok(StateApplied::Rows(removed))
        }
        StateWrite::SetCircuitOverride { sink_id, value } => {
            let n = c
                .prepare_cached(
                    "UPDATE sinks SET circuit_override = ?2, updated_at = ?3 WHERE sink_id = ?1",
                )?
                .execute(params![sink_id, value, now_us])?;
            Ok(StateApplied::Rows(n as u64))
        }
        StateWrite::SetCheckpoints(updates) => {
            set_checkpoints(c, updates, now_us).map(StateApplied::Rows)
        }
    }
}

/// Runs `stmt` with a dead letter's columns as `?1`..`?9`, in the `dlq`
/// table's order: the insert and the exact-match delete share them.
fn execute_with_dlq_row(
    stmt: &mut rusqlite::CachedStatement<'_>,
    sink_id: i64,
    d: &DlqRow,
) -> rusqlite::Result<usize> {
    stmt.execute(params![
        sink_id,
        to_i64(d.position),
        d.event_id.as_bytes().as_slice(),
        d.lane,
        d.attempts,
        to_i64(d.first_failure_unix_ms),
        to_i64(d.last_failure_unix_ms),
        d.last_error,
        d.reason.as_str()
    ])
}

/// Deletes the dead letters of `rows` that still equal them in every
/// column, so a row re-created at the same position after it was archived
/// stays. Returns how many were deleted.
fn remove_archived(c: &Connection, sink_id: i64, rows: &[DlqRow]) -> Result<u64, StoreError> {
    let mut del = c.prepare_cached(
        "DELETE FROM dlq WHERE sink_id = ?1 AND position = ?2 AND event_id = ?3 AND lane = ?4
         AND attempts = ?5 AND first_failure_at = ?6 AND last_failure_at = ?7
         AND last_error = ?8 AND reason = ?9",
    )?;
    let mut removed: u64 = 0;
    for d in rows {
        removed += execute_with_dlq_row(&mut del, sink_id, d)? as u64;
    }
    Ok(removed)
}

fn settle(c: &Connection, s: &Settle, now_us: i64) -> Result<(), StoreError> {
    let cursor: i64 = c
        .prepare_cached("SELECT cursor_position FROM sinks WHERE sink_id = ?1")?
        .query_row([s.sink_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("settle for unknown sink id {}", s.sink_id)))?;
    let new_cursor = match s.cursor_to {
        Some(to) if to_i64(to) < cursor => {
            return Err(StoreError::Corrupt(format!(
                "sink {} cursor would move backwards from {cursor} to {to}",
                s.sink_id
            )))
        }
        Some(to) => to_i64(to),
        None => cursor,
    };
    c.prepare_cached(
        "UPDATE sinks SET cursor_position = ?2, delivered_total = delivered_total + ?3,
         updated_at = ?4 WHERE sink_id = ?1",
    )?
    .execute(params![s.sink_id, new_cursor, to_i64(s.delivered), now_us])?;
    let mut del =
        c.prepare_cached("DELETE FROM delivery_retries WHERE sink_id = ?1 AND position = ?2")?;
    for p in &s.delete_retries {
        del.execute(params![s.sink_id, to_i64(*p)])?;
    }
    let mut up = c.prepare_cached(
        "INSERT OR REPLACE INTO delivery_retries
         (sink_id, position, lane, attempts, first_failure_at, next_attempt_at, last_error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for r in &s.upsert_retries {
        up.execute(params![
            s.sink_id,
            to_i64(r.position),
            r.lane,
            r.attempts,
            to_i64(r.first_failure_unix_ms),
            to_i64(r.next_attempt_unix_ms),
            r.last_error
        ])?;
    }
    let mut dl = c.prepare_cached(
        "INSERT OR REPLACE INTO dlq (sink_id, position, event_id, lane, attempts,
         first_failure_at, last_failure_at, last_error, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for d in &s.dead_letters {
        del.execute(params![s.sink_id, to_i64(d.position)])?;
        execute_with_dlq_row(&mut dl, s.sink_id, d)?;
    }
    Ok(())
}
