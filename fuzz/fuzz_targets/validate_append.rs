//! `validate_append` then `compact_json`, as the journal runs them on every
//! append: never a panic; an accepted payload is JSON, and its compact form
//! is JSON with the same value, no whitespace outside strings (compacting
//! it again changes nothing), and no longer than the original.
#![no_main]

use std::collections::BTreeMap;

use ironclad_core::model::{NewEvent, Op};
use ironclad_core::validate::{compact_json, validate_append, Limits};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use uuid::Uuid;

/// Small limits, so that the fuzzer reaches every boundary.
fn limits() -> Limits {
    Limits {
        stream_name_bytes_max: 16,
        payload_bytes_max: 4096,
        payload_depth_max: 8,
        events_per_append_max: 4,
        event_type_bytes_max: 16,
        entity_bytes_max: 16,
        metadata_entries_max: 2,
        metadata_entry_bytes_max: 16,
    }
}

fn event(u: &mut Unstructured<'_>) -> Result<NewEvent> {
    // Few distinct ids, so duplicates are common.
    let id = u
        .arbitrary::<Option<u8>>()?
        .map(|b| Uuid::from_u128(u128::from(b % 4)));
    let op = Op::from_code(u.int_in_range(0..=3)?).unwrap_or_default();
    let mut metadata = BTreeMap::new();
    for _ in 0..u.int_in_range(0..=3)? {
        metadata.insert(u.arbitrary::<String>()?, u.arbitrary::<String>()?);
    }
    Ok(NewEvent {
        id,
        event_type: u.arbitrary()?,
        op,
        entity: u.arbitrary()?,
        metadata,
        // The payload last, so it takes the rest of a short input whole.
        payload: u.arbitrary()?,
    })
}

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let stream: String = u.arbitrary()?;
    let count = u.int_in_range(0..=5)?;
    let events = (0..count).map(|_| event(u)).collect::<Result<Vec<_>>>()?;
    if validate_append(&stream, &events, &limits()).is_err() {
        return Ok(());
    }
    for e in &events {
        let original: Result<Value, _> = serde_json::from_str(&e.payload);
        let Some(compact) = compact_json(&e.payload) else {
            continue;
        };
        assert!(
            compact.len() < e.payload.len(),
            "compacting removed nothing"
        );
        assert_eq!(compact_json(&compact), None, "compact text is not compact");
        serde_json::from_str::<serde::de::IgnoredAny>(&compact).expect("compact text is JSON");
        // Numbers beyond f64 do not fit a `Value`; then both must fail.
        let compacted: Result<Value, _> = serde_json::from_str(&compact);
        match (original, compacted) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "compacting changed the value"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("compacting changed parseability: {a:?} vs {b:?}"),
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
