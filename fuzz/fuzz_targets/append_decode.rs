//! The HTTP append decoder (`decode_append`): any body gives a decoded
//! append or a typed API error, never a panic. A decoded append holds
//! 1..=events_max events whose payloads are JSON text, and re-encoding it
//! and decoding again gives the same append (payloads byte for byte).
#![no_main]

use ironclad_core::wire::{AppendRequest, WireEvent, WireExpected};
use ironclad_server::handlers::ingest::decode_append;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

const EVENTS_MAX: usize = 16;
const DEPTH_MAX: usize = 8;

fuzz_target!(|body: &[u8]| {
    let Ok((expected, events)) = decode_append(body, EVENTS_MAX, DEPTH_MAX) else {
        return;
    };
    assert!((1..=EVENTS_MAX).contains(&events.len()));
    // Re-encode through the wire types, as a client would send it.
    let wire = AppendRequest {
        expected_version: Some(WireExpected::from(expected)),
        events: events
            .iter()
            .map(|e| WireEvent {
                id: e.id,
                event_type: e.event_type.clone(),
                op: e.op,
                entity: e.entity.clone(),
                payload: RawValue::from_string(e.payload.clone()).expect("payload is JSON"),
                metadata: e.metadata.clone(),
            })
            .collect(),
    };
    let again = serde_json::to_vec(&wire).expect("an append encodes");
    let (expected2, events2) =
        decode_append(&again, EVENTS_MAX, DEPTH_MAX).expect("a re-encoded append decodes");
    assert_eq!(expected, expected2);
    assert_eq!(events, events2);
});
