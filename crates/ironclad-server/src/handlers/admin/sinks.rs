//! `/v1/admin/sinks…`: every sink's status with its live circuit, and the
//! operator's circuit actions (force-open, close, reset, disable). These
//! need the delivery engine this server runs: without one they answer
//! `not_found` (the DLQ endpoints work either way).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::Json;
use ironclad::delivery::engine::CircuitAction;
use ironclad_core::wire::{CircuitActionBody, CircuitRequest, CircuitResponse, SinksResponse};

use super::body::json_body;
use super::errors::{admin_error, bad_path, internal, no_engine};
use crate::error::ApiError;
use crate::error::ErrorEnvelope;
use crate::handlers::blocking::blocking;
use crate::state::AppState;

/// The engine's action for the wire's (the engine may not depend on the
/// wire contract, nor the contract on the engine).
fn circuit_action(a: CircuitActionBody) -> CircuitAction {
    match a {
        CircuitActionBody::ForceOpen => CircuitAction::ForceOpen,
        CircuitActionBody::Close => CircuitAction::Close,
        CircuitActionBody::Reset => CircuitAction::Reset,
        CircuitActionBody::Disable => CircuitAction::Disable,
    }
}

/// Every sink's status, with its live circuit.
#[utoipa::path(
    get,
    path = "/v1/admin/sinks",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every sink", body = SinksResponse),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no delivery engine runs in this server", body = ErrorEnvelope),
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<SinksResponse>, ApiError> {
    let engine = state.engine.clone().ok_or_else(no_engine)?;
    let statuses = blocking(move || engine.status().map_err(|e| internal(e.to_string()))).await?;
    Ok(Json(SinksResponse { sinks: statuses }))
}

/// Applies an operator action to a sink's circuit. `force_open` and
/// `disable` persist across restarts; `close` and `reset` clear that.
#[utoipa::path(
    post,
    path = "/v1/admin/sinks/{sink}/circuit",
    tag = "admin",
    security(("bearer" = [])),
    params(("sink" = String, Path, description = "The sink's name")),
    request_body = CircuitRequest,
    responses(
        (status = 200, description = "The circuit's state now", body = CircuitResponse),
        (status = 400, description = "`invalid_json` (not JSON) or `invalid_request` (missing or unknown action)", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no engine, or no such sink", body = ErrorEnvelope),
        (status = 413, description = "`body_too_large`", body = ErrorEnvelope),
        (status = 503, description = "`unavailable`: the journal is shutting down", body = ErrorEnvelope),
    )
)]
pub async fn circuit(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CircuitResponse>, ApiError> {
    let Path(sink) = path.map_err(bad_path)?;
    let engine = state.engine.clone().ok_or_else(no_engine)?;
    let hint = "send {\"action\": \"force_open\"|\"close\"|\"reset\"|\"disable\"}";
    // `null` is refused as not an object, so `None` is unreachable.
    let req: CircuitRequest = json_body::<Option<CircuitRequest>>(body, false, hint)?
        .ok_or_else(|| ApiError::new(crate::error::ErrorCode::InvalidRequest, hint))?;
    let state = engine
        .circuit(&sink, circuit_action(req.action))
        .await
        .map_err(admin_error)?;
    Ok(Json(CircuitResponse {
        sink,
        state: state.as_str().to_string(),
        state_code: state.code(),
    }))
}
