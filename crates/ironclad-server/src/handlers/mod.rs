//! The router: one module per endpoint group, each behind its access check
//! ([`guard::require`]). Each group exposes `router(state)`; this file only
//! merges them. What every group shares lives beside it and depends on no
//! group: the access check ([`guard`]) and the one way to run blocking work
//! ([`blocking`]).

pub mod admin;
pub mod blocking;
pub mod guard;
pub mod ingest;
pub(crate) mod json;
pub mod ops;
pub mod subscribe;

use axum::Router;

use crate::state::AppState;

/// Builds the whole API.
pub fn router(state: AppState) -> Router {
    let subs = subscribe::Subscriptions::new(state.clone(), Default::default());
    router_with(state, subs)
}

/// Builds the whole API over `subs` (keep a clone to flush consumer
/// checkpoints at shutdown).
pub fn router_with(state: AppState, subs: subscribe::Subscriptions) -> Router {
    Router::new()
        .merge(ingest::router(state.clone()))
        .merge(subscribe::router_with(subs))
        .merge(admin::router(state.clone()))
        .merge(ops::router(state, crate::openapi::document_json_for))
}
