//! Delivery across restarts, shutdowns and store failures (SPEC §4 "Retry",
//! "Graceful shutdown", "At-least-once delivery with effectively-once
//! effect", "Conservation"), against a real SQLite journal in a temp dir,
//! the real engine and `HttpSink`, and the loopback receiver.
//! - Retry rows (attempts, times) and dead letters survive an engine and
//!   journal restart, and the new engine carries on from them: due retries
//!   first, attempts counted on, dead letters kept until retried.
//! - `shutdown` with a short deadline releases the batch in flight (returns
//!   false) and loses nothing; with a generous one it lets it settle.
//! - Delivery writes failing in the store lose and double-count nothing:
//!   the batch is simply sent again once the store recovers.

use crate::common;
use crate::delivery_harness;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::flaky::FlakyStore;
use common::receiver::Schedule;
use delivery_harness as h;
use h::{Env, Expect, Knobs};
use ironclad::delivery::engine::DeliveryEngine;
use ironclad::delivery::routes::Routes;
use ironclad::lockfile::DataDirLock;
use ironclad::model::Op;
use ironclad::store::delivery::{DlqFilter, DlqReason};
use ironclad::store::sqlite::{SqliteOptions, SqliteStore};
use ironclad::{Journal, NewEvent};
use uuid::Uuid;

