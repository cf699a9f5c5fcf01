//! The naive model of one sink's delivery: every event's state in a `Vec`,
//! lanes and due rows found by scanning and sorting, nothing indexed.
//!
//! It predicts exactly what it can state simply, and checks the rest as
//! properties of what the dispatcher chose:
//! - exactly: whether the breaker admits the turn and in which state; the
//!   due rows sent and their order (lane heads by due time, the due run
//!   behind each, the budget asked once, a refusal holding back only the
//!   lanes with a retry); whether new events may join (not on a HalfOpen
//!   trial with retries); every event's state after the turn (delivered,
//!   retrying with its attempts, parked, dead-lettered), the cursor and
//!   `delivered_total`, compared with the store; and the breaker, compared
//!   with a reference breaker fed the model's own rule of which calls count.
//!   The breaker and the budget are the model's only real components: each
//!   passes its own model test (`breaker/model.rs`, `budget.rs`), and here
//!   the model alone decides what they are told;
//! - as properties: new events are taken only from unblocked lanes and in
//!   order, parked only behind a blocked lane, the cursor skips nothing,
//!   and a turn with work makes progress;
//! - the lane order of what the sink applies: an event is sent only after
//!   every earlier event of its lane was applied or dead-lettered, or is
//!   earlier in the same batch (the per-event-result reorder that
//!   `docs/webhook.md` documents).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use ironclad::delivery::breaker::{BreakerState, CircuitBreaker};
use ironclad::delivery::budget::RetryBudget;
use ironclad::delivery::classify::Outcome;
use ironclad::delivery::config::SinkConfig;
use ironclad::delivery::plan::Plan;
use ironclad::delivery::sink::SinkResponse;
use ironclad::store::delivery::RetryRow;

use super::sut::{TurnRecord, DELAY_MS_MAX, RETRY_AFTER_MS_CAP};

/// Where one event stands for the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Beyond the cursor.
    New,
    /// A retry row: failed `attempts` times (0: parked or requeued).
    Row { attempts: u32, next_at_ms: u64 },
    /// Delivered, and the store knows it.
    Delivered,
    /// In the dead-letter queue.
    Dead,
}

/// One appended event.
#[derive(Debug, Clone)]
pub struct Ev {
    pub position: u64,
    pub lane: String,
    pub routed: bool,
    pub state: State,
}

/// The model.
pub struct Model {
    pub events: Vec<Ev>,
    pub cursor: u64,
    /// Positions the sink applied (answered delivered), committed or not.
    pub applied: HashSet<u64>,
    breaker: Arc<CircuitBreaker>,
    budget: RetryBudget,
    events_max: usize,
    retry_rows_max: usize,
    attempts_max: u32,
    /// Turns whose retries the budget refused.
    pub budget_refusals: usize,
}

/// An event's own outcome, restated from `docs/webhook.md`: a batch to be
/// retried retries every event; otherwise an event's reported result wins
/// and an unmentioned event takes the batch's.
fn own_outcome(response: &SinkResponse, i: usize) -> Outcome {
    match response.batch {
        Outcome::Retry { .. } => response.batch,
        batch => response
            .per_event
            .get(i)
            .copied()
            .flatten()
            .unwrap_or(batch),
    }
}

/// The positions a plan sends as rows (`rows`) or as new events.
fn sent(plan: &Plan, rows: bool) -> Vec<u64> {
    let items = plan.items.iter().filter(|i| i.prior.is_some() == rows);
    items.map(|i| i.position).collect()
}

impl Model {
    pub fn new(config: &SinkConfig) -> Model {
        Model {
            events: Vec::new(),
            cursor: 0,
            applied: HashSet::new(),
            breaker: Arc::new(CircuitBreaker::new(config.breaker.clone()).expect("breaker")),
            budget: RetryBudget::new(&config.budget).expect("budget"),
            events_max: config.batch.events_max,
            retry_rows_max: config.retry_rows_max,
            attempts_max: config.retry.attempts_max,
            budget_refusals: 0,
        }
    }

