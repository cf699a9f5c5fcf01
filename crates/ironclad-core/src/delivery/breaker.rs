//! Per-sink circuit breaker (SPEC §4 "Circuit breaker", metrics in §9),
//! with resilience4j's semantics and a lock-free check on the hot path.
//!
//! States are Closed, Open, HalfOpen, and ForcedOpen and Disabled, which an
//! operator sets. Closed trips to Open when, over a sliding window (count- or
//! time-based) holding at least `minimum_calls` calls, the failure rate or the
//! slow-call rate reaches its threshold, or after N failures in a row. Open
//! lasts `open_ms_base * open_multiplier^reopens` (capped), or exactly a sink's
//! `Retry-After` (capped). The first [`CircuitBreaker::try_acquire`] after that
//! moves to HalfOpen, which admits K permits; once all K have reported, their
//! failure (or slow) rate decides Closed or Open again. A dropped, unreported
//! [`Permit`] gives its slot back; HalfOpen undecided after
//! `half_open_timeout_ms` goes back to Open.
//!
//! Time is passed in (`now_ms`, any monotonic millisecond clock): nothing here
//! reads a clock, so tests replay exact sequences. Nothing panics on any input.
//!
//! # Design and memory ordering
//!
//! - **State word** (`AtomicU64`): the state code in the low 3 bits, a
//!   generation above it, bumped by every transition. `try_acquire` loads it
//!   with `Acquire`; in Closed (and Disabled) that single load is the whole
//!   check. A permit remembers the word it was admitted under, and its result
//!   counts only if the word is unchanged, so results from an older state
//!   never leak into the next one.
//! - **Transitions** (rare) take a small `Mutex`, re-check that the state word
//!   still equals the one the decision was made on (so of two threads racing
//!   to trip, one wins and the other's stale decision is dropped), write the
//!   new state's side data (`open_until_ms`, `half_open_until_ms`, the
//!   half-open counts, the window reset) with `Relaxed`, then publish the new
//!   word with `Release`. A thread that `Acquire`-loads that word therefore
//!   sees that side data or a newer value (coherence). A newer value only
//!   comes from a later transition, and readers tolerate it: any transition
//!   they then attempt goes through the lock, which re-checks the word and
//!   drops the stale attempt; a rejection they return was true at some moment
//!   during the call; and half-open counts carry the generation's low 24
//!   bits, so a mismatch is seen and the state re-read.
//! - **Window** (Closed): `Relaxed` read-modify-writes, never a lock; see
//!   `window.rs` for why the totals equal the ring whenever threads are
//!   quiet. The trip check reads the totals right after recording, so under
//!   contention it may act on counts a few calls old; single-threaded it is
//!   exact. The consecutive-failure counter is a `Relaxed` atomic with the
//!   same caveat. A result that passed its generation check just before a
//!   transition can still land in the next window: at most one per call in
//!   flight at that moment.
//! - **HalfOpen** accounting (permits issued, results, failures, slow) lives
//!   in one `AtomicU64` changed only by compare-and-swap (the K check and the
//!   increment are one CAS), so the "at most K" rule is exact under any
//!   contention, still without a lock. That word publishes no other memory,
//!   so `Relaxed` suffices for it.
//! - Counters for metrics (not permitted, transitions by target) are
//!   `Relaxed` `fetch_add`s: monotonic totals, read only for export.

mod config;
mod permit;
mod state;
mod window;

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use config::{
    BreakerConfig, ConfigError, SlidingWindow, DURATION_MS_MAX, HALF_OPEN_PERMITS_MAX,
    MINIMUM_CALLS_MAX, OPEN_MULTIPLIER_MAX, WINDOW_CALLS_MAX, WINDOW_SECONDS_MAX,
};
pub use permit::{OwnedPermit, Permit};
pub use state::{BreakerState, NotPermitted, RetryAfterError, Transition, TransitionReason};
pub use window::WindowSnapshot;

