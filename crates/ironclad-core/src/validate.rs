//! Input validation for appends: pure functions, no I/O (SPEC §1, §2 "Bad input").
//!
//! Every rejection is a distinct [`ValidationError`] variant with a message a
//! user can act on. Nothing here panics on any input.

use std::collections::HashMap;

use serde::de::IgnoredAny;
use thiserror::Error;
use uuid::Uuid;

use crate::model::NewEvent;

/// Size and count limits on appended data. Every one is enforced before an
/// append enters the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest stream name, in bytes (SPEC: 256).
    pub stream_name_bytes_max: usize,
    /// Largest payload, in bytes (SPEC default: 1 MiB).
    pub payload_bytes_max: usize,
    /// Deepest nesting of arrays and objects in a payload.
    pub payload_depth_max: usize,
    /// Most events in one append call.
    pub events_per_append_max: usize,
    /// Longest event type, in bytes.
    pub event_type_bytes_max: usize,
    /// Longest entity key, in bytes.
    pub entity_bytes_max: usize,
    /// Most metadata entries per event.
    pub metadata_entries_max: usize,
    /// Largest metadata key plus value, in bytes, per entry.
    pub metadata_entry_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            stream_name_bytes_max: 256,
            payload_bytes_max: 1024 * 1024,
            payload_depth_max: 64,
            events_per_append_max: 1000,
            event_type_bytes_max: 256,
            entity_bytes_max: 1024,
            metadata_entries_max: 64,
            metadata_entry_bytes_max: 4096,
        }
    }
}