    /// Records an appended event; positions are 1, 2, 3…
    pub fn append(&mut self, entity: Option<&str>, stream: &str, routed: bool) {
        let lane = match entity {
            Some(e) => format!("e:{e}"),
            None => format!("s:{stream}"),
        };
        self.events.push(Ev {
            position: self.events.len() as u64 + 1,
            lane,
            routed,
            state: State::New,
        });
    }

    fn ev(&self, position: u64) -> &Ev {
        &self.events[(position - 1) as usize]
    }

    fn rows(&self) -> impl Iterator<Item = (&Ev, u32, u64)> {
        self.events.iter().filter_map(|e| match e.state {
            State::Row {
                attempts,
                next_at_ms,
            } => Some((e, attempts, next_at_ms)),
            _ => None,
        })
    }

    fn attempts(&self, position: u64) -> Option<u32> {
        match self.ev(position).state {
            State::Row { attempts, .. } => Some(attempts),
            _ => None,
        }
    }

    fn blocked(&self, lane: &str) -> bool {
        self.rows().any(|(e, _, _)| e.lane == lane)
    }

    /// `dlq retry`: every dead letter becomes a row due now, attempts 0.
    pub fn requeue(&mut self, now_ms: u64, moved: &[u64]) {
        let dead: Vec<u64> = self
            .events
            .iter()
            .filter(|e| e.state == State::Dead)
            .map(|e| e.position)
            .collect();
        assert_eq!(moved, dead.as_slice(), "requeue moves every dead letter");
        for p in dead {
            self.events[(p - 1) as usize].state = State::Row {
                attempts: 0,
                next_at_ms: now_ms,
            };
        }
    }

    /// An idle turn's pause: until the earliest lane head falls due, at
    /// most the 100 ms poll; a full poll when one is due but held back.
    fn idle_pause_ms(&self, now_ms: u64) -> u64 {
        let mut seen: HashSet<&str> = HashSet::new();
        let heads = self.rows().filter(|(e, _, _)| seen.insert(e.lane.as_str()));
        match heads.map(|(_, _, next_at)| next_at).min() {
            Some(due) if due > now_ms => (due - now_ms).min(100),
            _ => 100,
        }
    }

    /// The due rows a turn at `now_ms` must send, asking the reference
    /// budget as the dispatcher asks its own.
    fn due(&mut self, now_ms: u64) -> Vec<u64> {
        let mut heads: Vec<(u64, u64, &str)> = Vec::new();
        for (e, _, next_at) in self.rows() {
            if !heads.iter().any(|h| h.2 == e.lane) {
                heads.push((next_at, e.position, e.lane.as_str()));
            }
        }
        heads.sort_unstable();
        let mut candidates: Vec<u64> = Vec::new();
        for (head_due, _, lane) in heads {
            if head_due > now_ms {
                break;
            }
            let run = self
                .rows()
                .filter(|(e, _, _)| e.lane == lane)
                .take_while(|(_, _, next_at)| *next_at <= now_ms)
                .map(|(e, _, _)| e.position);
            candidates.extend(run);
        }
        candidates.truncate(self.events_max);
        let retries: HashSet<u64> = candidates
            .iter()
            .copied()
            .filter(|p| self.attempts(*p).is_some_and(|a| a > 0))
            .collect();
        if retries.is_empty() || self.budget.try_spend_retry(now_ms) {
            return candidates;
        }
        self.budget_refusals += 1;
        let is_retry = |p: &u64| retries.contains(p);
        let mut held: HashSet<&str> = HashSet::new();
        let mut due = Vec::new();
        for p in &candidates {
            let lane = self.ev(*p).lane.as_str();
            if is_retry(p) {
                held.insert(lane);
            }
            if !held.contains(lane) {
                due.push(*p);
            }
        }
        due
    }

