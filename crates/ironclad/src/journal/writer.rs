//! The writer thread: drains the ingest queue into group commits.
//!
//! One thread owns the store's writer. It blocks for the first command, then
//! takes whatever else is waiting (up to the event and byte bounds, lingering
//! up to `commit_delay_us_max` if configured), commits it as one transaction,
//! and answers every append with its own outcome. Control commands (flush,
//! WAL checkpoint, shutdown) end a batch and are answered after it commits, which
//! is what makes `flush` a barrier.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::error::{AppendError, ControlError, StoreError};
use crate::metrics as m;
use crate::model::{AppendResult, AppendStatus};
use crate::store::delivery::{DeliveryApplied, DeliveryWrite};
use crate::store::{AppendRejection, PreparedAppend, StoreWriter};

/// An append waiting in the queue. Its permits return queue capacity when it
/// is dropped, i.e. after its acknowledgement is sent.
pub(crate) struct QueuedAppend {
    pub append: PreparedAppend,
    pub bytes: usize,
    pub enqueued: Instant,
    pub ack: oneshot::Sender<Result<AppendResult, AppendError>>,
    pub permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    /// Queued by `submit()`: nobody awaits it, so a failing store must not
    /// drop it. It is retried, then dumped (see [`WriterEnv`]).
    pub submitted: bool,
}

/// What the writer needs to protect submitted appends when the store fails.
#[derive(Debug, Clone)]
pub(crate) struct WriterEnv {
    pub data_dir: std::path::PathBuf,
    /// Pauses before each retry of a failed commit of submitted appends.
    pub submit_retry_delays: Vec<Duration>,
    /// Set when even the emergency dump failed: the journal takes no more work.
    pub failed_closed: Arc<std::sync::atomic::AtomicBool>,
    /// The highest committed position, published after each commit that
    /// wrote events (subscriptions and dispatchers wait on it).
    pub committed_head: Arc<tokio::sync::watch::Sender<u64>>,
}

impl WriterEnv {
    fn publish_head(&self, position: Option<u64>) {
        if let Some(p) = position {
            self.committed_head.send_if_modified(|h| {
                let newer = p > *h;
                if newer {
                    *h = p;
                }
                newer
            });
        }
    }
}

/// What the writer thread receives.
pub(crate) enum Command {
    Append(QueuedAppend),
    Control(Control),
}

/// A barrier command: answered after every append queued before it commits.
pub(crate) enum Control {
    /// `seen` is the failed-commit count the caller observed when it sent
    /// the flush; a higher count at answer time means a commit covered by
    /// this barrier failed.
    Flush {
        seen: u64,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    WalCheckpoint(oneshot::Sender<Result<(), ControlError>>),
    /// A change to delivery state, applied in its own transaction after the
    /// appends queued before it commit (so a settle never precedes the
    /// events it covers).
    Delivery {
        op: Box<DeliveryWrite>,
        reply: oneshot::Sender<Result<DeliveryApplied, ControlError>>,
    },
    /// Answered through the journal's exit watch (see [`Exit`]), so that
    /// every shutdown caller, including one that retries after a deadline,
    /// learns the same outcome.
    Shutdown,
}

/// Bounds on one group commit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchBounds {
    pub events_max: usize,
    pub bytes_max: usize,
    pub delay: Duration,
}

/// Shared counters the handle reads for gauges.
#[derive(Debug, Default)]
pub(crate) struct QueueGauge {
    pub events: AtomicUsize,
    pub bytes: AtomicUsize,
}

/// Commit failures, as barriers need to report them.
struct FailureLog {
    /// Failed commits so far, mirrored for callers stamping their flushes.
    count: Arc<AtomicU64>,
    last: Option<Arc<StoreError>>,
    /// A failure no flush has reported yet.
    unreported: bool,
}

impl FailureLog {
    fn record(&mut self, e: Arc<StoreError>) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.last = Some(e);
        self.unreported = true;
    }

    /// A flush sent when `seen` commits had failed: NotDurable if one failed
    /// since (so before this barrier's own batch), or if a failure is still
    /// unreported. Reporting clears `unreported`.
    fn answer_flush(&mut self, seen: u64) -> Result<(), ControlError> {
        let failed_since = self.count.load(Ordering::Acquire) > seen;
        if !(failed_since || self.unreported) {
            return Ok(());
        }
        self.unreported = false;
        match &self.last {
            Some(e) => Err(ControlError::NotDurable(Arc::clone(e))),
            None => Ok(()),
        }
    }
}

