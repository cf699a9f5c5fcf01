//! Tests for the circuit breaker: every transition by hand and a
//! multi-threaded smoke test (the model-based proptest is in `model.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::*;

use BreakerState::{Closed, Disabled, ForcedOpen, HalfOpen, Open};

/// Count window of 10, trips at 50 % over at least 4 calls, K = 2.
fn cfg() -> BreakerConfig {
    BreakerConfig {
        window: SlidingWindow::Count { calls: 10 },
        minimum_calls: 4,
        failure_rate_threshold_pct: 50,
        slow_call_rate_threshold_pct: None,
        slow_call_duration_ms: 1_000,
        consecutive_failures_threshold: None,
        open_ms_base: 1_000,
        open_multiplier: 2.0,
        open_ms_max: 10_000,
        retry_after_ms_max: 60_000,
        half_open_permits: 2,
        half_open_timeout_ms: 5_000,
    }
}

pub(super) fn breaker(c: BreakerConfig) -> CircuitBreaker {
    CircuitBreaker::new(c).expect("test config is valid")
}

fn ok(b: &CircuitBreaker, now: u64) -> Option<Transition> {
    b.try_acquire(now).expect("permitted").success(1, now)
}

fn fail(b: &CircuitBreaker, now: u64) -> Option<Transition> {
    b.try_acquire(now).expect("permitted").failure(1, now)
}

/// Trips a `cfg()` breaker at `now` with four failures; returns the transition.
fn trip(b: &CircuitBreaker, now: u64) -> Transition {
    for _ in 0..3 {
        assert_eq!(fail(b, now), None);
    }
    fail(b, now).expect("fourth failure trips")
}

#[test]
fn config_check_names_each_bad_field() {
    let field = |c: BreakerConfig| match c.check() {
        Err(ConfigError::OutOfRange { field, .. }) => field,
        other => panic!("expected OutOfRange, got {other:?}"),
    };
    assert_eq!(cfg().check(), Ok(()));
    assert_eq!(BreakerConfig::default().check(), Ok(()));
    let cases: Vec<(&str, BreakerConfig)> = vec![
        (
            "window.calls",
            BreakerConfig {
                window: SlidingWindow::Count { calls: 0 },
                ..cfg()
            },
        ),
        (
            "window.seconds",
            BreakerConfig {
                window: SlidingWindow::Time { seconds: 0 },
                ..cfg()
            },
        ),
        (
            "window.calls",
            BreakerConfig {
                window: SlidingWindow::Count {
                    calls: WINDOW_CALLS_MAX + 1,
                },
                ..cfg()
            },
        ),
        (
            "minimum_calls",
            BreakerConfig {
                minimum_calls: 0,
                ..cfg()
            },
        ),
        (
            "failure_rate_threshold_pct",
            BreakerConfig {
                failure_rate_threshold_pct: 0,
                ..cfg()
            },
        ),
        (
            "failure_rate_threshold_pct",
            BreakerConfig {
                failure_rate_threshold_pct: 101,
                ..cfg()
            },
        ),
        (
            "slow_call_rate_threshold_pct",
            BreakerConfig {
                slow_call_rate_threshold_pct: Some(101),
                ..cfg()
            },
        ),
        (
            "consecutive_failures_threshold",
            BreakerConfig {
                consecutive_failures_threshold: Some(0),
                ..cfg()
            },
        ),
        (
            "slow_call_duration_ms",
            BreakerConfig {
                slow_call_duration_ms: 0,
                ..cfg()
            },
        ),
        (
            "open_ms_base",
            BreakerConfig {
                open_ms_base: 0,
                ..cfg()
            },
        ),
        (
            "retry_after_ms_max",
            BreakerConfig {
                retry_after_ms_max: DURATION_MS_MAX + 1,
                ..cfg()
            },
        ),
        (
            "half_open_permits",
            BreakerConfig {
                half_open_permits: 0,
                ..cfg()
            },
        ),
        (
            "half_open_permits",
            BreakerConfig {
                half_open_permits: HALF_OPEN_PERMITS_MAX + 1,
                ..cfg()
            },
        ),
        (
            "half_open_timeout_ms",
            BreakerConfig {
                half_open_timeout_ms: 0,
                ..cfg()
            },
        ),
    ];
    for (name, c) in cases {
        assert_eq!(field(c), name);
    }
    let too_many = BreakerConfig {
        minimum_calls: 11,
        ..cfg()
    };
    assert_eq!(
        too_many.check(),
        Err(ConfigError::MinimumCallsAboveWindow {
            minimum_calls: 11,
            window_calls: 10
        })
    );
    let low_max = BreakerConfig {
        open_ms_max: 999,
        ..cfg()
    };
    assert!(matches!(
        low_max.check(),
        Err(ConfigError::OpenMaxBelowBase { .. })
    ));
    for m in [0.5, f64::NAN, f64::INFINITY, 101.0] {
        let c = BreakerConfig {
            open_multiplier: m,
            ..cfg()
        };
        assert!(matches!(c.check(), Err(ConfigError::OpenMultiplier { .. })));
    }
    assert!(CircuitBreaker::new(BreakerConfig {
        half_open_permits: 0,
        ..cfg()
    })
    .is_err());
}

