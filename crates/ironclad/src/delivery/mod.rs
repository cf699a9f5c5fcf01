//! Delivery (SPEC §4): every appended event that a route sends to a sink is
//! delivered, retried, or dead-lettered, and the store always knows which.
//!
//! The decisions live in the decision core and are re-exported here under
//! their old paths: [`classify`], [`retry`], [`budget`], [`breaker`],
//! [`lanes`], [`settle`], [`routes`], [`signature`]. This module holds the
//! shells around them: [`sinks`] (HTTP, JSONL, log), the per-sink
//! [`dispatcher`] (whose decisions are [`turn`] and [`plan`]), the
//! [`engine`] that runs them, [`dlq`] operations, the DLQ [`archive`], the
//! [`config`] loader and [`status`].

pub use ironclad_core::delivery::{
    breaker, budget, classify, lanes, response, retry, routes, settle, signature, state,
};

pub mod archive;
pub mod config;
pub mod dispatcher;
pub mod dlq;
pub mod engine;
pub mod plan;
pub mod sink;
pub mod sinks;
pub mod status;
pub mod turn;
