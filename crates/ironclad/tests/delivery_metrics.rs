//! Guards the delivery, breaker and DLQ metrics (SPEC §9) through a
//! globally installed `metrics_util` DebuggingRecorder: after a run against
//! the loopback receiver with some refused events, the per-sink counters
//! equal the store's own accounting, and the breaker and DLQ gauges exist.
//! One test only: the recorder is global to this binary.

#[path = "integration/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::receiver::{Receiver, Schedule};
use ironclad::delivery::config::DeliveryConfig;
use ironclad::delivery::engine::DeliveryEngine;
use ironclad::delivery::routes::Routes;
use ironclad::metrics as m;
use ironclad::{ExpectedVersion, NewEvent};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_metrics_match_the_accounting() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("install the global recorder");

    let tmp = common::tempdir();
    let journal = common::open(common::fast_config(&common::data_dir(&tmp)));
    let receiver = Receiver::start(Schedule::default()).await;
    let toml = format!(
        r#"
[[delivery.sinks]]
name = "hook"
kind = "http"
url = "{}"
secret = "0123456789abcdef0123456789abcdef"
[delivery.sinks.batch]
events_max = 10
[delivery.dlq]
janitor_interval_ms = 100
[[delivery.routes]]
streams = "*"
sink = "hook"
"#,
        receiver.url()
    );
    let config = DeliveryConfig::from_toml_str(&toml).expect("config");
    let routes = Routes::compile(&config.routes).expect("routes");
    // 40 events, of which 4 are refused with 400 ("poison") and 2 with 409.
    for i in 0..40u32 {
        let kind = match i % 20 {
            3 | 11 => "poison",
            7 => "conflict",
            _ => "ok",
        };
        journal
            .append(
                &format!("s-{}", i % 4),
                ExpectedVersion::Any,
                vec![NewEvent::new(kind, format!("{{\"i\":{i}}}"))],
            )
            .await
            .expect("append");
    }
    let engine = DeliveryEngine::start(journal.clone(), config)
        .await
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(20);
    let acc = loop {
        let acc = common::accounting::check(&journal.reader(), &routes, "hook");
        if acc.pending.is_empty() {
            break acc;
        }
        assert!(Instant::now() < deadline, "not settled in time: {acc:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Let the janitor publish the DLQ gauges once after the last settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(engine.shutdown(Duration::from_secs(5)).await);
    assert_eq!((acc.delivered_total, acc.dead_lettered()), (34, 6));

    let mut counters: HashMap<String, u64> = HashMap::new();
    let mut gauges: HashMap<String, f64> = HashMap::new();
    let mut histograms: HashMap<String, usize> = HashMap::new();
    for (key, _unit, _desc, value) in snapshotter.snapshot().into_vec() {
        let k = key.key();
        let mut labels: Vec<String> = k
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = if labels.is_empty() {
            k.name().to_string()
        } else {
            format!("{}{{{}}}", k.name(), labels.join(","))
        };
        match value {
            DebugValue::Counter(v) => {
                counters.insert(name, v);
            }
            DebugValue::Gauge(v) => {
                gauges.insert(name, v.into_inner());
            }
            DebugValue::Histogram(v) => {
                histograms.insert(name, v.len());
            }
        }
    }
    let c = |name: &str| counters.get(name).copied().unwrap_or(0);
    assert_eq!(
        c(&format!("{}{{sink=hook}}", m::DELIVERY_DELIVERED_TOTAL)),
        acc.delivered_total,
        "{counters:?}"
    );
    assert_eq!(
        c(&format!(
            "{}{{reason=permanent,sink=hook}}",
            m::DLQ_ADDED_TOTAL
        )),
        4,
        "{counters:?}"
    );
    assert_eq!(
        c(&format!(
            "{}{{reason=conflict,sink=hook}}",
            m::DLQ_ADDED_TOTAL
        )),
        2
    );
    assert_eq!(
        c(&format!(
            "{}{{resolution=dead_lettered,sink=hook}}",
            m::DELIVERY_CONFLICTS_TOTAL
        )),
        2
    );
    assert_eq!(c(&format!("{}{{sink=hook}}", m::DELIVERY_DROPPED_TOTAL)), 6);
    // Every request was answered 200 (with per-event refusals): one
    // "delivered" attempt per batch, no retries.
    let attempts = c(&format!(
        "{}{{result=delivered,sink=hook}}",
        m::DELIVERY_ATTEMPTS_TOTAL
    ));
    assert_eq!(attempts as usize, receiver.requests().len(), "{counters:?}");
    assert_eq!(c(&format!("{}{{sink=hook}}", m::DELIVERY_RETRIES_TOTAL)), 0);
    assert_eq!(
        histograms.get(&format!("{}{{sink=hook}}", m::DELIVERY_BATCH_EVENTS)),
        Some(&(attempts as usize))
    );
    assert_eq!(
        histograms.get(&format!("{}{{sink=hook}}", m::DELIVERY_LATENCY_SECONDS)),
        Some(&(acc.delivered_total as usize)),
        "one latency sample per delivered event"
    );
    assert_eq!(
        gauges.get(&format!("{}{{sink=hook}}", m::BREAKER_STATE)),
        Some(&0.0)
    );
    assert_eq!(
        gauges.get(&format!("{}{{sink=hook}}", m::DLQ_SIZE)),
        Some(&6.0)
    );
    common::shutdown(&journal).await;
}
