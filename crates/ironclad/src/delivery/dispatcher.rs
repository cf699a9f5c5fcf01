//! The dispatcher: one task per sink, a thin shell around the pure parts.
//!
//! Each turn it (1) asks the breaker for a permit, (2) plans a batch: due
//! lane heads first (retries spend the retry budget), then new events from
//! the cursor, parking those whose lane is blocked, (3) sends the batch,
//! (4) settles the outcome through the journal's single writer, and only
//! then (5) updates its in-memory mirror. The store is the truth: after any
//! settle failure the dispatcher reloads from it, and an unsettled batch is
//! simply sent again (at-least-once; receivers dedupe by idempotency key).
//!
//! Limits: a batch is at most `events_max` events and `bytes_max` bytes; a
//! turn scans at most [`SCAN_EVENTS_MAX_FACTOR`]×`events_max` events; new
//! events are only taken while the sink has fewer than `retry_rows_max`
//! retry rows; a call is abandoned after `request_timeout_ms` + 1 s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::clock::now_us;
use crate::delivery::breaker::{BreakerState, CircuitBreaker};
use crate::delivery::budget::RetryBudget;
use crate::delivery::classify::Outcome;
use crate::delivery::config::SinkConfig;
use crate::delivery::lanes::{lane_of, PendingRetries};
use crate::delivery::routes::Routes;
use crate::delivery::settle::{settle_batch, InFlight, Tally};
use crate::delivery::sink::{Sink, SinkResponse};
use crate::error::{ControlError, StoreError};
use crate::journal::Journal;
use crate::metrics as m;
use crate::model::RecordedEvent;
use crate::store::delivery::{DeliveryWrite, DlqReason, RetryRow, Settle};
use crate::store::Store;

/// A turn scans at most this many times `events_max` new events, so a sink
/// whose routes match little of the log still makes bounded progress.
pub const SCAN_EVENTS_MAX_FACTOR: usize = 4;

/// How often an idle dispatcher looks for new events even when no commit
/// wakes it (it also wakes on every commit, through
/// [`Journal::committed_head`]).
pub const IDLE_POLL: Duration = Duration::from_millis(100);

/// How long a dispatcher backs off after its settle failed.
const SETTLE_FAILURE_PAUSE: Duration = Duration::from_millis(500);

/// Rough per-event overhead of the batch body beyond payload and metadata,
/// used for the `bytes_max` bound.
const EVENT_OVERHEAD_BYTES: usize = 400;

/// How the engine asks dispatchers to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Keep going.
    Run,
    /// Start no new batch; let the one in flight finish and settle.
    Drain,
    /// Drop the batch in flight now; it stays pending and is sent again
    /// after the next start.
    Abort,
}

/// What the engine shares with one sink's dispatcher.
pub struct SinkRuntime {
    /// The sink's configuration.
    pub config: SinkConfig,
    /// The store's id for it.
    pub sink_id: i64,
    /// The destination.
    pub sink: Arc<dyn Sink>,
    /// Its breaker.
    pub breaker: Arc<CircuitBreaker>,
    /// Set to make the dispatcher reload its state from the store (after a
    /// `dlq retry`).
    pub reload: AtomicBool,
    /// Wakes an idle dispatcher.
    pub wake: Notify,
    /// The cursor the dispatcher last settled (for status while running).
    pub cursor: AtomicU64,
    /// Retry rows the dispatcher holds.
    pub retry_rows: AtomicU64,
}

/// Loads a sink's state: its cursor and every retry row.
fn load_state<S: Store>(store: &S, sink_id: i64) -> Result<(u64, PendingRetries), StoreError> {
    let cursor = store
        .sinks()?
        .into_iter()
        .find(|s| s.sink_id == sink_id)
        .map_or(0, |s| s.cursor_position);
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let page = store.retry_rows(sink_id, after, 10_000)?;
        let Some(last) = page.last() else { break };
        after = last.position;
        rows.extend(page);
    }
    Ok((cursor, PendingRetries::from_rows(rows)))
}

/// One planned batch.
#[derive(Default)]
struct Plan {
    events: Vec<RecordedEvent>,
    items: Vec<InFlight>,
    /// New events that wait behind a blocked lane.
    parked: Vec<RetryRow>,
    /// The cursor after this batch, when it moves.
    cursor_to: Option<u64>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.parked.is_empty() && self.cursor_to.is_none()
    }
}

/// What a turn asks of [`plan_batch`].
struct PlanAsk {
    /// The sink's cursor.
    cursor: u64,
    /// Due retry rows to send, in order (budget already spent).
    due: Vec<u64>,
    /// Whether to take new events after the retries.
    allow_new: bool,
    now_unix_ms: u64,
}