/// How the writer stopped, published to every `shutdown` caller.
#[derive(Debug, Clone)]
pub(crate) enum Exit {
    /// Drained and WAL-checkpointed (or the WAL checkpoint was skipped as
    /// Busy).
    Clean,
    /// A commit failed that no flush had reported: not everything accepted
    /// is durable.
    NotDurable(Arc<StoreError>),
    /// Everything is committed, but the final WAL checkpoint failed.
    WalCheckpointFailed(Arc<StoreError>),
}

/// Runs until shutdown or until every sender is dropped.
pub(crate) fn run<W: StoreWriter>(
    mut writer: W,
    rx: Receiver<Command>,
    bounds: BatchBounds,
    gauge: Arc<QueueGauge>,
    failed_commits: Arc<AtomicU64>,
    env: WriterEnv,
) -> Exit {
    let mut failures = FailureLog {
        count: failed_commits,
        last: None,
        unreported: false,
    };
    loop {
        let Ok(first) = rx.recv() else {
            // All handles dropped: everything sent was committed.
            return match failures.last.filter(|_| failures.unreported) {
                Some(e) => Exit::NotDurable(e),
                None => Exit::Clean,
            };
        };
        let (appends, control) = collect_batch(first, &rx, bounds);
        let batch = commit(&mut writer, appends, &gauge, &env);
        if let Err(e) = &batch {
            failures.record(Arc::clone(e));
        }
        match control {
            None => {}
            Some(Control::Flush { seen, reply }) => {
                let _ = reply.send(failures.answer_flush(seen));
            }
            Some(Control::WalCheckpoint(reply)) => {
                // Reports (without clearing) a failure of its own batch:
                // what it was asked to WAL-checkpoint is not all there.
                let result = match batch {
                    Err(e) => Err(ControlError::NotDurable(e)),
                    Ok(()) => writer.wal_checkpoint().map_err(ControlError::from),
                };
                let _ = reply.send(result);
            }
            Some(Control::Delivery { op, reply }) => {
                let result = writer
                    .apply_delivery(&op, crate::clock::now_us())
                    .map_err(ControlError::from);
                let _ = reply.send(result);
            }
            Some(Control::Shutdown) => {
                // Intake is closed, but appends that passed the gate just
                // before it closed may still be queued: commit them too.
                loop {
                    let mut rest = Vec::new();
                    while let Ok(cmd) = rx.try_recv() {
                        match cmd {
                            Command::Append(a) => rest.push(a),
                            Command::Control(
                                Control::Flush { reply: r, .. } | Control::WalCheckpoint(r),
                            ) => {
                                let _ = r.send(Err(ControlError::ShutDown));
                            }
                            Command::Control(Control::Delivery { reply, .. }) => {
                                let _ = reply.send(Err(ControlError::ShutDown));
                            }
                            Command::Control(Control::Shutdown) => {}
                        }
                    }
                    if rest.is_empty() {
                        break;
                    }
                    if let Err(e) = commit(&mut writer, rest, &gauge, &env) {
                        failures.record(e);
                    }
                }
                if failures.unreported {
                    if let Some(e) = failures.last {
                        return Exit::NotDurable(e);
                    }
                }
                // Best effort: the data is durable in the WAL either way,
                // and a reader in another process must not fail shutdown.
                return match writer.wal_checkpoint() {
                    Ok(()) => Exit::Clean,
                    Err(StoreError::Busy(why)) => {
                        tracing::warn!(%why, "final WAL checkpoint skipped");
                        Exit::Clean
                    }
                    Err(e) => Exit::WalCheckpointFailed(Arc::new(e)),
                };
            }
        }
    }
}

