//! `ironclad status`: per sink, what is pending and how old, the circuit,
//! the DLQ and the retry backlog. Read-only; works on a running engine's
//! store (through a read-only reader) as well as on a stopped one.

use crate::delivery::routes::Routes;
use crate::error::StoreError;
use crate::store::Store;

/// One sink's state: declared once, in the core's wire contract, because
/// the server answers it and the CLI prints it (local and remote alike).
pub use ironclad_core::wire::SinkStatus;

/// Streams scanned for the pending count; beyond it the count is a floor.
pub const BACKLOG_STREAMS_MAX: usize = 100_000;

/// Computes every registered sink's status. `live_circuit` gives the live
/// breaker state by sink name when an engine runs in this process.
pub fn sink_statuses<S: Store>(
    store: &S,
    routes: &Routes,
    now_unix_ms: u64,
    live_circuit: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<SinkStatus>, StoreError> {
    let mut out = Vec::new();
    for s in store.sinks()? {
        let retries = store.retry_stats(s.sink_id)?;
        let dlq = store.dlq_stats(s.sink_id)?;
        let mut pending = retries.rows;
        let mut oldest_us: Option<i64> = None;
        for b in store.backlog_after(s.cursor_position, BACKLOG_STREAMS_MAX)? {
            if routes.matches(&s.name, &b.stream) {
                pending += b.events;
                oldest_us = Some(
                    oldest_us.map_or(b.oldest_created_at_us, |o| o.min(b.oldest_created_at_us)),
                );
            }
        }
        // The oldest retry row's event is older than anything beyond the cursor.
        if let Some(first) = store.retry_rows(s.sink_id, 0, 1)?.first() {
            if let Some(e) = store.event_at(first.position)? {
                oldest_us = Some(oldest_us.map_or(e.created_at_us, |o| o.min(e.created_at_us)));
            }
        }
        let oldest_pending_age_ms =
            oldest_us.map(|us| now_unix_ms.saturating_sub(u64::try_from(us / 1000).unwrap_or(0)));
        let circuit = live_circuit(&s.name)
            .or_else(|| s.circuit_override.clone())
            .unwrap_or_else(|| "closed".to_string());
        out.push(SinkStatus {
            sink: s.name,
            pending,
            oldest_pending_age_ms,
            circuit,
            dlq_entries: dlq.entries,
            dlq_archived: s.archived_total,
            retry_rows: retries.rows,
            retrying: retries.failed,
            next_retry_unix_ms: retries.next_due_unix_ms,
            delivered_total: s.delivered_total,
            cursor_position: s.cursor_position,
        });
    }
    Ok(out)
}
