//! Endpoint group `ingest` (SPEC §6): append to a stream, read a stream,
//! list streams.
//!
//! - `POST /v1/streams/{stream}/events` (producer, admin): body
//!   `{"expected_version": "any"|"no_stream"|"stream_exists"|<u64>,
//!   "events": [{"id"?, "type", "op"?, "entity"?, "payload", "metadata"?}]}`.
//!   `expected_version` defaults to `"any"`; `payload` is any JSON value and
//!   is stored byte for byte (minus insignificant whitespace). Answers 201
//!   `{"status":"appended","events":[{id,version,position}]}` once durable,
//!   200 with `"status":"already_appended"` when every id was already
//!   appended with the same content.
//! - `GET /v1/streams/{stream}/events?from=<version>&limit=<n>` (producer,
//!   consumer, admin): `{"events":[…], "next": <version or null>}`. `from`
//!   defaults to 1, `limit` to 100 and may not exceed `read_limit_max`.
//!   `next` is the `from` of the following page when this page was full,
//!   `null` when the end of the stream was reached. A stream with no events
//!   at all is 404 `not_found` (so a typo in a name is visible); reading past
//!   the end of an existing stream is an empty page.
//! - `GET /v1/streams?after=<name>&limit=<n>`: stream heads sorted by name,
//!   `{"streams":[{stream,version,hash}], "next": <name or null>}`.
//!
//! Backpressure: an append waits up to `queue_wait_ms` for room in the
//! ingest queue, then is answered 429 `queue_full` with `Retry-After: 1`.
//! Nothing of it was queued, so resending (with the same ids) is safe.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ironclad::validate::json_depth_exceeds;
use ironclad::{AppendResult, AppendStatus, ExpectedVersion, NewEvent, RecordedEvent};
use ironclad_core::wire::{AppendRequest, ListQuery, ReadPage, ReadQuery, StreamPage};
use serde_json::value::RawValue;

use crate::auth::Access;
use crate::error::ErrorEnvelope;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::blocking::blocking;
use crate::handlers::guard::require;
use crate::handlers::json;
use crate::state::AppState;

/// Events per read page when the request gives no `limit`.
pub const READ_LIMIT_DEFAULT: usize = 100;

/// Levels the append body adds around a payload: the body object, the
/// `events` array and the event object.
const BODY_DEPTH_OVERHEAD: usize = 3;

/// The group's routes.
pub fn router(state: AppState) -> Router {
    let write = from_fn_with_state((state.clone(), Access::Write), require);
    let read = from_fn_with_state((state.clone(), Access::Read), require);
    Router::new()
        .route(
            "/v1/streams/{stream}/events",
            post(append)
                .route_layer(write)
                .merge(get(read_stream).route_layer(read.clone())),
        )
        .route("/v1/streams", get(list_streams).route_layer(read))
        .with_state(state)
}

/// Decodes and checks an append body against the server's limits: UTF-8,
/// nesting depth (before parsing, so hostile nesting costs O(n) and no
/// stack), JSON syntax, shape, and the event count. Pure; never panics.
pub fn decode_append(
    body: &[u8],
    events_max: usize,
    depth_max: usize,
) -> Result<(ExpectedVersion, Vec<NewEvent>), ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!(
                "the body is not UTF-8 (at byte {}): send JSON text",
                e.valid_up_to()
            ),
        )
    })?;
    if json_depth_exceeds(text, depth_max.saturating_add(BODY_DEPTH_OVERHEAD)) {
        return Err(ApiError::new(
            ErrorCode::JsonTooDeep,
            format!("the body nests deeper than a payload may ({depth_max} levels): flatten the payload"),
        )
        .with_details(serde_json::json!({ "max": depth_max })));
    }
    let hint = "send {\"expected_version\": …, \"events\": [{\"type\": …, \"payload\": …}]}";
    json::check_object(text, hint)?;
    let req: AppendRequest =
        serde_json::from_str(text).map_err(|e| json::decode_error(text, &e, hint))?;
    if req.events.len() > events_max {
        return Err(ApiError::new(
            ErrorCode::TooManyEvents,
            format!(
                "{} events in one request, more than the limit of {events_max}: split them into several requests",
                req.events.len()
            ),
        )
        .with_details(serde_json::json!({ "count": req.events.len(), "max": events_max })));
    }
    if req.events.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "`events` is empty: send at least one event",
        ));
    }
    let expected = match &req.expected_version {
        Some(w) => w.parse().ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "expected_version must be \"any\", \"no_stream\", \"stream_exists\" or a version number",
            )
        })?,
        None => ExpectedVersion::Any,
    };
    Ok((
        expected,
        req.events.into_iter().map(NewEvent::from).collect(),
    ))
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("bad path: {e}; percent-encode the stream name as UTF-8"),
    )
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, format!("bad query string: {e}"))
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorCode::BodyTooLarge,
            "the request body is larger than the server's body_bytes_max: send fewer or smaller events per request",
        )
    } else {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("the request body could not be read: {e}"),
        )
    }
}

