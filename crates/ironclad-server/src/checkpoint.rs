//! Named consumer checkpoints (SPEC §6 "Subscriptions"): one batching
//! worker task persists them, a checkpoint only moves forward, and it
//! advances only through contiguous acknowledgements.
//!
//! # The rule
//!
//! A subscription sends a consumer events in position order and tells the
//! worker which positions it sent ([`Checkpoints::sent`]). Positions are
//! globally increasing but, with a stream filter, not contiguous per
//! consumer. The consumer acknowledges positions in any order. Its
//! checkpoint is the highest position `P` such that **every position sent
//! to it at or below `P` has been acknowledged** ([`AckTracker`], a pure
//! state machine with a property test, holding only the unacknowledged
//! positions, within a window). Positions the subscription read
//! and filtered out count as acknowledged: they are reported with
//! [`Checkpoints::sent`]'s `scanned_to`, so a consumer of a quiet stream
//! does not rescan the whole log after a restart. A session that starts
//! after an explicit `from` beyond the checkpoint likewise treats the
//! positions it skipped as handled.
//!
//! # Batching
//!
//! One worker task ([`Checkpoints::start`]) receives every `sent` and `ack`
//! over one bounded channel and writes the checkpoints that moved, all in
//! one transaction through the journal's single writer
//! (`StateWrite::SetCheckpoints`), at most every `flush_interval` or
//! after `flush_acks` acknowledgements, whichever comes first. The store
//! ignores an update that is not ahead of the stored position, so even a
//! stale write cannot move a checkpoint backwards. Acknowledgements not yet
//! flushed when the process dies are lost: the consumer is then sent those
//! events again (at-least-once), never fewer.
//!
//! # Sessions
//!
//! A consumer has at most one live subscription: opening a second one
//! evicts the first (its socket is closed with a reason), so two sessions
//! never interleave their sent sequences. Memory is bounded: at most
//! `consumers_max` consumers are tracked at once, a session stops
//! reading new events while `unacked_max` of the events it sent are
//! unacknowledged, and it is closed when `ack_window_events` events were
//! sent from its oldest unacknowledged one on (see `handlers::subscribe`).

pub use ironclad_core::ack::{AckOutcome, AckTracker, AckWindowFull};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ironclad::store::delivery::{CheckpointUpdate, StateWrite, CONSUMER_NAME_BYTES_MAX};
use ironclad::Journal;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Checks a consumer name: 1 to [`CONSUMER_NAME_BYTES_MAX`] characters of
/// `[A-Za-z0-9_.-]`. The error says what is wrong.
pub fn validate_consumer_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the consumer name is empty: use 1 to 128 characters of [A-Za-z0-9_.-]".into());
    }
    if name.len() > CONSUMER_NAME_BYTES_MAX {
        return Err(format!(
            "the consumer name is {} bytes, more than {CONSUMER_NAME_BYTES_MAX}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "the consumer name contains {c:?}: use only [A-Za-z0-9_.-]"
        ));
    }
    Ok(())
}

/// Settings of the checkpoint worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// Longest time a moved checkpoint waits before it is written.
    pub flush_interval: Duration,
    /// Acknowledgements that trigger a write before the interval is up.
    pub flush_acks: usize,
    /// Capacity of the worker's channel (messages).
    pub channel_capacity: usize,
    /// Most consumers tracked at once.
    pub consumers_max: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            flush_interval: Duration::from_millis(200),
            flush_acks: 1_000,
            channel_capacity: 4_096,
            consumers_max: 10_000,
        }
    }
}

/// Most checkpoints one write carries (well under the store's row limit).
const UPDATES_PER_WRITE_MAX: usize = 10_000;

/// Why the worker refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// `consumers_max` consumers are already tracked.
    #[error("{0} consumers are already being tracked: retry later")]
    TooManyConsumers(usize),
    /// The worker has stopped (the server is shutting down).
    #[error("the checkpoint worker has stopped: the server is shutting down")]
    Stopped,
    /// Persisting failed.
    #[error("persisting the checkpoint failed: {0}")]
    Persist(String),
}