fn collect_batch(
    first: Command,
    rx: &Receiver<Command>,
    bounds: BatchBounds,
) -> (Vec<QueuedAppend>, Option<Control>) {
    let mut appends = Vec::new();
    let (mut events, mut bytes) = (0usize, 0usize);
    let mut next = Some(first);
    let deadline = Instant::now() + bounds.delay;
    loop {
        match next.take() {
            Some(Command::Append(a)) => {
                events += a.append.events.len();
                bytes += a.bytes;
                appends.push(a);
            }
            Some(Command::Control(control)) => return (appends, Some(control)),
            None => {}
        }
        if events >= bounds.events_max || bytes >= bounds.bytes_max {
            return (appends, None);
        }
        next = match rx.try_recv() {
            Ok(cmd) => Some(cmd),
            Err(TryRecvError::Disconnected) => return (appends, None),
            Err(TryRecvError::Empty) => {
                let now = Instant::now();
                if now >= deadline {
                    return (appends, None);
                }
                match rx.recv_timeout(deadline - now) {
                    Ok(cmd) => Some(cmd),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                        return (appends, None)
                    }
                }
            }
        };
    }
}

type Waiter = (
    oneshot::Sender<Result<AppendResult, AppendError>>,
    Instant,
    (OwnedSemaphorePermit, OwnedSemaphorePermit),
);

/// The highest position a committed batch wrote, if it wrote any.
fn head_of(outcomes: &[crate::store::AppendOutcome]) -> Option<u64> {
    outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .filter(|r| r.status == AppendStatus::Appended)
        .flat_map(|r| r.events.iter().map(|e| e.position))
        .max()
}

/// Answers each append of a committed batch with its own outcome.
fn answer(outcomes: Vec<crate::store::AppendOutcome>, waiters: Vec<Waiter>, done: Instant) {
    assert_eq!(outcomes.len(), waiters.len(), "one outcome per append");
    let ack_latency = metrics::histogram!(m::ACK_LATENCY_SECONDS);
    let mut appended = 0u64;
    for (outcome, (ack, enqueued, permits)) in outcomes.into_iter().zip(waiters) {
        let reply = match outcome {
            Ok(r) => {
                if r.status == AppendStatus::Appended {
                    appended += r.events.len() as u64;
                }
                Ok(r)
            }
            Err(AppendRejection::WrongExpectedVersion(w)) => {
                metrics::counter!(m::REJECTED_TOTAL, "reason" => "wrong_expected_version")
                    .increment(1);
                Err(AppendError::WrongExpectedVersion(w))
            }
            Err(AppendRejection::IdempotencyConflict { id, detail }) => {
                metrics::counter!(m::REJECTED_TOTAL, "reason" => "idempotency_conflict")
                    .increment(1);
                Err(AppendError::IdempotencyConflict { id, detail })
            }
        };
        ack_latency.record((done - enqueued).as_secs_f64());
        // Capacity returns before the ack, so a caller that was just acked
        // finds the room its own append held (a `try_append` right after
        // the ack must not see `Full` because of it).
        drop(permits);
        let _ = ack.send(reply);
    }
    metrics::counter!(m::APPENDED_EVENTS_TOTAL).increment(appended);
}

/// What became of submitted appends whose commit failed.
enum Protected {
    /// A retry committed them.
    Committed(Vec<crate::store::AppendOutcome>),
    /// They are durable in this emergency dump.
    Dumped(std::path::PathBuf),
    /// The dump failed too.
    Lost(crate::emergency::DumpError),
}

/// Retries the submitted appends with the configured pauses, then dumps
/// them. Blocks the writer thread: the store is failing anyway, and the
/// pauses are bounded (`WriterEnv::submit_retry_delays`).
fn protect_submitted<W: StoreWriter>(
    writer: &mut W,
    batch: &[PreparedAppend],
    env: &WriterEnv,
) -> Protected {
    for delay in &env.submit_retry_delays {
        std::thread::sleep(*delay);
        if let Ok(outcomes) = writer.commit(batch, crate::clock::now_us()) {
            return Protected::Committed(outcomes);
        }
    }
    let records: Result<Vec<_>, _> = batch
        .iter()
        .map(|a| crate::emergency::DumpRecord::new(&a.stream, a.expected, &a.ids, &a.events))
        .collect();
    let dumped = records
        .and_then(|r| crate::emergency::write_dump(&env.data_dir, &r, crate::clock::now_us()));
    match dumped {
        Ok(path) => {
            let events: usize = batch.iter().map(|a| a.events.len()).sum();
            metrics::counter!(m::DUMPS_TOTAL).increment(1);
            metrics::counter!(m::DUMPED_EVENTS_TOTAL).increment(events as u64);
            tracing::error!(path = %path.display(), events, "store keeps failing: submitted appends written to an emergency dump; replay with `ironclad dump replay`");
            Protected::Dumped(path)
        }
        Err(e) => Protected::Lost(e),
    }
}