/// `POST /v1/streams/{stream}/events`.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/events",
    tag = "ingest",
    security(("bearer" = [])),
    params(("stream" = String, Path, description = "The stream name (1-256 bytes of UTF-8, no control characters), percent-encoded")),
    request_body = AppendRequest,
    responses(
        (status = 201, description = "Appended and durable", body = AppendResult),
        (status = 200, description = "Every id was already appended with the same content; nothing was written", body = AppendResult),
        (status = 400, description = "`invalid_json`, `invalid_request`, `too_many_events` or `json_too_deep`", body = ErrorEnvelope),
        (status = 401, description = "`unauthorized`: no or unknown token", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: a consumer token", body = ErrorEnvelope),
        (status = 408, description = "`timeout`: the request took longer than `request_timeout_ms`", body = ErrorEnvelope),
        (status = 409, description = "`wrong_expected_version` (details: `expected`, `actual` = the current version) or `idempotency_conflict`", body = ErrorEnvelope),
        (status = 413, description = "`body_too_large` (a `Content-Length` over `body_bytes_max` is answered before the body is read)", body = ErrorEnvelope),
        (status = 429, description = "`queue_full`, with `Retry-After`", body = ErrorEnvelope),
        (status = 503, description = "`unavailable`, with `Retry-After`: shutting down, failed closed, or the store failed (retry with the same ids); or `server_busy`, with `Retry-After`: the bodies in flight fill `inflight_body_bytes_max` (nothing was done)", body = ErrorEnvelope),
    )
)]
pub async fn append(
    State(state): State<AppState>,
    stream: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(stream) = stream.map_err(path_error)?;
    let body = body.map_err(body_error)?;
    let limits = &state.config.limits;
    let (expected, events) =
        decode_append(&body, limits.events_per_request_max, limits.json_depth_max)?;
    drop(body);
    let wait = Duration::from_millis(limits.queue_wait_ms);
    // `timeout` polls the enqueue before its deadline, so with a zero wait
    // this is exactly `try_append`. Enqueueing is cancel-safe while it
    // waits for room: on a timeout nothing was queued.
    let ticket = match tokio::time::timeout(wait, state.journal.enqueue(&stream, expected, events))
        .await
    {
        Ok(queued) => queued?,
        Err(_) => {
            metrics::counter!(ironclad::metrics::REJECTED_TOTAL, "reason" => "full").increment(1);
            return Err(ApiError::new(
                ErrorCode::QueueFull,
                format!(
                    "the ingest queue stayed full for {} ms: retry after the Retry-After delay, with the same event ids",
                    limits.queue_wait_ms
                ),
            )
            .with_details(serde_json::json!({ "waited_ms": limits.queue_wait_ms }))
            .retry_after(1));
        }
    };
    let result = ticket.await?;
    let status = match result.status {
        AppendStatus::Appended => StatusCode::CREATED,
        AppendStatus::AlreadyAppended => StatusCode::OK,
    };
    Ok((status, Json(result)).into_response())
}

fn check_limit(limit: Option<usize>, max: usize) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(READ_LIMIT_DEFAULT.min(max));
    if limit == 0 || limit > max {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("limit must be 1 to {max}; page with `from`/`after` for more"),
        )
        .with_details(serde_json::json!({ "limit": limit, "max": max })));
    }
    Ok(limit)
}

/// The events as the JSON text a page carries (the same bytes as
/// serializing them in place).
pub fn event_texts(events: &[RecordedEvent]) -> Result<Vec<Box<RawValue>>, ApiError> {
    events
        .iter()
        .map(serde_json::value::to_raw_value)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("an event could not be encoded: {e}"),
            )
        })
}

