//! The delivery engine: builds the configured sinks, registers them in the
//! store, runs one [`dispatcher`](crate::delivery::dispatcher) per sink plus
//! the DLQ janitor, and offers the operator's controls (circuits, DLQ retry,
//! status) and a graceful shutdown.
//!
//! Lifecycle: `start` → running → `shutdown(deadline)`: dispatchers start no
//! new batch; a batch in flight either settles before the deadline or is
//! dropped unsettled (released: it stays pending and is sent again after the
//! next start). The journal is left open: shut it down after the engine.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::delivery::breaker::{BreakerState, CircuitBreaker};
use crate::delivery::config::{DeliveryConfig, DeliveryConfigError, SinkConfig, SinkKind};
use crate::delivery::dispatcher::{self, SinkRuntime, StopMode};
use crate::delivery::dlq::{self, DlqError};
use crate::delivery::routes::Routes;
use crate::delivery::signature::SigningKey;
use crate::delivery::sink::Sink;
use crate::delivery::sinks::http::{HttpSink, HttpSinkOptions};
use crate::delivery::sinks::jsonl::JsonlSink;
use crate::delivery::sinks::log::LogSink;
use crate::delivery::status::{sink_statuses, SinkStatus};
use crate::error::{ControlError, StoreError};
use crate::journal::Journal;
use crate::store::delivery::{DlqFilter, StateApplied, StateWrite};
use crate::store::Store;

/// The engine could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] DeliveryConfigError),
    /// A sink could not be built.
    #[error("sink {sink:?}: {message}")]
    Sink {
        /// The sink.
        sink: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// Registering sinks in the store failed.
    #[error("registering sinks: {0}")]
    Register(#[from] ControlError),
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another delivery engine already runs on this journal.
    #[error("a delivery engine already runs on this journal: shut it down first (two would deliver and count every event twice)")]
    AlreadyRunning,
}

/// An operator action on a sink's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitAction {
    /// Reject every call until closed (persists across restarts).
    ForceOpen,
    /// Permit every call and never trip (persists across restarts).
    Disable,
    /// Back to Closed (clears a persisted override).
    Close,
    /// Closed with an empty window (clears a persisted override).
    Reset,
}

