//! The storage seam. A [`Store`] reads; its single [`StoreWriter`] commits
//! group-committed batches. The journal owns the queue and the writer thread
//! and never sees SQL; a store never sees the queue.
//!
//! `ARCHITECTURE.md` maps each operation onto PostgreSQL.

pub mod delivery;
pub mod sqlite;

use crate::error::{CorruptDatabase, StoreError};
use crate::model::{LedgerHead, RecordedEvent, StreamHead};
use crate::store::delivery::{
    ConsumerRow, DlqFilter, DlqRow, DlqStats, RetryRow, RetryStats, SinkRow, StateApplied,
    StateWrite, StreamBacklog,
};

pub use ironclad_core::idempotency::{AppendOutcome, AppendRejection, PreparedAppend};

/// Read side of a backend. Implementations are shared across threads; every
/// method is blocking and independent of the writer (no method waits for a
/// commit in progress).
pub trait Store: Send + Sync + 'static {
    /// The backend's writer type.
    type Writer: StoreWriter;

    /// Opens the one writer. Called once per journal.
    fn open_writer(&self) -> Result<Self::Writer, StoreError>;

    /// `Err` once a read or a write has found the store's file damaged
    /// (for readiness probes); never blocks. Stores that cannot tell
    /// answer `Ok`.
    fn health(&self) -> Result<(), CorruptDatabase> {
        Ok(())
    }

    /// Up to `limit` events of `stream` with version ≥ `from_version`, in order.
    fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` events with position ≥ `from_position`, in position order.
    fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The stream's head, or `None` if it has no events.
    fn stream_head(&self, stream: &str) -> Result<Option<StreamHead>, StoreError>;

    /// Up to `limit` stream heads with names after `after`, sorted by name.
    fn list_streams(&self, after: &str, limit: usize) -> Result<Vec<StreamHead>, StoreError>;

    /// The global ledger head, or `None` for an empty store.
    fn ledger_head(&self) -> Result<Option<LedgerHead>, StoreError>;

    /// The event at exactly `position`, if any.
    fn event_at(&self, position: u64) -> Result<Option<RecordedEvent>, StoreError>;

    /// Every registered sink's persisted progress.
    fn sinks(&self) -> Result<Vec<SinkRow>, StoreError>;

    /// Up to `limit` retry rows of a sink with position > `after`, by position.
    fn retry_rows(
        &self,
        sink_id: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RetryRow>, StoreError>;

    /// Retry-row totals of a sink.
    fn retry_stats(&self, sink_id: i64) -> Result<RetryStats, StoreError>;

    /// Dead letters matching `filter`, ordered by (sink id, position), after
    /// the key `after`, at most `limit`.
    fn dlq_list(
        &self,
        filter: &DlqFilter,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<DlqRow>, StoreError>;

    /// The `limit` dead letters of a sink with the oldest last failure.
    fn dlq_oldest(&self, sink_id: i64, limit: usize) -> Result<Vec<DlqRow>, StoreError>;

    /// Dead-letter totals of a sink.
    fn dlq_stats(&self, sink_id: i64) -> Result<DlqStats, StoreError>;

    /// Events with position > `after`, grouped by stream, at most `limit`
    /// streams (for pending counts in `status`).
    fn backlog_after(&self, after: u64, limit: usize) -> Result<Vec<StreamBacklog>, StoreError>;

    /// A named consumer's checkpoint, or `None` if it never persisted one.
    fn consumer(&self, name: &str) -> Result<Option<ConsumerRow>, StoreError>;

    /// Up to `limit` consumer checkpoints with names after `after` (use `""`
    /// to start), sorted by name.
    fn consumers(&self, after: &str, limit: usize) -> Result<Vec<ConsumerRow>, StoreError>;
}

/// Write side: owned by exactly one thread.
pub trait StoreWriter: Send + 'static {
    /// Commits `batch` in one durable transaction and returns one outcome per
    /// append, in order. A rejected append leaves no trace; the others commit.
    /// `Err` means the batch is not acknowledged: normally nothing of it was
    /// committed, but a failure in the final fsync may leave it written.
    fn commit(
        &mut self,
        batch: &[PreparedAppend],
        created_at_us: i64,
    ) -> Result<Vec<AppendOutcome>, StoreError>;

    /// Truncates the write-ahead log (SQLite: `wal_checkpoint(TRUNCATE)`).
    fn wal_checkpoint(&mut self) -> Result<(), StoreError>;

    /// Applies one change to delivery state in its own durable transaction.
    fn apply_state(&mut self, op: &StateWrite, now_us: i64) -> Result<StateApplied, StoreError>;

    /// Commits a write that changes nothing anyone can read but needs the
    /// room an append needs (a page allocated, the WAL grown, an fsync),
    /// so that after writes failed the journal learns, while idle, that
    /// they succeed again. `None`: this store cannot probe, and only the
    /// next real write tells.
    fn probe_write(&mut self) -> Option<Result<(), StoreError>> {
        None
    }
}
