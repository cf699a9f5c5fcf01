//! Conservation checks for delivery tests: every event a sink's routes match
//! is in exactly one state (pending, delivered, dead-lettered), and the
//! counts add up: appended = delivered + dead-lettered + pending.

use std::collections::{BTreeMap, HashSet};

use ironclad::delivery::routes::Routes;
use ironclad::store::delivery::DlqFilter;
use ironclad::store::Store;
use ironclad::{LogReader, RecordedEvent};
use uuid::Uuid;

/// Where each matching event stands for one sink.
#[derive(Debug, Default, Clone)]
pub struct Accounting {
    /// Events the sink's routes match.
    pub appended: u64,
    /// Delivered according to the sink's independent `delivered_total`.
    pub delivered_total: u64,
    /// Delivered by elimination (≤ cursor, no retry row, no DLQ row).
    pub delivered: HashSet<Uuid>,
    /// Dead letters in the store.
    pub dead: HashSet<Uuid>,
    /// Dead letters archived.
    pub archived: u64,
    /// Pending: retry rows plus events beyond the cursor.
    pub pending: HashSet<Uuid>,
    /// Retry rows that failed at least once.
    pub retrying: u64,
}

/// Computes and checks the accounting of `sink`. Panics with a clear
/// message when an event is in two states or the counts do not add up.
pub fn check<S: Store>(reader: &LogReader<S>, routes: &Routes, sink: &str) -> Accounting {
    let store = reader.store();
    let events: Vec<RecordedEvent> = super::read_everything(reader)
        .into_iter()
        .filter(|e| routes.matches(sink, &e.stream))
        .collect();
    let Some(row) = store
        .sinks()
        .expect("sinks")
        .into_iter()
        .find(|s| s.name == sink)
    else {
        // Never started: everything is pending.
        return Accounting {
            appended: events.len() as u64,
            pending: events.iter().map(|e| e.id).collect(),
            ..Accounting::default()
        };
    };
    let retries: BTreeMap<u64, u32> = store
        .retry_rows(row.sink_id, 0, usize::MAX / 2)
        .expect("retry rows")
        .into_iter()
        .map(|r| (r.position, r.attempts))
        .collect();
    let filter = DlqFilter {
        sink_id: Some(row.sink_id),
        ..DlqFilter::default()
    };
    let dlq: BTreeMap<u64, Uuid> = store
        .dlq_list(&filter, None, usize::MAX / 2)
        .expect("dlq")
        .into_iter()
        .map(|d| (d.position, d.event_id))
        .collect();
    let mut acc = Accounting {
        appended: events.len() as u64,
        delivered_total: row.delivered_total,
        archived: row.archived_total,
        retrying: retries.values().filter(|a| **a > 0).count() as u64,
        ..Accounting::default()
    };
    for (p, _) in retries.iter() {
        assert!(
            *p <= row.cursor_position,
            "retry row at {p} is beyond the cursor {}",
            row.cursor_position
        );
        assert!(
            !dlq.contains_key(p),
            "event at {p} is both retrying and dead-lettered"
        );
    }
    let positions: HashSet<u64> = events.iter().map(|e| e.position).collect();
    for p in retries.keys().chain(dlq.keys()) {
        assert!(
            positions.contains(p),
            "a delivery row at {p} names no matching event"
        );
    }
    for e in &events {
        if let Some(id) = dlq.get(&e.position) {
            assert_eq!(
                *id, e.id,
                "dlq row at {} has the wrong event id",
                e.position
            );
            acc.dead.insert(e.id);
        } else if retries.contains_key(&e.position) || e.position > row.cursor_position {
            acc.pending.insert(e.id);
        } else {
            acc.delivered.insert(e.id);
        }
    }
    // By elimination, archived dead letters look delivered (≤ cursor, no
    // rows): the derived set must equal the independent counter plus them.
    assert_eq!(
        acc.delivered.len() as u64,
        acc.delivered_total + acc.archived,
        "sink {sink}: delivered by elimination ({} + {} archived) disagrees with delivered_total {}",
        acc.delivered.len(),
        acc.archived,
        acc.delivered_total
    );
    assert_eq!(
        acc.appended,
        acc.delivered_total + acc.dead.len() as u64 + acc.archived + acc.pending.len() as u64,
        "sink {sink}: appended != delivered + dead-lettered + archived + pending: {acc:?}"
    );
    acc
}

impl Accounting {
    /// Dead-lettered, in the store or archived.
    pub fn dead_lettered(&self) -> u64 {
        self.dead.len() as u64 + self.archived
    }
}
