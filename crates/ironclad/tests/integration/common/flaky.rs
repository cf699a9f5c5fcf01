//! A fault-injecting twin of the real SQLite store: it wraps a real
//! `SqliteStore` and makes chosen group commits fail before they reach
//! SQLite, as an I/O error would, or wait on a gate the test holds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ironclad::store::delivery::{
    ConsumerRow, DlqFilter, DlqRow, DlqStats, RetryRow, RetryStats, SinkRow, StateApplied,
    StateWrite, StreamBacklog,
};
use ironclad::store::sqlite::{SqliteStore, SqliteWriter};
use ironclad::store::{AppendOutcome, PreparedAppend, Store, StoreWriter};
use ironclad::{LedgerHead, RecordedEvent, StoreError, StreamHead};

/// A real store whose writer fails every commit while `fail` is set, and
/// whose commits wait while the test holds `gate`.
pub struct FlakyStore {
    /// The real store.
    pub inner: SqliteStore,
    /// Fail every commit while set.
    pub fail: Arc<AtomicBool>,
    /// Fail this many more commits, then succeed.
    pub fail_next: Arc<AtomicUsize>,
    /// Commits wait while the test holds it.
    pub gate: Arc<Mutex<()>>,
}

/// The writer of a [`FlakyStore`].
pub struct FlakyWriter {
    inner: SqliteWriter,
    fail: Arc<AtomicBool>,
    fail_next: Arc<AtomicUsize>,
    gate: Arc<Mutex<()>>,
}

impl StoreWriter for FlakyWriter {
    fn commit(
        &mut self,
        batch: &[PreparedAppend],
        created_at_us: i64,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        drop(self.gate.lock());
        let scheduled = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if scheduled || self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                path: "injected".into(),
                source: std::io::Error::other("injected: disk I/O error"),
            });
        }
        self.inner.commit(batch, created_at_us)
    }

    fn wal_checkpoint(&mut self) -> Result<(), StoreError> {
        self.inner.wal_checkpoint()
    }

    /// Delivery writes fail while `fail` is set (not counted by `fail_next`,
    /// which schedules append commits only).
    fn apply_state(&mut self, op: &StateWrite, now_us: i64) -> Result<StateApplied, StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                path: "injected".into(),
                source: std::io::Error::other("injected: disk I/O error"),
            });
        }
        self.inner.apply_state(op, now_us)
    }
}

impl Store for FlakyStore {
    type Writer = FlakyWriter;
    fn open_writer(&self) -> Result<FlakyWriter, StoreError> {
        Ok(FlakyWriter {
            inner: self.inner.open_writer()?,
            fail: Arc::clone(&self.fail),
            fail_next: Arc::clone(&self.fail_next),
            gate: Arc::clone(&self.gate),
        })
    }
    fn read_stream(
        &self,
        s: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(s, from, limit)
    }
    fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(from, limit)
    }
    fn stream_head(&self, s: &str) -> Result<Option<StreamHead>, StoreError> {
        self.inner.stream_head(s)
    }
    fn list_streams(&self, after: &str, limit: usize) -> Result<Vec<StreamHead>, StoreError> {
        self.inner.list_streams(after, limit)
    }
    fn ledger_head(&self) -> Result<Option<LedgerHead>, StoreError> {
        self.inner.ledger_head()
    }
    fn event_at(&self, position: u64) -> Result<Option<RecordedEvent>, StoreError> {
        self.inner.event_at(position)
    }
    fn sinks(&self) -> Result<Vec<SinkRow>, StoreError> {
        self.inner.sinks()
    }
    fn retry_rows(&self, sink: i64, after: u64, limit: usize) -> Result<Vec<RetryRow>, StoreError> {
        self.inner.retry_rows(sink, after, limit)
    }
    fn retry_stats(&self, sink: i64) -> Result<RetryStats, StoreError> {
        self.inner.retry_stats(sink)
    }
    fn dlq_list(
        &self,
        filter: &DlqFilter,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<DlqRow>, StoreError> {
        self.inner.dlq_list(filter, after, limit)
    }
    fn dlq_oldest(&self, sink: i64, limit: usize) -> Result<Vec<DlqRow>, StoreError> {
        self.inner.dlq_oldest(sink, limit)
    }
    fn dlq_stats(&self, sink: i64) -> Result<DlqStats, StoreError> {
        self.inner.dlq_stats(sink)
    }
    fn backlog_after(&self, after: u64, limit: usize) -> Result<Vec<StreamBacklog>, StoreError> {
        self.inner.backlog_after(after, limit)
    }
    fn consumer(&self, name: &str) -> Result<Option<ConsumerRow>, StoreError> {
        self.inner.consumer(name)
    }
    fn consumers(&self, after: &str, limit: usize) -> Result<Vec<ConsumerRow>, StoreError> {
        self.inner.consumers(after, limit)
    }
}
