//! Delivery configuration (SPEC §4 "Sinks and routes"): the `[delivery]`
//! section of the TOML configuration file, parsed and checked into
//! [`DeliveryConfig`].
//!
//! ```toml
//! [delivery.dlq]
//! entries_max = 10000
//! ttl_s = 604800
//!
//! [[delivery.sinks]]
//! name = "webhook"
//! kind = "http"                          # http | jsonl | log
//! url = "https://example.com/hook"
//! secret_env = "IRONCLAD_WEBHOOK_SECRET" # or secret = "…", or secrets = ["new", "old"]
//! headers = { "X-Tenant" = "acme" }
//! request_timeout_ms = 5000
//! [delivery.sinks.batch]
//! events_max = 500
//! [delivery.sinks.retry]
//! delay_ms_base = 100
//! [delivery.sinks.breaker]
//! window = { kind = "time", seconds = 30 }
//!
//! [[delivery.sinks]]
//! name = "archive"
//! kind = "jsonl"
//! path = "out/events.jsonl"
//!
//! [[delivery.routes]]
//! streams = "orders-*"
//! sink = "webhook"
//! ```
//!
//! Rules:
//! - Only `[delivery]` is read. Other top-level keys and tables (`data_dir`,
//!   `[server]`, `[journal]`…) belong to other readers and are ignored; a
//!   file without `[delivery]` gives [`DeliveryConfig::default`]: no sinks.
//! - Inside `[delivery]` every table refuses unknown keys, so a typo fails
//!   loudly (the message names the key and its line) instead of silently
//!   falling back to a default.
//! - Every setting has a default; `retry`, `breaker` and `budget` take the
//!   fields of [`RetryPolicy`], [`BreakerConfig`] and [`RetryBudgetConfig`],
//!   checked by their own `check`. TOML has no null, so in `breaker` a 0
//!   turns off `consecutive_failures_threshold` and
//!   `slow_call_rate_threshold_pct`.
//! - An `http` sink needs `url` (`http://` or `https://`) and exactly one of
//!   `secret`, `secrets` (several, newest first, for rotation) or
//!   `secret_env` (the name of an environment variable read at load; unset
//!   is an error). Every request is signed, so a secret is required.
//!   A `jsonl` sink needs `path`, used as given (a relative path is relative
//!   to the working directory). A `log` sink takes neither. Giving a sink a
//!   field of another kind is an error.
//! - Routes map stream globs to sinks (semantics in [`super::routes`]).
//!   A sink that no route names is allowed — it receives nothing, which
//!   may be intended while a route is being rolled out — but worth a
//!   warning: [`DeliveryConfig::unrouted_sinks`] lists them.
//! - At most [`SINKS_MAX`] sinks and [`ROUTES_MAX`] routes.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::breaker::BreakerConfig;
use super::budget::RetryBudgetConfig;
use super::retry::RetryPolicy;

mod check;
mod error;
mod raw;
#[cfg(test)]
mod tests;

pub use super::routes::RouteSpec;
pub use error::DeliveryConfigError;

/// Most sinks in one configuration.
pub const SINKS_MAX: usize = 64;
/// Most routes in one configuration.
pub const ROUTES_MAX: usize = 1024;
/// Longest sink name, in bytes.
pub const SINK_NAME_BYTES_MAX: usize = 64;
/// Largest configuration file [`DeliveryConfig::load`] reads: far above any
/// real file, low enough that a wrong path (a log, a device) fails fast.
pub const CONFIG_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The `[delivery]` section: sinks, the routes to them, and the DLQ.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeliveryConfig {
    /// The sinks, in file order; names are unique.
    pub sinks: Vec<SinkConfig>,
    /// The routes, in file order; each names a sink in `sinks`.
    pub routes: Vec<RouteSpec>,
    /// The dead-letter queue's bounds.
    pub dlq: DlqConfig,
}

/// One destination and how deliveries to it are batched, retried and
/// protected.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Unique name: 1 to [`SINK_NAME_BYTES_MAX`] characters of
    /// `[A-Za-z0-9_.-]`, so it is safe in metric labels and file names.
    pub name: String,
    /// What the sink is and its kind-specific settings.
    pub kind: SinkKind,
    /// Batch bounds.
    pub batch: BatchConfig,
    /// Retry schedule; checked with [`RetryPolicy::check`].
    pub retry: RetryPolicy,
    /// Circuit breaker; checked with [`BreakerConfig::check`].
    pub breaker: BreakerConfig,
    /// Retry budget; checked as [`RetryBudget::new`](super::budget::RetryBudget::new) does.
    pub budget: RetryBudgetConfig,
    /// Longest one delivery call may take, in milliseconds, 1..=300,000.
    /// Default 10,000.
    pub request_timeout_ms: u64,
    /// Most retry rows this sink may hold, 1..=10,000,000 (default
    /// 100,000): when reached, the dispatcher stops taking new events for
    /// the sink until retries drain, so a dead sink cannot fill the disk.
    pub retry_rows_max: usize,
}

/// The kind of a sink and the settings only that kind takes.
#[derive(Clone, PartialEq)]
pub enum SinkKind {
    /// HTTP webhook: JSON batches, signed (SPEC §4).
    Http {
        /// Target, `http://` or `https://`.
        url: String,
        /// Signing secrets, newest first: 1 to
        /// [`SIGNATURES_MAX`](super::signature::SIGNATURES_MAX), each [`SECRET_BYTES_MIN`](super::signature::SECRET_BYTES_MIN)..=[`SECRET_BYTES_MAX`](super::signature::SECRET_BYTES_MAX) bytes.
        secrets: Vec<Secret>,
        /// Extra request headers. They may not replace the headers the sink
        /// sets itself (see [`RESERVED_HEADERS`]).
        headers: BTreeMap<String, String>,
    },
    /// Append-only JSONL file, fsynced.
    Jsonl {
        /// The file, as configured.
        path: PathBuf,
    },
    /// Writes events to the log; for development.
    Log,
}