/// An operator action failed.
#[derive(Debug, Error)]
pub enum AdminError {
    /// No sink of that name is configured.
    #[error("unknown sink {0:?}: check the [delivery] sinks in the configuration")]
    UnknownSink(String),
    /// Persisting the override failed.
    #[error(transparent)]
    Write(#[from] ControlError),
    /// A DLQ operation failed.
    #[error(transparent)]
    Dlq(#[from] DlqError),
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds the sink a configuration describes. Relative JSONL paths are
/// relative to `base_dir`.
pub fn build_sink(cfg: &SinkConfig, base_dir: &Path) -> Result<Arc<dyn Sink>, StartError> {
    let err = |message: String| StartError::Sink {
        sink: cfg.name.clone(),
        message,
    };
    Ok(match &cfg.kind {
        SinkKind::Http {
            url,
            secrets,
            headers,
        } => {
            let mut keys = Vec::new();
            for s in secrets {
                keys.push(SigningKey::new(s.expose().as_bytes()).map_err(|e| err(e.to_string()))?);
            }
            Arc::new(
                HttpSink::new(HttpSinkOptions {
                    name: cfg.name.clone(),
                    url: url.clone(),
                    keys,
                    request_timeout: Duration::from_millis(cfg.request_timeout_ms),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                })
                .map_err(|e| err(e.to_string()))?,
            )
        }
        SinkKind::Jsonl { path } => {
            let path = if path.is_absolute() {
                path.clone()
            } else {
                base_dir.join(path)
            };
            Arc::new(
                JsonlSink::open(cfg.name.clone(), &path)
                    .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?,
            )
        }
        SinkKind::Log => Arc::new(LogSink::new(cfg.name.clone())),
    })
}

/// A running delivery engine. Clone-free: share it behind an `Arc`.
pub struct DeliveryEngine<S: Store> {
    /// Holds the journal's delivery claim until shutdown or drop.
    claim: ClaimGuard<S>,
    journal: Journal<S>,
    config: DeliveryConfig,
    routes: Arc<Routes>,
    sinks: HashMap<String, Arc<SinkRuntime>>,
    stop: watch::Sender<StopMode>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl<S: Store> DeliveryEngine<S> {
    /// Builds every configured sink and starts delivering. Must be called
    /// within a Tokio runtime.
    pub async fn start(journal: Journal<S>, config: DeliveryConfig) -> Result<Self, StartError> {
        let base = std::env::current_dir().unwrap_or_default();
        let mut sinks = Vec::new();
        for cfg in &config.sinks {
            sinks.push(build_sink(cfg, &base)?);
        }
        Self::start_with_sinks(journal, config, sinks).await
    }

    /// Starts with the given sink implementations, matched to the
    /// configuration by name (a sink that is not configured is an error).
    /// Tests use it to wrap a real sink in a fault-injecting twin.
    pub async fn start_with_sinks(
        journal: Journal<S>,
        config: DeliveryConfig,
        sinks: Vec<Arc<dyn Sink>>,
    ) -> Result<Self, StartError> {
        let routes = Arc::new(Routes::compile(&config.routes).map_err(DeliveryConfigError::from)?);
        if !journal.claim_delivery() {
            return Err(StartError::AlreadyRunning);
        }
        // Released again if anything below fails.
        let claim = ClaimGuard(Mutex::new(Some(journal.clone())));
        let (stop, _) = watch::channel(StopMode::Run);
        let mut runtimes = HashMap::new();
        for sink in sinks {
            let name = sink.name().to_string();
            let cfg = config
                .sink(&name)
                .cloned()
                .ok_or_else(|| StartError::Sink {
                    sink: name.clone(),
                    message: "no sink of that name in the configuration".into(),
                })?;
            let breaker =
                CircuitBreaker::new(cfg.breaker.clone()).map_err(|e| StartError::Sink {
                    sink: name.clone(),
                    message: e.to_string(),
                })?;
            let sink_id = match journal
                .write_state(StateWrite::RegisterSink { name: name.clone() })
                .await?
            {
                StateApplied::Sink(id) => id,
                StateApplied::Rows(_) => {
                    return Err(StartError::Store(StoreError::Corrupt(
                        "registering a sink returned no id".into(),
                    )))
                }
            };
            runtimes.insert(
                name,
                Arc::new(SinkRuntime {
                    config: cfg,
                    sink_id,
                    sink,
                    breaker: Arc::new(breaker),
                    reload: AtomicBool::new(false),
                    wake: Notify::new(),
                    cursor: AtomicU64::new(0),
                    retry_rows: AtomicU64::new(0),
                }),
            );
        }
        // Operator overrides survive restarts.
        for row in journal.store().sinks()? {
            if let Some(rt) = runtimes.get(&row.name) {
                match row.circuit_override.as_deref() {
                    Some("forced_open") => {
                        rt.breaker.force_open();
                    }
                    Some("disabled") => {
                        rt.breaker.disable();
                    }
                    _ => {}
                }
            }
        }
        let engine = DeliveryEngine {
            claim,
            journal,
            config,
            routes,
            sinks: runtimes,
            stop,
            tasks: Mutex::new(Vec::new()),
        };
        engine.spawn();
        Ok(engine)
    }

    fn spawn(&self) {
        let dlq_added = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for rt in self.sinks.values() {
            tasks.push(tokio::spawn(dispatcher::run(
                self.journal.clone(),
                Arc::clone(rt),
                Arc::clone(&self.routes),
                self.stop.subscribe(),
                Arc::clone(&dlq_added),
            )));
        }
        let journal = self.journal.clone();
        let mut stop = self.stop.subscribe();
        let dlq_cfg = self.config.dlq;
        tasks.push(tokio::spawn(async move {
            let interval = Duration::from_millis(dlq_cfg.janitor_interval_ms);
            loop {
                match dlq::janitor_pass(&journal, dlq_cfg.entries_max, dlq_cfg.ttl_s).await {
                    Ok(r) if r.expired + r.evicted > 0 => {
                        tracing::info!(expired = r.expired, evicted = r.evicted, "DLQ janitor archived entries");
                    }
                    Ok(_) => {}
                    Err(DlqError::Write(ControlError::ShutDown | ControlError::WriterGone)) => return,
                    Err(e) => tracing::error!(error = %e, "DLQ janitor pass failed; retrying at the next interval"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = dlq_added.notified() => {}
                    _ = stop.changed() => return,
                }
            }
        }));
        if let Ok(mut t) = self.tasks.lock() {
            t.extend(tasks);
        }
    }

    /// The journal the engine delivers from.
    pub fn journal(&self) -> &Journal<S> {
        &self.journal
    }

    /// The configuration the engine runs.
    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    /// A sink's breaker, for inspection.
    pub fn breaker(&self, sink: &str) -> Option<Arc<CircuitBreaker>> {
        self.sinks.get(sink).map(|rt| Arc::clone(&rt.breaker))
    }

    /// Applies an operator action to a sink's circuit and persists it.
    pub async fn circuit(
        &self,
        sink: &str,
        action: CircuitAction,
    ) -> Result<BreakerState, AdminError> {
        let rt = self
            .sinks
            .get(sink)
            .ok_or_else(|| AdminError::UnknownSink(sink.to_string()))?;
        let persisted = match action {
            CircuitAction::ForceOpen => Some("forced_open".to_string()),
            CircuitAction::Disable => Some("disabled".to_string()),
            CircuitAction::Close | CircuitAction::Reset => None,
        };
        self.journal
            .write_state(StateWrite::SetCircuitOverride {
                sink_id: rt.sink_id,
                value: persisted,
            })
            .await?;
        match action {
            CircuitAction::ForceOpen => {
                rt.breaker.force_open();
            }
            CircuitAction::Disable => {
                rt.breaker.disable();
            }
            CircuitAction::Close => {
                rt.breaker.close();
            }
            CircuitAction::Reset => {
                rt.breaker.reset();
            }
        }
        rt.wake.notify_one();
        Ok(rt.breaker.state())
    }

    /// `dlq retry` on a running engine: moves matching entries back to
    /// retrying and makes the dispatchers reload. Returns how many moved.
    pub async fn dlq_retry(&self, filter: &DlqFilter) -> Result<u64, AdminError> {
        let n = dlq::retry(&self.journal, filter).await?;
        for rt in self.sinks.values() {
            rt.reload.store(true, std::sync::atomic::Ordering::Release);
            rt.wake.notify_one();
        }
        Ok(n)
    }

    /// Every sink's status, with live circuit states.
    pub fn status(&self) -> Result<Vec<SinkStatus>, StoreError> {
        let live = |name: &str| {
            self.sinks
                .get(name)
                .map(|rt| rt.breaker.state().as_str().to_string())
        };
        sink_statuses(
            &**self.journal.store(),
            &self.routes,
            u64::try_from(crate::clock::now_us() / 1000).unwrap_or(0),
            &live,
        )
    }

    /// Stops delivering: no new batches; a batch in flight may settle until
    /// `deadline`, after which it is dropped unsettled (it stays pending and
    /// is sent again after the next start). Returns whether every
    /// dispatcher stopped before the deadline. Idempotent. Cancel-safe: the
    /// stop request is sent at once; dropping the future only stops waiting.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        let _ = self.stop.send(StopMode::Drain);
        for rt in self.sinks.values() {
            rt.wake.notify_one();
        }
        let tasks: Vec<JoinHandle<()>> = match self.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let all = futures_join(tasks);
        tokio::pin!(all);
        let drained = tokio::select! {
            _ = &mut all => true,
            _ = tokio::time::sleep(deadline) => {
                let _ = self.stop.send(StopMode::Abort);
                let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
                false
            }
        };
        self.claim.release();
        drained
    }
}

/// Releases a journal's delivery claim once: at shutdown, or when dropped.
struct ClaimGuard<S: Store>(Mutex<Option<Journal<S>>>);

impl<S: Store> ClaimGuard<S> {
    fn release(&self) {
        let taken = self.0.lock().map(|mut j| j.take()).unwrap_or(None);
        if let Some(j) = taken {
            j.release_delivery();
        }
    }
}

impl<S: Store> Drop for ClaimGuard<S> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Waits for every task (a panic in one is logged, not propagated).
async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        if let Err(e) = t.await {
            if e.is_panic() {
                tracing::error!(error = %e, "a delivery task panicked");
            }
        }
    }
}

impl<S: Store> Drop for DeliveryEngine<S> {
    fn drop(&mut self) {
        let _ = self.stop.send(StopMode::Abort);
    }
}
