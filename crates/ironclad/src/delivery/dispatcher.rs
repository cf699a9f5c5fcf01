//! The dispatcher: one task per sink, a short driver around the turn.
//!
//! Each turn it (1) asks the breaker for a permit and picks the due retries
//! ([`TurnContext::begin`](crate::delivery::turn::TurnContext::begin)), (2) plans a batch: due lane heads first, then
//! new events from the cursor, parking those whose lane is blocked
//! ([`plan_batch`]), (3) sends the batch, (4) concludes it
//! ([`TurnContext::conclude`](crate::delivery::turn::TurnContext::conclude)) and settles the outcome through the
//! journal's single writer, updating its in-memory [`Mirror`] as the settle
//! is handed over. The decisions are in [`turn`](crate::delivery::turn) and
//! [`plan`](crate::delivery::plan); this file reads the clock and the
//! random source, waits, and does the I/O. The store is the truth: after
//! any settle failure the dispatcher reloads from it, and an unsettled
//! batch is simply sent again (at-least-once; receivers dedupe by
//! idempotency key).
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
use crate::delivery::breaker::{BreakerState, CircuitBreaker, OwnedPermit};
use crate::delivery::budget::RetryBudget;
use crate::delivery::classify::Outcome;
use crate::delivery::config::SinkConfig;
use crate::delivery::plan::{Plan, PlanAsk};
use crate::delivery::routes::Routes;
use crate::delivery::settle::Tally;
use crate::delivery::sink::{Sink, SinkResponse};
use crate::delivery::turn::{idle_pause_ms, Call, Mirror, IDLE_POLL_MS};
use crate::error::ControlError;
use crate::journal::Journal;
use crate::metrics as m;
use crate::model::RecordedEvent;
use crate::store::delivery::{DlqReason, Settle, StateWrite};
use crate::store::Store;

mod reads;

pub use crate::delivery::plan::SCAN_EVENTS_MAX_FACTOR;
pub use reads::{load_state, plan_batch, plan_limits, turn_context};

/// How often an idle dispatcher looks for new events even when no commit
/// wakes it (it also wakes on every commit, through
/// [`Journal::committed_head`]).
pub const IDLE_POLL: Duration = Duration::from_millis(IDLE_POLL_MS);

/// How long a dispatcher backs off after its settle failed.
const SETTLE_FAILURE_PAUSE: Duration = Duration::from_millis(500);

/// How long a dispatcher waits after the breaker refused a turn.
const NOT_PERMITTED_PAUSE: Duration = Duration::from_millis(50);

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

/// The age of each delivered event of a batch at `done_unix_ms`, in
/// seconds, for the latency histogram.
fn delivered_ages_s(
    events: &[RecordedEvent],
    response: &SinkResponse,
    done_unix_ms: u64,
) -> Vec<f64> {
    events
        .iter()
        .enumerate()
        .filter(|(i, _)| response.outcome_of(*i) == Outcome::Delivered)
        .map(|(_, e)| {
            let age_us = (i128::from(done_unix_ms) * 1000 - i128::from(e.created_at_us)).max(0);
            age_us as f64 / 1e6
        })
        .collect()
}

/// The wall clock, read once per turn (and once when a call ends).
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

/// Counts and logs a breaker transition.
fn record_transition(sink: &str, t: Option<crate::delivery::breaker::Transition>) {
    if let Some(t) = t {
        metrics::counter!(m::BREAKER_TRANSITIONS_TOTAL, "sink" => sink.to_string(), "to" => t.to.as_str())
            .increment(1);
        tracing::info!(
            sink,
            from = t.from.as_str(),
            to = t.to.as_str(),
            reason = t.reason.as_str(),
            "circuit breaker transition"
        );
    }
}

/// A settle on its way to the store, with what to record once it commits.
struct Settling {
    write: tokio::task::JoinHandle<Result<(), ControlError>>,
    tally: Option<(Tally, Vec<f64>)>,
    dead_letters: usize,
}

/// What awaiting a settle found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    stop: watch::Receiver<StopMode>,
    dlq_added: Arc<Notify>,
) {
    let budget = match RetryBudget::new(&rt.config.budget) {
        Ok(b) => b,
        Err(e) => {
            let name = &rt.config.name;
            tracing::error!(sink = %name, error = %e, "invalid retry budget; dispatcher not started");
            return;
        }
    };
    let mut driver = Driver {
        store: Arc::clone(journal.store()),
        head: journal.committed_head(),
        journal,
        rt,
        routes,
        stop,
        dlq_added,
        budget,
        mirror: None,
        settling: None,
        idle: false,
        reloads: 0,
    };
    while driver.turn().await == Flow::Next {}
}

/// What the driver does after a step: explicit, instead of a hidden
/// `continue` or `return`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Start the next turn.
    Next,
    /// Stop the dispatcher.
    Stop,
}

/// A planned batch with what it was planned under.
struct Planned {
    plan: Plan,
    mirror: Mirror,
    permit: OwnedPermit,
}

