//! The journal: the public append API over a store (SPEC §2).
//!
//! Producers validate their input on their own task, wait for room in a
//! queue bounded by events and by bytes, and hand the append to the single
//! writer thread (see [`writer`]). The acknowledgement arrives only after the
//! group commit holding the append is durable at the configured level.

mod health;
mod reader;
mod replay;
mod writer;

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use uuid::Uuid;

use crate::config::JournalConfig;
use crate::error::{AppendError, ControlError, OpenError, Unhealthy};
use crate::lockfile::DataDirLock;
use crate::metrics as m;
use crate::model::{AppendResult, ExpectedVersion, NewEvent};
use crate::store::delivery::{StateApplied, StateWrite};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{PreparedAppend, Store};
use crate::validate::{append_bytes, compact_json, validate_append, ValidationError};

use health::WriteHealth;
pub use reader::{LogReader, VerifyOptions, VerifyReport, READ_LIMIT_MAX};
pub use replay::{ReplayOptions, ReplayReport};
use writer::{BatchBounds, Command, Control, Counters, Exit, QueueGauge, QueuedAppend, WriterEnv};

/// A handle to an open journal. Clone it freely: clones share one queue and
/// one writer. Read methods come from [`LogReader`] via `Deref`.
pub struct Journal<S: Store = SqliteStore> {
    shared: Arc<Shared<S>>,
}

impl<S: Store> Clone for Journal<S> {
    fn clone(&self) -> Self {
        Journal {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<S: Store> {
    reader: LogReader<S>,
    config: JournalConfig,
    tx: Sender<Command>,
    events_sem: Arc<Semaphore>,
    bytes_sem: Arc<Semaphore>,
    gauge: Arc<QueueGauge>,
    closed: AtomicBool,
    /// Set by the writer when an emergency dump fails: refuse all new work.
    failed_closed: Arc<AtomicBool>,
    /// Whether the latest write succeeded (the writer records it).
    write_health: Arc<WriteHealth>,
    /// Failed group commits so far (the writer counts); flushes stamp it.
    failed_commits: Arc<AtomicU64>,
    /// Submitted appends the store rejected so far (the writer counts, once
    /// each is recorded in a dump); flushes stamp it.
    rejected_submits: Arc<AtomicU64>,
    /// Becomes `Some` once the writer thread has stopped and released the
    /// lock, with how it stopped (`None` inside if it panicked).
    writer_exited: watch::Receiver<Option<Option<Exit>>>,
    /// The highest committed position (see [`Journal::committed_head`]).
    committed_head: watch::Receiver<u64>,
    /// Set while a delivery engine runs on this journal: two would both
    /// deliver every event and both count it.
    delivery_claimed: AtomicBool,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
}

/// Resolves when an enqueued append is durable (or was refused).
///
/// Cancel-safety: dropping a ticket does **not** withdraw the append; it will
/// still commit. Re-sending with the same ids after a drop is safe, because
/// ids are idempotency keys.
#[must_use = "an append is acknowledged only when its ticket resolves"]
pub struct AppendTicket {
    rx: oneshot::Receiver<Result<AppendResult, AppendError>>,
    ids: Vec<Uuid>,
}

impl AppendTicket {
    /// The ids of the queued events, in order (given or generated).
    pub fn ids(&self) -> &[Uuid] {
        &self.ids
    }
}

impl Future for AppendTicket {
    type Output = Result<AppendResult, AppendError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(AppendError::WriterGone)))
    }
}

impl Journal<SqliteStore> {
    /// Opens (creating and migrating if needed) the SQLite journal in
    /// `config.data_dir`, takes the directory lock, and starts the writer.
    pub fn open(config: JournalConfig) -> Result<Self, OpenError> {
        config.check()?;
        let lock = DataDirLock::acquire(&config.data_dir)?;
        let store = SqliteStore::open(SqliteOptions::from_config(&config))?;
        Journal::with_store(store, config, Some(lock))
    }
}

