//! Tests of the idempotency decision: each rule by example, corrupt rows,
//! and a property test against a naive restatement of the rule.

use proptest::prelude::*;

use super::*;

fn append(n: usize) -> PreparedAppend {
    let events: Vec<NewEvent> = (0..n)
        .map(|i| {
            NewEvent::new(format!("t{i}"), format!("{{\"i\":{i}}}"))
                .with_entity(Op::Update, format!("e{i}"))
        })
        .collect();
    PreparedAppend {
        stream: "orders-1".into(),
        expected: ExpectedVersion::Any,
        ids: (0..n).map(|i| Uuid::from_u128(i as u128 + 1)).collect(),
        events,
    }
}

/// The row a store holds after appending `a` at versions 1.. and
/// positions 100..
fn stored_as_appended(a: &PreparedAppend) -> Vec<Option<StoredEvent>> {
    a.events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Some(StoredEvent {
                stream: a.stream.clone(),
                event_type: e.event_type.clone(),
                op_code: i64::from(e.op.code()),
                entity: e.entity.clone(),
                payload: e.payload.clone(),
                metadata: e.metadata.clone(),
                version: i as i64 + 1,
                position: i as i64 + 100,
            })
        })
        .collect()
}

/// A change to a stored row, named by the field it changes.
type Change = (&'static str, fn(&mut StoredEvent));

/// A stored integer set to a value that does not decode.
type BadInteger = (&'static str, i64, fn(&mut StoredEvent, i64));

fn conflict_detail(d: Decision) -> (Uuid, String) {
    match d {
        Decision::Conflict(AppendRejection::IdempotencyConflict { id, detail }) => (id, detail),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn nothing_stored_is_new() {
    let a = append(3);
    assert_eq!(decide(&a, &[None, None, None]), Ok(Decision::New));
}

#[test]
fn an_identical_resend_is_acknowledged_with_the_stored_places() {
    let a = append(2);
    let Ok(Decision::Resend(r)) = decide(&a, &stored_as_appended(&a)) else {
        panic!("expected a resend");
    };
    assert_eq!(r.status, AppendStatus::AlreadyAppended);
    let places: Vec<(u64, u64)> = r.events.iter().map(|e| (e.version, e.position)).collect();
    assert_eq!(places, vec![(1, 100), (2, 101)]);
    assert_eq!(r.events[1].id, a.ids[1]);
}

#[test]
fn each_field_that_differs_is_named() {
    let a = append(1);
    let cases: [Change; 6] = [
        ("stream", |r| r.stream.push('x')),
        ("type", |r| r.event_type.push('x')),
        ("op", |r| r.op_code = i64::from(Op::Delete.code())),
        ("entity", |r| r.entity = None),
        ("payload", |r| r.payload = "{}".into()),
        ("metadata", |r| {
            r.metadata.insert("k".into(), "v".into());
        }),
    ];
    for (field, change) in cases {
        let mut stored = stored_as_appended(&a);
        if let Some(row) = stored[0].as_mut() {
            change(row);
        }
        let (id, detail) = conflict_detail(decide(&a, &stored).expect("decodes"));
        assert_eq!(id, a.ids[0]);
        assert!(
            detail.ends_with(&format!("different {field}")),
            "{field}: {detail}"
        );
    }
}

#[test]
fn partly_stored_is_a_conflict_naming_the_first_missing_id() {
    let a = append(3);
    let mut stored = stored_as_appended(&a);
    stored[1] = None;
    let (id, detail) = conflict_detail(decide(&a, &stored).expect("decodes"));
    assert_eq!(id, a.ids[1]);
    assert!(detail.contains("2 of this append's 3 ids"), "{detail}");
}

#[test]
fn a_differing_field_wins_over_a_missing_id() {
    let a = append(3);
    let mut stored = stored_as_appended(&a);
    stored[0] = None;
    if let Some(row) = stored[2].as_mut() {
        row.payload = "[]".into();
    }
    let (id, detail) = conflict_detail(decide(&a, &stored).expect("decodes"));
    assert_eq!(id, a.ids[2]);
    assert!(detail.contains("different payload"), "{detail}");
}

#[test]
fn stored_integers_that_do_not_decode_are_corrupt_never_zero() {
    let a = append(1);
    let cases: [BadInteger; 5] = [
        ("op", 9, |r, v| r.op_code = v),
        ("op", -1, |r, v| r.op_code = v),
        ("version", -5, |r, v| r.version = v),
        ("version", 0, |r, v| r.version = v),
        ("position", i64::MIN, |r, v| r.position = v),
    ];
    for (field, value, change) in cases {
        let mut stored = stored_as_appended(&a);
        if let Some(row) = stored[0].as_mut() {
            change(row, value);
        }
        let err = decide(&a, &stored).expect_err("corrupt");
        assert_eq!((err.field, err.value, err.id), (field, value, a.ids[0]));
        assert!(err.to_string().contains("ledger verify"), "{err}");
    }
}

/// How a stored row relates to the event at its index.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Missing,
    Same,
    Differs,
}

fn slot() -> impl Strategy<Value = Slot> {
    prop_oneof![Just(Slot::Missing), Just(Slot::Same), Just(Slot::Differs)]
}

proptest! {
    /// The decision agrees with a naive restatement of the rule: new iff
    /// nothing is stored; a resend iff everything is stored unchanged;
    /// otherwise a conflict on the first differing id, else the first
    /// missing one.
    #[test]
    fn decide_matches_the_naive_rule(slots in proptest::collection::vec(slot(), 1..12)) {
        let a = append(slots.len());
        let mut stored = stored_as_appended(&a);
        for (row, s) in stored.iter_mut().zip(&slots) {
            match s {
                Slot::Missing => *row = None,
                Slot::Same => {}
                Slot::Differs => if let Some(r) = row.as_mut() { r.payload.push(' ') },
            }
        }
        let got = decide(&a, &stored).expect("decodes");
        let first = |want: fn(&Slot) -> bool| slots.iter().position(want).map(|i| a.ids[i]);
        let differs = first(|s| matches!(s, Slot::Differs));
        let missing = first(|s| matches!(s, Slot::Missing));
        let present = slots.iter().any(|s| !matches!(s, Slot::Missing));
        match got {
            Decision::New => prop_assert!(!present),
            Decision::Resend(r) => {
                prop_assert!(differs.is_none() && missing.is_none());
                prop_assert_eq!(r.events.len(), slots.len());
            }
            Decision::Conflict(AppendRejection::IdempotencyConflict { id, .. }) => {
                prop_assert!(present);
                prop_assert_eq!(Some(id), differs.or(missing));
            }
            Decision::Conflict(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
