//! Criterion micro-benchmarks for the pure per-event work on the append path:
//! canonical encoding, the stream and global hashes, and input validation.
//! Run: `cargo bench -p ironclad --bench hashing`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ironclad::hash::{canonical_bytes, event_hash, global_hash, EventFields, HASH_VERSION};
use ironclad::model::ZERO_HASH;
use ironclad::validate::{validate_append, Limits};
use ironclad::{NewEvent, Op};
use uuid::Uuid;

fn payload(bytes: usize) -> String {
    format!(r#"{{"pad":"{}"}}"#, "x".repeat(bytes.saturating_sub(10)))
}

fn bench(c: &mut Criterion) {
    let id = Uuid::now_v7();
    let md = BTreeMap::from([("source".to_string(), "bench".to_string())]);
    let mut group = c.benchmark_group("per_event");
    for size in [64usize, 256, 4096] {
        let body = payload(size);
        let fields = EventFields {
            id: &id,
            stream: "orders-42",
            version: 7,
            position: 1_000_007,
            created_at_us: 1_700_000_000_000_000,
            event_type: "order.placed",
            op: Op::Create,
            entity: Some("order-42"),
            payload: &body,
            metadata: &md,
        };
        group.throughput(Throughput::Bytes(size as u64));
        let mut scratch = Vec::with_capacity(8192);
        group.bench_with_input(
            BenchmarkId::new("canonical_bytes", size),
            &fields,
            |b, f| b.iter(|| canonical_bytes(black_box(f), &mut scratch)),
        );
        group.bench_with_input(BenchmarkId::new("event_hash", size), &fields, |b, f| {
            b.iter(|| event_hash(HASH_VERSION, &ZERO_HASH, black_box(f), &mut scratch))
        });
        group.bench_with_input(
            BenchmarkId::new("event_and_global_hash", size),
            &fields,
            |b, f| {
                b.iter(|| {
                    let h = event_hash(HASH_VERSION, &ZERO_HASH, black_box(f), &mut scratch)
                        .unwrap_or(ZERO_HASH);
                    global_hash(HASH_VERSION, &ZERO_HASH, f.position, &h)
                })
            },
        );
        let events = vec![NewEvent::new("order.placed", body.clone())];
        let limits = Limits::default();
        group.bench_with_input(
            BenchmarkId::new("validate_append", size),
            &events,
            |b, e| b.iter(|| validate_append("orders-42", black_box(e), &limits)),
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
