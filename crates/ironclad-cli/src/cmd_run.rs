//! `ironclad run --config FILE`: runs the delivery engine on a data
//! directory until SIGTERM or SIGINT (or, with `--exit-when-idle`, until
//! nothing is pending), then shuts down gracefully.
//!
//! Shutdown order: the engine first (no new batch; a batch in flight may
//! settle until the deadline, after which it is released unsettled and sent
//! again at the next start), then the journal (its writer drains, the WAL is
//! checkpointed and the data-directory lock is freed). Both are reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use ironclad::delivery::config::DeliveryConfig;
use ironclad::delivery::engine::{DeliveryEngine, StartError};
use ironclad::delivery::status::SinkStatus;
use ironclad::store::sqlite::SqliteStore;
use ironclad::Journal;
use serde::Serialize;

use crate::config_file::{self, usage};
use crate::{output, Cli, CmdResult, ExitCode, Failure};

/// Arguments of `run`.
#[derive(Debug, Args)]
#[command(after_help = "\
The data directory is --data-dir (or $IRONCLAD_DATA_DIR) if given, else the \
top-level `data_dir` key of the config file, else ./ironclad-data.

While `run` holds the data directory, `ironclad status` works (read-only); \
`ironclad dlq …` and `append` get \"locked by pid N\" (exit 5).

Exit codes: 0 after a graceful stop, 2 for a bad or sink-less config, \
5 if the data directory is locked, 1 for anything else.")]
pub struct RunArgs {
    /// The TOML configuration file: its `[delivery]` section (sinks, routes,
    /// DLQ bounds) and optionally a top-level `data_dir`.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// Stop gracefully once no sink has anything pending (every routed
    /// event delivered or dead-lettered). For scripts and tests; a sink that
    /// keeps failing keeps `run` going until its events reach the DLQ.
    #[arg(long)]
    pub exit_when_idle: bool,
    /// On shutdown, how long a batch in flight may take to settle before it
    /// is released (left pending, sent again at the next start). The
    /// journal then gets the same time, and at least one second, to finish
    /// its writes and free the lock.
    #[arg(long, default_value_t = 10_000)]
    pub shutdown_deadline_ms: u64,
    /// How often progress is reported while running, in milliseconds
    /// (only when something changed).
    #[arg(long, default_value_t = 1_000)]
    pub progress_interval_ms: u64,
}

/// One line of `run --json` output.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum RunLine<'a> {
    Started {
        data_dir: &'a std::path::Path,
        config: &'a std::path::Path,
        sinks: Vec<SinkLine<'a>>,
    },
    Status {
        #[serde(flatten)]
        status: &'a SinkStatus,
    },
    Stopping {
        reason: &'a str,
    },
    Stopped {
        /// Whether every batch in flight settled before the deadline.
        in_flight_settled: bool,
        sinks: &'a [SinkStatus],
    },
}

#[derive(Serialize)]
struct SinkLine<'a> {
    name: &'a str,
    kind: &'a str,
}

type Engine = DeliveryEngine<SqliteStore>;

/// Runs `run`.
pub async fn run(cli: &Cli, args: &RunArgs) -> CmdResult {
    let config = config_file::load_delivery(&args.config)?;
    if config.sinks.is_empty() {
        return Err(usage(format!(
            "config {}: no sinks: add a [[delivery.sinks]] table and a [[delivery.routes]] \
             entry that sends streams to it",
            args.config.display()
        )));
    }
    let file = config_file::read(&args.config)?;
    let data_dir = config_file::data_dir(cli, Some(&file));
    for name in config.unrouted_sinks() {
        eprintln!(
            "warning: sink `{name}` is named by no [[delivery.routes]] entry: it will receive nothing"
        );
    }
    // Handlers first, so a signal during start-up is a graceful stop too.
    let mut signals = Signals::install()?;

    let journal = Journal::open(config_file::journal_config(&data_dir))?;
    let sink_lines: Vec<(String, &'static str)> = config
        .sinks
        .iter()
        .map(|s| (s.name.clone(), s.kind.as_str()))
        .collect();
    let engine = Arc::new(start_delivery(&journal, config, Duration::from_secs(10)).await?);
    if cli.json {
        output::json_line(&RunLine::Started {
            data_dir: &data_dir,
            config: &args.config,
            sinks: sink_lines
                .iter()
                .map(|(name, kind)| SinkLine { name, kind })
                .collect(),
        })?;
    } else {
        let names: Vec<String> = sink_lines
            .iter()
            .map(|(n, k)| format!("{n} ({k})"))
            .collect();
        println!(
            "delivering from {} to {}; SIGTERM or Ctrl-C stops gracefully",
            data_dir.display(),
            names.join(", ")
        );
    }

    let reason = watch(cli, args, &engine, &mut signals).await;
    let reason = match reason {
        Ok(reason) => reason,
        Err(e) => {
            // Still stop cleanly: the lock must not outlive a failed watch.
            stop(cli, args, &engine, &journal).await?;
            return Err(e.into());
        }
    };
    if cli.json {
        output::json_line(&RunLine::Stopping { reason })?;
    } else {
        println!("stopping ({reason}): finishing batches in flight");
    }
    stop(cli, args, &engine, &journal).await?;
    Ok(ExitCode::Ok)
}

/// Reports progress until a signal arrives or, with `--exit-when-idle`,
/// nothing is pending. Returns why it stopped.
async fn watch(
    cli: &Cli,
    args: &RunArgs,
    engine: &Arc<Engine>,
    signals: &mut Signals,
) -> anyhow::Result<&'static str> {
    let poll = if args.exit_when_idle {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(args.progress_interval_ms.clamp(50, 1_000))
    };
    let progress_every = Duration::from_millis(args.progress_interval_ms.max(50));
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_printed: Option<Vec<SinkStatus>> = None;
    let mut last_print_at = Instant::now() - progress_every;
    loop {
        tokio::select! {
            reason = signals.next() => return Ok(reason),
            _ = tick.tick() => {}
        }
        let statuses = statuses(engine).await?;
        let idle = statuses.iter().all(|s| s.pending == 0);
        // The age grows every poll; alone it is not a change worth reporting.
        let key: Vec<SinkStatus> = statuses
            .iter()
            .map(|s| SinkStatus {
                oldest_pending_age_ms: None,
                ..s.clone()
            })
            .collect();
        let changed = last_printed.as_ref() != Some(&key);
        if changed && (last_print_at.elapsed() >= progress_every || idle) {
            print_statuses(cli, &statuses)?;
            last_printed = Some(key);
            last_print_at = Instant::now();
        }
        if args.exit_when_idle && idle {
            return Ok("idle: nothing pending");
        }
    }
}

