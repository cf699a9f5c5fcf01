//! Named subscription consumers (SPEC §6): one monotonic checkpoint each,
//! as a value. The store persists them through the same single writer as
//! delivery state.

use serde::Serialize;

/// One consumer checkpoint to persist (a store applies a batch of them in one transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointUpdate {
    /// The consumer's name (the server validates it:
    /// [`CONSUMER_NAME_BYTES_MAX`] bytes of `[A-Za-z0-9_.-]` at most).
    pub consumer: String,
    /// Every event the consumer was sent at or below this position has been
    /// acknowledged.
    pub position: u64,
}

/// Longest consumer name, in bytes.
pub const CONSUMER_NAME_BYTES_MAX: usize = 128;

/// A named consumer's persisted checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerRow {
    /// The consumer's name.
    pub name: String,
    /// Every event the consumer was sent at or below this position has been
    /// acknowledged; it resumes after it.
    pub position: u64,
    /// When the checkpoint last moved, µs since the Unix epoch.
    pub updated_at_us: i64,
}
