//! The dead-letter queue against real parts (SPEC §4 "Dead-letter queue"):
//! a SQLite journal in a temp dir, the real engine, `HttpSink` and janitor,
//! and the loopback receiver refusing `poison` (400) and `conflict` (409).
//! - The size limit: beyond `entries_max` the oldest entries are archived
//!   (cause `evicted`), never just deleted; the archive holds them whole.
//! - The TTL: entries older than `ttl_s` are archived (cause `expired`),
//!   and never before their time.
//! - `dlq retry` on a running engine, filtered and not, redelivers.
//!
//! Conservation counts archived entries as dead-lettered
//! (`common::accounting`).

use crate::common;
use crate::delivery_harness;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::receiver::Schedule;
use delivery_harness as h;
use h::{Env, Expect, Knobs};
use ironclad::delivery::archive::count_archived;
use ironclad::store::delivery::{DlqFilter, DlqReason};
use ironclad::NewEvent;
use uuid::Uuid;

/// `n` events of type `ty` on `orders-<k>`, each on its own append.
async fn append_typed(env: &Env, ty: &str, n: usize) {
    for i in 0..n {
        h::append(
            &env.journal,
            &format!("orders-{}", i % 3),
            vec![NewEvent::new(ty, format!("{{\"{ty}\":{i}}}"))],
        )
        .await;
    }
}

