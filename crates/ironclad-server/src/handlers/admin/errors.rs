//! How the admin handlers answer failures: library errors (DLQ, engine
//! controls, journal controls) and bad paths or queries mapped onto the
//! API's stable codes, in one place so every admin endpoint says the same
//! thing for the same failure.

use axum::extract::rejection::{PathRejection, QueryRejection};
use ironclad::delivery::dlq::DlqError;
use ironclad::delivery::engine::AdminError;
use ironclad::error::ControlError;

use ironclad::StoreError;

use crate::error::{store_condition, ApiError, ErrorCode};

/// An `internal` error with `message`.
pub(crate) fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Internal, message)
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
/// `unavailable` (retry later or elsewhere), a damaged file or a full disk
/// has its own code ([`store_condition`]), anything else `internal`.
pub(crate) fn control_error(e: ControlError) -> ApiError {
    match e {
        ControlError::ShutDown | ControlError::WriterGone => {
            ApiError::new(ErrorCode::Unavailable, e.to_string())
        }
        ControlError::StateWrite(ref s) | ControlError::NotDurable(ref s) => {
            store_condition(s).unwrap_or_else(|| internal(e.to_string()))
        }
        ControlError::Store(s) => store_error(s),
        other => internal(other.to_string()),
    }
}

/// A store failure on an admin path: a damaged file or a full disk by its
/// own code ([`store_condition`]), anything else `internal`.
pub(crate) fn store_error(e: StoreError) -> ApiError {
    store_condition(&e).unwrap_or_else(|| internal(e.to_string()))
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
        DlqError::Store(s) => store_error(s),
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
        AdminError::Store(s) => store_error(s),
    }
}
