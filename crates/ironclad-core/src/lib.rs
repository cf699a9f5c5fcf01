//! Ironclad's decision core: everything that decides something, as pure
//! functions and plain values. No I/O, no clock, no randomness: time and
//! random draws are arguments, so every decision can be replayed in a test.
//!
//! Architecture Invariant: this crate's normal dependencies include none of
//! tokio, rusqlite, reqwest, axum, hyper, metrics or tracing
//! (`tests/dependency_ban.rs` fails the build otherwise). The stateful
//! shells (the SQLite store, the journal's writer thread, the dispatcher's
//! driver, the server) live in `ironclad` and call into this crate.
#![warn(missing_docs)]

pub mod ack;
pub mod consumer;
pub mod delivery;
pub mod expected;
pub mod hash;
pub mod idempotency;
pub mod ledger;
pub mod model;
pub mod validate;
pub mod wire;
