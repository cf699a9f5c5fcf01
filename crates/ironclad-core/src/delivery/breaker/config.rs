//! Circuit-breaker configuration and its checks (SPEC §4 "Circuit breaker").
//!
//! [`BreakerConfig::check`] rejects every value the breaker could not honour,
//! naming the field, so a bad config fails at startup rather than as a
//! breaker that never trips or never closes.

use thiserror::Error;

/// Largest count-based window, in calls. The ring costs one byte per call
/// and is swept on every transition to Closed.
pub const WINDOW_CALLS_MAX: u32 = 100_000;
/// Largest time-based window, in seconds (one hour of 1-second buckets).
pub const WINDOW_SECONDS_MAX: u32 = 3_600;
/// Largest `minimum_calls` for a time-based window.
pub const MINIMUM_CALLS_MAX: u32 = 1_000_000;
/// Most HalfOpen permits: the half-open counts are packed 10 bits each into
/// one atomic word so admitting a permit is a single compare-and-swap.
pub const HALF_OPEN_PERMITS_MAX: u32 = 1_000;
/// Longest duration any `_ms` setting may name: one day.
pub const DURATION_MS_MAX: u64 = 86_400_000;
/// Largest open-duration multiplier.
pub const OPEN_MULTIPLIER_MAX: f64 = 100.0;

/// Which calls the failure rate is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SlidingWindow {
    /// The last `calls` calls.
    Count {
        /// Window size in calls, 1..=[`WINDOW_CALLS_MAX`].
        calls: u32,
    },
    /// Calls in the last `seconds` seconds, in 1-second buckets: the window
    /// at time `t` holds the seconds `t/1000 - seconds + 1 ..= t/1000`.
    Time {
        /// Window size in seconds, 1..=[`WINDOW_SECONDS_MAX`].
        seconds: u32,
    },
}

/// How one sink's breaker trips, stays open and recovers.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// The window the rates are computed over.
    pub window: SlidingWindow,
    /// Fewest calls in the window before either rate can trip the breaker.
    pub minimum_calls: u32,
    /// Trip when failures are at least this percentage of calls, 1..=100.
    pub failure_rate_threshold_pct: u8,
    /// Trip when slow calls are at least this percentage of calls, 1..=100;
    /// `None` counts slow calls (for the metrics) but never trips on them.
    #[serde(deserialize_with = "crate::delivery::zero_is_none")]
    pub slow_call_rate_threshold_pct: Option<u8>,
    /// A call taking at least this long is slow.
    pub slow_call_duration_ms: u64,
    /// Trip after this many failures in a row, whatever the window says;
    /// `None` disables the rule.
    #[serde(deserialize_with = "crate::delivery::zero_is_none")]
    pub consecutive_failures_threshold: Option<u32>,
    /// Open duration the first time the breaker opens after being Closed.
    pub open_ms_base: u64,
    /// Each re-open (HalfOpen back to Open) multiplies the open duration by
    /// this: `open_ms_base * open_multiplier^reopens`, capped.
    pub open_multiplier: f64,
    /// Longest open duration from the exponential rule.
    pub open_ms_max: u64,
    /// Longest open duration a sink's `Retry-After` may impose.
    pub retry_after_ms_max: u64,
    /// K: calls admitted in HalfOpen; their results decide the next state.
    pub half_open_permits: u32,
    /// HalfOpen not decided within this long goes back to Open.
    pub half_open_timeout_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: SlidingWindow::Count { calls: 100 },
            minimum_calls: 20,
            failure_rate_threshold_pct: 50,
            slow_call_rate_threshold_pct: None,
            slow_call_duration_ms: 10_000,
            consecutive_failures_threshold: Some(10),
            open_ms_base: 5_000,
            open_multiplier: 2.0,
            open_ms_max: 300_000,
            retry_after_ms_max: 600_000,
            half_open_permits: 5,
            half_open_timeout_ms: 30_000,
        }
    }
}

/// Why a [`BreakerConfig`] was rejected. Each names the field to fix.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    /// A numeric field is outside its allowed range.
    #[error("{field} is {value}, outside the allowed {min}..={max}")]
    OutOfRange {
        /// The field's name, as in [`BreakerConfig`].
        field: &'static str,
        /// The value given.
        value: u64,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// A count window smaller than `minimum_calls` could never trip on rate.
    #[error("minimum_calls is {minimum_calls}, more than the count window's {window_calls} calls: the rate rules could never trip")]
    MinimumCallsAboveWindow {
        /// The `minimum_calls` given.
        minimum_calls: u32,
        /// The window size.
        window_calls: u32,
    },
    /// The exponential cap is below the first open duration.
    #[error("open_ms_max is {max}, below open_ms_base {base}: raise open_ms_max")]
    OpenMaxBelowBase {
        /// `open_ms_base`.
        base: u64,
        /// `open_ms_max`.
        max: u64,
    },
    /// The multiplier is not a finite number in `1.0..=OPEN_MULTIPLIER_MAX`.
    #[error("open_multiplier is {value}: use a finite number from 1.0 to {max}")]
    OpenMultiplier {
        /// The value given.
        value: f64,
        /// [`OPEN_MULTIPLIER_MAX`].
        max: f64,
    },
}

