//! `/v1/admin/dumps…`: emergency dumps waiting to be replayed, and what a
//! replay did.

use serde::{Deserialize, Serialize};

/// One dump file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DumpBody {
    /// Its file name: the `{name}` of the replay endpoint.
    pub name: String,
    /// Its path on the server.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// `GET /v1/admin/dumps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DumpsResponse {
    /// Dumps waiting to be replayed, oldest first (at most 1000).
    pub dumps: Vec<DumpBody>,
    /// Whether more dumps wait than were listed.
    #[serde(default)]
    pub truncated: bool,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplayResponse {
    /// The dump.
    pub name: String,
    /// Records (appends) in the dump.
    pub records: usize,
    /// Events the replay wrote.
    pub appended_events: u64,
    /// Events that were already in the journal.
    pub already_appended_events: u64,
    /// Where the dump was archived.
    pub archived_to: String,
}
