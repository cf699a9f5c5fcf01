//! The system under test: the dispatcher's turn driven synchronously, with
//! the same library calls `dispatcher::run` makes, in the same order
//! (`TurnContext::begin`, `plan_batch`, `TurnContext::conclude`,
//! `Plan::complete_settle`, `Mirror::apply`, the settle write, a reload
//! after a failed one), over the real SQLite store wrapped in the
//! `FlakyStore` twin so a settle can be made to fail. The sink is scripted
//! and the clock is the test's. What only `run` does (waits, lingering,
//! overlapping a settle with the next plan) is covered by the async
//! delivery tests instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ironclad::delivery::breaker::{BreakerState, CircuitBreaker};
use ironclad::delivery::budget::RetryBudget;
use ironclad::delivery::config::{DeliveryConfig, SinkConfig};
use ironclad::delivery::dispatcher::{load_state, plan_batch, turn_context};
use ironclad::delivery::plan::Plan;
use ironclad::delivery::routes::Routes;
use ironclad::delivery::sink::SinkResponse;
use ironclad::delivery::turn::{idle_pause_ms, Call, Mirror};
use ironclad::model::Op;
use ironclad::store::delivery::{DlqFilter, Settle, StateApplied, StateWrite};
use ironclad::store::sqlite::{SqliteOptions, SqliteStore};
use ironclad::store::{PreparedAppend, Store, StoreWriter};
use ironclad::{ExpectedVersion, NewEvent};
use tempfile::TempDir;

use crate::common;
use crate::common::flaky::{FlakyStore, FlakyWriter};

/// The sink's name, and the glob its one route matches.
pub const SINK: &str = "hook";
const ROUTED: &str = "orders-*";

/// What one turn did, as the model needs to see it.
#[derive(Debug)]
pub struct TurnRecord {
    /// The state the breaker admitted the turn in; `None`: refused.
    pub admitted_in: Option<BreakerState>,
    /// The plan, when the turn was admitted.
    pub plan: Option<Plan>,
    /// The sink's answer, when a batch was sent.
    pub response: Option<SinkResponse>,
    /// Whether the settle committed (false: none, or it failed).
    pub committed: bool,
    /// How long the driver would sleep, when the turn was idle.
    pub idle_pause_ms: Option<u64>,
}

/// The dispatcher's state and its store.
pub struct Sut {
    _tmp: TempDir,
    pub store: Arc<FlakyStore>,
    writer: FlakyWriter,
    pub config: SinkConfig,
    pub routes: Routes,
    pub sink_id: i64,
    pub breaker: Arc<CircuitBreaker>,
    budget: RetryBudget,
    /// `None` after a failed settle or a requeue: reload from the store.
    mirror: Option<Mirror>,
    /// Jitter draws: a fixed-seed generator, so a case replays exactly.
    seed: u64,
}

impl Sut {
    /// A fresh store and a dispatcher for the sink of `toml`.
    pub fn new(toml: &str, seed: u64) -> Sut {
        let config = DeliveryConfig::from_toml_str(toml)
            .unwrap_or_else(|e| panic!("model config does not load: {e}\n{toml}"));
        let routes = Routes::compile(&config.routes).expect("routes");
        let sink = config.sinks[0].clone();
        let tmp = common::tempdir();
        let cfg = common::fast_config(&common::data_dir(&tmp));
        std::fs::create_dir_all(&cfg.data_dir).expect("data dir");
        let store = Arc::new(FlakyStore {
            inner: SqliteStore::open(SqliteOptions::from_config(&cfg)).expect("store"),
            fail: Arc::new(AtomicBool::new(false)),
            fail_next: Arc::default(),
            gate: Arc::default(),
        });
        let mut writer = store.open_writer().expect("writer");
        let register = StateWrite::RegisterSink { name: SINK.into() };
        let Ok(StateApplied::Sink(sink_id)) = writer.apply_state(&register, 0) else {
            panic!("cannot register the sink");
        };
        Sut {
            _tmp: tmp,
            breaker: Arc::new(CircuitBreaker::new(sink.breaker.clone()).expect("breaker")),
            budget: RetryBudget::new(&sink.budget).expect("budget"),
            config: sink,
            routes,
            sink_id,
            store,
            writer,
            mirror: None,
            seed: seed | 1,
        }
    }

    /// Appends one event per `(stream, entity)`, each its own append.
    pub fn append(&mut self, events: &[(String, Option<String>)], now_ms: u64) {
        let batch: Vec<PreparedAppend> = events
            .iter()
            .map(|(stream, entity)| {
                let mut e = NewEvent::new("t", "{}");
                if let Some(entity) = entity {
                    e = e.with_entity(Op::Event, entity.clone());
                }
                PreparedAppend {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Any,
                    ids: vec![uuid::Uuid::now_v7()],
                    events: vec![e],
                }
            })
            .collect();
        let created_at_us = i64::try_from(now_ms * 1000).unwrap_or(i64::MAX);
        for outcome in self.writer.commit(&batch, created_at_us).expect("append") {
            outcome.expect("the append is accepted");
        }
    }

    /// The positions of the sink's dead letters, in order.
    pub fn dead_letters(&self) -> Vec<u64> {
        let filter = DlqFilter {
            sink_id: Some(self.sink_id),
            ..DlqFilter::default()
        };
        let rows = self.store.dlq_list(&filter, None, 100_000).expect("dlq");
        rows.iter().map(|d| d.position).collect()
    }

