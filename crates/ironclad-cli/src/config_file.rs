//! The configuration file given with `--config`, as the delivery commands
//! (`run`, `status`, `dlq`) use it, and the data directory they resolve.
//!
//! The library reads and checks the `[delivery]` section
//! ([`DeliveryConfig::load`]); this module adds the one top-level key the CLI
//! owns, `data_dir`, and a lenient reading of the routes for `status`, which
//! must work without the webhook secrets that a full check needs.
//!
//! Data directory precedence: `--data-dir` (or `$IRONCLAD_DATA_DIR`), then
//! `data_dir` in the file, then the default `./ironclad-data`. A relative
//! `data_dir` is relative to the working directory, like every other path in
//! the file (JSONL sink paths).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use ironclad::delivery::config::{DeliveryConfig, RouteSpec, CONFIG_FILE_BYTES_MAX};
use ironclad::JournalConfig;
use serde::Deserialize;

use crate::{Cli, ExitCode, Failure};

/// What the CLI reads from a configuration file without checking the
/// `[delivery]` section in full.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The file.
    pub path: PathBuf,
    /// The top-level `data_dir`, if set.
    pub data_dir: Option<PathBuf>,
    /// `[[delivery.routes]]`, as written.
    pub routes: Vec<RouteSpec>,
    /// The names of `[[delivery.sinks]]`, in file order.
    pub sink_names: Vec<String>,
}

#[derive(Deserialize)]
struct Root {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    delivery: Delivery,
}

#[derive(Deserialize, Default)]
struct Delivery {
    #[serde(default)]
    sinks: Vec<SinkName>,
    #[serde(default)]
    routes: Vec<Route>,
}

#[derive(Deserialize)]
struct SinkName {
    name: String,
}

#[derive(Deserialize)]
struct Route {
    streams: String,
    sink: String,
}

/// A usage failure (exit 2) with `message`.
pub fn usage(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: ExitCode::Usage,
        error: anyhow!("{message}"),
    }
}

/// Reads `path` leniently: the top-level `data_dir`, the sink names and the
/// routes; other keys are ignored. An unreadable file or bad TOML is a
/// usage error (exit 2).
pub fn read(path: &Path) -> Result<ConfigFile, Failure> {
    let text = read_capped(path, CONFIG_FILE_BYTES_MAX)?;
    let root: Root = toml::from_str(&text).map_err(|e| {
        usage(format!(
            "config {}: {}",
            path.display(),
            ironclad::toml_error::describe(&text, &e)
        ))
    })?;
    Ok(ConfigFile {
        path: path.to_path_buf(),
        data_dir: root.data_dir,
        routes: root
            .delivery
            .routes
            .into_iter()
            .map(|r| RouteSpec {
                streams: r.streams,
                sink: r.sink,
            })
            .collect(),
        sink_names: root.delivery.sinks.into_iter().map(|s| s.name).collect(),
    })
}

/// Loads and fully checks the `[delivery]` section of `path` (secrets from
/// `secret_env` included). Any problem is a usage error (exit 2) carrying
/// the library's message.
pub fn load_delivery(path: &Path) -> Result<DeliveryConfig, Failure> {
    DeliveryConfig::load(path).map_err(|e| Failure {
        code: ExitCode::Usage,
        error: e.into(),
    })
}

/// The data directory: `--data-dir`/`$IRONCLAD_DATA_DIR` when given, else
/// the file's `data_dir`, else the default.
pub fn data_dir(cli: &Cli, file: Option<&ConfigFile>) -> PathBuf {
    if cli.data_dir_explicit {
        return cli.data_dir.clone();
    }
    file.and_then(|f| f.data_dir.clone())
        .unwrap_or_else(|| cli.data_dir.clone())
}

/// The journal configuration for `data_dir`, with default settings.
pub fn journal_config(data_dir: &Path) -> JournalConfig {
    JournalConfig::new(data_dir)
}

/// Reads a configuration file as text, refusing one larger than
/// `bytes_max` (reading stops just past it, so a huge or endless file costs
/// nothing). Unreadable or too large: a usage error (exit 2).
pub fn read_capped(path: &Path, bytes_max: u64) -> Result<String, Failure> {
    let file = std::fs::File::open(path).map_err(|e| {
        usage(format!(
            "config {}: {e}; check the --config path",
            path.display()
        ))
    })?;
    let mut text = String::new();
    file.take(bytes_max + 1)
        .read_to_string(&mut text)
        .map_err(|e| usage(format!("config {}: {e}", path.display())))?;
    if text.len() as u64 > bytes_max {
        return Err(usage(format!(
            "config {}: larger than {bytes_max} bytes; is this the right file?",
            path.display()
        )));
    }
    Ok(text)
}
