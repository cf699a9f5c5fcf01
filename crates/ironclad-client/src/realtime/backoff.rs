//! Reconnection delays: exponential backoff with full jitter.
//!
//! Attempt `n` (1-based) waits a uniformly random time in
//! `[0, min(cap, base · 2^(n-1))]` ("full jitter"), so many clients that
//! lost the same server do not come back in lockstep. The functions here
//! are pure; [`backoff_delay_ms`] takes the random draw as an argument so
//! it can be tested.

/// The upper bound of the delay before attempt `attempt` (1-based; 0 is
/// treated as 1): `min(max_ms, base_ms · 2^(attempt-1))`, without
/// overflow. Non-decreasing in `attempt`, never above `max_ms`.
pub fn backoff_ceiling_ms(attempt: u32, base_ms: u64, max_ms: u64) -> u64 {
    let shift = attempt.max(1) - 1;
    let grown = if shift >= 64 {
        u64::MAX
    } else {
        base_ms.saturating_mul(1u64 << shift)
    };
    grown.min(max_ms)
}

/// The delay before attempt `attempt` given a uniform draw `unit` in
/// `[0, 1)`: `unit · ceiling`, rounded down. Out-of-range draws are
/// clamped, so the result is always in `[0, ceiling]`.
pub fn backoff_delay_ms(attempt: u32, base_ms: u64, max_ms: u64, unit: f64) -> u64 {
    let ceiling = backoff_ceiling_ms(attempt, base_ms, max_ms);
    let unit = if unit.is_nan() {
        0.0
    } else {
        unit.clamp(0.0, 1.0)
    };
    // f64 has 53 bits of mantissa: clamp again after the round trip.
    ((ceiling as f64 * unit) as u64).min(ceiling)
}

/// [`backoff_delay_ms`] with a fresh random draw.
pub fn jittered_delay_ms(attempt: u32, base_ms: u64, max_ms: u64) -> u64 {
    backoff_delay_ms(attempt, base_ms, max_ms, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ceiling_doubles_until_the_cap() {
        let c: Vec<u64> = (1..=8).map(|a| backoff_ceiling_ms(a, 100, 5_000)).collect();
        assert_eq!(c, [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
        assert_eq!(backoff_ceiling_ms(0, 100, 5_000), 100);
        assert_eq!(backoff_ceiling_ms(u32::MAX, 100, 5_000), 5_000);
        assert_eq!(backoff_ceiling_ms(70, u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn delay_spans_zero_to_the_ceiling() {
        assert_eq!(backoff_delay_ms(3, 100, 5_000, 0.0), 0);
        assert_eq!(backoff_delay_ms(3, 100, 5_000, 0.5), 200);
        assert_eq!(backoff_delay_ms(3, 100, 5_000, 1.0), 400);
        assert_eq!(backoff_delay_ms(3, 100, 5_000, 7.0), 400);
        assert_eq!(backoff_delay_ms(3, 100, 5_000, -1.0), 0);
        assert_eq!(backoff_delay_ms(3, 100, 5_000, f64::NAN), 0);
    }

    proptest! {
        #[test]
        fn delay_is_within_the_ceiling_and_the_cap(
            attempt in 0u32..200,
            base in 0u64..100_000,
            cap in 0u64..10_000_000,
            unit in 0.0f64..1.0,
        ) {
            let ceiling = backoff_ceiling_ms(attempt, base, cap);
            let d = backoff_delay_ms(attempt, base, cap, unit);
            prop_assert!(ceiling <= cap);
            prop_assert!(d <= ceiling);
            prop_assert!(jittered_delay_ms(attempt, base, cap) <= ceiling);
        }

        #[test]
        fn ceiling_grows_with_attempts(attempt in 1u32..200, base in 1u64..100_000, cap in 1u64..10_000_000) {
            let a = backoff_ceiling_ms(attempt, base, cap);
            let b = backoff_ceiling_ms(attempt + 1, base, cap);
            prop_assert!(b >= a);
            // Strictly grows (doubles) until it reaches the cap.
            if a < cap {
                prop_assert!(b == (a * 2).min(cap));
            }
        }

        #[test]
        fn delay_grows_with_the_draw(attempt in 1u32..64, base in 0u64..100_000, cap in 0u64..10_000_000, u in 0.0f64..1.0, v in 0.0f64..1.0) {
            let (lo, hi) = if u <= v { (u, v) } else { (v, u) };
            prop_assert!(backoff_delay_ms(attempt, base, cap, lo) <= backoff_delay_ms(attempt, base, cap, hi));
        }
    }
}
