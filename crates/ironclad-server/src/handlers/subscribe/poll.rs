//! The long-polling fallback and the consumer endpoints it uses:
//! `GET /v1/poll`, `POST /v1/consumers/{name}/ack`, `GET /v1/consumers/{name}`.
//!
//! A poll answers at once when events after `after` exist; otherwise it
//! waits on the journal's committed head (no store polling) until one
//! commits or `wait_ms` passes. `next` in the answer is the `after` of the
//! following poll: the last position returned, or, with a `streams`
//! filter, the last position read, so filtered-out events are not read
//! again.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use ironclad::store::Store;
use ironclad::RecordedEvent;
use ironclad_core::wire::{AckRequest, ConsumerBody, PollPage, PollQuery};
use tokio::time::Instant;

use super::subscriptions::{
    check_consumer, path_error, query_error, store_error, stored_checkpoint, CallerExt,
    StreamFilter, Subscriptions,
};
use crate::error::ErrorEnvelope;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::blocking::blocking;
use crate::handlers::ingest::event_texts;

/// Events per poll when the request gives no `limit`.
pub const POLL_LIMIT_DEFAULT: usize = 100;

/// Events read per page while a filtered poll looks for matches.
const SCAN_PAGE_EVENTS: usize = 1_000;

/// A poll's answer, with its events as JSON text.
fn page(events: &[RecordedEvent], next: u64) -> Result<Json<PollPage>, ApiError> {
    Ok(Json(PollPage {
        events: event_texts(events)?,
        next,
    }))
}

/// Long-polls for events.
#[utoipa::path(
    get,
    path = "/v1/poll",
    tag = "subscribe",
    params(PollQuery),
    responses(
        (status = 200, description = "Events (possibly none, after waiting)", body = PollPage),
        (status = 400, description = "`invalid_request`: bad query", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a consumer or admin token", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn poll(
    State(subs): State<Subscriptions>,
    caller: CallerExt,
    query: Result<Query<PollQuery>, QueryRejection>,
) -> Result<Json<PollPage>, ApiError> {
    let Query(q) = query.map_err(query_error)?;
    let max = subs.app.config.limits.read_limit_max;
    let limit = q.limit.unwrap_or(POLL_LIMIT_DEFAULT.min(max));
    if limit == 0 || limit > max {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("limit must be 1 to {max}"),
        )
        .with_details(serde_json::json!({ "limit": limit, "max": max })));
    }
    let filter = StreamFilter::parse(q.streams.as_deref())?;
    let consumer = check_consumer(q.consumer, &caller)?;
    let after = match (q.after, &consumer) {
        (Some(a), _) => a,
        (None, Some(c)) => stored_checkpoint(&subs.app, c).await?,
        (None, None) => 0,
    };
    // Keep clear of the request timeout so the answer is never a 408.
    let request_cap = subs
        .app
        .config
        .request_timeout()
        .saturating_sub(std::time::Duration::from_secs(1));
    let wait = std::time::Duration::from_millis(q.wait_ms.unwrap_or(0))
        .min(subs.config.poll_wait_max)
        .min(request_cap);
    let deadline = Instant::now() + wait;
    let mut head_rx = subs.app.journal.committed_head();
    let mut next = after;
    let mut events = Vec::new();
    let mut scanned = 0usize;
    loop {
        let head = *head_rx.borrow_and_update();
        while next < head && events.len() < limit && scanned < subs.config.poll_scan_events_max {
            let n = if filter.is_all() {
                limit - events.len()
            } else {
                SCAN_PAGE_EVENTS
            };
            let journal = subs.app.journal.clone();
            let from = next.saturating_add(1);
            let page = blocking(move || Ok(journal.read_all(from, n)?)).await?;
            if page.is_empty() {
                break;
            }
            scanned += page.len();
            for ev in page {
                next = ev.position;
                if filter.matches(&ev.stream) {
                    events.push(ev);
                    if events.len() == limit {
                        break;
                    }
                }
            }
        }
        let budget_spent = scanned >= subs.config.poll_scan_events_max;
        if !events.is_empty() || budget_spent || Instant::now() >= deadline {
            return page(&events, next);
        }
        tokio::select! {
            r = head_rx.changed() => {
                if r.is_err() {
                    // The journal is shutting down.
                    return page(&events, next);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return page(&events, next);
            }
        }
    }
}

/// Moves a consumer's checkpoint (cumulative acknowledgement).
#[utoipa::path(
    post,
    path = "/v1/consumers/{name}/ack",
    tag = "subscribe",
    params(("name" = String, Path, description = "The consumer: 1 to 128 of [A-Za-z0-9_.-]")),
    request_body = AckRequest,
    responses(
        (status = 200, description = "The durable checkpoint (never lower than before)", body = ConsumerBody),
        (status = 400, description = "`invalid_json` / `invalid_request`: bad body, name, or a position beyond the log", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a consumer or admin token", body = ErrorEnvelope),
        (status = 503, description = "`unavailable`: persisting failed or too many consumers; retry", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn consumer_ack(
    State(subs): State<Subscriptions>,
    caller: CallerExt,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ConsumerBody>, ApiError> {
    let Path(name) = name.map_err(path_error)?;
    let Some(name) = check_consumer(Some(name), &caller)? else {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "missing consumer"));
    };
    let body = body.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("bad body: {}", e.body_text()),
        )
    })?;
    let req: AckRequest = crate::handlers::json::decode_object(&body, "send {\"position\": N}")?;
    let head = *subs.app.journal.committed_head().borrow();
    if req.position > head {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "position {} is beyond the last committed position {head}: acknowledge only events you received",
                req.position
            ),
        )
        .with_details(serde_json::json!({ "position": req.position, "head": head })));
    }
    let stored = stored_checkpoint(&subs.app, &name).await?;
    let position = subs
        .checkpoints()
        .ack_through(&name, req.position, stored)
        .await?;
    Ok(Json(ConsumerBody {
        consumer: name,
        position,
        updated_at_us: None,
    }))
}

/// A consumer's stored checkpoint.
#[utoipa::path(
    get,
    path = "/v1/consumers/{name}",
    tag = "subscribe",
    params(("name" = String, Path, description = "The consumer: 1 to 128 of [A-Za-z0-9_.-]")),
    responses(
        (status = 200, description = "The durable checkpoint", body = ConsumerBody),
        (status = 400, description = "`invalid_request`: bad name", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not a consumer or admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no checkpoint stored for this consumer", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn consumer(
    State(subs): State<Subscriptions>,
    caller: CallerExt,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<ConsumerBody>, ApiError> {
    let Path(name) = name.map_err(path_error)?;
    let Some(name) = check_consumer(Some(name), &caller)? else {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "missing consumer"));
    };
    let journal = subs.app.journal.clone();
    let lookup = name.clone();
    let row = blocking(move || journal.store().consumer(&lookup).map_err(store_error)).await?;
    match row {
        Some(row) => Ok(Json(ConsumerBody {
            consumer: row.name,
            position: row.position,
            updated_at_us: Some(row.updated_at_us),
        })),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("consumer {name:?} has no stored checkpoint: it has acknowledged nothing yet"),
        )
        .with_details(serde_json::json!({ "consumer": name }))),
    }
}