#[test]
fn closed_to_open_on_failure_rate() {
    let b = breaker(cfg());
    ok(&b, 0);
    ok(&b, 0);
    assert_eq!(fail(&b, 0), None);
    // 2 of 4 calls failed: 50 % reaches the threshold.
    let t = fail(&b, 10).expect("trips");
    assert_eq!(
        (t.from, t.to, t.reason),
        (Closed, Open, TransitionReason::FailureRate)
    );
    assert_eq!(t.open_ms, Some(1_000));
    assert_eq!(b.state(), Open);
    assert_eq!(b.state_code(), 1);
    assert_eq!(
        b.try_acquire(10).err(),
        Some(NotPermitted::Open { retry_in_ms: 1_000 })
    );
    assert_eq!(b.not_permitted_total(), 1);
    assert_eq!(b.transitions_total(Open), 1);
}

#[test]
fn minimum_calls_is_respected() {
    let b = breaker(cfg());
    for _ in 0..3 {
        assert_eq!(fail(&b, 0), None, "3 calls < minimum_calls 4");
    }
    assert_eq!(b.failure_rate_pct(0), None);
    assert_eq!(b.window(0).failure_rate_pct(), Some(100.0));
    assert_eq!(b.state(), Closed);
    // Below the threshold once the minimum is reached: stays Closed.
    let b = breaker(cfg());
    for _ in 0..3 {
        ok(&b, 0);
    }
    assert_eq!(fail(&b, 0), None);
    assert_eq!(b.failure_rate_pct(0), Some(25.0));
    assert_eq!(b.state(), Closed);
}

#[test]
fn closed_to_open_on_consecutive_failures() {
    let b = breaker(BreakerConfig {
        window: SlidingWindow::Count { calls: 100 },
        minimum_calls: 100,
        consecutive_failures_threshold: Some(3),
        ..cfg()
    });
    fail(&b, 0);
    fail(&b, 0);
    ok(&b, 0); // breaks the streak
    fail(&b, 0);
    assert_eq!(fail(&b, 0), None);
    assert_eq!(b.consecutive_failures(), 2);
    let t = fail(&b, 0).expect("third in a row trips");
    assert_eq!(t.reason, TransitionReason::ConsecutiveFailures);
    assert_eq!(b.state(), Open);
}

#[test]
fn closed_to_open_on_slow_call_rate() {
    let b = breaker(BreakerConfig {
        slow_call_rate_threshold_pct: Some(75),
        ..cfg()
    });
    let slow = |now| b.try_acquire(now).expect("permitted").success(1_000, now);
    ok(&b, 0);
    slow(0);
    slow(0);
    assert_eq!(b.slow_call_rate_pct(0), None, "below minimum calls");
    let t = slow(0).expect("3 of 4 slow reaches 75 %");
    assert_eq!(t.reason, TransitionReason::SlowCallRate);
    assert_eq!(b.window(0).failures, 0, "slow successes are not failures");
    // Without a slow threshold, slow calls are only counted.
    let b = breaker(cfg());
    for _ in 0..10 {
        assert_eq!(b.try_acquire(0).expect("ok").success(5_000, 0), None);
    }
    assert_eq!(b.window(0).slow_calls, 10);
    assert_eq!(b.slow_call_rate_pct(0), Some(100.0));
}

#[test]
fn open_to_half_open_after_the_open_duration() {
    let b = breaker(cfg());
    trip(&b, 100);
    assert_eq!(
        b.try_acquire(1_099).err(),
        Some(NotPermitted::Open { retry_in_ms: 1 })
    );
    let p = b.try_acquire(1_100).expect("open duration over");
    assert_eq!(p.state(), HalfOpen);
    assert_eq!(b.state(), HalfOpen);
    assert_eq!(b.state_code(), 2);
    let t = b.last_transition().expect("recorded");
    assert_eq!(
        (t.from, t.to, t.reason),
        (Open, HalfOpen, TransitionReason::OpenElapsed)
    );
    drop(p);
}

