//! `POST /v1/streams/{stream}/events`: the append request. Its answer is
//! the core [`AppendResult`](crate::model::AppendResult) (201 `appended`,
//! 200 `already_appended`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::model::{ExpectedVersion, NewEvent, Op};

/// The append request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    /// The precondition; `"any"` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<WireExpected>))]
    pub expected_version: Option<WireExpected>,
    /// The events, in order.
    pub events: Vec<WireEvent>,
}

/// An expected version as sent: a keyword or a version number. Decoded by
/// hand so a wrong value is described in the API's words, not as a Rust
/// enum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum WireExpected {
    /// `"any"`, `"no_stream"` or `"stream_exists"`.
    Keyword(String),
    /// An exact version (0 = no stream).
    Exact(u64),
}

impl WireExpected {
    /// The precondition, or `None` for a keyword the API does not know.
    pub fn parse(&self) -> Option<ExpectedVersion> {
        match self {
            WireExpected::Exact(v) => Some(ExpectedVersion::Exact(*v)),
            WireExpected::Keyword(k) => match k.as_str() {
                "any" => Some(ExpectedVersion::Any),
                "no_stream" => Some(ExpectedVersion::NoStream),
                "stream_exists" => Some(ExpectedVersion::StreamExists),
                _ => None,
            },
        }
    }
}

impl<'de> Deserialize<'de> for WireExpected {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(WireExpectedVisitor)
    }
}

/// Reads a keyword (any string; unknown ones are refused by
/// [`WireExpected::parse`]) or a non-negative integer.
struct WireExpectedVisitor;

impl serde::de::Visitor<'_> for WireExpectedVisitor {
    type Value = WireExpected;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(
            "expected_version: \"any\", \"no_stream\", \"stream_exists\" or a version number (an integer from 0)",
        )
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<WireExpected, E> {
        Ok(WireExpected::Exact(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<WireExpected, E> {
        u64::try_from(v)
            .map(WireExpected::Exact)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<WireExpected, E> {
        Ok(WireExpected::Keyword(v.to_string()))
    }
}

impl From<ExpectedVersion> for WireExpected {
    fn from(e: ExpectedVersion) -> Self {
        let keyword = |k: &str| WireExpected::Keyword(k.to_string());
        match e {
            ExpectedVersion::Any => keyword("any"),
            ExpectedVersion::NoStream => keyword("no_stream"),
            ExpectedVersion::StreamExists => keyword("stream_exists"),
            ExpectedVersion::Exact(v) => WireExpected::Exact(v),
        }
    }
}

/// One event as sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WireEvent {
    /// Idempotency key; generated when absent (then a retry is not
    /// idempotent: send ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<String>, example = "0190a6f0-0000-7000-8000-000000000001")
    )]
    pub id: Option<Uuid>,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Entity operation: `event` (default), `create`, `update` or `delete`.
    #[serde(default, skip_serializing_if = "is_plain")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub op: Op,
    /// Entity key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// The payload, any JSON value, kept as written.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Box<RawValue>,
    /// String metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// `op` is left out when it is the default, as clients usually send it.
fn is_plain(op: &Op) -> bool {
    *op == Op::Event
}

impl From<WireEvent> for NewEvent {
    fn from(w: WireEvent) -> Self {
        NewEvent {
            id: w.id,
            event_type: w.event_type,
            op: w.op,
            entity: w.entity,
            payload: w.payload.get().to_string(),
            metadata: w.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_versions_round_trip_through_their_wire_form() {
        for e in [
            ExpectedVersion::Any,
            ExpectedVersion::NoStream,
            ExpectedVersion::StreamExists,
            ExpectedVersion::Exact(7),
        ] {
            assert_eq!(WireExpected::from(e).parse(), Some(e));
        }
        assert_eq!(WireExpected::Keyword("maybe".into()).parse(), None);
        let read = |t: &str| serde_json::from_str::<WireExpected>(t).map_err(|e| e.to_string());
        assert_eq!(read("7"), Ok(WireExpected::Exact(7)));
        assert_eq!(read(r#""any""#), Ok(WireExpected::Keyword("any".into())));
        for bad in ["0.0", "-1", "null", "[]", "true", "18446744073709551616"] {
            let message = read(bad).err().unwrap_or_default();
            assert!(
                message.contains("expected_version: \"any\""),
                "{bad}: {message}"
            );
            assert!(!message.contains("WireExpected"), "{message}");
        }
    }

    #[test]
    fn an_event_keeps_its_payload_text_and_omits_defaults() {
        let text = r#"{"type":"t","payload":{"b":1, "a":2}}"#;
        let w: WireEvent = serde_json::from_str(text).expect("valid");
        assert_eq!(w.payload.get(), r#"{"b":1, "a":2}"#);
        assert_eq!(
            serde_json::to_string(&w).expect("serializes"),
            r#"{"type":"t","payload":{"b":1, "a":2}}"#
        );
    }
}
