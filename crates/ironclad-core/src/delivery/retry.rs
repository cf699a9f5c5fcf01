//! Retry scheduling (SPEC §4 "Retry"): the policy, full-jitter exponential
//! backoff, `Retry-After` parsing and the next-attempt decision. The retry
//! budget lives in [`super::budget`].
//!
//! Everything here is pure: the clock and the random draw are arguments, so
//! a schedule is reproducible from its inputs and tests never wait. Nothing
//! panics or overflows on any input, including policies that fail `check`.

use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use thiserror::Error;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Upper limit on [`RetryPolicy::attempts_max`].
pub const ATTEMPTS_MAX_LIMIT: u32 = 10_000;
/// Upper limit on [`RetryPolicy::delay_ms_max`] and [`RetryPolicy::retry_after_ms_cap`]: one day.
pub const DELAY_MS_LIMIT: u64 = DAY_MS;
/// Upper limit on [`RetryPolicy::elapsed_ms_max`]: 30 days.
pub const ELAPSED_MS_LIMIT: u64 = 30 * DAY_MS;
/// Longest `Retry-After` value parsed. The longest valid form (an RFC 850
/// date) is 33 bytes; anything much longer is garbage or an attack.
pub const RETRY_AFTER_BYTES_MAX: usize = 64;
/// Largest delta-seconds honoured; larger values count as this (RFC 9111 §1.2.2).
pub const RETRY_AFTER_SECONDS_MAX: u64 = 1 << 31;

/// How a failed delivery is retried. Field names map to SPEC §4's `base`,
/// `cap`, `max_attempts` and `max_elapsed`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// `base`: the backoff ceiling of the first retry, in milliseconds.
    pub delay_ms_base: u64,
    /// `cap`: the largest backoff ceiling, in milliseconds.
    pub delay_ms_max: u64,
    /// `max_attempts`: attempts in all, the first included; 1 means no retries.
    pub attempts_max: u32,
    /// `max_elapsed`: no retry is scheduled later than this long after the
    /// first failure, in milliseconds.
    pub elapsed_ms_max: u64,
    /// The most of a server's `Retry-After` that is honoured, in
    /// milliseconds; 0 ignores `Retry-After`.
    pub retry_after_ms_cap: u64,
}

impl Default for RetryPolicy {
    /// 1 s base, 5 min cap, 15 attempts within a day, `Retry-After` honoured
    /// up to an hour: 14 retries over about 17 minutes expected (34 at most,
    /// without `Retry-After`) before the DLQ.
    fn default() -> Self {
        RetryPolicy {
            delay_ms_base: 1_000,
            delay_ms_max: 5 * 60 * 1000,
            attempts_max: 15,
            elapsed_ms_max: DAY_MS,
            retry_after_ms_cap: 60 * 60 * 1000,
        }
    }
}

/// Why a [`RetryPolicy`] was rejected. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RetryPolicyError {
    /// A field that must be positive is 0.
    #[error("retry policy: {field} is 0: it must be at least 1")]
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// The cap is below the base, so the base could never be reached.
    #[error("retry policy: delay_ms_max ({max}) is less than delay_ms_base ({base}): raise the cap or lower the base")]
    DelayMaxBelowBase {
        /// `delay_ms_base`.
        base: u64,
        /// `delay_ms_max`.
        max: u64,
    },
    /// A field exceeds its limit.
    #[error("retry policy: {field} is {value}, more than the limit of {limit}")]
    TooLarge {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The limit.
        limit: u64,
    },
}

