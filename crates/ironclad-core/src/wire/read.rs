//! Reading streams: `GET /v1/streams/{stream}/events` (a page of one
//! stream) and `GET /v1/streams` (stream heads by name).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::StreamHead;

/// Query of a stream read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// First version to return (default 1).
    pub from: Option<u64>,
    /// Most events to return (default 100, at most `read_limit_max`).
    #[cfg_attr(feature = "openapi", param(minimum = 1))]
    pub limit: Option<usize>,
}

/// A page of a stream.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadPage {
    /// The events, in version order, as JSON text (the full envelope: id,
    /// stream, version, position, type, op, entity, payload, metadata,
    /// created_at_us, hash_version, prev_hash, hash, global_hash).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub events: Vec<Box<RawValue>>,
    /// `from` for the next page; `null` at the end of the stream.
    pub next: Option<u64>,
}

/// Query of a stream listing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// List names after this one (default: from the start).
    pub after: Option<String>,
    /// Most streams to return (default 100, at most `read_limit_max`).
    #[cfg_attr(feature = "openapi", param(minimum = 1))]
    pub limit: Option<usize>,
}

/// A page of stream heads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamPage {
    /// Heads sorted by name: `{stream, version, hash}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub streams: Vec<StreamHead>,
    /// `after` for the next page; `null` when this was the last.
    pub next: Option<String>,
}
