//! Shared set-up and oracles of the delivery integration tests
//! (`tests/delivery*.rs`): a real SQLite journal in a temp dir, the real
//! engine with its real `HttpSink`, the loopback receiver of
//! `common::receiver`, and the checks every scenario ends with.
//!
//! The oracles are independent of the library's own classification code:
//! they restate SPEC §4 ("retry" statuses, lanes) in a few lines.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ironclad::delivery::config::DeliveryConfig;
use ironclad::delivery::engine::DeliveryEngine;
use ironclad::delivery::routes::Routes;
use ironclad::delivery::status::sink_statuses;
use ironclad::model::Op;
use ironclad::store::delivery::{DlqFilter, DlqReason, DlqRow, RetryRow};
use ironclad::store::Store;
use ironclad::{ExpectedVersion, Journal, LogReader, NewEvent, RecordedEvent};
use tempfile::TempDir;
use uuid::Uuid;

use crate::common;
use crate::common::accounting::{self, Accounting};
use crate::common::receiver::{ReceivedRequest, Receiver, Schedule};

/// The sink every test configures.
pub const SINK: &str = "hook";
/// Its signing secret (the receiver verifies it).
pub const SECRET: &str = "0123456789abcdef0123456789abcdef";
/// How long any "eventually" may take before a test fails. Generous: the
/// machine is small and noisy; scenarios normally settle in well under 5 s.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Retry settings that make a failing event retry fast but keep trying
/// long enough that only deliberate refusals reach the DLQ.
pub const RETRY_PATIENT: &str = "delay_ms_base = 5\ndelay_ms_max = 50\nattempts_max = 1000\nelapsed_ms_max = 60000\nretry_after_ms_cap = 2000";
/// The brief's small policy: 5 attempts.
pub const RETRY_FAST: &str = "delay_ms_base = 5\ndelay_ms_max = 50\nattempts_max = 5\nelapsed_ms_max = 60000\nretry_after_ms_cap = 2000";
/// A budget that never denies a retry in these tests.
pub const BUDGET_GENEROUS: &str = "retry_ratio = 1.0\nretries_per_s_min = 1000\nwindow_ms = 1000";
/// A breaker that trips only on a long run of failures and reopens fast,
/// for tests about something else.
pub const BREAKER_LENIENT: &str = "window = { kind = \"count\", calls = 100 }\nminimum_calls = 100\nfailure_rate_threshold_pct = 100\nconsecutive_failures_threshold = 0\nopen_ms_base = 100\nopen_ms_max = 500\nhalf_open_permits = 1";

/// The knobs of one engine configuration.
#[derive(Debug, Clone)]
pub struct Knobs {
    pub events_max: usize,
    pub linger_ms: u64,
    pub request_timeout_ms: u64,
    /// Lines of `[delivery.sinks.retry]`.
    pub retry: String,
    /// Lines of `[delivery.sinks.budget]` (empty: defaults).
    pub budget: String,
    /// Lines of `[delivery.sinks.breaker]` (empty: defaults).
    pub breaker: String,
    /// Lines of `[delivery.dlq]` (empty: defaults).
    pub dlq: String,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            events_max: 20,
            linger_ms: 0,
            request_timeout_ms: 5_000,
            retry: RETRY_PATIENT.into(),
            budget: BUDGET_GENEROUS.into(),
            breaker: BREAKER_LENIENT.into(),
            dlq: String::new(),
        }
    }
}

impl Knobs {
    pub fn retry(mut self, lines: &str) -> Self {
        self.retry = lines.into();
        self
    }
    pub fn budget(mut self, lines: &str) -> Self {
        self.budget = lines.into();
        self
    }
    pub fn breaker(mut self, lines: &str) -> Self {
        self.breaker = lines.into();
        self
    }
    pub fn dlq(mut self, lines: &str) -> Self {
        self.dlq = lines.into();
        self
    }
    pub fn events_max(mut self, n: usize) -> Self {
        self.events_max = n;
        self
    }
    pub fn linger_ms(mut self, ms: u64) -> Self {
        self.linger_ms = ms;
        self
    }
    pub fn request_timeout_ms(mut self, ms: u64) -> Self {
        self.request_timeout_ms = ms;
        self
    }

