//! Permits: the RAII leave to make one call. Reporting consumes the permit;
//! dropping it unreported cancels the call and frees a HalfOpen slot.

use std::sync::Arc;

use super::state::state_of;
use super::{BreakerState, CircuitBreaker, Transition};

/// The part of a permit shared by [`Permit`] and [`OwnedPermit`].
#[derive(Debug)]
pub(super) struct Ticket {
    /// The state word the call was admitted under.
    pub word: u64,
    /// True until a result is reported; a drop while armed cancels.
    pub armed: bool,
}

impl Ticket {
    fn finish(
        &mut self,
        breaker: &CircuitBreaker,
        failure: bool,
        duration_ms: u64,
        now_ms: u64,
    ) -> Option<Transition> {
        debug_assert!(self.armed, "a permit reports once: its methods take self");
        self.armed = false;
        breaker.on_result(self.word, failure, duration_ms, now_ms)
    }

    fn drop_with(&mut self, breaker: &CircuitBreaker) {
        if std::mem::take(&mut self.armed) {
            breaker.on_cancel(self.word);
        }
    }
}

/// Leave to make one call. Report it with [`success`](Self::success) or
/// [`failure`](Self::failure); dropping it unreported cancels the call and,
/// in HalfOpen, frees the slot for another trial call.
#[derive(Debug)]
#[must_use = "report the call's result, or drop the permit to cancel it"]
pub struct Permit<'a> {
    pub(super) breaker: &'a CircuitBreaker,
    pub(super) ticket: Ticket,
}

impl Permit<'_> {
    /// The state the call was admitted in.
    pub fn state(&self) -> BreakerState {
        state_of(self.ticket.word)
    }

    /// The call succeeded after `duration_ms`, finishing at `now_ms`.
    /// Returns the transition it caused, if any.
    pub fn success(mut self, duration_ms: u64, now_ms: u64) -> Option<Transition> {
        self.ticket.finish(self.breaker, false, duration_ms, now_ms)
    }

    /// The call failed after `duration_ms`, finishing at `now_ms`. Returns
    /// the transition it caused, if any.
    pub fn failure(mut self, duration_ms: u64, now_ms: u64) -> Option<Transition> {
        self.ticket.finish(self.breaker, true, duration_ms, now_ms)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.ticket.drop_with(self.breaker);
    }
}

/// A [`Permit`] that holds an `Arc` of its breaker.
#[derive(Debug)]
#[must_use = "report the call's result, or drop the permit to cancel it"]
pub struct OwnedPermit {
    pub(super) breaker: Arc<CircuitBreaker>,
    pub(super) ticket: Ticket,
}

impl OwnedPermit {
    /// The state the call was admitted in.
    pub fn state(&self) -> BreakerState {
        state_of(self.ticket.word)
    }

    /// As [`Permit::success`].
    pub fn success(mut self, duration_ms: u64, now_ms: u64) -> Option<Transition> {
        self.ticket
            .finish(&self.breaker, false, duration_ms, now_ms)
    }

    /// As [`Permit::failure`].
    pub fn failure(mut self, duration_ms: u64, now_ms: u64) -> Option<Transition> {
        self.ticket.finish(&self.breaker, true, duration_ms, now_ms)
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        self.ticket.drop_with(&self.breaker);
    }
}
