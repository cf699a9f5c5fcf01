//! The contiguity rule of consumer checkpoints as a pure, bounded state
//! machine: [`AckTracker`]. The server keeps one per named consumer
//! (`ironclad_server::checkpoint`); the client keeps one over what it
//! delivered to its caller (`ironclad_client::realtime`).
//!
//! # Memory
//!
//! Only what blocks the checkpoint is held: one entry per sent position
//! that is not yet acknowledged (a "gap"). Acknowledged positions above a
//! gap cost nothing, so a consumer that leaves one event unacknowledged
//! while acknowledging millions after it holds one entry, not millions
//! (the first design held one per sent event, 16 B each, without bound).
//!
//! # The window
//!
//! Holding an event unacknowledged still has a cost: every event sent
//! after it is delivered again if the session restarts from the
//! checkpoint. So the tracker has a window: at most `window_events` events
//! may be sent from the oldest unacknowledged one on (that one included,
//! acknowledged or not). [`AckTracker::sent`] refuses the next one with
//! [`AckWindowFull`], and the subscription closes the session with its
//! message. The window also bounds the gaps: there are never more gaps
//! than events in the window.

use std::collections::BTreeMap;

/// What an acknowledgement did to an [`AckTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The checkpoint moved forward (to the value inside).
    Advanced(u64),
    /// Recorded; the checkpoint waits for an earlier sent position.
    Held,
    /// Nothing to do: at or below the checkpoint, already acknowledged, or
    /// never sent to this consumer.
    Ignored,
}

/// The window is full: one more send would put more than `window` events
/// behind the oldest unacknowledged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ack window full: position {oldest} is unacknowledged and {window} events were sent from it on; acknowledge every event (reconnecting resumes after position {checkpoint})")]
pub struct AckWindowFull {
    /// The oldest unacknowledged position.
    pub oldest: u64,
    /// The window, events.
    pub window: usize,
    /// The checkpoint, which the gap holds back.
    pub checkpoint: u64,
}

/// One sent, unacknowledged position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    /// The position recorded (sent, scanned or the start) just before it:
    /// once every earlier gap is acknowledged, the checkpoint.
    before: u64,
    /// Its number among the sends (from 1), to measure the window.
    ordinal: u64,
}

/// The checkpoint is the highest position `P` among the start and the
/// positions sent or scanned such that every position sent at or below
/// `P` has been acknowledged. Memory is one entry per unacknowledged sent
/// position, at most `window_events` of them (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckTracker {
    checkpoint: u64,
    /// The last position recorded (sent or scanned), at least the checkpoint.
    last: u64,
    /// Sent positions not yet acknowledged, above the checkpoint.
    gaps: BTreeMap<u64, Gap>,
    /// Sends recorded so far.
    sends: u64,
    window_events: usize,
}

impl Default for AckTracker {
    fn default() -> Self {
        AckTracker::new(0)
    }
}

impl AckTracker {
    /// A tracker whose checkpoint starts at `checkpoint`, with no window
    /// (for callers that bound sends themselves).
    pub fn new(checkpoint: u64) -> Self {
        AckTracker::with_window(checkpoint, usize::MAX)
    }

    /// A tracker whose checkpoint starts at `checkpoint` and that refuses
    /// to record more than `window_events` sends from the oldest
    /// unacknowledged one on (at least 1).
    pub fn with_window(checkpoint: u64, window_events: usize) -> Self {
        AckTracker {
            checkpoint,
            last: checkpoint,
            gaps: BTreeMap::new(),
            sends: 0,
            window_events: window_events.max(1),
        }
    }

