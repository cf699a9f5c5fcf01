//! Criterion micro-benchmark for the circuit breaker's hot path: one
//! uncontended allow-and-record (`try_acquire` + `success`) in Closed state,
//! next to the same operation on the `failsafe` crate's breaker
//! (`is_call_permitted` + `on_success`), in one group so the ratio can be read
//! off directly.
//! Run: `cargo bench -p ironclad --bench breaker -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ironclad::delivery::breaker::{BreakerConfig, CircuitBreaker, SlidingWindow};

fn ours(window: SlidingWindow) -> CircuitBreaker {
    let config = BreakerConfig {
        window,
        ..BreakerConfig::default()
    };
    match CircuitBreaker::new(config) {
        Ok(b) => b,
        Err(e) => panic!("bench config rejected: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker_allow_and_record");

    // Count window: the clock does not matter, so it stays fixed.
    let count = ours(SlidingWindow::Count { calls: 100 });
    group.bench_function("ironclad/count_window", |b| {
        b.iter(|| match count.try_acquire(black_box(1_000)) {
            Ok(p) => p.success(black_box(3), 1_000),
            Err(_) => None,
        })
    });

    // Time window: the clock advances 1 ms per call, so a bucket rotates
    // every 1000 calls, as it would at 1000 calls per second.
    let time = ours(SlidingWindow::Time { seconds: 60 });
    let mut now = 0u64;
    group.bench_function("ironclad/time_window", |b| {
        b.iter(|| {
            now += 1;
            match time.try_acquire(black_box(now)) {
                Ok(p) => p.success(black_box(3), now),
                Err(_) => None,
            }
        })
    });

    // failsafe's default: success rate over a time window or consecutive
    // failures, with its own clock reads and a mutex around the state.
    let theirs = failsafe::Config::new().build();
    group.bench_function("failsafe/default", |b| {
        b.iter(|| {
            if black_box(&theirs).is_call_permitted() {
                theirs.on_success();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
