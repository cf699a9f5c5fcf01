//! The breaker's sliding windows (SPEC §4 "Circuit breaker"): count-based
//! (the last N calls) and time-based (the last N seconds, in 1-second
//! buckets), after resilience4j's `FixedSizeSlidingWindowMetrics` and
//! `SlidingTimeWindowMetrics`, but updated with atomics instead of a lock.
//!
//! Both keep running totals next to the ring, so recording a call and
//! reading the totals are O(1) (a time window that jumps ahead by `k`
//! seconds drains `min(k, N)` buckets once, amortised O(1) per call).
//!
//! # Why the totals stay right
//!
//! Every change to the ring is one atomic read-modify-write on a slot or
//! bucket (`swap`, `fetch_add`) whose exact effect is then applied to the
//! totals with the same delta. Read-modify-writes on one atomic never lose
//! updates, whatever the memory ordering, so once threads are quiet the
//! totals equal the sum over the ring, always, with `Relaxed` everywhere:
//! the counts are statistics and publish no other memory. While threads
//! are mid-update a reader can see a total before its matching delta
//! (even a transient "negative" one); reads clamp to `0..=cap`. Under
//! contention a call racing a bucket's rotation may be dropped or land in
//! the next lap's bucket; single-threaded every count is exact (tested
//! against a naive model).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use super::config::SlidingWindow;
use super::Padded;

/// Bounds the compare-and-swap loops here. Each failed attempt means another
/// thread moved the same value forward, so a loop that runs out has been
/// overtaken, and dropping one statistic is the documented cost.
const CAS_ROUNDS: usize = 64;

/// One call's result as the window stores it: a nonzero byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The call failed.
    pub failure: bool,
    /// The call took at least `slow_call_duration_ms`.
    pub slow: bool,
}

impl Outcome {
    const PRESENT: u8 = 1;
    const FAILURE: u8 = 2;
    const SLOW: u8 = 4;

    fn code(self) -> u8 {
        Self::PRESENT
            | if self.failure { Self::FAILURE } else { 0 }
            | if self.slow { Self::SLOW } else { 0 }
    }
}

/// Calls, failures and slow calls in the window at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowSnapshot {
    /// Calls recorded in the window.
    pub calls: u64,
    /// Of those, failures.
    pub failures: u64,
    /// Of those, slow calls (failed or not).
    pub slow_calls: u64,
}

impl WindowSnapshot {
    /// Failures as a percentage of calls; `None` with no calls.
    pub fn failure_rate_pct(&self) -> Option<f64> {
        rate_pct(self.failures, self.calls)
    }

    /// Slow calls as a percentage of calls; `None` with no calls.
    pub fn slow_call_rate_pct(&self) -> Option<f64> {
        rate_pct(self.slow_calls, self.calls)
    }
}

fn rate_pct(part: u64, calls: u64) -> Option<f64> {
    (calls > 0).then(|| part as f64 * 100.0 / calls as f64)
}

/// Running totals over the ring. Each is a two's-complement counter so that
/// a decrement that overtakes its increment reads as a small negative.
#[derive(Debug, Default)]
struct Totals {
    calls: AtomicU64,
    failures: AtomicU64,
    slow_calls: AtomicU64,
}

impl Totals {
    fn add(counter: &AtomicU64, delta: i64) {
        // Two's complement: adding the bit pattern of a negative delta
        // subtracts, and atomic adds wrap rather than panic.
        if delta != 0 {
            counter.fetch_add(delta as u64, Relaxed);
        }
    }

    fn snapshot(&self, cap: u64) -> WindowSnapshot {
        let read = |c: &AtomicU64| (c.load(Relaxed) as i64).clamp(0, cap as i64) as u64;
        WindowSnapshot {
            calls: read(&self.calls),
            failures: read(&self.failures),
            slow_calls: read(&self.slow_calls),
        }
    }
}

/// A sliding window of either kind.
#[derive(Debug)]
pub(crate) enum Window {
    /// The last N calls.
    Count(CountWindow),
    /// The last N seconds.
    Time(TimeWindow),
}

impl Window {
    /// An empty window of the configured kind and size. Sizes are clamped to
    /// at least 1 so an unchecked config cannot divide by zero.
    pub fn new(kind: SlidingWindow) -> Self {
        match kind {
            SlidingWindow::Count { calls } => Window::Count(CountWindow::new(calls.max(1))),
            SlidingWindow::Time { seconds } => Window::Time(TimeWindow::new(seconds.max(1))),
        }
    }

    /// Records one call finished at `now_ms` and returns the totals after it.
    pub fn record(&self, outcome: Outcome, now_ms: u64) -> WindowSnapshot {
        match self {
            Window::Count(w) => w.record(outcome),
            Window::Time(w) => w.record(outcome, now_ms),
        }
    }

    /// The totals as of `now_ms` (a time window first expires old buckets).
    pub fn snapshot(&self, now_ms: u64) -> WindowSnapshot {
        match self {
            Window::Count(w) => w.totals.0.snapshot(w.cap()),
            Window::Time(w) => {
                w.advance(TimeWindow::tag(now_ms));
                w.totals.0.snapshot(u64::MAX >> 1)
            }
        }
    }

