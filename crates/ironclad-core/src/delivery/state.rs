//! Delivery state as a value: the rows a store keeps per sink (SPEC §4;
//! schema in `docs/design.md` "Delivery state"). Backend-neutral: the
//! dispatcher decides with these, and a store persists them.
//!
//! Per sink the store holds a cursor (every matching event at or below it is
//! delivered, retrying or dead-lettered), one row per event that is retrying
//! or waits behind one that is, and one row per dead letter. A delivered
//! event costs no row: the happy path is O(1) per batch.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A sink's persisted progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkRow {
    /// Store-assigned id.
    pub sink_id: i64,
    /// The configured name.
    pub name: String,
    /// Every matching event with position ≤ this is settled or has a retry row.
    pub cursor_position: u64,
    /// Events delivered so far (counted when settled).
    pub delivered_total: u64,
    /// Dead letters moved to the archive (evicted, expired or purged).
    pub archived_total: u64,
    /// Operator-set circuit state that survives restarts: `forced_open`,
    /// `disabled`, or none.
    pub circuit_override: Option<String>,
}

/// One event that failed at least once, or that waits behind one that did
/// (`attempts == 0`: parked to keep its lane in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryRow {
    /// The event's position.
    pub position: u64,
    /// The ordering key: `e:<entity>` or `s:<stream>`.
    pub lane: String,
    /// Failed attempts so far (0 = parked, never sent).
    pub attempts: u32,
    /// When it first failed (or was parked), ms since the Unix epoch.
    pub first_failure_unix_ms: u64,
    /// Not sent again before this time, ms since the Unix epoch.
    pub next_attempt_unix_ms: u64,
    /// The last failure, as the sink described it.
    pub last_error: String,
}

/// Why an event was dead-lettered (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DlqReason {
    /// `max_attempts` failed attempts.
    MaxAttempts,
    /// The sink refused it for good (a 4xx other than 408/409/425/429).
    Permanent,
    /// The sink answered 409; the reconciler (SPEC §5) is not built yet.
    Conflict,
    /// Retrying would have gone past `max_elapsed` since the first failure.
    Expired,
}

impl DlqReason {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            DlqReason::MaxAttempts => "max_attempts",
            DlqReason::Permanent => "permanent",
            DlqReason::Conflict => "conflict",
            DlqReason::Expired => "expired",
        }
    }

    /// Parses a stored or user-given name.
    pub fn parse(s: &str) -> Option<DlqReason> {
        match s {
            "max_attempts" => Some(DlqReason::MaxAttempts),
            "permanent" => Some(DlqReason::Permanent),
            "conflict" => Some(DlqReason::Conflict),
            "expired" => Some(DlqReason::Expired),
            _ => None,
        }
    }
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DlqRow {
    /// The sink it failed on.
    pub sink_id: i64,
    /// The event's position.
    pub position: u64,
    /// The event's id (its idempotency key).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub event_id: Uuid,
    /// The event's ordering key.
    pub lane: String,
    /// Failed attempts.
    pub attempts: u32,
    /// First failure, ms since the Unix epoch.
    pub first_failure_unix_ms: u64,
    /// Last failure, ms since the Unix epoch.
    pub last_failure_unix_ms: u64,
    /// The last failure, as the sink described it.
    pub last_error: String,
    /// Why it stopped being retried.
    pub reason: DlqReason,
}

/// The outcome of one batch for one sink, committed atomically: the cursor
/// only moves past an event together with that event's settled state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settle {
    /// The sink.
    pub sink_id: i64,
    /// New cursor, if it moves (never backwards: the store refuses).
    pub cursor_to: Option<u64>,
    /// Events delivered by this batch (added to `delivered_total`).
    pub delivered: u64,
    /// Retry rows to insert or replace.
    pub upsert_retries: Vec<RetryRow>,
    /// Retry rows to delete (delivered, or moved to the DLQ).
    pub delete_retries: Vec<u64>,
    /// New dead letters (their retry rows, if any, are deleted too).
    pub dead_letters: Vec<DlqRow>,
}

impl Settle {
    /// Rows this settle touches.
    pub fn rows(&self) -> usize {
        self.upsert_retries.len() + self.delete_retries.len() + self.dead_letters.len()
    }
}

/// Which dead letters to list, retry or purge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DlqFilter {
    /// Only this sink.
    pub sink_id: Option<i64>,
    /// Only this reason.
    pub reason: Option<DlqReason>,
    /// Only entries whose event is in this stream.
    pub stream: Option<String>,
    /// Only entries whose last failure is at or before this time (ms).
    pub failed_before_unix_ms: Option<u64>,
    /// Only the entry at this position.
    pub position: Option<u64>,
}

/// Dead-letter totals of one sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DlqStats {
    /// Entries in the store.
    pub entries: u64,
    /// Oldest last-failure time, ms since the Unix epoch.
    pub oldest_failure_unix_ms: Option<u64>,
    /// Entries per reason.
    pub by_reason: Vec<(DlqReason, u64)>,
}

/// Retry-row totals of one sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryStats {
    /// Rows (failed and parked).
    pub rows: u64,
    /// Rows that failed at least once.
    pub failed: u64,
    /// The earliest next attempt, ms since the Unix epoch.
    pub next_due_unix_ms: Option<u64>,
}

/// Events after a position, grouped by stream: enough to count what a
/// sink's routes still have to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamBacklog {
    /// The stream.
    pub stream: String,
    /// Events after the position.
    pub events: u64,
    /// Oldest `created_at` among them, µs.
    pub oldest_created_at_us: i64,
}
