//! The `ironclad` binary's integration tests, in one test binary so the
//! shared helpers and the dependencies are compiled and linked once. Each
//! module runs the real binary (`CARGO_BIN_EXE_ironclad`) against real data
//! directories and servers, as its own `//!` says.

mod serve_support;

mod cli;
mod cli_delivery;
mod cli_json;
mod cli_rough_edges;
mod realtime;
mod realtime_consumer;
mod remote;
mod serve_auth;
mod serve_disk;
mod serve_ingest;
mod serve_limits;
