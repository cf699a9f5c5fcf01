//! Server configuration: the `[server]` section of the TOML file, then
//! `IRONCLAD_*` environment variables, then command-line flags, each
//! overriding the one before (SPEC §6). With nothing configured it serves
//! 127.0.0.1:7070 from `./ironclad-data`.
//!
//! The file (the same one `ironclad run` reads; other sections are ignored
//! here):
//!
//! ```toml
//! data_dir = "./ironclad-data"          # top level, shared with `run`
//!
//! [server]
//! listen = "127.0.0.1:7070"
//! insecure_no_auth = false              # allow a non-loopback bind without tokens
//! shutdown_deadline_ms = 10000
//! allowed_origins = []                  # web origins besides the server's own, e.g. "http://localhost:3000"
//! allowed_hosts = []                    # Host names besides IPs and localhost, e.g. "ironclad.internal"
//!
//! [[server.tokens]]
//! token = "…"                           # never logged
//! role = "producer"                     # producer | consumer | admin
//! consumers = ["billing", "audit-*"]    # consumer role only: the names it may use
//!
//! [server.limits]
//! body_bytes_max = 8388608
//! inflight_body_bytes_max = 268435456 # all requests' bodies at once (503 server_busy)
//! events_per_request_max = 1000
//! json_depth_max = 64
//! header_timeout_ms = 10000
//! request_timeout_ms = 30000
//! connections_max = 1024
//! read_limit_max = 1000
//! queue_wait_ms = 1000
//!
//! [server.journal]
//! durability = "fsync"                  # or "os"
//! queue_events_max = 65536
//! queue_bytes_max = 268435456
//! commit_delay_us_max = 0
//! busy_timeout_ms = 5000
//! ```
//!
//! Environment variables (each overrides its key; see [`ENV_VARS`]):
//! `IRONCLAD_LISTEN`, `IRONCLAD_DATA_DIR`, `IRONCLAD_INSECURE_NO_AUTH`
//! (`1`/`true`/`0`/`false`), `IRONCLAD_TOKENS` (replaces the file's tokens:
//! comma-separated `role:token` pairs, e.g.
//! `producer:p-secret,admin:a-secret`; a consumer token's names follow
//! `=`, separated by `|`: `consumer=billing|audit-*:c-secret`), `IRONCLAD_ALLOWED_ORIGINS` and
//! `IRONCLAD_ALLOWED_HOSTS` (comma-separated; replace the file's lists),
//! and one `IRONCLAD_<KEY>` per limit,
//! e.g. `IRONCLAD_BODY_BYTES_MAX`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ironclad::{Durability, JournalConfig};
use serde::Deserialize;
use thiserror::Error;

use crate::auth::{Auth, ConsumerNames, Role};
use crate::checkpoint::CheckpointConfig;

/// Default listen address.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7070";

/// Largest configuration file read, bytes.
pub const CONFIG_FILE_BYTES_MAX: usize = 1024 * 1024;

/// Every environment variable the server reads, with what it sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("IRONCLAD_LISTEN", "listen address, e.g. 127.0.0.1:7070"),
    ("IRONCLAD_DATA_DIR", "data directory"),
    (
        "IRONCLAD_INSECURE_NO_AUTH",
        "1/true: allow a non-loopback bind without tokens",
    ),
    (
        "IRONCLAD_TOKENS",
        "comma-separated role:token pairs (consumer=NAME|PREFIX*:token binds names); replaces [[server.tokens]]",
    ),
    (
        "IRONCLAD_ALLOWED_ORIGINS",
        "comma-separated web origins; replaces server.allowed_origins",
    ),
    (
        "IRONCLAD_ALLOWED_HOSTS",
        "comma-separated Host names; replaces server.allowed_hosts",
    ),
    ("IRONCLAD_BODY_BYTES_MAX", "limits.body_bytes_max"),
    (
        "IRONCLAD_INFLIGHT_BODY_BYTES_MAX",
        "limits.inflight_body_bytes_max",
    ),
    (
        "IRONCLAD_EVENTS_PER_REQUEST_MAX",
        "limits.events_per_request_max",
    ),
    ("IRONCLAD_JSON_DEPTH_MAX", "limits.json_depth_max"),
    ("IRONCLAD_HEADER_TIMEOUT_MS", "limits.header_timeout_ms"),
    ("IRONCLAD_REQUEST_TIMEOUT_MS", "limits.request_timeout_ms"),
    ("IRONCLAD_CONNECTIONS_MAX", "limits.connections_max"),
    ("IRONCLAD_READ_LIMIT_MAX", "limits.read_limit_max"),
    ("IRONCLAD_QUEUE_WAIT_MS", "limits.queue_wait_ms"),
];

