//! `ironclad`: the command line over the Ironclad library.
//!
//! A thin shell: argument parsing, output formatting and exit codes live here;
//! every rule about events lives in the `ironclad` crate. Exit codes are
//! documented in the README and in [`ExitCode`].

mod bench;
mod cmd_append;
mod cmd_demo;
mod cmd_dlq;
mod cmd_dump;
mod cmd_ledger;
mod cmd_migrate;
mod cmd_read;
mod cmd_run;
mod cmd_serve;
mod cmd_status;
mod cmd_tail;
mod config_file;
mod output;
mod remote;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use ironclad::{Durability, JournalConfig, OpenError};

/// Process exit codes. Stable: scripts may rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// The command failed (I/O, store, bad configuration…); see stderr.
    Failed = 1,
    /// Bad command-line usage (printed by the argument parser).
    Usage = 2,
    /// `ledger verify` found a mismatch (locally, or `ledger_mismatch` from
    /// the server).
    LedgerMismatch = 3,
    /// `append`: at least one input line was rejected (the others were appended).
    SomeLinesRejected = 4,
    /// The data directory is locked by another running engine.
    Locked = 5,
}

/// Ironclad: a durable event log. Appends are group-committed and acknowledged only once durable.
#[derive(Debug, Parser)]
// The about is this doc comment, not the package description: that one
// lists commands, and a list here drifts from the real tree (it once
// offered a `verify` that is `ledger verify`).
#[command(name = "ironclad", version, long_about = None)]
pub struct Cli {
    /// Data directory (created if missing).
    #[arg(
        long,
        global = true,
        env = "IRONCLAD_DATA_DIR",
        default_value = "./ironclad-data"
    )]
    pub data_dir: PathBuf,
    /// Whether `data_dir` was given (flag or environment) rather than
    /// defaulted: `run`, `status` and `dlq` then prefer it over the config
    /// file's `data_dir`.
    #[arg(skip)]
    pub data_dir_explicit: bool,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Work against a running `ironclad serve` (e.g. http://127.0.0.1:7070)
    /// instead of a local data directory: append, read, streams, tail,
    /// status, dlq, dump and ledger verify (the others refuse it); the
    /// output is the same.
    // Not global: clap would then offer it on `migrate`, `serve` and the
    // other local-only commands. Those that take it also take it after
    // their name ([`remote::RemoteArgs`]).
    #[arg(long, env = "IRONCLAD_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token for --server (producer, consumer or admin, as the
    /// command needs). Prefer the environment variable: a flag is visible
    /// in the process list.
    #[arg(
        long,
        env = "IRONCLAD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Append one event per stdin line (each line is the JSON payload); prints one ack line per durable event.
    Append(cmd_append::AppendArgs),
    /// Print a stream's events as JSON lines.
    Read(cmd_read::ReadArgs),
    /// List streams and their head versions.
    Streams {
        /// `--server URL`, `--token T`.
        #[command(flatten)]
        remote: remote::RemoteArgs,
    },
    /// Follow new events live (one stream, or --all), printed as `read` prints them.
    Tail(cmd_tail::TailArgs),
    /// Verify or export the tamper-evident ledger.
    Ledger {
        /// The ledger action.
        #[command(subcommand)]
        action: cmd_ledger::LedgerAction,
    },
    /// Serve the HTTP API (ingest, read, subscribe, admin) until SIGTERM/SIGINT.
    Serve(cmd_serve::ServeArgs),
    /// Run the delivery engine from a config file until SIGTERM/SIGINT (or until idle).
    Run(cmd_run::RunArgs),
    /// Per sink: pending, oldest pending age, circuit, DLQ, retry backlog, delivered, cursor.
    Status(cmd_status::StatusArgs),
    /// Dead-letter queue: stats, list, show, retry, purge, export (on a stopped engine).
    Dlq(cmd_dlq::DlqArgs),
    /// Emergency dumps: list them, or replay them idempotently.
    Dump {
        /// The dump action.
        #[command(subcommand)]
        action: cmd_dump::DumpAction,
        /// `--server URL`, `--token T`.
        #[command(flatten)]
        remote: remote::RemoteArgs,
    },
    /// Apply schema migrations, or show their status.
    Migrate(cmd_migrate::MigrateArgs),
    /// Benchmarks.
    Bench {
        /// The benchmark to run.
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
    /// Append a sample workload from several producers, summarize, and verify the ledger.
    Demo(cmd_demo::DemoArgs),
}

impl Command {
    /// The `--server`/`--token` given after the command's name, on the
    /// commands that take them.
    fn remote(&self) -> Option<&remote::RemoteArgs> {
        match self {
            Command::Append(a) => Some(&a.remote),
            Command::Read(a) => Some(&a.remote),
            Command::Streams { remote } | Command::Dump { remote, .. } => Some(remote),
            Command::Tail(a) => Some(&a.remote),
            Command::Status(a) => Some(&a.remote),
            Command::Dlq(a) => Some(&a.remote),
            Command::Ledger {
                action: cmd_ledger::LedgerAction::Verify { remote, .. },
            } => Some(remote),
            _ => None,
        }
    }
}

/// A command failure with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: ExitCode,
    /// What to tell the user.
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error: anyhow::Error = e.into();
        let code = match error.downcast_ref::<OpenError>() {
            Some(OpenError::Locked { .. }) => ExitCode::Locked,
            _ => ExitCode::Failed,
        };
        Failure { code, error }
    }
}

