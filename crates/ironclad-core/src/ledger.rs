//! Ledger verification (SPEC §3): a pure, streaming checker of the stream and
//! global hash chains. Feed it events in position order; it reports the first
//! mismatch. Reading the events is the caller's job.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hash::{event_hash, global_hash, EventFields};
use crate::model::{Hash, LedgerHead, RecordedEvent, StreamHead, ZERO_HASH};

/// Which link of the ledger failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// The stored event hash does not match its recomputed contents.
    EventHash,
    /// The stored `prev_hash` does not match the previous event's hash.
    PrevHash,
    /// The stored global hash does not match the recomputed global chain.
    GlobalHash,
    /// Stream versions are not 1, 2, 3, … (a gap or a repeat).
    VersionGap,
    /// Positions do not strictly increase.
    PositionOrder,
    /// The row names a hash version this build cannot compute.
    UnknownHashVersion,
    /// The `streams` table's head (version, hash) disagrees with the chain,
    /// or a stream in the chain has no head row.
    StreamHead,
    /// `--against`: the exported head position no longer exists (truncated).
    HeadMissing,
    /// `--against`: the event at the exported head has a different hash (rewritten).
    HeadMismatch,
    /// A column of the event's row holds another storage class than
    /// Ironclad writes (a TEXT payload rewritten as a BLOB): the row was
    /// edited outside Ironclad, even if its bytes still hash the same.
    ColumnType,
}

/// The first place where the ledger does not verify (also the `details`
/// of the API's `ledger_mismatch` error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerMismatch {
    /// What failed.
    pub kind: MismatchKind,
    /// Stream of the offending event (empty for `HeadMissing`).
    pub stream: String,
    /// Its version (0 for `HeadMissing`).
    pub version: u64,
    /// Its position.
    pub position: u64,
    /// The hash (or number, hex-encoded) that should be there.
    pub expected: String,
    /// The hash (or number) found.
    pub actual: String,
}

impl fmt::Display for LedgerMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ledger mismatch ({:?}) at stream {:?} version {} position {}: expected {}, found {}",
            self.kind, self.stream, self.version, self.position, self.expected, self.actual
        )
    }
}

/// Streaming verifier. Holds the last hash of every stream it has seen, so
/// memory is O(streams).
#[derive(Debug, Default)]
pub struct ChainVerifier {
    streams: HashMap<String, (u64, Hash)>,
    global: Option<(u64, Hash)>,
    check_global: bool,
    checked: u64,
    scratch: Vec<u8>,
}

impl ChainVerifier {
    /// A verifier of both the stream chains and the global chain. Events must
    /// be fed in position order starting at the first position.
    pub fn new() -> Self {
        ChainVerifier {
            check_global: true,
            ..Default::default()
        }
    }

    /// A verifier of one stream's chain only, fed in version order.
    pub fn stream_only() -> Self {
        ChainVerifier::default()
    }

    /// How many events have verified so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The global head after everything verified so far.
    pub fn head(&self) -> Option<LedgerHead> {
        self.global
            .map(|(position, hash)| LedgerHead { position, hash })
    }

    /// Checks a stored stream head (the `streams` table) against the chain
    /// verified so far. Call after every event of that stream was checked.
    pub fn check_stream_head(&self, head: &StreamHead) -> Result<(), LedgerMismatch> {
        let (version, hash) = self
            .streams
            .get(&head.stream)
            .copied()
            .unwrap_or((0, ZERO_HASH));
        if version == head.version && hash == head.hash {
            return Ok(());
        }
        Err(LedgerMismatch {
            kind: MismatchKind::StreamHead,
            stream: head.stream.clone(),
            version: head.version,
            position: 0,
            expected: format!("version {version} hash {}", hex::encode(hash)),
            actual: format!("version {} hash {}", head.version, hex::encode(head.hash)),
        })
    }

    /// The last verified version of `stream` (0 if unseen).
    pub fn stream_version(&self, stream: &str) -> u64 {
        self.streams.get(stream).map_or(0, |(v, _)| *v)
    }

    /// Streams seen in the chain, with their last verified version.
    pub fn streams(&self) -> impl Iterator<Item = (&str, u64)> {
        self.streams.iter().map(|(s, (v, _))| (s.as_str(), *v))
    }