impl SinkKind {
    /// The kind's name as written in the file: `http`, `jsonl` or `log`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SinkKind::Http { .. } => "http",
            SinkKind::Jsonl { .. } => "jsonl",
            SinkKind::Log => "log",
        }
    }
}

impl fmt::Debug for SinkKind {
    /// Header values are redacted: they often carry credentials
    /// (`Authorization`), and configs end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkKind::Http {
                url,
                secrets,
                headers,
            } => {
                let headers: BTreeMap<&str, Secret> = headers
                    .keys()
                    .map(|k| (k.as_str(), Secret(String::new())))
                    .collect();
                f.debug_struct("Http")
                    .field("url", url)
                    .field("secrets", secrets)
                    .field("headers", &headers)
                    .finish()
            }
            SinkKind::Jsonl { path } => f.debug_struct("Jsonl").field("path", path).finish(),
            SinkKind::Log => f.write_str("Log"),
        }
    }
}

/// Headers an `http` sink sets itself, which `headers` may not name
/// (compared case-insensitively).
pub const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "host",
    "idempotency-key",
    "ironclad-signature",
    "transfer-encoding",
];
/// Most extra headers on one sink.
pub const HEADERS_MAX: usize = 64;
/// Longest header name or value, in bytes.
pub const HEADER_BYTES_MAX: usize = 8 * 1024;
/// Longest `url`, in bytes.
pub const URL_BYTES_MAX: usize = 8 * 1024;

/// A webhook signing secret. `Debug` and `Display` print `<redacted>`, so
/// a config can be logged; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value. Its length is not checked here: config loading checks
    /// it, and [`super::signature::SigningKey::new`] checks it again.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret's value, to key the HMAC with.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// When a batch is sent: whichever bound is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most events in one batch, 1..=10,000. Default 500.
    pub events_max: usize,
    /// Most bytes in one batch, 1 KiB..=64 MiB. Default 4 MiB.
    pub bytes_max: usize,
    /// How long a batch that is not full waits for more events, in
    /// milliseconds, 0..=60,000. Default 5.
    pub linger_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            events_max: 500,
            bytes_max: 4 * 1024 * 1024,
            linger_ms: 5,
        }
    }
}

/// Bounds of the dead-letter queue. Entries over a bound are archived
/// ([`super::archive`]), never just deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlqConfig {
    /// Most entries kept, 1..=10,000,000; the oldest are evicted beyond it.
    /// Default 10,000.
    pub entries_max: usize,
    /// How long an entry is kept, in seconds, 1..=31,536,000 (a year).
    /// Default 604,800 (7 days).
    pub ttl_s: u64,
    /// How often the janitor enforces the bounds, in milliseconds,
    /// 100..=86,400,000. Default 60,000.
    pub janitor_interval_ms: u64,
}

impl Default for DlqConfig {
    fn default() -> Self {
        DlqConfig {
            entries_max: 10_000,
            ttl_s: 604_800,
            janitor_interval_ms: 60_000,
        }
    }
}

impl DeliveryConfig {
    /// Parses and checks the `[delivery]` section of a TOML document.
    /// `secret_env` variables are read from the process environment.
    pub fn from_toml_str(text: &str) -> Result<DeliveryConfig, DeliveryConfigError> {
        Self::from_toml_str_with_env(text, &|var| std::env::var_os(var))
    }

    /// [`Self::from_toml_str`] with `env` standing in for the environment,
    /// so tests need not mutate the process's (which races other threads).
    pub(crate) fn from_toml_str_with_env(
        text: &str,
        env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<DeliveryConfig, DeliveryConfigError> {
        let root: raw::Root = toml::from_str(text).map_err(|e| DeliveryConfigError::Toml {
            path: None,
            message: crate::toml_error::describe(text, &e),
        })?;
        raw::convert(root.delivery.unwrap_or_default(), env)
    }

    /// Reads and checks the `[delivery]` section of the TOML file at `path`
    /// (at most [`CONFIG_FILE_BYTES_MAX`] bytes).
    pub fn load(path: &Path) -> Result<DeliveryConfig, DeliveryConfigError> {
        let io = |source| DeliveryConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        file.take(CONFIG_FILE_BYTES_MAX + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > CONFIG_FILE_BYTES_MAX {
            return Err(DeliveryConfigError::FileTooLarge {
                path: path.to_path_buf(),
                max_bytes: CONFIG_FILE_BYTES_MAX,
            });
        }
        Self::from_toml_str(&text).map_err(|e| match e {
            DeliveryConfigError::Toml { message, .. } => DeliveryConfigError::Toml {
                path: Some(path.to_path_buf()),
                message,
            },
            other => other,
        })
    }

    /// The sink named `name`.
    pub fn sink(&self, name: &str) -> Option<&SinkConfig> {
        self.sinks.iter().find(|s| s.name == name)
    }

    /// Names of sinks no route names, in file order. Allowed, but such a
    /// sink receives nothing: callers should warn.
    pub fn unrouted_sinks(&self) -> Vec<&str> {
        let routed: HashSet<&str> = self.routes.iter().map(|r| r.sink.as_str()).collect();
        self.sinks
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| !routed.contains(n))
            .collect()
    }
}
