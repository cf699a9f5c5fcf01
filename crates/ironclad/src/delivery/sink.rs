//! The sink seam: one small trait every destination implements.
//!
//! A sink receives a batch of events in position order and answers with one
//! batch-level [`Outcome`](crate::delivery::classify::Outcome) plus, where the destination reports them, one
//! outcome per event. It never sees the store, retries, the breaker or the
//! DLQ: the dispatcher owns all of that and only asks "what happened?".

use std::future::Future;
use std::pin::Pin;

use crate::model::RecordedEvent;

pub use ironclad_core::delivery::response::SinkResponse;

/// The future a sink returns. Boxed so that sinks can be chosen at run time
/// from configuration (`Arc<dyn Sink>`).
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = SinkResponse> + Send + 'a>>;

/// A delivery destination.
///
/// Contract:
/// - `deliver` is called with 1..=`batch_events_max` events in position
///   order; events sharing an ordering key appear in their log order.
/// - It must not panic on any response from the destination; every failure
///   is an [`Outcome`](crate::delivery::classify::Outcome) (transport errors are `Outcome::Retry`).
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