/// Commits one batch and answers every append in it. `Err` (the shared
/// store error) when appends of the batch are not durable: awaited appends
/// whose commit failed, or submitted ones that could be neither committed
/// on retry nor dumped (which also fails the journal closed).
fn commit<W: StoreWriter>(
    writer: &mut W,
    queued: Vec<QueuedAppend>,
    gauge: &QueueGauge,
    env: &WriterEnv,
) -> Result<(), Arc<StoreError>> {
    if queued.is_empty() {
        return Ok(());
    }
    // The store clamps this so created_at never runs backwards along positions.
    let created_at_us = crate::clock::now_us();
    let mut batch = Vec::with_capacity(queued.len());
    let mut waiters = Vec::with_capacity(queued.len());
    let mut submitted = Vec::with_capacity(queued.len());
    let (mut events, mut bytes) = (0usize, 0usize);
    for q in queued {
        events += q.append.events.len();
        bytes += q.bytes;
        batch.push(q.append);
        waiters.push((q.ack, q.enqueued, q.permits));
        submitted.push(q.submitted);
    }
    let started = Instant::now();
    let result = writer.commit(&batch, created_at_us);
    let done = Instant::now();
    metrics::histogram!(m::COMMIT_LATENCY_SECONDS).record((done - started).as_secs_f64());
    metrics::histogram!(m::COMMIT_BATCH_EVENTS).record(events as f64);
    let status = match result {
        Ok(outcomes) => {
            // Published before the acks go out: an acknowledged append is
            // always at or below the committed head its caller can observe.
            env.publish_head(head_of(&outcomes));
            answer(outcomes, waiters, done);
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, appends = waiters.len(), "group commit failed; appends not acknowledged");
            let shared: Arc<StoreError> = Arc::new(e);
            let fail = |ack: oneshot::Sender<Result<AppendResult, AppendError>>| {
                metrics::counter!(m::REJECTED_TOTAL, "reason" => "store_error").increment(1);
                let _ = ack.send(Err(AppendError::Store(Arc::clone(&shared))));
            };
            let (mut sub_batch, mut sub_waiters) = (Vec::new(), Vec::new());
            let mut status = Ok(());
            for ((append, waiter), is_submitted) in batch.into_iter().zip(waiters).zip(submitted) {
                if is_submitted {
                    sub_batch.push(append);
                    sub_waiters.push(waiter);
                } else {
                    fail(waiter.0);
                    status = Err(Arc::clone(&shared));
                }
            }
            if !sub_batch.is_empty() {
                match protect_submitted(writer, &sub_batch, env) {
                    Protected::Committed(outcomes) => {
                        env.publish_head(head_of(&outcomes));
                        answer(outcomes, sub_waiters, Instant::now());
                    }
                    Protected::Dumped(path) => {
                        for (ack, _, _permits) in sub_waiters {
                            let _ = ack.send(Err(AppendError::Dumped { path: path.clone() }));
                        }
                    }
                    Protected::Lost(dump_error) => {
                        env.failed_closed.store(true, Ordering::SeqCst);
                        tracing::error!(error = %dump_error, "emergency dump failed: submitted appends are lost; the journal now refuses all new work (failed closed)");
                        for (ack, _, _permits) in sub_waiters {
                            fail(ack);
                        }
                        status = Err(Arc::clone(&shared));
                    }
                }
            }
            status
        }
    };
    // Permits were dropped with the waiters above: capacity is back.
    gauge.events.fetch_sub(events, Ordering::Relaxed);
    gauge.bytes.fetch_sub(bytes, Ordering::Relaxed);
    metrics::gauge!(m::QUEUE_DEPTH_EVENTS).set(gauge.events.load(Ordering::Relaxed) as f64);
    metrics::gauge!(m::QUEUE_DEPTH_BYTES).set(gauge.bytes.load(Ordering::Relaxed) as f64);
    status
}
