//! Guards the ingest metrics (SPEC §9) through a globally installed
//! `metrics_util` DebuggingRecorder: appended events are counted exactly
//! (repeats excluded); rejections are counted by reason (`invalid`, `full`,
//! `wrong_expected_version`, `idempotency_conflict`); the commit-batch,
//! commit-latency and ack-latency histograms get one sample per commit or
//! per queued append; the queue capacity gauges equal the configuration and
//! the depth gauge returns to 0; a rejected `submit()` is counted in
//! `ironclad_dump_submit_rejected_total` by reason. One test only: the
//! recorder is global.

#[path = "integration/common/mod.rs"]
mod common;

use std::collections::HashMap;

use ironclad::metrics as m;
use ironclad::{AppendError, AppendStatus, ControlError, ExpectedVersion, NewEvent};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use uuid::Uuid;

const QUEUE_EVENTS: usize = 8;

fn ev(i: usize) -> NewEvent {
    NewEvent::new("metric.test", format!(r#"{{"i":{i}}}"#))
}

#[tokio::test]
async fn ingest_metrics_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("install the global recorder");

    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let mut cfg = common::fast_config(&dir);
    cfg.queue_events_max = QUEUE_EVENTS;
    cfg.limits.events_per_append_max = QUEUE_EVENTS;
    cfg.busy_timeout_ms = 60_000;
    let queue_bytes = cfg.queue_bytes_max;
    let journal = common::open(cfg);

    // Everything that reaches the writer: (appends, events).
    let (mut queued_appends, mut queued_events) = (0usize, 0usize);
    let mut appended = 0usize;
    let repeat_id = Uuid::new_v4();
    for i in 0..12 {
        let n = 1 + i % 3;
        let mut events: Vec<NewEvent> = (0..n).map(ev).collect();
        if i == 0 {
            events[0].id = Some(repeat_id);
        }
        let r = journal
            .append("m", ExpectedVersion::Any, events)
            .await
            .unwrap();
        assert_eq!(r.status, AppendStatus::Appended);
        queued_appends += 1;
        queued_events += n;
        appended += n;
    }
    // A repeat: reaches the writer, writes nothing.
    let r = journal
        .append("m", ExpectedVersion::Any, vec![ev(0).with_id(repeat_id)])
        .await
        .unwrap();
    assert_eq!(r.status, AppendStatus::AlreadyAppended);
    queued_appends += 1;
    queued_events += 1;
    // An idempotency conflict and a wrong expected version: also queued.
    let r = journal
        .append("m", ExpectedVersion::Any, vec![ev(99).with_id(repeat_id)])
        .await;
    assert!(matches!(r, Err(AppendError::IdempotencyConflict { .. })));
    let r = journal
        .append("m", ExpectedVersion::NoStream, vec![ev(1)])
        .await;
    assert!(matches!(r, Err(AppendError::WrongExpectedVersion(_))));
    queued_appends += 2;
    queued_events += 2;
    // A submitted append with a wrong expected version: recorded, counted.
    journal
        .submit("m", ExpectedVersion::NoStream, vec![ev(2)])
        .await
        .unwrap();
    let reported = journal.flush().await;
    assert!(matches!(
        reported,
        Err(ControlError::SubmitRejected { count: 1, .. })
    ));
    queued_appends += 1;
    queued_events += 1;
    // Invalid: refused before the queue.
    let r = journal
        .append("m", ExpectedVersion::Any, vec![NewEvent::new("t", "{")])
        .await;
    assert!(matches!(r, Err(AppendError::Invalid(_))));
    // Full: the writer is held on the SQLite lock while the queue is full.
    let lock = common::WriteLock::acquire(&dir);
    let held = journal
        .enqueue(
            "m",
            ExpectedVersion::Any,
            (0..QUEUE_EVENTS).map(ev).collect(),
        )
        .await
        .unwrap();
    let full = journal.try_append("m", ExpectedVersion::Any, vec![ev(0)]);
    assert!(matches!(full, Err(AppendError::Full { what: "events" })));
    lock.release();
    held.await.unwrap();
    queued_appends += 1;
    queued_events += QUEUE_EVENTS;
    appended += QUEUE_EVENTS;

    // flush is a barrier behind the writer's bookkeeping for earlier commits.
    journal.flush().await.unwrap();
    let stored = common::read_everything(&journal).len();
    assert_eq!(stored, appended);

    let mut counters: HashMap<String, u64> = HashMap::new();
    let mut gauges: HashMap<String, f64> = HashMap::new();
    let mut histograms: HashMap<String, Vec<f64>> = HashMap::new();
    let mut described = 0;
    for (key, _unit, desc, value) in snapshotter.snapshot().into_vec() {
        let k = key.key();
        let mut name = k.name().to_string();
        for label in k.labels() {
            name.push_str(&format!("{{{}={}}}", label.key(), label.value()));
        }
        if desc.is_some() && name.starts_with("ironclad_") {
            described += 1;
        }
        match value {
            DebugValue::Counter(v) => {
                counters.insert(name, v);
            }
            DebugValue::Gauge(v) => {
                gauges.insert(name, v.into_inner());
            }
            DebugValue::Histogram(v) => {
                histograms.insert(name, v.into_iter().map(|x| x.into_inner()).collect());
            }
        }
    }
    common::shutdown(&journal).await;

    assert_eq!(
        counters.get(m::APPENDED_EVENTS_TOTAL).copied(),
        Some(appended as u64),
        "{counters:?}"
    );
    let rejected = |reason: &str| {
        counters
            .get(&format!("{}{{reason={reason}}}", m::REJECTED_TOTAL))
            .copied()
            .unwrap_or(0)
    };
    assert!(rejected("invalid") >= 1, "{counters:?}");
    assert_eq!(rejected("invalid"), 1);
    assert_eq!(rejected("full"), 1);
    assert_eq!(
        rejected("wrong_expected_version"),
        2,
        "awaited and submitted"
    );
    let submit_rejected = format!(
        "{}{{reason=wrong_expected_version}}",
        m::SUBMIT_REJECTED_TOTAL
    );
    assert_eq!(
        counters.get(&submit_rejected).copied(),
        Some(1),
        "{counters:?}"
    );
    assert_eq!(rejected("idempotency_conflict"), 1);
    assert_eq!(rejected("store_error"), 0);

    let batch = &histograms[m::COMMIT_BATCH_EVENTS];
    assert!(!batch.is_empty());
    assert!(batch.iter().all(|&n| n >= 1.0));
    assert_eq!(
        batch.iter().sum::<f64>() as usize,
        queued_events,
        "every queued event in one batch sample"
    );
    let commit_latency = &histograms[m::COMMIT_LATENCY_SECONDS];
    assert_eq!(
        commit_latency.len(),
        batch.len(),
        "one latency sample per commit"
    );
    let ack = &histograms[m::ACK_LATENCY_SECONDS];
    assert_eq!(
        ack.len(),
        queued_appends,
        "one ack latency sample per queued append"
    );
    assert!(ack
        .iter()
        .chain(commit_latency)
        .all(|&s| s >= 0.0 && s.is_finite()));

    assert_eq!(
        gauges.get(m::QUEUE_CAPACITY_EVENTS).copied(),
        Some(QUEUE_EVENTS as f64)
    );
    assert_eq!(
        gauges.get(m::QUEUE_CAPACITY_BYTES).copied(),
        Some(queue_bytes as f64)
    );
    assert_eq!(
        gauges.get(m::QUEUE_DEPTH_EVENTS).copied(),
        Some(0.0),
        "queue drained"
    );
    assert_eq!(
        gauges.get(m::QUEUE_DEPTH_BYTES).copied(),
        Some(0.0),
        "queue drained"
    );
    assert!(described >= 5, "metrics carry descriptions");
}
