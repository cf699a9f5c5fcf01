//! `/v1/admin/dlq…`: the dead-letter queue of a running server: stats,
//! paged list, export, one entry, retry and purge (SPEC §4, §6).
//!
//! `retry` and `purge` refuse an empty selector: acting on every entry
//! takes an explicit `{"all": true}`. Unknown fields are refused too, so a
//! misspelt filter never silently widens a selection. `purge` archives
//! (fsynced) before it deletes, as the library always does.

use std::collections::BTreeSet;
use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ironclad::delivery::archive::{archive_dir, list_archives};
use ironclad::delivery::dlq::{self, DlqEntry, SinkDlqStats, DLQ_PAGE_MAX};
use ironclad::store::delivery::{DlqFilter, DlqReason};
use ironclad_core::wire::{
    DlqEntryBody, DlqExportQuery, DlqListQuery, DlqPage, DlqPurgeResponse, DlqRetryResponse,
    DlqSelector, DlqStatsResponse, SinkDlqStatsBody,
};

use super::body::json_body;
use super::errors::{admin_error, bad_path, bad_query, dlq_error, internal};
use crate::error::ErrorEnvelope;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::blocking::blocking;
use crate::state::AppState;

/// Page size of `GET /v1/admin/dlq` when `limit` is not given.
pub const DLQ_PAGE_DEFAULT: usize = 50;

/// Largest `GET /v1/admin/dlq/export` answer, bytes: the export is built
/// in memory before it is sent. A larger one is refused with
/// `invalid_request` and `details.reason = "export_too_large"`.
pub const DLQ_EXPORT_BYTES_MAX: usize = 256 * 1024 * 1024;

/// What a retry or purge body looks like, for error messages.
const SELECTOR_HINT: &str = "send {\"all\": true}, or filters: sink, reason, stream, failed_before_ms, or sink and position";

/// Refuses empty and contradictory selectors.
fn check_selector(sel: &DlqSelector) -> Result<(), ApiError> {
    let invalid = |m: &str| ApiError::new(ErrorCode::InvalidRequest, m);
    if sel.all && sel.has_filter() {
        return Err(invalid(
            "`all` selects every entry: drop the filters, or drop `all`",
        ));
    }
    if !sel.all && !sel.has_filter() {
        return Err(invalid(
            "an empty selector is refused: send {\"all\": true} for every entry, or narrow it with sink, reason, stream, failed_before_ms, or sink and position",
        )
        .with_details(serde_json::json!({ "reason": "empty_selector" })));
    }
    if sel.position.is_some() {
        if sel.sink.is_none() {
            return Err(invalid("`position` needs `sink`"));
        }
        if sel.reason.is_some() || sel.stream.is_some() || sel.failed_before_ms.is_some() {
            return Err(invalid(
                "`position` selects one entry: drop reason, stream and failed_before_ms",
            ));
        }
    }
    Ok(())
}

/// The wire form of one sink's DLQ totals (reasons keyed by name).
fn stats_body(s: SinkDlqStats) -> SinkDlqStatsBody {
    SinkDlqStatsBody {
        sink: s.sink,
        entries: s.stats.entries,
        oldest_failure_unix_ms: s.stats.oldest_failure_unix_ms,
        by_reason: s
            .stats
            .by_reason
            .into_iter()
            .map(|(r, n)| (r.as_str().to_string(), n))
            .collect(),
        archived_total: s.archived_total,
    }
}

/// The wire form of a dead letter (the library's, field for field).
fn entry_body(e: DlqEntry) -> DlqEntryBody {
    DlqEntryBody {
        sink: e.sink,
        row: e.row,
        event: e.event,
    }
}

fn parse_after(s: &str) -> Result<(i64, u64), ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("after={s:?} is not SINK_ID:POSITION (copy the `next` of the previous page)"),
        )
    };
    let (sink, position) = s.split_once(':').ok_or_else(bad)?;
    Ok((
        sink.trim().parse().map_err(|_| bad())?,
        position.trim().parse().map_err(|_| bad())?,
    ))
}

fn parse_reason(s: &str) -> Result<DlqReason, ApiError> {
    DlqReason::parse(s).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("unknown reason {s:?}: use max_attempts, permanent, conflict or expired"),
        )
    })
}

/// The library filter of the list and export query filters. Blocking
/// (resolves the sink's name).
fn query_filter(
    state: &AppState,
    sink: Option<&str>,
    reason: Option<DlqReason>,
    stream: Option<String>,
    failed_before_ms: Option<u64>,
) -> Result<DlqFilter, ApiError> {
    dlq::filter_for(
        &state.journal,
        sink,
        DlqFilter {
            sink_id: None,
            reason,
            stream,
            failed_before_unix_ms: failed_before_ms,
            position: None,
        },
    )
    .map_err(dlq_error)
}