impl RetryPolicy {
    /// Rejects policies that cannot mean what the operator intended.
    pub fn check(&self) -> Result<(), RetryPolicyError> {
        // A zero base retries in a hot loop; zero attempts or zero elapsed
        // time would refuse even the first try.
        let positive = [
            ("delay_ms_base", self.delay_ms_base),
            ("attempts_max", u64::from(self.attempts_max)),
            ("elapsed_ms_max", self.elapsed_ms_max),
        ];
        if let Some((field, _)) = positive.into_iter().find(|&(_, v)| v == 0) {
            return Err(RetryPolicyError::Zero { field });
        }
        if self.delay_ms_max < self.delay_ms_base {
            return Err(RetryPolicyError::DelayMaxBelowBase {
                base: self.delay_ms_base,
                max: self.delay_ms_max,
            });
        }
        let bounded = [
            ("delay_ms_max", self.delay_ms_max, DELAY_MS_LIMIT),
            (
                "attempts_max",
                self.attempts_max.into(),
                ATTEMPTS_MAX_LIMIT.into(),
            ),
            ("elapsed_ms_max", self.elapsed_ms_max, ELAPSED_MS_LIMIT),
            (
                "retry_after_ms_cap",
                self.retry_after_ms_cap,
                DELAY_MS_LIMIT,
            ),
        ];
        match bounded.into_iter().find(|&(_, v, limit)| v > limit) {
            Some((field, value, limit)) => Err(RetryPolicyError::TooLarge {
                field,
                value,
                limit,
            }),
            None => Ok(()),
        }
    }
}

/// `min(cap, base·2^attempt)` in milliseconds, saturating instead of overflowing.
pub fn backoff_ceiling_ms(policy: &RetryPolicy, attempt: u32) -> u64 {
    let base = policy.delay_ms_base;
    let doubled = if base == 0 {
        0
    } else if attempt <= base.leading_zeros() {
        // Shifting by at most the leading zeros loses no bits, and keeps
        // the shift below 64.
        base << attempt
    } else {
        u64::MAX
    };
    doubled.min(policy.delay_ms_max)
}

/// Full-jitter exponential backoff: `rand(0, min(cap, base·2^attempt))` in
/// milliseconds, with `unit_random` as the draw. `attempt` counts from 0 for
/// the first retry. `unit_random` should lie in `[0, 1)`; anything else is
/// clamped into it, NaN to 0. The result is monotone in `unit_random`.
pub fn backoff_ms(policy: &RetryPolicy, attempt: u32, unit_random: f64) -> u64 {
    const BELOW_ONE: f64 = 1.0 - f64::EPSILON / 2.0;
    let u = if unit_random.is_nan() || unit_random < 0.0 {
        0.0
    } else {
        unit_random.min(BELOW_ONE)
    };
    let ceiling = backoff_ceiling_ms(policy, attempt);
    // Above 2^53 the product can round up to the ceiling itself; `as`
    // saturates and `min` keeps the bound.
    ((u * ceiling as f64) as u64).min(ceiling)
}

/// Parses a `Retry-After` value into a delay in milliseconds from
/// `now_unix_ms`: delta-seconds (digits only, no sign), or an HTTP-date in
/// IMF-fixdate, RFC 850 or asctime form (RFC 9110 §10.2.3, §5.6.7).
/// A date in the past gives 0. Garbage, negative numbers and values longer
/// than [`RETRY_AFTER_BYTES_MAX`] give `None`. Not capped: the policy does that.
pub fn parse_retry_after(header: &str, now_unix_ms: u64) -> Option<u64> {
    if header.len() > RETRY_AFTER_BYTES_MAX {
        return None;
    }
    // Whitespace around a field value is not part of it (RFC 9110 §5.5);
    // other control bytes make the value invalid.
    let value = header.trim_matches([' ', '\t']);
    if value.is_empty() || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = value.bytes().fold(0u64, |acc, b| {
            acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        });
        return Some(seconds.min(RETRY_AFTER_SECONDS_MAX) * 1000);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_unix_ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis();
    Some(
        u64::try_from(at_unix_ms)
            .unwrap_or(u64::MAX)
            .saturating_sub(now_unix_ms),
    )
}

/// Where a failing delivery stands. Persisted (SPEC §4), so times are wall
/// clock: a monotonic clock does not survive a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryState {
    /// Attempts made so far, the one that just failed included.
    pub attempts: u32,
    /// When the first attempt failed, in milliseconds since the Unix epoch.
    pub first_failure_unix_ms: u64,
}

impl RetryState {
    /// The state after the first attempt failed at `now_unix_ms`.
    pub fn first_failure(now_unix_ms: u64) -> Self {
        RetryState {
            attempts: 1,
            first_failure_unix_ms: now_unix_ms,
        }
    }

