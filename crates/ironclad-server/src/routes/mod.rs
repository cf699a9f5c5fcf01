//! The router: one module per endpoint group, each behind its access check
//! ([`crate::auth::require`]). Each module exposes `router(state)`; this
//! file only merges them.

pub mod admin;
pub mod ingest;
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
        .merge(ops::router(state))
}