/// `GET /v1/streams/{stream}/events`.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/events",
    tag = "ingest",
    security(("bearer" = [])),
    params(("stream" = String, Path, description = "The stream name, percent-encoded"), ReadQuery),
    responses(
        (status = 200, description = "A page of events; `next` is the `from` of the next page, or null at the end", body = ReadPage),
        (status = 400, description = "`invalid_request`: bad name, `from` or `limit`", body = ErrorEnvelope),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: the stream has no events", body = ErrorEnvelope),
        (status = 503, description = "`unavailable`: reading failed; retry", body = ErrorEnvelope),
    )
)]
pub async fn read_stream(
    State(state): State<AppState>,
    stream: Result<Path<String>, PathRejection>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<ReadPage>, ApiError> {
    let Path(stream) = stream.map_err(path_error)?;
    let Query(q) = query.map_err(query_error)?;
    let limit = check_limit(q.limit, state.config.limits.read_limit_max)?;
    let from = q.from.unwrap_or(1).max(1);
    let journal = state.journal.clone();
    blocking(move || {
        let events = journal.read(&stream, from, limit)?;
        if events.is_empty() && journal.stream_head(&stream)?.is_none() {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("stream {stream:?} has no events: check the name, or append to create it"),
            )
            .with_details(serde_json::json!({ "stream": stream })));
        }
        let next = match events.last() {
            Some(last) if events.len() == limit => Some(last.version + 1),
            _ => None,
        };
        Ok(Json(ReadPage {
            events: event_texts(&events)?,
            next,
        }))
    })
    .await
}

/// `GET /v1/streams`.
#[utoipa::path(
    get,
    path = "/v1/streams",
    tag = "ingest",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "Stream heads sorted by name; `next` is the `after` of the next page, or null", body = StreamPage),
        (status = 400, description = "`invalid_request`: bad `after` or `limit`", body = ErrorEnvelope),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 503, description = "`unavailable`: reading failed; retry", body = ErrorEnvelope),
    )
)]
pub async fn list_streams(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<StreamPage>, ApiError> {
    let Query(q) = query.map_err(query_error)?;
    let limit = check_limit(q.limit, state.config.limits.read_limit_max)?;
    let after = q.after.unwrap_or_default();
    let journal = state.journal.clone();
    blocking(move || {
        let streams = journal.list_streams(&after, limit)?;
        let next = match streams.last() {
            Some(last) if streams.len() == limit => Some(last.stream.clone()),
            _ => None,
        };
        Ok(Json(StreamPage { streams, next }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handlers_document_themselves() {
        use utoipa::OpenApi;
        #[derive(OpenApi)]
        #[openapi(paths(append, read_stream, list_streams))]
        struct Doc;
        let json = Doc::openapi().to_json().unwrap_or_default();
        for needle in [
            "/v1/streams/{stream}/events",
            "/v1/streams",
            "AppendRequest",
            "queue_full",
            "limit",
        ] {
            assert!(json.contains(needle), "{needle} missing from {json}");
        }
    }

    #[test]
    fn decoding_sorts_errors_into_codes() {
        let code = |body: &str| {
            decode_append(body.as_bytes(), 3, 4)
                .map(|_| ())
                .map_err(|e| e.code)
        };
        assert_eq!(code("{"), Err(ErrorCode::InvalidJson));
        assert_eq!(code(r#"{"events": 1}"#), Err(ErrorCode::InvalidRequest));
        assert_eq!(code(r#"{"events": []}"#), Err(ErrorCode::InvalidRequest));
        assert_eq!(
            code(r#"{"expected_version":"maybe","events":[{"type":"t","payload":1}]}"#),
            Err(ErrorCode::InvalidRequest)
        );
        let ev = r#"{"type":"t","payload":1}"#;
        let four = format!(r#"{{"events":[{ev},{ev},{ev},{ev}]}}"#);
        assert_eq!(code(&four), Err(ErrorCode::TooManyEvents));
        assert_eq!(
            code(r#"{"events":[{"type":"t","payload":[[[[[1]]]]]}]}"#),
            Err(ErrorCode::JsonTooDeep)
        );
        assert_eq!(
            code(r#"{"events":[{"type":"t","payload":[[[[1]]]]}]}"#),
            Ok(())
        );
        let (expected, events) = decode_append(
            br#"{"expected_version":7,"events":[{"type":"t","payload":{"b":1, "a":2}}]}"#,
            3,
            4,
        )
        .map_err(|e| e.code)
        .expect("valid");
        assert_eq!(expected, ExpectedVersion::Exact(7));
        assert_eq!(events[0].payload, r#"{"b":1, "a":2}"#);
        assert_eq!(
            decode_append(&[0xff, b'{'], 3, 4)
                .map(|_| ())
                .map_err(|e| e.code),
            Err(ErrorCode::InvalidJson)
        );
    }
}
