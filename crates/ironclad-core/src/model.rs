//! The event envelope and the small value types every layer shares.
//!
//! This module owns the *shape* of data only. It knows nothing about storage,
//! hashing or validation rules; those live in `store`, `hash` and `validate`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A SHA-256 digest as stored in the ledger columns.
pub type Hash = [u8; 32];

/// The all-zero hash that precedes the first event of every chain.
pub const ZERO_HASH: Hash = [0u8; 32];

/// What an event does to its entity (SPEC §1). `Event` is a plain fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A plain event with no entity semantics.
    #[default]
    Event,
    /// Creates the entity.
    Create,
    /// Updates the entity.
    Update,
    /// Deletes the entity.
    Delete,
}

impl Op {
    /// The stable one-byte code used on disk and in the canonical hash encoding.
    pub fn code(self) -> u8 {
        match self {
            Op::Event => 0,
            Op::Create => 1,
            Op::Update => 2,
            Op::Delete => 3,
        }
    }

    /// Inverse of [`Op::code`]; `None` for an unknown code (a corrupt row).
    pub fn from_code(code: u8) -> Option<Op> {
        match code {
            0 => Some(Op::Event),
            1 => Some(Op::Create),
            2 => Some(Op::Update),
            3 => Some(Op::Delete),
            _ => None,
        }
    }

    /// The lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Event => "event",
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// The precondition an append places on its stream's current version (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "version")]
pub enum ExpectedVersion {
    /// No precondition.
    Any,
    /// The stream must not exist yet (equivalently: be at version 0).
    NoStream,
    /// The stream must already hold at least one event.
    StreamExists,
    /// The stream's last version must be exactly this. `Exact(0)` means "no stream".
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("stream exists"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// An event as a producer hands it to `ironclad::Journal::append`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Idempotency key. `None` means "generate a UUIDv7 at enqueue time".
    #[serde(default)]
    pub id: Option<Uuid>,
    /// A short type name, e.g. `order.placed`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The entity operation; `event` for plain events.
    #[serde(default)]
    pub op: Op,
    /// Optional entity key: the ordering lane and coalescing key.
    #[serde(default)]
    pub entity: Option<String>,
    /// The payload as JSON text. Stored and hashed byte for byte as given,
    /// except that insignificant whitespace outside strings is removed.
    pub payload: String,
    /// String metadata; kept sorted so hashing is deterministic.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl NewEvent {
    /// A plain event with a generated id. `payload` must be JSON text; it is
    /// validated at append time, not here.
    pub fn new(event_type: impl Into<String>, payload: impl Into<String>) -> Self {
        NewEvent {
            id: None,
            event_type: event_type.into(),
            op: Op::Event,
            entity: None,
            payload: payload.into(),
            metadata: BTreeMap::new(),
        }
    }

    /// A plain event from a `serde_json::Value`.
    pub fn from_value(event_type: impl Into<String>, payload: &serde_json::Value) -> Self {
        Self::new(event_type, payload.to_string())
    }

    /// Sets the idempotency key.
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the entity operation and key.
    pub fn with_entity(mut self, op: Op, entity: impl Into<String>) -> Self {
        self.op = op;
        self.entity = Some(entity.into());
        self
    }

    /// Adds one metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Approximate bytes this event holds in memory while queued; used for the
    /// byte bound of the ingest queue and of one append. Strings count as
    /// JSON-escaped and the overheads cover the JSON keys, so this also
    /// bounds the event's line in an emergency dump (payloads are written
    /// verbatim).
    pub fn queued_bytes(&self) -> usize {
        use crate::validate::json_string_bytes;
        const OVERHEAD_BYTES: usize = 128;
        OVERHEAD_BYTES
            + json_string_bytes(&self.event_type)
            + self.entity.as_deref().map_or(0, json_string_bytes)
            + self.payload.len()
            + self
                .metadata
                .iter()
                .map(|(k, v)| json_string_bytes(k) + json_string_bytes(v) + 16)
                .sum::<usize>()
    }
}

/// An event as stored: the full envelope of SPEC §1. Deserializing keeps
/// the payload's text verbatim, so an event read back from the API
/// re-serializes to the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// The idempotency key.
    pub id: Uuid,
    /// The stream name.
    pub stream: String,
    /// 1-based version within the stream.
    pub version: u64,
    /// Global position, strictly increasing across the store.
    pub position: u64,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The entity operation.
    pub op: Op,
    /// The entity key, if any.
    pub entity: Option<String>,
    /// Payload JSON text, emitted as raw JSON when serialized.
    #[serde(
        serialize_with = "serialize_raw_json",
        deserialize_with = "deserialize_raw_json"
    )]
    pub payload: String,
    /// String metadata.
    pub metadata: BTreeMap<String, String>,
    /// Commit time in microseconds since the Unix epoch.
    pub created_at_us: i64,
    /// The hashing algorithm version (see `docs/hashing.md`).
    pub hash_version: u32,
    /// The previous event's hash in this stream, or zeros for version 1.
    #[serde(with = "hex_hash")]
    pub prev_hash: Hash,
    /// This event's stream-chain hash.
    #[serde(with = "hex_hash")]
    pub hash: Hash,
    /// This event's global-chain hash (ordered by position).
    #[serde(with = "hex_hash")]
    pub global_hash: Hash,
}

/// Where one appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventAck {
    /// The event id.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub id: Uuid,
    /// Its stream version.
    pub version: u64,
    /// Its global position.
    pub position: u64,
}

/// Whether an append wrote new events or found them already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AppendStatus {
    /// The events were written by this call.
    Appended,
    /// Every id was already present with identical content; nothing was written.
    AlreadyAppended,
}

/// The successful result of an append: durable once returned. Also the
/// API's answer to an append (201 `appended`, 200 `already_appended`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppendResult {
    /// Appended now, or already present.
    pub status: AppendStatus,
    /// One ack per event, in the order given.
    pub events: Vec<EventAck>,
}

/// A stream's current head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHead {
    /// The stream name.
    pub stream: String,
    /// The last version written (≥ 1).
    pub version: u64,
    /// The hash of that last event.
    #[serde(with = "hex_hash")]
    pub hash: Hash,
}

/// The global ledger head: export it, keep it elsewhere, and pass it back to
/// `ledger verify --against` to detect truncation or rewriting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerHead {
    /// The last position written.
    pub position: u64,
    /// The global-chain hash at that position, 64 lowercase hex digits.
    #[serde(with = "hex_hash")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub hash: Hash,
}

fn serialize_raw_json<S: serde::Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    // Emit the stored bytes verbatim (key order, whitespace and number
    // spelling preserved) so the output can be re-hashed. Stored payloads
    // were validated at append time; a row edited into invalid JSON is
    // emitted as a string rather than failing the whole read.
    match serde_json::value::RawValue::from_string(text.to_owned()) {
        Ok(raw) => raw.serialize(s),
        Err(_) => s.serialize_str(text),
    }
}

fn deserialize_raw_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    // The payload's text as sent, not a re-encoding: key order, whitespace
    // and number spelling are what the hash covered.
    let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
    Ok(raw.get().to_string())
}

/// Serde helper: hashes as lowercase hex strings.
pub mod hex_hash {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes a hash as 64 lowercase hex characters.
    pub fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    /// Parses 64 hex characters into a hash.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}
