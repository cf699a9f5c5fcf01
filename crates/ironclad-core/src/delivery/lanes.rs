//! Lanes: the in-memory mirror of one sink's retry rows, indexed so the
//! dispatcher can ask "which lanes are blocked?" and "which lane heads are
//! due?" in O(log n).
//!
//! A lane is an ordering key (SPEC §4): the event's entity, or else its
//! stream. Events of a lane are delivered in position order, so while a lane
//! has a retry row, every later event of that lane waits behind it (it is
//! *parked*: a retry row with `attempts == 0`). Only the lane's head (its
//! lowest position) is ever eligible; other lanes are unaffected.
//!
//! Pure data structure, no I/O: property-tested against a naive model below.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::delivery::state::RetryRow;
use crate::model::RecordedEvent;

/// The ordering key of an event: `e:<entity>` when it has one, else
/// `s:<stream>`. The prefixes keep an entity named like a stream apart.
pub fn lane_of(event: &RecordedEvent) -> String {
    match &event.entity {
        Some(entity) => format!("e:{entity}"),
        None => format!("s:{}", event.stream),
    }
}

/// A sink's retry rows, by position, with per-lane order and a due index of
/// lane heads.
#[derive(Debug, Default, Clone)]
pub struct PendingRetries {
    rows: BTreeMap<u64, RetryRow>,
    lanes: HashMap<String, BTreeSet<u64>>,
    /// `(next_attempt_unix_ms, position)` of every lane's head.
    heads: BTreeSet<(u64, u64)>,
}

impl PendingRetries {
    /// Builds the index from rows loaded from the store.
    pub fn from_rows(rows: impl IntoIterator<Item = RetryRow>) -> Self {
        let mut p = PendingRetries::default();
        for r in rows {
            p.upsert(r);
        }
        p
    }

    /// Rows held (failed and parked).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row at `position`.
    pub fn get(&self, position: u64) -> Option<&RetryRow> {
        self.rows.get(&position)
    }

    /// Whether `lane` has any row, i.e. new events of it must park.
    pub fn is_blocked(&self, lane: &str) -> bool {
        self.lanes.contains_key(lane)
    }

    /// Lanes with at least one row.
    pub fn blocked_lanes(&self) -> usize {
        self.lanes.len()
    }

    fn head_of(&self, lane: &str) -> Option<u64> {
        self.lanes.get(lane).and_then(|s| s.first().copied())
    }

    fn head_key(&self, position: u64) -> Option<(u64, u64)> {
        self.rows
            .get(&position)
            .map(|r| (r.next_attempt_unix_ms, position))
    }

    /// Inserts or replaces the row at `row.position`.
    pub fn upsert(&mut self, row: RetryRow) {
        if self.rows.contains_key(&row.position) {
            self.remove(row.position);
        }
        let lane = row.lane.clone();
        let position = row.position;
        let old_head = self.head_of(&lane);
        self.rows.insert(position, row);
        self.lanes.entry(lane.clone()).or_default().insert(position);
        if old_head.is_none_or(|h| position < h) {
            if let Some(h) = old_head {
                if let Some(k) = self.head_key(h) {
                    self.heads.remove(&k);
                }
            }
            if let Some(k) = self.head_key(position) {
                self.heads.insert(k);
            }
        }
        debug_assert!(self.check());
    }

    /// Removes the row at `position`, if any, promoting the lane's next row
    /// to head.
    pub fn remove(&mut self, position: u64) -> Option<RetryRow> {
        let key = self.head_key(position)?;
        let row = self.rows.remove(&position)?;
        let was_head = self.heads.remove(&key);
        if let Some(set) = self.lanes.get_mut(&row.lane) {
            set.remove(&position);
            if set.is_empty() {
                self.lanes.remove(&row.lane);
            } else if was_head {
                if let Some(next) = set.first().copied() {
                    if let Some(k) = self.head_key(next) {
                        self.heads.insert(k);
                    }
                }
            }
        }
        debug_assert!(self.check());
        Some(row)
    }

