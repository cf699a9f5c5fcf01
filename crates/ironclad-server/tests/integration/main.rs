//! The server crate's integration tests, in one test binary so the shared
//! helpers and the dependencies are compiled and linked once. Each module
//! is one area, as its own `//!` says. `tests/ops.rs` stays a binary of its
//! own: it asserts exact values of the process-global Prometheus recorder,
//! which the other modules' traffic would change.

mod ingest_support;
mod served;

mod admin;
mod auth_ingest;
mod body_budget;
mod consumers;
mod head_errors;
mod ingest;
mod limits;
mod openapi;
mod origin;
mod ready;
mod subscribe;
