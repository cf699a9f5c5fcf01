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

/// Registers descriptions with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
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
}
