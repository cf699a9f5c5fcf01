//! The retry budget (SPEC §4 "A retry budget keeps retries from storming a
//! struggling sink"): retries are limited to a fraction of recent first
//! attempts plus a small reserve. Pure and deterministic: time is an
//! argument, memory is a fixed ring of buckets, every call is O(buckets).

use thiserror::Error;

/// Time buckets a [`RetryBudget`] divides its window into.
pub const BUDGET_BUCKETS: usize = 10;
/// Upper limit on [`RetryBudgetConfig::window_ms`]: one hour.
pub const BUDGET_WINDOW_MS_LIMIT: u64 = 60 * 60 * 1000;
/// Upper limit on [`RetryBudgetConfig::retries_per_s_min`].
pub const BUDGET_RETRIES_PER_S_LIMIT: u32 = 100_000;

/// Settings of a [`RetryBudget`] (Finagle's `RetryBudget`, Envoy's retry budget).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// Retries allowed as a fraction of first attempts in the window, in
    /// `0.0..=1.0` (Finagle's `percentCanRetry`, Envoy's `budget_percent`).
    pub retry_ratio: f64,
    /// Retries allowed per second of window even without traffic, so a quiet
    /// sink can still be retried (Finagle's `minRetriesPerSec`).
    pub retries_per_s_min: u32,
    /// How long requests and retries count, in milliseconds (Finagle's `ttl`).
    pub window_ms: u64,
}

impl Default for RetryBudgetConfig {
    /// Finagle's defaults: 20% of requests, at least 10 per second, over 10 s.
    fn default() -> Self {
        RetryBudgetConfig {
            retry_ratio: 0.2,
            retries_per_s_min: 10,
            window_ms: 10_000,
        }
    }
}

/// Why a [`RetryBudgetConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RetryBudgetError {
    /// `retry_ratio` is NaN or outside `0.0..=1.0`.
    #[error("retry budget: retry_ratio is {value}: it must be between 0.0 and 1.0")]
    RatioOutOfRange {
        /// Its value.
        value: f64,
    },
    /// `window_ms` is 0.
    #[error("retry budget: window_ms is 0: it must be at least 1")]
    WindowZero,
    /// A field exceeds its limit.
    #[error("retry budget: {field} is {value}, more than the limit of {limit}")]
    TooLarge {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The limit.
        limit: u64,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    slot: u64,
    requests: u64,
    retries: u64,
}

/// Keeps retries to a fraction of recent first attempts, plus a small
/// reserve, so retries cannot storm a struggling sink: over any window
/// ending at a granted retry, retries ≤ `retry_ratio`·requests +
/// `retries_per_s_min`·(window in seconds), rounded down. Callers record
/// first attempts with [`record_request`](Self::record_request) and ask
/// before each retry with [`try_spend_retry`](Self::try_spend_retry).
///
/// Counts live in a fixed ring of time buckets, so memory is constant and
/// each call costs O([`BUDGET_BUCKETS`]). Bucketing rounds conservatively:
/// requests count over at most the window, retries over at least it.
/// Time is passed in, from any millisecond clock; a call earlier than the
/// latest one is treated as happening at the latest one.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    retry_ratio: f64,
    reserve: u64,
    bucket_ms: u64,
    request_slots: u64,
    retry_slots: u64,
    latest_ms: u64,
    ring: [Bucket; BUDGET_BUCKETS + 1],
}

impl RetryBudget {
    /// A budget with no history, or why the config is rejected.
    pub fn new(config: &RetryBudgetConfig) -> Result<Self, RetryBudgetError> {
        let ratio = config.retry_ratio;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(RetryBudgetError::RatioOutOfRange { value: ratio });
        }
        let window = config.window_ms;
        if window == 0 {
            return Err(RetryBudgetError::WindowZero);
        }
        let too_large = |field, value: u64, limit: u64| RetryBudgetError::TooLarge {
            field,
            value,
            limit,
        };
        if window > BUDGET_WINDOW_MS_LIMIT {
            return Err(too_large("window_ms", window, BUDGET_WINDOW_MS_LIMIT));
        }
        let per_s = config.retries_per_s_min;
        if per_s > BUDGET_RETRIES_PER_S_LIMIT {
            let limit = BUDGET_RETRIES_PER_S_LIMIT.into();
            return Err(too_large("retries_per_s_min", per_s.into(), limit));
        }
        let bucket_ms = window.div_ceil(BUDGET_BUCKETS as u64);
        Ok(RetryBudget {
            retry_ratio: ratio,
            reserve: u64::from(per_s) * window / 1000,
            bucket_ms,
            // Whole buckets that fit inside the window, so no request older
            // than the window is ever credited...
            request_slots: window / bucket_ms,
            // ...and enough buckets to cover the window, so no retry inside
            // it is ever forgotten. Both are at most BUDGET_BUCKETS + 1.
            retry_slots: (window - 1).div_ceil(bucket_ms) + 1,
            latest_ms: 0,
            ring: [Bucket::default(); BUDGET_BUCKETS + 1],
        })
    }

    /// Records a first attempt (not a retry) at `now_ms`.
    pub fn record_request(&mut self, now_ms: u64) {
        let bucket = self.bucket_mut(now_ms);
        bucket.requests = bucket.requests.saturating_add(1);
    }

    /// Takes one retry from the budget at `now_ms` if it has one.
    pub fn try_spend_retry(&mut self, now_ms: u64) -> bool {
        if self.retries_available(now_ms) == 0 {
            return false;
        }
        let bucket = self.bucket_mut(now_ms);
        bucket.retries = bucket.retries.saturating_add(1);
        true
    }

    /// How many retries the budget would grant at `now_ms`.
    pub fn retries_available(&self, now_ms: u64) -> u64 {
        let slot = now_ms.max(self.latest_ms) / self.bucket_ms;
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in &self.ring {
            // Every stored slot is at or before the current one, because
            // time never moves backwards here.
            let age = slot.saturating_sub(b.slot);
            if age < self.request_slots {
                requests = requests.saturating_add(b.requests);
            }
            if age < self.retry_slots {
                retries = retries.saturating_add(b.retries);
            }
        }
        allowed_retries(self.retry_ratio, requests, self.reserve).saturating_sub(retries)
    }

    fn bucket_mut(&mut self, now_ms: u64) -> &mut Bucket {
        self.latest_ms = self.latest_ms.max(now_ms);
        let slot = self.latest_ms / self.bucket_ms;
        let len = self.ring.len() as u64;
        // The index is below the ring length, so the cast and index are in range.
        let bucket = &mut self.ring[(slot % len) as usize];
        if bucket.slot != slot {
            *bucket = Bucket {
                slot,
                ..Bucket::default()
            };
        }
        bucket
    }
}