/// What every command returns.
pub type CmdResult = Result<ExitCode, Failure>;

/// The journal configuration for this invocation.
pub fn journal_config(cli: &Cli, durability: Durability) -> JournalConfig {
    JournalConfig::new(&cli.data_dir).durability(durability)
}

fn main() -> ProcessExit {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let code = if e.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Ok
            };
            return ProcessExit::from(code as u8);
        }
    };
    // `run` is a long-running service: its circuit transitions, janitor
    // passes and log-sink output are worth seeing.
    let level = match cli.command {
        Command::Run(_) | Command::Serve(_) => tracing::Level::INFO,
        _ => tracing::Level::WARN,
    };
    // Colour only on a terminal: a log redirected to a file or a pipe
    // would otherwise carry escape codes.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(level)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ProcessExit::from(ExitCode::Failed as u8);
        }
    };
    let result = runtime.block_on(run(&cli));
    let code = match result {
        Ok(code) => code,
        Err(f) => {
            output::print_error(cli.json, &f.error, f.code);
            f.code
        }
    };
    ProcessExit::from(code as u8)
}

/// Parses the command line, noting whether `--data-dir` was given.
fn parse() -> Result<Cli, clap::Error> {
    let matches = Cli::command().try_get_matches()?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let Some(r) = cli.command.remote().cloned() {
        cli.server = r.server.or(cli.server);
        cli.token = r.token.or(cli.token);
    }
    cli.data_dir_explicit = matches!(
        matches.value_source("data_dir"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    Ok(cli)
}

async fn run(cli: &Cli) -> CmdResult {
    if cli.server.is_some() {
        return run_remote(cli).await;
    }
    match &cli.command {
        Command::Append(args) => cmd_append::run(cli, args).await,
        Command::Read(args) => cmd_read::read(cli, args).await,
        Command::Streams { .. } => cmd_read::streams(cli).await,
        Command::Tail(args) => cmd_tail::run(cli, args).await,
        Command::Ledger { action } => cmd_ledger::run(cli, action).await,
        Command::Migrate(args) => cmd_migrate::run(cli, args).await,
        Command::Run(args) => cmd_run::run(cli, args).await,
        Command::Serve(args) => cmd_serve::run(cli, args).await,
        Command::Status(args) => cmd_status::run(cli, args).await,
        Command::Dlq(args) => cmd_dlq::local::run(cli, args).await,
        Command::Dump { action, .. } => cmd_dump::run(cli, action).await,
        Command::Bench { which } => bench::run(cli, which).await,
        Command::Demo(args) => cmd_demo::run(cli, args).await,
    }
}

/// Runs the command against the server (`--server`): each command's
/// remote side, or a usage error for the commands that need a local data
/// directory.
async fn run_remote(cli: &Cli) -> CmdResult {
    let refuse = |what: &str| -> CmdResult {
        Err(config_file::usage(format!(
            "`{what}` works on a local data directory only: drop --server (or unset IRONCLAD_SERVER)"
        )))
    };
    match &cli.command {
        Command::Migrate(_) => return refuse("migrate"),
        Command::Bench { .. } => return refuse("bench"),
        Command::Demo(_) => return refuse("demo"),
        Command::Run(_) => return refuse("run"),
        Command::Serve(_) => return refuse("serve"),
        Command::Ledger {
            action: cmd_ledger::LedgerAction::Head,
        } => {
            return refuse("ledger head");
        }
        _ => {}
    }
    let client = remote::connect(cli)?;
    match &cli.command {
        Command::Append(args) => cmd_append::remote::run(cli, &client, args).await,
        Command::Read(args) => cmd_read::read_remote(&client, args).await,
        Command::Streams { .. } => cmd_read::streams_remote(cli, &client).await,
        Command::Tail(args) => cmd_tail::run_remote(cli, &client, args).await,
        Command::Status(args) => cmd_status::run_remote(cli, &client, args).await,
        Command::Dlq(args) => cmd_dlq::remote::run(cli, &client, args).await,
        Command::Dump { action, .. } => cmd_dump::run_remote(cli, &client, action).await,
        Command::Ledger { action } => cmd_ledger::run_remote(cli, &client, action).await,
        _ => unreachable!("refused above"),
    }
}
