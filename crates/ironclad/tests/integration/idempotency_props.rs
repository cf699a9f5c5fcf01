//! Guards idempotency and expected-version semantics (SPEC §2) against a
//! simple in-memory model, with property tests: random appends over 2–3
//! streams, ids drawn from a small pool, random expected versions, some
//! appends pipelined into one group commit. Same id and content ⇒
//! `AlreadyAppended` with the original versions and positions, nothing
//! written; same id, other content (stream, type, op, entity, payload or
//! metadata; the conflict names a differing field) or only some ids known ⇒
//! `IdempotencyConflict`; otherwise a wrong expected version ⇒
//! `WrongExpectedVersion { expected, actual }`; otherwise `Appended` at the
//! model's next versions. At the end the store equals the model and the
//! ledger verifies. Also: the same id in flight twice at once is written
//! exactly once, and a retry with the original expected version is answered
//! by idempotency, not by the (since moved) version check.

use crate::common;

use std::collections::HashMap;

use ironclad::{
    AppendError, AppendResult, AppendStatus, EventAck, ExpectedVersion, Journal, NewEvent, Op,
};
use proptest::prelude::*;
use uuid::Uuid;

const ID_POOL: usize = 16;
const STREAM_NAMES: [&str; 3] = ["acct-a", "acct-b", "acct-c"];

fn pool_id(i: usize) -> Uuid {
    Uuid::from_u128(0x00c0_ffee_0000_4000_8000_0000_0000_0000 + i as u128)
}

/// Content variant `v` of pool id `i`. Variant 0 is the base; each other
/// variant differs from it in exactly one field: 1 payload, 2 type,
/// 3 metadata, 4 op and entity.
fn content(i: usize, v: u8) -> NewEvent {
    let ty = if v == 2 {
        "entry.reversed"
    } else {
        "entry.posted"
    };
    let amount = if v == 1 { 11 } else { 10 };
    let payload = format!(r#"{{"item":{i},"amount":{amount},"memo":"€ pour l'été"}}"#);
    let mut e = NewEvent::new(ty, payload).with_id(pool_id(i));
    if v == 3 {
        e = e.with_metadata("source", "import");
    }
    if v == 4 {
        e = e.with_entity(Op::Update, format!("item-{i}"));
    }
    e
}

/// The content fields in which `a` and `b` differ (ids ignored).
fn differing_fields(a: &NewEvent, b: &NewEvent) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.event_type != b.event_type {
        out.push("type");
    }
    if a.op != b.op {
        out.push("op");
    }
    if a.entity != b.entity {
        out.push("entity");
    }
    if a.payload != b.payload {
        out.push("payload");
    }
    if a.metadata != b.metadata {
        out.push("metadata");
    }
    out
}

#[derive(Debug, Clone)]
struct AppendOp {
    stream: usize,
    expected: ExpectedVersion,
    /// (pool index, content variant); pool indices are distinct.
    events: Vec<(usize, u8)>,
    /// Resend the events of an earlier append instead (a retry), keeping
    /// this op's expected version; `bool`: also to the earlier stream.
    resend: Option<(proptest::sample::Index, bool)>,
}

impl AppendOp {
    /// Turns a resend into a plain op, using the appends made so far.
    fn resolve(&self, history: &[AppendOp]) -> AppendOp {
        match &self.resend {
            Some((which, same_stream)) if !history.is_empty() => {
                let earlier = which.get(history);
                AppendOp {
                    stream: if *same_stream {
                        earlier.stream
                    } else {
                        self.stream
                    },
                    expected: self.expected,
                    events: earlier.events.clone(),
                    resend: None,
                }
            }
            _ => AppendOp {
                resend: None,
                ..self.clone()
            },
        }
    }

    fn new_events(&self) -> Vec<NewEvent> {
        self.events.iter().map(|&(i, v)| content(i, v)).collect()
    }
}