/// Request limits (each has a test of its status and error code).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// Largest request body, bytes (413 `body_too_large`).
    pub body_bytes_max: usize,
    /// Most body bytes all requests in flight may hold at once; a request
    /// beyond it is answered 503 `server_busy` before its body is read
    /// (`crate::body_budget`). At least `body_bytes_max`.
    pub inflight_body_bytes_max: usize,
    /// Most events in one append request (400 `too_many_events`). Also the
    /// journal's `events_per_append_max`.
    pub events_per_request_max: usize,
    /// Deepest nesting of arrays and objects in an event payload (400
    /// `json_too_deep`). The request body may nest 3 levels more (body,
    /// `events` array, event object).
    pub json_depth_max: usize,
    /// Time allowed to receive the request headers (slowloris), ms. Also
    /// how long an idle keep-alive connection is kept.
    pub header_timeout_ms: u64,
    /// Time allowed for a whole request, body included, ms (408 `timeout`).
    /// Long-polls must cap their wait below it.
    pub request_timeout_ms: u64,
    /// Most concurrent connections; more get 503 `too_many_connections`.
    pub connections_max: usize,
    /// Most events (or streams) one read returns.
    pub read_limit_max: usize,
    /// How long an append waits for room in a full ingest queue before it
    /// is answered 429 `queue_full`, ms. 0 = fail at once.
    pub queue_wait_ms: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            body_bytes_max: 8 * 1024 * 1024,
            inflight_body_bytes_max: 256 * 1024 * 1024,
            events_per_request_max: 1_000,
            json_depth_max: 64,
            header_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            connections_max: 1_024,
            read_limit_max: 1_000,
            queue_wait_ms: 1_000,
        }
    }
}

/// Journal settings the server exposes (the rest keep their defaults).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalSettings {
    /// Acknowledgement durability: `fsync` (default) or `os`.
    pub durability: Durability,
    /// Most events waiting in the ingest queue.
    pub queue_events_max: usize,
    /// Most bytes waiting in the ingest queue.
    pub queue_bytes_max: usize,
    /// Group-commit linger, µs.
    pub commit_delay_us_max: u64,
    /// SQLite busy timeout, ms.
    pub busy_timeout_ms: u64,
}

impl Default for JournalSettings {
    fn default() -> Self {
        let d = JournalConfig::new(".");
        JournalSettings {
            durability: d.durability,
            queue_events_max: d.queue_events_max,
            queue_bytes_max: d.queue_bytes_max,
            commit_delay_us_max: d.commit_delay_us_max,
            busy_timeout_ms: d.busy_timeout_ms,
        }
    }
}

/// Default [`SubscribeConfig::ack_window_events`].
pub const ACK_WINDOW_EVENTS_DEFAULT: usize = 100_000;

/// Longest `wait_ms` a long-poll may ask for; it is further kept below the
/// server's request timeout.
pub const POLL_WAIT_MS_MAX: u64 = 30_000;

/// Limits and timings of subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeConfig {
    /// The checkpoint worker's batching.
    pub checkpoint: CheckpointConfig,
    /// Events a session may have queued for its socket; when full, the
    /// subscriber is disconnected as a slow consumer.
    pub buffer_events: usize,
    /// How long the outgoing buffer may stay full, with more to send,
    /// before the subscriber is disconnected as a slow consumer.
    pub slow_grace: Duration,
    /// Events a named consumer may have unacknowledged; at this many the
    /// session stops reading until acknowledgements arrive.
    pub unacked_max: usize,
    /// Events a named consumer may be sent from its oldest unacknowledged
    /// one on (acknowledged or not): past it the session is closed (1008
    /// `ack window full`), so the server's acknowledgement state stays
    /// bounded when one event is never acknowledged. At least `unacked_max`.
    pub ack_window_events: usize,
    /// Events read from the store per page.
    pub page_events: usize,
    /// Interval between the server's pings.
    pub ping_interval: Duration,
    /// A session that has not answered a ping (or sent anything) for this
    /// long is closed.
    pub pong_timeout: Duration,
    /// Time allowed for the closing handshake (sending the close frame,
    /// and the client's reply).
    pub close_timeout: Duration,
    /// Largest message a client may send, bytes.
    pub message_bytes_max: usize,
    /// Most WebSocket sessions at once (a subscription outlives the HTTP
    /// request, so it is counted here, not by the connection limit).
    pub sessions_max: usize,
    /// Longest long-poll wait (see [`POLL_WAIT_MS_MAX`]).
    pub poll_wait_max: Duration,
    /// Most events a long-poll reads while looking for ones matching its
    /// `streams` filter, before it answers with what it has.
    pub poll_scan_events_max: usize,
}