/// The library filter of a selector, narrowed to one entry (which must
/// exist) when `position` is given. Blocking.
fn selection_filter(state: &AppState, sel: &DlqSelector) -> Result<DlqFilter, ApiError> {
    let mut f = dlq::filter_for(
        &state.journal,
        sel.sink.as_deref(),
        DlqFilter {
            sink_id: None,
            reason: sel.reason,
            stream: sel.stream.clone(),
            failed_before_unix_ms: sel.failed_before_ms,
            position: None,
        },
    )
    .map_err(dlq_error)?;
    if let (Some(sink), Some(position)) = (&sel.sink, sel.position) {
        dlq::show(&state.journal, sink, position).map_err(dlq_error)?;
        f.position = Some(position);
    }
    Ok(f)
}

/// DLQ totals per sink.
#[utoipa::path(
    get,
    path = "/v1/admin/dlq/stats",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Totals per sink", body = DlqStatsResponse),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin token", body = ErrorEnvelope),
    )
)]
pub async fn stats(State(state): State<AppState>) -> Result<Json<DlqStatsResponse>, ApiError> {
    let sinks = blocking(move || dlq::stats(&state.journal).map_err(dlq_error)).await?;
    Ok(Json(DlqStatsResponse {
        sinks: sinks.into_iter().map(stats_body).collect(),
    }))
}

/// One page of dead letters.
#[utoipa::path(
    get,
    path = "/v1/admin/dlq",
    tag = "admin",
    security(("bearer" = [])),
    params(DlqListQuery),
    responses(
        (status = 200, description = "One page", body = DlqPage),
        (status = 400, description = "`invalid_request`: bad filter, limit or cursor", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: unknown sink", body = ErrorEnvelope),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<DlqListQuery>, QueryRejection>,
) -> Result<Json<DlqPage>, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(DLQ_PAGE_DEFAULT);
    if limit == 0 || limit > DLQ_PAGE_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("limit={limit} is out of range: use 1..={DLQ_PAGE_MAX}"),
        )
        .with_details(serde_json::json!({ "max": DLQ_PAGE_MAX })));
    }
    let after = q.after.as_deref().map(parse_after).transpose()?;
    let reason = q.reason.as_deref().map(parse_reason).transpose()?;
    let entries = blocking(move || {
        let f = query_filter(
            &state,
            q.sink.as_deref(),
            reason,
            q.stream,
            q.failed_before_ms,
        )?;
        dlq::list(&state.journal, &f, after, limit).map_err(dlq_error)
    })
    .await?;
    let next = match entries.last() {
        Some(last) if entries.len() == limit => {
            Some(format!("{}:{}", last.row.sink_id, last.row.position))
        }
        _ => None,
    };
    Ok(Json(DlqPage {
        entries: entries.into_iter().map(entry_body).collect(),
        next,
    }))
}

