//! Delivery against real parts (SPEC §4): a SQLite journal in a temp dir,
//! the real engine and `HttpSink`, and the loopback receiver of
//! `common::receiver` misbehaving on a schedule. Each scenario runs until
//! nothing is pending and then checks, besides conservation
//! (`common::accounting::check`):
//! - effectively-once: the receiver applied every delivered event exactly
//!   once and nothing else; an event reached it again only after a request
//!   the sender could not count as final for it;
//! - dead letters carry the reason their answer calls for (409 → conflict,
//!   400 → permanent) and nothing else is dead-lettered;
//! - within every lane, the receiver applied events in position order.
//!
//! Lanes are in `delivery_lanes.rs`; restart,
//! shutdown and store failures are in `delivery_recovery.rs`, the DLQ's
//! bounds in `delivery_dlq.rs`, the breaker in `delivery_breaker.rs`.

use crate::common;
use crate::delivery_harness;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::receiver::{ReceivedRequest, Schedule};
use delivery_harness as h;
use h::{Env, Expect, Knobs};
use ironclad::store::delivery::DlqReason;
use uuid::Uuid;

/// Workload size: 200 events, 180 routed, 10 `conflict` and 10 `poison`.
const EVENTS: usize = 200;
const ROUTED: u64 = 180;

/// What a scenario leaves for its own assertions.
struct Run {
    env: Env,
    requests: Vec<ReceivedRequest>,
    resent: HashSet<Uuid>,
}

/// Runs the workload against a receiver on `schedule`: a third appended
/// before the engine starts, the rest while it runs; `during` is called
/// right after the start. Waits until nothing is pending, stops the engine
/// and runs every common check.
async fn run_schedule(schedule: Schedule, knobs: Knobs, during: impl FnOnce(&Env)) -> Run {
    run_phased(schedule, knobs, during, |_| {}).await
}

/// [`run_schedule`] with `after` called once everything is appended.
async fn run_phased(
    schedule: Schedule,
    knobs: Knobs,
    during: impl FnOnce(&Env),
    after: impl FnOnce(&Env),
) -> Run {
    let env = Env::new(schedule, knobs).await;
    h::append_workload(&env.journal, 0..60, 0, Duration::ZERO).await;
    let engine = env.start().await;
    during(&env);
    h::append_workload(&env.journal, 60..EVENTS, 20, Duration::from_millis(15)).await;
    after(&env);
    h::wait_settled(&env.journal, &env.routes, &env.receiver).await;
    assert!(
        engine.shutdown(Duration::from_secs(10)).await,
        "an idle engine stops within the deadline"
    );
    let acc = env.check();
    assert_eq!(acc.appended, ROUTED);
    assert!(acc.pending.is_empty());
    let events = h::routed(&env.journal.reader(), &env.routes);
    let refused: HashSet<Uuid> = events
        .iter()
        .filter(|e| h::default_rule(e) != 200)
        .map(|e| e.id)
        .collect();
    assert_eq!(refused.len(), 20);
    assert_eq!(
        acc.dead, refused,
        "exactly the refused events are dead-lettered"
    );
    assert_eq!(acc.delivered_total, ROUTED - 20);
    let timeout = Duration::from_millis(env.knobs.request_timeout_ms);
    let resent = h::check_effectively_once(
        &env.journal,
        &env.routes,
        &env.receiver,
        &acc,
        &Expect {
            rule: &h::default_rule,
            timeout,
            other_dead_reasons: &[],
            resend_ok: &|_, _| false,
            archived: &HashSet::new(),
            requeued: &HashSet::new(),
        },
    );
    let requests = env.receiver.requests();
    Run {
        env,
        requests,
        resent,
    }
}

