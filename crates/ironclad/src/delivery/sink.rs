//! The sink seam: one small trait every destination implements.
//!
//! A sink receives a batch of events in position order and answers with one
//! batch-level [`Outcome`] plus, where the destination reports them, one
//! outcome per event. It never sees the store, retries, the breaker or the
//! DLQ: the dispatcher owns all of that and only asks "what happened?".

use std::future::Future;
use std::pin::Pin;

use crate::delivery::classify::Outcome;
use crate::model::RecordedEvent;

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

/// The future a sink returns. Boxed so that sinks can be chosen at run time
/// from configuration (`Arc<dyn Sink>`).
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = SinkResponse> + Send + 'a>>;

/// A delivery destination.
///
/// Contract:
/// - `deliver` is called with 1..=`batch_events_max` events in position
///   order; events sharing an ordering key appear in their log order.
/// - It must not panic on any response from the destination; every failure
///   is an [`Outcome`] (transport errors are `Outcome::Retry`).
/// - It must bound its own time (a request timeout); the dispatcher also
///   enforces a deadline and drops the future when it passes.
/// - **Cancel safety:** the future may be dropped at any await point (deadline,
///   shutdown). A dropped attempt is treated as never settled: its events stay
///   pending and are sent again, which is safe because every event carries its
///   idempotency key. Sinks must therefore tolerate re-delivery.
pub trait Sink: Send + Sync + 'static {
    /// The sink's configured name (unique per engine); used in metrics and
    /// logs.
    fn name(&self) -> &str;

    /// Delivers `events` and reports what happened.
    fn deliver<'a>(&'a self, events: &'a [RecordedEvent]) -> SinkFuture<'a>;
}
