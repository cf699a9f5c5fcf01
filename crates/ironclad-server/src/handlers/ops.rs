//! Endpoint group `ops` (SPEC §6 "Operations"): `/metrics` (Prometheus
//! text format, admin only), `/healthz` (liveness), `/readyz` (readiness)
//! and `/openapi.json` (the document generated from the handlers, see
//! [`crate::openapi`]). The last three need no token: orchestrators and
//! client generators call them before they have one.
//!
//! Metrics go through the `metrics` facade into one Prometheus recorder per
//! process ([`install_metrics_recorder`], idempotent). Install it before
//! opening the journal: gauges the journal sets once at open (queue
//! capacity) are otherwise lost.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ironclad::store::Store;
use ironclad::Journal;
use ironclad_core::wire::HealthResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::auth::Access;
use crate::error::ErrorEnvelope;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::admin::ledger::LEDGER_VERIFY_FAILURES_TOTAL;
use crate::handlers::guard::require;
use crate::state::AppState;

/// How often the recorder's histograms are compacted (the exporter needs
/// a periodic upkeep when not run by its own HTTP listener).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Histogram buckets of every `*_seconds` metric (latencies).
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Histogram buckets of every `*_events` histogram (batch sizes).
const EVENTS_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's Prometheus recorder, once; later calls return
/// the same handle. `None` if another recorder was installed first (then
/// `/metrics` answers 503 `unavailable`).
pub fn install_metrics_recorder() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_events".into()), EVENTS_BUCKETS)
                });
            let builder = match builder {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "histogram buckets refused; using summaries");
                    PrometheusBuilder::new()
                }
            };
            match builder.install_recorder() {
                Ok(handle) => {
                    ironclad::metrics::describe();
                    metrics::describe_counter!(
                        LEDGER_VERIFY_FAILURES_TOTAL,
                        metrics::Unit::Count,
                        "Ledger verifications that found a mismatch"
                    );
                    crate::body_budget::describe_metrics();
                    let upkeep = handle.clone();
                    let spawned = std::thread::Builder::new()
                        .name("ironclad-metrics-upkeep".into())
                        .spawn(move || loop {
                            std::thread::sleep(UPKEEP_INTERVAL);
                            upkeep.run_upkeep();
                        });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
                    }
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot install the Prometheus recorder: /metrics will answer 503");
                    None
                }
            }
        })
        .as_ref()
}

/// The group's routes: `/metrics` behind [`Access::Admin`], the rest open.
/// `document` renders the OpenAPI document for the server's configuration
/// and tokens (once, here): it is passed in because the document lists
/// this module's handlers (`crate::openapi`), so this module must not
/// reach back for it.
pub fn router(state: AppState, document: fn(&AppState) -> String) -> Router {
    install_metrics_recorder();
    let document: Arc<str> = document(&state).into();
    let admin = Router::new()
        .route("/metrics", get(metrics_text))
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), Access::Admin),
            require,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(move || openapi_json(document.clone())))
        .merge(admin)
        .with_state(state)
}

/// Metrics in the Prometheus text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "No or unknown token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin token", body = ErrorEnvelope),
        (status = 503, description = "`unavailable`: another metrics recorder owns this process", body = ErrorEnvelope),
    )
)]
pub async fn metrics_text() -> Result<Response, ApiError> {
    let handle = install_metrics_recorder().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "the Prometheus recorder could not be installed: another metrics recorder was installed in this process first",
        )
    })?;
    let mut resp = handle.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

/// Liveness: the process serves requests.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses((status = 200, description = "Alive", body = HealthResponse))
)]
pub async fn healthz() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".to_string(),
    })
}

/// Why the journal cannot take writes, if it cannot: a damaged database
/// file or failing writes ([`Journal::health`]: from a write that failed,
/// say on a full disk, until one succeeds), a stopped writer, or a
/// shutdown under way (`docs/api-admin.md`, "Readiness").
///
/// With today's public journal API this sees a writer that has stopped
/// (after `shutdown` completes, or a crashed writer thread). It cannot yet
/// see the short drain between `shutdown` starting and the writer stopping,
/// nor a journal that failed closed: that needs a side-effect-free probe
/// from the library (a `flush` would consume failure reports meant for
/// others).
pub fn journal_unready<S: Store>(journal: &Journal<S>) -> Option<Cow<'static, str>> {
    // A damaged database file, once any read or write met it, stays
    // unready until the journal is reopened: serving it would answer
    // "retry later" to requests that can never succeed. Failing writes
    // (a full disk) stay unready until a write, or the writer's idle probe
    // write, succeeds again.
    if let Err(unhealthy) = journal.health() {
        return Some(Cow::Owned(unhealthy.to_string()));
    }
    // The writer owns the committed-head sender: it is dropped exactly when
    // the writer thread stops.
    if journal.committed_head().has_changed().is_err() {
        return Some(Cow::Borrowed(
            "the journal writer has stopped (shut down or failed): it accepts no writes",
        ));
    }
    journal.refusing().map(Cow::Borrowed)
}

/// Readiness: the journal accepts writes.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "`unavailable`: the journal does not accept writes", body = ErrorEnvelope),
    )
)]
pub async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<Json<HealthResponse>, ApiError> {
    if let Some(reason) = journal_unready(&state.journal) {
        return Err(ApiError::new(ErrorCode::Unavailable, reason)
            .with_details(serde_json::json!({ "ready": false })));
    }
    Ok(Json(HealthResponse {
        status: "ready".to_string(),
    }))
}

/// The OpenAPI 3.1 document of this API, generated from the handlers and
/// fitted to this server's configuration.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json"))
)]
pub async fn openapi_json(document: Arc<str>) -> Response {
    let mut resp = (StatusCode::OK, document.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
