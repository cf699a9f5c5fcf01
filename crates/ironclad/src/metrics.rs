//! Metric names (SPEC §9, ingest) and their descriptions, recorded through the
//! `metrics` facade. Install any recorder (e.g. a Prometheus exporter) to
//! collect them; with none installed they cost a branch each.

/// Gauge: events waiting in the ingest queue.
pub const QUEUE_DEPTH_EVENTS: &str = "ironclad_ingest_queue_depth_events";
/// Gauge: ingest queue capacity in events.
pub const QUEUE_CAPACITY_EVENTS: &str = "ironclad_ingest_queue_capacity_events";
/// Gauge: bytes waiting in the ingest queue.
pub const QUEUE_DEPTH_BYTES: &str = "ironclad_ingest_queue_depth_bytes";
/// Gauge: ingest queue capacity in bytes.
pub const QUEUE_CAPACITY_BYTES: &str = "ironclad_ingest_queue_capacity_bytes";
/// Counter, label `reason`: appends refused (`full`, `invalid`,
/// `wrong_expected_version`, `idempotency_conflict`, `shutting_down`, `store_error`,
/// `failed_closed`).
pub const REJECTED_TOTAL: &str = "ironclad_ingest_rejected_total";
/// Counter: events newly written.
pub const APPENDED_EVENTS_TOTAL: &str = "ironclad_ingest_appended_events_total";
/// Histogram: events per group commit.
pub const COMMIT_BATCH_EVENTS: &str = "ironclad_ingest_commit_batch_events";
/// Histogram: seconds from BEGIN to durable COMMIT.
pub const COMMIT_LATENCY_SECONDS: &str = "ironclad_ingest_commit_latency_seconds";
/// Histogram: seconds from enqueue to acknowledgement.
pub const ACK_LATENCY_SECONDS: &str = "ironclad_ingest_ack_latency_seconds";

/// Counter: emergency dumps written.
pub const DUMPS_TOTAL: &str = "ironclad_dump_dumps_total";
/// Counter: events written to emergency dumps.
pub const DUMPED_EVENTS_TOTAL: &str = "ironclad_dump_events_total";
/// Counter: events re-appended by dump replay (new, not already present).
pub const REPLAYED_EVENTS_TOTAL: &str = "ironclad_dump_replayed_events_total";
/// Counter, label `reason` (`wrong_expected_version`,
/// `idempotency_conflict`): `submit()`ted appends the store rejected,
/// recorded with their reason in an emergency dump and reported by the
/// next `flush()`.
pub const SUBMIT_REJECTED_TOTAL: &str = "ironclad_dump_submit_rejected_total";
/// Counter: dump records a replay set aside in a quarantine file
/// (`dump replay --quarantine-failed`).
pub const QUARANTINED_RECORDS_TOTAL: &str = "ironclad_dump_quarantined_records_total";

// Delivery (SPEC §9), every one labelled `sink`.

/// Counter, labels `sink`, `result` (`delivered`, `retry`, `conflict`,
/// `permanent`, `not_sent`): delivery calls, by batch-level result.
pub const DELIVERY_ATTEMPTS_TOTAL: &str = "ironclad_delivery_attempts_total";
/// Counter: events delivered.
pub const DELIVERY_DELIVERED_TOTAL: &str = "ironclad_delivery_delivered_total";
/// Counter: events scheduled for another attempt.
pub const DELIVERY_RETRIES_TOTAL: &str = "ironclad_delivery_retries_total";
/// Counter: events that left delivery without being delivered (dead-lettered).
pub const DELIVERY_DROPPED_TOTAL: &str = "ironclad_delivery_dropped_total";
/// Histogram: events per delivery call.
pub const DELIVERY_BATCH_EVENTS: &str = "ironclad_delivery_batch_events";
/// Histogram: seconds from append (`created_at`) to the sink's acknowledgement.
pub const DELIVERY_LATENCY_SECONDS: &str = "ironclad_delivery_latency_seconds";
/// Gauge: retry rows (retrying and parked events) the sink's dispatcher
/// holds. Events beyond the cursor are not counted here; `ironclad status`
/// counts them.
pub const DELIVERY_PENDING_EVENTS: &str = "ironclad_delivery_pending_events";
/// Gauge: age in seconds of the oldest pending event the dispatcher holds.
pub const DELIVERY_OLDEST_PENDING_SECONDS: &str = "ironclad_delivery_oldest_pending_age_seconds";
/// Counter: events coalesced into a later one (coalescing is not built yet: 0).
pub const DELIVERY_COALESCED_TOTAL: &str = "ironclad_delivery_coalesced_total";
/// Counter, label `resolution`: 409 conflicts (`dead_lettered` until the
/// reconciler exists).
pub const DELIVERY_CONFLICTS_TOTAL: &str = "ironclad_delivery_conflicts_total";
/// Gauge: breaker state (0 closed, 1 open, 2 half-open, 3 forced-open, 4 disabled).
pub const BREAKER_STATE: &str = "ironclad_breaker_state";
/// Gauge: failure rate over the breaker's window, percent.
pub const BREAKER_FAILURE_RATE: &str = "ironclad_breaker_failure_rate_percent";
/// Counter: calls the breaker refused.
pub const BREAKER_NOT_PERMITTED_TOTAL: &str = "ironclad_breaker_not_permitted_total";
/// Counter, label `to`: breaker transitions.
pub const BREAKER_TRANSITIONS_TOTAL: &str = "ironclad_breaker_transitions_total";
/// Gauge: dead letters in the store.
pub const DLQ_SIZE: &str = "ironclad_dlq_size";
/// Gauge: age in seconds of the oldest dead letter.
pub const DLQ_OLDEST_SECONDS: &str = "ironclad_dlq_oldest_age_seconds";
/// Counter, label `reason`: dead letters added.
pub const DLQ_ADDED_TOTAL: &str = "ironclad_dlq_added_total";
/// Counter: dead letters archived because the DLQ was full.
pub const DLQ_EVICTIONS_TOTAL: &str = "ironclad_dlq_evictions_total";
/// Counter: dead letters archived because their TTL passed.
pub const DLQ_EXPIRED_TOTAL: &str = "ironclad_dlq_expired_total";
/// Counter: dead letters sent back to retrying.
pub const DLQ_RETRIED_TOTAL: &str = "ironclad_dlq_retried_total";
/// Counter: dead letters archived by `dlq purge`.
pub const DLQ_PURGED_TOTAL: &str = "ironclad_dlq_purged_total";

