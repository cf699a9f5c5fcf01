//! The expected-version rule (SPEC §2): a pure function from the stream's
//! current version to accept or reject. Stores call it inside the write
//! transaction, which is what closes the check-then-act race between writers.

use serde::Serialize;
use thiserror::Error;

use crate::model::ExpectedVersion;

/// An append's precondition did not hold. Carries both sides so the caller
/// can decide whether to re-read and retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error, Serialize)]
#[error("wrong expected version: expected {expected}, but the stream is at {}: re-read the stream and retry", describe_actual(*.actual))]
pub struct WrongExpectedVersion {
    /// What the caller expected.
    pub expected: ExpectedVersion,
    /// The stream's current last version; 0 means the stream does not exist.
    pub actual: u64,
}

fn describe_actual(actual: u64) -> String {
    if actual == 0 {
        "no stream (version 0)".to_string()
    } else {
        format!("version {actual}")
    }
}

/// Checks `expected` against the stream's current last version (0 = no stream).
pub fn check_expected(expected: ExpectedVersion, actual: u64) -> Result<(), WrongExpectedVersion> {
    let ok = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual == 0,
        ExpectedVersion::StreamExists => actual > 0,
        ExpectedVersion::Exact(v) => actual == v,
    };
    if ok {
        Ok(())
    } else {
        Err(WrongExpectedVersion { expected, actual })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_expected() -> impl Strategy<Value = ExpectedVersion> {
        prop_oneof![
            Just(ExpectedVersion::Any),
            Just(ExpectedVersion::NoStream),
            Just(ExpectedVersion::StreamExists),
            (0u64..6).prop_map(ExpectedVersion::Exact),
        ]
    }

    proptest! {
        #[test]
        fn any_always_passes(actual in 0u64..1000) {
            prop_assert!(check_expected(ExpectedVersion::Any, actual).is_ok());
        }

        #[test]
        fn exact_passes_only_on_equal(v in 0u64..10, actual in 0u64..10) {
            prop_assert_eq!(check_expected(ExpectedVersion::Exact(v), actual).is_ok(), v == actual);
        }

        #[test]
        fn no_stream_is_exact_zero(actual in 0u64..10) {
            prop_assert_eq!(
                check_expected(ExpectedVersion::NoStream, actual).is_ok(),
                check_expected(ExpectedVersion::Exact(0), actual).is_ok()
            );
        }

        #[test]
        fn stream_exists_is_not_no_stream(actual in 0u64..10) {
            prop_assert_ne!(
                check_expected(ExpectedVersion::StreamExists, actual).is_ok(),
                check_expected(ExpectedVersion::NoStream, actual).is_ok()
            );
        }

        #[test]
        fn rejection_carries_both_sides(e in any_expected(), actual in 0u64..10) {
            if let Err(w) = check_expected(e, actual) {
                prop_assert_eq!(w.expected, e);
                prop_assert_eq!(w.actual, actual);
                prop_assert!(w.to_string().contains("expected"));
            }
        }
    }
}