#[test]
fn half_open_to_closed_when_trials_pass() {
    let b = breaker(cfg());
    trip(&b, 0);
    let p1 = b.try_acquire(1_000).expect("trial 1");
    let p2 = b.try_acquire(1_000).expect("trial 2");
    assert_eq!(
        b.try_acquire(1_000).err(),
        Some(NotPermitted::HalfOpenFull { permits: 2 })
    );
    assert_eq!(p1.failure(1, 1_001), None, "undecided until K results");
    // 1 of 2 failed: 50 % reaches the threshold, so this must reopen...
    let t = p2.success(1, 1_002).expect("decided");
    assert_eq!((t.to, t.reason), (Open, TransitionReason::HalfOpenFailed));
    // ...and with both trials passing it closes, with a fresh window.
    let now = 1_002 + t.open_ms.expect("open");
    ok(&b, now);
    let t = ok(&b, now).expect("decided");
    assert_eq!(
        (t.from, t.to, t.reason),
        (HalfOpen, Closed, TransitionReason::HalfOpenPassed)
    );
    assert_eq!(b.window(now), WindowSnapshot::default());
    assert_eq!(b.reopens(), 0);
}

#[test]
fn half_open_to_open_when_trials_fail() {
    let b = breaker(cfg());
    trip(&b, 0);
    fail(&b, 1_000);
    let t = fail(&b, 1_000).expect("decided");
    assert_eq!((t.from, t.to), (HalfOpen, Open));
    assert_eq!(t.open_ms, Some(2_000), "re-open doubles");
    assert_eq!(b.reopens(), 1);
}

#[test]
fn half_open_timeout_goes_back_to_open() {
    let b = breaker(cfg());
    trip(&b, 0);
    let p = b.try_acquire(1_000).expect("trial");
    // Undecided at 1_000 + 5_000: the next call sees the timeout.
    assert_eq!(b.poll(5_999), None);
    assert!(matches!(
        b.try_acquire(6_000),
        Err(NotPermitted::Open { retry_in_ms: 2_000 })
    ));
    let t = b.last_transition().expect("recorded");
    assert_eq!(t.reason, TransitionReason::HalfOpenTimeout);
    // The late result belongs to a finished generation: ignored.
    assert_eq!(p.success(1, 6_001), None);
    assert_eq!(b.state(), Open);
    // poll applies the timeout without a call.
    let b = breaker(cfg());
    trip(&b, 0);
    let _p = b.try_acquire(1_000).expect("trial");
    let t = b.poll(6_000).expect("timed out");
    assert_eq!((t.from, t.to), (HalfOpen, Open));
    // A result arriving at or after the deadline does not decide in time.
    let b = breaker(BreakerConfig {
        half_open_permits: 1,
        ..cfg()
    });
    trip(&b, 0);
    let p = b.try_acquire(1_000).expect("trial");
    let t = p.success(1, 6_000).expect("timeout");
    assert_eq!((t.to, t.reason), (Open, TransitionReason::HalfOpenTimeout));
}

#[test]
fn open_duration_grows_exponentially_and_resets_after_close() {
    let b = breaker(cfg());
    let mut now = 0;
    assert_eq!(trip(&b, now).open_ms, Some(1_000));
    let mut seen = Vec::new();
    for _ in 0..5 {
        now += b.last_transition().and_then(|t| t.open_ms).expect("open");
        fail(&b, now);
        let t = fail(&b, now).expect("trials fail");
        seen.push(t.open_ms.expect("open"));
    }
    assert_eq!(
        seen,
        vec![2_000, 4_000, 8_000, 10_000, 10_000],
        "capped at open_ms_max"
    );
    assert_eq!(b.reopens(), 5);
    now += 10_000;
    ok(&b, now);
    ok(&b, now).expect("closes");
    assert_eq!(b.reopens(), 0);
    assert_eq!(
        trip(&b, now).open_ms,
        Some(1_000),
        "back to the base after a close"
    );
    assert_eq!(cfg().open_ms_for(u32::MAX), 10_000);
}