fn ids_of_type(env: &Env, ty: &str) -> HashSet<Uuid> {
    h::routed(&env.journal.reader(), &env.routes)
        .into_iter()
        .filter(|e| e.event_type == ty)
        .map(|e| e.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_size_limit_the_oldest_are_archived_as_evicted() {
    // Small batches: dead letters arrive over several settles, with
    // distinct failure times, so "oldest" means something.
    let knobs = Knobs::default()
        .events_max(4)
        .dlq("entries_max = 5\nttl_s = 604800\njanitor_interval_ms = 100");
    let env = Env::new(Schedule::default(), knobs).await;
    let engine = env.start().await;
    append_typed(&env, "poison", 20).await;
    append_typed(&env, "created", 10).await;
    let ctx = || h::receiver_summary(&env.receiver);
    h::wait_for(&env.journal, &env.routes, "DLQ trimmed to 5", &ctx, &|a| {
        a.pending.is_empty() && a.dead.len() <= 5 && a.dead_lettered() == 20
    })
    .await;
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    let acc = env.check();
    assert_eq!(acc.dead.len(), 5, "the janitor keeps exactly the limit");
    assert_eq!(acc.archived, 15);
    assert_eq!(acc.delivered_total, 10);
    assert_eq!(acc.dead_lettered(), 20);

    let archived = h::archived_entries(&env.dir);
    assert_eq!(archived.len(), 15, "each evicted entry is archived once");
    assert_eq!(count_archived(&env.dir, h::SINK).expect("count"), 15);
    let poison = ids_of_type(&env, "poison");
    let kept = h::dlq_rows(&**env.journal.store());
    let archived_ids: HashSet<Uuid> = archived.iter().map(|a| a.event_id).collect();
    let kept_ids: HashSet<Uuid> = kept.iter().map(|d| d.event_id).collect();
    assert!(archived_ids.is_disjoint(&kept_ids));
    assert_eq!(
        &archived_ids | &kept_ids,
        poison,
        "every dead letter is in the store or the archive"
    );
    for a in &archived {
        assert_eq!(a.sink, h::SINK);
        assert_eq!(a.archive_cause, "evicted");
        assert_eq!(a.reason, "permanent");
        assert!(a.attempts >= 1);
        let text = a.event.as_ref().expect("the archive keeps the event").get();
        let event: serde_json::Value = serde_json::from_str(text).expect("the event is JSON");
        assert_eq!(event["id"], a.event_id.to_string());
        assert_eq!(event["position"], a.position);
    }
    // The newest stay: every archived entry is older than every kept one.
    let newest_archived = archived
        .iter()
        .map(|a| (a.last_failure_unix_ms, a.position))
        .max()
        .expect("some archived");
    let oldest_kept = kept
        .iter()
        .map(|d| (d.last_failure_unix_ms, d.position))
        .min()
        .expect("some kept");
    assert!(
        newest_archived < oldest_kept,
        "evicted {newest_archived:?} is newer than kept {oldest_kept:?}"
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
            resend_ok: &|_, _| false,
            archived: &archived_ids,
            requeued: &HashSet::new(),
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_ttl_entries_are_archived_as_expired() {
    let knobs = Knobs::default().dlq("entries_max = 10000\nttl_s = 1\njanitor_interval_ms = 100");
    let env = Env::new(Schedule::default(), knobs).await;
    let engine = env.start().await;
    append_typed(&env, "poison", 6).await;
    append_typed(&env, "conflict", 4).await;
    append_typed(&env, "created", 5).await;
    let ctx = || h::receiver_summary(&env.receiver);
    h::wait_for(&env.journal, &env.routes, "DLQ expired", &ctx, &|a| {
        a.pending.is_empty() && a.dead.is_empty() && a.archived == 10
    })
    .await;
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    let acc = env.check();
    assert_eq!(acc.dead_lettered(), 10);
    assert_eq!(acc.delivered_total, 5);
    let archived = h::archived_entries(&env.dir);
    assert_eq!(archived.len(), 10);
    let types: HashMap<Uuid, String> = h::routed(&env.journal.reader(), &env.routes)
        .into_iter()
        .map(|e| (e.id, e.event_type))
        .collect();
    for a in &archived {
        assert_eq!(a.archive_cause, "expired");
        let want = match types[&a.event_id].as_str() {
            "poison" => "permanent",
            "conflict" => "conflict",
            other => panic!("a {other} event was dead-lettered"),
        };
        assert_eq!(a.reason, want);
        assert!(
            a.archived_unix_ms >= a.last_failure_unix_ms + 1000,
            "archived {} ms after its last failure, before the 1 s TTL",
            a.archived_unix_ms.saturating_sub(a.last_failure_unix_ms)
        );
    }
    let archived_ids: HashSet<Uuid> = archived.iter().map(|a| a.event_id).collect();
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
            archived: &archived_ids,
            requeued: &HashSet::new(),
        },
    );
}

/// `dlq retry` on a running engine: a filter by reason moves only those
/// entries back; they are delivered once the receiver accepts them; the
/// rest stay in the DLQ until retried too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_retry_on_a_running_engine_redelivers() {
    let env = Env::new(Schedule::default(), Knobs::default()).await;
    let engine = env.start().await;
    append_typed(&env, "poison", 5).await;
    append_typed(&env, "conflict", 3).await;
    append_typed(&env, "created", 4).await;
    let ctx = || h::receiver_summary(&env.receiver);
    h::wait_settled(&env.journal, &env.routes, &env.receiver).await;
    assert_eq!(h::dlq_rows(&**env.journal.store()).len(), 8);
    // The receiver now accepts everything.
    env.receiver.set_schedule(
        Schedule::default()
            .event_rule(|_| 200)
            .secret(h::SECRET.as_bytes()),
    );
    let before_retry = env.receiver.received_count() as u64;
    let conflicts = DlqFilter {
        reason: Some(DlqReason::Conflict),
        ..DlqFilter::default()
    };
    assert_eq!(engine.dlq_retry(&conflicts).await.expect("retry"), 3);
    let acc = h::wait_for(
        &env.journal,
        &env.routes,
        "conflicts delivered",
        &ctx,
        &|a| a.pending.is_empty() && a.delivered_total == 7,
    )
    .await;
    assert_eq!(acc.dead.len(), 5);
    let left = h::dlq_rows(&**env.journal.store());
    assert!(
        left.iter().all(|d| d.reason == DlqReason::Permanent),
        "{left:?}"
    );
    // Nothing to retry: a second identical call moves nothing.
    assert_eq!(engine.dlq_retry(&conflicts).await.expect("retry"), 0);
    assert_eq!(
        engine
            .dlq_retry(&DlqFilter::default())
            .await
            .expect("retry"),
        5
    );
    let acc = h::wait_for(&env.journal, &env.routes, "all delivered", &ctx, &|a| {
        a.pending.is_empty() && a.delivered_total == 12
    })
    .await;
    assert!(acc.dead.is_empty());
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    let acc = env.check();
    assert_eq!(acc.delivered_total, 12);
    let retried: HashSet<Uuid> = &ids_of_type(&env, "poison") | &ids_of_type(&env, "conflict");
    h::check_effectively_once(
        &env.journal,
        &env.routes,
        &env.receiver,
        &acc,
        &Expect {
            rule: &|_| 200,
            timeout: Duration::from_millis(env.knobs.request_timeout_ms),
            other_dead_reasons: &[],
            // The operator's retry explains the second send of a refused event.
            resend_ok: &|r, k| r.number <= before_retry && retried.contains(&k),
            archived: &HashSet::new(),
            requeued: &retried,
        },
    );
}

/// A sink that keeps failing: each event is tried exactly `attempts_max`
/// times (the first attempt included), then dead-lettered as
/// `max_attempts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_run_out_as_max_attempts() {
    let env = Env::new(Schedule::default(), Knobs::default().retry(h::RETRY_FAST)).await;
    env.receiver.down();
    let events = (0..10)
        .map(|i| NewEvent::new("created", format!("{{\"i\":{i}}}")))
        .collect();
    h::append(&env.journal, "orders-0", events).await;
    let engine = env.start().await;
    let ctx = || h::receiver_summary(&env.receiver);
    h::wait_for(&env.journal, &env.routes, "all dead-lettered", &ctx, &|a| {
        a.dead.len() == 10
    })
    .await;
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    let acc = env.check();
    assert_eq!(acc.delivered_total, 0);
    for d in h::dlq_rows(&**env.journal.store()) {
        assert_eq!(d.reason, DlqReason::MaxAttempts, "{d:?}");
        assert_eq!(d.attempts, 5, "{d:?}");
        assert_eq!(d.last_error, "HTTP 503");
        assert!(d.first_failure_unix_ms <= d.last_failure_unix_ms);
    }
    let mut receipts: HashMap<Uuid, usize> = HashMap::new();
    for e in env.receiver.received_events() {
        *receipts.entry(e.idempotency_key).or_default() += 1;
    }
    assert_eq!(receipts.len(), 10);
    assert!(
        receipts.values().all(|n| *n == 5),
        "each event is sent attempts_max = 5 times: {receipts:?}"
    );
    assert!(env.receiver.applied().is_empty());
}