/// Why an append was rejected before it reached the store.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    /// The stream name is the empty string.
    #[error("stream name is empty: give a name of 1 to {max} bytes")]
    StreamNameEmpty {
        /// The byte limit.
        max: usize,
    },
    /// The stream name exceeds the byte limit.
    #[error("stream name is {len} bytes, more than the limit of {max}: use a shorter name")]
    StreamNameTooLong {
        /// Its length in bytes.
        len: usize,
        /// The byte limit.
        max: usize,
    },
    /// The stream name contains a control character.
    #[error(
        "stream name contains control character U+{code:04X} at byte {byte_offset}: remove it"
    )]
    StreamNameControlChar {
        /// Byte offset of the character.
        byte_offset: usize,
        /// Its code point.
        code: u32,
    },
    /// The append holds no events.
    #[error("append holds no events: pass at least one")]
    NoEvents,
    /// The append holds more events than allowed.
    #[error(
        "append holds {count} events, more than the limit of {max}: split it into several appends"
    )]
    TooManyEvents {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A payload exceeds the byte limit.
    #[error("event {index}: payload is {len} bytes, more than the limit of {max}")]
    PayloadTooLarge {
        /// Index of the event in the append.
        index: usize,
        /// Payload size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A payload nests arrays or objects too deeply.
    #[error("event {index}: payload nests deeper than {max} levels: flatten it")]
    PayloadTooDeep {
        /// Index of the event in the append.
        index: usize,
        /// The depth limit.
        max: usize,
    },
    /// A payload is not valid JSON.
    #[error("event {index}: payload is not valid JSON ({reason})")]
    PayloadNotJson {
        /// Index of the event in the append.
        index: usize,
        /// The parser's message.
        reason: String,
    },
    /// The event type is empty or too long.
    #[error("event {index}: type must be 1 to {max} bytes, got {len}")]
    BadEventType {
        /// Index of the event in the append.
        index: usize,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The event type contains a control character other than NUL (NUL is
    /// [`ValidationError::ContainsNul`]). Types are printed in logs and
    /// tables, where a newline or an escape sequence would forge output.
    #[error("event {index}: type contains control character U+{code:04X} at byte {byte_offset}: remove it")]
    EventTypeControlChar {
        /// Index of the event in the append.
        index: usize,
        /// Byte offset of the character in the type.
        byte_offset: usize,
        /// Its code point.
        code: u32,
    },
    /// The entity key contains a control character other than NUL. Entity
    /// keys name things in tables and logs, as stream names do.
    #[error("event {index}: entity contains control character U+{code:04X} at byte {byte_offset}: remove it")]
    EntityControlChar {
        /// Index of the event in the append.
        index: usize,
        /// Byte offset of the character in the entity key.
        byte_offset: usize,
        /// Its code point.
        code: u32,
    },
    /// The entity key is empty or too long.
    #[error("event {index}: entity must be 1 to {max} bytes, got {len}")]
    BadEntity {
        /// Index of the event in the append.
        index: usize,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Metadata has too many entries or an entry is too large.
    #[error("event {index}: metadata has {entries} entries (max {entries_max}) or an entry over {entry_bytes_max} bytes")]
    MetadataTooLarge {
        /// Index of the event in the append.
        index: usize,
        /// Number of entries.
        entries: usize,
        /// Entry limit.
        entries_max: usize,
        /// Per-entry byte limit.
        entry_bytes_max: usize,
    },
    /// A text field holds a NUL character, which PostgreSQL text cannot
    /// store; rejected on every backend so data stays portable.
    #[error("event {index}: {field} contains a NUL character: remove it")]
    ContainsNul {
        /// Index of the event in the append.
        index: usize,
        /// `type`, `entity` or `metadata`.
        field: &'static str,
    },
    /// The append as a whole is larger than the ingest queue can ever hold.
    #[error("append is {bytes} bytes, more than the {max} bytes one append may hold (the ingest queue's capacity, at most 256 MiB + 64 KiB): split it into several appends")]
    AppendTooLarge {
        /// The append's queued size in bytes.
        bytes: usize,
        /// The most one append may hold.
        max: usize,
    },
    /// Two events in one append share an id.
    #[error("events {first_index} and {index} share id {id}: ids are idempotency keys and must be unique within an append")]
    DuplicateId {
        /// The repeated id.
        id: Uuid,
        /// Where it first appears.
        first_index: usize,
        /// Where it repeats.
        index: usize,
    },
}

/// Checks a stream name: 1..=max bytes of UTF-8 with no control characters.
pub fn validate_stream_name(name: &str, limits: &Limits) -> Result<(), ValidationError> {
    let max = limits.stream_name_bytes_max;
    if name.is_empty() {
        return Err(ValidationError::StreamNameEmpty { max });
    }
    if name.len() > max {
        return Err(ValidationError::StreamNameTooLong {
            len: name.len(),
            max,
        });
    }
    if let Some((byte_offset, c)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(ValidationError::StreamNameControlChar {
            byte_offset,
            code: c as u32,
        });
    }
    Ok(())
}

/// Checks a whole append: the stream name, the event count, and every event.
/// Ids that are `None` are not checked for duplicates (they will be generated).
pub fn validate_append(
    stream: &str,
    events: &[NewEvent],
    limits: &Limits,
) -> Result<(), ValidationError> {
    validate_stream_name(stream, limits)?;
    if events.is_empty() {
        return Err(ValidationError::NoEvents);
    }
    if events.len() > limits.events_per_append_max {
        return Err(ValidationError::TooManyEvents {
            count: events.len(),
            max: limits.events_per_append_max,
        });
    }
    let mut seen: HashMap<Uuid, usize> = HashMap::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        validate_event(index, event, limits)?;
        if let Some(id) = event.id {
            if let Some(&first_index) = seen.get(&id) {
                return Err(ValidationError::DuplicateId {
                    id,
                    first_index,
                    index,
                });
            }
            seen.insert(id, index);
        }
    }
    Ok(())
}

fn validate_event(index: usize, event: &NewEvent, limits: &Limits) -> Result<(), ValidationError> {
    let type_len = event.event_type.len();
    if type_len == 0 || type_len > limits.event_type_bytes_max {
        return Err(ValidationError::BadEventType {
            index,
            len: type_len,
            max: limits.event_type_bytes_max,
        });
    }
    if let Some(entity) = &event.entity {
        if entity.is_empty() || entity.len() > limits.entity_bytes_max {
            return Err(ValidationError::BadEntity {
                index,
                len: entity.len(),
                max: limits.entity_bytes_max,
            });
        }
    }
    let entry_too_big = event
        .metadata
        .iter()
        .any(|(k, v)| k.len() + v.len() > limits.metadata_entry_bytes_max);
    if event.metadata.len() > limits.metadata_entries_max || entry_too_big {
        return Err(ValidationError::MetadataTooLarge {
            index,
            entries: event.metadata.len(),
            entries_max: limits.metadata_entries_max,
            entry_bytes_max: limits.metadata_entry_bytes_max,
        });
    }
    let nul = |t: &str| t.as_bytes().contains(&0);
    let field = if nul(&event.event_type) {
        Some("type")
    } else if event.entity.as_deref().is_some_and(nul) {
        Some("entity")
    } else if event.metadata.iter().any(|(k, v)| nul(k) || nul(v)) {
        Some("metadata")
    } else {
        None
    };
    if let Some(field) = field {
        return Err(ValidationError::ContainsNul { index, field });
    }
    if let Some((byte_offset, c)) = event
        .event_type
        .char_indices()
        .find(|(_, c)| c.is_control())
    {
        return Err(ValidationError::EventTypeControlChar {
            index,
            byte_offset,
            code: u32::from(c),
        });
    }
    if let Some((byte_offset, c)) = event
        .entity
        .as_deref()
        .and_then(|e| e.char_indices().find(|(_, c)| c.is_control()))
    {
        return Err(ValidationError::EntityControlChar {
            index,
            byte_offset,
            code: u32::from(c),
        });
    }
    if event.payload.len() > limits.payload_bytes_max {
        return Err(ValidationError::PayloadTooLarge {
            index,
            len: event.payload.len(),
            max: limits.payload_bytes_max,
        });
    }
    if json_depth_exceeds(&event.payload, limits.payload_depth_max) {
        return Err(ValidationError::PayloadTooDeep {
            index,
            max: limits.payload_depth_max,
        });
    }
    // IgnoredAny validates syntax without building a tree; serde_json's
    // recursion limit (128) bounds nesting depth.
    if let Err(e) = serde_json::from_str::<IgnoredAny>(&event.payload) {
        return Err(ValidationError::PayloadNotJson {
            index,
            reason: e.to_string(),
        });
    }
    Ok(())
}

/// Tracks whether a JSON byte stream is inside a string literal, so scans
/// can treat structural bytes and string contents differently.
#[derive(Default)]
struct StringState {
    in_string: bool,
    escaped: bool,
}

impl StringState {
    /// Feeds one byte; true when it lies outside every string literal (the
    /// quotes themselves count as inside).
    fn outside(&mut self, b: u8) -> bool {
        if self.in_string {
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            false
        } else if b == b'"' {
            self.in_string = true;
            false
        } else {
            true
        }
    }
}

fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Bytes `s` takes between the quotes of a JSON string as `serde_json`
/// writes it: `"`, `\\` and the named control escapes take two bytes, other
/// control characters six (`\u00XX`), everything else itself. Sizes that
/// must bound an encoding (an emergency dump's line) count strings this way.
pub fn json_string_bytes(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// The queued size of an append: its stream name as a JSON string plus each
/// event's [`NewEvent::queued_bytes`]. One measure for the queue's byte
/// bound and the largest append (which bounds its emergency-dump line).
pub fn append_bytes(stream: &str, events: &[NewEvent]) -> usize {
    json_string_bytes(stream) + events.iter().map(NewEvent::queued_bytes).sum::<usize>()
}

/// Removes insignificant whitespace (outside strings) from valid JSON text,
/// keeping everything else byte for byte: key order, number spelling and
/// string escapes. `None` when the text is already compact. Stored payloads
/// are compact so that `read` can print each event on one line, verbatim.
pub fn compact_json(text: &str) -> Option<String> {
    let mut scan = StringState::default();
    if !text
        .bytes()
        .any(|b| scan.outside(b) && is_json_whitespace(b))
    {
        return None;
    }
    let mut scan = StringState::default();
    let out: Vec<u8> = text
        .bytes()
        .filter(|&b| !(scan.outside(b) && is_json_whitespace(b)))
        .collect();
    // Only ASCII whitespace bytes were removed, so the text is still UTF-8.
    String::from_utf8(out).ok()
}

/// Whether brackets outside strings nest deeper than `max`. A linear scan
/// that runs before parsing, so hostile nesting costs O(n) and no stack.
pub fn json_depth_exceeds(text: &str, max: usize) -> bool {
    let mut scan = StringState::default();
    let mut depth = 0usize;
    for b in text.bytes() {
        if !scan.outside(b) {
            continue;
        }
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn stream_names_never_panic_and_accept_iff_rules_hold(name in ".{0,300}") {
            let limits = Limits::default();
            let ok = !name.is_empty() && name.len() <= 256 && !name.chars().any(char::is_control);
            prop_assert_eq!(validate_stream_name(&name, &limits).is_ok(), ok);
        }

        #[test]
        fn payload_validation_never_panics(payload in ".{0,200}") {
            let e = NewEvent::new("t", payload);
            let _ = validate_append("s", &[e], &Limits::default());
        }
    }

    #[test]
    fn compaction_keeps_strings_order_and_numbers() {
        assert_eq!(compact_json(r#"{"a":1}"#), None);
        assert_eq!(
            compact_json("{ \"z\" : [1.10, 2e3],\n \"a b\" : \"x \\\" y\" }\n").as_deref(),
            Some(r#"{"z":[1.10,2e3],"a b":"x \" y"}"#)
        );
    }

    proptest! {
        #[test]
        fn compaction_preserves_the_json_value(v in prop::collection::vec(("[a-z ]{0,4}", -1000i64..1000), 0..6)) {
            let obj: serde_json::Map<String, serde_json::Value> =
                v.into_iter().map(|(k, n)| (k, serde_json::Value::from(n))).collect();
            let pretty = serde_json::to_string_pretty(&obj).unwrap_or_default();
            let compact = compact_json(&pretty).unwrap_or(pretty.clone());
            let a: serde_json::Value = serde_json::from_str(&pretty).unwrap_or_default();
            let b: serde_json::Value = serde_json::from_str(&compact).unwrap_or_default();
            prop_assert_eq!(a, b);
            prop_assert!(!compact.contains('\n'));
        }
    }

    #[test]
    fn nul_in_type_or_entity_is_rejected() {
        let l = Limits::default();
        let bad_type = NewEvent::new("a\0", "1");
        let bad_entity = NewEvent::new("t", "1").with_entity(crate::model::Op::Update, "e\0");
        assert_eq!(
            validate_append("s", &[bad_type], &l),
            Err(ValidationError::ContainsNul {
                index: 0,
                field: "type"
            })
        );
        assert_eq!(
            validate_append("s", &[bad_entity], &l),
            Err(ValidationError::ContainsNul {
                index: 0,
                field: "entity"
            })
        );
    }

    #[test]
    fn deep_json_is_rejected_not_overflowed() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let err = validate_append("s", &[NewEvent::new("t", deep)], &Limits::default());
        assert!(matches!(
            err,
            Err(ValidationError::PayloadTooDeep { max: 64, .. })
        ));
        let ok = "[".repeat(64) + &"]".repeat(64);
        assert!(validate_append("s", &[NewEvent::new("t", ok)], &Limits::default()).is_ok());
        let in_string = format!("\"{}\"", "[".repeat(100));
        assert!(validate_append("s", &[NewEvent::new("t", in_string)], &Limits::default()).is_ok());
    }
}