#[derive(Debug, Clone)]
struct ModelEvent {
    stream: String,
    event: NewEvent,
    version: u64,
    position: u64,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Appended(Vec<EventAck>),
    AlreadyAppended(Vec<EventAck>),
    /// The conflicting id, and the fields that differ for it (any one may be
    /// named; empty when the id is simply missing from a partial resend).
    Conflict(Uuid, Vec<&'static str>),
    Wrong {
        expected: ExpectedVersion,
        actual: u64,
    },
}

#[derive(Debug, Default)]
struct Model {
    events: Vec<ModelEvent>,
    by_id: HashMap<Uuid, usize>,
    versions: HashMap<String, u64>,
}

impl Model {
    fn apply(&mut self, op: &AppendOp) -> Outcome {
        let stream = STREAM_NAMES[op.stream];
        let new = op.new_events();
        let id = |e: &NewEvent| e.id.expect("pool events carry ids");
        // Idempotency first: a resend is recognised whatever the stream's
        // version is now.
        if new.iter().any(|e| self.by_id.contains_key(&id(e))) {
            let mut acks = Vec::new();
            let mut differs = None;
            let mut missing = None;
            for e in &new {
                match self.by_id.get(&id(e)) {
                    None => {
                        missing.get_or_insert(id(e));
                    }
                    Some(&k) => {
                        let old = &self.events[k];
                        let mut fields = differing_fields(&old.event, e);
                        if old.stream != stream {
                            fields.insert(0, "stream");
                        }
                        if !fields.is_empty() && differs.is_none() {
                            differs = Some((id(e), fields));
                        }
                        acks.push(EventAck {
                            id: id(e),
                            version: old.version,
                            position: old.position,
                        });
                    }
                }
            }
            return match (differs, missing) {
                (Some((id, fields)), _) => Outcome::Conflict(id, fields),
                (None, Some(id)) => Outcome::Conflict(id, vec![]),
                (None, None) => Outcome::AlreadyAppended(acks),
            };
        }
        let actual = self.versions.get(stream).copied().unwrap_or(0);
        let ok = match op.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::StreamExists => actual > 0,
            ExpectedVersion::Exact(v) => v == actual,
        };
        if !ok {
            return Outcome::Wrong {
                expected: op.expected,
                actual,
            };
        }
        let mut acks = Vec::new();
        for event in new {
            let version = actual + acks.len() as u64 + 1;
            let position = self.events.len() as u64 + 1;
            self.by_id.insert(id(&event), self.events.len());
            acks.push(EventAck {
                id: id(&event),
                version,
                position,
            });
            self.events.push(ModelEvent {
                stream: stream.to_string(),
                event,
                version,
                position,
            });
        }
        self.versions
            .insert(stream.to_string(), actual + acks.len() as u64);
        Outcome::Appended(acks)
    }
}

/// Checks what the journal answered against what the model predicts.
fn check_outcome(got: Result<AppendResult, AppendError>, want: &Outcome) -> Result<(), String> {
    let ok = match (&got, want) {
        (Ok(r), Outcome::Appended(acks)) => r.status == AppendStatus::Appended && &r.events == acks,
        (Ok(r), Outcome::AlreadyAppended(acks)) => {
            r.status == AppendStatus::AlreadyAppended && &r.events == acks
        }
        (
            Err(AppendError::IdempotencyConflict { id, detail }),
            Outcome::Conflict(want_id, fields),
        ) => {
            id == want_id
                && (fields.is_empty() && detail.contains("ids were already appended")
                    || fields
                        .iter()
                        .any(|f| detail.contains(&format!("different {f}"))))
        }
        (Err(AppendError::WrongExpectedVersion(w)), Outcome::Wrong { expected, actual }) => {
            w.expected == *expected && w.actual == *actual
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("journal answered {got:?}, model predicts {want:?}"))
    }
}

fn expected_strategy() -> impl Strategy<Value = ExpectedVersion> {
    prop_oneof![
        3 => Just(ExpectedVersion::Any),
        1 => Just(ExpectedVersion::NoStream),
        1 => Just(ExpectedVersion::StreamExists),
        2 => (0u64..5).prop_map(ExpectedVersion::Exact),
    ]
}

fn op_strategy(streams: usize) -> impl Strategy<Value = AppendOp> {
    let ids = proptest::sample::subsequence((0..ID_POOL).collect::<Vec<_>>(), 1..=2).prop_shuffle();
    let resend = proptest::option::weighted(
        0.3,
        (
            any::<proptest::sample::Index>(),
            proptest::bool::weighted(0.8),
        ),
    );
    (
        0..streams,
        expected_strategy(),
        ids,
        proptest::collection::vec(0u8..5, 3),
        resend,
    )
        .prop_map(|(stream, expected, ids, variants, resend)| AppendOp {
            stream,
            expected,
            // Even pool ids always carry the base variant, so reusing them
            // often matches; odd ones vary in one content field.
            events: ids
                .into_iter()
                .zip(variants)
                .map(|(i, v)| (i, if i % 2 == 0 { 0 } else { v }))
                .collect(),
            resend,
        })
}