/// The dispatcher's state between turns.
struct Driver<S: Store> {
    journal: Journal<S>,
    store: Arc<S>,
    rt: Arc<SinkRuntime>,
    routes: Arc<Routes>,
    stop: watch::Receiver<StopMode>,
    dlq_added: Arc<Notify>,
    head: watch::Receiver<u64>,
    budget: RetryBudget,
    /// The mirror between turns; `None` when it must be loaded from the
    /// store (at start, after a failed settle, on a reload request).
    mirror: Option<Mirror>,
    settling: Option<Settling>,
    /// The last turn found nothing to do.
    idle: bool,
    /// Consecutive failed settles, for the back-off before reloading.
    reloads: u32,
}

impl<S: Store> Driver<S> {
    fn name(&self) -> &str {
        &self.rt.config.name
    }

    /// One turn: admission and due rows, plan, then idle or deliver.
    async fn turn(&mut self) -> Flow {
        if *self.stop.borrow() != StopMode::Run {
            // Drain: the last settle must commit before we go.
            let _ = finish(&self.rt.config.name, self.settling.take(), &self.dlq_added).await;
            return Flow::Stop;
        }
        if self.rt.reload.swap(false, Ordering::AcqRel) {
            if finish(&self.rt.config.name, self.settling.take(), &self.dlq_added).await
                == Settled::Stop
            {
                return Flow::Stop;
            }
            self.mirror = None;
        }
        let mirror = match self.mirror_or_load().await {
            Ok(m) => m,
            Err(flow) => return flow,
        };
        self.publish(&mirror);
        let now = unix_ms();
        let rt = Arc::clone(&self.rt);
        let start =
            turn_context(rt.sink_id, &rt.config, &rt.breaker).begin(&mirror, &mut self.budget, now);
        record_transition(self.name(), start.polled);
        metrics::gauge!(m::BREAKER_STATE, "sink" => self.name().to_string())
            .set(f64::from(rt.breaker.state_code()));
        let Ok((permit, ask)) = start.admitted else {
            return self.not_permitted(mirror).await;
        };
        if self.idle && rt.config.batch.linger_ms > 0 {
            // Work may have just arrived after a quiet spell: linger so the
            // batch fills.
            tokio::time::sleep(Duration::from_millis(rt.config.batch.linger_ms)).await;
        }
        let planned = match self.plan(mirror, ask, permit).await {
            Ok(p) => p,
            Err(flow) => return flow,
        };
        if planned.plan.is_empty() {
            drop(planned.permit);
            return self.idle_wait(planned.mirror, now).await;
        }
        self.idle = false;
        // The previous batch's settle commits before this batch is sent:
        // settles stay in order, and at most one sent batch is ever
        // unsettled, so a crash re-sends only the batch in flight. The
        // settle's commit still overlapped this batch's planning.
        match self.settle_previous().await {
            Settled::Ok => self.deliver(planned).await,
            Settled::Stop => Flow::Stop,
            // The mirror is stale: drop it with the plan; the next turn reloads.
            Settled::Reload => Flow::Next,
        }
    }

