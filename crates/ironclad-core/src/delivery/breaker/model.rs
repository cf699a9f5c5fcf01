//! Proptest of the breaker against a naive model that keeps every call in
//! a `Vec` and filters it to the window each time (single-threaded), so
//! every admission, window count and state decision is checked step by step.

use proptest::prelude::*;

use super::tests::breaker;
use super::*;

use BreakerState::{Closed, Disabled, ForcedOpen, HalfOpen, Open};

#[derive(Debug, Clone, Copy)]
struct Ticket0 {
    generation: u64,
    state: BreakerState,
}

#[derive(Debug)]
struct Model {
    cfg: BreakerConfig,
    state: BreakerState,
    generation: u64,
    calls: Vec<(u64, bool, bool)>,
    streak: u64,
    reopens: u32,
    open_until: u64,
    half_open_until: u64,
    ho: (u64, u64, u64, u64), // issued, recorded, failures, slow
    rejected: u64,
}

impl Model {
    fn new(cfg: BreakerConfig) -> Self {
        Model {
            cfg,
            state: Closed,
            generation: 0,
            calls: Vec::new(),
            streak: 0,
            reopens: 0,
            open_until: 0,
            half_open_until: 0,
            ho: (0, 0, 0, 0),
            rejected: 0,
        }
    }

    fn window(&self, now: u64) -> WindowSnapshot {
        let live: Vec<&(u64, bool, bool)> = match self.cfg.window {
            SlidingWindow::Count { calls } => {
                self.calls.iter().rev().take(calls as usize).collect()
            }
            SlidingWindow::Time { seconds } => self
                .calls
                .iter()
                .filter(|c| c.0 / 1000 + u64::from(seconds) > now / 1000)
                .collect(),
        };
        WindowSnapshot {
            calls: live.len() as u64,
            failures: live.iter().filter(|c| c.1).count() as u64,
            slow_calls: live.iter().filter(|c| c.2).count() as u64,
        }
    }

    fn go(&mut self, to: BreakerState, now: u64, open_ms: Option<u64>) {
        match to {
            Open => {
                if self.state == HalfOpen {
                    self.reopens += 1;
                }
                let ms = open_ms.unwrap_or_else(|| self.cfg.open_ms_for(self.reopens));
                self.open_until = now.saturating_add(ms);
            }
            HalfOpen => {
                self.ho = (0, 0, 0, 0);
                self.half_open_until = now + self.cfg.half_open_timeout_ms;
            }
            Closed => {
                self.reopens = 0;
                self.calls.clear();
                self.streak = 0;
            }
            ForcedOpen | Disabled => {}
        }
        self.state = to;
        self.generation += 1;
    }

    fn acquire(&mut self, now: u64) -> Result<Ticket0, NotPermitted> {
        loop {
            let ticket = Ticket0 {
                generation: self.generation,
                state: self.state,
            };
            let err = match self.state {
                Closed | Disabled => return Ok(ticket),
                ForcedOpen => NotPermitted::ForcedOpen,
                Open if now >= self.open_until => {
                    self.go(HalfOpen, now, None);
                    continue;
                }
                Open => NotPermitted::Open {
                    retry_in_ms: self.open_until - now,
                },
                HalfOpen if now >= self.half_open_until => {
                    self.go(Open, now, None);
                    continue;
                }
                HalfOpen if self.ho.0 < u64::from(self.cfg.half_open_permits) => {
                    self.ho.0 += 1;
                    return Ok(ticket);
                }
                HalfOpen => NotPermitted::HalfOpenFull {
                    permits: self.cfg.half_open_permits,
                },
            };
            self.rejected += 1;
            return Err(err);
        }
    }

    fn report(&mut self, t: Ticket0, failure: bool, duration_ms: u64, now: u64) {
        if t.generation != self.generation {
            return;
        }
        let slow = duration_ms >= self.cfg.slow_call_duration_ms;
        let rate = |part: u64, all: u64, pct: u8| all > 0 && part * 100 >= u64::from(pct) * all;
        match t.state {
            Closed => {
                self.calls.push((now, failure, slow));
                self.streak = if failure { self.streak + 1 } else { 0 };
                let w = self.window(now);
                let c = &self.cfg;
                let by_rate = w.calls >= u64::from(c.minimum_calls)
                    && (rate(w.failures, w.calls, c.failure_rate_threshold_pct)
                        || c.slow_call_rate_threshold_pct
                            .is_some_and(|p| rate(w.slow_calls, w.calls, p)));
                let by_streak = c
                    .consecutive_failures_threshold
                    .is_some_and(|n| self.streak >= u64::from(n));
                if by_rate || by_streak {
                    self.go(Open, now, None);
                }
            }
            HalfOpen => {
                if now >= self.half_open_until {
                    self.go(Open, now, None);
                    return;
                }
                self.ho.1 += 1;
                self.ho.2 += u64::from(failure);
                self.ho.3 += u64::from(slow);
                let k = u64::from(self.cfg.half_open_permits);
                if self.ho.1 == k {
                    let c = &self.cfg;
                    let failed = rate(self.ho.2, k, c.failure_rate_threshold_pct)
                        || c.slow_call_rate_threshold_pct
                            .is_some_and(|p| rate(self.ho.3, k, p));
                    self.go(if failed { Open } else { Closed }, now, None);
                }
            }
            _ => {}
        }
    }

    fn cancel(&mut self, t: Ticket0) {
        if t.state == HalfOpen && t.generation == self.generation {
            self.ho.0 -= 1;
        }
    }