    /// Empties the window. O(N); called only on a transition to Closed.
    pub fn reset(&self) {
        match self {
            Window::Count(w) => w.reset(),
            Window::Time(w) => w.reset(),
        }
    }

    /// Sums the ring itself (not the running totals), to check that the
    /// two agree once threads are quiet.
    #[cfg(test)]
    pub fn recount(&self) -> WindowSnapshot {
        let mut s = WindowSnapshot::default();
        match self {
            Window::Count(w) => {
                for slot in w.slots.iter() {
                    let code = slot.load(Relaxed);
                    s.calls += u64::from(code & Outcome::PRESENT != 0);
                    s.failures += u64::from(code & Outcome::FAILURE != 0);
                    s.slow_calls += u64::from(code & Outcome::SLOW != 0);
                }
            }
            Window::Time(w) => {
                for b in w.buckets.iter() {
                    s.calls += b.calls.load(Relaxed);
                    s.failures += b.failures.load(Relaxed);
                    s.slow_calls += b.slow_calls.load(Relaxed);
                }
            }
        }
        s
    }
}

/// Ring of the last N outcomes, one byte each (0 = empty slot).
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    /// Sequence number of the next call; its slot is `next % N`.
    next: Padded<AtomicU64>,
    totals: Padded<Totals>,
}

impl CountWindow {
    fn new(calls: u32) -> Self {
        CountWindow {
            slots: (0..calls).map(|_| AtomicU8::new(0)).collect(),
            next: Padded(AtomicU64::new(0)),
            totals: Padded(Totals::default()),
        }
    }

    fn cap(&self) -> u64 {
        self.slots.len() as u64
    }

    fn record(&self, outcome: Outcome) -> WindowSnapshot {
        let seq = self.next.0.fetch_add(1, Relaxed);
        // `slots` is never empty (size clamped to >= 1), so the modulo is
        // defined and the index in bounds; `get` keeps that panic-free anyway.
        if let Some(slot) = self.slots.get((seq % self.cap()) as usize) {
            self.replace(slot, outcome.code());
        }
        self.totals.0.snapshot(self.cap())
    }

    /// Swaps a slot's byte and applies exactly the swap's effect to the totals.
    fn replace(&self, slot: &AtomicU8, new: u8) {
        let old = slot.swap(new, Relaxed);
        if old == new {
            return;
        }
        let bit = |code: u8, mask: u8| i64::from(code & mask != 0);
        let t = &self.totals.0;
        Totals::add(
            &t.calls,
            bit(new, Outcome::PRESENT) - bit(old, Outcome::PRESENT),
        );
        Totals::add(
            &t.failures,
            bit(new, Outcome::FAILURE) - bit(old, Outcome::FAILURE),
        );
        Totals::add(
            &t.slow_calls,
            bit(new, Outcome::SLOW) - bit(old, Outcome::SLOW),
        );
    }

    fn reset(&self) {
        // Swapping each slot to empty (rather than zeroing the totals) keeps
        // the totals equal to the ring even if a stale call races the reset.
        for slot in self.slots.iter() {
            self.replace(slot, 0);
        }
    }
}

/// One second's counts. `tag` is the second it holds plus one (0 = never used).
#[derive(Debug, Default)]
struct Bucket {
    tag: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    slow_calls: AtomicU64,
}

/// Ring of N one-second buckets plus running totals over the live ones.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
    /// Tag of the newest second seen; the live buckets hold tags in
    /// `(head - N, head]`.
    head: Padded<AtomicU64>,
    totals: Padded<Totals>,
}

impl TimeWindow {
    fn new(seconds: u32) -> Self {
        TimeWindow {
            buckets: (0..seconds).map(|_| Bucket::default()).collect(),
            head: Padded(AtomicU64::new(0)),
            totals: Padded(Totals::default()),
        }
    }

