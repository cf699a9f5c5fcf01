//! One dispatcher turn as decisions: what to retry, whether new events may
//! join, whether the call's outcome counts against the breaker, how long an
//! idle dispatcher pauses, and how a settle changes the in-memory mirror.
//!
//! Nothing here reads a clock, draws randomness or does I/O: the driver
//! (`ironclad::delivery::dispatcher`) reads the time once per turn and
//! passes it in, and passes the jitter source to the settle. So a whole
//! turn replays exactly, and `ironclad`'s `tests/delivery_model` drives
//! thousands of them against a naive model. A turn is [`TurnContext::begin`] (breaker admission, due rows,
//! [`PlanAsk`]), then [`plan_batch`](crate::delivery::plan::plan_batch), the
//! call, [`TurnContext::conclude`] (breaker report, [`Settle`]), and
//! [`Mirror::apply`] once the settle is handed to the store.
//!
//! The rules, and why:
//! - **Budget** ([`select_due`]): it counts retry *requests*, as Finagle's
//!   does, so a batch that carries retries spends one token however many it
//!   carries. Refused, only the lanes whose due run holds a retry are held
//!   back, from that retry on, so nothing overtakes it; rows that are not
//!   retries (parked rows, requeued dead letters: attempts 0) still go, and
//!   so do other lanes. Holding back every lane would let one struggling
//!   lane stall the sink.
//! - **HalfOpen** ([`allows_new_events`]): a trial call carries due retries
//!   only, when there are any: if it fails, new events would only be parked
//!   behind them.
//! - **Breaker accounting** ([`breaker_report`]): a batch of nothing but
//!   retries of lanes that already failed says little about the sink, so in
//!   Closed its plain failure is not counted (one poisoned lane must not
//!   open the circuit for every lane). HalfOpen trials always count, so
//!   recovery is still decided; a `Retry-After` always opens.
//! - **Idle pause** ([`idle_pause_ms`]): wake when the next retry is due,
//!   but at least every [`IDLE_POLL_MS`]; something due but held back (the
//!   budget) waits a full poll rather than spinning.
//! - **Mirror** ([`Mirror::apply`]): the settle's changes, applied in memory
//!   as the store applies them, so the mirror equals a reload.

use std::collections::HashSet;
use std::sync::Arc;

use crate::delivery::breaker::{
    BreakerState, CircuitBreaker, NotPermitted, OwnedPermit, Transition,
};
use crate::delivery::budget::RetryBudget;
use crate::delivery::classify::Outcome;
use crate::delivery::lanes::PendingRetries;
use crate::delivery::plan::PlanAsk;
use crate::delivery::response::SinkResponse;
use crate::delivery::retry::RetryPolicy;
use crate::delivery::settle::{settle_batch, InFlight, Tally};
use crate::delivery::state::Settle;

/// Longest an idle dispatcher waits before looking for work again, in
/// milliseconds (it also wakes on every commit).
pub const IDLE_POLL_MS: u64 = 100;

/// The due rows a turn sends, in order: the due lane heads and the due rows
/// behind them (at most `events_max`), after asking `budget` for one retry
/// when any of them is a retry. A refusal holds back only the lanes whose
/// due run holds a retry, from that retry on.
pub fn select_due(
    pending: &PendingRetries,
    now_unix_ms: u64,
    events_max: usize,
    budget: &mut RetryBudget,
) -> Vec<u64> {
    let candidates = pending.due(now_unix_ms, events_max);
    let has_retry = candidates.iter().any(|p| is_retry(pending, *p));
    let retries_allowed = !has_retry || budget.try_spend_retry(now_unix_ms);
    hold_back_refused(pending, &candidates, retries_allowed)
}

/// Whether the row at `position` is a retry: it failed at least once.
fn is_retry(pending: &PendingRetries, position: u64) -> bool {
    pending.get(position).is_some_and(|r| r.attempts > 0)
}

/// The lane-refusal rule: without `retries_allowed`, each lane keeps its
/// candidates up to its first retry and drops the rest.
pub fn hold_back_refused(
    pending: &PendingRetries,
    candidates: &[u64],
    retries_allowed: bool,
) -> Vec<u64> {
    let mut due = Vec::with_capacity(candidates.len());
    let mut refused: HashSet<&str> = HashSet::new();
    for &p in candidates {
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
    // Stated again by the proptest: a refusal costs only the lanes that
    // carry a retry; every other candidate still goes.
    debug_assert!(
        retries_allowed
            || candidates.iter().all(|p| {
                let lane = pending.get(*p).map(|r| r.lane.as_str());
                due.contains(p) || lane.is_none_or(|l| refused.contains(l))
            }),
        "a budget refusal held back a lane with no retry"
    );
    due
}

/// Whether a turn admitted in `admitted_in` with `due` rows may also take
/// new events: not on a HalfOpen trial that carries retries.
pub fn allows_new_events(due: &[u64], admitted_in: BreakerState) -> bool {
    due.is_empty() || admitted_in != BreakerState::HalfOpen
}

/// What a call's outcome tells the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerReport {
    /// Nothing: the permit is cancelled.
    Cancel,
    /// A success.
    Success,
    /// A failure; with a `Retry-After`, the breaker also opens for it.
    Failure {
        /// The sink's `Retry-After`, uncapped.
        retry_after_ms: Option<u64>,
    },
}

/// Whether a batch of outcome `batch`, admitted in `admitted_in`, counts
/// against the breaker. `only_retries`: every event in it already failed.
pub fn breaker_report(
    batch: Outcome,
    only_retries: bool,
    admitted_in: BreakerState,
) -> BreakerReport {
    match batch {
        Outcome::Retry {
            retry_after_ms: None,
        } if only_retries && admitted_in == BreakerState::Closed => BreakerReport::Cancel,
        Outcome::Retry { retry_after_ms } => BreakerReport::Failure { retry_after_ms },
        Outcome::Delivered | Outcome::Conflict | Outcome::Permanent => BreakerReport::Success,
    }
}

