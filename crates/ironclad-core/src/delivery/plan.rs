//! Planning one batch: which due rows and which new events a turn sends,
//! which new events wait behind a blocked lane, and where the cursor moves.
//!
//! Pure: the events come from an [`EventSource`] the caller provides (the
//! dispatcher's reads the store), so the same rules run against an
//! in-memory log in tests. The rules, and why:
//! - Due rows first, in the order given (the turn already chose them and
//!   spent the retry budget), until the batch's byte bound: retries of
//!   waiting lanes are the oldest work.
//! - The batch goes out in position order, strictly increasing (the order
//!   `docs/webhook.md` promises): due rows are chosen in due-time order
//!   across lanes, and [`Planner::finish`] sorts them. Each lane's rows are
//!   already in position order, so no lane is reordered.
//! - New events only when the batch has room, the turn allows them, and the
//!   sink holds fewer than `retry_rows_max` rows (a dead sink must not fill
//!   the disk with parked rows).
//! - Per new event, in position order: a stream the sink's routes do not
//!   match is passed over; an event whose lane is blocked (has a retry row,
//!   or parked an event earlier in this scan) is *parked*, since sending it
//!   would overtake an earlier event of its lane; any other event is taken
//!   until the batch is full. The cursor moves past every event passed
//!   over, parked or taken, and never past one left for the next turn, so
//!   nothing is skipped.
//! - A turn scans at most [`SCAN_EVENTS_MAX_FACTOR`]×`events_max` events, so
//!   a sink whose routes match little of the log still makes bounded
//!   progress per turn.

use std::collections::HashSet;

use crate::delivery::lanes::{lane_of, PendingRetries};
use crate::delivery::settle::InFlight;
use crate::delivery::state::{RetryRow, Settle};
use crate::model::RecordedEvent;

/// A turn scans at most this many times `events_max` new events, so a sink
/// whose routes match little of the log still makes bounded progress.
pub const SCAN_EVENTS_MAX_FACTOR: usize = 4;

/// Rough per-event overhead of the batch body beyond payload and metadata,
/// used for the `bytes_max` bound.
pub const EVENT_OVERHEAD_BYTES: usize = 400;

/// The `last_error` of a parked row: it has not failed, it waits.
pub const PARKED_REASON: &str = "waiting behind an earlier event of its lane";

/// The size an event counts for against `bytes_max`.
pub fn event_size_bytes(event: &RecordedEvent) -> usize {
    event.payload.len()
        + event
            .metadata
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + EVENT_OVERHEAD_BYTES
}

/// The sink's bounds that shape a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Most events in one batch.
    pub events_max: usize,
    /// Most bytes in one batch (at least one event is always taken).
    pub bytes_max: usize,
    /// Most retry rows (failed and parked) the sink may hold.
    pub retry_rows_max: usize,
}

impl PlanLimits {
    /// Most new events one turn reads.
    pub fn scan_max(&self) -> usize {
        self.events_max.saturating_mul(SCAN_EVENTS_MAX_FACTOR)
    }
}

/// What a turn asks of [`plan_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanAsk {
    /// The sink's cursor: every event at or below it was handled.
    pub cursor: u64,
    /// Due retry rows to send, in order (the budget is already spent).
    pub due: Vec<u64>,
    /// Whether to take new events after the due rows.
    pub allow_new: bool,
    /// The turn's time, for the first-failure time of parked rows.
    pub now_unix_ms: u64,
}

/// One planned batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The events to send, in batch order: strictly increasing positions.
    pub events: Vec<RecordedEvent>,
    /// `items[i]` describes `events[i]` for the settle.
    pub items: Vec<InFlight>,
    /// New events that wait behind a blocked lane.
    pub parked: Vec<RetryRow>,
    /// The cursor after this batch, when it moves.
    pub cursor_to: Option<u64>,
}

impl Plan {
    /// Nothing to send and nothing to record: the turn is idle.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.parked.is_empty() && self.cursor_to.is_none()
    }

    /// Adds what the plan itself decided (the cursor move, parked rows) to
    /// the settle of its outcome. The cursor never moves backwards.
    pub fn complete_settle(&self, settle: &mut Settle, cursor: u64) {
        settle.cursor_to = self.cursor_to.filter(|&c| c > cursor);
        settle.upsert_retries.extend(self.parked.iter().cloned());
    }
}

/// Where a plan's events come from.
pub trait EventSource {
    /// Why a read failed.
    type Error;
    /// The event of the due row at `position`; its absence is an error
    /// (a retry row must name an event).
    fn due_event(&mut self, position: u64) -> Result<RecordedEvent, Self::Error>;
    /// Up to `limit` events from `position` on, in position order.
    fn read_from(&mut self, position: u64, limit: usize)
        -> Result<Vec<RecordedEvent>, Self::Error>;
    /// Whether the sink's routes send `event` to it.
    fn routed(&self, event: &RecordedEvent) -> bool;
}

/// What the scan does after one new event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Offer the next event.
    Next,
    /// The batch (or the room for parked rows) is full: stop here. The
    /// event just offered was not used and the cursor stays before it.
    Stop,
}

/// Builds one [`Plan`], event by event.
#[derive(Debug)]
pub struct Planner<'a> {
    limits: PlanLimits,
    pending: &'a PendingRetries,
    now_unix_ms: u64,
    plan: Plan,
    bytes: usize,
    parked_lanes: HashSet<String>,
}

impl<'a> Planner<'a> {
    /// An empty plan against the mirror `pending`.
    pub fn new(limits: PlanLimits, pending: &'a PendingRetries, now_unix_ms: u64) -> Self {
        Planner {
            limits,
            pending,
            now_unix_ms,
            plan: Plan::default(),
            bytes: 0,
            parked_lanes: HashSet::new(),
        }
    }