#[test]
fn retry_after_opens_for_exactly_that_long() {
    let b = breaker(cfg());
    let t = b.record_retry_after(7_321, 500).expect("applied");
    assert_eq!((t.from, t.to, t.open_ms), (Closed, Open, Some(7_321)));
    assert_eq!(
        b.try_acquire(7_820).err(),
        Some(NotPermitted::Open { retry_in_ms: 1 })
    );
    assert_eq!(
        b.try_acquire(7_821).expect("exactly then").state(),
        HalfOpen
    );
    // Re-arming while Open replaces the deadline, even with a shorter one.
    let b = breaker(cfg());
    trip(&b, 0);
    b.record_retry_after(10, 0).expect("applied");
    assert!(b.try_acquire(10).is_ok());
    // Capped by retry_after_ms_max.
    let b = breaker(cfg());
    let t = b.record_retry_after(u64::MAX, 1_000).expect("applied");
    assert_eq!(t.open_ms, Some(60_000));
    assert_eq!(
        b.try_acquire(1_000).err(),
        Some(NotPermitted::Open {
            retry_in_ms: 60_000
        })
    );
    // Operator states win.
    let b = breaker(cfg());
    b.force_open();
    assert_eq!(
        b.record_retry_after(5, 0),
        Err(RetryAfterError::AdminOverride { state: ForcedOpen })
    );
}

#[test]
fn forced_open_rejects_everything_until_close() {
    let b = breaker(cfg());
    let t = b.force_open().expect("transition");
    assert_eq!(
        (t.from, t.to, t.reason),
        (Closed, ForcedOpen, TransitionReason::Admin)
    );
    assert_eq!(b.force_open(), None, "already forced open");
    assert_eq!(b.state_code(), 3);
    for now in [0, 1_000_000, u64::MAX] {
        assert_eq!(b.try_acquire(now).err(), Some(NotPermitted::ForcedOpen));
    }
    assert_eq!(b.not_permitted_total(), 3);
    assert_eq!(b.close().map(|t| t.to), Some(Closed));
    assert!(b.try_acquire(0).is_ok());
    assert_eq!(b.close(), None, "already closed");
}

#[test]
fn disabled_permits_everything_and_never_trips() {
    let b = breaker(BreakerConfig {
        consecutive_failures_threshold: Some(1),
        ..cfg()
    });
    b.disable().expect("transition");
    assert_eq!(b.state_code(), 4);
    for i in 0..1_000 {
        assert_eq!(fail(&b, i), None);
    }
    assert_eq!(b.state(), Disabled);
    assert_eq!(b.window(0), WindowSnapshot::default(), "nothing recorded");
    assert!(b.record_retry_after(1_000, 0).is_err());
    b.close().expect("transition");
    assert_eq!(fail(&b, 0).map(|t| t.to), Some(Open));
}

#[test]
fn dropped_permit_frees_its_half_open_slot() {
    let b = breaker(cfg());
    trip(&b, 0);
    let p1 = b.try_acquire(1_000).expect("trial 1");
    let p2 = b.try_acquire(1_000).expect("trial 2");
    assert!(b.try_acquire(1_000).is_err());
    drop(p1); // cancelled: no result, slot back
    drop(p2);
    // K new calls can proceed, and only their results decide.
    let q1 = b.try_acquire(1_000).expect("slot freed");
    let q2 = b.try_acquire(1_000).expect("slot freed");
    assert!(matches!(
        b.try_acquire(1_000),
        Err(NotPermitted::HalfOpenFull { .. })
    ));
    q1.success(1, 1_001);
    assert_eq!(q2.success(1, 1_002).map(|t| t.to), Some(Closed));
    // An owned permit behaves the same.
    let b = Arc::new(breaker(cfg()));
    trip(&b, 0);
    let o = b.try_acquire_owned(1_000).expect("owned trial");
    let handle = std::thread::spawn(move || drop(o));
    handle.join().expect("thread");
    let o1 = b.try_acquire_owned(1_000).expect("slot freed");
    let o2 = b.try_acquire_owned(1_000).expect("slot freed");
    o1.failure(1, 1_000);
    assert_eq!(o2.failure(1, 1_000).map(|t| t.to), Some(Open));
}

#[test]
fn results_from_an_older_state_are_ignored() {
    let b = breaker(cfg());
    let stale = b.try_acquire(0).expect("closed");
    trip(&b, 0);
    assert_eq!(stale.failure(1, 0), None);
    let before_reset = b.try_acquire(0).err();
    assert!(before_reset.is_some());
    b.reset();
    let stale = b.try_acquire(0).expect("closed");
    b.reset();
    assert_eq!(stale.failure(1, 0), None);
    assert_eq!(b.window(0), WindowSnapshot::default());
    assert_eq!(b.transitions_total(Closed), 2);
}