use permit::Ticket;
use state::{generation_of, is_legal, pack_state, state_of, HalfOpenCounts};
use window::{Outcome, Window};

/// Keeps a hot atomic on its own cache line(s) so writers of one do not
/// slow readers of another (128 bytes: adjacent-line prefetch on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub T);

/// Bounds the retry loop in `try_acquire`: each round either returns or saw
/// another transition; past this the call is refused as `Contended`.
const ACQUIRE_ROUNDS: usize = 8;
/// Bounds compare-and-swap loops on the HalfOpen word: each failure means
/// another permit changed it, and one half-open episode allows about 3K
/// changes, so this is only hit under pathological churn.
const HALF_OPEN_CAS_ROUNDS: usize = 4 * HALF_OPEN_PERMITS_MAX as usize + 16;

/// Whether `part` is at least `pct` percent of `calls`, in exact integers.
fn reaches(part: u64, calls: u64, pct: u8) -> bool {
    calls > 0 && u128::from(part) * 100 >= u128::from(pct) * u128::from(calls)
}

/// State word and the deadlines it governs: read on every call, written only
/// on transitions, so kept apart from the counters written on every call.
#[derive(Debug)]
struct Published {
    state: AtomicU64,
    open_until_ms: AtomicU64,
    half_open_until_ms: AtomicU64,
}

/// What only transitions touch, under the transition lock.
#[derive(Debug, Default)]
struct Inner {
    /// HalfOpen → Open transitions since the breaker was last Closed.
    reopens: u32,
    last: Option<Transition>,
}

