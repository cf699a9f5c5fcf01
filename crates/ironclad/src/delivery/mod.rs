//! Delivery (SPEC §4): every appended event that a route sends to a sink is
//! delivered, retried, or dead-lettered, and the store always knows which.
//!
//! Pure parts (no I/O, property-tested): [`classify`], [`retry`],
//! [`budget`], [`breaker`], [`lanes`], [`plan`], [`turn`], [`settle`],
//! [`routes`], [`signature`].
//! Shells around them: [`sinks`] (HTTP, JSONL, log), the per-sink
//! [`dispatcher`], the [`engine`] that runs them, [`dlq`] operations and the
//! DLQ [`archive`].

pub mod archive;
pub mod breaker;
pub mod budget;
pub mod classify;
pub mod config;
pub mod dispatcher;
pub mod dlq;
pub mod engine;
pub mod lanes;
pub mod plan;
pub mod retry;
pub mod routes;
pub mod settle;
pub mod signature;
pub mod sink;
pub mod sinks;
pub mod status;
pub mod turn;
