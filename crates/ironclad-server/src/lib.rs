//! Ironclad's server (SPEC §6): the HTTP ingest and read API, admin and
//! operations endpoints, bearer-token authentication and request limits,
//! over one embedded [`ironclad::Journal`] and, when configured, one
//! [`ironclad::delivery::engine::DeliveryEngine`].
//!
//! The server is a thin shell: handlers decode and check a request, call the
//! library, and map its typed errors onto stable JSON error codes
//! ([`error`]). It must not know SQL, the writer thread or sink internals.

pub mod alloc_trim;
pub mod auth;
pub mod body_budget;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod handlers;
pub mod head_errors;
pub mod openapi;
pub mod origin;
pub mod serve;
pub mod state;

pub use config::{ServerConfig, ServerConfigError};
pub use error::{ApiError, ErrorCode};
pub use state::AppState;
