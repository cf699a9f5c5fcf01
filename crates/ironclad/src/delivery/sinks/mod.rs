//! The built-in sinks of SPEC §4, each an implementation of
//! [`Sink`](crate::delivery::sink::Sink):
//!
//! - [`HttpSink`]: the HTTP webhook. JSON batches, an idempotency key per
//!   event, an HMAC-SHA256 `Ironclad-Signature` header with a timestamp.
//!   The wire format is `docs/webhook.md`.
//! - [`JsonlSink`]: appends one JSON line per event to a file and fsyncs it
//!   before acknowledging.
//! - [`LogSink`]: logs each event's envelope (not its payload) through
//!   `tracing`; for demos and smoke tests.
//!
//! All three write the same per-event JSON object: the serialized
//! [`RecordedEvent`](crate::model::RecordedEvent) plus an `idempotency_key`
//! field equal to the event id ([`write_event_object`]), so a consumer can
//! switch sinks without changing how it deduplicates.

pub mod http;
pub mod jsonl;
pub mod log;

pub use http::{HttpSink, HttpSinkError, HttpSinkOptions};
pub use jsonl::JsonlSink;
pub use log::LogSink;

use crate::model::RecordedEvent;

/// Bytes added to a serialized event by [`write_event_object`]:
/// `,"idempotency_key":"` (20), a hyphenated UUID (36) and `"` (1).
const IDEMPOTENCY_FIELD_BYTES: usize = 20 + 36 + 1;

/// Appends `event`'s wire object to `out`: the serialized `RecordedEvent`
/// with an extra trailing `"idempotency_key":"<event id>"` member.
///
/// The object is built by serializing the event and splicing the field in
/// before its closing brace, rather than through a second struct, so that
/// the wire object can never drift from `RecordedEvent`'s own field list.
pub fn write_event_object(
    out: &mut Vec<u8>,
    event: &RecordedEvent,
) -> Result<(), serde_json::Error> {
    let start = out.len();
    serde_json::to_writer(&mut *out, event)?;
    // A struct always serializes as a non-empty JSON object, so the last
    // byte is its `}`; checked anyway so a future change to `RecordedEvent`'s
    // serialization cannot silently produce invalid JSON.
    if out.len() <= start + 2 || out.last() != Some(&b'}') {
        out.truncate(start);
        return Err(serde::ser::Error::custom(
            "an event did not serialize as a JSON object",
        ));
    }
    out.pop();
    out.reserve(IDEMPOTENCY_FIELD_BYTES + 1);
    out.extend_from_slice(b",\"idempotency_key\":\"");
    out.extend_from_slice(
        event
            .id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(b"\"}");
    Ok(())
}

/// A rough upper estimate of an event's wire object size, used to size a
/// buffer once so that building a batch body does not reallocate.
pub fn event_object_size_hint(event: &RecordedEvent) -> usize {
    // Fixed envelope: field names, id, three 64-hex hashes, numbers.
    const ENVELOPE_BYTES: usize = 512;
    ENVELOPE_BYTES
        + IDEMPOTENCY_FIELD_BYTES
        + event.stream.len()
        + event.event_type.len()
        + event.entity.as_ref().map_or(0, String::len)
        + event.payload.len()
        + event
            .metadata
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Op, ZERO_HASH};
    use std::collections::BTreeMap;

    /// A hand-built event for the sinks' unit tests.
    pub(crate) fn event(n: u64, event_type: &str, payload: &str) -> RecordedEvent {
        RecordedEvent {
            id: uuid::Uuid::now_v7(),
            stream: "s".into(),
            version: n,
            position: n,
            event_type: event_type.into(),
            op: Op::Event,
            entity: Some(format!("e{n}")),
            payload: payload.into(),
            metadata: BTreeMap::from([("k".to_string(), "v \"quoted\"".to_string())]),
            created_at_us: 1,
            hash_version: 1,
            prev_hash: ZERO_HASH,
            hash: ZERO_HASH,
            global_hash: ZERO_HASH,
        }
    }

    #[test]
    fn wire_object_is_the_event_plus_its_key() {
        let ev = event(3, "t", r#"{"a":[1,2.50,"x"]}"#);
        let mut out = b"prefix".to_vec();
        write_event_object(&mut out, &ev).unwrap();
        assert!(out.starts_with(b"prefix"));
        let v: serde_json::Value = serde_json::from_slice(&out[6..]).unwrap();
        assert_eq!(v["idempotency_key"], ev.id.to_string());
        assert_eq!(v["id"], ev.id.to_string());
        assert_eq!(v["version"], 3);
        assert_eq!(v["metadata"]["k"], "v \"quoted\"");
        // The payload is emitted verbatim, number spelling included.
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains(r#""payload":{"a":[1,2.50,"x"]}"#), "{text}");
        assert!(out.len() - 6 <= event_object_size_hint(&ev));
    }
}