fn allowed_retries(ratio: f64, requests: u64, reserve: u64) -> u64 {
    (ratio * requests as f64 + reserve as f64).floor() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn budget_never_exceeds_a_naive_exact_window(
            ratio in 0.0f64..=1.0,
            per_s in 0u32..5,
            window_ms in 1u64..3_000,
            steps in proptest::collection::vec((0u64..400, any::<bool>()), 1..300),
        ) {
            let config = RetryBudgetConfig { retry_ratio: ratio, retries_per_s_min: per_s, window_ms };
            let mut budget = RetryBudget::new(&config).expect("valid config");
            let reserve = u64::from(per_s) * window_ms / 1000;
            let mut events: Vec<(u64, bool)> = Vec::new();
            let mut now = 0u64;
            for (advance, is_retry) in steps {
                now += advance;
                if !is_retry {
                    budget.record_request(now);
                    events.push((now, false));
                } else if budget.try_spend_retry(now) {
                    events.push((now, true));
                    let in_window = || events.iter().filter(|(t, _)| t + window_ms > now);
                    let retries = in_window().filter(|(_, r)| *r).count() as u64;
                    let requests = in_window().filter(|(_, r)| !*r).count() as u64;
                    let allowed = allowed_retries(ratio, requests, reserve);
                    prop_assert!(retries <= allowed, "{retries} > {allowed} at {now}");
                }
            }
        }
    }

    #[test]
    fn budget_concrete_numbers() {
        let config = RetryBudgetConfig {
            retry_ratio: 0.2,
            retries_per_s_min: 0,
            window_ms: 1_000,
        };
        let mut b = RetryBudget::new(&config).expect("valid");
        assert!(!b.try_spend_retry(0), "no requests, no reserve");
        for t in 0..10 {
            b.record_request(t);
        }
        assert_eq!(b.retries_available(10), 2);
        assert!(b.try_spend_retry(10) && b.try_spend_retry(20));
        assert!(!b.try_spend_retry(30));
        // The requests age out after the window; so do the retries.
        assert_eq!(b.retries_available(1_500), 0);
        b.record_request(2_500);
        b.record_request(2_500);
        assert_eq!(b.retries_available(2_500), 0, "0.4 rounds down");
        for t in 2_500..2_503 {
            b.record_request(t);
        }
        assert_eq!(b.retries_available(2_600), 1);

        let reserve = RetryBudgetConfig {
            retries_per_s_min: 3,
            window_ms: 2_000,
            ..config
        };
        let mut b = RetryBudget::new(&reserve).expect("valid");
        assert_eq!((0..10).filter(|_| b.try_spend_retry(5)).count(), 6);
        assert!(
            b.try_spend_retry(2_500),
            "the reserve refills after the window"
        );
    }

    #[test]
    fn budget_config_is_checked() {
        let bad = |f: fn(&mut RetryBudgetConfig)| {
            let mut c = RetryBudgetConfig::default();
            f(&mut c);
            RetryBudget::new(&c).unwrap_err()
        };
        let nan = bad(|c| c.retry_ratio = f64::NAN);
        assert!(matches!(nan, RetryBudgetError::RatioOutOfRange { .. }));
        let high = bad(|c| c.retry_ratio = 1.5);
        assert!(matches!(high, RetryBudgetError::RatioOutOfRange { .. }));
        assert_eq!(bad(|c| c.window_ms = 0), RetryBudgetError::WindowZero);
        assert!(bad(|c| c.window_ms = u64::MAX)
            .to_string()
            .contains("window_ms"));
        let per_s = bad(|c| c.retries_per_s_min = u32::MAX).to_string();
        assert!(per_s.contains("retries_per_s_min"));
    }
}