    /// The current checkpoint.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Entries held: sent positions not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.gaps.len()
    }

    /// Events sent from the oldest unacknowledged one on (0 when all are
    /// acknowledged): what a restart from the checkpoint sends again.
    pub fn held_events(&self) -> u64 {
        self.gaps
            .values()
            .next()
            .map_or(0, |g| self.sends - g.ordinal + 1)
    }

    /// How many more sends the window admits now.
    pub fn window_room(&self) -> usize {
        let held = usize::try_from(self.held_events()).unwrap_or(usize::MAX);
        self.window_events.saturating_sub(held)
    }

    /// Why the window admits no more sends, if it does not.
    pub fn window_full(&self) -> Option<AckWindowFull> {
        let (&oldest, _) = self.gaps.iter().next()?;
        (self.window_room() == 0).then_some(AckWindowFull {
            oldest,
            window: self.window_events,
            checkpoint: self.checkpoint,
        })
    }

    /// Whether `position`, recorded or skipped, needs no acknowledgement
    /// any more (at or below the checkpoint, or recorded and acknowledged).
    pub fn is_acknowledged(&self, position: u64) -> bool {
        position <= self.checkpoint || (position <= self.last && !self.gaps.contains_key(&position))
    }

    /// Records that `position` was sent. Positions must be sent in
    /// increasing order; one at or below the last recorded is ignored
    /// (`Ok(false)`). Refused, and not recorded, when the window is full.
    pub fn sent(&mut self, position: u64) -> Result<bool, AckWindowFull> {
        if position <= self.last {
            return Ok(false);
        }
        if let Some(full) = self.window_full() {
            return Err(full);
        }
        self.sends += 1;
        self.gaps.insert(
            position,
            Gap {
                before: self.last,
                ordinal: self.sends,
            },
        );
        self.last = position;
        Ok(true)
    }

    /// Records that every position up to `through` that was not sent was
    /// read and filtered out, so it needs no acknowledgement.
    pub fn scanned(&mut self, through: u64) -> AckOutcome {
        if through <= self.last {
            return AckOutcome::Ignored;
        }
        self.last = through;
        self.advance()
    }

    /// Acknowledges one sent position.
    pub fn ack(&mut self, position: u64) -> AckOutcome {
        if position <= self.checkpoint || self.gaps.remove(&position).is_none() {
            return AckOutcome::Ignored;
        }
        self.advance()
    }

    /// Acknowledges everything up to `position` at once (the polling path's
    /// cumulative acknowledgement).
    pub fn ack_through(&mut self, position: u64) -> AckOutcome {
        if position <= self.checkpoint {
            return AckOutcome::Ignored;
        }
        // Everything above `position` stays; what is at or below goes.
        let above = self.gaps.split_off(&position.saturating_add(1));
        self.gaps = above;
        self.checkpoint = position;
        self.last = self.last.max(position);
        self.advance();
        AckOutcome::Advanced(self.checkpoint)
    }

    /// Moves the checkpoint to just before the oldest gap, or to the last
    /// recorded position when there is none.
    fn advance(&mut self) -> AckOutcome {
        let reach = self.gaps.values().next().map_or(self.last, |g| g.before);
        if reach > self.checkpoint {
            self.checkpoint = reach;
            AckOutcome::Advanced(reach)
        } else {
            AckOutcome::Held
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The rule, by brute force: the highest `P` in {start} ∪ settled
    /// positions such that every sent position ≤ `P` is acknowledged.
    fn reference(start: u64, sent: &[u64], acked: &BTreeSet<u64>, scanned: &[u64]) -> u64 {
        let mut candidates: Vec<u64> = sent.to_vec();
        candidates.push(start);
        candidates.extend_from_slice(scanned);
        candidates
            .into_iter()
            .filter(|&p| p >= start)
            .filter(|&p| sent.iter().all(|s| *s > p || acked.contains(s)))
            .max()
            .unwrap_or(start)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Send(u64),
        Ack(usize),
        Scan(u64),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                (1u64..4).prop_map(Op::Send),
                (0usize..64).prop_map(Op::Ack),
                (0u64..4).prop_map(Op::Scan),
            ],
            0..80,
        )
    }

    proptest! {
        /// The tracker equals the brute-force rule after every step, never
        /// moves backwards, holds exactly the unacknowledged sends, and
        /// refuses a send exactly when the window would overflow.
        #[test]
        fn checkpoint_is_the_contiguous_acknowledged_prefix(
            start in 0u64..5,
            window in 1usize..12,
            ops in ops(),
        ) {
            let mut t = AckTracker::with_window(start, window);
            let mut sent: Vec<u64> = Vec::new();
            let mut acked = BTreeSet::new();
            let mut last = start;
            let mut scanned = Vec::new();
            for op in ops {
                let before = t.checkpoint();
                match op {
                    Op::Send(gap) => {
                        let oldest = sent.iter().position(|p| !acked.contains(p));
                        let held = oldest.map_or(0, |i| sent.len() - i);
                        let got = t.sent(last + gap);
                        prop_assert_eq!(got.is_err(), held >= window, "held {}", held);
                        if got.is_ok() {
                            last += gap;
                            sent.push(last);
                        }
                    }
                    Op::Ack(i) => {
                        if let Some(&p) = sent.get(i) {
                            t.ack(p);
                            acked.insert(p);
                        } else {
                            // A position never sent changes nothing.
                            prop_assert_eq!(t.ack(last + 1 + i as u64), AckOutcome::Ignored);
                        }
                    }
                    Op::Scan(gap) => {
                        // Filtered-out positions after everything sent.
                        last += gap;
                        scanned.push(last);
                        t.scanned(last);
                    }
                }
                prop_assert!(t.checkpoint() >= before, "moved backwards");
                prop_assert_eq!(t.checkpoint(), reference(start, &sent, &acked, &scanned));
                let unacked = sent.iter().filter(|p| !acked.contains(p)).count();
                prop_assert_eq!(t.pending(), unacked);
                prop_assert!(t.held_events() <= window as u64);
            }
        }

        /// Cumulative acknowledgement: never backwards, and at least `p`.
        #[test]
        fn ack_through_is_monotonic(start in 0u64..50, ps in prop::collection::vec(0u64..100, 0..20)) {
            let mut t = AckTracker::new(start);
            let mut expect = start;
            for p in ps {
                t.ack_through(p);
                expect = expect.max(p);
                prop_assert_eq!(t.checkpoint(), expect);
            }
        }
    }

    #[test]
    fn out_of_order_acks_advance_only_when_contiguous() {
        let mut t = AckTracker::new(0);
        for p in [1, 2, 3] {
            assert_eq!(t.sent(p), Ok(true));
        }
        assert_eq!(t.ack(3), AckOutcome::Held);
        assert_eq!(t.checkpoint(), 0);
        assert_eq!(t.ack(1), AckOutcome::Advanced(1));
        assert_eq!(t.ack(2), AckOutcome::Advanced(3));
        assert_eq!(t.ack(2), AckOutcome::Ignored, "duplicate");
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn filtered_gaps_are_crossed_once_everything_sent_is_acked() {
        let mut t = AckTracker::new(0);
        assert_eq!(t.sent(2), Ok(true));
        assert_eq!(t.sent(5), Ok(true));
        assert_eq!(t.scanned(9), AckOutcome::Held);
        assert_eq!(t.ack(5), AckOutcome::Held);
        assert_eq!(t.ack(4), AckOutcome::Ignored, "never sent");
        assert_eq!(t.ack(2), AckOutcome::Advanced(9));
        assert_eq!(t.sent(9), Ok(false), "sends must be increasing");
    }

    /// Five million events sent and acknowledged behind one that never is:
    /// the tracker holds one entry (not five million), and at a window it
    /// refuses the next send naming the gap, without recording it.
    #[test]
    fn millions_behind_one_gap_stay_bounded_and_the_window_refuses_clearly() {
        const EVENTS: u64 = 5_000_000;
        let mut t = AckTracker::new(0);
        for p in 1..=EVENTS {
            assert_eq!(t.sent(p), Ok(true));
            if p != 7 {
                t.ack(p);
            }
        }
        assert_eq!((t.pending(), t.checkpoint()), (1, 6));
        assert_eq!(t.held_events(), EVENTS - 6);
        assert_eq!(t.ack(7), AckOutcome::Advanced(EVENTS));
        assert_eq!(t.pending(), 0);

        let window = 100_000;
        let mut w = AckTracker::with_window(0, window);
        let mut refused = None;
        for p in 1..=EVENTS {
            match w.sent(p) {
                Ok(_) => {
                    if p != 3 {
                        w.ack(p);
                    }
                }
                Err(full) => {
                    refused = Some((p, full));
                    break;
                }
            }
        }
        let (at, full) = refused.expect("the window refuses");
        assert_eq!(at, 3 + window as u64, "refused right after the window");
        assert_eq!(
            full,
            AckWindowFull {
                oldest: 3,
                window,
                checkpoint: 2
            }
        );
        assert!(
            full.to_string().starts_with("ack window full: position 3"),
            "{full}"
        );
        assert_eq!(w.pending(), 1);
        assert_eq!(w.sent(at), Err(full), "still refused, nothing recorded");
        assert_eq!(w.ack(3), AckOutcome::Advanced(at - 1));
        assert_eq!(w.window_room(), window);
        assert_eq!(
            w.sent(at),
            Ok(true),
            "room again once the gap is acknowledged"
        );
    }

    /// Many gaps are bounded by the window too.
    #[test]
    fn gaps_never_outnumber_the_window() {
        let mut t = AckTracker::with_window(0, 1_000);
        let mut p = 0;
        while t.sent(p + 1).is_ok() {
            p += 1;
        }
        assert_eq!((t.pending(), p), (1_000, 1_000));
        assert!(t.window_full().is_some());
    }
}