/// Whether every event of a batch is a retry of an earlier failure.
pub fn only_retries(items: &[InFlight]) -> bool {
    items
        .iter()
        .all(|it| it.prior.as_ref().is_some_and(|r| r.attempts > 0))
}

/// How long an idle dispatcher pauses, in milliseconds: until the next
/// retry is due, at most [`IDLE_POLL_MS`], at least 1. A retry already due
/// (held back by the budget) waits a full poll.
pub fn idle_pause_ms(next_due_unix_ms: Option<u64>, now_unix_ms: u64) -> u64 {
    let pause = match next_due_unix_ms {
        Some(due) if due > now_unix_ms => (due - now_unix_ms).min(IDLE_POLL_MS),
        _ => IDLE_POLL_MS,
    };
    pause.max(1)
}

/// The dispatcher's in-memory copy of its sink's delivery state. The store
/// is the truth: after a failed settle the mirror is dropped and reloaded.
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    /// The sink's cursor.
    pub cursor: u64,
    /// Its retry rows (failed and parked).
    pub pending: PendingRetries,
}

impl Mirror {
    /// Applies `settle` as the store does: deletions and dead letters
    /// leave the rows, upserts replace them, the cursor only moves forward.
    pub fn apply(&mut self, settle: &Settle) {
        for p in &settle.delete_retries {
            self.pending.remove(*p);
        }
        for d in &settle.dead_letters {
            self.pending.remove(d.position);
        }
        for r in &settle.upsert_retries {
            self.pending.upsert(r.clone());
        }
        self.cursor = settle.cursor_to.map_or(self.cursor, |c| c.max(self.cursor));
        // Stated again by the proptest (against a reload): each position
        // ends in the state the settle names.
        debug_assert!(
            settle
                .upsert_retries
                .iter()
                .all(|r| self.pending.get(r.position) == Some(r))
                && settle
                    .dead_letters
                    .iter()
                    .all(|d| self.pending.get(d.position).is_none()),
            "the mirror disagrees with the settle it applied"
        );
    }
}

/// What one sink's turns share and does not change between them.
#[derive(Debug, Clone, Copy)]
pub struct TurnContext<'a> {
    /// The store's id of the sink.
    pub sink_id: i64,
    /// Its breaker.
    pub breaker: &'a Arc<CircuitBreaker>,
    /// Most events in one batch.
    pub events_max: usize,
    /// Its retry schedule.
    pub policy: &'a RetryPolicy,
}

/// How a turn starts (see [`TurnContext::begin`]).
#[derive(Debug)]
pub struct TurnStart {
    /// The HalfOpen timeout `poll` applied, if any (for the log).
    pub polled: Option<Transition>,
    /// The permit and what to plan, or why the breaker refused the turn.
    pub admitted: Result<(OwnedPermit, PlanAsk), NotPermitted>,
}

/// One call as the driver saw it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// What was sent.
    pub items: &'a [InFlight],
    /// What the sink answered.
    pub response: &'a SinkResponse,
    /// How long it took.
    pub took_ms: u64,
    /// When it finished.
    pub done_unix_ms: u64,
}

/// What a call concluded (see [`TurnContext::conclude`]).
#[derive(Debug)]
pub struct Concluded {
    /// The settle to commit (without the plan's cursor and parked rows).
    pub settle: Settle,
    /// Its counts, for metrics.
    pub tally: Tally,
    /// The breaker transition the report caused, if any.
    pub transition: Option<Transition>,
}

impl TurnContext<'_> {
    /// Starts a turn at `now_unix_ms`: applies the HalfOpen timeout, asks
    /// the breaker for a permit, then chooses the due rows (spending the
    /// budget) and whether new events may follow.
    pub fn begin(&self, mirror: &Mirror, budget: &mut RetryBudget, now_unix_ms: u64) -> TurnStart {
        let polled = self.breaker.poll(now_unix_ms);
        let admitted = self.breaker.try_acquire_owned(now_unix_ms).map(|permit| {
            let due = select_due(&mirror.pending, now_unix_ms, self.events_max, budget);
            let allow_new = allows_new_events(&due, permit.state());
            let ask = PlanAsk {
                cursor: mirror.cursor,
                due,
                allow_new,
                now_unix_ms,
            };
            (permit, ask)
        });
        TurnStart { polled, admitted }
    }

    /// Concludes a call made under `permit`: counts it as a request in the
    /// budget, reports it to the breaker as [`breaker_report`] says, and
    /// settles its events. `random` yields the backoff jitter draws.
    pub fn conclude(
        &self,
        permit: OwnedPermit,
        call: Call<'_>,
        budget: &mut RetryBudget,
        random: &mut dyn FnMut() -> f64,
    ) -> Concluded {
        let Call {
            items,
            response,
            took_ms,
            done_unix_ms: done,
        } = call;
        budget.record_request(done);
        let transition = match breaker_report(response.batch, only_retries(items), permit.state()) {
            BreakerReport::Cancel => {
                drop(permit);
                None
            }
            BreakerReport::Success => permit.success(took_ms, done),
            BreakerReport::Failure { retry_after_ms } => {
                let t = permit.failure(took_ms, done);
                match retry_after_ms {
                    Some(ms) => self.breaker.record_retry_after(ms, done).ok().or(t),
                    None => t,
                }
            }
        };
        let (settle, tally) =
            settle_batch(self.sink_id, items, response, done, self.policy, random);
        Concluded {
            settle,
            tally,
            transition,
        }
    }
}

#[cfg(test)]
mod tests;