/// Refuses `poison` (400) and `conflict` (409), answers 503 for `created`
/// events whose payload index is in `failing`, accepts the rest.
fn rule_failing(failing: HashSet<u64>) -> impl Fn(&common::receiver::ReceivedEvent) -> u16 {
    move |e| match e.event_type.as_str() {
        "conflict" => 409,
        "poison" => 400,
        _ if e.payload["i"]
            .as_u64()
            .is_some_and(|i| failing.contains(&i)) =>
        {
            503
        }
        _ => 200,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_dlq_rows_survive_a_restart() {
    let knobs = Knobs::default().retry(
        "delay_ms_base = 20\ndelay_ms_max = 100\nattempts_max = 1000\nelapsed_ms_max = 60000\nretry_after_ms_cap = 2000",
    );
    // Phase 1: every `created` event fails (503), refusals are dead-lettered.
    // One event, alone in its lane, will keep failing after the restart.
    let stubborn_index = 1_000;
    let all: HashSet<u64> = (0..100).chain([stubborn_index]).collect();
    let mut env = Env::new(Schedule::default().event_rule(rule_failing(all)), knobs).await;
    h::append_workload(&env.journal, 0..40, 0, Duration::ZERO).await;
    let stubborn_event = NewEvent::new("created", format!("{{\"i\":{stubborn_index}}}"))
        .with_entity(Op::Event, "stubborn");
    h::append(&env.journal, "orders-1", vec![stubborn_event]).await;
    let engine = env.start().await;
    let ctx = || h::receiver_summary(&env.receiver);
    // 37 routed: 2 conflict, 2 poison, 33 retrying (each tried at least once).
    h::wait_for(
        &env.journal,
        &env.routes,
        "every event failed once",
        &ctx,
        &|a| a.dead.len() == 4 && a.pending.len() == 33 && a.retrying == 33,
    )
    .await;
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    drop(engine);
    let retries_before = h::retry_rows(&**env.journal.store());
    let dlq_before = h::dlq_rows(&**env.journal.store());
    assert_eq!(retries_before.len(), 33);
    assert_eq!(dlq_before.len(), 4);
    env.check();

    env.reopen().await;
    assert_eq!(
        h::retry_rows(&**env.journal.store()),
        retries_before,
        "retry rows (attempts, times, errors) survive the restart"
    );
    assert_eq!(h::dlq_rows(&**env.journal.store()), dlq_before);
    env.check();
    // New events arrive while the engine is down.
    h::append_workload(&env.journal, 40..50, 0, Duration::ZERO).await;
    let requests_before = env.receiver.received_count() as u64;

    // Phase 2: the receiver recovers except for the stubborn event, whose
    // attempts must count on from before the restart.
    let stubborn = retries_before
        .iter()
        .find(|r| r.lane == "e:stubborn")
        .expect("stubborn row")
        .clone();
    let events = h::routed(&env.journal.reader(), &env.routes);
    let by_position: HashMap<u64, &ironclad::RecordedEvent> =
        events.iter().map(|e| (e.position, e)).collect();
    env.receiver.set_schedule(
        Schedule::default()
            .event_rule(rule_failing(HashSet::from([stubborn_index])))
            .secret(h::SECRET.as_bytes()),
    );
    // Past delay_ms_max: every retry is due when the new engine starts.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let start_ms = u64::try_from(ironclad::clock::now_us() / 1000).expect("clock");
    let engine = env.start().await;
    let ctx = || h::receiver_summary(&env.receiver);
    let stubborn_id = by_position[&stubborn.position].id;
    let acc = h::wait_for(
        &env.journal,
        &env.routes,
        "all but one delivered",
        &ctx,
        &|a| a.pending == HashSet::from([stubborn_id]),
    )
    .await;
    assert_eq!(acc.dead.len(), 5, "the 4 dead letters stay; 1 new conflict");
    // The stubborn event is tried again by the new engine: attempts count
    // on from the persisted row instead of starting over.
    let deadline = Instant::now() + h::PATIENCE;
    let row = loop {
        let row = h::retry_rows(&**env.journal.store());
        assert_eq!(row.len(), 1);
        assert!(
            row[0].attempts >= stubborn.attempts,
            "attempts went back after a restart: {} then {}",
            stubborn.attempts,
            row[0].attempts
        );
        if row[0].attempts > stubborn.attempts {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "the stubborn event was never retried"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(row[0].first_failure_unix_ms, stubborn.first_failure_unix_ms);
    // Due retries go before new events: each retry that was due when the
    // new engine started reached the receiver before any event appended
    // during the restart. A row is due when it and every earlier row of its
    // lane are (a lane is sent in order, from its head).
    let mut lane_blocked: HashSet<&str> = HashSet::new();
    let mut due: HashSet<u64> = HashSet::new();
    for r in &retries_before {
        if lane_blocked.contains(r.lane.as_str()) {
            continue;
        }
        if r.next_attempt_unix_ms <= start_ms {
            due.insert(r.position);
        } else {
            lane_blocked.insert(&r.lane);
        }
    }
    assert_eq!(due.len(), 33, "every retry is due after the restart");
    let new: HashSet<u64> = events
        .iter()
        .filter(|e| !retries_before.iter().any(|r| r.position == e.position))
        .filter(|e| !dlq_before.iter().any(|d| d.position == e.position))
        .map(|e| e.position)
        .collect();
    let mut first_seen: Vec<u64> = Vec::new();
    let mut seen = HashSet::new();
    let by_id: HashMap<Uuid, u64> = events.iter().map(|e| (e.id, e.position)).collect();
    for r in env
        .receiver
        .requests()
        .iter()
        .filter(|r| r.number > requests_before)
    {
        for k in &r.event_keys {
            if seen.insert(*k) {
                first_seen.push(by_id[k]);
            }
        }
    }
    let first_new = first_seen
        .iter()
        .position(|p| new.contains(p))
        .expect("new events were sent");
    assert!(
        first_seen[first_new..].iter().all(|p| !due.contains(p)),
        "a new event went out before a due retry: {first_seen:?}, due {due:?}"
    );

    // Phase 3: the receiver accepts everything; `dlq retry` on the running
    // engine redelivers the dead letters.
    env.receiver.set_schedule(
        Schedule::default()
            .event_rule(|_| 200)
            .secret(h::SECRET.as_bytes()),
    );
    h::wait_settled(&env.journal, &env.routes, &env.receiver).await;
    assert_eq!(
        h::dlq_rows(&**env.journal.store()).len(),
        5,
        "dead letters stay until retried"
    );
    let before_dlq_retry = env.receiver.received_count() as u64;
    let filter = DlqFilter {
        sink_id: Some(h::sink_id(&**env.journal.store())),
        ..DlqFilter::default()
    };
    assert_eq!(engine.dlq_retry(&filter).await.expect("dlq retry"), 5);
    let acc = h::wait_for(
        &env.journal,
        &env.routes,
        "dead letters redelivered",
        &ctx,
        &|a| a.pending.is_empty() && a.dead.is_empty(),
    )
    .await;
    assert_eq!(acc.delivered_total, 46);
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    let acc = env.check();
    let refused: HashSet<Uuid> = events
        .iter()
        .filter(|e| h::default_rule(e) != 200)
        .map(|e| e.id)
        .collect();
    h::check_effectively_once(
        &env.journal,
        &env.routes,
        &env.receiver,
        &acc,
        &Expect {
            rule: &|_| 200,
            timeout: Duration::from_millis(env.knobs.request_timeout_ms),
            other_dead_reasons: &[],
            resend_ok: &|r, k| r.number <= before_dlq_retry && refused.contains(&k),
            archived: &HashSet::new(),
            requeued: &refused,
        },
    );
    common::shutdown(&env.journal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_or_settles_the_batch_in_flight() {
    let knobs = Knobs::default().events_max(100).request_timeout_ms(10_000);
    let mut env = Env::new(
        Schedule::default().latency_every(1, Duration::from_secs(5)),
        knobs,
    )
    .await;
    h::append_workload(&env.journal, 0..30, 0, Duration::ZERO).await;
    let engine = env.start().await;
    wait_in_flight(&env, 1).await;
    let started = Instant::now();
    let stopped = engine.shutdown(Duration::from_millis(200)).await;
    let took = started.elapsed();
    assert!(!stopped, "a 5 s request cannot finish within 200 ms");
    assert!(
        took < Duration::from_secs(3),
        "shutdown waited {took:?} for a request it should have released"
    );
    drop(engine);
    // Released, not lost: the batch is pending, nothing is settled.
    let acc = env.check();
    assert_eq!(acc.pending.len(), 27);
    assert_eq!(acc.delivered_total, 0);
    let aborted = env.receiver.requests()[0].number;

    env.reopen().await;
    env.receiver
        .set_schedule(Schedule::default().secret(h::SECRET.as_bytes()));
    let engine = env.start().await;
    h::wait_settled(&env.journal, &env.routes, &env.receiver).await;

    // A generous deadline lets the batch in flight finish and settle.
    env.receiver.set_schedule(
        Schedule::default()
            .latency_every(1, Duration::from_secs(2))
            .secret(h::SECRET.as_bytes()),
    );
    let sent = env.receiver.received_count();
    // One append, so one batch.
    let events = (0..10)
        .map(|i| NewEvent::new("created", format!("{{\"late\":{i}}}")))
        .collect();
    h::append(&env.journal, "orders-1", events).await;
    wait_in_flight(&env, sent + 1).await;
    assert!(
        engine.shutdown(Duration::from_secs(10)).await,
        "the batch in flight finishes well within 10 s"
    );
    let acc = env.check();
    assert!(acc.pending.is_empty(), "the drained batch settled: {acc:?}");
    assert_eq!(acc.delivered_total, 24 + 10);
    let after = env.receiver.received_count();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        env.receiver.received_count(),
        after,
        "a stopped engine sends nothing"
    );
    h::check_effectively_once(
        &env.journal,
        &env.routes,
        &env.receiver,
        &acc,
        &Expect {
            rule: &h::default_rule,
            timeout: Duration::from_millis(env.knobs.request_timeout_ms),
            other_dead_reasons: &[],
            // The released batch is sent again after the restart.
            resend_ok: &|r, _| r.number == aborted,
            archived: &HashSet::new(),
            requeued: &HashSet::new(),
        },
    );
    common::shutdown(&env.journal).await;
}

/// Waits until the receiver holds request number `n` (1-based) unanswered.
async fn wait_in_flight(env: &Env, n: usize) {
    let deadline = Instant::now() + h::PATIENCE;
    while env.receiver.received_count() < n {
        assert!(Instant::now() < deadline, "request #{n} never arrived");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let r = &env.receiver.requests()[n - 1];
    assert!(r.answered_at.is_none(), "request #{n} was answered already");
}

/// A journal over the fault-injecting store, on a fresh temp dir.
fn flaky_journal(dir: &std::path::Path) -> (Journal<FlakyStore>, Arc<AtomicBool>) {
    let cfg = common::fast_config(dir);
    std::fs::create_dir_all(dir).expect("data dir");
    let lock = DataDirLock::acquire(dir).expect("lock");
    let fail = Arc::new(AtomicBool::new(false));
    let store = FlakyStore {
        inner: SqliteStore::open(SqliteOptions::from_config(&cfg)).expect("store"),
        fail: Arc::clone(&fail),
        fail_next: Arc::default(),
        gate: Arc::default(),
    };
    let journal = Journal::with_store(store, cfg, Some(lock)).expect("journal");
    (journal, fail)
}

/// The flaky journal, the receiver (first request slow, so the store fails
/// before the first settle), the config and routes.
async fn flaky_setup(
    dir: &std::path::Path,
) -> (
    Journal<FlakyStore>,
    Arc<AtomicBool>,
    common::receiver::Receiver,
    Knobs,
    Routes,
    DeliveryEngine<FlakyStore>,
) {
    let (journal, fail) = flaky_journal(dir);
    let receiver =
        h::receiver(Schedule::default().latency_every(1, Duration::from_millis(150))).await;
    let knobs = Knobs::default().events_max(10);
    let config = knobs.config(&receiver.url());
    let routes = Routes::compile(&config.routes).expect("routes");
    h::append_workload(&journal, 0..60, 0, Duration::ZERO).await;
    let engine = DeliveryEngine::start(journal.clone(), config)
        .await
        .expect("engine starts");
    fail.store(true, Ordering::SeqCst);
    // Then a fast receiver: only the store is in trouble.
    let deadline = Instant::now() + h::PATIENCE;
    while receiver.received_count() < 1 {
        assert!(Instant::now() < deadline, "no request");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    receiver.set_schedule(Schedule::default().secret(h::SECRET.as_bytes()));
    (journal, fail, receiver, knobs, routes, engine)
}

/// Delivery writes fail while batches are delivered: nothing is counted,
/// nothing is lost, and once the store recovers every event is settled
/// exactly once; the receiver saw resends only of batches sent before the
/// store recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_settles_lose_and_double_count_nothing() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let (journal, fail, receiver, knobs, routes, engine) = flaky_setup(&dir).await;
    let deadline = Instant::now() + h::PATIENCE;
    while receiver.duplicates() == 0 {
        assert!(
            Instant::now() < deadline,
            "a batch whose settle failed was never sent again: {}",
            h::receiver_summary(&receiver)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = h::lenient(&journal, &routes).expect("accounting");
    assert_eq!(
        during.delivered_total, 0,
        "a failed settle counted something"
    );
    assert!(during.dead.is_empty());
    assert_eq!(during.pending.len(), 54, "a failed settle lost something");
    let cleared = Instant::now();
    fail.store(false, Ordering::SeqCst);
    let acc = h::wait_settled(&journal, &routes, &receiver).await;
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    let acc2 = common::accounting::check(&journal.reader(), &routes, h::SINK);
    assert_eq!(acc.delivered, acc2.delivered);
    assert_eq!(acc2.delivered_total, 48, "each event counted once");
    assert_eq!(acc2.dead.len(), 6);
    let dlq = h::dlq_rows(&**journal.store());
    assert_eq!(dlq.len(), 6, "each refusal dead-lettered once");
    assert_eq!(
        dlq.iter()
            .filter(|d| d.reason == DlqReason::Conflict)
            .count(),
        3
    );
    // A request is resent when its own settle or the previous one (settles
    // are pipelined one batch deep) failed: both answered before the store
    // recovered.
    let last_before = receiver
        .requests()
        .iter()
        .filter(|r| r.answered_at.is_some_and(|a| a < cleared))
        .map(|r| r.number)
        .max()
        .unwrap_or(0);
    h::check_effectively_once(
        &journal,
        &routes,
        &receiver,
        &acc2,
        &Expect {
            rule: &h::default_rule,
            timeout: Duration::from_millis(knobs.request_timeout_ms),
            other_dead_reasons: &[],
            resend_ok: &|r, _| r.number <= last_before + 1,
            archived: &HashSet::new(),
            requeued: &HashSet::new(),
        },
    );
    journal
        .shutdown(Duration::from_secs(30))
        .await
        .expect("journal shutdown");
}

/// While the store refuses delivery writes the dispatcher must back off
/// (`SETTLE_FAILURE_PAUSE`, 500 ms), not resend the same batches to a
/// healthy receiver as fast as it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_does_not_cause_a_resend_storm() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let (journal, fail, receiver, _knobs, routes, engine) = flaky_setup(&dir).await;
    let before = receiver.received_count();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = receiver.received_count() - before;
    fail.store(false, Ordering::SeqCst);
    h::wait_settled(&journal, &routes, &receiver).await;
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    common::accounting::check(&journal.reader(), &routes, h::SINK);
    // A pause of 500 ms per failed settle allows about 2 batches per
    // pause (the failed one and the one pipelined behind it): ≤ 6 a second.
    assert!(
        during <= 12,
        "{during} requests in 1 s while the store failed: the same batches resent without backoff ({})",
        h::receiver_summary(&receiver)
    );
    journal
        .shutdown(Duration::from_secs(30))
        .await
        .expect("journal shutdown");
}
