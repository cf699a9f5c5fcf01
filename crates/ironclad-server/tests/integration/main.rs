//! The server crate's integration tests, in one test binary so the shared
//! helpers and the dependencies are compiled and linked once. Each module
//! is one area, as its own `//!` says. `tests/ops.rs` stays a binary of its
//! own: it asserts exact values of the process-global Prometheus recorder,
//! which the other modules' traffic would change.

mod ingest_support;

mod admin;
mod auth_ingest;
mod ingest;
mod limits;
mod openapi;
mod ready;
mod subscribe;