/// A live subscription's registration with the worker.
#[derive(Debug)]
pub struct Opened {
    /// The session's id, to pass to [`Checkpoints::sent`] and
    /// [`Checkpoints::ack`].
    pub session: u64,
    /// The consumer's checkpoint: the stored one, or a newer one the worker
    /// holds but has not yet written.
    pub checkpoint: u64,
    /// Resolves when a newer session of the same consumer takes over.
    pub evicted: oneshot::Receiver<()>,
}

enum Msg {
    Open {
        consumer: String,
        stored: u64,
        window_events: usize,
        session: u64,
        reply: oneshot::Sender<Result<Opened, CheckpointError>>,
    },
    Sent {
        consumer: String,
        session: u64,
        positions: Vec<u64>,
        scanned_to: u64,
    },
    Ack {
        consumer: String,
        session: u64,
        position: u64,
    },
    AckThrough {
        consumer: String,
        position: u64,
        stored: u64,
        reply: oneshot::Sender<Result<u64, CheckpointError>>,
    },
    Close {
        consumer: String,
        session: u64,
    },
    Flush {
        reply: oneshot::Sender<Result<(), CheckpointError>>,
    },
}

/// A handle to the checkpoint worker; cheap to clone. The worker stops
/// (after a final write) once every handle is dropped.
#[derive(Clone)]
pub struct Checkpoints {
    tx: mpsc::Sender<Msg>,
    sessions: Arc<AtomicU64>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints").finish_non_exhaustive()
    }
}

impl Checkpoints {
    /// Spawns the worker on the current tokio runtime.
    pub fn start(journal: Journal, config: CheckpointConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        tokio::spawn(Worker::new(journal, config).run(rx));
        Checkpoints {
            tx,
            sessions: Arc::new(AtomicU64::new(1)),
        }
    }

    async fn send(&self, msg: Msg) -> Result<(), CheckpointError> {
        self.tx
            .send(msg)
            .await
            .map_err(|_| CheckpointError::Stopped)
    }

    /// Registers a live subscription of `consumer`, whose stored checkpoint
    /// is `stored`; evicts the consumer's previous session, if any. At most
    /// `window_events` of its sends are tracked behind an unacknowledged
    /// one ([`AckTracker::with_window`]).
    pub async fn open(
        &self,
        consumer: &str,
        stored: u64,
        window_events: usize,
    ) -> Result<Opened, CheckpointError> {
        let (reply, rx) = oneshot::channel();
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        self.send(Msg::Open {
            consumer: consumer.to_string(),
            stored,
            window_events,
            session,
            reply,
        })
        .await?;
        rx.await.unwrap_or(Err(CheckpointError::Stopped))
    }

    /// Records, before they reach the client, the positions a session sent
    /// (increasing), and that it read everything up to `scanned_to`.
    pub async fn sent(
        &self,
        consumer: &str,
        session: u64,
        positions: Vec<u64>,
        scanned_to: u64,
    ) -> Result<(), CheckpointError> {
        self.send(Msg::Sent {
            consumer: consumer.to_string(),
            session,
            positions,
            scanned_to,
        })
        .await
    }

    /// Acknowledges one position sent by `session`.
    pub async fn ack(
        &self,
        consumer: &str,
        session: u64,
        position: u64,
    ) -> Result<(), CheckpointError> {
        self.send(Msg::Ack {
            consumer: consumer.to_string(),
            session,
            position,
        })
        .await
    }

