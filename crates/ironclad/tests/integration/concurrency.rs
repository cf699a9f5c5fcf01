//! Guards group commit under contention (SPEC §2): 64 producer tasks on a
//! multi-thread runtime append 128,000 events over 16 streams with the
//! default fsync durability. Every acknowledged event must be readable by id
//! with exactly the acknowledged version and position; versions are
//! contiguous per stream; ids and positions are unique and positions
//! strictly increase; each producer's own appends land in the order it made
//! them; the ledger verifies all 128,000 events. All of it must still hold
//! after shutdown and reopen.

use crate::common;

use std::collections::HashMap;

use ironclad::{AppendStatus, EventAck, ExpectedVersion, NewEvent, VerifyOptions};
use uuid::Uuid;

const PRODUCERS: usize = 64;
const EVENTS_PER_PRODUCER: usize = 2_000;
const STREAMS: usize = 16;
const TOTAL: usize = PRODUCERS * EVENTS_PER_PRODUCER;

/// One acknowledged event, as the producer saw it.
#[derive(Debug, Clone)]
struct Acked {
    producer: usize,
    seq: usize,
    stream: String,
    ack: EventAck,
}

async fn produce(journal: ironclad::Journal, producer: usize) -> Vec<Acked> {
    let stream = format!("stream-{:02}", producer % STREAMS);
    let mut acked = Vec::with_capacity(EVENTS_PER_PRODUCER);
    let mut seq = 0usize;
    while seq < EVENTS_PER_PRODUCER {
        // Appends of 1..=4 events, varied per producer so batches mix sizes.
        let n = (1 + (producer + seq) % 4).min(EVENTS_PER_PRODUCER - seq);
        let events: Vec<NewEvent> = (0..n)
            .map(|i| {
                let payload = serde_json::json!({ "producer": producer, "seq": seq + i });
                NewEvent::from_value("load.tick", &payload).with_id(Uuid::new_v4())
            })
            .collect();
        let ids: Vec<Uuid> = events.iter().map(|e| e.id.unwrap()).collect();
        let result = journal
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap_or_else(|e| panic!("producer {producer} append failed: {e}"));
        assert_eq!(result.status, AppendStatus::Appended);
        assert_eq!(result.events.len(), n);
        for (i, ack) in result.events.iter().enumerate() {
            assert_eq!(ack.id, ids[i], "acks come in the order given");
            if i > 0 {
                let prev = &result.events[i - 1];
                assert_eq!(
                    ack.version,
                    prev.version + 1,
                    "one append is contiguous in its stream"
                );
                assert!(ack.position > prev.position);
            }
            acked.push(Acked {
                producer,
                seq: seq + i,
                stream: stream.clone(),
                ack: *ack,
            });
        }
        seq += n;
    }
    acked
}