    /// `dlq retry` of every dead letter, due at `now_ms`; the dispatcher
    /// is asked to reload, as the engine does. Returns the positions moved.
    pub fn requeue(&mut self, now_ms: u64) -> Vec<u64> {
        let positions = self.dead_letters();
        let op = StateWrite::DlqRequeue {
            sink_id: self.sink_id,
            positions: positions.clone(),
            now_unix_ms: now_ms,
        };
        self.writer.apply_state(&op, 0).expect("requeue");
        self.mirror = None;
        positions
    }

    /// One turn at `now_ms`: the sink answers `reply(batch_len)`; the
    /// settle fails when `settle_fails`.
    pub fn turn(
        &mut self,
        now_ms: u64,
        reply: &dyn Fn(usize) -> SinkResponse,
        settle_fails: bool,
    ) -> TurnRecord {
        let mut mirror = match self.mirror.take() {
            Some(m) => m,
            None => load_state(&*self.store, self.sink_id).expect("load state"),
        };
        let ctx = turn_context(self.sink_id, &self.config, &self.breaker);
        let mut record = TurnRecord {
            admitted_in: None,
            plan: None,
            response: None,
            committed: false,
            idle_pause_ms: None,
        };
        let Ok((permit, ask)) = ctx.begin(&mirror, &mut self.budget, now_ms).admitted else {
            self.mirror = Some(mirror);
            return record;
        };
        record.admitted_in = Some(permit.state());
        let plan = plan_batch(
            &*self.store,
            &self.config,
            &self.routes,
            &mirror.pending,
            &ask,
        )
        .expect("plan");
        if plan.is_empty() {
            drop(permit);
            record.idle_pause_ms = Some(idle_pause_ms(mirror.pending.next_due_unix_ms(), now_ms));
            record.plan = Some(plan);
            self.mirror = Some(mirror);
            return record;
        }
        let mut settle = if plan.events.is_empty() {
            drop(permit);
            Settle {
                sink_id: self.sink_id,
                ..Settle::default()
            }
        } else {
            let response = reply(plan.events.len());
            let call = Call {
                items: &plan.items,
                response: &response,
                took_ms: 0,
                done_unix_ms: now_ms,
            };
            let seed = &mut self.seed;
            let mut random = || xorshift(seed);
            let concluded = ctx.conclude(permit, call, &mut self.budget, &mut random);
            record.response = Some(response);
            concluded.settle
        };
        plan.complete_settle(&mut settle, mirror.cursor);
        mirror.apply(&settle);
        self.store.fail.store(settle_fails, Ordering::SeqCst);
        let written = self.writer.apply_state(&StateWrite::Settle(settle), 0);
        self.store.fail.store(false, Ordering::SeqCst);
        record.committed = written.is_ok();
        // A failed settle leaves the mirror stale: drop it, as `run` does.
        self.mirror = record.committed.then_some(mirror);
        record.plan = Some(plan);
        record
    }

    /// Whether the sink's route matches `stream`.
    pub fn routed(&self, stream: &str) -> bool {
        self.routes.matches(SINK, stream)
    }
}

/// A draw in `[0, 1)` from a xorshift64 generator.
fn xorshift(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

/// The settings a case varies.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// `batch.events_max`.
    pub events_max: usize,
    /// `retry_rows_max`.
    pub retry_rows_max: usize,
    /// `retry.attempts_max`.
    pub attempts_max: u32,
    /// The `[budget]` lines.
    pub budget: &'static str,
    /// `breaker.half_open_permits`.
    pub half_open_permits: u32,
}

/// Retry delays: short, so retries fall due within a case; never expire.
pub const DELAY_MS_MAX: u64 = 400;
/// The `Retry-After` cap of the retry policy.
pub const RETRY_AFTER_MS_CAP: u64 = 600;

impl Knobs {
    /// The `[delivery]` TOML of the model's sink.
    pub fn toml(&self) -> String {
        format!(
            "[[delivery.sinks]]\nname = \"{SINK}\"\nkind = \"log\"\nretry_rows_max = {rows}\n\
             [delivery.sinks.batch]\nevents_max = {events}\nlinger_ms = 0\n\
             [delivery.sinks.retry]\ndelay_ms_base = 20\ndelay_ms_max = {DELAY_MS_MAX}\n\
             attempts_max = {attempts}\nelapsed_ms_max = 2592000000\nretry_after_ms_cap = {RETRY_AFTER_MS_CAP}\n\
             [delivery.sinks.budget]\n{budget}\n\
             [delivery.sinks.breaker]\nwindow = {{ kind = \"count\", calls = 5 }}\nminimum_calls = 3\n\
             failure_rate_threshold_pct = 60\nconsecutive_failures_threshold = 3\nopen_ms_base = 200\n\
             open_multiplier = 2.0\nopen_ms_max = 1000\nhalf_open_permits = {permits}\n\
             half_open_timeout_ms = 2000\nretry_after_ms_max = 800\n\
             [[delivery.routes]]\nstreams = \"{ROUTED}\"\nsink = \"{SINK}\"\n",
            rows = self.retry_rows_max,
            events = self.events_max,
            attempts = self.attempts_max,
            budget = self.budget,
            permits = self.half_open_permits,
        )
    }
}