    /// Acknowledges everything up to `position` (the polling path) and
    /// waits until the checkpoint is durable; returns the persisted
    /// checkpoint (which may be higher than `position`, never lower).
    /// `stored` is the consumer's stored checkpoint, read by the caller.
    pub async fn ack_through(
        &self,
        consumer: &str,
        position: u64,
        stored: u64,
    ) -> Result<u64, CheckpointError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::AckThrough {
            consumer: consumer.to_string(),
            position,
            stored,
            reply,
        })
        .await?;
        rx.await.unwrap_or(Err(CheckpointError::Stopped))
    }

    /// Ends a session's registration (its checkpoint is still written).
    pub async fn close(&self, consumer: &str, session: u64) {
        let _ = self
            .send(Msg::Close {
                consumer: consumer.to_string(),
                session,
            })
            .await;
    }

    /// Writes every moved checkpoint now. Call before shutting the journal
    /// down so no acknowledgement is lost.
    pub async fn flush(&self) -> Result<(), CheckpointError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Flush { reply }).await?;
        rx.await.unwrap_or(Err(CheckpointError::Stopped))
    }
}

struct ConsumerState {
    tracker: AckTracker,
    /// The highest checkpoint known to be stored.
    persisted: u64,
    session: Option<(u64, oneshot::Sender<()>)>,
    /// Polling acknowledgements waiting for their checkpoint to be durable.
    waiters: Vec<(u64, oneshot::Sender<Result<u64, CheckpointError>>)>,
}

impl ConsumerState {
    fn dirty(&self) -> bool {
        self.tracker.checkpoint() > self.persisted
    }

    fn is_current(&self, session: u64) -> bool {
        self.session.as_ref().is_some_and(|(s, _)| *s == session)
    }
}

struct Worker {
    journal: Journal,
    config: CheckpointConfig,
    consumers: HashMap<String, ConsumerState>,
    /// Acknowledgements since the last write.
    acks: usize,
    /// When the oldest unwritten move must be written.
    deadline: Option<Instant>,
}

