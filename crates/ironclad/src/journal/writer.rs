//! The writer thread: drains the ingest queue into group commits.
//!
//! One thread owns the store's writer. It blocks for the first command, then
//! takes whatever else is waiting (up to the event and byte bounds, lingering
//! up to `commit_delay_us_max` if configured), commits it as one transaction,
//! and answers every append with its own outcome. Control commands (flush,
//! WAL checkpoint, shutdown) end a batch and are answered after it commits, which
//! is what makes `flush` a barrier.
//!
//! Nobody awaits a `submit()`ted append's answer, so the writer never lets
//! one vanish: if the store fails it is retried, then dumped; if the store
//! rejects it, it is dumped with its reason and the next barrier reports it
//! ([`RejectionLog`]). Either way it is committed or durably recorded.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::emergency::{self, DumpRecord, RejectReason, Rejection};
use crate::error::{AppendError, ControlError, StoreError};
use crate::metrics as m;
use crate::model::{AppendResult, AppendStatus};
use crate::store::delivery::{StateApplied, StateWrite};
use crate::store::{AppendRejection, PreparedAppend, StoreWriter};

use super::health::{WriteHealth, WRITE_PROBE_INTERVAL};

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
    /// Whether the latest write succeeded (readiness, and shutdown).
    pub health: Arc<WriteHealth>,
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
    /// this barrier failed. `rejected_seen` is the same for rejected
    /// submitted appends.
    Flush {
        seen: u64,
        rejected_seen: u64,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    WalCheckpoint(oneshot::Sender<Result<(), ControlError>>),
    /// A change to the state beside the log, applied in its own transaction
    /// after the appends queued before it commit (so a settle never
    /// precedes the events it covers).
    State {
        op: Box<StateWrite>,
        reply: oneshot::Sender<Result<StateApplied, ControlError>>,
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
    /// Among the unreported failures, one whose error reached nobody: an
    /// append whose ticket was dropped, or submitted appends that were lost.
    unheard: bool,
}

/// A failed group commit: the error, and whether it reached nobody (see
/// [`FailureLog::unheard`]).
struct Failed {
    error: Arc<StoreError>,
    unheard: bool,
}

impl FailureLog {
    fn new(count: Arc<AtomicU64>) -> Self {
        FailureLog {
            count,
            last: None,
            unreported: false,
            unheard: false,
        }
    }

    fn record(&mut self, f: Failed) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.last = Some(f.error);
        self.unreported = true;
        self.unheard |= f.unheard;
    }

    /// What a stopping writer reports as not durable: an unreported
    /// failure that reached nobody, or any unreported one while writes
    /// are still failing. A failure its callers were answered with, on a
    /// store that has recovered since (a full disk that was freed), leaves
    /// nothing to report: every append was either committed or refused to
    /// someone who heard it.
    fn exit_failure(&self, health: &WriteHealth) -> Option<Arc<StoreError>> {
        let unclean = self.unreported && (self.unheard || health.failing().is_some());
        self.last.clone().filter(|_| unclean)
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
        self.unheard = false;
        match &self.last {
            Some(e) => Err(ControlError::NotDurable(Arc::clone(e))),
            None => Ok(()),
        }
    }
}

/// Most rejection dumps a [`RejectionLog`] remembers for its report.
const REJECTION_DUMPS_KEPT: usize = 1000;

/// Submitted appends the store rejected, as barriers need to report them.
/// Each was recorded in a rejection dump before it is counted here.
pub(crate) struct RejectionLog {
    /// Rejected submitted appends so far, mirrored for callers stamping
    /// their flushes.
    pub count: Arc<AtomicU64>,
    /// How many of them some barrier has reported.
    reported: u64,
    /// The latest rejection dumps, oldest first: the count once each was
    /// written, and its path.
    dumps: VecDeque<(u64, PathBuf)>,
}