/// One sink's circuit breaker. Share it by reference or `Arc`; every method
/// takes `&self`.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    hot: Padded<Published>,
    half_open: Padded<AtomicU64>,
    consecutive_failures: Padded<AtomicU64>,
    window: Window,
    not_permitted: Padded<AtomicU64>,
    transitions: [AtomicU64; 5],
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A Closed breaker with an empty window, after checking `config`.
    pub fn new(config: BreakerConfig) -> Result<Self, ConfigError> {
        config.check()?;
        Ok(CircuitBreaker {
            window: Window::new(config.window),
            config,
            hot: Padded(Published {
                state: AtomicU64::new(pack_state(BreakerState::Closed, 0)),
                open_until_ms: AtomicU64::new(0),
                half_open_until_ms: AtomicU64::new(0),
            }),
            half_open: Padded(AtomicU64::new(0)),
            consecutive_failures: Padded(AtomicU64::new(0)),
            not_permitted: Padded(AtomicU64::new(0)),
            transitions: Default::default(),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// The checked configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Asks to make one call at `now_ms`. Lock-free; in Closed it is one
    /// atomic load. The first call after the open duration moves the breaker
    /// to HalfOpen (taking the transition lock once). Report the call's
    /// result on the returned [`Permit`], or drop it to cancel.
    pub fn try_acquire(&self, now_ms: u64) -> Result<Permit<'_>, NotPermitted> {
        self.admit(now_ms).map(|word| Permit {
            breaker: self,
            ticket: Ticket { word, armed: true },
        })
    }

    /// [`try_acquire`](Self::try_acquire) for a permit that owns a handle to
    /// the breaker, to move into a spawned task.
    pub fn try_acquire_owned(self: &Arc<Self>, now_ms: u64) -> Result<OwnedPermit, NotPermitted> {
        self.admit(now_ms).map(|word| OwnedPermit {
            breaker: Arc::clone(self),
            ticket: Ticket { word, armed: true },
        })
    }

    /// Opens the breaker for exactly `retry_after_ms` (capped by
    /// `retry_after_ms_max`) from `now_ms`, as a sink's `Retry-After` asks,
    /// replacing any open duration in force. From HalfOpen this counts as a
    /// re-open. Operator states win: ForcedOpen and Disabled are left alone.
    pub fn record_retry_after(
        &self,
        retry_after_ms: u64,
        now_ms: u64,
    ) -> Result<Transition, RetryAfterError> {
        let ms = self.config.retry_after_ms_for(retry_after_ms);
        let mut inner = self.lock();
        let word = self.hot.0.state.load(Relaxed);
        match state_of(word) {
            state @ (BreakerState::ForcedOpen | BreakerState::Disabled) => {
                Err(RetryAfterError::AdminOverride { state })
            }
            _ => Ok(self.apply(
                &mut inner,
                word,
                BreakerState::Open,
                now_ms,
                TransitionReason::RetryAfter,
                Some(ms),
            )),
        }
    }

    /// Operator: reject every call until [`close`](Self::close). `None` if
    /// already ForcedOpen.
    pub fn force_open(&self) -> Option<Transition> {
        self.admin(BreakerState::ForcedOpen, false)
    }

    /// Operator: permit every call and never trip, until
    /// [`close`](Self::close). `None` if already Disabled.
    pub fn disable(&self) -> Option<Transition> {
        self.admin(BreakerState::Disabled, false)
    }

    /// Operator: back to Closed from any state, with an empty window and the
    /// re-open count at 0. `None` (and nothing cleared) if already Closed.
    pub fn close(&self) -> Option<Transition> {
        self.admin(BreakerState::Closed, false)
    }

    /// Operator: like [`close`](Self::close), but always starts afresh, even
    /// from Closed: empty window, re-open count 0, and results of calls
    /// admitted before the reset are ignored.
    pub fn reset(&self) -> Transition {
        // `admin(.., true)` always transitions; the fallback is unreachable
        // and only keeps this total without a panic path.
        self.admin(BreakerState::Closed, true)
            .unwrap_or(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Closed,
                reason: TransitionReason::Admin,
                open_ms: None,
            })
    }

    /// Applies the HalfOpen timeout without waiting for a call, so the state
    /// gauge does not linger in HalfOpen. Call it from a periodic tick.
    pub fn poll(&self, now_ms: u64) -> Option<Transition> {
        let word = self.hot.0.state.load(Acquire);
        let expired = now_ms >= self.hot.0.half_open_until_ms.load(Relaxed);
        if state_of(word) == BreakerState::HalfOpen && expired {
            return self.transition_from(
                word,
                BreakerState::Open,
                now_ms,
                TransitionReason::HalfOpenTimeout,
                None,
            );
        }
        None
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        state_of(self.hot.0.state.load(Acquire))
    }

    /// The current state as the SPEC §9 gauge value (0..=4).
    pub fn state_code(&self) -> u8 {
        self.state().code()
    }

    /// The Closed window's counts as of `now_ms`. Outside Closed it shows the
    /// window as it was when the breaker left Closed (a time window still
    /// expires with `now_ms`); it is emptied on the next entry to Closed.
    pub fn window(&self, now_ms: u64) -> WindowSnapshot {
        self.window.snapshot(now_ms)
    }

    /// Failure rate of the window in percent; `None` below `minimum_calls`
    /// (resilience4j reports -1 there).
    pub fn failure_rate_pct(&self, now_ms: u64) -> Option<f64> {
        let s = self.window(now_ms);
        (s.calls >= u64::from(self.config.minimum_calls))
            .then(|| s.failure_rate_pct())
            .flatten()
    }

    /// Slow-call rate of the window in percent; `None` below `minimum_calls`.
    pub fn slow_call_rate_pct(&self, now_ms: u64) -> Option<f64> {
        let s = self.window(now_ms);
        (s.calls >= u64::from(self.config.minimum_calls))
            .then(|| s.slow_call_rate_pct())
            .flatten()
    }

    /// Failures in a row while Closed.
    pub fn consecutive_failures(&self) -> u64 {
        self.consecutive_failures.0.load(Relaxed)
    }

    /// Calls refused by `try_acquire` since creation (the `not_permitted` counter).
    pub fn not_permitted_total(&self) -> u64 {
        self.not_permitted.0.load(Relaxed)
    }

    /// Transitions into `to` since creation (the `transitions{to}` counter).
    pub fn transitions_total(&self, to: BreakerState) -> u64 {
        self.transitions
            .get(usize::from(to.code()))
            .map_or(0, |c| c.load(Relaxed))
    }

    /// HalfOpen → Open re-opens since the breaker was last Closed: the
    /// exponent of the next open duration.
    pub fn reopens(&self) -> u32 {
        self.lock().reopens
    }

    /// The most recent transition, if any.
    pub fn last_transition(&self) -> Option<Transition> {
        self.lock().last
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock, and `Inner` is valid after
        // any partial update anyway, so a poisoned lock is simply taken over.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reject(&self, why: NotPermitted) -> NotPermitted {
        self.not_permitted.0.fetch_add(1, Relaxed);
        why
    }

    /// The admission check; returns the state word the call is admitted under.
    fn admit(&self, now_ms: u64) -> Result<u64, NotPermitted> {
        let hot = &self.hot.0;
        for _ in 0..ACQUIRE_ROUNDS {
            // Acquire pairs with the Release in `apply`: the deadlines and
            // half-open counts read below are at least this state's.
            let word = hot.state.load(Acquire);
            match state_of(word) {
                BreakerState::Closed | BreakerState::Disabled => return Ok(word),
                BreakerState::ForcedOpen => return Err(self.reject(NotPermitted::ForcedOpen)),
                BreakerState::Open => {
                    let until = hot.open_until_ms.load(Relaxed);
                    if now_ms < until {
                        let retry_in_ms = until - now_ms;
                        return Err(self.reject(NotPermitted::Open { retry_in_ms }));
                    }
                    // Whoever wins moves it to HalfOpen; everyone re-reads.
                    self.transition_from(
                        word,
                        BreakerState::HalfOpen,
                        now_ms,
                        TransitionReason::OpenElapsed,
                        None,
                    );
                }
                BreakerState::HalfOpen => {
                    if now_ms >= hot.half_open_until_ms.load(Relaxed) {
                        self.transition_from(
                            word,
                            BreakerState::Open,
                            now_ms,
                            TransitionReason::HalfOpenTimeout,
                            None,
                        );
                        continue;
                    }
                    match self.take_half_open_permit(word) {
                        Ok(()) => return Ok(word),
                        Err(Some(full)) => return Err(self.reject(full)),
                        Err(None) => {} // a newer generation: re-read the state
                    }
                }
            }
        }
        Err(self.reject(NotPermitted::Contended))
    }

    /// One HalfOpen permit for generation `word`: `Err(Some(HalfOpenFull))`
    /// when K are out, `Err(None)` when the generation has moved on.
    fn take_half_open_permit(&self, word: u64) -> Result<(), Option<NotPermitted>> {
        let k = u64::from(self.config.half_open_permits);
        let tag = HalfOpenCounts::fresh(word).tag;
        let mut cur = self.half_open.0.load(Relaxed);
        for _ in 0..HALF_OPEN_CAS_ROUNDS {
            let mut ho = HalfOpenCounts::unpack(cur);
            if ho.tag != tag {
                return Err(None);
            }
            if ho.issued >= k {
                return Err(Some(NotPermitted::HalfOpenFull {
                    permits: self.config.half_open_permits,
                }));
            }
            ho.issued += 1;
            match self
                .half_open
                .0
                .compare_exchange(cur, ho.pack(), Relaxed, Relaxed)
            {
                Ok(_) => {
                    debug_assert!(ho.recorded <= ho.issued && ho.issued <= k);
                    return Ok(());
                }
                Err(actual) => cur = actual,
            }
        }
        Err(Some(NotPermitted::Contended))
    }

    /// A permit's result. `word` is the state word it was admitted under.
    fn on_result(
        &self,
        word: u64,
        failure: bool,
        duration_ms: u64,
        now_ms: u64,
    ) -> Option<Transition> {
        let outcome = Outcome {
            failure,
            slow: duration_ms >= self.config.slow_call_duration_ms,
        };
        match state_of(word) {
            BreakerState::Closed => self.on_closed_result(word, outcome, now_ms),
            BreakerState::HalfOpen => self.on_half_open_result(word, outcome, now_ms),
            // Disabled records nothing; permits are never issued in the others.
            _ => None,
        }
    }

    fn on_closed_result(&self, word: u64, outcome: Outcome, now_ms: u64) -> Option<Transition> {
        // A different word means the breaker left this Closed generation
        // since the call was admitted: its result belongs to no live window.
        if self.hot.0.state.load(Acquire) != word {
            return None;
        }
        let snap = self.window.record(outcome, now_ms);
        let consecutive = &self.consecutive_failures.0;
        let in_a_row = if outcome.failure {
            consecutive.fetch_add(1, Relaxed).saturating_add(1)
        } else {
            // Load first: a healthy sink then only reads this shared line
            // instead of writing it on every call.
            if consecutive.load(Relaxed) != 0 {
                consecutive.store(0, Relaxed);
            }
            0
        };
        let reason = self.trip_reason(snap, in_a_row)?;
        self.transition_from(word, BreakerState::Open, now_ms, reason, None)
    }

    /// Which Closed → Open rule, if any, the window and streak now meet.
    fn trip_reason(&self, snap: WindowSnapshot, in_a_row: u64) -> Option<TransitionReason> {
        let c = &self.config;
        if snap.calls >= u64::from(c.minimum_calls) {
            if reaches(snap.failures, snap.calls, c.failure_rate_threshold_pct) {
                return Some(TransitionReason::FailureRate);
            }
            if let Some(pct) = c.slow_call_rate_threshold_pct {
                if reaches(snap.slow_calls, snap.calls, pct) {
                    return Some(TransitionReason::SlowCallRate);
                }
            }
        }
        match c.consecutive_failures_threshold {
            Some(n) if in_a_row >= u64::from(n) => Some(TransitionReason::ConsecutiveFailures),
            _ => None,
        }
    }

    fn on_half_open_result(&self, word: u64, outcome: Outcome, now_ms: u64) -> Option<Transition> {
        if self.hot.0.state.load(Acquire) != word {
            return None;
        }
        // A result after the timeout did not decide in time: back to Open.
        if now_ms >= self.hot.0.half_open_until_ms.load(Relaxed) {
            return self.transition_from(
                word,
                BreakerState::Open,
                now_ms,
                TransitionReason::HalfOpenTimeout,
                None,
            );
        }
        let k = u64::from(self.config.half_open_permits);
        let tag = HalfOpenCounts::fresh(word).tag;
        let mut cur = self.half_open.0.load(Relaxed);
        for _ in 0..HALF_OPEN_CAS_ROUNDS {
            let mut ho = HalfOpenCounts::unpack(cur);
            if ho.tag != tag || ho.recorded >= ho.issued {
                return None;
            }
            ho.recorded += 1;
            ho.failures += u64::from(outcome.failure);
            ho.slow_calls += u64::from(outcome.slow);
            match self
                .half_open
                .0
                .compare_exchange(cur, ho.pack(), Relaxed, Relaxed)
            {
                // Exactly one result brings `recorded` to K, so exactly one
                // thread decides this generation.
                Ok(_) if ho.recorded >= k => return self.decide_half_open(word, ho, now_ms),
                Ok(_) => return None,
                Err(actual) => cur = actual,
            }
        }
        None
    }

    fn decide_half_open(&self, word: u64, ho: HalfOpenCounts, now_ms: u64) -> Option<Transition> {
        let c = &self.config;
        let failed = reaches(ho.failures, ho.recorded, c.failure_rate_threshold_pct)
            || c.slow_call_rate_threshold_pct
                .is_some_and(|pct| reaches(ho.slow_calls, ho.recorded, pct));
        let (to, reason) = if failed {
            (BreakerState::Open, TransitionReason::HalfOpenFailed)
        } else {
            (BreakerState::Closed, TransitionReason::HalfOpenPassed)
        };
        self.transition_from(word, to, now_ms, reason, None)
    }

    /// A permit dropped without a result: give its HalfOpen slot back.
    fn on_cancel(&self, word: u64) {
        if state_of(word) != BreakerState::HalfOpen {
            return; // Closed and Disabled permits hold no slot
        }
        let tag = HalfOpenCounts::fresh(word).tag;
        let mut cur = self.half_open.0.load(Relaxed);
        for _ in 0..HALF_OPEN_CAS_ROUNDS {
            let mut ho = HalfOpenCounts::unpack(cur);
            if ho.tag != tag || ho.issued <= ho.recorded {
                return;
            }
            ho.issued -= 1;
            match self
                .half_open
                .0
                .compare_exchange(cur, ho.pack(), Relaxed, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Moves from `observed` to `to` unless another thread already moved the
    /// breaker on, in which case this (stale) decision is dropped.
    fn transition_from(
        &self,
        observed: u64,
        to: BreakerState,
        now_ms: u64,
        reason: TransitionReason,
        open_ms: Option<u64>,
    ) -> Option<Transition> {
        let mut inner = self.lock();
        // Every store to the state word happens under this lock, so this
        // load sees the latest one.
        if self.hot.0.state.load(Relaxed) != observed {
            return None;
        }
        Some(self.apply(&mut inner, observed, to, now_ms, reason, open_ms))
    }

    fn admin(&self, to: BreakerState, always: bool) -> Option<Transition> {
        let mut inner = self.lock();
        let word = self.hot.0.state.load(Relaxed);
        if !always && state_of(word) == to {
            return None;
        }
        // Operator states carry no deadline, so the time is not used.
        Some(self.apply(&mut inner, word, to, 0, TransitionReason::Admin, None))
    }

    /// The one place the state word is written. Caller holds the lock
    /// (`inner`) and has checked that the word is still `from_word`.
    fn apply(
        &self,
        inner: &mut Inner,
        from_word: u64,
        to: BreakerState,
        now_ms: u64,
        reason: TransitionReason,
        open_ms: Option<u64>,
    ) -> Transition {
        let from = state_of(from_word);
        debug_assert!(
            is_legal(from, to, reason),
            "illegal breaker transition {from} -> {to} ({reason:?})"
        );
        let hot = &self.hot.0;
        let new_word = pack_state(to, generation_of(from_word).wrapping_add(1));
        let mut opened_ms = None;
        // Side data first (Relaxed), then the Release store of the word
        // publishes it: see the module docs.
        match to {
            BreakerState::Open => {
                if from == BreakerState::HalfOpen {
                    inner.reopens = inner.reopens.saturating_add(1);
                }
                let ms = open_ms.unwrap_or_else(|| self.config.open_ms_for(inner.reopens));
                hot.open_until_ms.store(now_ms.saturating_add(ms), Relaxed);
                opened_ms = Some(ms);
            }
            BreakerState::HalfOpen => {
                let fresh = HalfOpenCounts::fresh(new_word).pack();
                self.half_open.0.store(fresh, Relaxed);
                let until = now_ms.saturating_add(self.config.half_open_timeout_ms);
                hot.half_open_until_ms.store(until, Relaxed);
            }
            BreakerState::Closed => {
                inner.reopens = 0;
                self.window.reset();
                self.consecutive_failures.0.store(0, Relaxed);
            }
            BreakerState::ForcedOpen | BreakerState::Disabled => {}
        }
        hot.state.store(new_word, Release);
        if let Some(c) = self.transitions.get(usize::from(to.code())) {
            c.fetch_add(1, Relaxed);
        }
        let t = Transition {
            from,
            to,
            reason,
            open_ms: opened_ms,
        };
        inner.last = Some(t);
        debug_assert_eq!(state_of(hot.state.load(Relaxed)), to);
        t
    }
}
