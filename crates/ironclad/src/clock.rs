//! Wall-clock access, in one place so tests and docs know where time enters.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch. A clock before 1970 reads as 0.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