    /// Checks one turn the dispatcher made at `now_ms` and advances the
    /// model. `rows_after`: the store's retry rows after the turn (the
    /// model takes the jittered retry times from them, within bounds).
    pub fn turn(&mut self, now_ms: u64, record: &TurnRecord, rows_after: &BTreeMap<u64, RetryRow>) {
        self.breaker.poll(now_ms);
        let permit = match (self.breaker.try_acquire_owned(now_ms), record.admitted_in) {
            (Ok(p), Some(state)) => {
                assert_eq!(p.state(), state, "admitted in another breaker state");
                p
            }
            (Err(_), None) => return,
            (want, got) => panic!("breaker admission: model {want:?}, dispatcher {got:?}"),
        };
        let plan = record.plan.as_ref().expect("an admitted turn plans");
        if let Some(pause) = record.idle_pause_ms {
            assert_eq!(pause, self.idle_pause_ms(now_ms), "idle pause");
        }
        // Chosen in due-time order across lanes, sent in position order:
        // every batch's positions strictly increase (docs/webhook.md).
        let mut due = self.due(now_ms);
        due.sort_unstable();
        let sent_due = sent(plan, true);
        assert_eq!(sent_due, due, "due rows sent");
        let positions: Vec<u64> = plan.items.iter().map(|i| i.position).collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "a batch out of position order: {positions:?}"
        );
        for it in plan.items.iter().filter(|i| i.prior.is_some()) {
            let prior = it.prior.as_ref().map(|r| r.attempts);
            assert_eq!(
                prior,
                self.attempts(it.position),
                "prior row of {}",
                it.position
            );
        }
        let allow_new = due.is_empty() || permit.state() != BreakerState::HalfOpen;
        self.check_new_events(plan, allow_new, sent_due.len());
        self.check_lane_order(plan);
        if plan.events.is_empty() {
            drop(permit);
        } else {
            let response = record
                .response
                .as_ref()
                .expect("a sent batch has a response");
            self.report(permit, plan, response, now_ms);
            for (i, it) in plan.items.iter().enumerate() {
                if own_outcome(response, i) == Outcome::Delivered {
                    self.applied.insert(it.position);
                }
            }
        }
        if record.committed {
            self.settle(plan, record.response.as_ref(), now_ms, rows_after);
        }
    }

    /// New events: taken only from unblocked lanes, parked only behind a
    /// blocked one, nothing skipped, and progress when there is work.
    fn check_new_events(&self, plan: &Plan, allow_new: bool, sent_due: usize) {
        let taken = sent(plan, false);
        let parked: Vec<u64> = plan.parked.iter().map(|r| r.position).collect();
        let wants_new =
            allow_new && sent_due < self.events_max && self.rows().count() < self.retry_rows_max;
        if !wants_new {
            assert!(
                taken.is_empty() && parked.is_empty() && plan.cursor_to.is_none(),
                "new events on a turn that allows none: {plan:?}"
            );
            return;
        }
        let cursor_to = plan.cursor_to.unwrap_or(self.cursor);
        let mut handled: Vec<u64> = taken.iter().chain(&parked).copied().collect();
        handled.sort_unstable();
        let passed: Vec<u64> = self
            .events
            .iter()
            .filter(|e| e.routed && e.position > self.cursor && e.position <= cursor_to)
            .map(|e| e.position)
            .collect();
        assert_eq!(
            handled, passed,
            "the cursor passes exactly the events taken or parked"
        );
        let mut parked_lanes: HashSet<&str> = HashSet::new();
        for p in passed {
            let e = self.ev(p);
            assert_eq!(e.state, State::New);
            let behind = self.blocked(&e.lane) || parked_lanes.contains(e.lane.as_str());
            assert_eq!(
                parked.contains(&p),
                behind,
                "event {p} of lane {} parked iff its lane is blocked",
                e.lane
            );
            if behind {
                parked_lanes.insert(&e.lane);
            }
        }
        let work = self.events.len() as u64 > self.cursor;
        if work && sent_due == 0 {
            assert!(
                plan.cursor_to.is_some(),
                "a turn with new work made no progress"
            );
        }
    }

    /// The lane order of what is sent (see the module docs).
    fn check_lane_order(&self, plan: &Plan) {
        for (i, it) in plan.items.iter().enumerate() {
            let lane = &self.ev(it.position).lane;
            for earlier in self.events.iter().take((it.position - 1) as usize) {
                if !earlier.routed || &earlier.lane != lane {
                    continue;
                }
                let done = self.applied.contains(&earlier.position) || earlier.state == State::Dead;
                let before_in_batch = plan.items[..i]
                    .iter()
                    .any(|o| o.position == earlier.position);
                assert!(
                    done || before_in_batch,
                    "event {} of lane {lane} sent before the earlier event {} ({:?})",
                    it.position,
                    earlier.position,
                    earlier.state
                );
            }
        }
    }

    /// Tells the reference budget and breaker about the call, by the
    /// model's rule: a plain failure of a batch of nothing but retries,
    /// admitted in Closed, is not counted; a `Retry-After` opens.
    fn report(
        &mut self,
        permit: ironclad::delivery::breaker::OwnedPermit,
        plan: &Plan,
        response: &SinkResponse,
        now_ms: u64,
    ) {
        self.budget.record_request(now_ms);
        let all_retries = plan
            .items
            .iter()
            .all(|it| self.attempts(it.position).is_some_and(|a| a > 0));
        let plain_failure = response.batch
            == Outcome::Retry {
                retry_after_ms: None,
            };
        if plain_failure && all_retries && permit.state() == BreakerState::Closed {
            drop(permit);
            return;
        }
        match response.batch {
            Outcome::Retry { retry_after_ms } => {
                let _ = permit.failure(0, now_ms);
                if let Some(ms) = retry_after_ms {
                    let _ = self.breaker.record_retry_after(ms, now_ms);
                }
            }
            _ => {
                let _ = permit.success(0, now_ms);
            }
        }
    }

    /// Applies a committed turn: outcomes, parked rows, the cursor.
    fn settle(
        &mut self,
        plan: &Plan,
        response: Option<&SinkResponse>,
        now_ms: u64,
        rows_after: &BTreeMap<u64, RetryRow>,
    ) {
        for (i, it) in plan.items.iter().enumerate() {
            let Some(response) = response else { break };
            let prior = self.attempts(it.position).unwrap_or(0);
            let next = match own_outcome(response, i) {
                Outcome::Delivered => State::Delivered,
                Outcome::Conflict | Outcome::Permanent => State::Dead,
                Outcome::Retry { .. } if prior + 1 >= self.attempts_max => State::Dead,
                Outcome::Retry { retry_after_ms } => {
                    let row = rows_after
                        .get(&it.position)
                        .expect("a retried event keeps a row");
                    let asked = retry_after_ms.map_or(0, |ms| ms.min(RETRY_AFTER_MS_CAP));
                    let at = row.next_attempt_unix_ms;
                    assert!(
                        at >= now_ms + asked && at <= now_ms + asked.max(DELAY_MS_MAX),
                        "retry of {} at {at}, now {now_ms}, asked {asked}",
                        it.position
                    );
                    State::Row {
                        attempts: prior + 1,
                        next_at_ms: at,
                    }
                }
            };
            self.events[(it.position - 1) as usize].state = next;
        }
        for r in &plan.parked {
            self.events[(r.position - 1) as usize].state = State::Row {
                attempts: 0,
                next_at_ms: 0,
            };
        }
        self.cursor = self.cursor.max(plan.cursor_to.unwrap_or(0));
    }

    /// Every event's state, as the store must hold it: retry rows
    /// `(attempts, due)`, dead letters, delivered count and cursor.
    pub fn expected(&self) -> Expected {
        let mut want = Expected {
            cursor: self.cursor,
            ..Expected::default()
        };
        for e in &self.events {
            match e.state {
                State::Row {
                    attempts,
                    next_at_ms,
                } => {
                    want.rows
                        .insert(e.position, (e.lane.clone(), attempts, next_at_ms));
                }
                State::Dead => {
                    want.dead.insert(e.position);
                }
                State::Delivered => want.delivered += 1,
                State::New => {}
            }
        }
        want
    }

    /// The reference breaker the dispatcher's must equal.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

/// The store's delivery state the model predicts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub cursor: u64,
    pub delivered: u64,
    /// position → (lane, attempts, next attempt)
    pub rows: BTreeMap<u64, (String, u32, u64)>,
    pub dead: std::collections::BTreeSet<u64>,
}