    /// Offers the event of due row `row`. False when it does not fit the
    /// byte bound: the due rows after it wait for the next turn.
    pub fn offer_due(&mut self, event: RecordedEvent, row: &RetryRow) -> bool {
        let size = event_size_bytes(&event);
        if !self.plan.events.is_empty() && self.bytes + size > self.limits.bytes_max {
            return false;
        }
        self.bytes += size;
        self.plan.items.push(InFlight {
            position: row.position,
            event_id: event.id,
            lane: row.lane.clone(),
            prior: Some(row.clone()),
        });
        self.plan.events.push(event);
        true
    }

    /// Whether new events may follow the due rows.
    pub fn wants_new(&self, allow_new: bool) -> bool {
        allow_new
            && self.plan.events.len() < self.limits.events_max
            && self.pending.len() < self.limits.retry_rows_max
    }

    /// How many events to read next, after `scanned` were: the room left
    /// (at least one), so a sink whose routes match most events reads about
    /// one batch, within the scan bound.
    pub fn chunk_len(&self, scanned: usize) -> usize {
        let room = self
            .limits
            .events_max
            .saturating_sub(self.plan.events.len())
            .max(1);
        room.min(self.limits.scan_max().saturating_sub(scanned))
    }

    /// Whether the batch holds `events_max` events.
    pub fn is_full(&self) -> bool {
        self.plan.events.len() >= self.limits.events_max
    }

    /// The per-event scan rule (see the module docs). `routed`: whether the
    /// sink's routes match the event's stream.
    pub fn offer_new(&mut self, event: RecordedEvent, routed: bool) -> Scan {
        if !routed {
            self.plan.cursor_to = Some(event.position);
            return Scan::Next;
        }
        let lane = lane_of(&event);
        if self.pending.is_blocked(&lane) || self.parked_lanes.contains(&lane) {
            let rows_room = self
                .limits
                .retry_rows_max
                .saturating_sub(self.pending.len());
            if self.plan.parked.len() >= rows_room {
                return Scan::Stop;
            }
            self.plan.parked.push(RetryRow {
                position: event.position,
                lane: lane.clone(),
                attempts: 0,
                first_failure_unix_ms: self.now_unix_ms,
                next_attempt_unix_ms: 0,
                last_error: PARKED_REASON.into(),
            });
            self.parked_lanes.insert(lane);
            self.plan.cursor_to = Some(event.position);
            return Scan::Next;
        }
        let size = event_size_bytes(&event);
        if self.is_full()
            || (!self.plan.events.is_empty() && self.bytes + size > self.limits.bytes_max)
        {
            return Scan::Stop;
        }
        self.bytes += size;
        self.plan.cursor_to = Some(event.position);
        self.plan.items.push(InFlight {
            position: event.position,
            event_id: event.id,
            lane,
            prior: None,
        });
        self.plan.events.push(event);
        Scan::Next
    }

    /// The finished plan, its batch sorted by position (see the module
    /// docs).
    pub fn finish(self) -> Plan {
        let mut plan = self.plan;
        debug_assert_eq!(plan.events.len(), plan.items.len());
        sort_by_position(&mut plan);
        // Lane order, stated again in the proptest: a new event is never
        // taken behind an earlier parked event of its lane.
        debug_assert!(
            plan.items.iter().filter(|i| i.prior.is_none()).all(|i| plan
                .parked
                .iter()
                .all(|r| r.lane != i.lane || r.position > i.position)),
            "a new event overtook a parked event of its lane"
        );
        plan
    }
}

/// Sorts the batch (events and their items together) by position. Due
/// rows were chosen in due-time order across lanes, which need not be
/// position order; a lane's own rows are in position order, so sorting
/// keeps every lane in order, and new events, all past the cursor, already
/// follow every due row.
fn sort_by_position(plan: &mut Plan) {
    if plan.items.is_sorted_by_key(|i| i.position) {
        return;
    }
    let events = std::mem::take(&mut plan.events);
    let items = std::mem::take(&mut plan.items);
    let mut batch: Vec<(InFlight, RecordedEvent)> = items.into_iter().zip(events).collect();
    batch.sort_unstable_by_key(|(item, _)| item.position);
    (plan.items, plan.events) = batch.into_iter().unzip();
}

/// Plans one batch: the due rows of `ask`, then new events after the
/// cursor, read from `source`.
pub fn plan_batch<E>(
    source: &mut dyn EventSource<Error = E>,
    limits: PlanLimits,
    pending: &PendingRetries,
    ask: &PlanAsk,
) -> Result<Plan, E> {
    let mut planner = Planner::new(limits, pending, ask.now_unix_ms);
    for &position in &ask.due {
        let Some(row) = pending.get(position) else {
            continue;
        };
        let event = source.due_event(position)?;
        if !planner.offer_due(event, row) {
            break;
        }
    }
    if !planner.wants_new(ask.allow_new) {
        return Ok(planner.finish());
    }
    let mut scanned = 0usize;
    let mut next = ask.cursor.saturating_add(1);
    'scan: while scanned < limits.scan_max() {
        let chunk = source.read_from(next, planner.chunk_len(scanned))?;
        let Some(last) = chunk.last() else { break };
        next = last.position.saturating_add(1);
        scanned += chunk.len();
        for event in chunk {
            let routed = source.routed(&event);
            if planner.offer_new(event, routed) == Scan::Stop {
                break 'scan;
            }
        }
        if planner.is_full() {
            break;
        }
    }
    Ok(planner.finish())
}

#[cfg(test)]
mod tests;