    /// The `[delivery]` TOML for one HTTP sink `hook` at `url`, routed every
    /// stream matching `orders-*` (so `other-*` streams test routing too).
    pub fn toml(&self, url: &str) -> String {
        let section = |name: &str, body: &str| {
            if body.is_empty() {
                String::new()
            } else {
                format!("[{name}]\n{body}\n")
            }
        };
        format!(
            "{dlq}[[delivery.sinks]]\nname = \"{SINK}\"\nkind = \"http\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nrequest_timeout_ms = {timeout}\n[delivery.sinks.batch]\nevents_max = {events_max}\nlinger_ms = {linger}\n{retry}{budget}{breaker}[[delivery.routes]]\nstreams = \"orders-*\"\nsink = \"{SINK}\"\n",
            dlq = section("delivery.dlq", &self.dlq),
            timeout = self.request_timeout_ms,
            events_max = self.events_max,
            linger = self.linger_ms,
            retry = section("delivery.sinks.retry", &self.retry),
            budget = section("delivery.sinks.budget", &self.budget),
            breaker = section("delivery.sinks.breaker", &self.breaker),
        )
    }

    pub fn config(&self, url: &str) -> DeliveryConfig {
        let toml = self.toml(url);
        DeliveryConfig::from_toml_str(&toml)
            .unwrap_or_else(|e| panic!("test config does not load: {e}\n{toml}"))
    }
}

/// A receiver that requires the engine's signatures.
pub async fn receiver(schedule: Schedule) -> Receiver {
    Receiver::start(schedule.secret(SECRET.as_bytes())).await
}

/// A temp data dir, a journal on it (os durability), a receiver and the
/// configuration pointing at it.
pub struct Env {
    pub tmp: TempDir,
    pub dir: PathBuf,
    pub journal: Journal,
    pub receiver: Receiver,
    pub knobs: Knobs,
    pub config: DeliveryConfig,
    pub routes: Routes,
}

impl Env {
    pub async fn new(schedule: Schedule, knobs: Knobs) -> Env {
        let tmp = common::tempdir();
        let dir = common::data_dir(&tmp);
        let journal = common::open(common::fast_config(&dir));
        let receiver = receiver(schedule).await;
        let config = knobs.config(&receiver.url());
        let routes = Routes::compile(&config.routes).expect("routes");
        Env {
            tmp,
            dir,
            journal,
            receiver,
            knobs,
            config,
            routes,
        }
    }

    pub async fn start(&self) -> DeliveryEngine<ironclad::store::sqlite::SqliteStore> {
        DeliveryEngine::start(self.journal.clone(), self.config.clone())
            .await
            .expect("engine starts")
    }

    /// Shuts the journal down and opens it again on the same directory.
    pub async fn reopen(&mut self) {
        common::shutdown(&self.journal).await;
        self.journal = common::open(common::fast_config(&self.dir));
    }

    /// The strict accounting (call when the engine is quiet or stopped).
    pub fn check(&self) -> Accounting {
        accounting::check(&self.journal.reader(), &self.routes, SINK)
    }
}

/// The event of workload index `i`: streams `orders-0..3` (routed) and
/// every 10th to `other-…` (not routed); entities `cust-0..4` on two events
/// in three (lanes span streams), the stream's lane otherwise; type
/// `conflict` (receiver: 409) or `poison` (400) on a few.
pub fn workload_event(i: usize) -> (String, NewEvent) {
    let stream = if i % 10 == 9 {
        format!("other-{}", i % 2)
    } else {
        format!("orders-{}", i % 4)
    };
    let ty = match i % 20 {
        7 => "conflict",
        13 => "poison",
        _ => "created",
    };
    let mut e = NewEvent::new(ty, format!("{{\"i\":{i}}}"));
    if !i.is_multiple_of(3) {
        e = e.with_entity(Op::Event, format!("cust-{}", i % 5));
    }
    (stream, e)
}

