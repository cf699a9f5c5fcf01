//! Planning against an in-memory log: the scan rule's guarantees (nothing
//! skipped, nothing overtakes its lane, bounds kept, progress made) hold for
//! any log, mirror and limits.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::model::{Op, ZERO_HASH};

/// A log in memory; streams named `x…` are not routed to the sink.
struct VecSource(Vec<RecordedEvent>);

impl EventSource for VecSource {
    type Error = Infallible;
    fn due_event(&mut self, position: u64) -> Result<RecordedEvent, Infallible> {
        // The strategy only makes rows for positions in the log.
        Ok(self.0[(position - 1) as usize].clone())
    }
    fn read_from(&mut self, position: u64, limit: usize) -> Result<Vec<RecordedEvent>, Infallible> {
        let from = usize::try_from(position.saturating_sub(1)).unwrap_or(usize::MAX);
        Ok(self.0.iter().skip(from).take(limit).cloned().collect())
    }
    fn routed(&self, event: &RecordedEvent) -> bool {
        !event.stream.starts_with('x')
    }
}

fn event(position: u64, stream: u8, entity: Option<u8>) -> RecordedEvent {
    RecordedEvent {
        id: Uuid::from_u128(u128::from(position)),
        stream: if stream == 0 {
            "x".into()
        } else {
            format!("s{stream}")
        },
        version: 1,
        position,
        event_type: "t".into(),
        op: Op::Event,
        entity: entity.map(|e| format!("n{e}")),
        payload: "{}".into(),
        metadata: BTreeMap::new(),
        created_at_us: 1,
        hash_version: 1,
        prev_hash: ZERO_HASH,
        hash: ZERO_HASH,
        global_hash: ZERO_HASH,
    }
}

