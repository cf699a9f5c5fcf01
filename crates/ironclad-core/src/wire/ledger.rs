//! `POST /v1/admin/ledger/verify` and `GET /v1/admin/leases`. A failed
//! verification is the error `ledger_mismatch`, whose `details` are the
//! core [`LedgerMismatch`](crate::ledger::LedgerMismatch).

use serde::{Deserialize, Serialize};

use crate::model::LedgerHead;

/// `POST /v1/admin/ledger/verify` body; an empty body verifies everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Verify only this stream's chain (excludes `against`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// An exported head that must still be present and unchanged: detects
    /// a log truncated or rewritten since it was exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against: Option<LedgerHead>,
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyResponse {
    /// Always `true` (a mismatch is a 409 `ledger_mismatch`).
    pub ok: bool,
    /// Events whose hashes were recomputed and matched.
    pub checked: u64,
    /// The global head reached (`null` for an empty log or a stream-only check).
    pub head: Option<LedgerHead>,
}

/// `GET /v1/admin/leases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeasesResponse {
    /// `single-node`: leases exist only in the PostgreSQL scale-out mode,
    /// which is not built.
    pub mode: String,
    /// The leases held (always empty in `single-node` mode).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub leases: Vec<serde_json::Value>,
}