/// Appends workload events `from..to`, one append per event (so entity
/// lanes interleave across streams), pausing `pause` every `every` events.
pub async fn append_workload<S: Store>(
    journal: &Journal<S>,
    range: std::ops::Range<usize>,
    every: usize,
    pause: Duration,
) {
    for i in range {
        let (stream, e) = workload_event(i);
        journal
            .append(&stream, ExpectedVersion::Any, vec![e])
            .await
            .expect("append");
        if every > 0 && i % every == every - 1 && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// Appends `events` to `stream`.
pub async fn append<S: Store>(journal: &Journal<S>, stream: &str, events: Vec<NewEvent>) {
    journal
        .append(stream, ExpectedVersion::Any, events)
        .await
        .expect("append");
}

/// Every routed event, by position.
pub fn routed<S: Store>(reader: &LogReader<S>, routes: &Routes) -> Vec<RecordedEvent> {
    common::read_everything(reader)
        .into_iter()
        .filter(|e| routes.matches(SINK, &e.stream))
        .collect()
}

/// The sink's id in the store.
pub fn sink_id<S: Store>(store: &S) -> i64 {
    store
        .sinks()
        .expect("sinks")
        .into_iter()
        .find(|s| s.name == SINK)
        .expect("sink registered")
        .sink_id
}

/// Every retry row of the sink, by position.
pub fn retry_rows<S: Store>(store: &S) -> Vec<RetryRow> {
    store
        .retry_rows(sink_id(store), 0, 1_000_000)
        .expect("retry rows")
}

/// Every dead letter of the sink in the store, by position.
pub fn dlq_rows<S: Store>(store: &S) -> Vec<DlqRow> {
    let filter = DlqFilter {
        sink_id: Some(sink_id(store)),
        ..DlqFilter::default()
    };
    store.dlq_list(&filter, None, 1_000_000).expect("dlq")
}

/// Polls a lenient accounting (no invariant asserted while the engine runs:
/// a poll is not one read transaction) until `done` holds, then confirms
/// with the strict [`accounting::check`], which must agree. Fails after
/// [`PATIENCE`] with the strict accounting and `context`.
pub async fn wait_for<S: Store>(
    journal: &Journal<S>,
    routes: &Routes,
    what: &str,
    context: &dyn Fn() -> String,
    done: &dyn Fn(&Accounting) -> bool,
) -> Accounting {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if lenient(journal, routes).is_some_and(|a| consistent(&a) && done(&a)) {
            if let Some(acc) = try_strict(journal, routes) {
                if done(&acc) {
                    return acc;
                }
            }
        }
        if Instant::now() >= deadline {
            // A broken invariant explains a stall better than a timeout.
            let acc = accounting::check(&journal.reader(), routes, SINK);
            let now_ms = u64::try_from(ironclad::clock::now_us() / 1000).unwrap_or(0);
            let status = sink_statuses(&**journal.store(), routes, now_ms, &|_| None);
            panic!(
                "timed out waiting for {what}; accounting {acc:?}; status {status:?}; {}",
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The strict check, when a lenient read first says it should pass. A
/// write committing between the strict check's reads (a janitor pass, a
/// late settle) can make one read inconsistent, so a failure is retried;
/// the third failure in a row is a real one and propagates.
fn try_strict<S: Store>(journal: &Journal<S>, routes: &Routes) -> Option<Accounting> {
    for attempt in 0..3 {
        if lenient(journal, routes).is_some_and(|a| consistent(&a)) {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                accounting::check(&journal.reader(), routes, SINK)
            }));
            match r {
                Ok(acc) => return Some(acc),
                Err(p) if attempt == 2 => std::panic::resume_unwind(p),
                Err(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Whether a lenient snapshot looks like the strict check would pass.
fn consistent(acc: &Accounting) -> bool {
    acc.delivered.len() as u64 == acc.delivered_total + acc.archived
        && acc.appended
            == acc.delivered_total + acc.dead.len() as u64 + acc.archived + acc.pending.len() as u64
}

/// The accounting computed without asserting anything (`None` when the
/// sink is not registered yet or the reads disagree).
pub fn lenient<S: Store>(journal: &Journal<S>, routes: &Routes) -> Option<Accounting> {
    let store = journal.store();
    let row = store.sinks().ok()?.into_iter().find(|s| s.name == SINK)?;
    let events = routed(&journal.reader(), routes);
    let retries: BTreeMap<u64, u32> = store
        .retry_rows(row.sink_id, 0, 1_000_000)
        .ok()?
        .into_iter()
        .map(|r| (r.position, r.attempts))
        .collect();
    let filter = DlqFilter {
        sink_id: Some(row.sink_id),
        ..DlqFilter::default()
    };
    let dlq: HashSet<u64> = store
        .dlq_list(&filter, None, 1_000_000)
        .ok()?
        .into_iter()
        .map(|d| d.position)
        .collect();
    let mut acc = Accounting {
        appended: events.len() as u64,
        delivered_total: row.delivered_total,
        archived: row.archived_total,
        retrying: retries.values().filter(|a| **a > 0).count() as u64,
        ..Accounting::default()
    };
    for e in &events {
        if dlq.contains(&e.position) {
            acc.dead.insert(e.id);
        } else if retries.contains_key(&e.position) || e.position > row.cursor_position {
            acc.pending.insert(e.id);
        } else {
            acc.delivered.insert(e.id);
        }
    }
    Some(acc)
}

/// Waits until nothing is pending; returns the strict accounting.
pub async fn wait_settled<S: Store>(
    journal: &Journal<S>,
    routes: &Routes,
    receiver: &Receiver,
) -> Accounting {
    let ctx = || receiver_summary(receiver);
    wait_for(journal, routes, "nothing pending", &ctx, &|a| {
        a.pending.is_empty()
    })
    .await
}

/// A one-line summary of what the receiver saw, for failure messages.
pub fn receiver_summary(receiver: &Receiver) -> String {
    let reqs = receiver.requests();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for r in &reqs {
        let k = if r.reset {
            "reset".to_string()
        } else {
            r.status.map_or("none".into(), |s| s.to_string())
        };
        *by_status.entry(k).or_default() += 1;
    }
    format!(
        "receiver: {} requests {by_status:?}, {} applied, {} duplicates",
        reqs.len(),
        receiver.applied().len(),
        receiver.duplicates()
    )
}

/// SPEC §4's "retry" statuses, restated: 408, 425, 429, 5xx but 501, and
/// anything that is not a final HTTP status.
pub fn is_retry_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429)
        || ((500..=599).contains(&status) && status != 501)
        || !(200..=599).contains(&status)
}

/// What the sender learned about one event from one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// A whole answer reached it in time: the event's own status.
    Answered(u16),
    /// No usable answer: reset, never answered (the handler was dropped
    /// with the connection), or slower than the request timeout.
    NoAnswer,
    /// Answered in more than half the timeout but less than all of it:
    /// the sender may or may not have had it in time. Proves nothing.
    Unsure,
}

/// The sender's [`View`] of `key` in `req`. In a 2xx answer judged event by
/// event, an event the receiver applied got a 2xx; one it did not got the
/// rule's refusal (`refusal`, when the rule refuses the event) or else a
/// retry status.
pub fn sender_view(
    req: &ReceivedRequest,
    key: Uuid,
    refusal: Option<u16>,
    timeout: Duration,
) -> View {
    if req.reset {
        return View::NoAnswer;
    }
    let (Some(status), Some(answered)) = (req.status, req.answered_at) else {
        return View::NoAnswer;
    };
    let took = answered.duration_since(req.received_at);
    if took >= timeout {
        return View::NoAnswer;
    }
    if took >= timeout / 2 {
        return View::Unsure;
    }
    if !(200..=299).contains(&status) {
        // A whole-request failure or a uniform refusal: every event got it.
        View::Answered(status)
    } else if req.applied_keys.contains(&key) {
        View::Answered(status)
    } else {
        View::Answered(refusal.unwrap_or(503))
    }
}

/// The expectations of [`check_effectively_once`].
pub struct Expect<'a> {
    /// The receiver's final rule: each event's own status once the
    /// receiver is healthy (refusals decide the expected DLQ reason).
    pub rule: &'a dyn Fn(&RecordedEvent) -> u16,
    /// The sink's request timeout.
    pub timeout: Duration,
    /// Reasons a `created` event may be dead-lettered with (usually none).
    pub other_dead_reasons: &'a [DlqReason],
    /// Receipts `(request, key)` after which a resend is explained by
    /// something the receiver cannot see (an aborted shutdown, a failed
    /// settle, an operator's `dlq retry`).
    pub resend_ok: &'a dyn Fn(&ReceivedRequest, Uuid) -> bool,
    /// Events dead-lettered and then archived (they look delivered to the
    /// accounting but were never applied).
    pub archived: &'a HashSet<Uuid>,
    /// Events exempt from the lane order: dead-lettered, then sent again
    /// by an operator's `dlq retry` after their lane had moved on.
    pub requeued: &'a HashSet<Uuid>,
}

/// The type-based rule of the default receiver: `conflict` 409, `poison` 400.
pub fn default_rule(e: &RecordedEvent) -> u16 {
    match e.event_type.as_str() {
        "conflict" => 409,
        "poison" => 400,
        _ => 200,
    }
}

/// What every scenario ends with, once nothing is pending:
/// - the receiver applied each delivered event exactly once, and nothing
///   else (no dead-lettered or unrouted event);
/// - dead letters carry the reason their event's answer calls for;
/// - a key reached the receiver again only after a request the sender could
///   not count as final for it (a retry), and its last receipt is the one
///   that settled it;
/// - within every lane, the receiver applied events in position order.
///
/// Returns the keys that were received more than once.
pub fn check_effectively_once<S: Store>(
    journal: &Journal<S>,
    routes: &Routes,
    receiver: &Receiver,
    acc: &Accounting,
    expect: &Expect<'_>,
) -> HashSet<Uuid> {
    let all = common::read_everything(&journal.reader());
    let by_id: HashMap<Uuid, &RecordedEvent> = all.iter().map(|e| (e.id, e)).collect();
    let applied = receiver.applied();
    let applied_set: HashSet<Uuid> = applied.iter().copied().collect();
    assert_eq!(applied.len(), applied_set.len(), "applied() repeats a key");
    let delivered: HashSet<Uuid> = acc.delivered.difference(expect.archived).copied().collect();
    let missing: Vec<_> = delivered.difference(&applied_set).collect();
    assert!(
        missing.is_empty(),
        "{} events count as delivered but the receiver never applied them: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let extra: Vec<_> = applied_set.difference(&delivered).collect();
    assert!(
        extra.is_empty(),
        "{} events were applied but do not count as delivered: {:?}",
        extra.len(),
        extra
            .iter()
            .take(5)
            .map(|k| by_id
                .get(k)
                .map(|e| (e.position, e.stream.clone(), e.event_type.clone())))
            .collect::<Vec<_>>()
    );
    for e in &all {
        if !routes.matches(SINK, &e.stream) {
            assert!(
                !applied_set.contains(&e.id),
                "unrouted event {} of {} was delivered",
                e.position,
                e.stream
            );
        }
    }
    // Dead letters: the right reason for each.
    for d in dlq_rows(&**journal.store()) {
        let e = by_id[&d.event_id];
        let want: &[DlqReason] = match (expect.rule)(e) {
            409 => &[DlqReason::Conflict],
            s if !(200..=299).contains(&s) && !is_retry_status(s) => &[DlqReason::Permanent],
            _ => expect.other_dead_reasons,
        };
        assert!(
            want.contains(&d.reason),
            "event {} ({}) dead-lettered as {:?}, expected one of {want:?}: {d:?}",
            e.position,
            e.event_type,
            d.reason
        );
        assert_eq!(d.event_id, e.id);
        assert!(d.attempts >= 1, "a dead letter made no attempt: {d:?}");
    }
    // Every receipt but the last of each key must have failed for it.
    let requests = receiver.requests();
    let mut receipts: HashMap<Uuid, Vec<&ReceivedRequest>> = HashMap::new();
    for r in &requests {
        for k in &r.event_keys {
            receipts.entry(*k).or_default().push(r);
        }
    }
    let mut resent = HashSet::new();
    for (key, reqs) in &receipts {
        let e = by_id
            .get(key)
            .unwrap_or_else(|| panic!("the receiver got key {key} that names no event"));
        let own = (expect.rule)(e);
        let refusal = (!(200..=299).contains(&own)).then_some(own);
        if reqs.len() > 1 {
            resent.insert(*key);
        }
        for (i, r) in reqs.iter().enumerate() {
            let view = sender_view(r, *key, refusal, expect.timeout);
            let is_last = i + 1 == reqs.len();
            let final_answer = matches!(view, View::Answered(s) if !is_retry_status(s));
            if !is_last {
                assert!(
                    !final_answer || (expect.resend_ok)(r, *key),
                    "event {} was sent again after request #{} answered it {:?} for good (status {:?}, reset {}, took {:?})",
                    e.position,
                    r.number,
                    view,
                    r.status,
                    r.reset,
                    r.answered_at.map(|a| a.duration_since(r.received_at))
                );
            } else if delivered.contains(key) {
                assert!(
                    matches!(view, View::Answered(200..=299) | View::Unsure),
                    "event {} counts as delivered but its last receipt (#{}) was not a success: {:?}",
                    e.position,
                    r.number,
                    view
                );
            }
        }
    }
    for k in &delivered {
        assert!(receipts.contains_key(k), "delivered event never received");
    }
    let ordered: Vec<Uuid> = applied
        .iter()
        .filter(|k| !expect.requeued.contains(k))
        .copied()
        .collect();
    check_lane_order(&all, &ordered);
    resent
}

/// Within every lane (entity, else stream), the receiver's first
/// applications come in position order.
pub fn check_lane_order(all: &[RecordedEvent], applied: &[Uuid]) {
    let by_id: HashMap<Uuid, &RecordedEvent> = all.iter().map(|e| (e.id, e)).collect();
    let mut last: HashMap<String, u64> = HashMap::new();
    for k in applied {
        let e = by_id[k];
        let lane = ironclad::delivery::lanes::lane_of(e);
        if let Some(prev) = last.insert(lane.clone(), e.position) {
            assert!(
                prev < e.position,
                "lane {lane}: position {} was applied after {prev}",
                e.position
            );
        }
    }
}

/// The DLQ archives of a data dir, flattened.
pub fn archived_entries(dir: &Path) -> Vec<ironclad::delivery::archive::ArchivedDlqEntry> {
    let mut out = Vec::new();
    for f in ironclad::delivery::archive::list_archives(dir).expect("list archives") {
        out.extend(ironclad::delivery::archive::read_archive(&f.path).expect("read archive"));
    }
    out
}