/// Groups of appends; each group is enqueued as a whole before any ticket is
/// awaited, so a group usually shares a group commit.
fn scenario() -> impl Strategy<Value = Vec<Vec<AppendOp>>> {
    (2usize..=3).prop_flat_map(|streams| {
        proptest::collection::vec(
            proptest::collection::vec(op_strategy(streams), 1..=4),
            1..=10,
        )
    })
}

async fn run_scenario(groups: Vec<Vec<AppendOp>>) -> Result<(), TestCaseError> {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let journal = common::open(common::fast_config(&dir));
    let mut model = Model::default();
    let mut history: Vec<AppendOp> = Vec::new();
    for group in &groups {
        let mut tickets = Vec::with_capacity(group.len());
        for op in group {
            let op = op.resolve(&history);
            history.push(op.clone());
            let ticket = journal
                .enqueue(STREAM_NAMES[op.stream], op.expected, op.new_events())
                .await
                .map_err(|e| TestCaseError::fail(format!("enqueue refused: {e}")))?;
            tickets.push((op, ticket));
        }
        for (op, ticket) in tickets {
            let want = model.apply(&op);
            check_outcome(ticket.await, &want)
                .map_err(|e| TestCaseError::fail(format!("{e}; op {op:?}")))?;
        }
        // Exactly the model's events exist: repeats and refusals wrote nothing.
        let head = journal.ledger_head().unwrap().map_or(0, |h| h.position);
        prop_assert_eq!(head, model.events.len() as u64);
    }

    let stored = common::read_everything(&journal);
    prop_assert_eq!(stored.len(), model.events.len());
    for (s, m) in stored.iter().zip(&model.events) {
        prop_assert_eq!(Some(s.id), m.event.id);
        prop_assert_eq!(&s.stream, &m.stream);
        prop_assert_eq!(s.version, m.version);
        prop_assert_eq!(s.position, m.position);
        prop_assert_eq!(&s.event_type, &m.event.event_type);
        prop_assert_eq!(s.op, m.event.op);
        prop_assert_eq!(&s.entity, &m.event.entity);
        prop_assert_eq!(&s.payload, &m.event.payload);
        prop_assert_eq!(&s.metadata, &m.event.metadata);
    }
    for name in STREAM_NAMES {
        let head = journal.stream_head(name).unwrap().map(|h| h.version);
        prop_assert_eq!(head, model.versions.get(name).copied());
    }
    let report = common::verify_ok(&journal);
    prop_assert_eq!(report.checked, model.events.len() as u64);
    common::shutdown(&journal).await;
    Ok(())
}

proptest! {
    // Failures print their minimal input; no regression file is written
    // into the source tree (the known regression has its own test below).
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn appends_match_the_model(groups in scenario()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_scenario(groups))?;
    }
}

fn journal_in(tmp: &tempfile::TempDir) -> Journal {
    common::open(common::fast_config(&common::data_dir(tmp)))
}