    /// The tag of the second holding `now_ms`: never 0, never overflows.
    fn tag(now_ms: u64) -> u64 {
        now_ms / 1000 + 1
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    fn bucket(&self, tag: u64) -> Option<&Bucket> {
        self.buckets.get((tag % self.len()) as usize)
    }

    fn record(&self, outcome: Outcome, now_ms: u64) -> WindowSnapshot {
        let tag = Self::tag(now_ms);
        self.advance(tag);
        // A call older than the window (the clock went back, or this thread
        // stalled for N seconds) is dropped rather than miscounted.
        let live = tag + self.len() > self.head.0.load(Relaxed);
        if let Some(b) = self.bucket(tag).filter(|_| live) {
            if self.claim(b, tag) {
                let t = &self.totals.0;
                let (f, s) = (i64::from(outcome.failure), i64::from(outcome.slow));
                // Bucket first, then totals, each with the same delta: see
                // the module docs for why any interleaving stays consistent.
                b.calls.fetch_add(1, Relaxed);
                Totals::add(&t.calls, 1);
                if f != 0 {
                    b.failures.fetch_add(1, Relaxed);
                    Totals::add(&t.failures, f);
                }
                if s != 0 {
                    b.slow_calls.fetch_add(1, Relaxed);
                    Totals::add(&t.slow_calls, s);
                }
            }
        }
        self.totals.0.snapshot(u64::MAX >> 1)
    }

    /// Moves the head to `tag` if that is newer, claiming (and so draining)
    /// every bucket that enters the window: at most N of them.
    fn advance(&self, tag: u64) {
        let mut head = self.head.0.load(Relaxed);
        for _ in 0..CAS_ROUNDS {
            if tag <= head {
                return;
            }
            match self.head.0.compare_exchange(head, tag, Relaxed, Relaxed) {
                Ok(_) => {
                    let first = head.max(tag.saturating_sub(self.len())) + 1;
                    for t in first..=tag {
                        if let Some(b) = self.bucket(t) {
                            self.claim(b, t);
                        }
                    }
                    return;
                }
                Err(actual) => head = actual,
            }
        }
    }

    /// Makes `b` hold second `tag`, draining an older second's counts out of
    /// the totals. False if it already holds a newer second.
    fn claim(&self, b: &Bucket, tag: u64) -> bool {
        let mut cur = b.tag.load(Relaxed);
        for _ in 0..CAS_ROUNDS {
            if cur == tag {
                return true;
            }
            if cur > tag {
                return false;
            }
            // Strong CAS: a spurious failure must not drop a call when
            // single-threaded, where counts are promised exact.
            match b.tag.compare_exchange(cur, tag, Relaxed, Relaxed) {
                Ok(_) => {
                    self.drain(b);
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
        false
    }

    /// Zeroes a bucket, subtracting exactly what was swapped out.
    fn drain(&self, b: &Bucket) {
        let t = &self.totals.0;
        let take = |c: &AtomicU64| -(c.swap(0, Relaxed) as i64);
        Totals::add(&t.calls, take(&b.calls));
        Totals::add(&t.failures, take(&b.failures));
        Totals::add(&t.slow_calls, take(&b.slow_calls));
    }

    fn reset(&self) {
        // Tags stay: they only say which second a bucket last held, and the
        // emptied counts make every bucket contribute nothing.
        for b in self.buckets.iter() {
            self.drain(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OK: Outcome = Outcome {
        failure: false,
        slow: false,
    };
    const FAIL: Outcome = Outcome {
        failure: true,
        slow: false,
    };

    #[test]
    fn count_window_keeps_only_the_last_n() {
        let w = Window::new(SlidingWindow::Count { calls: 3 });
        w.record(FAIL, 0);
        w.record(FAIL, 0);
        w.record(OK, 0);
        let s = w.record(OK, 0);
        assert_eq!((s.calls, s.failures), (3, 1));
        w.reset();
        assert_eq!(w.snapshot(0), WindowSnapshot::default());
    }

    #[test]
    fn time_window_expires_whole_seconds() {
        let w = Window::new(SlidingWindow::Time { seconds: 2 });
        w.record(FAIL, 500);
        w.record(OK, 1_999);
        assert_eq!(w.snapshot(1_999).calls, 2);
        // At 2.0 s the window is seconds {1, 2}: second 0 has left.
        assert_eq!(w.snapshot(2_000).calls, 1);
        assert_eq!(w.snapshot(2_000).failures, 0);
        assert_eq!(w.snapshot(60_000), WindowSnapshot::default());
        // A call from before the window is dropped, not counted.
        assert_eq!(w.record(FAIL, 1_000).calls, 0);
    }

    #[test]
    fn extreme_times_do_not_panic() {
        let w = Window::new(SlidingWindow::Time { seconds: 3600 });
        w.record(FAIL, u64::MAX);
        w.record(FAIL, 0);
        assert_eq!(w.snapshot(u64::MAX).calls, 1);
    }

    proptest! {
        /// Single-threaded, the window equals a naive filter over every call.
        #[test]
        fn windows_match_a_naive_model(
            count in any::<bool>(),
            size in 1u32..8,
            calls in proptest::collection::vec((0u64..2_500, any::<bool>(), any::<bool>()), 0..200),
        ) {
            let kind = if count { SlidingWindow::Count { calls: size } } else { SlidingWindow::Time { seconds: size } };
            let w = Window::new(kind);
            let mut all: Vec<(u64, Outcome)> = Vec::new();
            let mut now = 0u64;
            for (dt, failure, slow) in calls {
                now += dt;
                let o = Outcome { failure, slow };
                all.push((now, o));
                let got = w.record(o, now);
                let live: Vec<Outcome> = if count {
                    all.iter().rev().take(size as usize).map(|c| c.1).collect()
                } else {
                    let sec = now / 1000;
                    all.iter().filter(|c| c.0 / 1000 + u64::from(size) > sec).map(|c| c.1).collect()
                };
                let want = WindowSnapshot {
                    calls: live.len() as u64,
                    failures: live.iter().filter(|o| o.failure).count() as u64,
                    slow_calls: live.iter().filter(|o| o.slow).count() as u64,
                };
                prop_assert_eq!(got, want);
                prop_assert_eq!(w.snapshot(now), want);
            }
        }
    }
}