/// An in-memory export that refuses to grow past its cap.
struct Capped {
    buf: Vec<u8>,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + bytes.len() > DLQ_EXPORT_BYTES_MAX {
            self.over = true;
            return Err(std::io::Error::other("the export is over its size limit"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every matching dead letter as JSON lines, with its event: exactly the
/// bytes `ironclad dlq export` writes locally.
#[utoipa::path(
    get,
    path = "/v1/admin/dlq/export",
    tag = "admin",
    security(("bearer" = [])),
    params(DlqExportQuery),
    responses(
        (status = 200, description = "One JSON object per line (the fields of a DLQ entry, with its event), oldest position first per sink; empty when nothing matches", body = String, content_type = "application/x-ndjson"),
        (status = 400, description = "`invalid_request`: bad or unknown filter, or the export is over 256 MiB (`details.reason = \"export_too_large\"`: narrow it with filters)", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: unknown sink", body = ErrorEnvelope),
    )
)]
pub async fn export(
    State(state): State<AppState>,
    query: Result<Query<DlqExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let reason = q.reason.as_deref().map(parse_reason).transpose()?;
    let body = blocking(move || {
        let f = query_filter(
            &state,
            q.sink.as_deref(),
            reason,
            q.stream,
            q.failed_before_ms,
        )?;
        let mut out = Capped {
            buf: Vec::new(),
            over: false,
        };
        match dlq::export(&state.journal, &f, &mut out) {
            Ok(_) => Ok(out.buf),
            Err(_) if out.over => Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "the export is over {DLQ_EXPORT_BYTES_MAX} bytes: narrow it with sink, reason, stream or failed_before_ms"
                ),
            )
            .with_details(serde_json::json!({
                "reason": "export_too_large",
                "max_bytes": DLQ_EXPORT_BYTES_MAX,
            }))),
            Err(e) => Err(dlq_error(e)),
        }
    })
    .await?;
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

/// One dead letter, with its full event.
#[utoipa::path(
    get,
    path = "/v1/admin/dlq/{sink}/{position}",
    tag = "admin",
    security(("bearer" = [])),
    params(
        ("sink" = String, Path, description = "The sink's name"),
        ("position" = u64, Path, description = "The event's global position"),
    ),
    responses(
        (status = 200, description = "The entry", body = DlqEntryBody),
        (status = 400, description = "`invalid_request`: position is not a number", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: unknown sink or no such entry", body = ErrorEnvelope),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    path: Result<Path<(String, u64)>, PathRejection>,
) -> Result<Json<DlqEntryBody>, ApiError> {
    let Path((sink, position)) = path.map_err(bad_path)?;
    let entry =
        blocking(move || dlq::show(&state.journal, &sink, position).map_err(dlq_error)).await?;
    Ok(Json(entry_body(entry)))
}

/// Sends the selected dead letters back to retrying (attempts reset, due
/// now). With a delivery engine running, its dispatchers reload at once.
#[utoipa::path(
    post,
    path = "/v1/admin/dlq/retry",
    tag = "admin",
    security(("bearer" = [])),
    request_body = DlqSelector,
    responses(
        (status = 200, description = "How many moved", body = DlqRetryResponse),
        (status = 400, description = "`invalid_json` or `invalid_request` (empty or contradictory selector)", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: unknown sink or no such entry", body = ErrorEnvelope),
        (status = 413, description = "`body_too_large`", body = ErrorEnvelope),
        (status = 503, description = "`unavailable`: the journal is shutting down", body = ErrorEnvelope),
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DlqRetryResponse>, ApiError> {
    let sel: DlqSelector = json_body(body, false, SELECTOR_HINT)?;
    check_selector(&sel)?;
    let st = state.clone();
    let filter = blocking(move || selection_filter(&st, &sel)).await?;
    let (retried, engine_reloaded) = match &state.engine {
        Some(engine) => (engine.dlq_retry(&filter).await.map_err(admin_error)?, true),
        None => (
            dlq::retry(&state.journal, &filter)
                .await
                .map_err(dlq_error)?,
            false,
        ),
    };
    Ok(Json(DlqRetryResponse {
        retried,
        engine_reloaded,
    }))
}

fn archive_files(data_dir: PathBuf) -> Result<BTreeSet<PathBuf>, ApiError> {
    Ok(list_archives(&data_dir)
        .map_err(|e| internal(e.to_string()))?
        .into_iter()
        .map(|a| a.path)
        .collect())
}

/// Archives the selected dead letters (fsynced, gzip JSONL under
/// `<data-dir>/dlq-archive/`), then removes them from the DLQ.
#[utoipa::path(
    post,
    path = "/v1/admin/dlq/purge",
    tag = "admin",
    security(("bearer" = [])),
    request_body = DlqSelector,
    responses(
        (status = 200, description = "How many were archived and removed", body = DlqPurgeResponse),
        (status = 400, description = "`invalid_json` or `invalid_request` (empty or contradictory selector)", body = ErrorEnvelope),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: unknown sink or no such entry", body = ErrorEnvelope),
        (status = 413, description = "`body_too_large`", body = ErrorEnvelope),
        (status = 503, description = "`unavailable`: the journal is shutting down", body = ErrorEnvelope),
    )
)]
pub async fn purge(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DlqPurgeResponse>, ApiError> {
    let sel: DlqSelector = json_body(body, false, SELECTOR_HINT)?;
    check_selector(&sel)?;
    let data_dir = state.journal.config().data_dir.clone();
    let st = state.clone();
    let dir = data_dir.clone();
    let (filter, before) =
        blocking(move || Ok((selection_filter(&st, &sel)?, archive_files(dir)?))).await?;
    let purged = dlq::purge(&state.journal, &filter)
        .await
        .map_err(dlq_error)?;
    let dir = data_dir.clone();
    let after = blocking(move || archive_files(dir)).await?;
    Ok(Json(DlqPurgeResponse {
        purged,
        archive_dir: archive_dir(&data_dir).display().to_string(),
        files: after
            .difference(&before)
            .map(|p| p.display().to_string())
            .collect(),
    }))
}