fn keys_of(requests: &[ReceivedRequest], pick: impl Fn(&ReceivedRequest) -> bool) -> HashSet<Uuid> {
    requests
        .iter()
        .filter(|r| pick(r))
        .flat_map(|r| r.event_keys.iter().copied())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perfect_receiver_refusals_go_to_the_dlq_once() {
    let run = run_schedule(Schedule::default(), Knobs::default(), |_| {}).await;
    // 409 and 400 are final: nothing is ever sent twice.
    assert!(run.resent.is_empty(), "resent: {:?}", run.resent);
    assert_eq!(run.env.receiver.duplicates(), 0);
    let dlq = h::dlq_rows(&**run.env.journal.store());
    let reasons: HashMap<DlqReason, usize> = dlq.iter().fold(HashMap::new(), |mut m, d| {
        *m.entry(d.reason).or_default() += 1;
        m
    });
    assert_eq!(reasons.get(&DlqReason::Conflict), Some(&10));
    assert_eq!(reasons.get(&DlqReason::Permanent), Some(&10));
    for d in &dlq {
        assert_eq!(d.attempts, 1, "a refusal is final at once: {d:?}");
        assert!(
            d.last_error.contains("HTTP"),
            "the error says what came back: {d:?}"
        );
    }
    assert!(h::retry_rows(&**run.env.journal.store()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_503s() {
    let run = run_schedule(
        Schedule::default().failure_rate(0.3, 7),
        Knobs::default(),
        |_| {},
    )
    .await;
    let failed = run
        .requests
        .iter()
        .filter(|r| r.status == Some(503))
        .count();
    assert!(failed > 0, "the schedule injected no 503");
    assert!(!run.resent.is_empty(), "503s must cause resends");
    // A 503 applies nothing, so nothing reaches the receiver's dedup.
    assert_eq!(run.env.receiver.duplicates(), 0);
    // Exactly the keys of failed requests were sent again.
    let failed_keys = keys_of(&run.requests, |r| r.status == Some(503));
    assert!(run.resent.is_subset(&failed_keys));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_spikes_within_the_timeout() {
    let run = run_schedule(
        Schedule::default().latency_every(3, Duration::from_millis(150)),
        Knobs::default(),
        |_| {},
    )
    .await;
    let slow = run
        .requests
        .iter()
        .filter(|r| {
            r.answered_at
                .is_some_and(|a| a.duration_since(r.received_at) >= Duration::from_millis(150))
        })
        .count();
    assert!(slow > 0, "no latency spike happened");
    assert!(
        run.resent.is_empty(),
        "slow but successful requests were resent"
    );
    assert_eq!(run.env.receiver.duplicates(), 0);
}

/// A receiver slower than the request timeout: the sender gives up and
/// sends the batch again. Before applying (the receiver's handler is
/// dropped with the connection, nothing applied) and after applying (the
/// hard case: applied, never acknowledged, so the resend is deduplicated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_beyond_the_timeout_is_retried_and_deduplicated() {
    let slow = Duration::from_millis(700);
    let run = run_phased(
        Schedule::default().latency_every(4, slow),
        Knobs::default().request_timeout_ms(250),
        // Applied, then too slow to answer: every request for a while.
        |env| {
            env.receiver.set_schedule(
                Schedule::default()
                    .latency_every(4, slow)
                    .answer_latency(slow)
                    .secret(h::SECRET.as_bytes()),
            )
        },
        |env| {
            env.receiver.set_schedule(
                Schedule::default()
                    .latency_every(4, slow)
                    .secret(h::SECRET.as_bytes()),
            )
        },
    )
    .await;
    let unanswered: Vec<&ReceivedRequest> = run
        .requests
        .iter()
        .filter(|r| {
            r.answered_at
                .is_none_or(|a| a.duration_since(r.received_at) >= slow)
        })
        .collect();
    assert!(!unanswered.is_empty(), "no request was slow");
    let applied_unanswered: HashSet<Uuid> = unanswered
        .iter()
        .flat_map(|r| r.applied_keys.iter().copied())
        .collect();
    assert!(
        !applied_unanswered.is_empty(),
        "no request applied its events and then timed out"
    );
    // Every key of a timed-out request was sent again; resends come only
    // from timed-out requests (a handler dropped before applying saw no
    // keys, so its events are resent without a trace of the first try).
    let slow_keys = keys_of(&run.requests, |r| {
        unanswered.iter().any(|u| u.number == r.number)
    });
    for k in &slow_keys {
        assert!(
            run.resent.contains(k),
            "key {k} of a timed-out request was never resent"
        );
    }
    assert!(run.resent.is_subset(&slow_keys));
    assert!(run.env.receiver.duplicates() >= applied_unanswered.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_with_retry_after_nothing_comes_back_early() {
    let run = run_schedule(
        Schedule::default().throttle(2..4, 1),
        Knobs::default(),
        |_| {},
    )
    .await;
    let throttled: Vec<&ReceivedRequest> = run
        .requests
        .iter()
        .filter(|r| r.status == Some(429))
        .collect();
    assert_eq!(throttled.len(), 2, "requests #2 and #3 are throttled");
    // Slack for the wall clock's millisecond rounding (the engine's clock)
    // against the receiver's monotonic one.
    let slack = Duration::from_millis(15);
    for t in &throttled {
        let asked = Duration::from_secs(1);
        for later in run.requests.iter().filter(|r| r.number > t.number) {
            let shared = later.event_keys.iter().any(|k| t.event_keys.contains(k));
            if shared {
                let gap = later.received_at.duration_since(t.received_at);
                assert!(
                    gap + slack >= asked,
                    "request #{} resent keys of 429'd #{} after {gap:?}, before the {asked:?} asked",
                    later.number,
                    t.number
                );
            }
        }
        assert!(
            run.resent
                .is_superset(&t.event_keys.iter().copied().collect()),
            "throttled keys are retried"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_window_delays_but_loses_nothing() {
    let run = run_schedule(Schedule::default(), Knobs::default(), |env| {
        env.receiver.outage_for(Duration::from_millis(700));
    })
    .await;
    let refused = run
        .requests
        .iter()
        .filter(|r| r.status == Some(503))
        .count();
    assert!(refused > 0, "the outage refused nothing");
    assert!(!run.resent.is_empty());
    assert_eq!(run.env.receiver.duplicates(), 0);
}

/// The hard case: the receiver applies the batch, then the connection is
/// reset, so the sender cannot know and must send it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_after_apply_is_deduplicated() {
    let run = run_schedule(Schedule::default().reset_every(4), Knobs::default(), |_| {}).await;
    let reset_keys = keys_of(&run.requests, |r| r.reset);
    assert!(!reset_keys.is_empty(), "no connection was reset");
    assert_eq!(
        run.resent, reset_keys,
        "exactly the keys of reset requests are sent again"
    );
    // Each key applied by a request that was then reset came back and was
    // applied again: the receiver's dedup, not the sender, kept it once.
    let mut applied_then_reset = 0;
    for r in run.requests.iter().filter(|r| r.reset) {
        for k in &r.applied_keys {
            applied_then_reset += 1;
            assert!(
                run.requests
                    .iter()
                    .any(|l| l.number > r.number && l.applied_keys.contains(k)),
                "key {k} applied by reset request #{} never came back",
                r.number
            );
        }
    }
    assert!(
        applied_then_reset > 0,
        "no reset request had applied anything"
    );
    assert!(run.env.receiver.duplicates() >= applied_then_reset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_before_apply_is_retried() {
    let run = run_schedule(
        Schedule::default().reset_every(3).reset_before_apply(),
        Knobs::default(),
        |_| {},
    )
    .await;
    let reset_keys = keys_of(&run.requests, |r| r.reset);
    assert!(!reset_keys.is_empty());
    assert_eq!(run.resent, reset_keys);
    assert_eq!(run.env.receiver.duplicates(), 0);
}