impl Default for SubscribeConfig {
    fn default() -> Self {
        SubscribeConfig {
            checkpoint: CheckpointConfig::default(),
            buffer_events: 1_024,
            slow_grace: Duration::from_millis(500),
            unacked_max: 10_000,
            ack_window_events: ACK_WINDOW_EVENTS_DEFAULT,
            page_events: 512,
            ping_interval: Duration::from_secs(15),
            pong_timeout: Duration::from_secs(45),
            close_timeout: Duration::from_secs(5),
            message_bytes_max: 64 * 1024,
            sessions_max: 1_024,
            poll_wait_max: Duration::from_millis(POLL_WAIT_MS_MAX),
            poll_scan_events_max: 100_000,
        }
    }
}

/// Subscription limits the server exposes (`[server.subscribe]`); each
/// maps onto [`SubscribeConfig`], whose other
/// fields keep their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscribeSettings {
    /// Events a session may have queued before it counts as a slow consumer.
    pub buffer_events: usize,
    /// Events a named consumer may have unacknowledged before the session pauses.
    pub unacked_max: usize,
    /// Events sent from the oldest unacknowledged one before the session is closed.
    pub ack_window_events: usize,
    /// Most WebSocket sessions at once.
    pub sessions_max: usize,
    /// Interval between the server's pings, ms.
    pub ping_interval_ms: u64,
    /// A session silent this long after a ping is closed, ms.
    pub pong_timeout_ms: u64,
}

impl Default for SubscribeSettings {
    fn default() -> Self {
        let d = SubscribeConfig::default();
        SubscribeSettings {
            buffer_events: d.buffer_events,
            unacked_max: d.unacked_max,
            ack_window_events: d.ack_window_events,
            sessions_max: d.sessions_max,
            ping_interval_ms: u64::try_from(d.ping_interval.as_millis()).unwrap_or(u64::MAX),
            pong_timeout_ms: u64::try_from(d.pong_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl SubscribeSettings {
    /// The subscription configuration these settings describe.
    pub fn to_config(&self) -> SubscribeConfig {
        SubscribeConfig {
            buffer_events: self.buffer_events,
            unacked_max: self.unacked_max,
            ack_window_events: self.ack_window_events,
            sessions_max: self.sessions_max,
            ping_interval: std::time::Duration::from_millis(self.ping_interval_ms),
            pong_timeout: std::time::Duration::from_millis(self.pong_timeout_ms),
            ..Default::default()
        }
    }

    fn check(&self) -> Result<(), ServerConfigError> {
        let range = |field: &'static str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ServerConfigError::OutOfRange {
                    field,
                    value: v.to_string(),
                    range: "see docs: [server.subscribe]",
                })
            }
        };
        range(
            "subscribe.buffer_events",
            self.buffer_events as u64,
            1,
            1_000_000,
        )?;
        range(
            "subscribe.unacked_max",
            self.unacked_max as u64,
            1,
            10_000_000,
        )?;
        range(
            "subscribe.ack_window_events",
            self.ack_window_events as u64,
            self.unacked_max as u64,
            100_000_000,
        )?;
        range(
            "subscribe.sessions_max",
            self.sessions_max as u64,
            1,
            1_000_000,
        )?;
        range(
            "subscribe.ping_interval_ms",
            self.ping_interval_ms,
            100,
            3_600_000,
        )?;
        range(
            "subscribe.pong_timeout_ms",
            self.pong_timeout_ms,
            100,
            3_600_000,
        )?;
        Ok(())
    }
}

/// One configured bearer token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token itself (never logged).
    pub token: String,
    /// What it may do.
    pub role: Role,
    /// A consumer token's consumer names: exact, or a prefix ending in
    /// `*`. `None`: any name (and [`ServerConfig::unbound_consumers_warning`]
    /// warns when that lets consumer tokens act as each other).
    #[serde(default)]
    pub consumers: Option<Vec<String>>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("token", &"<redacted>")
            .field("role", &self.role)
            .field("consumers", &self.consumers)
            .finish()
    }
}

/// The server's configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Bearer tokens; empty = no authentication (loopback only unless
    /// `insecure_no_auth`).
    pub tokens: Vec<TokenConfig>,
    /// Allows binding a non-loopback address without tokens.
    pub insecure_no_auth: bool,
    /// Web origins allowed besides the server's own (`crate::origin`).
    pub allowed_origins: Vec<String>,
    /// Host names allowed besides IP literals and `localhost`
    /// (`crate::origin`; checked only without tokens, or when set).
    pub allowed_hosts: Vec<String>,
    /// Request limits.
    pub limits: ServerLimits,
    /// Journal settings.
    pub journal: JournalSettings,
    /// Subscription limits (`[server.subscribe]`).
    pub subscribe: SubscribeSettings,
    /// On shutdown, how long in-flight requests, then the delivery engine,
    /// then the journal each get to finish, ms.
    pub shutdown_deadline_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: LISTEN_DEFAULT
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7070))),
            data_dir: PathBuf::from("./ironclad-data"),
            tokens: Vec::new(),
            insecure_no_auth: false,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            limits: ServerLimits::default(),
            journal: JournalSettings::default(),
            subscribe: SubscribeSettings::default(),
            shutdown_deadline_ms: 10_000,
        }
    }
}

