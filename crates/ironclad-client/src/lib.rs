//! A Rust client for `ironclad serve` (SPEC §6 "Rust client").
//!
//! - [`Client`]: a typed client for the HTTP API (ingest, read, poll,
//!   consumers, admin), answering with the core's [`wire`] types. Errors
//!   carry the server's stable error code.
//! - [`realtime::RealtimeClient`]: a live subscription that reconnects with
//!   backoff and jitter, resumes from the last position it saw, and falls
//!   back to long-polling when the WebSocket keeps failing.
//!
//! Events are returned as the server's JSON text, byte for byte
//! ([`serde_json::value::RawValue`]), so a caller can print them exactly as
//! `ironclad read` does locally, and parse only what it needs
//! ([`EventPosition`]).

pub mod api;
pub mod realtime;

pub use api::{Client, ClientError, EventPosition};
/// The wire contract the client speaks, declared once in the core (the
/// server serializes the same types).
pub use ironclad_core::wire;
pub use ironclad_core::wire::{PollPage, WireExpected};
/// The core values the wire types carry (a DLQ entry's row and event, a
/// stream or ledger head, a ledger mismatch).
pub use ironclad_core::{
    delivery::state::{DlqReason, DlqRow},
    ledger::{LedgerMismatch, MismatchKind},
    model::{LedgerHead, RecordedEvent, StreamHead},
};
/// The former names of the append types, kept for callers.
pub use ironclad_core::{
    model::{AppendResult as AppendOutcome, EventAck as AppendAck},
    wire::{AppendRequest as AppendBody, ReadPage as Page, WireEvent as EventBody},
};
