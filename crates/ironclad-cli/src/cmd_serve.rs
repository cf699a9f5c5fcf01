//! `ironclad serve`: the HTTP server (SPEC §6) over a local data directory,
//! with the delivery engine alongside when the configuration has sinks.
//!
//! Configuration layers, each overriding the one before: defaults
//! (127.0.0.1:7070, `./ironclad-data`), the `--config` TOML file (top-level
//! `data_dir`, `[server]`; `[delivery]` for sinks), `IRONCLAD_*`
//! environment variables, then flags. The first line on stdout is
//! `listening on http://ADDR` (or a JSON `listening` line), so scripts and
//! tests can bind port 0 and read the address.
//!
//! SIGTERM or SIGINT stops it gracefully: no new connections, requests in
//! flight finish, then the engine and the journal shut down.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ironclad::Journal;
use ironclad_server::config::CONFIG_FILE_BYTES_MAX;
use ironclad_server::serve::{self, ServeError};
use ironclad_server::{ServerConfig, ServerConfigError};
use serde::Serialize;

use crate::config_file::{self, usage};
use crate::{output, Cli, CmdResult, ExitCode, Failure};

/// Arguments of `serve`.
#[derive(Debug, Args)]
#[command(after_help = "\
Configuration: defaults, then the --config file ([server], [[server.tokens]], \
[server.limits], [server.journal], top-level data_dir, [delivery] for sinks), \
then environment variables (IRONCLAD_LISTEN, IRONCLAD_DATA_DIR, \
IRONCLAD_TOKENS=role:token,role:token, IRONCLAD_INSECURE_NO_AUTH=1, \
IRONCLAD_BODY_BYTES_MAX and the other limits), then flags.

Without tokens the server only binds loopback addresses, unless \
--insecure-no-auth. SIGTERM or Ctrl-C stops it gracefully.

Exit codes: 0 after a graceful stop, 2 for a bad configuration, 5 if the \
data directory is locked, 1 for anything else.")]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:7070 (port 0 picks a free one).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Allow listening on a non-loopback address without tokens.
    #[arg(long)]
    pub insecure_no_auth: bool,
}

#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum ServeLine<'a> {
    Listening {
        addr: String,
        data_dir: &'a std::path::Path,
        auth: bool,
        delivery: bool,
    },
    Stopped,
}

fn config_failure(e: ServerConfigError) -> Failure {
    usage(e)
}

/// Resolves the configuration: file, then environment, then flags.
pub fn resolve(cli: &Cli, args: &ServeArgs) -> Result<ServerConfig, Failure> {
    let mut config = ServerConfig::default();
    if let Some(path) = &args.config {
        let text = config_file::read_capped(path, CONFIG_FILE_BYTES_MAX as u64)?;
        config
            .apply_toml_str(&text)
            .map_err(|e| usage(format!("config {}: {e}", path.display())))?;
    }
    config
        .apply_env(|k| std::env::var(k).ok())
        .map_err(config_failure)?;
    if cli.data_dir_explicit {
        config.data_dir = cli.data_dir.clone();
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.insecure_no_auth {
        config.insecure_no_auth = true;
    }
    config.check().map_err(config_failure)?;
    Ok(config)
}

/// Runs `serve`.
pub async fn run(cli: &Cli, args: &ServeArgs) -> CmdResult {
    let config = resolve(cli, args)?;
    let delivery = match &args.config {
        Some(path) if !config_file::read(path)?.sink_names.is_empty() => {
            Some(config_file::load_delivery(path)?)
        }
        _ => None,
    };
    // Handlers first, so a signal during start-up is a graceful stop too.
    let stop = stop_signal()?;

    // Before the journal opens: it sets the queue-capacity gauges once, at
    // open, and they would be lost without a recorder installed.
    ironclad_server::handlers::ops::install_metrics_recorder();
    let journal = Journal::open(config.journal_config())?;
    let engine = match delivery {
        None => None,
        Some(d) => Some(Arc::new(
            crate::cmd_run::start_delivery(&journal, d, config.shutdown_deadline()).await?,
        )),
    };
    let data_dir = config.data_dir.clone();
    let auth = !config.tokens.is_empty();
    if let Some(warning) = config.unbound_consumers_warning() {
        tracing::warn!("{warning}");
    }
    let delivering = engine.is_some();
    let server = serve::bind(config, journal, engine)
        .await
        .map_err(serve_failure)?;
    let addr = server.local_addr();
    if cli.json {
        output::json_line(&ServeLine::Listening {
            addr: addr.to_string(),
            data_dir: &data_dir,
            auth,
            delivery: delivering,
        })?;
    } else {
        println!("listening on http://{addr}");
        println!(
            "data directory {}; authentication {}; delivery {}; SIGTERM or Ctrl-C stops gracefully",
            data_dir.display(),
            auth_banner(auth, addr),
            if delivering { "on" } else { "off (no sinks)" },
        );
    }
    {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
    server.run(stop).await.map_err(serve_failure)?;
    if cli.json {
        output::json_line(&ServeLine::Stopped)?;
    } else {
        println!("stopped: requests in flight finished; journal closed, lock released");
    }
    Ok(ExitCode::Ok)
}

/// What the start-up line says about authentication. Without tokens the
/// server is loopback-only unless `--insecure-no-auth` let it bind
/// elsewhere, and then the line must not claim otherwise.
fn auth_banner(auth: bool, addr: SocketAddr) -> &'static str {
    match (auth, addr.ip().is_loopback()) {
        (true, _) => "on",
        (false, true) => "off (loopback only)",
        (false, false) => {
            "OFF on a non-loopback address (--insecure-no-auth): anyone who can reach it can read and write"
        }
    }
}

fn serve_failure(e: ServeError) -> Failure {
    match e {
        ServeError::Config(c) => config_failure(c),
        other => Failure {
            code: ExitCode::Failed,
            error: anyhow::Error::from(other),
        },
    }
}

/// Resolves at the first SIGTERM or SIGINT.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!("{which}: shutting down gracefully");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_never_calls_an_open_bind_loopback_only() {
        let at = |a: &str| a.parse::<SocketAddr>().expect("address");
        assert_eq!(auth_banner(true, at("0.0.0.0:7070")), "on");
        assert_eq!(
            auth_banner(false, at("127.0.0.1:7070")),
            "off (loopback only)"
        );
        assert_eq!(auth_banner(false, at("[::1]:7070")), "off (loopback only)");
        for open in ["0.0.0.0:7070", "[::]:7070", "192.0.2.1:7070"] {
            let banner = auth_banner(false, at(open));
            assert!(!banner.contains("loopback only"), "{open}: {banner}");
            assert!(banner.contains("--insecure-no-auth"), "{open}: {banner}");
        }
    }
}
