//! `/v1/admin/dumps…`: emergency dumps waiting in `<data-dir>/emergency/`,
//! and replaying one into the running journal (idempotent: every event
//! keeps its id; a replayed dump is archived, never deleted).
//!
//! A dump is named by its file name as the list shows it; only names the
//! list contains are accepted, so a name can never reach outside the
//! dump directory.

use std::path::PathBuf;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use ironclad::emergency::{list_dumps, DumpError};
use ironclad::error::ReplayError;
use ironclad::AppendError;
use ironclad_core::wire::{DumpBody, DumpsResponse, ReplayResponse};

use super::errors::{bad_path, internal};
use crate::error::ErrorEnvelope;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::blocking::blocking;
use crate::state::AppState;

/// Most dumps one listing returns (oldest first); `truncated` says when
/// there are more. Replaying the oldest brings the rest into view.
pub const DUMPS_LIST_MAX: usize = 1_000;

/// The listed dumps with their real paths. Blocking.
fn dumps(state: &AppState) -> Result<Vec<(DumpBody, PathBuf)>, ApiError> {
    let dumps =
        list_dumps(&state.journal.config().data_dir).map_err(|e| internal(e.to_string()))?;
    Ok(dumps
        .into_iter()
        .map(|d| {
            let body = DumpBody {
                name: d
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                path: d.path.display().to_string(),
                bytes: d.bytes,
            };
            (body, d.path)
        })
        .collect())
}

/// Maps a replay failure: a record that cannot be appended keeps the
/// append's own code (with the 1-based record in `details`); a damaged
/// dump is `invalid_request`; a stopped journal `unavailable`.
fn replay_error(name: &str, e: ReplayError) -> ApiError {
    let message = e.to_string();
    match e {
        ReplayError::Append { record, error } => {
            let code = match &error {
                AppendError::WrongExpectedVersion(_) => ErrorCode::WrongExpectedVersion,
                AppendError::IdempotencyConflict { .. } => ErrorCode::IdempotencyConflict,
                AppendError::Invalid(_) => ErrorCode::InvalidRequest,
                AppendError::ShuttingDown
                | AppendError::FailedClosed
                | AppendError::WriterGone
                | AppendError::Full { .. } => ErrorCode::Unavailable,
                _ => ErrorCode::Internal,
            };
            ApiError::new(code, message).with_details(serde_json::json!({
                "dump": name, "record": record, "replayed": false
            }))
        }
        ReplayError::Dump(DumpError::BadLine { line, .. }) => {
            ApiError::new(ErrorCode::InvalidRequest, message)
                .with_details(serde_json::json!({ "dump": name, "line": line }))
        }
        ReplayError::Dump(DumpError::TooLarge { .. }) => {
            ApiError::new(ErrorCode::InvalidRequest, message)
                .with_details(serde_json::json!({ "dump": name }))
        }
        ReplayError::Dump(_) => internal(message),
    }
}

/// Emergency dumps waiting to be replayed, oldest first.
#[utoipa::path(
    get,
    path = "/v1/admin/dumps",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The dumps", body = DumpsResponse),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin token", body = ErrorEnvelope),
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<DumpsResponse>, ApiError> {
    let dumps = blocking(move || dumps(&state)).await?;
    Ok(Json(DumpsResponse {
        truncated: dumps.len() > DUMPS_LIST_MAX,
        dumps: dumps
            .into_iter()
            .take(DUMPS_LIST_MAX)
            .map(|(d, _)| d)
            .collect(),
    }))
}

/// Replays one dump into the journal, then archives it. Safe to repeat:
/// events already present come back as `already_appended_events`. Stops
/// at the first record that cannot be appended, leaving the dump in place.
#[utoipa::path(
    post,
    path = "/v1/admin/dumps/{name}/replay",
    tag = "admin",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The dump's file name, as listed")),
    responses(
        (status = 200, description = "Replayed and archived", body = ReplayResponse),
        (status = 400, description = "`invalid_request`: the dump is damaged, or a record is invalid", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no such dump", body = ErrorEnvelope),
        (status = 409, description = "`wrong_expected_version` or `idempotency_conflict`: a record cannot be appended", body = ErrorEnvelope),
        (status = 503, description = "`unavailable`: the journal is shutting down", body = ErrorEnvelope),
    )
)]
pub async fn replay(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ReplayResponse>, ApiError> {
    let Path(name) = path.map_err(bad_path)?;
    let st = state.clone();
    let listed = blocking(move || dumps(&st)).await?;
    let (_, dump_path) = listed
        .into_iter()
        .find(|(d, _)| d.name == name)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                "no such dump: GET /v1/admin/dumps lists them by name",
            )
            .with_details(serde_json::json!({ "resource": "dump", "name": name }))
        })?;
    let report = state
        .journal
        .replay_dump(&dump_path, &mut |_| {})
        .await
        .map_err(|e| replay_error(&name, e))?;
    Ok(Json(ReplayResponse {
        name,
        records: report.records,
        appended_events: report.appended_events,
        already_appended_events: report.already_appended_events,
        archived_to: report.archived_to.display().to_string(),
    }))
}
