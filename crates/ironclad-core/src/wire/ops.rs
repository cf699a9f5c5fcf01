//! The operations endpoints' answers: `/healthz` and `/readyz`.

use serde::{Deserialize, Serialize};

/// `/healthz` and `/readyz` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthResponse {
    /// `ok` (healthz) or `ready` (readyz).
    pub status: String,
}