    /// Verifies the next event.
    pub fn check(&mut self, ev: &RecordedEvent) -> Result<(), LedgerMismatch> {
        let mismatch = |kind, expected: String, actual: String| LedgerMismatch {
            kind,
            stream: ev.stream.clone(),
            version: ev.version,
            position: ev.position,
            expected,
            actual,
        };
        let (last_version, last_hash) = self
            .streams
            .get(&ev.stream)
            .copied()
            .unwrap_or((0, ZERO_HASH));
        if ev.version != last_version + 1 {
            return Err(mismatch(
                MismatchKind::VersionGap,
                (last_version + 1).to_string(),
                ev.version.to_string(),
            ));
        }
        if ev.prev_hash != last_hash {
            return Err(mismatch(
                MismatchKind::PrevHash,
                hex::encode(last_hash),
                hex::encode(ev.prev_hash),
            ));
        }
        let fields = EventFields {
            id: &ev.id,
            stream: &ev.stream,
            version: ev.version,
            position: ev.position,
            created_at_us: ev.created_at_us,
            event_type: &ev.event_type,
            op: ev.op,
            entity: ev.entity.as_deref(),
            payload: &ev.payload,
            metadata: &ev.metadata,
        };
        let recomputed =
            match event_hash(ev.hash_version, &ev.prev_hash, &fields, &mut self.scratch) {
                Ok(h) => h,
                Err(e) => {
                    return Err(mismatch(
                        MismatchKind::UnknownHashVersion,
                        crate::hash::HASH_VERSION.to_string(),
                        e.found.to_string(),
                    ))
                }
            };
        if recomputed != ev.hash {
            return Err(mismatch(
                MismatchKind::EventHash,
                hex::encode(recomputed),
                hex::encode(ev.hash),
            ));
        }
        if self.check_global {
            let (last_pos, last_global) = self.global.unwrap_or((0, ZERO_HASH));
            if ev.position <= last_pos {
                return Err(mismatch(
                    MismatchKind::PositionOrder,
                    format!("> {last_pos}"),
                    ev.position.to_string(),
                ));
            }
            // hash_version was accepted above, so this cannot fail.
            let g = global_hash(ev.hash_version, &last_global, ev.position, &ev.hash)
                .unwrap_or(ZERO_HASH);
            if g != ev.global_hash {
                return Err(mismatch(
                    MismatchKind::GlobalHash,
                    hex::encode(g),
                    hex::encode(ev.global_hash),
                ));
            }
            self.global = Some((ev.position, g));
        }
        self.streams
            .insert(ev.stream.clone(), (ev.version, ev.hash));
        self.checked += 1;
        Ok(())
    }
}

/// The mismatch for an event row whose `column` holds the storage class
/// `found` where Ironclad writes `expected`. The row could not be decoded,
/// so the stream and version are those that did decode (else empty and 0).
pub fn column_type_mismatch(
    stream: Option<&str>,
    version: Option<u64>,
    position: u64,
    column: &str,
    expected: &str,
    found: &str,
) -> LedgerMismatch {
    LedgerMismatch {
        kind: MismatchKind::ColumnType,
        stream: stream.unwrap_or_default().to_string(),
        version: version.unwrap_or(0),
        position,
        expected: format!("{column} stored as {expected}"),
        actual: format!("{column} stored as {found}"),
    }
}

/// Checks the event found at an exported head's position against that head.
/// `found` is the event at `head.position`, if any.
pub fn check_against_head(
    head: &LedgerHead,
    found: Option<&RecordedEvent>,
) -> Result<(), LedgerMismatch> {
    if head.position == 0 && head.hash == ZERO_HASH {
        return Ok(()); // the head of an empty log is a prefix of every log
    }
    match found {
        None => Err(LedgerMismatch {
            kind: MismatchKind::HeadMissing,
            stream: String::new(),
            version: 0,
            position: head.position,
            expected: hex::encode(head.hash),
            actual: "no event at this position (log truncated)".to_string(),
        }),
        Some(ev) if ev.global_hash != head.hash => Err(LedgerMismatch {
            kind: MismatchKind::HeadMismatch,
            stream: ev.stream.clone(),
            version: ev.version,
            position: ev.position,
            expected: hex::encode(head.hash),
            actual: hex::encode(ev.global_hash),
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_true_empty_head_is_a_prefix_of_everything() {
        let empty = LedgerHead {
            position: 0,
            hash: ZERO_HASH,
        };
        assert_eq!(check_against_head(&empty, None), Ok(()));
        let forged = LedgerHead {
            position: 0,
            hash: [7u8; 32],
        };
        let m = check_against_head(&forged, None).expect_err("a forged empty head");
        assert_eq!(m.kind, MismatchKind::HeadMissing);
    }
}
