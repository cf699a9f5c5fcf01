//! A Rust client for `ironclad serve` (SPEC §6 "Rust client").
//!
//! - [`Client`]: a typed client for the HTTP API (ingest, read, poll,
//!   consumers, admin). Errors carry the server's stable error code.
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

pub use api::{
    AppendAck, AppendBody, AppendOutcome, Client, ClientError, EventBody, EventPosition, Page,
    PollPage,
};
