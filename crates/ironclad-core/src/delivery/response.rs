//! What a sink answered for one batch: a batch-level outcome plus, where
//! the destination reports them, one outcome per event. A value the sink
//! seam (`ironclad::delivery::sink`) returns and [`super::settle`] decides
//! from.

use crate::delivery::classify::Outcome;

/// What one delivery attempt of a batch produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkResponse {
    /// The outcome of the whole call (HTTP status class, transport error…).
    pub batch: Outcome,
    /// Per-event outcomes reported by the destination, aligned with the
    /// batch: `per_event[i]` belongs to `events[i]`. Empty when the
    /// destination reported none; otherwise exactly as long as the batch.
    pub per_event: Vec<Option<Outcome>>,
    /// A short, operator-readable description of a failure ("HTTP 503",
    /// "connection reset"). Stored as the retry/DLQ `last_error`; never holds
    /// secrets or payloads. Empty on success.
    pub detail: String,
}

impl SinkResponse {
    /// Every event delivered, nothing to report.
    pub fn delivered() -> Self {
        Self {
            batch: Outcome::Delivered,
            per_event: Vec::new(),
            detail: String::new(),
        }
    }

    /// The whole batch failed with `outcome`, described by `detail`.
    pub fn failed(outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            batch: outcome,
            per_event: Vec::new(),
            detail: detail.into(),
        }
    }

    /// The outcome for event `i` of the batch: the event's own result where
    /// the sink reported one and the batch is not being retried as a whole
    /// (see [`crate::delivery::classify::event_outcome_in_batch`]).
    pub fn outcome_of(&self, i: usize) -> Outcome {
        let reported = self.per_event.get(i).copied().flatten();
        crate::delivery::classify::event_outcome_in_batch(self.batch, reported)
    }
}