    fn retry_after(&mut self, ms: u64, now: u64) -> bool {
        if matches!(self.state, ForcedOpen | Disabled) {
            return false;
        }
        self.go(Open, now, Some(ms.min(self.cfg.retry_after_ms_max)));
        true
    }
}

#[derive(Debug, Clone)]
enum Op {
    Call {
        dt: u64,
        failure: bool,
        duration_ms: u64,
    },
    Hold {
        dt: u64,
    },
    Report {
        idx: usize,
        dt: u64,
        failure: bool,
        duration_ms: u64,
    },
    Cancel {
        idx: usize,
    },
    RetryAfter {
        dt: u64,
        ms: u64,
    },
    Admin(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u64..700, any::<bool>(), 0u64..2_000)
            .prop_map(|(dt, failure, duration_ms)| Op::Call { dt, failure, duration_ms }),
        2 => (0u64..700).prop_map(|dt| Op::Hold { dt }),
        2 => (0usize..8, 0u64..700, any::<bool>(), 0u64..2_000)
            .prop_map(|(idx, dt, failure, duration_ms)| Op::Report { idx, dt, failure, duration_ms }),
        1 => (0usize..8).prop_map(|idx| Op::Cancel { idx }),
        1 => (0u64..700, 0u64..3_000).prop_map(|(dt, ms)| Op::RetryAfter { dt, ms }),
        1 => (0u8..8).prop_map(Op::Admin),
    ]
}

fn config() -> impl Strategy<Value = BreakerConfig> {
    (
        prop_oneof![
            (1u32..8).prop_map(|calls| SlidingWindow::Count { calls }),
            (1u32..4).prop_map(|seconds| SlidingWindow::Time { seconds }),
        ],
        1u32..8,
        1u8..=100,
        proptest::option::of(1u8..=100),
        proptest::option::of(1u32..6),
        (1u64..3_000, 1.0f64..3.0, 1u64..10),
        1u64..5_000,
        1u32..4,
        1u64..5_000,
    )
        .prop_map(
            |(window, minimum, fail_pct, slow_pct, streak, (base, mult, max_x), ra_max, k, hot)| {
                let minimum_calls = match window {
                    SlidingWindow::Count { calls } => minimum.min(calls),
                    SlidingWindow::Time { .. } => minimum,
                };
                BreakerConfig {
                    window,
                    minimum_calls,
                    failure_rate_threshold_pct: fail_pct,
                    slow_call_rate_threshold_pct: slow_pct,
                    slow_call_duration_ms: 1_000,
                    consecutive_failures_threshold: streak,
                    open_ms_base: base,
                    open_multiplier: mult,
                    open_ms_max: base * max_x,
                    retry_after_ms_max: ra_max,
                    half_open_permits: k,
                    half_open_timeout_ms: hot,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Single-threaded, the breaker and the naive model agree on every
    /// admission, every window count and every state, step by step.
    #[test]
    fn breaker_matches_a_naive_model(c in config(), ops in proptest::collection::vec(op(), 0..300)) {
        let b = breaker(c.clone());
        let mut m = Model::new(c);
        let mut held: Vec<(Permit<'_>, Ticket0)> = Vec::new();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Call { dt, failure, duration_ms } => {
                    now += dt;
                    let got = b.try_acquire(now);
                    let want = m.acquire(now);
                    prop_assert_eq!(got.as_ref().err(), want.as_ref().err());
                    if let (Ok(p), Ok(t)) = (got, want) {
                        let _ = if failure { p.failure(duration_ms, now) } else { p.success(duration_ms, now) };
                        m.report(t, failure, duration_ms, now);
                    }
                }
                Op::Hold { dt } => {
                    now += dt;
                    let got = b.try_acquire(now);
                    let want = m.acquire(now);
                    prop_assert_eq!(got.as_ref().err(), want.as_ref().err());
                    if let (Ok(p), Ok(t)) = (got, want) {
                        held.push((p, t));
                    }
                }
                Op::Report { idx, dt, failure, duration_ms } if !held.is_empty() => {
                    now += dt;
                    let (p, t) = held.swap_remove(idx % held.len());
                    let _ = if failure { p.failure(duration_ms, now) } else { p.success(duration_ms, now) };
                    m.report(t, failure, duration_ms, now);
                }
                Op::Cancel { idx } if !held.is_empty() => {
                    let (p, t) = held.swap_remove(idx % held.len());
                    drop(p);
                    m.cancel(t);
                }
                Op::RetryAfter { dt, ms } => {
                    now += dt;
                    prop_assert_eq!(b.record_retry_after(ms, now).is_ok(), m.retry_after(ms, now));
                }
                Op::Admin(which) => {
                    let (to, always) = match which {
                        0 => (ForcedOpen, false),
                        1 => (Disabled, false),
                        2 => (Closed, false),
                        3 => (Closed, true),
                        _ => continue,
                    };
                    let changed = match (to, always) {
                        (ForcedOpen, _) => b.force_open().is_some(),
                        (Disabled, _) => b.disable().is_some(),
                        (_, false) => b.close().is_some(),
                        _ => { b.reset(); true }
                    };
                    prop_assert_eq!(changed, always || m.state != to);
                    if changed {
                        m.go(to, now, None);
                    }
                }
                _ => {}
            }
            prop_assert_eq!(b.state(), m.state);
            prop_assert_eq!(b.window(now), m.window(now));
            prop_assert_eq!(b.reopens(), m.reopens);
            prop_assert_eq!(b.consecutive_failures(), m.streak);
            prop_assert_eq!(b.not_permitted_total(), m.rejected);
        }
    }
}
