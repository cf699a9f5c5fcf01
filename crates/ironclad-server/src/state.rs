//! What every handler shares.

use std::sync::Arc;

use ironclad::delivery::engine::DeliveryEngine;
use ironclad::store::sqlite::SqliteStore;
use ironclad::Journal;

use crate::auth::Auth;
use crate::config::ServerConfig;

/// Shared server state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The journal (and through it the store).
    pub journal: Journal,
    /// The delivery engine, when sinks are configured.
    pub engine: Option<Arc<DeliveryEngine<SqliteStore>>>,
    /// The configuration the server runs with.
    pub config: Arc<ServerConfig>,
    /// Token table.
    pub auth: Arc<Auth>,
}
