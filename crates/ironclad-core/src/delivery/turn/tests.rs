//! The turn's decisions, each against its rule written out naively.

use std::collections::BTreeMap;

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::delivery::budget::RetryBudgetConfig;
use crate::delivery::state::{DlqReason, DlqRow, RetryRow};

use BreakerState::{Closed, Disabled, ForcedOpen, HalfOpen, Open};

fn row(position: u64, lane: u8, attempts: u32, due: u64) -> RetryRow {
    RetryRow {
        position,
        lane: format!("s:{lane}"),
        attempts,
        first_failure_unix_ms: 0,
        next_attempt_unix_ms: due,
        last_error: String::new(),
    }
}

/// Rows with one lane per position forever, as events have.
fn rows() -> impl Strategy<Value = Vec<RetryRow>> {
    proptest::collection::btree_map(0u64..40, (0u8..4, 0u32..3, 0u64..10), 0..25).prop_map(|m| {
        m.into_iter()
            .map(|(p, (lane, attempts, due))| row(p, lane, attempts, due))
            .collect()
    })
}

fn budget(ratio: f64) -> RetryBudget {
    let config = RetryBudgetConfig {
        retry_ratio: ratio,
        retries_per_s_min: 0,
        window_ms: 1_000,
    };
    RetryBudget::new(&config).expect("valid budget")
}

proptest! {
    /// A refusal holds back exactly the lanes whose candidate run holds a
    /// retry, each from its first retry on; a grant holds back nothing.
    #[test]
    fn a_refusal_holds_back_only_the_lanes_with_a_retry(
        rows in rows(), now in 0u64..10, limit in 1usize..30, allowed in any::<bool>(),
    ) {
        let pending = PendingRetries::from_rows(rows);
        let candidates = pending.due(now, limit);
        let due = hold_back_refused(&pending, &candidates, allowed);
        let lane = |p: &u64| pending.get(*p).map(|r| r.lane.clone()).unwrap_or_default();
        let mut seen_retry: std::collections::HashSet<String> = Default::default();
        let mut want = Vec::new();
        for p in &candidates {
            if !allowed && pending.get(*p).is_some_and(|r| r.attempts > 0) {
                seen_retry.insert(lane(p));
            }
            if !seen_retry.contains(&lane(p)) {
                want.push(*p);
            }
        }
        prop_assert_eq!(due, want);
    }

    /// The budget is asked once, only when a retry is among the candidates.
    #[test]
    fn the_budget_is_spent_once_per_turn_with_retries(rows in rows(), now in 0u64..10) {
        let pending = PendingRetries::from_rows(rows);
        let mut none = budget(0.0);
        let refused = select_due(&pending, now, 50, &mut none);
        prop_assert!(refused.iter().all(|p| pending.get(*p).is_some_and(|r| r.attempts == 0)));
        let mut plenty = budget(1.0);
        for t in 0..10 { plenty.record_request(t); }
        let before = plenty.retries_available(now);
        let granted = select_due(&pending, now, 50, &mut plenty);
        let candidates = pending.due(now, 50);
        prop_assert_eq!(&granted, &candidates);
        let spent = before - plenty.retries_available(now);
        let has_retry = candidates.iter().any(|p| pending.get(*p).is_some_and(|r| r.attempts > 0));
        prop_assert_eq!(spent, u64::from(has_retry));
    }

    /// Applying a settle to the mirror equals reloading it from a store
    /// that applied the same settle.
    #[test]
    fn the_mirror_equals_a_reload(
        rows in rows(),
        cursor in 0u64..40,
        ops in proptest::collection::vec((0u64..40, 0u8..3, 1u64..10), 0..12),
        cursor_to in proptest::option::of(0u64..60),
    ) {
        let mut mirror = Mirror { cursor, pending: PendingRetries::from_rows(rows.clone()) };
        let mut store: BTreeMap<u64, RetryRow> = rows.into_iter().map(|r| (r.position, r)).collect();
        let mut settle = Settle { cursor_to, ..Settle::default() };
        let mut touched = std::collections::HashSet::new();
        for (p, what, due) in ops {
            if !touched.insert(p) { continue; } // a settle names a position once
            let lane = store.get(&p).map_or(0, |r| r.lane[2..].parse().unwrap_or(0));
            match what {
                0 => { settle.delete_retries.push(p); store.remove(&p); }
                1 => {
                    settle.dead_letters.push(DlqRow {
                        sink_id: 1, position: p, event_id: Uuid::nil(), lane: format!("s:{lane}"),
                        attempts: 1, first_failure_unix_ms: 0, last_failure_unix_ms: 0,
                        last_error: String::new(), reason: DlqReason::Permanent,
                    });
                    store.remove(&p);
                }
                _ => { let r = row(p, lane, 1, due); settle.upsert_retries.push(r.clone()); store.insert(p, r); }
            }
        }
        mirror.apply(&settle);
        let reload = PendingRetries::from_rows(store.into_values());
        prop_assert_eq!(mirror.pending.rows().collect::<Vec<_>>(), reload.rows().collect::<Vec<_>>());
        prop_assert_eq!(mirror.pending.due(u64::MAX, usize::MAX), reload.due(u64::MAX, usize::MAX));
        prop_assert_eq!(mirror.cursor, cursor_to.map_or(cursor, |c| c.max(cursor)));
    }

    /// The idle pause wakes exactly when the next retry is due, polls at
    /// least every IDLE_POLL_MS and never spins.
    #[test]
    fn the_idle_pause_is_bounded(next in proptest::option::of(0u64..1_000), now in 0u64..1_000) {
        let pause = idle_pause_ms(next, now);
        prop_assert!((1..=IDLE_POLL_MS).contains(&pause));
        if let Some(d) = next.filter(|d| *d > now && d - now <= IDLE_POLL_MS) {
            prop_assert_eq!(pause, d - now);
        }
    }
}

#[test]
fn only_a_closed_retry_only_plain_failure_is_not_counted() {
    let outcomes = [
        Outcome::Delivered,
        Outcome::Retry {
            retry_after_ms: None,
        },
        Outcome::Retry {
            retry_after_ms: Some(5),
        },
        Outcome::Conflict,
        Outcome::Permanent,
    ];
    for batch in outcomes {
        for only in [false, true] {
            for state in [Closed, Open, HalfOpen, ForcedOpen, Disabled] {
                let got = breaker_report(batch, only, state);
                let want = match batch {
                    Outcome::Retry {
                        retry_after_ms: None,
                    } if only && state == Closed => BreakerReport::Cancel,
                    Outcome::Retry { retry_after_ms } => BreakerReport::Failure { retry_after_ms },
                    _ => BreakerReport::Success,
                };
                assert_eq!(got, want, "{batch:?} only_retries={only} in {state:?}");
            }
        }
    }
}

#[test]
fn a_half_open_trial_with_retries_takes_no_new_events() {
    assert!(!allows_new_events(&[3], HalfOpen));
    assert!(allows_new_events(&[], HalfOpen));
    assert!(allows_new_events(&[3], Closed));
    assert!(allows_new_events(&[3], Disabled));
}

#[test]
fn parked_and_new_events_are_not_retries() {
    let item = |prior: Option<u32>| InFlight {
        position: 1,
        event_id: Uuid::nil(),
        lane: "s:0".into(),
        prior: prior.map(|a| row(1, 0, a, 0)),
    };
    assert!(only_retries(&[item(Some(1)), item(Some(2))]));
    assert!(!only_retries(&[item(Some(1)), item(Some(0))]));
    assert!(!only_retries(&[item(Some(1)), item(None)]));
}