    /// Rows eligible at `now_unix_ms`, in the order they should be sent:
    /// for each due lane head (earliest due first), that head and the rows
    /// behind it in its lane that are also due, stopping at the first one
    /// that is not. At most `limit` positions.
    pub fn due(&self, now_unix_ms: u64, limit: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for &(due, head) in &self.heads {
            if due > now_unix_ms || out.len() >= limit {
                break;
            }
            let Some(row) = self.rows.get(&head) else {
                continue;
            };
            let Some(lane) = self.lanes.get(&row.lane) else {
                continue;
            };
            for &p in lane {
                if out.len() >= limit {
                    break;
                }
                match self.rows.get(&p) {
                    Some(r) if r.next_attempt_unix_ms <= now_unix_ms => out.push(p),
                    _ => break,
                }
            }
        }
        out
    }

    /// The earliest time any lane head becomes due.
    pub fn next_due_unix_ms(&self) -> Option<u64> {
        self.heads.first().map(|&(due, _)| due)
    }

    /// Every row, by position.
    pub fn rows(&self) -> impl Iterator<Item = &RetryRow> {
        self.rows.values()
    }

    /// Internal consistency: every lane's head, and only heads, are indexed.
    fn check(&self) -> bool {
        let lane_rows: usize = self.lanes.values().map(BTreeSet::len).sum();
        lane_rows == self.rows.len()
            && self.heads.len() == self.lanes.len()
            && self.lanes.values().all(|set| {
                set.first()
                    .and_then(|&h| self.head_key(h))
                    .is_some_and(|k| self.heads.contains(&k))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(position: u64, lane: u8, due: u64) -> RetryRow {
        RetryRow {
            position,
            lane: format!("s:{lane}"),
            attempts: 1,
            first_failure_unix_ms: 0,
            next_attempt_unix_ms: due,
            last_error: String::new(),
        }
    }

    /// The naive model: scan every row.
    fn naive_due(rows: &BTreeMap<u64, RetryRow>, now: u64, limit: usize) -> Vec<u64> {
        let mut heads: Vec<(u64, u64)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in rows.values() {
            if seen.insert(r.lane.clone()) {
                heads.push((r.next_attempt_unix_ms, r.position));
            }
        }
        heads.sort();
        let mut out = Vec::new();
        for (due, head) in heads {
            if due > now || out.len() >= limit {
                break;
            }
            let lane = &rows[&head].lane;
            for r in rows.values().filter(|r| &r.lane == lane) {
                if out.len() >= limit || r.next_attempt_unix_ms > now {
                    break;
                }
                out.push(r.position);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn matches_the_naive_model(
            ops in proptest::collection::vec((any::<bool>(), 0u64..40, 0u8..5, 0u64..10), 1..200),
            now in 0u64..10,
            limit in 1usize..30,
        ) {
            let mut p = PendingRetries::default();
            let mut model = BTreeMap::new();
            for (insert, pos, lane, due) in ops {
                if insert {
                    // A position belongs to one lane forever, as an event does.
                    let lane = model.get(&pos).map_or(lane, |r: &RetryRow| {
                        r.lane[2..].parse::<u8>().unwrap_or(lane)
                    });
                    p.upsert(row(pos, lane, due));
                    model.insert(pos, row(pos, lane, due));
                } else {
                    prop_assert_eq!(p.remove(pos).is_some(), model.remove(&pos).is_some());
                }
                prop_assert!(p.check());
                prop_assert_eq!(p.len(), model.len());
                prop_assert_eq!(p.due(now, limit), naive_due(&model, now, limit));
            }
        }
    }

    #[test]
    fn a_blocked_lane_only_blocks_itself() {
        let mut p = PendingRetries::default();
        p.upsert(row(5, 1, 100));
        p.upsert(row(9, 1, 0)); // parked behind 5
        p.upsert(row(7, 2, 0));
        assert!(p.is_blocked("s:1") && p.is_blocked("s:2") && !p.is_blocked("s:3"));
        // Lane 1's head is not due, so 9 waits even though it is "due".
        assert_eq!(p.due(50, 10), vec![7]);
        assert_eq!(p.due(100, 10), vec![7, 5, 9]);
        p.remove(5);
        assert_eq!(p.due(50, 10), vec![7, 9]);
        assert_eq!(p.next_due_unix_ms(), Some(0));
    }
}