impl Worker {
    fn new(journal: Journal, config: CheckpointConfig) -> Self {
        Worker {
            journal,
            config,
            consumers: HashMap::new(),
            acks: 0,
            deadline: None,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        loop {
            let msg = match self.deadline {
                Some(at) => tokio::select! {
                    msg = rx.recv() => msg,
                    _ = tokio::time::sleep_until(at) => {
                        let _ = self.flush().await;
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(msg) = msg else { break };
            self.handle(msg).await;
            if self.acks >= self.config.flush_acks {
                let _ = self.flush().await;
            } else if self.deadline.is_none() && self.has_work() {
                self.deadline = Some(Instant::now() + self.config.flush_interval);
            }
        }
        let _ = self.flush().await;
    }

    fn has_work(&self) -> bool {
        self.consumers
            .values()
            .any(|c| c.dirty() || !c.waiters.is_empty())
    }

    fn tracked(&mut self, consumer: &str) -> Result<&mut ConsumerState, CheckpointError> {
        if !self.consumers.contains_key(consumer) {
            if self.consumers.len() >= self.config.consumers_max {
                return Err(CheckpointError::TooManyConsumers(self.consumers.len()));
            }
            self.consumers.insert(
                consumer.to_string(),
                ConsumerState {
                    tracker: AckTracker::new(0),
                    persisted: 0,
                    session: None,
                    waiters: Vec::new(),
                },
            );
        }
        self.consumers
            .get_mut(consumer)
            .ok_or(CheckpointError::Stopped)
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Open {
                consumer,
                stored,
                window_events,
                session,
                reply,
            } => {
                let opened = self.tracked(&consumer).map(|state| {
                    let checkpoint = state.tracker.checkpoint().max(stored);
                    state.persisted = state.persisted.max(stored);
                    state.tracker = AckTracker::with_window(checkpoint, window_events);
                    let (evict, evicted) = oneshot::channel();
                    if let Some((_, old)) = state.session.replace((session, evict)) {
                        let _ = old.send(());
                    }
                    Opened {
                        session,
                        checkpoint,
                        evicted,
                    }
                });
                let _ = reply.send(opened);
            }
            Msg::Sent {
                consumer,
                session,
                positions,
                scanned_to,
            } => {
                if let Some(state) = self.consumers.get_mut(&consumer) {
                    if state.is_current(session) {
                        let refused = positions
                            .into_iter()
                            .find_map(|p| state.tracker.sent(p).err());
                        match refused {
                            None => {
                                state.tracker.scanned(scanned_to);
                            }
                            // The session checks its window before sending,
                            // so this is a bug; dropping the session keeps
                            // the checkpoint at the gap (never past an
                            // unrecorded send) and the tracker bounded.
                            Some(full) => {
                                tracing::warn!(
                                    consumer,
                                    "{full}; ignoring the rest of this session"
                                );
                                state.session = None;
                            }
                        }
                    }
                }
            }
            Msg::Ack {
                consumer,
                session,
                position,
            } => {
                if let Some(state) = self.consumers.get_mut(&consumer) {
                    if state.is_current(session) {
                        state.tracker.ack(position);
                        self.acks += 1;
                    }
                }
            }
            Msg::AckThrough {
                consumer,
                position,
                stored,
                reply,
            } => match self.tracked(&consumer) {
                Ok(state) => {
                    state.persisted = state.persisted.max(stored);
                    state.tracker.ack_through(stored);
                    state.tracker.ack_through(position);
                    state.waiters.push((position, reply));
                    self.acks += 1;
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Msg::Close { consumer, session } => {
                if let Some(state) = self.consumers.get_mut(&consumer) {
                    if state.is_current(session) {
                        state.session = None;
                    }
                }
                self.forget_idle();
            }
            Msg::Flush { reply } => {
                let result = self.flush().await;
                let _ = reply.send(result);
            }
        }
    }

    /// Drops consumers with no session and nothing left to write.
    fn forget_idle(&mut self) {
        self.consumers
            .retain(|_, c| c.session.is_some() || c.dirty() || !c.waiters.is_empty());
    }

    /// Writes every moved checkpoint, in transactions of at most
    /// [`UPDATES_PER_WRITE_MAX`], then answers the polling waiters.
    async fn flush(&mut self) -> Result<(), CheckpointError> {
        self.deadline = None;
        self.acks = 0;
        let updates: Vec<CheckpointUpdate> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.dirty())
            .map(|(name, c)| CheckpointUpdate {
                consumer: name.clone(),
                position: c.tracker.checkpoint(),
            })
            .collect();
        let mut result = Ok(());
        for chunk in updates.chunks(UPDATES_PER_WRITE_MAX) {
            match self
                .journal
                .write_state(StateWrite::SetCheckpoints(chunk.to_vec()))
                .await
            {
                Ok(_) => {
                    for u in chunk {
                        if let Some(c) = self.consumers.get_mut(&u.consumer) {
                            c.persisted = c.persisted.max(u.position);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("persisting consumer checkpoints failed: {e}; retrying");
                    result = Err(CheckpointError::Persist(e.to_string()));
                }
            }
        }
        for c in self.consumers.values_mut() {
            let persisted = c.persisted;
            let failed = result.as_ref().err();
            for (position, reply) in c.waiters.drain(..) {
                let answer = match failed {
                    Some(e) if persisted < position => Err(e.clone()),
                    _ => Ok(persisted),
                };
                let _ = reply.send(answer);
            }
        }
        if result.is_err() {
            // Try again after the interval rather than spinning.
            self.deadline = Some(Instant::now() + self.config.flush_interval);
        }
        self.forget_idle();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_consumer_name("billing.v2_worker-1").is_ok());
        assert!(validate_consumer_name(&"a".repeat(128)).is_ok());
        assert!(validate_consumer_name("").is_err());
        assert!(validate_consumer_name(&"a".repeat(129)).is_err());
        assert!(validate_consumer_name("a b").is_err());
        assert!(validate_consumer_name("é").is_err());
        assert!(validate_consumer_name("a/b").is_err());
    }
}
