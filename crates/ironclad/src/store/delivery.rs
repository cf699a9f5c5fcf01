//! Delivery-state writes as the store applies them (SPEC §4). The rows
//! themselves are values of the decision core
//! ([`ironclad_core::delivery::state`], re-exported here); this module adds
//! the operations the journal's single writer applies, each in its own
//! transaction.
//!
//! Named subscription consumers (SPEC §6) have one monotonic checkpoint
//! each ([`ConsumerRow`], written with [`StateWrite::SetCheckpoints`]),
//! written here because it goes through the same single writer.

pub use ironclad_core::consumer::{CheckpointUpdate, ConsumerRow, CONSUMER_NAME_BYTES_MAX};
pub use ironclad_core::delivery::state::{
    DlqFilter, DlqReason, DlqRow, DlqStats, RetryRow, RetryStats, Settle, SinkRow, StreamBacklog,
};

/// Largest number of rows one state write may touch, so a single
/// transaction stays short whatever the caller asks.
pub const STATE_WRITE_ROWS_MAX: usize = 100_000;

/// A change to the state the store keeps beside the log: sink progress,
/// dead letters, circuit overrides and consumer checkpoints (hence not a
/// "delivery" write: consumers are not delivery). Applied by the journal's
/// single writer, each in its own transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateWrite {
    /// Creates the sink's row if missing (cursor 0).
    RegisterSink {
        /// The configured name.
        name: String,
    },
    /// Records a batch's outcome.
    Settle(Settle),
    /// Moves dead letters back to retrying, due now, attempts reset to 0
    /// (`dlq retry`).
    DlqRequeue {
        /// The sink.
        sink_id: i64,
        /// Which entries (missing ones are skipped).
        positions: Vec<u64>,
        /// Due time of the new retry rows.
        now_unix_ms: u64,
    },
    /// Deletes dead letters that have already been archived, counting them
    /// in `archived_total`.
    DlqRemoveArchived {
        /// The sink.
        sink_id: i64,
        /// The entries exactly as archived. A row is deleted only while
        /// every column still equals its archived copy: one re-created at
        /// the same position since (or gone) is skipped.
        rows: Vec<DlqRow>,
    },
    /// Sets or clears the operator's circuit override.
    SetCircuitOverride {
        /// The sink.
        sink_id: i64,
        /// `forced_open`, `disabled`, or `None` to clear.
        value: Option<String>,
    },
    /// Moves named consumers' checkpoints forward (SPEC §6 subscriptions),
    /// all in one transaction. Creates a consumer's row on first use. An
    /// update that is not ahead of the stored checkpoint is ignored: a
    /// checkpoint never moves backwards, whatever the caller sends.
    SetCheckpoints(Vec<CheckpointUpdate>),
}

impl StateWrite {
    /// Rows the operation touches at most; the writer refuses more than
    /// [`STATE_WRITE_ROWS_MAX`].
    pub fn rows(&self) -> usize {
        match self {
            StateWrite::RegisterSink { .. } | StateWrite::SetCircuitOverride { .. } => 1,
            StateWrite::Settle(s) => s.rows(),
            StateWrite::DlqRequeue { positions, .. } => positions.len(),
            StateWrite::DlqRemoveArchived { rows, .. } => rows.len(),
            StateWrite::SetCheckpoints(updates) => updates.len(),
        }
    }
}

/// What a [`StateWrite`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateApplied {
    /// `RegisterSink`: the sink's id.
    Sink(i64),
    /// Rows changed (`DlqRequeue`, `DlqRemoveArchived`, `SetCheckpoints`:
    /// checkpoints that moved) or 1 for the others.
    Rows(u64),
}
