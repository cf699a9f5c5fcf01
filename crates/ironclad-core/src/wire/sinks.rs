//! `/v1/admin/sinks…`: every sink's status, and the operator's circuit
//! actions. [`SinkStatus`] is also what `ironclad status` computes and
//! prints locally (`ironclad::delivery::status` re-exports it), so the
//! local and remote outputs are one type.

use serde::{Deserialize, Serialize};

/// One sink's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SinkStatus {
    /// The sink.
    pub sink: String,
    /// Events routed to it and not yet delivered or dead-lettered: retry
    /// rows plus matching events beyond the cursor.
    pub pending: u64,
    /// Age of the oldest pending event, in ms (`null` when nothing is pending).
    pub oldest_pending_age_ms: Option<u64>,
    /// The circuit: `closed`, `open`, `half_open`, `forced_open` or
    /// `disabled`; the live state when an engine runs in the process that
    /// computed it, otherwise the persisted operator override, or `closed`.
    pub circuit: String,
    /// Dead letters in the store.
    pub dlq_entries: u64,
    /// Dead letters archived so far.
    pub dlq_archived: u64,
    /// Retry rows (failed at least once, or parked behind one that did).
    pub retry_rows: u64,
    /// Of those, events that failed at least once.
    pub retrying: u64,
    /// Next retry due, ms since the Unix epoch.
    pub next_retry_unix_ms: Option<u64>,
    /// Events delivered so far.
    pub delivered_total: u64,
    /// The cursor: every matching event at or below it is settled or has a retry row.
    pub cursor_position: u64,
}

/// `GET /v1/admin/sinks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SinksResponse {
    /// Every registered sink.
    pub sinks: Vec<SinkStatus>,
}

/// An operator action on a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CircuitActionBody {
    /// Reject every call until closed (persists across restarts).
    ForceOpen,
    /// Back to closed (clears a persisted override).
    Close,
    /// Closed with an empty failure window (clears a persisted override).
    Reset,
    /// Permit every call and never trip (persists across restarts).
    Disable,
}

/// `POST /v1/admin/sinks/{sink}/circuit` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CircuitRequest {
    /// What to do.
    pub action: CircuitActionBody,
}

/// The circuit after an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CircuitResponse {
    /// The sink.
    pub sink: String,
    /// The state now: `closed`, `open`, `half_open`, `forced_open` or `disabled`.
    pub state: String,
    /// The state's metric value (`ironclad_breaker_state`): 0 closed,
    /// 1 open, 2 half-open, 3 forced-open, 4 disabled.
    pub state_code: u8,
}
