//! Settling a batch: from one sink response to the [`Settle`] the store
//! commits. Pure and deterministic (time and randomness are inputs), so the
//! delivery state machine is tested without a network or a disk.
//!
//! Per event (`docs/design.md` "Delivery state machine"):
//! - delivered: its retry row, if any, is deleted; counted as delivered;
//! - retryable: a retry row with one more attempt and the next time from
//!   [`next_attempt`], or a dead letter once `max_attempts` (reason
//!   `max_attempts`) or `max_elapsed` (reason `expired`) is reached;
//! - 409: a dead letter with reason `conflict` (the reconciler of SPEC §5
//!   is not built yet);
//! - any other refusal: a dead letter with reason `permanent`.

use uuid::Uuid;

use crate::delivery::classify::Outcome;
use crate::delivery::response::SinkResponse;
use crate::delivery::retry::{next_attempt, GiveUpReason, RetryDecision, RetryPolicy, RetryState};
use crate::delivery::state::{DlqReason, DlqRow, RetryRow, Settle};

/// Longest `last_error` stored, in bytes; longer descriptions are cut.
pub const LAST_ERROR_BYTES_MAX: usize = 512;

/// One event of a batch that was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// The event's position.
    pub position: u64,
    /// The event's id.
    pub event_id: Uuid,
    /// The event's lane.
    pub lane: String,
    /// Its retry row, when it was sent as a retry (or was parked).
    pub prior: Option<RetryRow>,
}

/// What one settle did, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Events delivered.
    pub delivered: u64,
    /// Events scheduled for another attempt.
    pub retried: u64,
    /// Events dead-lettered, per reason.
    pub dead_lettered: Vec<(DlqReason, u64)>,
}

impl Tally {
    fn dead(&mut self, reason: DlqReason) {
        match self.dead_lettered.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.dead_lettered.push((reason, 1)),
        }
    }
}

