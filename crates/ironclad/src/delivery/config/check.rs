//! The checks serde cannot express: ranges, kind-specific values, secrets,
//! headers, and the references between sinks and routes.

use std::collections::BTreeMap;

use super::{DeliveryConfig, DeliveryConfigError, Secret, SinkConfig, SinkKind};
use super::{
    HEADERS_MAX, HEADER_BYTES_MAX, RESERVED_HEADERS, ROUTES_MAX, SINKS_MAX, SINK_NAME_BYTES_MAX,
    URL_BYTES_MAX,
};
use crate::delivery::budget::RetryBudget;
use crate::delivery::routes::Routes;
use crate::delivery::signature::{SECRET_BYTES_MAX, SECRET_BYTES_MIN, SIGNATURES_MAX};

/// Checks a whole config: per-sink settings (done by [`super::raw::convert`]),
/// then the cross-references.
pub(super) fn check_config(config: &DeliveryConfig) -> Result<(), DeliveryConfigError> {
    if config.sinks.len() > SINKS_MAX {
        return Err(DeliveryConfigError::TooMany {
            what: "sinks",
            count: config.sinks.len(),
            max: SINKS_MAX,
        });
    }
    if config.routes.len() > ROUTES_MAX {
        return Err(DeliveryConfigError::TooMany {
            what: "routes",
            count: config.routes.len(),
            max: ROUTES_MAX,
        });
    }
    let mut seen = BTreeMap::new();
    for (index, sink) in config.sinks.iter().enumerate() {
        if let Some(first) = seen.insert(sink.name.as_str(), index) {
            return Err(DeliveryConfigError::DuplicateSink {
                name: sink.name.clone(),
                first,
                index,
            });
        }
    }
    for (index, route) in config.routes.iter().enumerate() {
        if !seen.contains_key(route.sink.as_str()) {
            return Err(DeliveryConfigError::UnknownSink {
                index,
                sink: route.sink.clone(),
                known: seen.keys().map(|k| k.to_string()).collect(),
            });
        }
    }
    // Compiling is the only complete check of a glob's syntax.
    Routes::compile(&config.routes)?;
    Ok(())
}

/// Checks one sink's settings, `index` being its place in the file.
pub(super) fn check_sink(index: usize, sink: &SinkConfig) -> Result<(), DeliveryConfigError> {
    let name = &sink.name;
    let name_ok = (1..=SINK_NAME_BYTES_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !name_ok {
        return Err(DeliveryConfigError::SinkName {
            index,
            name: name.clone(),
        });
    }
    let field = |field: &'static str, reason: String| DeliveryConfigError::Invalid {
        sink: name.clone(),
        field,
        reason,
    };
    let b = &sink.batch;
    let bounds: [(&'static str, u64, u64, u64); 5] = [
        ("batch.events_max", b.events_max as u64, 1, 10_000),
        (
            "batch.bytes_max",
            b.bytes_max as u64,
            1024,
            64 * 1024 * 1024,
        ),
        ("batch.linger_ms", b.linger_ms, 0, 60_000),
        ("request_timeout_ms", sink.request_timeout_ms, 1, 300_000),
        ("retry_rows_max", sink.retry_rows_max as u64, 1, 10_000_000),
    ];
    for (f, value, min, max) in bounds {
        if !(min..=max).contains(&value) {
            return Err(field(f, format!("{value} is outside {min}..={max}")));
        }
    }
    sink.retry
        .check()
        .map_err(|e| field("retry", e.to_string()))?;
    sink.breaker
        .check()
        .map_err(|e| field("breaker", e.to_string()))?;
    RetryBudget::new(&sink.budget).map_err(|e| field("budget", e.to_string()))?;
    match &sink.kind {
        SinkKind::Http {
            url,
            secrets,
            headers,
        } => {
            check_url(url).map_err(|reason| field("url", reason))?;
            check_secrets(secrets).map_err(|reason| field("secret", reason))?;
            check_headers(headers).map_err(|reason| field("headers", reason))?;
        }
        SinkKind::Jsonl { path } => {
            if path.as_os_str().is_empty() {
                return Err(field(
                    "path",
                    "must not be empty: give the file to write".into(),
                ));
            }
        }
        SinkKind::Log => {}
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), String> {
    // The URL is not echoed back: it may carry credentials or tokens.
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return Err("must start with http:// or https://".into());
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err("has no host after the scheme".into());
    }
    if url.len() > URL_BYTES_MAX {
        return Err(format!("is longer than {URL_BYTES_MAX} bytes"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters: percent-encode them".into());
    }
    Ok(())
}

fn check_secrets(secrets: &[Secret]) -> Result<(), String> {
    if secrets.is_empty() {
        return Err("an http sink signs every request: set secret, secrets or secret_env".into());
    }
    if secrets.len() > SIGNATURES_MAX {
        return Err(format!(
            "{} secrets, more than {SIGNATURES_MAX} active at once: retire the old ones",
            secrets.len()
        ));
    }
    for (i, s) in secrets.iter().enumerate() {
        let len = s.expose().len();
        if !(SECRET_BYTES_MIN..=SECRET_BYTES_MAX).contains(&len) {
            return Err(format!(
                "secret #{} is {len} bytes: use {SECRET_BYTES_MIN} to {SECRET_BYTES_MAX} random bytes",
                i + 1
            ));
        }
    }
    Ok(())
}

fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), String> {
    if headers.len() > HEADERS_MAX {
        return Err(format!(
            "{} headers, more than {HEADERS_MAX}",
            headers.len()
        ));
    }
    for (name, value) in headers {
        // RFC 9110 §5.6.2 token characters.
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || name.len() > HEADER_BYTES_MAX || !name.bytes().all(token) {
            return Err(format!(
                "{name:?} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"
            ));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(format!(
                "{name:?} is set by the sink itself and cannot be configured"
            ));
        }
        // Visible ASCII, space and tab only: CR or LF would let a value
        // inject headers.
        let value_ok = value.len() <= HEADER_BYTES_MAX
            && value
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
        if !value_ok {
            return Err(format!(
                "the value of {name:?} must be at most {HEADER_BYTES_MAX} bytes of visible ASCII"
            ));
        }
    }
    Ok(())
}