/// The engine's sink statuses, read on the blocking pool.
async fn statuses(engine: &Arc<Engine>) -> anyhow::Result<Vec<SinkStatus>> {
    let engine = Arc::clone(engine);
    let mut statuses = tokio::task::spawn_blocking(move || engine.status())
        .await
        .context("the status task failed")?
        .context("cannot read delivery status")?;
    statuses.sort_by(|a, b| a.sink.cmp(&b.sink));
    Ok(statuses)
}

fn print_statuses(cli: &Cli, statuses: &[SinkStatus]) -> anyhow::Result<()> {
    for s in statuses {
        if cli.json {
            output::json_line(&RunLine::Status { status: s })?;
        } else {
            println!(
                "{}: delivered {}, pending {}, retrying {}/{} rows, dlq {}, circuit {}",
                s.sink,
                s.delivered_total,
                s.pending,
                s.retrying,
                s.retry_rows,
                s.dlq_entries,
                s.circuit
            );
        }
    }
    Ok(())
}

/// Stops the engine, then the journal, and reports both.
async fn stop(
    cli: &Cli,
    args: &RunArgs,
    engine: &Arc<Engine>,
    journal: &Journal,
) -> Result<(), Failure> {
    let deadline = Duration::from_millis(args.shutdown_deadline_ms);
    let settled = engine.shutdown(deadline).await;
    // The final counts, read before the journal closes.
    let finals = statuses(engine).await.unwrap_or_default();
    journal
        .shutdown(deadline.max(Duration::from_secs(1)))
        .await
        .context("the journal did not shut down cleanly; its data is durable, run `ironclad ledger verify` to check")?;
    if cli.json {
        output::json_line(&RunLine::Stopped {
            in_flight_settled: settled,
            sinks: &finals,
        })?;
    } else {
        for s in &finals {
            println!(
                "{}: delivered {}, pending {}, dlq {}",
                s.sink, s.delivered_total, s.pending, s.dlq_entries
            );
        }
        if settled {
            println!("stopped: every batch in flight settled; journal closed, lock released");
        } else {
            println!(
                "stopped: the {} ms deadline passed, so batches in flight were released unsettled \
                 (they stay pending and are sent again at the next start; receivers deduplicate \
                 by idempotency key); journal closed, lock released",
                args.shutdown_deadline_ms
            );
        }
    }
    Ok(())
}

/// SIGTERM and SIGINT as one stream of stop requests.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// Waits for the next stop request; names the signal.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Starts the delivery engine on `journal`. On failure the journal is shut
/// down (within `shutdown_deadline`) and the error maps to an exit code: a
/// bad configuration or sink is a usage error (2), anything else a failure
/// (1). Shared by `run` and `serve`.
pub(crate) async fn start_delivery(
    journal: &Journal,
    config: DeliveryConfig,
    shutdown_deadline: Duration,
) -> Result<Engine, Failure> {
    match DeliveryEngine::start(journal.clone(), config).await {
        Ok(engine) => Ok(engine),
        Err(e) => {
            let _ = journal.shutdown(shutdown_deadline).await;
            let code = match e {
                StartError::Config(_) | StartError::Sink { .. } => ExitCode::Usage,
                _ => ExitCode::Failed,
            };
            Err(Failure {
                code,
                error: anyhow::Error::from(e).context("cannot start delivery"),
            })
        }
    }
}
