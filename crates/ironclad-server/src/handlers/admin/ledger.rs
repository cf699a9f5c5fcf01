//! `POST /v1/admin/ledger/verify` (recompute the hash chains, optionally of
//! one stream or against an exported head) and `GET /v1/admin/leases`.
//!
//! Leases belong to the PostgreSQL scale-out mode (SPEC §8), which is not
//! built: this server is single-node, holds no lease, and says so rather
//! than inventing one.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use ironclad::{LedgerHead, VerifyError, VerifyOptions};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::json_body;
use super::errors::internal;
use crate::error::ErrorEnvelope;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::blocking::blocking;
use crate::state::AppState;

/// Counter: ledger verifications that found a mismatch (SPEC §9 "Ledger").
pub const LEDGER_VERIFY_FAILURES_TOTAL: &str = "ironclad_ledger_verify_failures_total";

/// A global ledger head, as `ironclad ledger head` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LedgerHeadBody {
    /// The position.
    pub position: u64,
    /// The global-chain hash at that position, 64 lowercase hex digits.
    pub hash: String,
}

/// `POST /v1/admin/ledger/verify` body; an empty body verifies everything.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Verify only this stream's chain (excludes `against`).
    pub stream: Option<String>,
    /// An exported head that must still be present and unchanged: detects
    /// a log truncated or rewritten since it was exported.
    #[schema(value_type = Option<LedgerHeadBody>)]
    pub against: Option<LedgerHead>,
}

/// A successful verification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerifyResponse {
    /// Always `true` (a mismatch is a 409 `ledger_mismatch`).
    pub ok: bool,
    /// Events whose hashes were recomputed and matched.
    pub checked: u64,
    /// The global head reached (`null` for an empty log or a stream-only check).
    #[schema(value_type = Option<LedgerHeadBody>)]
    pub head: Option<LedgerHead>,
}

/// `GET /v1/admin/leases`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeasesResponse {
    /// `single-node`: leases exist only in the PostgreSQL scale-out mode,
    /// which is not built.
    pub mode: String,
    /// The leases held (always empty in `single-node` mode).
    #[schema(value_type = Vec<Object>)]
    pub leases: Vec<serde_json::Value>,
}

/// Recomputes the hash chains and reports the first mismatch.
#[utoipa::path(
    post,
    path = "/v1/admin/ledger/verify",
    tag = "admin",
    security(("bearer" = [])),
    request_body(content = Option<VerifyRequest>, description = "Optional: empty verifies every chain"),
    responses(
        (status = 200, description = "The ledger verifies", body = VerifyResponse),
        (status = 400, description = "`invalid_json`, or `invalid_request` (bad stream name, stream with against)", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin token", body = ErrorEnvelope),
        (status = 409, description = "`ledger_mismatch`: `details` is the first mismatch (kind, stream, version, position, expected, actual)", body = ErrorEnvelope),
        (status = 413, description = "`body_too_large`", body = ErrorEnvelope),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let req: VerifyRequest = json_body(body, true)?;
    let opts = VerifyOptions {
        stream: req.stream,
        against: req.against,
    };
    let journal = state.journal.clone();
    let result = blocking(move || Ok(journal.verify(&opts, &mut |_| {}))).await?;
    match result {
        Ok(report) => Ok(Json(VerifyResponse {
            ok: true,
            checked: report.checked,
            head: report.head,
        })),
        Err(VerifyError::Mismatch(m)) => {
            metrics::counter!(LEDGER_VERIFY_FAILURES_TOTAL).increment(1);
            let details = serde_json::to_value(&*m).unwrap_or_default();
            Err(ApiError::new(
                ErrorCode::LedgerMismatch,
                format!("ledger verification failed: {m}"),
            )
            .with_details(details))
        }
        Err(e @ (VerifyError::Usage(_) | VerifyError::Invalid(_))) => {
            Err(ApiError::new(ErrorCode::InvalidRequest, e.to_string()))
        }
        Err(e) => Err(internal(e.to_string())),
    }
}

/// The leases this node holds: none, in `single-node` mode.
#[utoipa::path(
    get,
    path = "/v1/admin/leases",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Always `{\"mode\": \"single-node\", \"leases\": []}` until the PostgreSQL scale-out mode exists", body = LeasesResponse),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin token", body = ErrorEnvelope),
    )
)]
pub async fn leases() -> Json<LeasesResponse> {
    Json(LeasesResponse {
        mode: "single-node".to_string(),
        leases: Vec::new(),
    })
}