/// Reads what the plan needs. Blocking: runs on the blocking pool.
fn plan_batch<S: Store>(
    store: &S,
    rt: &SinkRuntime,
    routes: &Routes,
    pending: &PendingRetries,
    ask: &PlanAsk,
) -> Result<Plan, StoreError> {
    let PlanAsk {
        cursor,
        ref due,
        allow_new,
        now_unix_ms,
    } = *ask;
    let cfg = &rt.config;
    let mut plan = Plan::default();
    let mut bytes = 0usize;
    let size = |e: &RecordedEvent| {
        e.payload.len()
            + e.metadata
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + EVENT_OVERHEAD_BYTES
    };
    for &p in due {
        let Some(row) = pending.get(p) else { continue };
        let Some(event) = store.event_at(p)? else {
            return Err(StoreError::Corrupt(format!(
                "sink {} has a retry row for position {p}, which holds no event",
                cfg.name
            )));
        };
        let b = size(&event);
        if !plan.events.is_empty() && bytes + b > cfg.batch.bytes_max {
            break;
        }
        bytes += b;
        plan.items.push(InFlight {
            position: p,
            event_id: event.id,
            lane: row.lane.clone(),
            prior: Some(row.clone()),
        });
        plan.events.push(event);
    }
    let room = cfg.batch.events_max.saturating_sub(plan.events.len());
    if room == 0 || !allow_new || pending.len() >= cfg.retry_rows_max {
        return Ok(plan);
    }
    // Read in chunks of the room left, so a sink whose routes match most
    // events reads about one batch, and one that matches little still scans
    // at most SCAN_EVENTS_MAX_FACTOR batches' worth per turn.
    let scan_max = cfg.batch.events_max * SCAN_EVENTS_MAX_FACTOR;
    let mut scanned = 0usize;
    let mut next = cursor.saturating_add(1);
    let mut parked_lanes = std::collections::HashSet::new();
    let rows_room = cfg.retry_rows_max - pending.len();
    'scan: while scanned < scan_max {
        let room = cfg
            .batch
            .events_max
            .saturating_sub(plan.events.len())
            .max(1);
        let chunk = store.read_all(next, room.min(scan_max - scanned))?;
        let Some(last) = chunk.last() else { break };
        next = last.position.saturating_add(1);
        scanned += chunk.len();
        for event in chunk {
            if !routes.matches(&cfg.name, &event.stream) {
                plan.cursor_to = Some(event.position);
                continue;
            }
            let lane = lane_of(&event);
            if pending.is_blocked(&lane) || parked_lanes.contains(&lane) {
                if plan.parked.len() >= rows_room {
                    break 'scan;
                }
                plan.parked.push(RetryRow {
                    position: event.position,
                    lane: lane.clone(),
                    attempts: 0,
                    first_failure_unix_ms: now_unix_ms,
                    next_attempt_unix_ms: 0,
                    last_error: "waiting behind an earlier event of its lane".into(),
                });
                parked_lanes.insert(lane);
                plan.cursor_to = Some(event.position);
                continue;
            }
            let b = size(&event);
            if plan.events.len() >= cfg.batch.events_max
                || (!plan.events.is_empty() && bytes + b > cfg.batch.bytes_max)
            {
                break 'scan;
            }
            bytes += b;
            plan.cursor_to = Some(event.position);
            plan.items.push(InFlight {
                position: event.position,
                event_id: event.id,
                lane,
                prior: None,
            });
            plan.events.push(event);
        }
        if plan.events.len() >= cfg.batch.events_max {
            break;
        }
    }
    Ok(plan)
}

fn unix_ms() -> u64 {
    u64::try_from(now_us() / 1000).unwrap_or(0)
}

/// Sends `events`, giving up after the request timeout plus a second, or
/// when told to abort. `None` means aborted: nothing is settled.
async fn send(
    rt: &SinkRuntime,
    events: &[RecordedEvent],
    stop: &mut watch::Receiver<StopMode>,
) -> Option<SinkResponse> {
    let limit = Duration::from_millis(rt.config.request_timeout_ms) + Duration::from_secs(1);
    let call = tokio::time::timeout(limit, rt.sink.deliver(events));
    tokio::pin!(call);
    loop {
        tokio::select! {
            r = &mut call => {
                return Some(r.unwrap_or_else(|_| SinkResponse::failed(
                    Outcome::Retry { retry_after_ms: None },
                    format!("no answer within {} ms", limit.as_millis()),
                )));
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() == StopMode::Abort {
                    return None;
                }
            }
        }
    }
}