impl<S: Store> Journal<S> {
    /// Starts a journal over any store. `lock` is held by the writer thread
    /// and released when it exits (after shutdown, or after the last handle
    /// is dropped and the queue has drained).
    pub fn with_store(
        store: S,
        config: JournalConfig,
        lock: Option<DataDirLock>,
    ) -> Result<Self, OpenError> {
        config.check()?;
        let writer = store.open_writer()?;
        let (tx, rx) = mpsc::channel();
        let gauge = Arc::new(QueueGauge::default());
        let bounds = BatchBounds {
            events_max: config.commit_events_max,
            bytes_max: config.commit_bytes_max,
            delay: Duration::from_micros(config.commit_delay_us_max),
        };
        let failed_commits = Arc::new(AtomicU64::new(0));
        let rejected_submits = Arc::new(AtomicU64::new(0));
        let counters = Counters {
            gauge: Arc::clone(&gauge),
            failed_commits: Arc::clone(&failed_commits),
            rejected_submits: Arc::clone(&rejected_submits),
        };
        let (exited_tx, writer_exited) = watch::channel(None);
        let failed_closed = Arc::new(AtomicBool::new(false));
        let write_health = Arc::new(WriteHealth::default());
        let head = store.ledger_head()?.map_or(0, |h| h.position);
        let (head_tx, committed_head) = watch::channel(head);
        let env = WriterEnv {
            committed_head: Arc::new(head_tx),
            data_dir: config.data_dir.clone(),
            submit_retry_delays: config
                .submit_retry_delays_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            failed_closed: Arc::clone(&failed_closed),
            health: Arc::clone(&write_health),
        };
        let handle = std::thread::Builder::new()
            .name("ironclad-writer".into())
            .spawn(move || {
                let exit = writer::run(writer, rx, bounds, counters, env);
                // Released only once the writer has stopped for good, so a
                // second engine can never overlap with this one's last commit.
                drop(lock);
                let _ = exited_tx.send(Some(Some(exit)));
            })
            .map_err(|e| OpenError::DataDir {
                path: config.data_dir.clone(),
                source: e,
            })?;
        crate::metrics::describe();
        metrics::gauge!(m::QUEUE_CAPACITY_EVENTS).set(config.queue_events_max as f64);
        metrics::gauge!(m::QUEUE_CAPACITY_BYTES).set(config.queue_bytes_max as f64);
        Ok(Journal {
            shared: Arc::new(Shared {
                reader: LogReader::new(Arc::new(store), config.limits.clone()),
                events_sem: Arc::new(Semaphore::new(config.queue_events_max)),
                bytes_sem: Arc::new(Semaphore::new(config.queue_bytes_max)),
                config,
                tx,
                gauge,
                closed: AtomicBool::new(false),
                failed_closed,
                write_health,
                failed_commits,
                rejected_submits,
                writer_exited,
                committed_head,
                delivery_claimed: AtomicBool::new(false),
                writer_thread: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Watches the highest committed position: it changes after each group
    /// commit that wrote new events, never backwards. Live readers
    /// (dispatchers, subscriptions, long-polls) wait on it instead of
    /// polling. Every position at or below it is committed and readable.
    pub fn committed_head(&self) -> watch::Receiver<u64> {
        self.shared.committed_head.clone()
    }

    /// Why the journal takes no new appends, if it does not: shutting down,
    /// or failed closed (an emergency dump failed). Reads still work.
    /// For readiness probes; changes nothing.
    pub fn refusing(&self) -> Option<&'static str> {
        if self.shared.failed_closed.load(Ordering::Acquire) {
            Some("the journal failed closed: an emergency dump failed; see the logs, fix the disk, restart")
        } else if self.shared.closed.load(Ordering::Acquire) {
            Some("the journal is shutting down")
        } else {
            None
        }
    }

    /// `Err` while the journal cannot be trusted to take writes: its
    /// database file was found damaged (until it is reopened), or its
    /// latest write failed, say on a full disk (until a write succeeds: an
    /// append, a state write, or the probe write the writer runs every
    /// second while idle). For readiness probes: cheap, changes nothing.
    /// Shadows [`LogReader::health`], which sees damage only.
    pub fn health(&self) -> Result<(), Unhealthy> {
        self.shared.reader.health().map_err(Unhealthy::Damaged)?;
        match self.shared.write_health.failing() {
            Some(e) => Err(Unhealthy::WritesFailing(e)),
            None => Ok(()),
        }
    }

    /// Claims the journal for one delivery engine. `false` if another
    /// engine holds it. Released by [`Journal::release_delivery`].
    pub fn claim_delivery(&self) -> bool {
        !self.shared.delivery_claimed.swap(true, Ordering::AcqRel)
    }

    /// Releases the claim taken by [`Journal::claim_delivery`].
    pub fn release_delivery(&self) {
        self.shared.delivery_claimed.store(false, Ordering::Release);
    }

    /// The configuration this journal runs with.
    pub fn config(&self) -> &JournalConfig {
        &self.shared.config
    }

    /// Appends atomically and waits until the events are durable.
    ///
    /// Waits for queue room (backpressure). Cancel-safety: if this future is
    /// dropped after the append was queued, the append still commits; retry
    /// with the same ids to learn its outcome (`AlreadyAppended`).
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        self.enqueue(stream, expected, events).await?.await
    }

    /// Waits for queue room, queues the append, and returns a ticket that
    /// resolves once it is durable. Lets one producer pipeline many appends:
    /// appends queued by one task commit in the order they were queued.
    /// Cancel-safe while waiting for room (nothing is queued yet).
    pub async fn enqueue(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendTicket, AppendError> {
        self.enqueue_as(stream, expected, events, false).await
    }

    /// Fire-and-forget (SPEC §2 `submit()`): waits for queue room, queues the
    /// append and returns its event ids as soon as it is queued, without
    /// waiting for durability. If the store then fails, the writer retries
    /// with the pauses in `JournalConfig::submit_retry_delays_ms`, and if it
    /// still fails it writes the append to an emergency dump (fsynced) for
    /// `ironclad dump replay`. If the store *rejects* it (wrong expected
    /// version, idempotency conflict), it is written to a rejection dump
    /// with its reason, and the next `flush()` (or `shutdown`) returns
    /// [`ControlError::SubmitRejected`]. If a dump fails, the journal fails
    /// closed: every later call is refused with `FailedClosed`. So a
    /// submitted append is committed or durably recorded, never dropped.
    /// Use `flush()` as a barrier to learn that submitted work is durable.
    /// Cancel-safe while waiting for room (nothing is queued yet).
    pub async fn submit(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Uuid>, AppendError> {
        let ticket = self.enqueue_as(stream, expected, events, true).await?;
        Ok(ticket.ids)
    }

    async fn enqueue_as(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        submitted: bool,
    ) -> Result<AppendTicket, AppendError> {
        let (append, bytes) = self.prepare(stream, expected, events)?;
        let n = permits(append.events.len());
        let closed = |_| self.reject("shutting_down", AppendError::ShuttingDown);
        let e = Arc::clone(&self.shared.events_sem)
            .acquire_many_owned(n)
            .await
            .map_err(closed)?;
        let b = Arc::clone(&self.shared.bytes_sem)
            .acquire_many_owned(permits(bytes))
            .await
            .map_err(closed)?;
        self.send(append, bytes, (e, b), submitted)
    }

    /// Like [`Journal::enqueue`] but never waits: returns
    /// [`AppendError::Full`] at once when the queue has no room (counted in
    /// `ironclad_ingest_rejected_total{reason="full"}`).
    pub fn try_append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendTicket, AppendError> {
        let (append, bytes) = self.prepare(stream, expected, events)?;
        let acquire = |sem: &Arc<Semaphore>, n: usize, what: &'static str| {
            Arc::clone(sem)
                .try_acquire_many_owned(permits(n))
                .map_err(|e| match e {
                    TryAcquireError::NoPermits => self.reject("full", AppendError::Full { what }),
                    TryAcquireError::Closed => {
                        self.reject("shutting_down", AppendError::ShuttingDown)
                    }
                })
        };
        let e = acquire(&self.shared.events_sem, append.events.len(), "events")?;
        let b = acquire(&self.shared.bytes_sem, bytes, "bytes")?;
        self.send(append, bytes, (e, b), false)
    }

    /// Returns once everything queued before the call has been committed and
    /// answered. `Err(NotDurable)` if a group commit failed after this call
    /// was sent (so before its barrier), or if a failure has not yet been
    /// reported to any flush. Otherwise `Err(SubmitRejected)`, naming how
    /// many and which dumps, if the store rejected `submit()`ted appends
    /// after this call was sent or that no barrier has reported yet. Each
    /// failure and each rejection is reported once: a later flush does not
    /// report it again (the appends themselves were answered with the
    /// error; rejected submitted ones stay in `ironclad dump list`). A
    /// rejection not reported because `NotDurable` was is reported by the
    /// next flush. Cancel-safe (the barrier is only observed).
    pub async fn flush(&self) -> Result<(), ControlError> {
        let seen = self.shared.failed_commits.load(Ordering::Acquire);
        let rejected_seen = self.shared.rejected_submits.load(Ordering::Acquire);
        self.control(|reply| Control::Flush {
            seen,
            rejected_seen,
            reply,
        })
        .await
    }

    /// Applies one change to the state kept beside the log (delivery
    /// progress, dead letters, circuit overrides, consumer checkpoints)
    /// through the single writer, after
    /// everything queued before it has committed. Used by the delivery engine
    /// and by DLQ operations; a store backend never sees two writers.
    /// Cancel-safe in the sense that dropping the future does not undo the
    /// write: it may still be applied.
    pub async fn write_state(&self, op: StateWrite) -> Result<StateApplied, ControlError> {
        self.control(|reply| Control::State {
            op: Box::new(op),
            reply,
        })
        .await
    }

    /// Commits what is queued, then truncates the SQLite WAL (a WAL
    /// checkpoint; not to be confused with a consumer's checkpoint, its
    /// position in the log).
    pub async fn wal_checkpoint(&self) -> Result<(), ControlError> {
        self.control(Control::WalCheckpoint).await
    }

    /// Stops intake, drains the queue, runs a WAL checkpoint, stops the writer and
    /// releases the data-directory lock. Appends after this fail with
    /// `ShuttingDown`. If `deadline` passes first, returns
    /// [`ControlError::DeadlineExceeded`]; the writer keeps draining in the
    /// background, and calling `shutdown` again waits (within its own
    /// deadline) until it has stopped and the lock is free. Every call
    /// returns the same outcome once the writer has stopped: `NotDurable`
    /// for a commit failure no flush reported if its error reached nobody
    /// (a dropped ticket, lost submitted appends) or writes still fail (a
    /// failure answered to its callers on a store that recovered since is
    /// not one: see [`Journal::health`]), else `SubmitRejected` for
    /// rejected submitted appends no flush reported (they are recorded in
    /// their dumps either way). Cancel-safe: dropping the
    /// future does not stop the shutdown, which proceeds in the background.
    pub async fn shutdown(&self, deadline: Duration) -> Result<(), ControlError> {
        if !self.shared.closed.swap(true, Ordering::SeqCst) {
            self.shared.events_sem.close();
            self.shared.bytes_sem.close();
            // If the writer is already gone, the exit watch says how.
            let _ = self.shared.tx.send(Command::Control(Control::Shutdown));
        }
        let mut exited = self.shared.writer_exited.clone();
        let outcome = match tokio::time::timeout(deadline, exited.wait_for(Option::is_some)).await {
            Err(_) => return Err(ControlError::DeadlineExceeded),
            // The sender is gone without a value: the thread panicked.
            Ok(Err(_)) => None,
            Ok(Ok(v)) => v.clone().flatten(),
        };
        let handle = self
            .shared
            .writer_thread
            .lock()
            .ok()
            .and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        match outcome {
            Some(Exit::Clean) => Ok(()),
            Some(Exit::NotDurable(e)) => Err(ControlError::NotDurable(e)),
            Some(Exit::WalCheckpointFailed(e)) => Err(ControlError::FinalWalCheckpoint(e)),
            Some(Exit::Rejected { count, dumps }) => {
                Err(ControlError::SubmitRejected { count, dumps })
            }
            None => Err(ControlError::WriterGone),
        }
    }

    /// A read handle that outlives nothing: cheap to clone.
    pub fn reader(&self) -> LogReader<S> {
        self.shared.reader.clone()
    }

    fn reject(&self, reason: &'static str, e: AppendError) -> AppendError {
        metrics::counter!(m::REJECTED_TOTAL, "reason" => reason).increment(1);
        e
    }

    fn prepare(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
    ) -> Result<(PreparedAppend, usize), AppendError> {
        if self.shared.failed_closed.load(Ordering::Acquire) {
            return Err(self.reject("failed_closed", AppendError::FailedClosed));
        }
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(self.reject("shutting_down", AppendError::ShuttingDown));
        }
        let cfg = &self.shared.config;
        validate_append(stream, &events, &cfg.limits)
            .map_err(|e| self.reject("invalid", e.into()))?;
        for event in &mut events {
            if let Some(compact) = compact_json(&event.payload) {
                event.payload = compact;
            }
        }
        let bytes = append_bytes(stream, &events);
        // Also bounds the append's emergency-dump line (see APPEND_BYTES_LIMIT).
        let max = cfg.append_bytes_max();
        if bytes > max {
            let e = ValidationError::AppendTooLarge { bytes, max };
            return Err(self.reject("invalid", e.into()));
        }
        let ids = events
            .iter()
            .map(|e| e.id.unwrap_or_else(Uuid::now_v7))
            .collect();
        Ok((
            PreparedAppend {
                stream: stream.to_string(),
                expected,
                ids,
                events,
            },
            bytes,
        ))
    }

    fn send(
        &self,
        append: PreparedAppend,
        bytes: usize,
        permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
        submitted: bool,
    ) -> Result<AppendTicket, AppendError> {
        let (ack, rx) = oneshot::channel();
        let ids = append.ids.clone();
        let n = append.events.len();
        let gauge = &self.shared.gauge;
        let depth_events = gauge.events.fetch_add(n, Ordering::Relaxed) + n;
        let depth_bytes = gauge.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        metrics::gauge!(m::QUEUE_DEPTH_EVENTS).set(depth_events as f64);
        metrics::gauge!(m::QUEUE_DEPTH_BYTES).set(depth_bytes as f64);
        let cmd = Command::Append(QueuedAppend {
            append,
            bytes,
            enqueued: Instant::now(),
            ack,
            permits,
            submitted,
        });
        if self.shared.tx.send(cmd).is_err() {
            gauge.events.fetch_sub(n, Ordering::Relaxed);
            gauge.bytes.fetch_sub(bytes, Ordering::Relaxed);
            return Err(AppendError::WriterGone);
        }
        Ok(AppendTicket { rx, ids })
    }

    async fn control<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ControlError>>) -> Control,
    ) -> Result<T, ControlError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(ControlError::ShutDown);
        }
        let (reply, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Command::Control(make(reply)))
            .map_err(|_| ControlError::WriterGone)?;
        rx.await.unwrap_or(Err(ControlError::WriterGone))
    }
}

impl<S: Store> Deref for Journal<S> {
    type Target = LogReader<S>;
    fn deref(&self) -> &LogReader<S> {
        &self.shared.reader
    }
}

/// Semaphore permits are u32; `JournalConfig::check` keeps capacities below
/// that, so saturating here only ever over-asks (and is then refused).
fn permits(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