    /// The state after one more attempt failed.
    pub fn failed_again(self) -> Self {
        RetryState {
            attempts: self.attempts.saturating_add(1),
            ..self
        }
    }
}

/// Why retrying stopped; the event goes to the DLQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GiveUpReason {
    /// `attempts_max` attempts were made.
    MaxAttempts,
    /// The next retry would land after `elapsed_ms_max` from the first failure.
    MaxElapsed,
}

impl GiveUpReason {
    /// A stable lowercase name, for logs, metric labels and the DLQ.
    pub fn as_str(&self) -> &'static str {
        match self {
            GiveUpReason::MaxAttempts => "max_attempts",
            GiveUpReason::MaxElapsed => "max_elapsed",
        }
    }
}

/// What to do after a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryDecision {
    /// Try again at this time, in milliseconds since the Unix epoch.
    RetryAt {
        /// When the next attempt is due.
        at_unix_ms: u64,
    },
    /// Stop retrying.
    GiveUp {
        /// Which limit was reached.
        reason: GiveUpReason,
    },
}

/// Decides the next attempt after the failure recorded in `state`, at
/// `now_unix_ms`, given a random draw in `[0, 1)` and the server's
/// `Retry-After` (from [`parse_retry_after`]), if any.
///
/// The delay is `max(backoff, min(retry_after, retry_after_ms_cap))`.
/// `Retry-After` is a floor under the jittered backoff, not a replacement:
/// we never come back earlier than the server asked (up to the cap), but a
/// server that answers every 503 with `Retry-After: 1` does not reset our
/// backoff to one second forever while it struggles.
pub fn next_attempt(
    policy: &RetryPolicy,
    state: &RetryState,
    now_unix_ms: u64,
    unit_random: f64,
    retry_after_ms: Option<u64>,
) -> RetryDecision {
    if state.attempts >= policy.attempts_max {
        return RetryDecision::GiveUp {
            reason: GiveUpReason::MaxAttempts,
        };
    }
    // After the first failure (attempts = 1) comes backoff attempt 0, whose
    // ceiling is the base itself.
    let backoff = backoff_ms(policy, state.attempts.saturating_sub(1), unit_random);
    let asked = retry_after_ms.map_or(0, |ms| ms.min(policy.retry_after_ms_cap));
    let at_unix_ms = now_unix_ms.saturating_add(backoff.max(asked));
    let deadline_unix_ms = state
        .first_failure_unix_ms
        .saturating_add(policy.elapsed_ms_max);
    if at_unix_ms > deadline_unix_ms {
        RetryDecision::GiveUp {
            reason: GiveUpReason::MaxElapsed,
        }
    } else {
        RetryDecision::RetryAt { at_unix_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn valid_policy() -> impl Strategy<Value = RetryPolicy> {
        let fields = (
            1u64..=60_000,
            0u64..=DELAY_MS_LIMIT,
            1u32..=50,
            1u64..=ELAPSED_MS_LIMIT,
        );
        (fields, 0u64..=DELAY_MS_LIMIT).prop_map(|((base, max, attempts, elapsed), cap)| {
            RetryPolicy {
                delay_ms_base: base,
                delay_ms_max: max.max(base),
                attempts_max: attempts,
                elapsed_ms_max: elapsed,
                retry_after_ms_cap: cap,
            }
        })
    }

    fn any_policy() -> impl Strategy<Value = RetryPolicy> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(b, m, a, e, c)| RetryPolicy {
                delay_ms_base: b,
                delay_ms_max: m,
                attempts_max: a,
                elapsed_ms_max: e,
                retry_after_ms_cap: c,
            })
    }

    proptest! {
        #[test]
        fn backoff_stays_under_the_ceiling_for_any_input(
            policy in any_policy(), attempt in any::<u32>(), u in any::<f64>(),
        ) {
            let exact = u128::from(policy.delay_ms_base) << attempt.min(64);
            let ceiling = exact.min(u128::from(policy.delay_ms_max));
            prop_assert!(u128::from(backoff_ms(&policy, attempt, u)) <= ceiling);
            prop_assert_eq!(u128::from(backoff_ceiling_ms(&policy, attempt)), ceiling);
        }

        #[test]
        fn backoff_is_monotone_in_the_draw(
            policy in any_policy(), attempt in 0u32..80, a in -1.0f64..2.0, b in -1.0f64..2.0,
        ) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(backoff_ms(&policy, attempt, lo) <= backoff_ms(&policy, attempt, hi));
        }

        #[test]
        fn parse_never_panics(s in any::<String>(), t in "[0-9A-Za-z ,:+-]{0,70}", now in any::<u64>()) {
            let _ = parse_retry_after(&s, now);
            let _ = parse_retry_after(&t, now);
        }

        #[test]
        fn formatted_seconds_round_trip(s in any::<u64>(), pad in "[ \t]{0,3}", now in any::<u64>()) {
            let got = parse_retry_after(&format!("{pad}{s}{pad}"), now);
            prop_assert_eq!(got, Some(s.min(RETRY_AFTER_SECONDS_MAX) * 1000));
        }

        #[test]
        fn formatted_dates_round_trip(date_s in 0u64..253_402_300_800, now_ms in any::<u64>()) {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(date_s));
            let got = parse_retry_after(&text, now_ms);
            prop_assert_eq!(got, Some((date_s * 1000).saturating_sub(now_ms)));
        }

        #[test]
        fn next_attempt_respects_every_limit(
            policy in valid_policy(),
            attempts in 0u32..60,
            first in 0u64..1 << 50,
            since_first in 0u64..2 * ELAPSED_MS_LIMIT,
            u in any::<f64>(),
            retry_after_ms in proptest::option::of(0u64..2 * DELAY_MS_LIMIT),
        ) {
            let state = RetryState { attempts, first_failure_unix_ms: first };
            let now = first + since_first;
            let decision = next_attempt(&policy, &state, now, u, retry_after_ms);
            let floor = retry_after_ms.map_or(0, |r| r.min(policy.retry_after_ms_cap));
            let backoff = backoff_ms(&policy, attempts.saturating_sub(1), u);
            let due = now + backoff.max(floor);
            if attempts >= policy.attempts_max {
                prop_assert_eq!(decision, RetryDecision::GiveUp { reason: GiveUpReason::MaxAttempts });
            } else if due > first + policy.elapsed_ms_max {
                prop_assert_eq!(decision, RetryDecision::GiveUp { reason: GiveUpReason::MaxElapsed });
            } else {
                let RetryDecision::RetryAt { at_unix_ms } = decision else {
                    return Err(TestCaseError::fail("expected a retry"));
                };
                prop_assert!(at_unix_ms >= now + floor, "Retry-After honoured up to the cap");
                prop_assert!(at_unix_ms <= first + policy.elapsed_ms_max);
                prop_assert!(at_unix_ms - now <= policy.delay_ms_max.max(floor));
            }
        }
    }

    #[test]
    fn backoff_concrete_numbers() {
        let p = RetryPolicy {
            delay_ms_base: 100,
            delay_ms_max: 10_000,
            ..RetryPolicy::default()
        };
        assert_eq!(backoff_ms(&p, 0, 0.5), 50);
        assert_eq!(backoff_ms(&p, 3, 0.5), 400);
        assert_eq!(backoff_ms(&p, 3, 0.999), 799);
        assert_eq!(backoff_ms(&p, 20, 0.5), 5_000);
        assert_eq!(backoff_ms(&p, u32::MAX, 0.25), 2_500);
        assert_eq!(backoff_ms(&p, 3, 0.0), 0);
        assert_eq!(backoff_ms(&p, 3, f64::NAN), 0);
        assert_eq!(backoff_ms(&p, 3, -3.0), 0);
        assert_eq!(backoff_ms(&p, 3, f64::INFINITY), 799);
    }

    #[test]
    fn policy_check_names_the_field() {
        assert_eq!(RetryPolicy::default().check(), Ok(()));
        let with = |f: fn(&mut RetryPolicy)| {
            let mut p = RetryPolicy::default();
            f(&mut p);
            p.check()
        };
        let zero = |field| Err(RetryPolicyError::Zero { field });
        assert_eq!(with(|p| p.delay_ms_base = 0), zero("delay_ms_base"));
        assert_eq!(with(|p| p.attempts_max = 0), zero("attempts_max"));
        assert_eq!(with(|p| p.elapsed_ms_max = 0), zero("elapsed_ms_max"));
        assert_eq!(
            with(|p| p.delay_ms_max = 999),
            Err(RetryPolicyError::DelayMaxBelowBase {
                base: 1_000,
                max: 999
            })
        );
        let err = with(|p| p.retry_after_ms_cap = DELAY_MS_LIMIT + 1).unwrap_err();
        assert!(err.to_string().contains("retry_after_ms_cap"), "{err}");
        let err = with(|p| p.attempts_max = ATTEMPTS_MAX_LIMIT + 1).unwrap_err();
        assert!(err.to_string().contains("attempts_max"), "{err}");
        assert_eq!(with(|p| p.retry_after_ms_cap = 0), Ok(()));
    }

    #[test]
    fn retry_after_examples() {
        let now = 784_111_777_000; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(120_000));
        assert_eq!(parse_retry_after(" 0\t", now), Some(0));
        assert_eq!(
            parse_retry_after("99999999999999999999", now),
            Some(2_147_483_648_000)
        );
        for bad in [
            "", " ", "-1", "+5", "1.5", "5s", "1e3", "soon", "12 0", "0x10", "5\n",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        assert_eq!(parse_retry_after(&"9".repeat(65), now), None);
        for date in [
            "Sun, 06 Nov 1994 08:50:37 GMT",
            "Sunday, 06-Nov-94 08:50:37 GMT",
            "Sun Nov  6 08:50:37 1994",
        ] {
            assert_eq!(parse_retry_after(date, now), Some(60_000), "{date}");
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(0)
        );
        // The weekday must match the date.
        assert_eq!(
            parse_retry_after("Mon, 06 Nov 1994 08:50:37 GMT", now),
            None
        );
    }

    #[test]
    fn a_schedule_with_concrete_numbers() {
        let p = RetryPolicy {
            delay_ms_base: 1_000,
            delay_ms_max: 8_000,
            attempts_max: 4,
            elapsed_ms_max: 60_000,
            retry_after_ms_cap: 30_000,
        };
        let s1 = RetryState::first_failure(100_000);
        let at = |at_unix_ms| RetryDecision::RetryAt { at_unix_ms };
        assert_eq!(next_attempt(&p, &s1, 100_000, 0.5, None), at(100_500));
        let s2 = s1.failed_again();
        assert_eq!(next_attempt(&p, &s2, 101_000, 0.5, None), at(102_000));
        // Retry-After floors the backoff: 5 s beats a 1 s jitter draw...
        assert_eq!(
            next_attempt(&p, &s2, 101_000, 0.5, Some(5_000)),
            at(106_000)
        );
        // ...is capped at 30 s...
        assert_eq!(
            next_attempt(&p, &s2, 101_000, 0.0, Some(3_600_000)),
            at(131_000)
        );
        // ...and never shortens it.
        assert_eq!(next_attempt(&p, &s2, 101_000, 0.5, Some(10)), at(102_000));
        // Past first failure + 60 s: give up.
        let late = next_attempt(&p, &s2, 158_000, 0.9, Some(5_000));
        let elapsed = GiveUpReason::MaxElapsed;
        assert_eq!(late, RetryDecision::GiveUp { reason: elapsed });
        // Exactly at the deadline is still allowed; one millisecond past is not.
        let edge = next_attempt(&p, &s2, 150_000, 0.0, Some(10_000));
        assert_eq!(edge, at(160_000));
        let past = next_attempt(&p, &s2, 150_000, 0.0, Some(10_001));
        assert_eq!(past, RetryDecision::GiveUp { reason: elapsed });
        let s4 = s2.failed_again().failed_again();
        let done = next_attempt(&p, &s4, 110_000, 0.5, None);
        let max = GiveUpReason::MaxAttempts;
        assert_eq!(done, RetryDecision::GiveUp { reason: max });
        assert_eq!(
            (max.as_str(), elapsed.as_str()),
            ("max_attempts", "max_elapsed")
        );
    }
}
