//! `/v1/admin/dlq…`: the dead-letter queue's stats, pages, entries,
//! selectors, and what retry and purge did.

use std::collections::BTreeMap;

use crate::delivery::state::{DlqReason, DlqRow};
use crate::model::RecordedEvent;
use serde::{Deserialize, Serialize};

/// DLQ totals of one sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SinkDlqStatsBody {
    /// The sink.
    pub sink: String,
    /// Entries in the DLQ.
    pub entries: u64,
    /// Oldest last-failure time, ms since the Unix epoch.
    pub oldest_failure_unix_ms: Option<u64>,
    /// Entries per reason (reasons with no entry are left out).
    pub by_reason: BTreeMap<String, u64>,
    /// Entries moved to the archive so far (evicted, expired or purged).
    pub archived_total: u64,
}

/// `GET /v1/admin/dlq/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DlqStatsResponse {
    /// Every sink that has ever been registered.
    pub sinks: Vec<SinkDlqStatsBody>,
}

/// One dead letter, with its event: the same fields, in the same order,
/// as `ironclad dlq show --json` prints locally (the sink's name, then the
/// stored row's fields, then the event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DlqEntryBody {
    /// The sink it failed on.
    pub sink: String,
    /// The stored row: sink id, position, event id, lane, attempts, first
    /// and last failure, last error, reason.
    #[serde(flatten)]
    pub row: DlqRow,
    /// The recorded event, as `GET /v1/streams/{s}/events` returns it
    /// (absent only if the store is damaged); its payload keeps its text.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub event: Option<RecordedEvent>,
}

/// `GET /v1/admin/dlq`: one page, oldest position first per sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DlqPage {
    /// The entries.
    pub entries: Vec<DlqEntryBody>,
    /// When the page is full: the `after` value of the next page
    /// (`SINK_ID:POSITION`); `null` on the last page.
    pub next: Option<String>,
}

/// Filters and paging of `GET /v1/admin/dlq`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct DlqListQuery {
    /// Only this sink.
    pub sink: Option<String>,
    /// Only this reason: `max_attempts`, `permanent`, `conflict` or `expired`.
    #[cfg_attr(feature = "openapi", param(value_type = Option<DlqReason>))]
    pub reason: Option<String>,
    /// Only entries whose event is in this stream.
    pub stream: Option<String>,
    /// Only entries whose last failure is at or before this time (ms since the Unix epoch).
    pub failed_before_ms: Option<u64>,
    /// Most entries on the page: 1..=1000, default 50.
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    pub limit: Option<usize>,
    /// Start after this entry: the `next` value of the previous page (`SINK_ID:POSITION`).
    #[cfg_attr(
        feature = "openapi",
        param(pattern = r"^\s*[+-]?[0-9]{1,18}\s*:\s*\+?[0-9]{1,19}\s*$")
    )]
    pub after: Option<String>,
}

/// Filters of `GET /v1/admin/dlq/export` (the list's, without paging).
/// Unknown parameters are refused, so a misspelt filter never widens an
/// export to every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct DlqExportQuery {
    /// Only this sink.
    pub sink: Option<String>,
    /// Only this reason: `max_attempts`, `permanent`, `conflict` or `expired`.
    #[cfg_attr(feature = "openapi", param(value_type = Option<DlqReason>))]
    pub reason: Option<String>,
    /// Only entries whose event is in this stream.
    pub stream: Option<String>,
    /// Only entries whose last failure is at or before this time (ms since the Unix epoch).
    pub failed_before_ms: Option<u64>,
}

/// Which entries `retry` and `purge` act on: `{"all": true}`, or at least
/// one filter. `position` needs `sink` and excludes the other filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DlqSelector {
    /// Every entry of every sink (excludes every filter).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// Only this sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    /// Only this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DlqReason>,
    /// Only entries whose event is in this stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Only entries whose last failure is at or before this time (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_before_ms: Option<u64>,
    /// Only the entry at this position (with `sink`); a missing entry is `not_found`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
}

impl DlqSelector {
    /// Whether any filter (anything but `all`) is set.
    pub fn has_filter(&self) -> bool {
        self.sink.is_some()
            || self.reason.is_some()
            || self.stream.is_some()
            || self.failed_before_ms.is_some()
            || self.position.is_some()
    }
}

/// `POST /v1/admin/dlq/retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DlqRetryResponse {
    /// Entries moved back to retrying (attempts reset, due now).
    pub retried: u64,
    /// Whether a running engine was told to reload (otherwise the next
    /// engine start sends them).
    #[serde(default)]
    pub engine_reloaded: bool,
}

/// `POST /v1/admin/dlq/purge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DlqPurgeResponse {
    /// Entries archived and then removed from the DLQ.
    pub purged: u64,
    /// The archive directory on the server.
    pub archive_dir: String,
    /// Archive files this purge wrote.
    pub files: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_to_the_bytes_the_server_wrote() {
        let (zeros, ones, twos) = ("0".repeat(64), "1".repeat(64), "2".repeat(64));
        let id = "0190a6f0-0000-7000-8000-000000000001";
        let text = format!(
            r#"{{"sink":"s","sink_id":1,"position":2,"event_id":"{id}","lane":"s:a","attempts":3,"first_failure_unix_ms":4,"last_failure_unix_ms":5,"last_error":"boom","reason":"max_attempts","event":{{"id":"{id}","stream":"a","version":1,"position":2,"type":"t","op":"event","entity":null,"payload":{{"b":1.50, "a":[2]}},"metadata":{{}},"created_at_us":6,"hash_version":1,"prev_hash":"{zeros}","hash":"{ones}","global_hash":"{twos}"}}}}"#
        );
        let entry: DlqEntryBody = serde_json::from_str(&text).expect("an entry");
        assert_eq!(entry.row.reason, DlqReason::MaxAttempts);
        assert_eq!(serde_json::to_string(&entry).expect("serializes"), text);
    }

    #[test]
    fn a_selector_sends_only_what_is_set() {
        let all = DlqSelector {
            all: true,
            ..DlqSelector::default()
        };
        assert_eq!(
            serde_json::to_string(&all).expect("serializes"),
            r#"{"all":true}"#
        );
        assert_eq!(
            serde_json::to_string(&DlqSelector::default()).expect("serializes"),
            "{}"
        );
    }
}