/// Cuts `s` to at most [`LAST_ERROR_BYTES_MAX`] bytes on a char boundary.
pub fn clip_error(s: &str) -> String {
    if s.len() <= LAST_ERROR_BYTES_MAX {
        return s.to_string();
    }
    let mut end = LAST_ERROR_BYTES_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Builds the settle for `items` after `response`, at `now_unix_ms`.
/// `random` yields draws in `[0, 1)` for the backoff jitter, one per
/// retried event. `cursor_to` and `parked` come from the batch plan: the
/// new cursor and the rows of new events that wait behind a blocked lane.
pub fn settle_batch(
    sink_id: i64,
    items: &[InFlight],
    response: &SinkResponse,
    now_unix_ms: u64,
    policy: &RetryPolicy,
    random: &mut dyn FnMut() -> f64,
) -> (Settle, Tally) {
    let mut settle = Settle {
        sink_id,
        ..Settle::default()
    };
    let mut tally = Tally::default();
    let detail = clip_error(if response.detail.is_empty() {
        "failed without a description"
    } else {
        &response.detail
    });
    for (i, item) in items.iter().enumerate() {
        let dead = |reason: DlqReason, attempts: u32, first: u64| DlqRow {
            sink_id,
            position: item.position,
            event_id: item.event_id,
            lane: item.lane.clone(),
            attempts,
            first_failure_unix_ms: first,
            last_failure_unix_ms: now_unix_ms,
            last_error: detail.clone(),
            reason,
        };
        // The retry state this failure creates: a parked row (attempts 0)
        // fails for the first time now.
        let state = match &item.prior {
            Some(r) if r.attempts > 0 => RetryState {
                attempts: r.attempts,
                first_failure_unix_ms: r.first_failure_unix_ms,
            }
            .failed_again(),
            _ => RetryState::first_failure(now_unix_ms),
        };
        match response.outcome_of(i) {
            Outcome::Delivered => {
                if item.prior.is_some() {
                    settle.delete_retries.push(item.position);
                }
                settle.delivered += 1;
                tally.delivered += 1;
            }
            Outcome::Retry { retry_after_ms } => {
                match next_attempt(policy, &state, now_unix_ms, random(), retry_after_ms) {
                    RetryDecision::RetryAt { at_unix_ms } => {
                        settle.upsert_retries.push(RetryRow {
                            position: item.position,
                            lane: item.lane.clone(),
                            attempts: state.attempts,
                            first_failure_unix_ms: state.first_failure_unix_ms,
                            next_attempt_unix_ms: at_unix_ms,
                            last_error: detail.clone(),
                        });
                        tally.retried += 1;
                    }
                    RetryDecision::GiveUp { reason } => {
                        let reason = match reason {
                            GiveUpReason::MaxAttempts => DlqReason::MaxAttempts,
                            GiveUpReason::MaxElapsed => DlqReason::Expired,
                        };
                        settle.dead_letters.push(dead(
                            reason,
                            state.attempts,
                            state.first_failure_unix_ms,
                        ));
                        tally.dead(reason);
                    }
                }
            }
            Outcome::Conflict => {
                settle.dead_letters.push(dead(
                    DlqReason::Conflict,
                    state.attempts,
                    state.first_failure_unix_ms,
                ));
                tally.dead(DlqReason::Conflict);
            }
            Outcome::Permanent => {
                settle.dead_letters.push(dead(
                    DlqReason::Permanent,
                    state.attempts,
                    state.first_failure_unix_ms,
                ));
                tally.dead(DlqReason::Permanent);
            }
        }
    }
    debug_assert_eq!(
        settle.delivered as usize + settle.upsert_retries.len() + settle.dead_letters.len(),
        items.len(),
        "every event of the batch is settled exactly once"
    );
    (settle, tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            delay_ms_base: 100,
            delay_ms_max: 1_000,
            attempts_max: 3,
            elapsed_ms_max: 10_000,
            retry_after_ms_cap: 5_000,
        }
    }

    fn item(position: u64, prior_attempts: Option<u32>) -> InFlight {
        InFlight {
            position,
            event_id: Uuid::from_u128(u128::from(position)),
            lane: format!("s:{}", position % 3),
            prior: prior_attempts.map(|attempts| RetryRow {
                position,
                lane: format!("s:{}", position % 3),
                attempts,
                first_failure_unix_ms: 1_000,
                next_attempt_unix_ms: 1_000,
                last_error: "x".into(),
            }),
        }
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Delivered),
            proptest::option::of(0u64..20_000)
                .prop_map(|retry_after_ms| Outcome::Retry { retry_after_ms }),
            Just(Outcome::Conflict),
            Just(Outcome::Permanent),
        ]
    }

    proptest! {
        /// Every event lands in exactly one state, attempts only grow, and a
        /// retry is never scheduled before now or before `Retry-After`.
        #[test]
        fn every_event_is_settled_once(
            priors in proptest::collection::vec(proptest::option::of(0u32..4), 1..40),
            batch in outcome(),
            own in proptest::collection::vec(proptest::option::of(outcome()), 0..40),
            now in 1_000u64..20_000,
        ) {
            let items: Vec<_> = priors.iter().enumerate().map(|(i, p)| item(i as u64 + 1, *p)).collect();
            let per_event = if own.len() >= items.len() { own[..items.len()].to_vec() } else { Vec::new() };
            let response = SinkResponse { batch, per_event, detail: "HTTP 503".into() };
            let (s, t) = settle_batch(7, &items, &response, now, &policy(), &mut || 0.5);
            let mut seen = std::collections::HashSet::new();
            for r in &s.upsert_retries { prop_assert!(seen.insert(r.position)); }
            for d in &s.dead_letters { prop_assert!(seen.insert(d.position)); }
            prop_assert_eq!(seen.len() as u64 + s.delivered, items.len() as u64);
            prop_assert_eq!(t.delivered, s.delivered);
            for r in &s.upsert_retries {
                let prior = items[(r.position - 1) as usize].prior.as_ref().map_or(0, |p| p.attempts);
                prop_assert_eq!(r.attempts, prior + 1);
                prop_assert!(r.attempts <= policy().attempts_max);
                prop_assert!(r.next_attempt_unix_ms >= now);
                if let Outcome::Retry { retry_after_ms: Some(ms) } = response.outcome_of((r.position - 1) as usize) {
                    prop_assert!(r.next_attempt_unix_ms >= now + ms.min(policy().retry_after_ms_cap));
                }
            }
            for p in &s.delete_retries {
                prop_assert!(items[(*p - 1) as usize].prior.is_some());
            }
        }
    }

    #[test]
    fn the_last_attempt_dead_letters_with_max_attempts() {
        let items = [item(1, Some(2)), item(2, None)];
        let r = SinkResponse::failed(
            Outcome::Retry {
                retry_after_ms: None,
            },
            "HTTP 503",
        );
        let (s, t) = settle_batch(1, &items, &r, 2_000, &policy(), &mut || 0.0);
        assert_eq!(s.dead_letters.len(), 1);
        assert_eq!(s.dead_letters[0].reason, DlqReason::MaxAttempts);
        assert_eq!(s.dead_letters[0].attempts, 3);
        assert_eq!(s.upsert_retries[0].attempts, 1);
        assert_eq!(t.retried, 1);
    }

    #[test]
    fn running_out_of_time_dead_letters_as_expired() {
        let items = [item(1, Some(1))];
        let r = SinkResponse::failed(
            Outcome::Retry {
                retry_after_ms: Some(60_000),
            },
            "HTTP 429",
        );
        // first failure at 1_000, max elapsed 10_000: now 9_000 + 5_000 cap > 11_000.
        let (s, _) = settle_batch(1, &items, &r, 9_000, &policy(), &mut || 0.0);
        assert_eq!(s.dead_letters[0].reason, DlqReason::Expired);
    }

    #[test]
    fn conflicts_and_refusals_go_straight_to_the_dlq() {
        let items = [item(1, None), item(2, None), item(3, Some(2))];
        let r = SinkResponse {
            batch: Outcome::Delivered,
            per_event: vec![Some(Outcome::Conflict), Some(Outcome::Permanent), None],
            detail: "per-event results".into(),
        };
        let (s, t) = settle_batch(1, &items, &r, 2_000, &policy(), &mut || 0.0);
        let reasons: Vec<_> = s.dead_letters.iter().map(|d| d.reason).collect();
        assert_eq!(reasons, vec![DlqReason::Conflict, DlqReason::Permanent]);
        assert_eq!(s.delete_retries, vec![3]);
        assert_eq!(t.delivered, 1);
    }

    #[test]
    fn long_errors_are_clipped_on_a_char_boundary() {
        let s = "é".repeat(LAST_ERROR_BYTES_MAX);
        let c = clip_error(&s);
        assert!(c.len() <= LAST_ERROR_BYTES_MAX && c.chars().all(|ch| ch == 'é'));
    }
}