fn range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

impl BreakerConfig {
    /// Rejects values the breaker cannot honour: thresholds outside 1..=100,
    /// empty or oversized windows, `minimum_calls` of 0 or above a count
    /// window, K outside 1..=[`HALF_OPEN_PERMITS_MAX`], zero or over-long
    /// durations, and a cap below the base.
    pub fn check(&self) -> Result<(), ConfigError> {
        let minimum_max = match self.window {
            SlidingWindow::Count { calls } => {
                range("window.calls", calls.into(), 1, WINDOW_CALLS_MAX.into())?;
                if self.minimum_calls > calls {
                    return Err(ConfigError::MinimumCallsAboveWindow {
                        minimum_calls: self.minimum_calls,
                        window_calls: calls,
                    });
                }
                calls
            }
            SlidingWindow::Time { seconds } => {
                range(
                    "window.seconds",
                    seconds.into(),
                    1,
                    WINDOW_SECONDS_MAX.into(),
                )?;
                MINIMUM_CALLS_MAX
            }
        };
        range(
            "minimum_calls",
            self.minimum_calls.into(),
            1,
            minimum_max.into(),
        )?;
        // 0 % would trip on any window that reaches minimum_calls, even one
        // with no failures: unsatisfiable as a health rule.
        range(
            "failure_rate_threshold_pct",
            self.failure_rate_threshold_pct.into(),
            1,
            100,
        )?;
        if let Some(pct) = self.slow_call_rate_threshold_pct {
            range("slow_call_rate_threshold_pct", pct.into(), 1, 100)?;
        }
        if let Some(n) = self.consecutive_failures_threshold {
            range(
                "consecutive_failures_threshold",
                n.into(),
                1,
                u32::MAX.into(),
            )?;
        }
        range(
            "slow_call_duration_ms",
            self.slow_call_duration_ms,
            1,
            DURATION_MS_MAX,
        )?;
        range("open_ms_base", self.open_ms_base, 1, DURATION_MS_MAX)?;
        range("open_ms_max", self.open_ms_max, 1, DURATION_MS_MAX)?;
        if self.open_ms_max < self.open_ms_base {
            return Err(ConfigError::OpenMaxBelowBase {
                base: self.open_ms_base,
                max: self.open_ms_max,
            });
        }
        let m = self.open_multiplier;
        if !(m.is_finite() && (1.0..=OPEN_MULTIPLIER_MAX).contains(&m)) {
            return Err(ConfigError::OpenMultiplier {
                value: m,
                max: OPEN_MULTIPLIER_MAX,
            });
        }
        range(
            "retry_after_ms_max",
            self.retry_after_ms_max,
            1,
            DURATION_MS_MAX,
        )?;
        range(
            "half_open_permits",
            self.half_open_permits.into(),
            1,
            HALF_OPEN_PERMITS_MAX.into(),
        )?;
        range(
            "half_open_timeout_ms",
            self.half_open_timeout_ms,
            1,
            DURATION_MS_MAX,
        )?;
        Ok(())
    }

    /// Open duration after `reopens` consecutive re-opens:
    /// `open_ms_base * open_multiplier^reopens`, within
    /// `open_ms_base..=open_ms_max`. Total on any input, checked or not.
    pub fn open_ms_for(&self, reopens: u32) -> u64 {
        let exp = i32::try_from(reopens).unwrap_or(i32::MAX);
        let ms = self.open_ms_base as f64 * self.open_multiplier.powi(exp);
        // Only a value known to be below the cap is converted: NaN and
        // infinity take the cap, and the float-to-int cast saturates, so
        // nothing here can panic or wrap.
        let ms = if ms < self.open_ms_max as f64 {
            ms as u64
        } else {
            self.open_ms_max
        };
        ms.max(self.open_ms_base).min(self.open_ms_max)
    }

    /// A `Retry-After` of `retry_after_ms`, capped by `retry_after_ms_max`.
    pub fn retry_after_ms_for(&self, retry_after_ms: u64) -> u64 {
        retry_after_ms.min(self.retry_after_ms_max)
    }
}