/// Retrying past `elapsed_ms_max` since the first failure dead-letters as
/// `expired`, however many attempts remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_run_out_of_time_as_expired() {
    let knobs = Knobs::default().retry(
        "delay_ms_base = 50\ndelay_ms_max = 50\nattempts_max = 10000\nelapsed_ms_max = 300\nretry_after_ms_cap = 2000",
    );
    let env = Env::new(Schedule::default(), knobs).await;
    env.receiver.down();
    h::append_workload(&env.journal, 0..20, 0, Duration::ZERO).await;
    let engine = env.start().await;
    let ctx = || h::receiver_summary(&env.receiver);
    let acc = h::wait_for(&env.journal, &env.routes, "all dead-lettered", &ctx, &|a| {
        a.pending.is_empty()
    })
    .await;
    assert_eq!(acc.dead.len(), 18);
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    env.check();
    for d in h::dlq_rows(&**env.journal.store()) {
        assert_eq!(d.reason, DlqReason::Expired, "{d:?}");
        assert!(d.attempts >= 2, "retried until time ran out: {d:?}");
        // It gave up when the next retry (now + at most 50 ms) would have
        // passed first failure + 300 ms: not much earlier, and not later
        // than that plus one attempt's dispatch time.
        let span = d.last_failure_unix_ms - d.first_failure_unix_ms;
        assert!(
            span > 250 && span <= 300 + 250,
            "gave up {span} ms after the first failure with elapsed_ms_max 300: {d:?}"
        );
    }
    assert!(env.receiver.applied().is_empty());
}