fn check_against_acks(journal: &ironclad::Journal, acked: &[Acked]) {
    let events = common::read_everything(journal);
    assert_eq!(
        events.len(),
        TOTAL,
        "exactly the acknowledged events are stored"
    );
    let summary = common::check_log_structure(&events);
    assert_eq!(summary.stream_versions.len(), STREAMS);
    let per_stream = TOTAL / STREAMS;
    for (stream, v) in &summary.stream_versions {
        assert_eq!(
            *v as usize, per_stream,
            "stream {stream:?} holds every acked event"
        );
    }
    common::check_stream_heads(journal, &summary);
    for a in acked {
        let (stream, version, position) = summary.by_id.get(&a.ack.id).unwrap_or_else(|| {
            panic!(
                "acked event {} (producer {}) is missing",
                a.ack.id, a.producer
            )
        });
        assert_eq!(stream, &a.stream);
        assert_eq!(*version, a.ack.version, "version of {}", a.ack.id);
        assert_eq!(*position, a.ack.position, "position of {}", a.ack.id);
    }
    // The payload of each event is the one its producer wrote.
    let by_position: HashMap<u64, &ironclad::RecordedEvent> =
        events.iter().map(|e| (e.position, e)).collect();
    for a in acked.iter().step_by(97) {
        let ev = by_position[&a.ack.position];
        let payload: serde_json::Value = serde_json::from_str(&ev.payload).unwrap();
        assert_eq!(payload["producer"], a.producer);
        assert_eq!(payload["seq"], a.seq);
    }
    let mut progress = Vec::new();
    let report = journal
        .verify(&VerifyOptions::default(), &mut |n| progress.push(n))
        .unwrap_or_else(|e| panic!("ledger does not verify: {e}"));
    assert_eq!(report.checked, TOTAL as u64);
    assert!(
        progress.len() > 1,
        "a log this size verifies in several pages"
    );
    assert!(progress.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(progress.last().copied(), Some(TOTAL as u64));
    let head = journal
        .ledger_head()
        .unwrap()
        .expect("non-empty log has a head");
    assert_eq!(report.head, Some(head));
    assert_eq!(head.position, events.last().unwrap().position);
    // One stream's chain on its own (also more than one page).
    let one = VerifyOptions {
        stream: Some("stream-07".into()),
        against: None,
    };
    assert_eq!(
        journal.verify(&one, &mut |_| {}).unwrap().checked,
        per_stream as u64
    );
    // A head pins the global chain, so it cannot be checked stream-only.
    let pinned_one = VerifyOptions {
        stream: Some("stream-07".into()),
        against: Some(head),
    };
    assert!(matches!(
        journal.verify(&pinned_one, &mut |_| {}),
        Err(ironclad::VerifyError::Usage(_))
    ));
    let listed = journal.list_streams("", 100).unwrap();
    let names: Vec<&str> = listed.iter().map(|h| h.stream.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "list_streams is sorted by name");
    assert_eq!(listed.len(), STREAMS);
    assert!(listed.iter().all(|h| h.version as usize == per_stream));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_producers_every_ack_is_durable_and_ordered() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::config(&dir));
    assert_eq!(journal.config().durability, ironclad::Durability::Fsync);

    let mut tasks = Vec::with_capacity(PRODUCERS);
    for p in 0..PRODUCERS {
        tasks.push(tokio::spawn(produce(journal.clone(), p)));
    }
    let mut acked = Vec::with_capacity(TOTAL);
    for t in tasks {
        acked.extend(t.await.expect("producer task panicked"));
    }
    assert_eq!(acked.len(), TOTAL);

    // Each producer awaited every append before the next, so its own events
    // must appear in the order it made them, in its stream and globally.
    let mut by_producer: HashMap<usize, Vec<&Acked>> = HashMap::new();
    for a in &acked {
        by_producer.entry(a.producer).or_default().push(a);
    }
    for (p, list) in &by_producer {
        assert_eq!(list.len(), EVENTS_PER_PRODUCER);
        for w in list.windows(2) {
            assert!(w[0].seq < w[1].seq);
            assert!(
                w[0].ack.position < w[1].ack.position,
                "producer {p} reordered globally"
            );
            assert!(
                w[0].ack.version < w[1].ack.version,
                "producer {p} reordered in its stream"
            );
        }
    }

    let head_before = {
        let j = journal.clone();
        let acked = acked.clone();
        tokio::task::spawn_blocking(move || {
            check_against_acks(&j, &acked);
            j.ledger_head().unwrap()
        })
        .await
        .unwrap()
    };

    common::shutdown(&journal).await;
    drop(journal);

    let reopened = common::open(common::config(&dir));
    let head_after = {
        let j = reopened.clone();
        tokio::task::spawn_blocking(move || {
            check_against_acks(&j, &acked);
            j.ledger_head().unwrap()
        })
        .await
        .unwrap()
    };
    assert_eq!(
        head_before, head_after,
        "reopen must not change the ledger head"
    );

    // The reopened writer continues each stream where it left off.
    let r = reopened
        .append(
            "stream-00",
            ExpectedVersion::Exact((TOTAL / STREAMS) as u64),
            vec![NewEvent::new("after.reopen", "{}")],
        )
        .await
        .expect("append after reopen");
    assert_eq!(r.events[0].version, (TOTAL / STREAMS) as u64 + 1);
    assert_eq!(r.events[0].position, head_after.unwrap().position + 1);
    common::shutdown(&reopened).await;
}
