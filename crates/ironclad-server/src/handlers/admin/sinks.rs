//! `/v1/admin/sinks…`: every sink's status with its live circuit, and the
//! operator's circuit actions (force-open, close, reset, disable). These
//! need the delivery engine this server runs: without one they answer
//! `not_found` (the DLQ endpoints work either way).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::Json;
use ironclad::delivery::engine::CircuitAction;
use ironclad::delivery::status::SinkStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::json_body;
use super::errors::{admin_error, bad_path, internal, no_engine};
use crate::error::ApiError;
use crate::error::ErrorEnvelope;
use crate::handlers::blocking::blocking;
use crate::state::AppState;

/// One sink's state (the same fields as `ironclad status --json`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SinkStatusBody {
    /// The sink.
    pub sink: String,
    /// Events routed to it and not yet delivered or dead-lettered.
    pub pending: u64,
    /// Age of the oldest pending event, ms (`null` when nothing is pending).
    pub oldest_pending_age_ms: Option<u64>,
    /// The live circuit: `closed`, `open`, `half_open`, `forced_open` or `disabled`.
    pub circuit: String,
    /// Dead letters in the DLQ.
    pub dlq_entries: u64,
    /// Dead letters archived so far.
    pub dlq_archived: u64,
    /// Retry rows (failed at least once, or parked behind one that did).
    pub retry_rows: u64,
    /// Of those, events that failed at least once.
    pub retrying: u64,
    /// Next retry due, ms since the Unix epoch.
    pub next_retry_unix_ms: Option<u64>,
    /// Events delivered so far.
    pub delivered_total: u64,
    /// Every matching event at or below this position is settled or has a retry row.
    pub cursor_position: u64,
}

impl From<SinkStatus> for SinkStatusBody {
    fn from(s: SinkStatus) -> Self {
        SinkStatusBody {
            sink: s.sink,
            pending: s.pending,
            oldest_pending_age_ms: s.oldest_pending_age_ms,
            circuit: s.circuit,
            dlq_entries: s.dlq_entries,
            dlq_archived: s.dlq_archived,
            retry_rows: s.retry_rows,
            retrying: s.retrying,
            next_retry_unix_ms: s.next_retry_unix_ms,
            delivered_total: s.delivered_total,
            cursor_position: s.cursor_position,
        }
    }
}

/// `GET /v1/admin/sinks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SinksResponse {
    /// Every registered sink.
    pub sinks: Vec<SinkStatusBody>,
}

/// An operator action on a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitActionBody {
    /// Reject every call until closed (persists across restarts).
    ForceOpen,
    /// Back to closed (clears a persisted override).
    Close,
    /// Closed with an empty failure window (clears a persisted override).
    Reset,
    /// Permit every call and never trip (persists across restarts).
    Disable,
}

impl From<CircuitActionBody> for CircuitAction {
    fn from(a: CircuitActionBody) -> Self {
        match a {
            CircuitActionBody::ForceOpen => CircuitAction::ForceOpen,
            CircuitActionBody::Close => CircuitAction::Close,
            CircuitActionBody::Reset => CircuitAction::Reset,
            CircuitActionBody::Disable => CircuitAction::Disable,
        }
    }
}

/// `POST /v1/admin/sinks/{sink}/circuit` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitRequest {
    /// What to do.
    pub action: CircuitActionBody,
}

/// The circuit after an action.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CircuitResponse {
    /// The sink.
    pub sink: String,
    /// The state now: `closed`, `open`, `half_open`, `forced_open` or `disabled`.
    pub state: String,
    /// The state's metric value (`ironclad_breaker_state`): 0 closed,
    /// 1 open, 2 half-open, 3 forced-open, 4 disabled.
    pub state_code: u8,
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
    Ok(Json(SinksResponse {
        sinks: statuses.into_iter().map(Into::into).collect(),
    }))
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
        (status = 400, description = "`invalid_json`: missing or unknown action", body = ErrorEnvelope),
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
    let req: CircuitRequest =
        json_body::<Option<CircuitRequest>>(body, false)?.ok_or_else(|| {
            ApiError::new(
                crate::error::ErrorCode::InvalidJson,
                "the body must be {\"action\": \"force_open\"|\"close\"|\"reset\"|\"disable\"}",
            )
        })?;
    let state = engine
        .circuit(&sink, req.action.into())
        .await
        .map_err(admin_error)?;
    Ok(Json(CircuitResponse {
        sink,
        state: state.as_str().to_string(),
        state_code: state.code(),
    }))
}
