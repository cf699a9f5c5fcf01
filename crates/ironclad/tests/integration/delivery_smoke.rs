//! First end-to-end delivery check: a real journal, a real HTTP receiver on
//! loopback, the real engine.

use crate::common;

use std::time::Duration;

use common::receiver::{Receiver, Schedule};
use ironclad::delivery::config::DeliveryConfig;
use ironclad::delivery::engine::DeliveryEngine;
use ironclad::delivery::routes::Routes;
use ironclad::{ExpectedVersion, NewEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_is_delivered_and_accounted_for() {
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
events_max = 100
[[delivery.routes]]
streams = "orders-*"
sink = "hook"
"#,
        receiver.url()
    );
    let config = DeliveryConfig::from_toml_str(&toml).expect("config");
    let routes = Routes::compile(&config.routes).expect("routes");
    for i in 0..50u32 {
        let stream = if i % 5 == 0 {
            "other".to_string()
        } else {
            format!("orders-{}", i % 3)
        };
        let events = (0..10)
            .map(|j| NewEvent::new("created", format!("{{\"i\":{i},\"j\":{j}}}")))
            .collect();
        journal
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .expect("append");
    }
    let engine = DeliveryEngine::start(journal.clone(), config.clone())
        .await
        .expect("start");
    // One engine per journal: a second would deliver and count everything twice.
    match DeliveryEngine::start(journal.clone(), config.clone()).await {
        Err(ironclad::delivery::engine::StartError::AlreadyRunning) => {}
        Err(e) => panic!("expected AlreadyRunning, got {e}"),
        Ok(_) => panic!("a second engine on one journal must be refused"),
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let acc = common::accounting::check(&journal.reader(), &routes, "hook");
        if acc.pending.is_empty() && acc.delivered_total == 400 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered in time: {acc:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(engine.shutdown(Duration::from_secs(5)).await);
    let acc = common::accounting::check(&journal.reader(), &routes, "hook");
    assert_eq!(acc.appended, 400);
    assert_eq!(receiver.applied().len(), 400);
    // Shutdown releases the claim: a new engine starts and finds nothing to do.
    let again = DeliveryEngine::start(journal.clone(), config)
        .await
        .expect("restart");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(again.shutdown(Duration::from_secs(5)).await);
    assert_eq!(
        receiver.received_events().len(),
        400,
        "nothing was sent twice"
    );
    common::shutdown(&journal).await;
}

/// The store refuses to move a sink's cursor backwards, whatever a caller
/// asks: a settle that would is an error and changes nothing.
#[tokio::test]
async fn the_store_refuses_a_backwards_cursor() {
    use ironclad::store::delivery::{Settle, StateApplied, StateWrite};
    use ironclad::store::Store;
    let tmp = common::tempdir();
    let journal = common::open(common::fast_config(&common::data_dir(&tmp)));
    let StateApplied::Sink(sink_id) = journal
        .write_state(StateWrite::RegisterSink { name: "s".into() })
        .await
        .expect("register")
    else {
        panic!("registering returns the sink id");
    };
    let settle = |to: u64, delivered: u64| {
        StateWrite::Settle(Settle {
            sink_id,
            cursor_to: Some(to),
            delivered,
            ..Settle::default()
        })
    };
    journal.write_state(settle(10, 3)).await.expect("forward");
    let err = journal.write_state(settle(5, 1)).await;
    assert!(err.is_err(), "a backwards cursor must be refused: {err:?}");
    let row = journal.store().sinks().expect("sinks").remove(0);
    assert_eq!((row.cursor_position, row.delivered_total), (10, 3));
    common::shutdown(&journal).await;
}

/// `committed_head` is published before acknowledgements go out: whoever
/// holds an ack sees a head at or above the ack's position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_append_is_never_above_the_committed_head() {
    let tmp = common::tempdir();
    let journal = common::open(common::fast_config(&common::data_dir(&tmp)));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let j = journal.clone();
        tasks.push(tokio::spawn(async move {
            let head = j.committed_head();
            for i in 0..100 {
                let r = j
                    .append(
                        &format!("s-{t}"),
                        ExpectedVersion::Any,
                        vec![NewEvent::new("t", format!("{{\"i\":{i}}}"))],
                    )
                    .await
                    .expect("append");
                let pos = r.events[0].position;
                let seen = *head.borrow();
                assert!(
                    seen >= pos,
                    "acked position {pos} above committed head {seen}"
                );
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(*journal.committed_head().borrow(), 800);
    common::shutdown(&journal).await;
}