fn record_transition(sink: &str, t: Option<crate::delivery::breaker::Transition>) {
    if let Some(t) = t {
        metrics::counter!(m::BREAKER_TRANSITIONS_TOTAL, "sink" => sink.to_string(), "to" => t.to.as_str())
            .increment(1);
        tracing::info!(sink, from = t.from.as_str(), to = t.to.as_str(), reason = ?t.reason, "circuit breaker transition");
    }
}

/// A settle on its way to the store, with what to record once it commits.
struct Settling {
    write: tokio::task::JoinHandle<Result<(), ControlError>>,
    tally: Option<(Tally, Vec<f64>)>,
    dead_letters: usize,
}

/// What awaiting a settle found.
enum Settled {
    /// Committed (or there was nothing to commit).
    Ok,
    /// The journal is shutting down: stop.
    Stop,
    /// The store failed: the mirror is stale, reload it.
    Reload,
}

/// Waits for the previous settle and records its metrics once committed.
async fn finish(name: &str, settling: Option<Settling>, dlq_added: &Notify) -> Settled {
    let Some(s) = settling else {
        return Settled::Ok;
    };
    match s.write.await {
        Ok(Ok(())) => {}
        Ok(Err(ControlError::ShutDown | ControlError::WriterGone)) | Err(_) => {
            return Settled::Stop
        }
        Ok(Err(e)) => {
            tracing::error!(sink = %name, error = %e, "cannot record delivery outcome; the batch will be sent again");
            return Settled::Reload;
        }
    }
    if let Some((tally, ages_s)) = s.tally {
        let label = || name.to_string();
        metrics::counter!(m::DELIVERY_DELIVERED_TOTAL, "sink" => label())
            .increment(tally.delivered);
        metrics::counter!(m::DELIVERY_RETRIES_TOTAL, "sink" => label()).increment(tally.retried);
        for (reason, n) in &tally.dead_lettered {
            metrics::counter!(m::DLQ_ADDED_TOTAL, "sink" => label(), "reason" => reason.as_str())
                .increment(*n);
            metrics::counter!(m::DELIVERY_DROPPED_TOTAL, "sink" => label()).increment(*n);
            if *reason == DlqReason::Conflict {
                metrics::counter!(m::DELIVERY_CONFLICTS_TOTAL, "sink" => label(), "resolution" => "dead_lettered")
                    .increment(*n);
            }
        }
        let latency = metrics::histogram!(m::DELIVERY_LATENCY_SECONDS, "sink" => label());
        for age in ages_s {
            latency.record(age);
        }
    }
    if s.dead_letters > 0 {
        dlq_added.notify_one();
    }
    Settled::Ok
}