/// The configuration is invalid.
#[derive(Debug, Error)]
pub enum ServerConfigError {
    /// The TOML could not be parsed.
    #[error("server configuration: {0}")]
    Toml(String),
    /// An environment variable has a bad value.
    #[error("environment variable {var}: {reason}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        reason: String,
    },
    /// Refusing to expose an unauthenticated server.
    #[error("refusing to listen on {0} without tokens: configure [[server.tokens]] (or IRONCLAD_TOKENS), bind 127.0.0.1, or pass --insecure-no-auth")]
    NoAuthOffLoopback(SocketAddr),
    /// A value is out of range.
    #[error("server configuration: {field} = {value} is out of range ({range})")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// The allowed range.
        range: &'static str,
    },
    /// The same token is listed twice (under one role or two), so which
    /// role it grants would depend on the order of the list.
    #[error("server configuration: server.tokens entries {first} and {second} hold the same token: give each role its own token")]
    DuplicateToken {
        /// The first entry holding it, from 1.
        first: usize,
        /// The later entry holding it, from 1.
        second: usize,
    },
    /// The journal settings are inconsistent.
    #[error("server configuration: {0}")]
    Journal(String),
}

/// Refuses tokens that are short, blank (whitespace only) or listed twice.
/// Messages name entries by number and never show a token.
fn check_tokens(tokens: &[TokenConfig]) -> Result<(), ServerConfigError> {
    let weak = |t: &TokenConfig| t.token.len() < 8 || t.token.trim().is_empty();
    if let Some(i) = tokens.iter().position(weak) {
        return Err(ServerConfigError::OutOfRange {
            field: "server.tokens[].token",
            value: format!("entry {} ({} bytes)", i + 1, tokens[i].token.len()),
            range: "at least 8 bytes, not all whitespace: use a long random token",
        });
    }
    for (i, t) in tokens.iter().enumerate() {
        let Some(names) = &t.consumers else { continue };
        let refused = if t.role == Role::Consumer {
            ConsumerNames::parse(names).err()
        } else {
            Some(format!(
                "only a consumer token is bound to names (a {} token is not)",
                t.role.as_str()
            ))
        };
        if let Some(reason) = refused {
            return Err(ServerConfigError::Toml(format!(
                "server.tokens entry {}: consumers: {reason}",
                i + 1
            )));
        }
    }
    let mut seen = std::collections::HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if let Some(first) = seen.insert(t.token.as_str(), i) {
            return Err(ServerConfigError::DuplicateToken {
                first: first + 1,
                second: i + 1,
            });
        }
    }
    Ok(())
}

/// The `[server]` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ServerSection {
    listen: Option<String>,
    insecure_no_auth: Option<bool>,
    allowed_origins: Option<Vec<String>>,
    allowed_hosts: Option<Vec<String>>,
    shutdown_deadline_ms: Option<u64>,
    tokens: Option<Vec<TokenConfig>>,
    limits: Option<ServerLimits>,
    journal: Option<JournalSettings>,
    subscribe: Option<SubscribeSettings>,
}

/// The file: top-level `data_dir` and `[server]`; other keys belong to other
/// sections (e.g. `[delivery]`) and are ignored here.
#[derive(Debug, Default, Deserialize)]
struct FileRoot {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    server: ServerSection,
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("{text:?} is not an address: write IP:PORT, e.g. 127.0.0.1:7070 or [::1]:7070")
    })
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("{other:?} is not a boolean: use 1/true or 0/false")),
    }
}

/// Parses `IRONCLAD_TOKENS`: comma-separated `role:token` pairs, where a
/// consumer role may carry its names: `consumer=billing|audit-*:token`
/// (names cannot hold `:`, `,`, `=` or `|`, so this is unambiguous).
pub fn parse_tokens(text: &str) -> Result<Vec<TokenConfig>, String> {
    let mut out = Vec::new();
    for (i, pair) in text.split(',').enumerate() {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let Some((role, token)) = pair.split_once(':') else {
            return Err(format!(
                "entry {} has no `role:` prefix: write role:token pairs separated by commas",
                i + 1
            ));
        };
        let (role, names) = match role.split_once('=') {
            Some((role, names)) => (role, Some(names.split('|').map(str::to_string).collect())),
            None => (role, None),
        };
        let role = match role.trim() {
            "producer" => Role::Producer,
            "consumer" => Role::Consumer,
            "admin" => Role::Admin,
            other => {
                return Err(format!(
                    "entry {}: unknown role {other:?}: use producer, consumer or admin",
                    i + 1
                ))
            }
        };
        out.push(TokenConfig {
            token: token.to_string(),
            role,
            consumers: names,
        });
    }
    Ok(out)
}

