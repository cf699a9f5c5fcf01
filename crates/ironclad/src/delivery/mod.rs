//! Delivery (SPEC §4): every appended event that a route sends to a sink is
//! delivered, retried, or dead-lettered, and the store always knows which.
//!
//! The decisions live in the decision core and are re-exported here under
//! their old paths: [`classify`], [`retry`], [`budget`], [`breaker`],
//! [`lanes`], [`plan`], [`turn`], [`settle`], [`routes`], [`signature`].
//! This module holds the shells around them: [`sinks`] (HTTP, JSONL, log),
//! the per-sink [`dispatcher`] (a driver of [`turn`] and [`plan`]), the
//! [`engine`] that runs them, [`dlq`] operations, the DLQ [`archive`], the
//! [`config`] loader and [`status`].

pub use ironclad_core::delivery::{
    breaker, budget, classify, lanes, plan, response, retry, routes, settle, signature, state, turn,
};

pub mod archive;
pub mod config;
pub mod dispatcher;
pub mod dlq;
pub mod engine;
pub mod sink;
pub mod sinks;
pub mod status;