#[test]
fn time_window_trips_only_on_recent_calls() {
    let b = breaker(BreakerConfig {
        window: SlidingWindow::Time { seconds: 2 },
        ..cfg()
    });
    fail(&b, 0);
    fail(&b, 100);
    fail(&b, 999);
    // Two seconds on, the first three have left the window.
    assert_eq!(fail(&b, 2_000), None);
    assert_eq!(b.window(2_000).calls, 1);
    fail(&b, 2_001);
    fail(&b, 2_500);
    assert_eq!(
        fail(&b, 3_999).map(|t| t.reason),
        Some(TransitionReason::FailureRate)
    );
}

#[test]
fn extreme_inputs_do_not_panic() {
    for window in [
        SlidingWindow::Count { calls: 1 },
        SlidingWindow::Time { seconds: 1 },
    ] {
        let b = breaker(BreakerConfig {
            window,
            minimum_calls: 1,
            half_open_permits: 1,
            ..cfg()
        });
        for now in [u64::MAX, 0, u64::MAX - 1, 1] {
            if let Ok(p) = b.try_acquire(now) {
                let _ = p.failure(u64::MAX, now);
            }
            let _ = b.record_retry_after(u64::MAX, now);
            let _ = b.poll(now);
            let _ = b.window(now);
        }
    }
    // An unchecked config cannot make the pure helpers panic either.
    let weird = BreakerConfig {
        open_ms_base: 10,
        open_ms_max: 1,
        open_multiplier: f64::NAN,
        ..cfg()
    };
    let _ = weird.open_ms_for(3);
    assert_eq!(BreakerState::from_code(9), None);
    for s in BreakerState::ALL {
        assert_eq!(BreakerState::from_code(s.code()), Some(s));
    }
}

/// Several threads hammer one breaker with a shared clock. Nothing panics,
/// HalfOpen never has more than K permits out per episode, and once quiet
/// the window's running totals equal its ring.
#[test]
fn threads_hammering_keep_the_invariants() {
    for window in [
        SlidingWindow::Count { calls: 64 },
        SlidingWindow::Time { seconds: 3 },
    ] {
        let k = 3u32;
        let b = Arc::new(breaker(BreakerConfig {
            window,
            minimum_calls: 8,
            half_open_permits: k,
            open_ms_base: 20,
            open_ms_max: 200,
            half_open_timeout_ms: 50,
            consecutive_failures_threshold: Some(5),
            ..cfg()
        }));
        let clock = Arc::new(AtomicU64::new(0));
        // Permits out per HalfOpen generation (keyed by the state word).
        let out: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
        let threads: Vec<_> = (0..8u64)
            .map(|seed| {
                let (b, clock, out) = (Arc::clone(&b), Arc::clone(&clock), Arc::clone(&out));
                std::thread::spawn(move || {
                    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..100_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let now = clock.fetch_add(x % 3, Relaxed);
                        let Ok(p) = b.try_acquire(now) else { continue };
                        let word = p.ticket.word;
                        if p.state() == HalfOpen {
                            let mut map = out.lock().expect("lock");
                            let n = map.entry(word).or_insert(0);
                            *n += 1;
                            assert!(*n <= k, "HalfOpen admitted {n} > K permits");
                        }
                        match x % 10 {
                            0..=3 => drop(p.failure(x % 1_500, now)),
                            4..=7 => drop(p.success(x % 1_500, now)),
                            _ => {
                                if p.state() == HalfOpen {
                                    // Release the count before the slot.
                                    *out.lock().expect("lock").entry(word).or_insert(1) -= 1;
                                }
                                drop(p);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no thread panicked");
        }
        let ho = HalfOpenCounts::unpack(b.half_open.0.load(Relaxed));
        assert!(ho.recorded <= ho.issued && ho.issued <= u64::from(k));
        let now = clock.load(Relaxed);
        let snap = b.window(now);
        assert_eq!(snap, b.window.recount(), "totals equal the ring once quiet");
        assert!(snap.failures <= snap.calls && snap.slow_calls <= snap.calls);
        let transitions: u64 = BreakerState::ALL
            .iter()
            .map(|s| b.transitions_total(*s))
            .sum();
        assert!(transitions > 0, "the load should have tripped the breaker");
        assert!(
            b.transitions_total(HalfOpen) > 0,
            "and probed it in HalfOpen"
        );
        assert!(b.not_permitted_total() > 0);
    }
}