impl ServerConfig {
    /// The defaults overridden by a TOML file's top-level `data_dir` and
    /// `[server]` section.
    pub fn from_toml_str(text: &str) -> Result<Self, ServerConfigError> {
        let mut config = ServerConfig::default();
        config.apply_toml_str(text)?;
        Ok(config)
    }

    /// Overrides this configuration with a TOML file's `data_dir` and
    /// `[server]` section.
    pub fn apply_toml_str(&mut self, text: &str) -> Result<(), ServerConfigError> {
        if text.len() > CONFIG_FILE_BYTES_MAX {
            return Err(ServerConfigError::Toml(format!(
                "the file is larger than {CONFIG_FILE_BYTES_MAX} bytes; is it the right file?"
            )));
        }
        let root: FileRoot = toml::from_str(text)
            .map_err(|e| ServerConfigError::Toml(ironclad::toml_error::describe(text, &e)))?;
        if let Some(d) = root.data_dir {
            self.data_dir = d;
        }
        let s = root.server;
        if let Some(listen) = s.listen {
            self.listen = parse_listen(&listen)
                .map_err(|e| ServerConfigError::Toml(format!("server.listen: {e}")))?;
        }
        if let Some(b) = s.insecure_no_auth {
            self.insecure_no_auth = b;
        }
        let list = |field: &str, v: Vec<String>, one: fn(&str) -> Result<String, String>| {
            v.iter()
                .map(|e| one(e))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ServerConfigError::Toml(format!("server.{field}: {e}")))
        };
        if let Some(v) = s.allowed_origins {
            self.allowed_origins = list("allowed_origins", v, crate::origin::parse_origin)?;
        }
        if let Some(v) = s.allowed_hosts {
            self.allowed_hosts = list("allowed_hosts", v, crate::origin::parse_host)?;
        }
        if let Some(ms) = s.shutdown_deadline_ms {
            self.shutdown_deadline_ms = ms;
        }
        if let Some(t) = s.tokens {
            self.tokens = t;
        }
        if let Some(l) = s.limits {
            self.limits = l;
        }
        if let Some(j) = s.journal {
            self.journal = j;
        }
        if let Some(sub) = s.subscribe {
            self.subscribe = sub;
        }
        Ok(())
    }

    /// Applies `IRONCLAD_*` variables as read by `get` (pass
    /// `|k| std::env::var(k).ok()` for the process environment).
    pub fn apply_env(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ServerConfigError> {
        let bad = |var: &str, reason: String| ServerConfigError::Env {
            var: var.to_string(),
            reason,
        };
        if let Some(v) = get("IRONCLAD_LISTEN") {
            self.listen = parse_listen(&v).map_err(|e| bad("IRONCLAD_LISTEN", e))?;
        }
        if let Some(v) = get("IRONCLAD_DATA_DIR") {
            if !v.is_empty() {
                self.data_dir = PathBuf::from(v);
            }
        }
        if let Some(v) = get("IRONCLAD_INSECURE_NO_AUTH") {
            self.insecure_no_auth =
                parse_bool(&v).map_err(|e| bad("IRONCLAD_INSECURE_NO_AUTH", e))?;
        }
        if let Some(v) = get("IRONCLAD_TOKENS") {
            self.tokens = parse_tokens(&v).map_err(|e| bad("IRONCLAD_TOKENS", e))?;
        }
        if let Some(v) = get("IRONCLAD_ALLOWED_ORIGINS") {
            self.allowed_origins = crate::origin::parse_list(&v, crate::origin::parse_origin)
                .map_err(|e| bad("IRONCLAD_ALLOWED_ORIGINS", e))?;
        }
        if let Some(v) = get("IRONCLAD_ALLOWED_HOSTS") {
            self.allowed_hosts = crate::origin::parse_list(&v, crate::origin::parse_host)
                .map_err(|e| bad("IRONCLAD_ALLOWED_HOSTS", e))?;
        }
        let l = &mut self.limits;
        let usizes: [(&str, &mut usize); 5] = [
            ("IRONCLAD_BODY_BYTES_MAX", &mut l.body_bytes_max),
            (
                "IRONCLAD_INFLIGHT_BODY_BYTES_MAX",
                &mut l.inflight_body_bytes_max,
            ),
            (
                "IRONCLAD_EVENTS_PER_REQUEST_MAX",
                &mut l.events_per_request_max,
            ),
            ("IRONCLAD_JSON_DEPTH_MAX", &mut l.json_depth_max),
            ("IRONCLAD_CONNECTIONS_MAX", &mut l.connections_max),
        ];
        for (var, slot) in usizes {
            if let Some(v) = get(var) {
                *slot = v
                    .trim()
                    .parse()
                    .map_err(|_| bad(var, format!("{v:?} is not a whole number")))?;
            }
        }
        if let Some(v) = get("IRONCLAD_READ_LIMIT_MAX") {
            l.read_limit_max = v.trim().parse().map_err(|_| {
                bad(
                    "IRONCLAD_READ_LIMIT_MAX",
                    format!("{v:?} is not a whole number"),
                )
            })?;
        }
        let u64s: [(&str, &mut u64); 3] = [
            ("IRONCLAD_HEADER_TIMEOUT_MS", &mut l.header_timeout_ms),
            ("IRONCLAD_REQUEST_TIMEOUT_MS", &mut l.request_timeout_ms),
            ("IRONCLAD_QUEUE_WAIT_MS", &mut l.queue_wait_ms),
        ];
        for (var, slot) in u64s {
            if let Some(v) = get(var) {
                *slot = v
                    .trim()
                    .parse()
                    .map_err(|_| bad(var, format!("{v:?} is not a whole number of ms")))?;
            }
        }
        Ok(())
    }

    /// The token table for [`crate::handlers::guard::require`].
    pub fn auth(&self) -> Auth {
        Auth::bound(self.tokens.iter().map(|t| {
            // Checked by `check`; an unchecked bad binding binds to nothing
            // rather than to everything.
            let names = t
                .consumers
                .as_ref()
                .map(|n| ConsumerNames::parse(n).unwrap_or_else(|_| ConsumerNames::none()));
            (t.token.clone(), t.role, names)
        }))
    }

    /// A warning for the start-up log when two or more consumer tokens
    /// exist and some are bound to no names: those may act as (ack for,
    /// evict) any consumer, including the others'.
    pub fn unbound_consumers_warning(&self) -> Option<String> {
        let consumers: Vec<_> = self
            .tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| t.role == Role::Consumer)
            .collect();
        let unbound: Vec<String> = consumers
            .iter()
            .filter(|(_, t)| t.consumers.is_none())
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        (consumers.len() >= 2 && !unbound.is_empty()).then(|| {
            format!(
                "{} of {} consumer tokens (server.tokens entries {}) are bound to no consumer names, so they may subscribe, acknowledge and evict as any consumer: set `consumers = [...]` on each",
                unbound.len(),
                consumers.len(),
                unbound.join(", ")
            )
        })
    }

    /// The Host, Origin and content-type policy ([`crate::origin`]).
    pub fn origin_policy(&self) -> crate::origin::OriginPolicy {
        crate::origin::OriginPolicy {
            allowed_origins: self.allowed_origins.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
            tokens: !self.tokens.is_empty(),
        }
    }

    /// The journal configuration this server opens its data directory with.
    pub fn journal_config(&self) -> JournalConfig {
        let mut c = JournalConfig::new(&self.data_dir).durability(self.journal.durability);
        c.queue_events_max = self.journal.queue_events_max;
        c.queue_bytes_max = self.journal.queue_bytes_max;
        c.commit_delay_us_max = self.journal.commit_delay_us_max;
        c.busy_timeout_ms = self.journal.busy_timeout_ms;
        c.limits.events_per_append_max = self.limits.events_per_request_max;
        c.limits.payload_depth_max = self.limits.json_depth_max;
        c
    }

    /// The header read timeout.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.header_timeout_ms)
    }

    /// The whole-request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.request_timeout_ms)
    }

    /// The shutdown deadline (each phase).
    pub fn shutdown_deadline(&self) -> Duration {
        Duration::from_millis(self.shutdown_deadline_ms)
    }

    /// Refuses an unauthenticated server on a non-loopback address, and
    /// limits that could never admit a request or would disable a guard.
    pub fn check(&self) -> Result<(), ServerConfigError> {
        self.subscribe.check()?;
        if self.tokens.is_empty() && !self.insecure_no_auth && !self.listen.ip().is_loopback() {
            return Err(ServerConfigError::NoAuthOffLoopback(self.listen));
        }
        check_tokens(&self.tokens)?;
        let l = &self.limits;
        let ranges: [(&'static str, u64, u64, u64, &'static str); 9] = [
            (
                "body_bytes_max",
                l.body_bytes_max as u64,
                1024,
                1 << 30,
                "1 KiB to 1 GiB",
            ),
            (
                "inflight_body_bytes_max",
                l.inflight_body_bytes_max as u64,
                l.body_bytes_max as u64,
                1 << 40,
                "body_bytes_max to 1 TiB, so the largest body allowed fits",
            ),
            (
                "events_per_request_max",
                l.events_per_request_max as u64,
                1,
                100_000,
                "1 to 100000",
            ),
            (
                "json_depth_max",
                l.json_depth_max as u64,
                1,
                1_000,
                "1 to 1000",
            ),
            (
                "header_timeout_ms",
                l.header_timeout_ms,
                10,
                600_000,
                "10 ms to 10 minutes",
            ),
            (
                "request_timeout_ms",
                l.request_timeout_ms,
                10,
                3_600_000,
                "10 ms to 1 hour",
            ),
            (
                "connections_max",
                l.connections_max as u64,
                1,
                1_000_000,
                "1 to 1000000",
            ),
            (
                "read_limit_max",
                l.read_limit_max as u64,
                1,
                ironclad::READ_LIMIT_MAX as u64,
                "1 to 10000",
            ),
            (
                "queue_wait_ms",
                l.queue_wait_ms,
                0,
                600_000,
                "0 to 10 minutes",
            ),
        ];
        for (field, value, lo, hi, range) in ranges {
            if value < lo || value > hi {
                return Err(ServerConfigError::OutOfRange {
                    field,
                    value: value.to_string(),
                    range,
                });
            }
        }
        if self.shutdown_deadline_ms > 600_000 {
            return Err(ServerConfigError::OutOfRange {
                field: "shutdown_deadline_ms",
                value: self.shutdown_deadline_ms.to_string(),
                range: "0 to 10 minutes",
            });
        }
        self.journal_config()
            .check()
            .map_err(|e| ServerConfigError::Journal(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subscribe_limits_come_from_the_file_and_are_checked() {
        let c = ServerConfig::from_toml_str(
            "[server.subscribe]\nbuffer_events = 7\nsessions_max = 3\nping_interval_ms = 500\n",
        )
        .expect("parse");
        let sub = c.subscribe.to_config();
        assert_eq!((sub.buffer_events, sub.sessions_max), (7, 3));
        assert_eq!(sub.ping_interval, std::time::Duration::from_millis(500));
        assert_eq!(sub.unacked_max, SubscribeConfig::default().unacked_max);
        assert!(c.check().is_ok());
        let bad =
            ServerConfig::from_toml_str("[server.subscribe]\nbuffer_events = 0\n").expect("parse");
        assert!(matches!(
            bad.check(),
            Err(ServerConfigError::OutOfRange {
                field: "subscribe.buffer_events",
                ..
            })
        ));
        assert!(ServerConfig::from_toml_str("[server.subscribe]\nbogus = 1\n").is_err());
    }

    use super::*;

    #[test]
    fn blank_and_repeated_tokens_are_refused_without_showing_them() {
        let token = |t: &str, role: &str| {
            format!("[[server.tokens]]\ntoken = \"{t}\"\nrole = \"{role}\"\n")
        };
        let blank =
            ServerConfig::from_toml_str(&format!("[server]\n{}", token("          ", "admin")))
                .expect("parses");
        assert!(matches!(
            blank.check(),
            Err(ServerConfigError::OutOfRange { .. })
        ));
        let twice = format!(
            "[server]\n{}{}",
            token("same-token-123", "producer"),
            token("same-token-123", "admin")
        );
        let err = ServerConfig::from_toml_str(&twice)
            .expect("parses")
            .check()
            .expect_err("refused");
        assert!(matches!(
            err,
            ServerConfigError::DuplicateToken {
                first: 1,
                second: 2
            }
        ));
        assert!(!err.to_string().contains("same-token-123"), "{err}");
        let broken = "[server]\n[[server.tokens]]\ntoken = \"tok-s3cr3t-0123\nrole = \"admin\"\n";
        let err = ServerConfig::from_toml_str(broken).expect_err("bad TOML");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn file_then_env_each_override() {
        let text = r#"
data_dir = "/from/file"
[delivery]
anything = 1
[server]
listen = "0.0.0.0:9000"
[[server.tokens]]
token = "file-token-1"
role = "admin"
[server.limits]
body_bytes_max = 4096
"#;
        let mut c = ServerConfig::from_toml_str(text).expect("valid toml");
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.tokens.len(), 1);
        assert_eq!(c.limits.body_bytes_max, 4096);
        assert_eq!(c.limits.connections_max, 1024, "unset limits keep defaults");
        c.apply_env(|k| match k {
            "IRONCLAD_LISTEN" => Some("127.0.0.1:9001".into()),
            "IRONCLAD_TOKENS" => Some("producer:pppppppp, consumer:cccc:cccc".into()),
            "IRONCLAD_BODY_BYTES_MAX" => Some("2048".into()),
            _ => None,
        })
        .expect("valid env");
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.tokens.len(), 2);
        assert_eq!(
            c.tokens[1].token, "cccc:cccc",
            "only the first colon splits"
        );
        assert_eq!(c.limits.body_bytes_max, 2048);
        assert!(c.check().is_ok());
        assert!(
            !format!("{c:?}").contains("pppppppp"),
            "tokens never in Debug"
        );
    }

    #[test]
    fn allowed_origins_and_hosts_from_file_and_env() {
        let text = "[server]\nallowed_origins = [\"HTTP://App.Example:3000\"]\nallowed_hosts = [\"box.lan\"]\n";
        let mut c = ServerConfig::from_toml_str(text).expect("parse");
        assert_eq!(c.allowed_origins, ["http://app.example:3000"]);
        assert_eq!(c.origin_policy().allowed_hosts, ["box.lan"]);
        c.apply_env(|k| (k == "IRONCLAD_ALLOWED_HOSTS").then(|| "a.lan, b.lan:1".into()))
            .expect("env");
        assert_eq!(c.allowed_hosts, ["a.lan", "b.lan:1"]);
        let e = ServerConfig::from_toml_str("[server]\nallowed_origins = [\"evil\"]\n")
            .expect_err("not an origin");
        assert!(e.to_string().contains("server.allowed_origins"), "{e}");
        let e = c
            .apply_env(|k| (k == "IRONCLAD_ALLOWED_ORIGINS").then(|| "http://a/b".into()))
            .expect_err("a path");
        assert!(e.to_string().contains("IRONCLAD_ALLOWED_ORIGINS"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = ServerConfig::default();
        let e = c
            .apply_env(|k| (k == "IRONCLAD_CONNECTIONS_MAX").then(|| "many".to_string()))
            .expect_err("not a number");
        assert!(e.to_string().contains("IRONCLAD_CONNECTIONS_MAX"), "{e}");
        assert!(ServerConfig::from_toml_str("[server]\nbogus = 1").is_err());
        assert!(ServerConfig::from_toml_str("[server.limits]\nbogus = 1").is_err());
        let mut c = ServerConfig {
            listen: "0.0.0.0:1".parse().expect("addr"),
            ..ServerConfig::default()
        };
        assert!(matches!(
            c.check(),
            Err(ServerConfigError::NoAuthOffLoopback(_))
        ));
        c.insecure_no_auth = true;
        assert!(c.check().is_ok());
        c.limits.connections_max = 0;
        assert!(matches!(
            c.check(),
            Err(ServerConfigError::OutOfRange { .. })
        ));
        c.limits.connections_max = 1;
        c.limits.inflight_body_bytes_max = c.limits.body_bytes_max - 1;
        let e = c.check().expect_err("budget below one body");
        assert!(e.to_string().contains("inflight_body_bytes_max"), "{e}");
        c.limits.inflight_body_bytes_max = c.limits.body_bytes_max;
        assert!(c.check().is_ok());
    }

    #[test]
    fn consumer_tokens_bind_names_in_the_file_and_the_environment() {
        let file = r#"
[[server.tokens]]
token = "billing-token"
role = "consumer"
consumers = ["billing", "audit-*"]
[[server.tokens]]
token = "free-consumer"
role = "consumer"
"#;
        let c = ServerConfig::from_toml_str(file).expect("parses");
        assert!(c.check().is_ok());
        assert_eq!(
            c.tokens[0].consumers.as_deref(),
            Some(&["billing".to_string(), "audit-*".to_string()][..])
        );
        let warning = c
            .unbound_consumers_warning()
            .expect("one of two is unbound");
        assert!(
            warning.contains("entries 2") && warning.contains("any consumer"),
            "{warning}"
        );
        let caller = c
            .auth()
            .check(
                Some(b"Bearer billing-token"),
                crate::auth::Access::Subscribe,
            )
            .expect("admitted");
        assert!(caller.check_consumer("audit-eu").is_ok());
        assert!(caller.check_consumer("audit").is_err());

        let mut env = ServerConfig::default();
        env.apply_env(|k| {
            (k == "IRONCLAD_TOKENS")
                .then(|| "consumer=billing|audit-*:c-secret:1,consumer=audit:a-secret-2".into())
        })
        .expect("valid env");
        assert!(env.check().is_ok());
        assert_eq!(env.tokens[0].token, "c-secret:1");
        assert_eq!(env.tokens[1].consumers, Some(vec!["audit".to_string()]));
        assert_eq!(env.unbound_consumers_warning(), None, "all bound");

        for bad in [
            "[[server.tokens]]\ntoken = \"admin-token\"\nrole = \"admin\"\nconsumers = [\"a\"]\n",
            "[[server.tokens]]\ntoken = \"cons-token\"\nrole = \"consumer\"\nconsumers = [\"a*b\"]\n",
        ] {
            let err = ServerConfig::from_toml_str(bad).expect("parses").check().expect_err(bad);
            assert!(err.to_string().contains("entry 1: consumers"), "{err}");
        }
        let window = "[server.subscribe]\nunacked_max = 50\nack_window_events = 49\n";
        assert!(ServerConfig::from_toml_str(window)
            .expect("parses")
            .check()
            .is_err());
    }
}
