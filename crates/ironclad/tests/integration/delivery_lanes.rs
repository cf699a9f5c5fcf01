//! Lanes against real parts (SPEC §4 "Lanes"): events that share an
//! ordering key (entity, else stream) are delivered in order, and a lane
//! that is failing blocks only itself. A real SQLite journal, the real
//! engine and `HttpSink`, and the loopback receiver answering 503 for every
//! event of entity `bad` (a per-event retry result) while the other
//! entities are accepted.

use crate::common;
use crate::delivery_harness;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::receiver::Schedule;
use delivery_harness as h;
use h::{Env, Expect, Knobs};
use ironclad::delivery::breaker::BreakerState;
use ironclad::delivery::lanes::lane_of;
use ironclad::model::Op;
use ironclad::store::delivery::DlqFilter;
use ironclad::{NewEvent, RecordedEvent};
use uuid::Uuid;

/// 503 for every event of entity `bad`, the default rule otherwise.
fn bad_entity_rule(e: &common::receiver::ReceivedEvent) -> u16 {
    if e.entity.as_deref() == Some("bad") {
        503
    } else {
        match e.event_type.as_str() {
            "conflict" => 409,
            "poison" => 400,
            _ => 200,
        }
    }
}

fn bad(i: usize) -> NewEvent {
    NewEvent::new("created", format!("{{\"bad\":{i}}}")).with_entity(Op::Event, "bad")
}

fn good(i: usize) -> NewEvent {
    NewEvent::new("created", format!("{{\"good\":{i}}}"))
        .with_entity(Op::Event, format!("good-{}", i % 5))
}

