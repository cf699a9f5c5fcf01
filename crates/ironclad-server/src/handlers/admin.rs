//! Endpoint group `admin` (SPEC §6 "Admin"): the dead-letter queue (stats,
//! list, export, show, retry, purge), sinks and their circuits, emergency
//! dumps, ledger verification and leases. Every route needs an `admin`
//! token ([`Access::Admin`]); bodies and answers are JSON (the DLQ export
//! is JSON lines); failures are [`ApiError`]s with stable codes
//! (`docs/api-admin.md`).
//!
//! The handlers only decode, check and translate: the operations themselves
//! are the library's (`ironclad::delivery::dlq`, the engine's controls,
//! `Journal::replay_dump`, `LogReader::verify`), the same ones the CLI runs.
//! Store reads run on the blocking pool, never on the async workers.

mod body;
pub mod dlq;
pub mod dumps;
mod errors;
pub mod ledger;
pub mod sinks;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::auth::Access;
use crate::handlers::guard::require;
use crate::state::AppState;

pub use body::ADMIN_BODY_BYTES_MAX;

/// The group's routes, all behind [`Access::Admin`].
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/admin/dlq/stats", get(dlq::stats))
        .route("/v1/admin/dlq", get(dlq::list))
        .route("/v1/admin/dlq/export", get(dlq::export))
        .route("/v1/admin/dlq/retry", post(dlq::retry))
        .route("/v1/admin/dlq/purge", post(dlq::purge))
        .route("/v1/admin/dlq/{sink}/{position}", get(dlq::show))
        .route("/v1/admin/sinks", get(sinks::list))
        .route("/v1/admin/sinks/{sink}/circuit", post(sinks::circuit))
        .route("/v1/admin/dumps", get(dumps::list))
        .route("/v1/admin/dumps/{name}/replay", post(dumps::replay))
        .route("/v1/admin/ledger/verify", post(ledger::verify))
        .route("/v1/admin/leases", get(ledger::leases))
        .layer(DefaultBodyLimit::max(ADMIN_BODY_BYTES_MAX))
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), Access::Admin),
            require,
        ))
        .with_state(state)
}
