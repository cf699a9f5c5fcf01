//! The breaker's states, refusals and transitions (SPEC §4, §9), and the
//! packed atomic words that hold its state and its HalfOpen accounting.

use std::fmt;

use thiserror::Error;

/// A breaker's state. The discriminant is the SPEC §9 metric value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls flow; results feed the window.
    Closed = 0,
    /// Calls are rejected until the open duration ends.
    Open = 1,
    /// Up to K trial calls decide Closed or Open.
    HalfOpen = 2,
    /// An operator forced it open: everything is rejected until `close()`.
    ForcedOpen = 3,
    /// An operator disabled it: everything is permitted, nothing trips.
    Disabled = 4,
}

impl BreakerState {
    /// Every state, in metric-code order.
    pub const ALL: [BreakerState; 5] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
        BreakerState::ForcedOpen,
        BreakerState::Disabled,
    ];

    /// The metric value: 0 closed, 1 open, 2 half-open, 3 forced-open, 4 disabled.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The state with metric value `code`, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The `to` label for the transitions metric: `closed`, `open`, …
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::ForcedOpen => "forced_open",
            BreakerState::Disabled => "disabled",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why [`CircuitBreaker::try_acquire`](super::CircuitBreaker::try_acquire) refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NotPermitted {
    /// Open: the sink is presumed down.
    #[error("circuit open: retry in {retry_in_ms} ms")]
    Open {
        /// Time left until the breaker admits a trial call.
        retry_in_ms: u64,
    },
    /// HalfOpen with all K trial permits out.
    #[error("circuit half-open: all {permits} trial permits are taken")]
    HalfOpenFull {
        /// K.
        permits: u32,
    },
    /// An operator forced the breaker open.
    #[error("circuit forced open by an operator: close it to resume")]
    ForcedOpen,
    /// The state kept changing under this call (other threads transitioning
    /// it many times over); practically unreachable. Retry shortly.
    #[error("circuit changing state under contention: try again")]
    Contended,
}

/// Why [`CircuitBreaker::record_retry_after`](super::CircuitBreaker::record_retry_after) did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RetryAfterError {
    /// An operator's setting wins over the sink's `Retry-After`.
    #[error("breaker is {state}, set by an operator: Retry-After ignored")]
    AdminOverride {
        /// ForcedOpen or Disabled.
        state: BreakerState,
    },
}

/// What caused a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionReason {
    /// Closed → Open: the failure rate reached its threshold.
    FailureRate,
    /// Closed → Open: the slow-call rate reached its threshold.
    SlowCallRate,
    /// Closed → Open: N failures in a row.
    ConsecutiveFailures,
    /// Closed, Open or HalfOpen → Open: the sink sent `Retry-After`.
    RetryAfter,
    /// Open → HalfOpen: the open duration ended.
    OpenElapsed,
    /// HalfOpen → Closed: the K trial calls passed.
    HalfOpenPassed,
    /// HalfOpen → Open: the K trial calls failed.
    HalfOpenFailed,
    /// HalfOpen → Open: not decided within `half_open_timeout_ms`.
    HalfOpenTimeout,
    /// Set by an operator: `close`, `reset`, `force_open`, `disable`.
    Admin,
}

impl TransitionReason {
    /// The reason's name in logs and output (`failure_rate`, …), not the
    /// Rust variant's.
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionReason::FailureRate => "failure_rate",
            TransitionReason::SlowCallRate => "slow_call_rate",
            TransitionReason::ConsecutiveFailures => "consecutive_failures",
            TransitionReason::RetryAfter => "retry_after",
            TransitionReason::OpenElapsed => "open_elapsed",
            TransitionReason::HalfOpenPassed => "half_open_passed",
            TransitionReason::HalfOpenFailed => "half_open_failed",
            TransitionReason::HalfOpenTimeout => "half_open_timeout",
            TransitionReason::Admin => "admin",
        }
    }
}

/// One state change, returned to whoever caused it (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: BreakerState,
    /// State after.
    pub to: BreakerState,
    /// Cause.
    pub reason: TransitionReason,
    /// How long it opened for, when `to` is Open.
    pub open_ms: Option<u64>,
}

/// Whether `reason` may move the breaker from `from` to `to`: the state
/// machine in one place, asserted on every transition.
pub(super) fn is_legal(from: BreakerState, to: BreakerState, reason: TransitionReason) -> bool {
    use BreakerState::*;
    use TransitionReason as R;
    match reason {
        R::FailureRate | R::SlowCallRate | R::ConsecutiveFailures => from == Closed && to == Open,
        R::RetryAfter => matches!(from, Closed | Open | HalfOpen) && to == Open,
        R::OpenElapsed => from == Open && to == HalfOpen,
        R::HalfOpenPassed => from == HalfOpen && to == Closed,
        R::HalfOpenFailed | R::HalfOpenTimeout => from == HalfOpen && to == Open,
        R::Admin => matches!(to, Closed | ForcedOpen | Disabled),
    }
}

pub(super) const STATE_BITS: u32 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
const GEN_MASK: u64 = u64::MAX >> STATE_BITS;

pub(super) fn pack_state(state: BreakerState, generation: u64) -> u64 {
    ((generation & GEN_MASK) << STATE_BITS) | u64::from(state.code())
}

pub(super) fn state_of(word: u64) -> BreakerState {
    // Only `pack_state` writes the word, so the code is always valid; an
    // impossible value fails closed rather than panicking.
    BreakerState::from_code((word & STATE_MASK) as u8).unwrap_or(BreakerState::ForcedOpen)
}

pub(super) fn generation_of(word: u64) -> u64 {
    word >> STATE_BITS
}

/// HalfOpen accounting packed into one word: generation tag (24 bits), then
/// permits issued, results recorded, failures and slow calls (10 bits each;
/// K <= 1000 < 1024). `issued` counts permits out plus results in, so
/// `recorded <= issued <= K` always.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HalfOpenCounts {
    pub tag: u64,
    pub issued: u64,
    pub recorded: u64,
    pub failures: u64,
    pub slow_calls: u64,
}

const FIELD_BITS: u32 = 10;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const TAG_MASK: u64 = (1 << 24) - 1;

impl HalfOpenCounts {
    pub fn fresh(word: u64) -> Self {
        HalfOpenCounts {
            tag: generation_of(word) & TAG_MASK,
            issued: 0,
            recorded: 0,
            failures: 0,
            slow_calls: 0,
        }
    }

    pub fn pack(self) -> u64 {
        let f = |v: u64| v & FIELD_MASK;
        ((self.tag & TAG_MASK) << (4 * FIELD_BITS))
            | (f(self.issued) << (3 * FIELD_BITS))
            | (f(self.recorded) << (2 * FIELD_BITS))
            | (f(self.failures) << FIELD_BITS)
            | f(self.slow_calls)
    }

    pub fn unpack(w: u64) -> Self {
        HalfOpenCounts {
            tag: (w >> (4 * FIELD_BITS)) & TAG_MASK,
            issued: (w >> (3 * FIELD_BITS)) & FIELD_MASK,
            recorded: (w >> (2 * FIELD_BITS)) & FIELD_MASK,
            failures: (w >> FIELD_BITS) & FIELD_MASK,
            slow_calls: w & FIELD_MASK,
        }
    }
}
