//! `ironclad status [--config FILE]`: per sink, what is pending and how old,
//! the circuit, the DLQ, the retry backlog, delivered totals and the cursor.
//!
//! Read-only and lock-free (a [`LogReader`]), so it works while `ironclad
//! run` holds the data directory. The routes come from `--config`: without
//! them the CLI cannot tell which new events a sink still has to send, so
//! `pending` then counts only retry rows (and says so).

use std::path::PathBuf;

use clap::Args;
use ironclad::delivery::routes::Routes;
use ironclad::delivery::status::{sink_statuses, SinkStatus};
use ironclad::LogReader;
use ironclad_client::{Client, ClientError};
use serde::Serialize;

use crate::config_file::{self, usage, ConfigFile};
use crate::remote::failure;
use crate::{output, Cli, CmdResult, ExitCode};

/// Arguments of `status`.
#[derive(Debug, Args)]
#[command(after_help = "\
Works while `ironclad run` is running: it opens the data directory read-only.

With --config, `pending` is every routed event not yet delivered or \
dead-lettered (retry rows plus new events past the cursor). Without it the \
routes are unknown and `pending` counts only retry rows; --json then reports \
\"pending_complete\": false. The config is read leniently (only `data_dir`, \
sink names and routes), so webhook secrets need not be set.

`circuit` is the operator override stored in the data directory (forced_open \
or disabled) or `closed`: the live breaker state (open, half_open) lives in \
the running engine's memory and is not visible from another process.")]
pub struct StatusArgs {
    /// The TOML configuration `ironclad run` uses: gives the routes (for
    /// complete pending counts) and the `data_dir`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// `--server URL`, `--token T`.
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
}

/// One sink in `status --json`.
#[derive(Serialize)]
struct StatusLine<'a> {
    #[serde(flatten)]
    status: &'a SinkStatus,
    /// False when `pending` counts only retry rows (routes unknown).
    pending_complete: bool,
}

/// Runs `status`.
pub async fn run(cli: &Cli, args: &StatusArgs) -> CmdResult {
    let file = args.config.as_deref().map(config_file::read).transpose()?;
    let routes = match &file {
        Some(f) => Routes::compile(&f.routes)
            .map_err(|e| usage(format!("config {}: {e}", f.path.display())))?,
        None => Routes::compile(&[]).map_err(anyhow::Error::from)?,
    };
    let data_dir = config_file::data_dir(cli, file.as_ref());
    let reader = LogReader::open_sqlite(&config_file::journal_config(&data_dir))?;
    let now_ms = output::now_unix_ms();
    let statuses = tokio::task::spawn_blocking(move || {
        sink_statuses(&**reader.store(), &routes, now_ms, &|_| None)
    })
    .await
    .map_err(anyhow::Error::from)??;
    let complete = |name: &str| {
        file.as_ref()
            .is_some_and(|f| f.routes.iter().any(|r| r.sink == name))
    };
    print_statuses(cli.json, &statuses, file.as_ref(), &complete)?;
    if let Some(f) = &file {
        for name in &f.sink_names {
            if !statuses.iter().any(|s| &s.sink == name) {
                eprintln!(
                    "note: sink `{name}` is configured but has never run on {}: `ironclad run` registers it",
                    data_dir.display()
                );
            }
        }
    }
    Ok(ExitCode::Ok)
}

/// Runs `status` against the server (`--server`), from
/// `GET /v1/admin/sinks`: the server runs the engine, so it knows the
/// routes (`pending` is complete) and the live circuits.
pub async fn run_remote(cli: &Cli, client: &Client, args: &StatusArgs) -> CmdResult {
    if args.config.is_some() {
        return Err(usage(
            "--config is for a local data directory: with --server the server's own \
             configuration gives the routes",
        ));
    }
    let statuses = match client.sinks().await {
        Ok(answer) => answer.sinks,
        Err(ClientError::Api { code, details, .. })
            if code == "not_found" && details["resource"] == "delivery_engine" =>
        {
            return Err(anyhow::anyhow!(
                "the server runs no delivery engine: start it with a --config that has \
                 [delivery] sinks and routes"
            )
            .into())
        }
        Err(e) => return Err(failure(e)),
    };
    print_statuses(cli.json, &statuses, None, &|_| true)?;
    Ok(ExitCode::Ok)
}

/// Prints the statuses (local and remote): one JSON document, or the table.
/// `complete(sink)` says whether that sink's `pending` counts new events.
pub(crate) fn print_statuses(
    json: bool,
    statuses: &[SinkStatus],
    file: Option<&ConfigFile>,
    complete: &dyn Fn(&str) -> bool,
) -> anyhow::Result<()> {
    if json {
        // One document, `{"sinks":[]}` when none has run: a script parses
        // the same shape either way (and the server's `GET /v1/admin/sinks`).
        let sinks: Vec<StatusLine> = statuses
            .iter()
            .map(|s| StatusLine {
                status: s,
                pending_complete: complete(&s.sink),
            })
            .collect();
        output::json_line(&serde_json::json!({ "sinks": sinks }))?;
    } else {
        print_table(statuses, file, complete);
    }
    Ok(())
}

fn print_table(
    statuses: &[SinkStatus],
    file: Option<&ConfigFile>,
    complete: &dyn Fn(&str) -> bool,
) {
    if statuses.is_empty() {
        println!(
            "no sinks have run on this data directory yet: start `ironclad run --config FILE`"
        );
        return;
    }
    println!(
        "{:<20} {:>9} {:>9} {:<12} {:>7} {:>9} {:>15} {:>11} {:>10}",
        "SINK",
        "PENDING",
        "OLDEST",
        "CIRCUIT",
        "DLQ",
        "ARCHIVED",
        "RETRYING/ROWS",
        "DELIVERED",
        "CURSOR"
    );
    let mut partial = false;
    for s in statuses {
        let mark = if complete(&s.sink) {
            ""
        } else {
            partial = true;
            "*"
        };
        println!(
            "{:<20} {:>9} {:>9} {:<12} {:>7} {:>9} {:>15} {:>11} {:>10}",
            s.sink,
            format!("{}{mark}", s.pending),
            s.oldest_pending_age_ms
                .map_or_else(|| "-".to_string(), output::age),
            s.circuit,
            s.dlq_entries,
            s.dlq_archived,
            format!("{}/{}", s.retrying, s.retry_rows),
            s.delivered_total,
            s.cursor_position
        );
    }
    if partial {
        match file {
            None => println!(
                "* routes unknown (no --config): pending counts only retry rows, not new events past the cursor"
            ),
            Some(f) => println!(
                "* no route in {} names this sink: pending counts only retry rows",
                f.path.display()
            ),
        }
    }
}