impl RejectionLog {
    pub fn new(count: Arc<AtomicU64>) -> Self {
        RejectionLog {
            reported: count.load(Ordering::Acquire),
            count,
            dumps: VecDeque::new(),
        }
    }

    fn record(&mut self, appends: u64, path: PathBuf) {
        let total = self.count.fetch_add(appends, Ordering::AcqRel) + appends;
        if self.dumps.len() == REJECTION_DUMPS_KEPT {
            self.dumps.pop_front();
        }
        self.dumps.push_back((total, path));
    }

    /// For a barrier sent when `seen` rejections were counted: the ones
    /// counted since (this barrier covers them) and any no barrier has
    /// reported yet. Reporting marks them reported.
    fn report(&mut self, seen: u64) -> Result<(), ControlError> {
        let total = self.count.load(Ordering::Acquire);
        let from = seen.min(self.reported);
        if total <= from {
            return Ok(());
        }
        self.reported = total;
        let dumps = self
            .dumps
            .iter()
            .filter(|(upto, _)| *upto > from)
            .map(|(_, path)| path.clone())
            .collect();
        Err(ControlError::SubmitRejected {
            count: total - from,
            dumps,
        })
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
    /// Everything is committed or recorded, but submitted appends were
    /// rejected that no flush had reported (a `ControlError::SubmitRejected`).
    Rejected { count: u64, dumps: Vec<PathBuf> },
}

/// The writer thread's counters that the journal's handles read.
pub(crate) struct Counters {
    pub gauge: Arc<QueueGauge>,
    pub failed_commits: Arc<AtomicU64>,
    pub rejected_submits: Arc<AtomicU64>,
}

/// Runs until shutdown or until every sender is dropped.
pub(crate) fn run<W: StoreWriter>(
    mut writer: W,
    rx: Receiver<Command>,
    bounds: BatchBounds,
    counters: Counters,
    env: WriterEnv,
) -> Exit {
    let gauge = counters.gauge;
    let mut failures = FailureLog::new(counters.failed_commits);
    let mut rejections = RejectionLog::new(counters.rejected_submits);
    loop {
        let Some(first) = next_command(&rx, &mut writer, &env.health) else {
            // All handles dropped: everything sent was committed or
            // recorded; nobody is left to hear about rejections, which
            // their dumps and the log keep.
            return match failures.exit_failure(&env.health) {
                Some(e) => Exit::NotDurable(e),
                None => Exit::Clean,
            };
        };
        let (appends, control) = collect_batch(first, &rx, bounds);
        let batch = commit(&mut writer, appends, &gauge, &env, &mut rejections);
        let batch = batch.map_err(|f| {
            let e = Arc::clone(&f.error);
            failures.record(f);
            e
        });
        match control {
            None => {}
            Some(Control::Flush {
                seen,
                rejected_seen,
                reply,
            }) => {
                // A failed commit is the graver news; rejections not
                // reported now stay unreported for the next barrier.
                let answer = failures
                    .answer_flush(seen)
                    .and_then(|()| rejections.report(rejected_seen));
                let _ = reply.send(answer);
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
            Some(Control::State { op, reply }) => {
                let result = match writer.apply_state(&op, crate::clock::now_us()) {
                    Ok(applied) => {
                        env.health.succeeded();
                        Ok(applied)
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        env.health.failed(&e);
                        Err(ControlError::StateWrite(e))
                    }
                };
                let _ = reply.send(result);
            }
            Some(Control::Shutdown) => {
                return shut_down(&mut writer, &rx, &gauge, &env, failures, rejections)
            }
        }
    }
}

/// Waits for the next command. While writes are failing, probes the store
/// each time it has been idle for [`WRITE_PROBE_INTERVAL`], so recovery is
/// noticed with no traffic. `None` once every handle is gone.
fn next_command<W: StoreWriter>(
    rx: &Receiver<Command>,
    writer: &mut W,
    health: &WriteHealth,
) -> Option<Command> {
    while health.failing().is_some() {
        match rx.recv_timeout(WRITE_PROBE_INTERVAL) {
            Ok(cmd) => return Some(cmd),
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => match writer.probe_write() {
                // This store cannot probe: only a real write will tell.
                None => break,
                Some(Ok(())) => health.succeeded(),
                Some(Err(e)) => health.failed(&Arc::new(e)),
            },
        }
    }
    rx.recv().ok()
}

/// Commits what passed the intake gate before it closed, then checkpoints
/// the WAL; says how the writer stopped.
fn shut_down<W: StoreWriter>(
    writer: &mut W,
    rx: &Receiver<Command>,
    gauge: &QueueGauge,
    env: &WriterEnv,
    mut failures: FailureLog,
    mut rejections: RejectionLog,
) -> Exit {
    // Intake is closed, but appends that passed the gate just before it
    // closed may still be queued: commit them too.
    loop {
        let mut rest = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Command::Append(a) => rest.push(a),
                Command::Control(Control::Flush { reply: r, .. } | Control::WalCheckpoint(r)) => {
                    let _ = r.send(Err(ControlError::ShutDown));
                }
                Command::Control(Control::State { reply, .. }) => {
                    let _ = reply.send(Err(ControlError::ShutDown));
                }
                Command::Control(Control::Shutdown) => {}
            }
        }
        if rest.is_empty() {
            break;
        }
        if let Err(f) = commit(writer, rest, gauge, env, &mut rejections) {
            failures.record(f);
        }
    }
    if let Some(e) = failures.exit_failure(&env.health) {
        return Exit::NotDurable(e);
    }
    // Best effort: the data is durable in the WAL either way,
    // and a reader in another process must not fail shutdown.
    let checkpointed = match writer.wal_checkpoint() {
        Ok(()) => Exit::Clean,
        Err(StoreError::Busy(why)) => {
            tracing::warn!(%why, "final WAL checkpoint skipped");
            Exit::Clean
        }
        Err(e) => Exit::WalCheckpointFailed(Arc::new(e)),
    };
    // Unreported rejections outrank a failed checkpoint: they are appends
    // the caller believes were written.
    let seen = rejections.reported;
    match rejections.report(seen) {
        Err(ControlError::SubmitRejected { count, dumps }) => Exit::Rejected { count, dumps },
        _ => checkpointed,
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

/// Who waits for an append's answer: its caller (unless it was
/// submitted), and its queue capacity, returned with the answer.
struct Waiter {
    ack: oneshot::Sender<Result<AppendResult, AppendError>>,
    enqueued: Instant,
    permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    /// Queued by `submit()`: nobody reads `ack`.
    submitted: bool,
}

/// The highest position a committed batch wrote, if it wrote any.
fn head_of(outcomes: &[crate::store::AppendOutcome]) -> Option<u64> {
    outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .filter(|r| r.status == AppendStatus::Appended)
        .flat_map(|r| r.events.iter().map(|e| e.position))
        .max()
}

/// Answers each append of a committed batch with its own outcome. Returns
/// the submitted appends the store rejected (their index in the batch and
/// why): their answer reaches nobody, so the caller must record them.
fn answer(
    outcomes: Vec<crate::store::AppendOutcome>,
    waiters: Vec<Waiter>,
    done: Instant,
) -> Vec<(usize, Rejection)> {
    assert_eq!(outcomes.len(), waiters.len(), "one outcome per append");
    let ack_latency = metrics::histogram!(m::ACK_LATENCY_SECONDS);
    let mut appended = 0u64;
    let mut rejected = Vec::new();
    for (i, (outcome, waiter)) in outcomes.into_iter().zip(waiters).enumerate() {
        let reply = match outcome {
            Ok(r) => {
                if r.status == AppendStatus::Appended {
                    appended += r.events.len() as u64;
                }
                Ok(r)
            }
            Err(rejection) => {
                let (reason, error) = match rejection {
                    AppendRejection::WrongExpectedVersion(w) => (
                        RejectReason::WrongExpectedVersion,
                        AppendError::WrongExpectedVersion(w),
                    ),
                    AppendRejection::IdempotencyConflict { id, detail } => (
                        RejectReason::IdempotencyConflict,
                        AppendError::IdempotencyConflict { id, detail },
                    ),
                };
                metrics::counter!(m::REJECTED_TOTAL, "reason" => reason.as_str()).increment(1);
                if waiter.submitted {
                    rejected.push((i, Rejection::new(reason, &error.to_string())));
                }
                Err(error)
            }
        };
        ack_latency.record((done - waiter.enqueued).as_secs_f64());
        // Capacity returns before the ack, so a caller that was just acked
        // finds the room its own append held (a `try_append` right after
        // the ack must not see `Full` because of it).
        drop(waiter.permits);
        let _ = waiter.ack.send(reply);
    }
    metrics::counter!(m::APPENDED_EVENTS_TOTAL).increment(appended);
    rejected
}

/// Publishes a committed batch's head, answers its appends, and records
/// the submitted ones the store rejected.
fn settle(
    outcomes: Vec<crate::store::AppendOutcome>,
    batch: &[PreparedAppend],
    waiters: Vec<Waiter>,
    env: &WriterEnv,
    rejections: &mut RejectionLog,
) -> Result<(), Failed> {
    // Published before the acks go out: an acknowledged append is
    // always at or below the committed head its caller can observe.
    env.publish_head(head_of(&outcomes));
    let rejected = answer(outcomes, waiters, Instant::now());
    record_rejected(batch, &rejected, env, rejections)
}

/// Writes the submitted appends the store rejected to one rejection dump
/// per reason (fsynced), so none vanishes. If a dump fails, they are lost:
/// the journal fails closed, as when a failing store's dump fails, and the
/// error is returned for the next barrier to report.
fn record_rejected(
    batch: &[PreparedAppend],
    rejected: &[(usize, Rejection)],
    env: &WriterEnv,
    log: &mut RejectionLog,
) -> Result<(), Failed> {
    for reason in [
        RejectReason::WrongExpectedVersion,
        RejectReason::IdempotencyConflict,
    ] {
        let of_reason: Vec<_> = rejected
            .iter()
            .filter(|(_, r)| r.reason == reason)
            .collect();
        if of_reason.is_empty() {
            continue;
        }
        let records: Result<Vec<_>, _> = of_reason
            .iter()
            .map(|(i, why)| {
                let a = &batch[*i];
                DumpRecord::new(&a.stream, a.expected, &a.ids, &a.events)
                    .map(|r| r.with_rejection(why.clone()))
            })
            .collect();
        let now = crate::clock::now_us();
        match records.and_then(|r| emergency::write_rejected_dump(&env.data_dir, reason, &r, now)) {
            Ok(path) => {
                let n = of_reason.len() as u64;
                metrics::counter!(m::SUBMIT_REJECTED_TOTAL, "reason" => reason.as_str())
                    .increment(n);
                tracing::error!(path = %path.display(), appends = n, reason = reason.as_str(), "the store rejected submitted appends: recorded in an emergency dump; the next flush reports them");
                log.record(n, path);
            }
            Err(e) => {
                env.failed_closed.store(true, Ordering::SeqCst);
                tracing::error!(error = %e, "submitted appends were rejected and their emergency dump failed: they are lost; the journal now refuses all new work (failed closed)");
                return Err(Failed {
                    error: Arc::new(StoreError::Io {
                        path: env.data_dir.join(emergency::DUMP_DIR),
                        source: std::io::Error::other(format!(
                            "recording rejected submitted appends failed: {e}"
                        )),
                    }),
                    unheard: true,
                });
            }
        }
    }
    Ok(())
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
            env.health.succeeded();
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
    rejections: &mut RejectionLog,
) -> Result<(), Failed> {
    if queued.is_empty() {
        return Ok(());
    }
    // The store clamps this so created_at never runs backwards along positions.
    let created_at_us = crate::clock::now_us();
    let mut batch = Vec::with_capacity(queued.len());
    let mut waiters = Vec::with_capacity(queued.len());
    let (mut events, mut bytes) = (0usize, 0usize);
    for q in queued {
        events += q.append.events.len();
        bytes += q.bytes;
        batch.push(q.append);
        waiters.push(Waiter {
            ack: q.ack,
            enqueued: q.enqueued,
            permits: q.permits,
            submitted: q.submitted,
        });
    }
    let started = Instant::now();
    let result = writer.commit(&batch, created_at_us);
    let done = Instant::now();
    metrics::histogram!(m::COMMIT_LATENCY_SECONDS).record((done - started).as_secs_f64());
    metrics::histogram!(m::COMMIT_BATCH_EVENTS).record(events as f64);
    let status = match result {
        Ok(outcomes) => {
            env.health.succeeded();
            settle(outcomes, &batch, waiters, env, rejections)
        }
        Err(e) => commit_failed(writer, e, batch, waiters, env, rejections),
    };
    // Permits were dropped with the waiters above: capacity is back.
    gauge.events.fetch_sub(events, Ordering::Relaxed);
    gauge.bytes.fetch_sub(bytes, Ordering::Relaxed);
    metrics::gauge!(m::QUEUE_DEPTH_EVENTS).set(gauge.events.load(Ordering::Relaxed) as f64);
    metrics::gauge!(m::QUEUE_DEPTH_BYTES).set(gauge.bytes.load(Ordering::Relaxed) as f64);
    status
}

/// A group commit failed: awaited appends are answered with the error;
/// submitted ones are retried, then dumped (see [`protect_submitted`]).
fn commit_failed<W: StoreWriter>(
    writer: &mut W,
    e: StoreError,
    batch: Vec<PreparedAppend>,
    waiters: Vec<Waiter>,
    env: &WriterEnv,
    rejections: &mut RejectionLog,
) -> Result<(), Failed> {
    tracing::error!(error = %e, appends = waiters.len(), "group commit failed; appends not acknowledged");
    let shared: Arc<StoreError> = Arc::new(e);
    env.health.failed(&shared);
    // `true` when the answer reached its caller (the ticket was awaited).
    let fail = |ack: oneshot::Sender<Result<AppendResult, AppendError>>| {
        metrics::counter!(m::REJECTED_TOTAL, "reason" => "store_error").increment(1);
        ack.send(Err(AppendError::Store(Arc::clone(&shared))))
            .is_ok()
    };
    let (mut sub_batch, mut sub_waiters) = (Vec::new(), Vec::new());
    let mut status = Ok(());
    let mut unheard = false;
    for (append, waiter) in batch.into_iter().zip(waiters) {
        if waiter.submitted {
            sub_batch.push(append);
            sub_waiters.push(waiter);
        } else {
            unheard |= !fail(waiter.ack);
            status = Err(Failed {
                error: Arc::clone(&shared),
                unheard,
            });
        }
    }
    if sub_batch.is_empty() {
        return status;
    }
    match protect_submitted(writer, &sub_batch, env) {
        Protected::Committed(outcomes) => {
            // A retry can meet a rejection too; `status` stays the
            // awaited appends' failure if there was one.
            let recorded = settle(outcomes, &sub_batch, sub_waiters, env, rejections);
            status.and(recorded)
        }
        Protected::Dumped(path) => {
            for w in sub_waiters {
                let _ = w.ack.send(Err(AppendError::Dumped { path: path.clone() }));
            }
            status
        }
        Protected::Lost(dump_error) => {
            env.failed_closed.store(true, Ordering::SeqCst);
            tracing::error!(error = %dump_error, "emergency dump failed: submitted appends are lost; the journal now refuses all new work (failed closed)");
            for w in sub_waiters {
                let _ = fail(w.ack);
            }
            Err(Failed {
                error: shared,
                unheard: true,
            })
        }
    }
}
