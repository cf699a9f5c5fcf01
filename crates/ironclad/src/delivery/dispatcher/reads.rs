//! The dispatcher's synchronous, blocking half of a turn: loading its
//! state from the store and reading the events a plan needs, plus the
//! [`TurnContext`] of a sink. No async, no clock: `run` calls these on the
//! blocking pool, and `tests/delivery_model` calls them directly to drive
//! whole turns without tokio.

use std::sync::Arc;

use crate::delivery::breaker::CircuitBreaker;
use crate::delivery::config::SinkConfig;
use crate::delivery::lanes::PendingRetries;
use crate::delivery::plan::{self, EventSource, Plan, PlanAsk, PlanLimits};
use crate::delivery::routes::Routes;
use crate::delivery::turn::{Mirror, TurnContext};
use crate::error::StoreError;
use crate::model::RecordedEvent;
use crate::store::Store;

/// Loads a sink's state from the store: its cursor and every retry row.
/// Blocking.
pub fn load_state<S: Store>(store: &S, sink_id: i64) -> Result<Mirror, StoreError> {
    let cursor = store
        .sinks()?
        .into_iter()
        .find(|s| s.sink_id == sink_id)
        .map_or(0, |s| s.cursor_position);
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let page = store.retry_rows(sink_id, after, 10_000)?;
        let Some(last) = page.last() else { break };
        after = last.position;
        rows.extend(page);
    }
    Ok(Mirror {
        cursor,
        pending: PendingRetries::from_rows(rows),
    })
}

/// The bounds of `config` that shape a batch.
pub fn plan_limits(config: &SinkConfig) -> PlanLimits {
    PlanLimits {
        events_max: config.batch.events_max,
        bytes_max: config.batch.bytes_max,
        retry_rows_max: config.retry_rows_max,
    }
}

/// The turn's unchanging context for the sink `sink_id` configured by
/// `config`.
pub fn turn_context<'a>(
    sink_id: i64,
    config: &'a SinkConfig,
    breaker: &'a Arc<CircuitBreaker>,
) -> TurnContext<'a> {
    TurnContext {
        sink_id,
        breaker,
        events_max: config.batch.events_max,
        policy: &config.retry,
    }
}

/// The store as the source of a plan's events.
struct StoreSource<'a, S> {
    store: &'a S,
    routes: &'a Routes,
    sink: &'a str,
}

impl<S: Store> EventSource for StoreSource<'_, S> {
    type Error = StoreError;

    fn due_event(&mut self, position: u64) -> Result<RecordedEvent, StoreError> {
        self.store.event_at(position)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "sink {} has a retry row for position {position}, which holds no event",
                self.sink
            ))
        })
    }

    fn read_from(&mut self, position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.store.read_all(position, limit)
    }

    fn routed(&self, event: &RecordedEvent) -> bool {
        self.routes.matches(self.sink, &event.stream)
    }
}

/// Plans one batch of the sink `config` from `store` (see
/// [`plan::plan_batch`]). Blocking: runs on the blocking pool.
pub fn plan_batch<S: Store>(
    store: &S,
    config: &SinkConfig,
    routes: &Routes,
    pending: &PendingRetries,
    ask: &PlanAsk,
) -> Result<Plan, StoreError> {
    let mut source = StoreSource {
        store,
        routes,
        sink: &config.name,
    };
    plan::plan_batch(&mut source, plan_limits(config), pending, ask)
}
