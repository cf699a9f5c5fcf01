//! Endpoint group `admin` (SPEC §6 "Admin"): the dead-letter queue (stats,
//! list, export, show, retry, purge), sinks and their circuits, emergency
//! dumps, ledger verification and leases. Every route needs an `admin`
//! token ([`Access::Admin`]); bodies and answers are JSON (the DLQ export
//! is JSON lines); failures are [`ApiError`]s with stable codes
//! (`docs/api-admin.md`).
//!
//! The handlers only decode, check and translate: the operations themselves
//! are the library's (`ironclad::delivery::dlq`, the engine's controls,
//! `Journal::replay_dump`, `LogReader::verify`), the same ones the CLI runs.
//! Store reads run on the blocking pool, never on the async workers.

pub mod dlq;
pub mod dumps;
pub mod ledger;
pub mod sinks;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use ironclad::delivery::dlq::DlqError;
use ironclad::delivery::engine::AdminError;
use ironclad::error::ControlError;
use serde::de::DeserializeOwned;

use crate::auth::{self, Access};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Largest admin request body, bytes: selectors and actions are tiny.
pub const ADMIN_BODY_BYTES_MAX: usize = 64 * 1024;

/// The group's routes, all behind [`Access::Admin`].
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/admin/dlq/stats", get(dlq::stats))
        .route("/v1/admin/dlq", get(dlq::list))
        .route("/v1/admin/dlq/export", get(dlq::export))
        .route("/v1/admin/dlq/retry", post(dlq::retry))
        .route("/v1/admin/dlq/purge", post(dlq::purge))
        .route("/v1/admin/dlq/{sink}/{position}", get(dlq::show))
        .route("/v1/admin/sinks", get(sinks::list))
        .route("/v1/admin/sinks/{sink}/circuit", post(sinks::circuit))
        .route("/v1/admin/dumps", get(dumps::list))
        .route("/v1/admin/dumps/{name}/replay", post(dumps::replay))
        .route("/v1/admin/ledger/verify", post(ledger::verify))
        .route("/v1/admin/leases", get(ledger::leases))
        .layer(DefaultBodyLimit::max(ADMIN_BODY_BYTES_MAX))
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), Access::Admin),
            auth::require,
        ))
        .with_state(state)
}

/// Runs blocking work (store reads, file-system scans) on the blocking
/// pool. A panic in it is an `internal` error, not a crashed server.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(format!("admin task failed: {e}")))?
}

/// An `internal` error with `message`.
pub(crate) fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Internal, message)
}

/// Decodes a JSON body. An empty body is `T::default()` when `empty_ok`,
/// otherwise `invalid_json`; an oversized one is `body_too_large`.
pub(crate) fn json_body<T: DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
    empty_ok: bool,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::BodyTooLarge,
                format!("admin request bodies are at most {ADMIN_BODY_BYTES_MAX} bytes"),
            )
            .with_details(serde_json::json!({ "max_bytes": ADMIN_BODY_BYTES_MAX }))
        } else {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("cannot read the request body: {rejection}"),
            )
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        if empty_ok {
            return Ok(T::default());
        }
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "this endpoint needs a JSON body",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not the expected JSON: {e}"),
        )
        .with_details(serde_json::json!({ "line": e.line(), "column": e.column() }))
    })
}

/// Maps a bad query string to `invalid_request`.
pub(crate) fn bad_query(rejection: QueryRejection) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("bad query string: {}", rejection.body_text()),
    )
}

/// Maps a bad path parameter (e.g. a position that is not a number) to
/// `invalid_request`.
pub(crate) fn bad_path(rejection: PathRejection) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("bad path parameter: {}", rejection.body_text()),
    )
}

/// The delivery engine, or `not_found` when the server runs none.
pub(crate) fn no_engine() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no delivery engine runs in this server: configure [delivery] sinks and routes",
    )
    .with_details(serde_json::json!({ "resource": "delivery_engine" }))
}

/// Maps a journal control failure: a closed or stopped journal is
/// `unavailable` (retry later or elsewhere), anything else `internal`.
pub(crate) fn control_error(e: ControlError) -> ApiError {
    match e {
        ControlError::ShutDown | ControlError::WriterGone => {
            ApiError::new(ErrorCode::Unavailable, e.to_string())
        }
        other => internal(other.to_string()),
    }
}

/// Maps a DLQ failure onto stable codes.
pub(crate) fn dlq_error(e: DlqError) -> ApiError {
    match e {
        DlqError::UnknownSink(ref sink) => ApiError::new(
            ErrorCode::NotFound,
            format!("unknown sink {sink:?}: GET /v1/admin/dlq/stats lists the sinks"),
        )
        .with_details(serde_json::json!({ "resource": "sink", "sink": sink })),
        DlqError::NotFound { ref sink, position } => {
            ApiError::new(ErrorCode::NotFound, e.to_string()).with_details(
                serde_json::json!({ "resource": "dlq_entry", "sink": sink, "position": position }),
            )
        }
        DlqError::PageSize(_) => ApiError::new(ErrorCode::InvalidRequest, e.to_string()),
        DlqError::Write(c) => control_error(c),
        other => internal(other.to_string()),
    }
}

/// Maps an engine control failure onto stable codes.
pub(crate) fn admin_error(e: AdminError) -> ApiError {
    match e {
        AdminError::UnknownSink(sink) => ApiError::new(
            ErrorCode::NotFound,
            format!("unknown sink {sink:?}: GET /v1/admin/sinks lists the configured sinks"),
        )
        .with_details(serde_json::json!({ "resource": "sink", "sink": sink })),
        AdminError::Write(c) => control_error(c),
        AdminError::Dlq(d) => dlq_error(d),
        AdminError::Store(s) => internal(s.to_string()),
    }
}
