//! Endpoint group `subscribe` (SPEC §6 "Subscriptions"): live WebSocket
//! subscriptions with named consumer checkpoints, and the long-polling
//! fallback. All need a consumer (or admin) token.
//!
//! - `GET /v1/subscribe?consumer=NAME&from=POSITION&streams=GLOB`
//!   (WebSocket, [`subscribe`]): streams committed events with position > the
//!   start, then live ones, as text frames
//!   `{"type":"event","event":{…}}`. The client acknowledges with
//!   `{"type":"ack","position":N}`.
//! - `GET /v1/poll?after=POSITION&wait_ms=N&limit=L&streams=GLOB`
//!   ([`poll()`]): `{"events":[…],"next":POSITION}`, waiting up to `wait_ms`
//!   when there is nothing yet.
//! - `POST /v1/consumers/{name}/ack` `{"position":N}`: moves a consumer's
//!   checkpoint to `N` (cumulative: "everything up to N is handled") and
//!   answers once it is durable, `{"consumer","position"}`.
//! - `GET /v1/consumers/{name}`: the stored checkpoint,
//!   `{"consumer","position","updated_at_us"}`, or 404.
//!
//! `streams` is one glob over stream names with the syntax of delivery
//! routes (`ironclad::delivery::routes`): `*`, `?`, `[a-z]`, `{a,b}`, `\`.
//!
//! # Decoupled from ingest
//!
//! Subscribers never receive events from the writer. A session waits on
//! the journal's committed-head watch (one `u64` that the writer updates
//! after each group commit; updating it never blocks) and then reads the
//! committed events from the store in pages, on its own task. A subscriber
//! that is slow, stuck or gone therefore cannot hold the writer or the
//! ingest queue back: at worst it falls behind, its bounded outgoing
//! buffer fills, and it is disconnected with the reason
//! `slow consumer: buffer of N events full`. It resumes from its
//! checkpoint (or `Last-Event-ID`) when it reconnects.

pub(crate) mod poll;
pub(crate) mod ws;

mod subscriptions;

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;

use crate::auth::Access;
use crate::config::SubscribeConfig;
use crate::handlers::guard::require;
use crate::state::AppState;

pub use poll::{consumer, consumer_ack, poll};
pub use subscriptions::Subscriptions;
pub use ws::subscribe;

/// The group's routes, with the default [`SubscribeConfig`].
pub fn router(state: AppState) -> Router {
    router_with(Subscriptions::new(state, SubscribeConfig::default()))
}

/// The group's routes over `subs` (keep a clone to flush checkpoints at
/// shutdown).
pub fn router_with(subs: Subscriptions) -> Router {
    let guard = from_fn_with_state((subs.app.clone(), Access::Subscribe), require);
    Router::new()
        .route("/v1/subscribe", get(ws::subscribe))
        .route("/v1/poll", get(poll::poll))
        .route("/v1/consumers/{name}", get(poll::consumer))
        .route("/v1/consumers/{name}/ack", post(poll::consumer_ack))
        .route_layer(guard)
        .with_state(subs)
}