#[tokio::test]
async fn same_id_in_flight_twice_is_written_once() {
    let tmp = common::tempdir();
    let journal = journal_in(&tmp);
    for round in 0..20u64 {
        let ids = [Uuid::new_v4(), Uuid::new_v4()];
        let make = || {
            ids.iter()
                .map(|id| NewEvent::new("twice", format!(r#"{{"round":{round}}}"#)).with_id(*id))
                .collect::<Vec<_>>()
        };
        // Both are queued before either is awaited: usually one group commit.
        let t1 = journal
            .enqueue("dup", ExpectedVersion::Any, make())
            .await
            .unwrap();
        let t2 = journal
            .enqueue("dup", ExpectedVersion::Any, make())
            .await
            .unwrap();
        let (r1, r2) = (t1.await.unwrap(), t2.await.unwrap());
        let mut statuses = [r1.status, r2.status];
        statuses.sort_by_key(|s| *s == AppendStatus::AlreadyAppended);
        assert_eq!(
            statuses,
            [AppendStatus::Appended, AppendStatus::AlreadyAppended],
            "round {round}"
        );
        assert_eq!(r1.events, r2.events, "both report the one written copy");
        assert_eq!(r1.events[0].version, 2 * round + 1);
    }
    let events = common::read_everything(&journal);
    assert_eq!(events.len(), 40, "each pair was written once");
    common::check_log_structure(&events);
    assert_eq!(common::verify_ok(&journal).checked, 40);
    common::shutdown(&journal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_id_from_racing_tasks_is_written_once() {
    let tmp = common::tempdir();
    let journal = journal_in(&tmp);
    for round in 0..20 {
        let id = Uuid::new_v4();
        let ev = NewEvent::new("race", format!(r#"{{"round":{round}}}"#)).with_id(id);
        let (a, b) = (journal.clone(), journal.clone());
        let (e1, e2) = (ev.clone(), ev);
        let h1 =
            tokio::spawn(async move { a.append("race", ExpectedVersion::Any, vec![e1]).await });
        let h2 =
            tokio::spawn(async move { b.append("race", ExpectedVersion::Any, vec![e2]).await });
        let (r1, r2) = (h1.await.unwrap().unwrap(), h2.await.unwrap().unwrap());
        let appended = [&r1, &r2]
            .iter()
            .filter(|r| r.status == AppendStatus::Appended)
            .count();
        assert_eq!(appended, 1, "round {round}: exactly one writes");
        assert_eq!(r1.events, r2.events);
    }
    assert_eq!(common::read_everything(&journal).len(), 20);
    common::shutdown(&journal).await;
}

#[tokio::test]
async fn same_id_in_flight_with_other_content_conflicts() {
    let tmp = common::tempdir();
    let journal = journal_in(&tmp);
    let id = Uuid::new_v4();
    let t1 = journal
        .enqueue(
            "c",
            ExpectedVersion::Any,
            vec![NewEvent::new("t", r#"{"v":1}"#).with_id(id)],
        )
        .await
        .unwrap();
    let t2 = journal
        .enqueue(
            "c",
            ExpectedVersion::Any,
            vec![NewEvent::new("t", r#"{"v":2}"#).with_id(id)],
        )
        .await
        .unwrap();
    let r1 = t1.await.expect("first is written");
    assert_eq!(r1.status, AppendStatus::Appended);
    match t2.await {
        Err(AppendError::IdempotencyConflict { id: got, detail }) => {
            assert_eq!(got, id);
            assert!(
                detail.contains("payload"),
                "detail names the field: {detail}"
            );
        }
        other => panic!("expected IdempotencyConflict, got {other:?}"),
    }
    let events = common::read_everything(&journal);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload, r#"{"v":1}"#, "the first content wins");
    common::shutdown(&journal).await;
}

/// The retry that idempotency exists for: an append with an expected version
/// whose acknowledgement was lost is resent unchanged. The stream has moved
/// on (because of that very append), yet the answer must be
/// `AlreadyAppended` with the original acks, not `WrongExpectedVersion`.
#[tokio::test]
async fn retry_with_the_original_expected_version_is_already_appended() {
    let tmp = common::tempdir();
    let journal = journal_in(&tmp);
    let ids = [Uuid::new_v4(), Uuid::new_v4()];
    let events = || {
        ids.iter()
            .enumerate()
            .map(|(i, id)| NewEvent::new("order.placed", format!(r#"{{"line":{i}}}"#)).with_id(*id))
            .collect::<Vec<_>>()
    };
    let first = journal
        .append("order-7", ExpectedVersion::NoStream, events())
        .await
        .unwrap();
    assert_eq!(first.status, AppendStatus::Appended);
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Any,
    ] {
        let again = journal
            .append("order-7", expected, events())
            .await
            .unwrap_or_else(|e| panic!("retry with {expected:?} must be idempotent, got: {e}"));
        assert_eq!(again.status, AppendStatus::AlreadyAppended);
        assert_eq!(again.events, first.events);
    }
    // Both in flight at once, each with Exact(2): the second is the resend.
    let more = || {
        vec![NewEvent::new("order.paid", "{}")
            .with_id(Uuid::from_u128(ids[0].as_u128().wrapping_add(1)))]
    };
    let t1 = journal
        .enqueue("order-7", ExpectedVersion::Exact(2), more())
        .await
        .unwrap();
    let t2 = journal
        .enqueue("order-7", ExpectedVersion::Exact(2), more())
        .await
        .unwrap();
    let (r1, r2) = (t1.await.unwrap(), t2.await.unwrap());
    assert_eq!(
        (r1.status, r2.status),
        (AppendStatus::Appended, AppendStatus::AlreadyAppended)
    );
    assert_eq!(r1.events, r2.events);
    // A genuinely stale writer (new ids) still gets the version error.
    match journal
        .append(
            "order-7",
            ExpectedVersion::Exact(2),
            vec![NewEvent::new("order.paid", "{}")],
        )
        .await
    {
        Err(AppendError::WrongExpectedVersion(w)) => {
            assert_eq!(w.expected, ExpectedVersion::Exact(2));
            assert_eq!(w.actual, 3);
        }
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }
    assert_eq!(common::read_everything(&journal).len(), 3);
    common::shutdown(&journal).await;
}
