//! The idempotency rule (SPEC §2 "Idempotent appends"), one decision for
//! every backend: given an append and what the store found under its ids,
//! is it new, a resend of something already committed, or a conflict?
//!
//! A store looks up each id of the append (inside the write transaction,
//! so the answer cannot change before the commit) and hands the rows to
//! [`decide`]. The store only fetches; which field differs, how partially
//! present ids become a conflict and how a stored integer decodes are
//! decided here, so SQLite and PostgreSQL cannot drift apart.
//!
//! The rule:
//! - no id stored: [`Decision::New`], the append goes ahead (the
//!   expected-version check still applies);
//! - every id stored with the same stream, type, op, entity, payload and
//!   metadata: [`Decision::Resend`], acknowledged as `AlreadyAppended` with
//!   the stored versions and positions;
//! - some id stored with a different field: a conflict naming the first
//!   such id and field (checked before partial presence, because it is the
//!   more specific answer);
//! - some ids stored and some not: a conflict, since an append is
//!   all-or-nothing and a partial match cannot be a resend of one.

use std::collections::BTreeMap;

use serde::Serialize;
use thiserror::Error;
use uuid::Uuid;

use crate::expected::WrongExpectedVersion;
use crate::model::{AppendResult, AppendStatus, EventAck, ExpectedVersion, NewEvent, Op};

/// One validated append, with every event id resolved.
#[derive(Debug, Clone)]
pub struct PreparedAppend {
    /// Target stream (already validated).
    pub stream: String,
    /// The precondition, checked inside the write transaction.
    pub expected: ExpectedVersion,
    /// `ids[i]` is the id of `events[i]`: given by the client or generated.
    pub ids: Vec<Uuid>,
    /// The events (their own `id` field is ignored in favour of `ids`).
    pub events: Vec<NewEvent>,
}

/// Why the store refused one append of a batch. The rest of the batch is
/// unaffected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AppendRejection {
    /// The expected-version precondition failed.
    WrongExpectedVersion(WrongExpectedVersion),
    /// An id exists with different content, or only some ids exist.
    IdempotencyConflict {
        /// The first offending id.
        id: Uuid,
        /// What differs.
        detail: String,
    },
}

/// Per-append result of a batch commit.
pub type AppendOutcome = Result<AppendResult, AppendRejection>;

/// An event as a store found it under one of the append's ids, with the
/// integers as the store keeps them (SQL has signed 64-bit integers only);
/// [`decide`] decodes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The stream's name.
    pub stream: String,
    /// The event type.
    pub event_type: String,
    /// [`Op::code`] as stored.
    pub op_code: i64,
    /// The entity key.
    pub entity: Option<String>,
    /// The payload text as stored.
    pub payload: String,
    /// The metadata, decoded by the store from its own text format.
    pub metadata: BTreeMap<String, String>,
    /// The stream version as stored.
    pub version: i64,
    /// The global position as stored.
    pub position: i64,
}

/// What to do with an append, given what is stored under its ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// None of its ids is stored: append it (subject to the expected
    /// version).
    New,
    /// Every id is stored with identical content: acknowledge it as already
    /// appended, with the stored versions and positions.
    Resend(AppendResult),
    /// Refuse it.
    Conflict(AppendRejection),
}

/// A stored value that cannot be what the store wrote: the database is
/// damaged or was edited by hand. Stores map it to their `Corrupt` error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("event {id} is stored with an invalid {field} ({value}): the database is damaged or was edited; run `ironclad ledger verify` and restore from a backup")]
pub struct CorruptStoredEvent {
    /// The event's id.
    pub id: Uuid,
    /// The column that does not decode.
    pub field: &'static str,
    /// The stored value.
    pub value: i64,
}

/// Decides whether `append` is new, a resend or a conflict. `stored[i]` is
/// what the store holds under `append.ids[i]` (`None`: nothing). A stored
/// op, version or position that does not decode is an error, never a
/// default.
///
/// # Errors
/// [`CorruptStoredEvent`] for the first stored row that does not decode.
pub fn decide(
    append: &PreparedAppend,
    stored: &[Option<StoredEvent>],
) -> Result<Decision, CorruptStoredEvent> {
    debug_assert_eq!(append.ids.len(), append.events.len());
    debug_assert_eq!(append.ids.len(), stored.len());
    let mut acks = Vec::with_capacity(append.ids.len());
    let mut missing = None;
    let mut differs = None;
    for ((id, event), row) in append.ids.iter().zip(&append.events).zip(stored) {
        let Some(row) = row else {
            missing.get_or_insert(*id);
            continue;
        };
        let ack = decode(*id, row)?;
        if let Some(field) = differing_field(&append.stream, event, row, ack.1) {
            differs.get_or_insert((*id, field));
        }
        acks.push(ack.0);
    }
    let decision = if acks.is_empty() {
        Decision::New
    } else if let Some((id, field)) = differs {
        Decision::Conflict(AppendRejection::IdempotencyConflict {
            id,
            detail: format!("this id was already appended with a different {field}"),
        })
    } else if let Some(id) = missing {
        Decision::Conflict(AppendRejection::IdempotencyConflict {
            id,
            detail: format!(
                "{} of this append's {} ids were already appended, but not this one; an append is all-or-nothing, so resend exactly the original events or use new ids",
                acks.len(),
                append.ids.len()
            ),
        })
    } else {
        Decision::Resend(AppendResult {
            status: AppendStatus::AlreadyAppended,
            events: acks,
        })
    };
    debug_assert!(
        !matches!(decision, Decision::Resend(ref r) if r.events.len() != append.ids.len()),
        "a resend acknowledges every id"
    );
    Ok(decision)
}

/// Decodes a stored row's integers into its acknowledgement and op.
fn decode(id: Uuid, row: &StoredEvent) -> Result<(EventAck, Op), CorruptStoredEvent> {
    let corrupt = |field, value| CorruptStoredEvent { id, field, value };
    let op = u8::try_from(row.op_code)
        .ok()
        .and_then(Op::from_code)
        .ok_or_else(|| corrupt("op", row.op_code))?;
    let version = u64::try_from(row.version)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| corrupt("version", row.version))?;
    let position = u64::try_from(row.position)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| corrupt("position", row.position))?;
    Ok((
        EventAck {
            id,
            version,
            position,
        },
        op,
    ))
}

/// The first field, in the order the conflict message reports them, in
/// which the stored event differs from the one being appended.
fn differing_field(
    stream: &str,
    event: &NewEvent,
    row: &StoredEvent,
    stored_op: Op,
) -> Option<&'static str> {
    if row.stream != stream {
        Some("stream")
    } else if row.event_type != event.event_type {
        Some("type")
    } else if stored_op != event.op {
        Some("op")
    } else if row.entity != event.entity {
        Some("entity")
    } else if row.payload != event.payload {
        Some("payload")
    } else if row.metadata != event.metadata {
        Some("metadata")
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