fn row(position: u64, lane: String, attempts: u32) -> RetryRow {
    RetryRow {
        position,
        lane,
        attempts,
        first_failure_unix_ms: 0,
        next_attempt_unix_ms: 0,
        last_error: String::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_scan_skips_nothing_and_keeps_lane_order(
        log in proptest::collection::vec((0u8..4, proptest::option::of(0u8..3)), 0..60),
        cursor in 0u64..20,
        rows_at in proptest::collection::vec(0u64..20, 0..6),
        events_max in 1usize..6,
        retry_rows_max in 1usize..10,
        bytes_max in prop_oneof![Just(1_000usize), Just(1 << 20)],
        allow_new in any::<bool>(),
    ) {
        let log: Vec<RecordedEvent> = log.iter().enumerate()
            .map(|(i, (s, e))| event(i as u64 + 1, *s, *e)).collect();
        let cursor = cursor.min(log.len() as u64);
        // Retry rows sit at or below the cursor, on routed events.
        let rows: Vec<RetryRow> = rows_at.iter()
            .filter_map(|p| log.get(usize::try_from(*p).ok()?))
            .filter(|e| e.position <= cursor && !e.stream.starts_with('x'))
            .map(|e| row(e.position, lane_of(e), 1))
            .collect();
        let pending = PendingRetries::from_rows(rows);
        let limits = PlanLimits { events_max, bytes_max, retry_rows_max };
        let due = pending.due(0, events_max);
        let ask = PlanAsk { cursor, due: due.clone(), allow_new, now_unix_ms: 7 };
        let mut source = VecSource(log.clone());
        let plan = plan_batch(&mut source, limits, &pending, &ask).unwrap_or_else(|e| match e {});

        prop_assert!(plan.events.len() <= events_max);
        let sent_due: Vec<u64> = plan.items.iter().filter(|i| i.prior.is_some()).map(|i| i.position).collect();
        // Every batch is in strictly increasing position order, its events
        // and their items alike.
        prop_assert!(plan.items.windows(2).all(|w| w[0].position < w[1].position), "batch out of position order: {:?}", plan.items.iter().map(|i| i.position).collect::<Vec<_>>());
        prop_assert!(plan.events.iter().zip(&plan.items).all(|(e, i)| e.position == i.position && e.id == i.event_id));
        // The due rows sent are the first ones asked for (the byte bound
        // may cut the rest), and they go first.
        let mut asked_first = due[..sent_due.len()].to_vec();
        asked_first.sort_unstable();
        prop_assert_eq!(&asked_first, &sent_due, "the first due rows are sent");
        prop_assert!(plan.items.iter().take(sent_due.len()).all(|i| i.prior.is_some()), "due rows go first");
        let moved_to = plan.cursor_to.unwrap_or(cursor);
        prop_assert!(moved_to >= cursor);
        let wanted_new = allow_new && sent_due.len() < events_max && pending.len() < retry_rows_max;
        if !wanted_new {
            prop_assert!(plan.cursor_to.is_none() && plan.parked.is_empty());
        }
        // Every routed event the cursor passed is taken or parked, exactly once.
        let taken: Vec<u64> = plan.items.iter().filter(|i| i.prior.is_none()).map(|i| i.position).collect();
        let parked: Vec<u64> = plan.parked.iter().map(|r| r.position).collect();
        let passed: Vec<u64> = log.iter()
            .filter(|e| e.position > cursor && e.position <= moved_to && !e.stream.starts_with('x'))
            .map(|e| e.position).collect();
        let mut handled: Vec<u64> = taken.iter().chain(&parked).copied().collect();
        handled.sort_unstable();
        prop_assert_eq!(handled, passed);
        prop_assert!(parked.len() <= retry_rows_max.saturating_sub(pending.len()));
        // Nothing overtakes its lane: no taken event of a lane that is
        // blocked or parked an earlier event.
        let mut first_parked: HashMap<&str, u64> = HashMap::new();
        for r in &plan.parked {
            first_parked.entry(r.lane.as_str()).or_insert(r.position);
            prop_assert!(r.attempts == 0 && r.next_attempt_unix_ms == 0);
        }
        for it in plan.items.iter().filter(|i| i.prior.is_none()) {
            prop_assert!(!pending.is_blocked(&it.lane));
            prop_assert!(first_parked.get(it.lane.as_str()).is_none_or(|p| *p > it.position));
        }
        for r in &plan.parked {
            let blocked = pending.is_blocked(&r.lane) || plan.parked.iter().any(|o| o.lane == r.lane && o.position < r.position);
            prop_assert!(blocked, "parked only behind a blocked lane: {r:?}");
        }
        // Progress: a turn that wants new events, has one and sent no due
        // row (which may have filled the byte bound) moves the cursor.
        if wanted_new && log.len() as u64 > cursor && sent_due.is_empty() {
            prop_assert!(plan.cursor_to.is_some());
        }
        // And the settle never moves the cursor back.
        let mut settle = Settle::default();
        plan.complete_settle(&mut settle, cursor);
        prop_assert!(settle.cursor_to.is_none_or(|c| c > cursor));
        prop_assert_eq!(settle.upsert_retries.len(), plan.parked.len());
    }
}

/// The plan of new events only, from `cursor`, at time 9.
fn plan_new(
    log: Vec<RecordedEvent>,
    pending: &PendingRetries,
    bytes_max: usize,
    cursor: u64,
) -> Plan {
    let limits = PlanLimits {
        events_max: 5,
        bytes_max,
        retry_rows_max: 10,
    };
    let ask = PlanAsk {
        cursor,
        due: vec![],
        allow_new: true,
        now_unix_ms: 9,
    };
    plan_batch(&mut VecSource(log), limits, pending, &ask).unwrap_or_else(|e| match e {})
}

#[test]
fn a_blocked_lane_parks_and_the_others_go() {
    let log = vec![
        event(1, 1, Some(0)),
        event(2, 1, Some(0)),
        event(3, 1, Some(1)),
        event(4, 0, None),
    ];
    let pending = PendingRetries::from_rows([row(1, "e:n0".into(), 1)]);
    let plan = plan_new(log, &pending, 1 << 20, 1);
    let parked: Vec<u64> = plan.parked.iter().map(|r| r.position).collect();
    assert_eq!(parked, vec![2]);
    assert_eq!(plan.parked[0].first_failure_unix_ms, 9);
    let taken: Vec<u64> = plan.items.iter().map(|i| i.position).collect();
    assert_eq!(taken, vec![3]);
    assert_eq!(plan.cursor_to, Some(4), "the unrouted event is passed over");
}

#[test]
fn the_byte_bound_still_takes_one_event() {
    let log = vec![event(1, 1, None), event(2, 2, None)];
    let plan = plan_new(log, &PendingRetries::default(), 1, 0);
    assert_eq!(plan.events.len(), 1);
    let why = "the second event waits: the cursor stays before it";
    assert_eq!(plan.cursor_to, Some(1), "{why}");
}

/// The reproduced batch of the issue: due retries across lanes come out in
/// due-time order (30, 15, 7, 1, 4), and the batch goes out by position.
#[test]
fn due_rows_across_lanes_go_out_in_position_order() {
    let log: Vec<RecordedEvent> = (1..=31).map(|p| event(p, 1, Some(p as u8))).collect();
    let due_at = [(30, 1), (15, 2), (7, 3), (1, 4), (4, 5)];
    let rows = due_at.iter().map(|&(p, at)| RetryRow {
        next_attempt_unix_ms: at,
        ..row(p, lane_of(&log[(p - 1) as usize]), 1)
    });
    let pending = PendingRetries::from_rows(rows);
    let due = pending.due(10, 5);
    assert_eq!(due, vec![30, 15, 7, 1, 4], "due-time order");
    let limits = PlanLimits {
        events_max: 8,
        bytes_max: 1 << 20,
        retry_rows_max: 10,
    };
    let ask = PlanAsk {
        cursor: 30,
        due,
        allow_new: true,
        now_unix_ms: 10,
    };
    let plan =
        plan_batch(&mut VecSource(log), limits, &pending, &ask).unwrap_or_else(|e| match e {});
    let sent: Vec<u64> = plan.events.iter().map(|e| e.position).collect();
    assert_eq!(sent, vec![1, 4, 7, 15, 30, 31]);
    let items: Vec<u64> = plan.items.iter().map(|i| i.position).collect();
    assert_eq!(items, sent, "items follow their events");
}