/// Waits until the row of the first `bad` event has failed at least once.
async fn wait_head_failed(env: &Env) {
    let deadline = Instant::now() + h::PATIENCE;
    loop {
        let rows = h::retry_rows(&**env.journal.store());
        if rows.iter().any(|r| r.lane == "e:bad" && r.attempts >= 1) {
            return;
        }
        assert!(Instant::now() < deadline, "the bad lane never failed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A lane answered 503 forever blocks only itself: every other lane's
/// events are delivered promptly and in order while the bad lane's stay
/// pending, its later events waiting behind its head; once the receiver
/// recovers, the bad lane drains in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_lane_blocks_only_itself() {
    let knobs = Knobs::default().retry(
        "delay_ms_base = 20\ndelay_ms_max = 200\nattempts_max = 1000\nelapsed_ms_max = 60000\nretry_after_ms_cap = 2000",
    );
    let env = Env::new(Schedule::default().event_rule(bad_entity_rule), knobs).await;
    h::append(&env.journal, "orders-0", vec![bad(0)]).await;
    let engine = env.start().await;
    wait_head_failed(&env).await;
    // Good traffic on five lanes, with more bad events in between, while the
    // bad head keeps failing.
    let mut appended_at: HashMap<String, Instant> = HashMap::new();
    for i in 0..100 {
        let stream = format!("orders-{}", i % 4);
        let mut events = vec![good(i)];
        if i % 10 == 0 {
            events.push(bad(i + 1));
        }
        h::append(&env.journal, &stream, events).await;
        appended_at.insert(format!("{{\"good\":{i}}}"), Instant::now());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bad_ids: HashSet<Uuid> = h::routed(&env.journal.reader(), &env.routes)
        .iter()
        .filter(|e| e.entity.as_deref() == Some("bad"))
        .map(|e| e.id)
        .collect();
    assert_eq!(bad_ids.len(), 11);
    let ctx = || h::receiver_summary(&env.receiver);
    let acc = h::wait_for(
        &env.journal,
        &env.routes,
        "good lanes delivered",
        &ctx,
        &|a| a.pending == bad_ids,
    )
    .await;
    assert_eq!(acc.delivered_total, 100);
    let applied: HashSet<Uuid> = env.receiver.applied().into_iter().collect();
    assert!(applied.is_disjoint(&bad_ids), "a 503'd event was applied");
    // The bad lane's rows: its head has failed; a later event was never
    // tried more often than an earlier one (it only ever goes along with
    // its head); no other lane holds a row.
    let rows = h::retry_rows(&**env.journal.store());
    assert!(rows.iter().all(|r| r.lane == "e:bad"), "{rows:?}");
    assert_eq!(rows.len(), 11);
    assert!(rows[0].attempts >= 1, "the head has failed: {:?}", rows[0]);
    for w in rows.windows(2) {
        assert!(
            w[1].attempts <= w[0].attempts,
            "an event was tried more often than the one before it in its lane: {w:?}"
        );
    }
    // Good events were not held up behind the bad lane: each was applied
    // within a few seconds of its append (the bad lane retries for as long
    // as the test runs).
    let by_payload: HashMap<Uuid, String> = h::routed(&env.journal.reader(), &env.routes)
        .into_iter()
        .map(|e| (e.id, e.payload.clone()))
        .collect();
    for r in env.receiver.requests() {
        for k in &r.applied_keys {
            let p = &by_payload[k];
            if let Some(t) = appended_at.get(p) {
                let late = r.received_at.saturating_duration_since(*t);
                assert!(
                    late < Duration::from_secs(3),
                    "good event {p} waited {late:?}: held up behind the bad lane"
                );
            }
        }
    }
    // Recovery: the bad lane drains, in order.
    env.receiver
        .set_schedule(Schedule::default().secret(h::SECRET.as_bytes()));
    h::wait_settled(&env.journal, &env.routes, &env.receiver).await;
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    let acc = env.check();
    assert_eq!(acc.delivered_total, 111);
    h::check_effectively_once(
        &env.journal,
        &env.routes,
        &env.receiver,
        &acc,
        &Expect {
            rule: &h::default_rule,
            timeout: Duration::from_millis(env.knobs.request_timeout_ms),
            other_dead_reasons: &[],
            resend_ok: &|_, _| false,
            archived: &HashSet::new(),
            requeued: &HashSet::new(),
        },
    );
}

/// With no retry budget at all the failed head is never retried, so the
/// lane's later events stay parked behind it, never sent, at attempt 0;
/// the other lanes flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_events_of_a_blocked_lane_are_parked_unsent() {
    let knobs =
        Knobs::default().budget("retry_ratio = 0.0\nretries_per_s_min = 0\nwindow_ms = 1000");
    let env = Env::new(Schedule::default().event_rule(bad_entity_rule), knobs).await;
    h::append(&env.journal, "orders-0", vec![bad(0)]).await;
    let engine = env.start().await;
    wait_head_failed(&env).await;
    for i in 0..40 {
        let mut events = vec![good(i)];
        if i % 8 == 0 {
            events.push(bad(i + 1));
        }
        h::append(&env.journal, &format!("orders-{}", i % 3), events).await;
    }
    let routed = h::routed(&env.journal.reader(), &env.routes);
    let bad_events: Vec<&RecordedEvent> = routed
        .iter()
        .filter(|e| e.entity.as_deref() == Some("bad"))
        .collect();
    let bad_ids: HashSet<Uuid> = bad_events.iter().map(|e| e.id).collect();
    let ctx = || h::receiver_summary(&env.receiver);
    h::wait_for(
        &env.journal,
        &env.routes,
        "good lanes delivered",
        &ctx,
        &|a| a.pending == bad_ids && a.delivered_total == 40,
    )
    .await;
    // Give the dispatcher time to (wrongly) send a parked event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    let rows = h::retry_rows(&**env.journal.store());
    assert_eq!(rows.len(), bad_events.len());
    assert_eq!(rows[0].position, bad_events[0].position);
    assert_eq!(rows[0].attempts, 1, "the head failed once: {:?}", rows[0]);
    for r in &rows[1..] {
        assert_eq!(r.attempts, 0, "parked, never sent: {r:?}");
        assert_eq!(r.lane, "e:bad");
    }
    let received: Vec<Uuid> = env
        .receiver
        .received_events()
        .into_iter()
        .filter(|e| bad_ids.contains(&e.idempotency_key))
        .map(|e| e.idempotency_key)
        .collect();
    assert_eq!(
        received,
        vec![bad_events[0].id],
        "only the head was ever sent, once"
    );
    let acc = env.check();
    assert_eq!(acc.pending, bad_ids);
    assert_eq!(acc.retrying, 1);
    h::check_lane_order(
        &common::read_everything(&env.journal.reader()),
        &env.receiver.applied(),
    );
    for e in &routed {
        if e.entity.as_deref() != Some("bad") {
            assert!(lane_of(e).starts_with("e:good-"));
        }
    }
}

/// Polls `cond` for up to `within`; false if it never held.
async fn eventually(within: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The breaker is per sink, but a failing lane alone must not open it for
/// every lane. When only the bad lane has work, each request carries only
/// its events, the receiver answers them all 503, and with the default
/// breaker (10 failures in a row) the sink's breaker opens: then new events
/// of healthy lanes wait out the open duration (5 s, doubling on re-open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_lane_does_not_open_the_breaker_for_the_others() {
    // Default breaker: consecutive_failures_threshold = 10, open_ms_base = 5000.
    let knobs = Knobs::default().breaker("");
    let env = Env::new(Schedule::default().event_rule(bad_entity_rule), knobs).await;
    h::append(&env.journal, "orders-0", vec![bad(0)]).await;
    let engine = env.start().await;
    let breaker = engine.breaker(h::SINK).expect("breaker");
    // Let the bad head fail alone a dozen times (retries every ≤ 50 ms).
    let head_failed_a_lot = eventually(Duration::from_secs(10), || {
        h::retry_rows(&**env.journal.store())
            .first()
            .is_some_and(|r| r.attempts >= 12)
            || breaker.state() != BreakerState::Closed
    })
    .await;
    assert!(head_failed_a_lot);
    let state_when_good_arrived = breaker.state();
    let start = Instant::now();
    for i in 0..20 {
        h::append(&env.journal, &format!("orders-{}", i % 4), vec![good(i)]).await;
    }
    let delivered = eventually(Duration::from_secs(3), || {
        h::lenient(&env.journal, &env.routes).is_some_and(|a| a.delivered_total == 20)
    })
    .await;
    assert!(
        delivered,
        "healthy lanes stalled for {:?} behind the failing lane: breaker {state_when_good_arrived:?} → {:?}, {}",
        start.elapsed(),
        breaker.state(),
        h::receiver_summary(&env.receiver)
    );
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    env.check();
}

/// A retry that the budget refuses must hold back only its own lane. Here
/// the budget allows no retries at all, so the failed `bad` head is due and
/// refused forever; a dead letter of another lane, requeued by
/// `dlq retry` (attempts 0: not a retry, needs no budget), must still go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_refused_retry_holds_back_only_its_lane() {
    let knobs =
        Knobs::default().budget("retry_ratio = 0.0\nretries_per_s_min = 0\nwindow_ms = 1000");
    let env = Env::new(Schedule::default().event_rule(bad_entity_rule), knobs).await;
    h::append(&env.journal, "orders-0", vec![bad(0)]).await;
    let engine = env.start().await;
    wait_head_failed(&env).await;
    let poison = NewEvent::new("poison", "{}").with_entity(Op::Event, "p");
    h::append(&env.journal, "orders-1", vec![poison]).await;
    let ctx = || h::receiver_summary(&env.receiver);
    h::wait_for(
        &env.journal,
        &env.routes,
        "poison dead-lettered",
        &ctx,
        &|a| a.dead.len() == 1,
    )
    .await;
    // The receiver now accepts `poison` (but still refuses `bad`).
    env.receiver.set_schedule(
        Schedule::default()
            .event_rule(|e| {
                if e.entity.as_deref() == Some("bad") {
                    503
                } else {
                    200
                }
            })
            .secret(h::SECRET.as_bytes()),
    );
    let moved = engine
        .dlq_retry(&DlqFilter::default())
        .await
        .expect("dlq retry");
    assert_eq!(moved, 1);
    let delivered = eventually(Duration::from_secs(5), || {
        h::lenient(&env.journal, &env.routes).is_some_and(|a| a.delivered_total == 1)
    })
    .await;
    let rows = h::retry_rows(&**env.journal.store());
    assert!(
        delivered,
        "the requeued event of lane e:p waits behind lane e:bad's refused retry: {rows:?}"
    );
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    let acc = env.check();
    assert_eq!(acc.dead.len(), 0);
    assert!(h::dlq_rows(&**env.journal.store()).is_empty());
}