/// Registers descriptions with the installed recorder.
// Long because it is a flat list, one `describe_*!` per metric above, in the
// same order; splitting it would only hide a metric from the list.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        SUBMIT_REJECTED_TOTAL,
        Unit::Count,
        "Submitted appends the store rejected, recorded in an emergency dump"
    );
    describe_counter!(
        QUARANTINED_RECORDS_TOTAL,
        Unit::Count,
        "Dump records a replay set aside in a quarantine file"
    );
    describe_gauge!(
        QUEUE_DEPTH_EVENTS,
        Unit::Count,
        "Events waiting in the ingest queue"
    );
    describe_gauge!(
        QUEUE_CAPACITY_EVENTS,
        Unit::Count,
        "Ingest queue capacity in events"
    );
    describe_gauge!(
        QUEUE_DEPTH_BYTES,
        Unit::Bytes,
        "Bytes waiting in the ingest queue"
    );
    describe_gauge!(
        QUEUE_CAPACITY_BYTES,
        Unit::Bytes,
        "Ingest queue capacity in bytes"
    );
    describe_counter!(REJECTED_TOTAL, Unit::Count, "Appends refused, by reason");
    describe_counter!(
        APPENDED_EVENTS_TOTAL,
        Unit::Count,
        "Events durably appended"
    );
    describe_histogram!(COMMIT_BATCH_EVENTS, Unit::Count, "Events per group commit");
    describe_histogram!(
        COMMIT_LATENCY_SECONDS,
        Unit::Seconds,
        "Group commit latency"
    );
    describe_histogram!(
        ACK_LATENCY_SECONDS,
        Unit::Seconds,
        "Enqueue to durable ack latency"
    );
    for (name, help) in [
        (
            DELIVERY_ATTEMPTS_TOTAL,
            "Delivery calls by batch result, per sink",
        ),
        (DELIVERY_DELIVERED_TOTAL, "Events delivered, per sink"),
        (
            DELIVERY_RETRIES_TOTAL,
            "Events scheduled for another attempt, per sink",
        ),
        (DELIVERY_DROPPED_TOTAL, "Events dead-lettered, per sink"),
        (
            DELIVERY_COALESCED_TOTAL,
            "Events coalesced (coalescing is not built yet)",
        ),
        (
            DELIVERY_CONFLICTS_TOTAL,
            "409 conflicts by resolution, per sink",
        ),
        (
            BREAKER_NOT_PERMITTED_TOTAL,
            "Calls the circuit breaker refused, per sink",
        ),
        (
            BREAKER_TRANSITIONS_TOTAL,
            "Circuit breaker transitions by target state, per sink",
        ),
        (DLQ_ADDED_TOTAL, "Dead letters added by reason, per sink"),
        (
            DLQ_EVICTIONS_TOTAL,
            "Dead letters archived because the DLQ was full",
        ),
        (
            DLQ_EXPIRED_TOTAL,
            "Dead letters archived because their TTL passed",
        ),
        (DLQ_RETRIED_TOTAL, "Dead letters sent back to retrying"),
        (DLQ_PURGED_TOTAL, "Dead letters archived by purge"),
    ] {
        describe_counter!(name, Unit::Count, help);
    }
    for (name, help) in [
        (
            DELIVERY_PENDING_EVENTS,
            "Retry rows the dispatcher holds, per sink",
        ),
        (
            DELIVERY_OLDEST_PENDING_SECONDS,
            "Age of the oldest pending event (not recorded yet)",
        ),
        (
            BREAKER_STATE,
            "Breaker state: 0 closed, 1 open, 2 half-open, 3 forced-open, 4 disabled",
        ),
        (
            BREAKER_FAILURE_RATE,
            "Failure rate over the breaker window, percent",
        ),
        (DLQ_SIZE, "Dead letters in the store, per sink"),
        (
            DLQ_OLDEST_SECONDS,
            "Age of the oldest dead letter, per sink",
        ),
    ] {
        describe_gauge!(name, help);
    }
    describe_histogram!(
        DELIVERY_BATCH_EVENTS,
        Unit::Count,
        "Events per delivery call"
    );
    describe_histogram!(
        DELIVERY_LATENCY_SECONDS,
        Unit::Seconds,
        "Append to sink acknowledgement latency"
    );
}
