//! The `[delivery]` section exactly as written, and its conversion into the
//! checked public types. Serde does the shape (types, unknown keys); this
//! module does everything serde cannot: kind-specific fields, secrets from
//! the environment, ranges and cross-references.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use serde::Deserialize;

use super::check::{check_config, check_sink};
use super::{
    BatchConfig, DeliveryConfig, DeliveryConfigError, DlqConfig, RouteSpec, Secret, SinkConfig,
    SinkKind,
};
use crate::delivery::breaker::BreakerConfig;
use crate::delivery::budget::RetryBudgetConfig;
use crate::delivery::retry::RetryPolicy;

/// The whole file. Not `deny_unknown_fields`: the other sections belong to
/// other readers.
#[derive(Deserialize)]
pub(super) struct Root {
    pub(super) delivery: Option<Delivery>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct Delivery {
    sinks: Vec<Sink>,
    routes: Vec<Route>,
    dlq: Dlq,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Http,
    Jsonl,
    Log,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Jsonl => "jsonl",
            Kind::Log => "log",
        }
    }
}

/// One sink: the fields of every kind, all optional, so that a field given
/// to the wrong kind can be named instead of reported as "unknown".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sink {
    name: String,
    kind: Kind,
    url: Option<String>,
    secret: Option<String>,
    secrets: Option<Vec<String>>,
    secret_env: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    path: Option<PathBuf>,
    #[serde(default)]
    batch: Batch,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    breaker: BreakerConfig,
    #[serde(default)]
    budget: RetryBudgetConfig,
    #[serde(default = "request_timeout_ms_default")]
    request_timeout_ms: u64,
    #[serde(default = "retry_rows_max_default")]
    retry_rows_max: usize,
}

fn request_timeout_ms_default() -> u64 {
    10_000
}

fn retry_rows_max_default() -> usize {
    100_000
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Batch {
    events_max: usize,
    bytes_max: usize,
    linger_ms: u64,
}

impl Default for Batch {
    fn default() -> Self {
        let d = BatchConfig::default();
        Batch {
            events_max: d.events_max,
            bytes_max: d.bytes_max,
            linger_ms: d.linger_ms,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    streams: String,
    sink: String,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Dlq {
    entries_max: usize,
    ttl_s: u64,
    janitor_interval_ms: u64,
}

impl Default for Dlq {
    fn default() -> Self {
        let d = DlqConfig::default();
        Dlq {
            entries_max: d.entries_max,
            ttl_s: d.ttl_s,
            janitor_interval_ms: d.janitor_interval_ms,
        }
    }
}

/// Converts and checks the raw section; `env` reads `secret_env` variables.
pub(super) fn convert(
    raw: Delivery,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<DeliveryConfig, DeliveryConfigError> {
    let dlq = convert_dlq(raw.dlq)?;
    // Counted before converting, so an oversized file is refused before any
    // environment variable is read.
    if raw.sinks.len() > super::SINKS_MAX {
        return Err(DeliveryConfigError::TooMany {
            what: "sinks",
            count: raw.sinks.len(),
            max: super::SINKS_MAX,
        });
    }
    let sinks = raw
        .sinks
        .into_iter()
        .enumerate()
        .map(|(index, sink)| convert_sink(index, sink, env))
        .collect::<Result<Vec<_>, _>>()?;
    let routes = raw
        .routes
        .into_iter()
        .map(|r| RouteSpec {
            streams: r.streams,
            sink: r.sink,
        })
        .collect();
    let config = DeliveryConfig { sinks, routes, dlq };
    check_config(&config)?;
    Ok(config)
}

fn convert_dlq(raw: Dlq) -> Result<DlqConfig, DeliveryConfigError> {
    let bounds: [(&'static str, u64, u64, u64); 3] = [
        ("entries_max", raw.entries_max as u64, 1, 10_000_000),
        ("ttl_s", raw.ttl_s, 1, 31_536_000),
        (
            "janitor_interval_ms",
            raw.janitor_interval_ms,
            100,
            86_400_000,
        ),
    ];
    for (field, value, min, max) in bounds {
        if !(min..=max).contains(&value) {
            return Err(DeliveryConfigError::Dlq {
                field,
                value,
                min,
                max,
            });
        }
    }
    Ok(DlqConfig {
        entries_max: raw.entries_max,
        ttl_s: raw.ttl_s,
        janitor_interval_ms: raw.janitor_interval_ms,
    })
}

fn convert_sink(
    index: usize,
    raw: Sink,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<SinkConfig, DeliveryConfigError> {
    let kind_name = raw.kind.as_str();
    let name = raw.name;
    // Which kinds take which fields; checked before anything is read from
    // the environment, so a misplaced field is reported as such.
    let fields: [(&'static str, bool, &[&str]); 6] = [
        ("url", raw.url.is_some(), &["http"]),
        ("secret", raw.secret.is_some(), &["http"]),
        ("secrets", raw.secrets.is_some(), &["http"]),
        ("secret_env", raw.secret_env.is_some(), &["http"]),
        ("headers", raw.headers.is_some(), &["http"]),
        ("path", raw.path.is_some(), &["jsonl"]),
    ];
    if let Some((field, _, _)) = fields
        .iter()
        .find(|(_, given, kinds)| *given && !kinds.contains(&kind_name))
    {
        return Err(DeliveryConfigError::WrongKind {
            sink: name,
            kind: kind_name,
            field,
        });
    }
    let missing = |field| DeliveryConfigError::Missing {
        sink: name.clone(),
        kind: kind_name,
        field,
    };
    let kind = match raw.kind {
        Kind::Http => {
            let url = raw.url.ok_or_else(|| missing("url"))?;
            let secrets = resolve_secrets(&name, raw.secret, raw.secrets, raw.secret_env, env)?;
            SinkKind::Http {
                url,
                secrets,
                headers: raw.headers.unwrap_or_default(),
            }
        }
        Kind::Jsonl => SinkKind::Jsonl {
            path: raw.path.ok_or_else(|| missing("path"))?,
        },
        Kind::Log => SinkKind::Log,
    };
    let sink = SinkConfig {
        name,
        kind,
        batch: BatchConfig {
            events_max: raw.batch.events_max,
            bytes_max: raw.batch.bytes_max,
            linger_ms: raw.batch.linger_ms,
        },
        retry: raw.retry,
        breaker: raw.breaker,
        budget: raw.budget,
        request_timeout_ms: raw.request_timeout_ms,
        retry_rows_max: raw.retry_rows_max,
    };
    check_sink(index, &sink)?;
    Ok(sink)
}

/// Exactly one source of secrets, or none (which [`check_sink`] reports
/// with the other secret checks).
fn resolve_secrets(
    sink: &str,
    secret: Option<String>,
    secrets: Option<Vec<String>>,
    secret_env: Option<String>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Vec<Secret>, DeliveryConfigError> {
    let given = [secret.is_some(), secrets.is_some(), secret_env.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(DeliveryConfigError::SecretConflict {
            sink: sink.to_string(),
        });
    }
    let values = match (secret, secrets, secret_env) {
        (Some(s), _, _) => vec![s],
        (_, Some(list), _) => list,
        (_, _, Some(var)) => {
            let env_err = |reason| DeliveryConfigError::EnvVar {
                sink: sink.to_string(),
                var: var.clone(),
                reason,
            };
            let value = env(&var).ok_or_else(|| env_err("is not set"))?;
            vec![value
                .into_string()
                .map_err(|_| env_err("is not valid UTF-8"))?]
        }
        (None, None, None) => Vec::new(),
    };
    Ok(values.into_iter().map(Secret).collect())
}