    /// The mirror kept from the last turn, or a fresh one from the store.
    async fn mirror_or_load(&mut self) -> Result<Mirror, Flow> {
        if let Some(m) = self.mirror.take() {
            return Ok(m);
        }
        let (store, id) = (Arc::clone(&self.store), self.rt.sink_id);
        match tokio::task::spawn_blocking(move || load_state(&*store, id)).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(e)) => {
                tracing::error!(sink = %self.name(), error = %e, "cannot load delivery state; retrying");
                wait(&self.rt, &mut self.stop, SETTLE_FAILURE_PAUSE).await;
                Err(Flow::Next)
            }
            Err(_) => Err(Flow::Stop),
        }
    }

    /// Publishes the mirror's numbers for status and metrics.
    fn publish(&self, mirror: &Mirror) {
        self.rt.cursor.store(mirror.cursor, Ordering::Relaxed);
        let rows = mirror.pending.len();
        self.rt.retry_rows.store(rows as u64, Ordering::Relaxed);
        metrics::gauge!(m::DELIVERY_PENDING_EVENTS, "sink" => self.name().to_string())
            .set(rows as f64);
    }

    /// The breaker refused the turn: settle the previous batch and wait.
    async fn not_permitted(&mut self, mirror: Mirror) -> Flow {
        metrics::counter!(m::BREAKER_NOT_PERMITTED_TOTAL, "sink" => self.name().to_string())
            .increment(1);
        match self.settle_previous().await {
            Settled::Ok => {}
            Settled::Stop => return Flow::Stop,
            Settled::Reload => return Flow::Next,
        }
        self.mirror = Some(mirror);
        wait(&self.rt, &mut self.stop, NOT_PERMITTED_PAUSE).await;
        Flow::Next
    }

    /// Plans on the blocking pool. On a read error the permit is given
    /// back, the mirror kept, and the turn retried after a pause.
    async fn plan(
        &mut self,
        mirror: Mirror,
        ask: PlanAsk,
        permit: OwnedPermit,
    ) -> Result<Planned, Flow> {
        let (store, rt, routes) = (
            Arc::clone(&self.store),
            Arc::clone(&self.rt),
            Arc::clone(&self.routes),
        );
        let planned = tokio::task::spawn_blocking(move || {
            let plan = plan_batch(&*store, &rt.config, &routes, &mirror.pending, &ask);
            (plan, mirror)
        })
        .await;
        let Ok((plan, mirror)) = planned else {
            return Err(Flow::Stop);
        };
        match plan {
            Ok(plan) => Ok(Planned {
                plan,
                mirror,
                permit,
            }),
            Err(e) => {
                tracing::error!(sink = %self.name(), error = %e, "cannot read events to deliver; retrying");
                drop(permit);
                self.mirror = Some(mirror);
                wait(&self.rt, &mut self.stop, SETTLE_FAILURE_PAUSE).await;
                Err(Flow::Next)
            }
        }
    }

    /// Nothing to do: settle the previous batch, then wait for a commit,
    /// the next due retry or the idle poll, whichever comes first.
    async fn idle_wait(&mut self, mirror: Mirror, now_unix_ms: u64) -> Flow {
        match self.settle_previous().await {
            Settled::Ok => {}
            Settled::Stop => return Flow::Stop,
            Settled::Reload => return Flow::Next,
        }
        self.idle = true;
        let pause = Duration::from_millis(idle_pause_ms(
            mirror.pending.next_due_unix_ms(),
            now_unix_ms,
        ));
        self.mirror = Some(mirror);
        tokio::select! {
            _ = wait(&self.rt, &mut self.stop, pause) => Flow::Next,
            changed = self.head.changed() => match changed {
                Ok(()) => Flow::Next,
                // The writer is gone: nothing new can come.
                Err(_) => Flow::Stop,
            },
        }
    }

    /// Waits for the previous settle. After a failed one it backs off, and
    /// the caller must drop its mirror so that the next turn reloads.
    async fn settle_previous(&mut self) -> Settled {
        let settled = finish(&self.rt.config.name, self.settling.take(), &self.dlq_added).await;
        if settled == Settled::Reload {
            reload_pause(&self.rt, &mut self.stop, &mut self.reloads).await;
        }
        settled
    }

    /// Sends the planned batch (if it has events), then hands its settle to
    /// the writer and mirrors it.
    async fn deliver(&mut self, planned: Planned) -> Flow {
        let Planned {
            plan,
            mut mirror,
            permit,
        } = planned;
        let (mut settle, tally) = if plan.events.is_empty() {
            drop(permit);
            let settle = Settle {
                sink_id: self.rt.sink_id,
                ..Settle::default()
            };
            (settle, None)
        } else if self.rt.breaker.state() == BreakerState::ForcedOpen {
            // An operator forced the circuit open while this batch was
            // planned: honour it before sending (nothing is persisted yet).
            drop(permit);
            self.mirror = Some(mirror);
            return Flow::Next;
        } else {
            match self.call(&plan, permit).await {
                Some((settle, tally)) => (settle, Some(tally)),
                // Aborted: this batch stays pending; the previous settle may
                // still commit in the background.
                None => return Flow::Stop,
            }
        };
        plan.complete_settle(&mut settle, mirror.cursor);
        self.reloads = 0;
        // Mirror the settle now; if it fails to commit, the mirror is
        // dropped and reloaded (see `finish`).
        mirror.apply(&settle);
        self.mirror = Some(mirror);
        let dead_letters = settle.dead_letters.len();
        let journal = self.journal.clone();
        self.settling = Some(Settling {
            write: tokio::spawn(async move {
                journal
                    .write_state(StateWrite::Settle(settle))
                    .await
                    .map(|_| ())
            }),
            tally,
            dead_letters,
        });
        Flow::Next
    }

    /// Makes the call and concludes it. `None` when told to abort.
    async fn call(
        &mut self,
        plan: &Plan,
        permit: OwnedPermit,
    ) -> Option<(Settle, (Tally, Vec<f64>))> {
        let started = Instant::now();
        let response = send(&self.rt, &plan.events, &mut self.stop).await?;
        let done = unix_ms();
        let call = Call {
            items: &plan.items,
            response: &response,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            done_unix_ms: done,
        };
        let rt = Arc::clone(&self.rt);
        let ctx = turn_context(rt.sink_id, &rt.config, &rt.breaker);
        let concluded = ctx.conclude(permit, call, &mut self.budget, &mut || {
            rand::random::<f64>()
        });
        let name = self.name();
        record_transition(name, concluded.transition);
        metrics::counter!(m::DELIVERY_ATTEMPTS_TOTAL, "sink" => name.to_string(), "result" => response.batch.result_label()).increment(1);
        metrics::histogram!(m::DELIVERY_BATCH_EVENTS, "sink" => name.to_string())
            .record(plan.events.len() as f64);
        if let Some(rate) = rt.breaker.failure_rate_pct(done) {
            metrics::gauge!(m::BREAKER_FAILURE_RATE, "sink" => name.to_string()).set(rate);
        }
        let ages_s = delivered_ages_s(&plan.events, &response, done);
        Some((concluded.settle, (concluded.tally, ages_s)))
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
