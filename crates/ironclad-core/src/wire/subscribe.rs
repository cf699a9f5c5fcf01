//! Subscriptions over HTTP: the long-poll (`GET /v1/poll`), consumer
//! checkpoints (`GET /v1/consumers/{name}`, `POST …/ack`) and the query
//! of the WebSocket upgrade (`GET /v1/subscribe`).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The query of `GET /v1/poll`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct PollQuery {
    /// Return events with a position above this. Defaults to the
    /// consumer's checkpoint when `consumer` is given, else 0.
    pub after: Option<u64>,
    /// Wait up to this long (ms, capped at 30 000 and below the request
    /// timeout) when nothing is there yet. Default 0: answer at once.
    pub wait_ms: Option<u64>,
    /// Most events to return (default 100, at most `read_limit_max`).
    #[cfg_attr(feature = "openapi", param(minimum = 1))]
    pub limit: Option<usize>,
    /// Only streams matching this glob (`*`, `?`, `{a,b}`, `[abc]`; the
    /// document declares the bracket-free subset).
    #[cfg_attr(feature = "openapi", param(pattern = r"^[^\[\]{}\\]{1,1024}$"))]
    pub streams: Option<String>,
    /// A consumer whose checkpoint is the default `after`: 1 to 128 of
    /// `[A-Za-z0-9_.-]`.
    #[cfg_attr(feature = "openapi", param(pattern = r"^[A-Za-z0-9_.-]{1,128}$"))]
    pub consumer: Option<String>,
}

/// A poll's answer.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PollPage {
    /// Events in position order, as JSON text.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub events: Vec<Box<RawValue>>,
    /// The `after` of the next poll.
    pub next: u64,
}

/// `POST /v1/consumers/{name}/ack` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Every event up to this position is handled.
    pub position: u64,
}

/// A consumer's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsumerBody {
    /// The consumer's name.
    pub consumer: String,
    /// The durable checkpoint: resume after it.
    pub position: u64,
    /// When it last moved, µs since the Unix epoch (absent in an ack's
    /// answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at_us: Option<i64>,
}

/// The query of `GET /v1/subscribe`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct SubscribeQuery {
    /// The consumer's name; its checkpoint is kept and resumed from: 1 to
    /// 128 of `[A-Za-z0-9_.-]`.
    #[cfg_attr(feature = "openapi", param(pattern = r"^[A-Za-z0-9_.-]{1,128}$"))]
    pub consumer: Option<String>,
    /// Start after this position (overrides `Last-Event-ID` and the
    /// checkpoint).
    pub from: Option<u64>,
    /// Only streams matching this glob (`*`, `?`, `{a,b}`, `[abc]`; the
    /// document declares the bracket-free subset).
    #[cfg_attr(feature = "openapi", param(pattern = r"^[^\[\]{}\\]{1,1024}$"))]
    pub streams: Option<String>,
}