/// Runs one sink's dispatcher until told to stop or the journal shuts down.
///
/// Settles overlap planning: batch N's settle commits while batch N+1's
/// events are read, and N+1 is only sent once N's settle has committed, so
/// the cursor moves in order and at most one sent batch is unsettled. The
/// in-memory mirror is updated when a settle is handed to the writer; if
/// that settle then fails, the mirror is dropped and reloaded from the
/// store, and batch N is sent again.
///
/// Cancel-safe: dropping it leaves any batch in flight unsettled, so it is
/// sent again later.
pub async fn run<S: Store>(
    journal: Journal<S>,
    rt: Arc<SinkRuntime>,
    routes: Arc<Routes>,
    mut stop: watch::Receiver<StopMode>,
    dlq_added: Arc<Notify>,
) {
    let name = rt.config.name.clone();
    let store = Arc::clone(journal.store());
    let mut budget = match RetryBudget::new(&rt.config.budget) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(sink = %name, error = %e, "invalid retry budget; dispatcher not started");
            return;
        }
    };
    let mut state: Option<(u64, PendingRetries)> = None;
    let mut settling: Option<Settling> = None;
    let mut head = journal.committed_head();
    let mut idle = false;
    // Consecutive failed settles, for the back-off before reloading.
    let mut reloads: u32 = 0;
    // Waits for the previous settle; on a failed one, backs off and starts
    // the turn again from a reloaded mirror (`state` is `None` by then).
    macro_rules! settle_previous {
        () => {
            match finish(&name, settling.take(), &dlq_added).await {
                Settled::Stop => return,
                Settled::Reload => {
                    reload_pause(&rt, &mut stop, &mut reloads).await;
                    continue;
                }
                Settled::Ok => {}
            }
        };
    }
    loop {
        if *stop.borrow() != StopMode::Run {
            // Drain: the last settle must commit before we go.
            let _ = finish(&name, settling.take(), &dlq_added).await;
            return;
        }
        if rt.reload.swap(false, Ordering::AcqRel) {
            match finish(&name, settling.take(), &dlq_added).await {
                Settled::Stop => return,
                Settled::Ok | Settled::Reload => state = None,
            }
        }
        let (cursor, pending) = match state.take() {
            Some(s) => s,
            None => {
                let st = Arc::clone(&store);
                let id = rt.sink_id;
                match tokio::task::spawn_blocking(move || load_state(&*st, id)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::error!(sink = %name, error = %e, "cannot load delivery state; retrying");
                        wait(&rt, &mut stop, SETTLE_FAILURE_PAUSE).await;
                        continue;
                    }
                    Err(_) => return,
                }
            }
        };
        rt.cursor.store(cursor, Ordering::Relaxed);
        rt.retry_rows.store(pending.len() as u64, Ordering::Relaxed);
        metrics::gauge!(m::DELIVERY_PENDING_EVENTS, "sink" => name.clone())
            .set(pending.len() as f64);
        let now = unix_ms();
        record_transition(&name, rt.breaker.poll(now));
        metrics::gauge!(m::BREAKER_STATE, "sink" => name.clone())
            .set(f64::from(rt.breaker.state_code()));
        let permit = match rt.breaker.try_acquire_owned(now) {
            Ok(p) => p,
            Err(_) => {
                metrics::counter!(m::BREAKER_NOT_PERMITTED_TOTAL, "sink" => name.clone())
                    .increment(1);
                settle_previous!();
                state = Some((cursor, pending));
                wait(&rt, &mut stop, Duration::from_millis(50)).await;
                continue;
            }
        };
        // Retries first: due lane heads, each retry spending the budget.
        // The budget counts retry *requests* (as Finagle's does): a batch
        // that carries retries spends one token, however many it carries.
        // Refused, the batch keeps only rows that are not retries (parked
        // rows and requeued dead letters), skipping every lane whose head is
        // a retry so that nothing overtakes it; other lanes still go.
        let candidates = pending.due(now, rt.config.batch.events_max);
        let has_retry = candidates
            .iter()
            .any(|p| pending.get(*p).is_some_and(|r| r.attempts > 0));
        let retries_allowed = !has_retry || budget.try_spend_retry(now);
        let mut due = Vec::with_capacity(candidates.len());
        let mut refused: std::collections::HashSet<&str> = Default::default();
        for p in candidates {
            let Some(row) = pending.get(p) else { continue };
            if refused.contains(row.lane.as_str()) {
                continue;
            }
            if row.attempts > 0 && !retries_allowed {
                refused.insert(row.lane.as_str());
                continue;
            }
            due.push(p);
        }
        drop(refused);
        if idle && rt.config.batch.linger_ms > 0 {
            // Work may have just arrived after a quiet spell: linger so the
            // batch fills.
            tokio::time::sleep(Duration::from_millis(rt.config.batch.linger_ms)).await;
        }
        // A HalfOpen trial call carries due retries only, when there are
        // any: if it fails, new events would only be parked behind them.
        let allow_new = due.is_empty() || permit.state() != BreakerState::HalfOpen;
        let (st, rt2, routes2) = (Arc::clone(&store), Arc::clone(&rt), Arc::clone(&routes));
        let planned = tokio::task::spawn_blocking(move || {
            let ask = PlanAsk {
                cursor,
                due,
                allow_new,
                now_unix_ms: now,
            };
            let plan = plan_batch(&*st, &rt2, &routes2, &pending, &ask);
            (plan, pending)
        })
        .await;
        let Ok((plan, mut pending)) = planned else {
            return;
        };
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(sink = %name, error = %e, "cannot read events to deliver; retrying");
                drop(permit);
                state = Some((cursor, pending));
                wait(&rt, &mut stop, SETTLE_FAILURE_PAUSE).await;
                continue;
            }
        };
        if plan.is_empty() {
            drop(permit);
            settle_previous!();
            idle = true;
            // Something due but held back (budget) waits a full poll, not a
            // spin; otherwise wake when the next retry is due.
            let pause = pending.next_due_unix_ms().map_or(IDLE_POLL, |d| {
                if d <= now {
                    IDLE_POLL
                } else {
                    Duration::from_millis(d - now).min(IDLE_POLL)
                }
            });
            state = Some((cursor, pending));
            // New events wake us at once; otherwise the next due retry does.
            tokio::select! {
                _ = wait(&rt, &mut stop, pause.max(Duration::from_millis(1))) => {}
                changed = head.changed() => {
                    if changed.is_err() {
                        return; // The writer is gone: nothing new can come.
                    }
                }
            }
            continue;
        }
        idle = false;
        // The previous batch's settle commits before this batch is sent:
        // settles stay in order, and at most one sent batch is ever
        // unsettled, so a crash re-sends only the batch in flight. The
        // settle's commit still overlaps this batch's planning.
        settle_previous!();
        let mut tally = None;
        let mut settle = if plan.events.is_empty() {
            drop(permit);
            Settle {
                sink_id: rt.sink_id,
                ..Settle::default()
            }
        } else {
            // An operator may have forced the circuit open while this batch
            // was planned: honour it before sending (nothing is persisted yet).
            if rt.breaker.state() == BreakerState::ForcedOpen {
                drop(permit);
                state = Some((cursor, pending));
                continue;
            }
            let only_retries = plan
                .items
                .iter()
                .all(|it| it.prior.as_ref().is_some_and(|r| r.attempts > 0));
            let started = Instant::now();
            let Some(response) = send(&rt, &plan.events, &mut stop).await else {
                // Aborted: this batch stays pending; the previous settle may
                // still commit in the background.
                return;
            };
            let done = unix_ms();
            let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            budget.record_request(done);
            let t = match response.batch {
                // A batch of nothing but retries of lanes that already failed
                // says little about the sink: one poisoned lane must not open
                // the circuit for every other lane. Closed: cancel the permit.
                // HalfOpen trials always count, so recovery is still decided.
                Outcome::Retry {
                    retry_after_ms: None,
                } if only_retries && permit.state() == BreakerState::Closed => {
                    drop(permit);
                    None
                }
                Outcome::Retry { retry_after_ms } => {
                    let t = permit.failure(took_ms, done);
                    match retry_after_ms {
                        Some(ms) => rt.breaker.record_retry_after(ms, done).ok().or(t),
                        None => t,
                    }
                }
                _ => permit.success(took_ms, done),
            };
            record_transition(&name, t);
            metrics::counter!(m::DELIVERY_ATTEMPTS_TOTAL, "sink" => name.clone(), "result" => response.batch.result_label()).increment(1);
            metrics::histogram!(m::DELIVERY_BATCH_EVENTS, "sink" => name.clone())
                .record(plan.events.len() as f64);
            if let Some(rate) = rt.breaker.failure_rate_pct(done) {
                metrics::gauge!(m::BREAKER_FAILURE_RATE, "sink" => name.clone()).set(rate);
            }
            let (s, t) = settle_batch(
                rt.sink_id,
                &plan.items,
                &response,
                done,
                &rt.config.retry,
                &mut || rand::random::<f64>(),
            );
            let ages_s: Vec<f64> = plan
                .events
                .iter()
                .enumerate()
                .filter(|(i, _)| response.outcome_of(*i) == Outcome::Delivered)
                .map(|(_, e)| {
                    let age_us = (i128::from(done) * 1000 - i128::from(e.created_at_us)).max(0);
                    age_us as f64 / 1e6
                })
                .collect();
            tally = Some((t, ages_s));
            s
        };
        settle.cursor_to = plan.cursor_to.filter(|&c| c > cursor);
        settle.upsert_retries.extend(plan.parked.iter().cloned());
        reloads = 0;
        // Mirror the settle now; if it fails to commit, the mirror is
        // dropped and reloaded (see `finish`).
        for p in &settle.delete_retries {
            pending.remove(*p);
        }
        for d in &settle.dead_letters {
            pending.remove(d.position);
        }
        for r in &settle.upsert_retries {
            pending.upsert(r.clone());
        }
        let cursor = settle.cursor_to.unwrap_or(cursor);
        let dead_letters = settle.dead_letters.len();
        let j = journal.clone();
        settling = Some(Settling {
            write: tokio::spawn(async move {
                j.write_delivery(DeliveryWrite::Settle(settle))
                    .await
                    .map(|_| ())
            }),
            tally,
            dead_letters,
        });
        state = Some((cursor, pending));
    }
}

/// Backs off before reloading after a failed settle: 500 ms doubling to
/// 10 s, so a failing store does not turn into a resend storm.
async fn reload_pause(rt: &SinkRuntime, stop: &mut watch::Receiver<StopMode>, reloads: &mut u32) {
    let pause = SETTLE_FAILURE_PAUSE
        .saturating_mul(1u32 << (*reloads).min(5))
        .min(Duration::from_secs(10));
    *reloads = reloads.saturating_add(1);
    wait(rt, stop, pause).await;
}

/// Sleeps up to `d`, waking early on a nudge or a stop request.
async fn wait(rt: &SinkRuntime, stop: &mut watch::Receiver<StopMode>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = rt.wake.notified() => {}
        _ = stop.changed() => {}
    }
}
