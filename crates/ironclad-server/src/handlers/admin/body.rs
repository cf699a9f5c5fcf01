//! Admin request bodies: small JSON documents, decoded with the API's
//! error codes (an oversized body is `body_too_large`, a malformed one
//! `invalid_json` with its line and column, one of the wrong shape
//! `invalid_request`: see [`crate::handlers::json`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// Largest admin request body, bytes: selectors and actions are tiny.
pub const ADMIN_BODY_BYTES_MAX: usize = 64 * 1024;

/// Decodes a JSON body. An empty body is `T::default()` when `empty_ok`,
/// otherwise `invalid_json`; an oversized one is `body_too_large`.
/// `hint` says what to send; it ends every error message.
pub(crate) fn json_body<T: DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
    empty_ok: bool,
    hint: &str,
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
            format!("this endpoint needs a JSON body: {hint}"),
        ));
    }
    crate::handlers::json::decode_object(&bytes, hint)
}
