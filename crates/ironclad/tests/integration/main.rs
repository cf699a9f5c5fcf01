//! The `ironclad` crate's integration tests, in one test binary so the
//! shared helpers and the dependencies are compiled and linked once.
//!
//! Each module is one area, as its own file's `//!` says. Tests that
//! re-exec this binary as a child process (`common::spawn_self`) name the
//! child test by its full path (`crash::crash_child`). The two tests that
//! install a process-global metrics recorder (`tests/metrics.rs`,
//! `tests/delivery_metrics.rs`) stay in binaries of their own: one
//! recorder per process, and nothing else recording into it.

mod common;
mod delivery_harness;

mod bad_input;
mod concurrency;
mod crash;
mod damaged_file;
mod delivery;
mod delivery_breaker;
mod delivery_crash;
mod delivery_dlq;
mod delivery_dlq_archive;
mod delivery_lanes;
mod delivery_model;
mod delivery_recovery;
mod delivery_smoke;
mod disk_full;
mod disk_recovery;
mod emergency;
mod faults;
mod idempotency_props;
mod lock;
mod migrations;
mod sinks;
mod submit;
mod tamper;
