//! What the subscription endpoints share: [`Subscriptions`] (the group's
//! state: limits, the checkpoint worker, the session count), the compiled
//! `streams` filter, and the checks and error mappings of consumer names,
//! queries and paths.

use std::sync::{Arc, OnceLock};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::Extension;
use ironclad::delivery::config::RouteSpec;
use ironclad::delivery::routes::Routes;
use ironclad::store::Store;
use tokio::sync::Semaphore;

use crate::auth::Caller;
use crate::checkpoint::{validate_consumer_name, CheckpointError, Checkpoints};
use crate::config::SubscribeConfig;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::blocking::blocking;
use crate::state::AppState;

/// The group's shared state: the server's state, the subscription limits,
/// and the checkpoint worker (started on first use, on the runtime that
/// serves the requests). Cheap to clone.
#[derive(Clone)]
pub struct Subscriptions {
    pub(super) app: AppState,
    pub(super) config: Arc<SubscribeConfig>,
    checkpoints: Arc<OnceLock<Checkpoints>>,
    pub(super) sessions: Arc<Semaphore>,
}

impl Subscriptions {
    /// Subscriptions over `app` with `config`.
    pub fn new(app: AppState, config: SubscribeConfig) -> Self {
        Subscriptions {
            sessions: Arc::new(Semaphore::new(config.sessions_max)),
            app,
            config: Arc::new(config),
            checkpoints: Arc::new(OnceLock::new()),
        }
    }

    /// The checkpoint worker, started on first use. Must be called on a
    /// tokio runtime. Call [`Checkpoints::flush`] on it before shutting the
    /// journal down, so no acknowledgement is lost.
    pub fn checkpoints(&self) -> &Checkpoints {
        self.checkpoints.get_or_init(|| {
            Checkpoints::start(self.app.journal.clone(), self.config.checkpoint.clone())
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &SubscribeConfig {
        &self.config
    }
}

/// A compiled `streams` filter; `None` passes everything.
#[derive(Debug, Clone)]
pub(crate) struct StreamFilter(Option<Routes>);

/// The sink name the filter's single route is compiled under.
const FILTER_KEY: &str = "subscription";

impl StreamFilter {
    pub(crate) fn parse(glob: Option<&str>) -> Result<Self, ApiError> {
        let Some(glob) = glob.filter(|g| *g != "*") else {
            return Ok(StreamFilter(None));
        };
        let route = RouteSpec {
            streams: glob.to_string(),
            sink: FILTER_KEY.to_string(),
        };
        Routes::compile(&[route])
            .map(|r| StreamFilter(Some(r)))
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("streams: {e}; use a glob such as `orders-*` or `{{a,b}}`"),
                )
                .with_details(serde_json::json!({ "streams": glob }))
            })
    }

    pub(crate) fn matches(&self, stream: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|r| r.matches(FILTER_KEY, stream))
    }

    pub(crate) fn is_all(&self) -> bool {
        self.0.is_none()
    }
}

/// The caller the access guard admitted (none when the router runs
/// without it: then no name is restricted).
pub(crate) type CallerExt = Option<Extension<Caller>>;

/// Checks an optional consumer name (400 if malformed), and that the
/// caller's token may act as it (403 if bound to other names).
pub(crate) fn check_consumer(
    name: Option<String>,
    caller: &CallerExt,
) -> Result<Option<String>, ApiError> {
    match name {
        None => Ok(None),
        Some(n) => {
            validate_consumer_name(&n).map_err(|m| {
                ApiError::new(ErrorCode::InvalidRequest, m)
                    .with_details(serde_json::json!({ "consumer": n }))
            })?;
            if let Some(Extension(caller)) = caller {
                caller.check_consumer(&n)?;
            }
            Ok(Some(n))
        }
    }
}

/// The stored checkpoint of `consumer` (0 if it has none).
pub(crate) async fn stored_checkpoint(app: &AppState, consumer: &str) -> Result<u64, ApiError> {
    let journal = app.journal.clone();
    let name = consumer.to_string();
    blocking(move || {
        let row = journal.store().consumer(&name).map_err(store_error)?;
        Ok(row.map_or(0, |c| c.position))
    })
    .await
}

/// A store failure on the subscription paths: retryable, unless the
/// database is damaged ([`crate::error::store_condition`]).
pub(crate) fn store_error(e: ironclad::StoreError) -> ApiError {
    crate::error::store_error(&e, "reading")
}

impl From<CheckpointError> for ApiError {
    fn from(e: CheckpointError) -> Self {
        ApiError::new(ErrorCode::Unavailable, format!("{e}; retry later")).retry_after(1)
    }
}

pub(crate) fn query_error(e: QueryRejection) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("bad query string: {}", e.body_text()),
    )
}

pub(crate) fn path_error(e: PathRejection) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("bad path: {}", e.body_text()),
    )
}
