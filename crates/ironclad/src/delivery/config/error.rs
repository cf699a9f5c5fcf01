//! [`DeliveryConfigError`]: every way the `[delivery]` section can be
//! wrong. Each message says what is wrong, where (file, sink name or route
//! index) and what to do.

use std::path::PathBuf;

use thiserror::Error;

/// Why a delivery configuration was refused.
#[derive(Debug, Error)]
pub enum DeliveryConfigError {
    /// The file could not be read.
    #[error("delivery config {path}: {source}; check the path and its permissions")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is larger than [`super::CONFIG_FILE_BYTES_MAX`].
    #[error("delivery config {path}: larger than {max_bytes} bytes; is this the right file?")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max_bytes: u64,
    },
    /// Not TOML, or a key or value does not fit `[delivery]`: a syntax
    /// error, an unknown key, a wrong type. The message has the line.
    #[error("delivery config{}: {message}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Toml {
        /// The file, when read with [`super::DeliveryConfig::load`].
        path: Option<PathBuf>,
        /// The parser's message, with line, column and the key involved.
        message: String,
    },
    /// More sinks or routes than allowed.
    #[error("delivery config: {count} {what}, more than the limit of {max}: merge some")]
    TooMany {
        /// `"sinks"` or `"routes"`.
        what: &'static str,
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A sink name is empty, too long or has characters outside
    /// `[A-Za-z0-9_.-]`.
    #[error("delivery.sinks[{index}]: name {name:?} is invalid: use 1 to 64 characters of A-Z a-z 0-9 _ . -")]
    SinkName {
        /// The sink's place in the file, from 0.
        index: usize,
        /// The name given.
        name: String,
    },
    /// Two sinks share a name.
    #[error("delivery.sinks[{index}]: name `{name}` is already used by delivery.sinks[{first}]: sink names must be unique")]
    DuplicateSink {
        /// The name.
        name: String,
        /// The first sink with it, from 0.
        first: usize,
        /// The second, from 0.
        index: usize,
    },
    /// A route names a sink that is not defined.
    #[error("delivery.routes[{index}]: sink `{sink}` is not defined (defined: {}): fix the name or add a [[delivery.sinks]] named `{sink}`", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownSink {
        /// The route's place in the file, from 0.
        index: usize,
        /// The sink it names.
        sink: String,
        /// The sinks that are defined.
        known: Vec<String>,
    },
    /// A route's `streams` is not a valid glob.
    #[error("delivery.routes[{index}]: streams {pattern:?} is not a valid glob: {reason}")]
    BadGlob {
        /// The route's place in the file, from 0.
        index: usize,
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A sink has a field that belongs to another kind.
    #[error(
        "sink `{sink}`: `{field}` does not apply to a {kind} sink: remove it or change `kind`"
    )]
    WrongKind {
        /// The sink.
        sink: String,
        /// Its kind.
        kind: &'static str,
        /// The field that does not belong.
        field: &'static str,
    },
    /// A sink lacks a field its kind requires.
    #[error("sink `{sink}`: a {kind} sink needs `{field}`")]
    Missing {
        /// The sink.
        sink: String,
        /// Its kind.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// More than one of `secret`, `secrets`, `secret_env`.
    #[error("sink `{sink}`: give only one of `secret`, `secrets` and `secret_env` (use `secrets` for several)")]
    SecretConflict {
        /// The sink.
        sink: String,
    },
    /// The `secret_env` variable is unset or unusable.
    #[error(
        "sink `{sink}`: environment variable {var} (secret_env) {reason}: set it before starting"
    )]
    EnvVar {
        /// The sink.
        sink: String,
        /// The variable's name.
        var: String,
        /// `"is not set"` or `"is not valid UTF-8"`.
        reason: &'static str,
    },
    /// A sink setting is out of range or malformed.
    #[error("sink `{sink}`, `{field}`: {reason}")]
    Invalid {
        /// The sink.
        sink: String,
        /// The setting, as written in the file (`batch.events_max`, `url`…).
        field: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A `[delivery.dlq]` setting is out of range.
    #[error("delivery.dlq: {field} is {value}, outside {min}..={max}")]
    Dlq {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
}

impl From<ironclad_core::delivery::routes::RouteError> for DeliveryConfigError {
    fn from(e: ironclad_core::delivery::routes::RouteError) -> Self {
        match e {
            ironclad_core::delivery::routes::RouteError::BadGlob {
                index,
                pattern,
                reason,
            } => DeliveryConfigError::BadGlob {
                index,
                pattern,
                reason,
            },
        }
    }
}
