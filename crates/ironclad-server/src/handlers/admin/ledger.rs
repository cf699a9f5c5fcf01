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
use ironclad::{VerifyError, VerifyOptions};
use ironclad_core::wire::{LeasesResponse, VerifyRequest, VerifyResponse};

use super::body::json_body;
use crate::error::ErrorEnvelope;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::blocking::blocking;
use crate::state::AppState;

/// Counter: ledger verifications that found a mismatch (SPEC §9 "Ledger").
pub const LEDGER_VERIFY_FAILURES_TOTAL: &str = "ironclad_ledger_verify_failures_total";

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
    let req: VerifyRequest = json_body(
        body,
        true,
        "send {\"stream\": NAME}, {\"against\": {\"position\": N, \"hash\": HEX}} or nothing",
    )?;
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
        Err(VerifyError::Store(s)) => Err(super::errors::store_error(s)),
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
