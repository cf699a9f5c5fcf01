//! The one error shape of the API: `{"error": {"code", "message",
//! "details"}}`. The codes themselves (and their HTTP statuses) are the
//! server's `ErrorCode`; on the wire a code is its stable string
//! (`docs/api-errors.md`), so a client keeps working when a server adds one.

use serde::{Deserialize, Serialize};

/// The body of every failed request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorObject,
}

/// The `error` object of [`ErrorEnvelope`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorObject {
    /// The stable code (see `docs/api-errors.md`).
    pub code: String,
    /// What happened and what to do next, for a person.
    pub message: String,
    /// Structured context, for a program (`{}` when there is none).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}
