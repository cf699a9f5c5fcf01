//! `ironclad dlq stats|list|show|retry|purge|export`: inspect and operate on
//! the dead-letter queue of a stopped engine (SPEC §4, §7).
//!
//! Every action opens the journal normally, taking the data-directory lock:
//! while `ironclad run` holds it they fail with "locked by pid N" (exit 5).
//! Removal always archives first (the library writes a fsynced, compressed
//! archive under `<data-dir>/dlq-archive/` before deleting), and `retry`
//! only moves entries back to retrying: the next `ironclad run` sends them.
//! With `--server` the same actions go through the server's admin API.
//!
//! This file holds the arguments and the checks both sides share;
//! [`local`] acts on a data directory, [`remote`] on a server, and `print`
//! prints for both.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ironclad::delivery::dlq::DLQ_PAGE_MAX;
use ironclad::store::delivery::DlqReason;

use crate::config_file::usage;
use crate::Failure;

pub(crate) mod local;
mod print;
pub(crate) mod remote;

/// Arguments of `dlq`.
#[derive(Debug, Args)]
#[command(after_help = "\
These commands work on a stopped engine: they take the data-directory lock, \
so while `ironclad run` is running they fail with \"locked by pid N\" \
(exit 5). Stop it (SIGTERM), operate, start it again. With --server URL \
they act on a running `ironclad serve` through its admin API instead (an \
admin token; a remote `export` is built in the server's memory, at most \
256 MiB: narrow a larger one with filters).")]
pub struct DlqArgs {
    /// A configuration file whose top-level `data_dir` to use when
    /// --data-dir is not given (nothing else in it is read).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// `--server URL`, `--token T`.
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
    /// The DLQ action.
    #[command(subcommand)]
    pub action: DlqAction,
}

/// DLQ actions.
#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Entries per sink: count, oldest failure, count per reason, archived so far.
    Stats,
    /// One page of entries, oldest position first per sink; prints a `next:`
    /// cursor when the page is full.
    List {
        /// Which entries.
        #[command(flatten)]
        filter: FilterArgs,
        /// Most entries on the page (1..=1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=DLQ_PAGE_MAX as u64))]
        limit: u64,
        /// Start after this entry: the `next:` value the previous page printed.
        #[arg(long, value_name = "SINK_ID:POSITION", value_parser = parse_after)]
        after: Option<(i64, u64)>,
    },
    /// One entry, with its full event.
    Show {
        /// The sink's name.
        sink: String,
        /// The event's global position.
        position: u64,
    },
    /// Move entries back to retrying (attempts reset, due at once); the next
    /// `ironclad run` sends them. Needs --all, a filter, or --sink and --position.
    Retry(SelectArgs),
    /// Archive entries to `<data-dir>/dlq-archive/` (fsynced, gzip JSONL), then
    /// delete them. Needs --all, a filter, or --sink and --position.
    Purge(SelectArgs),
    /// Write matching entries (default: all) as JSON lines, with their events,
    /// to stdout or --out.
    Export {
        /// Which entries.
        #[command(flatten)]
        filter: FilterArgs,
        /// Write to this file (replaced atomically when complete) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Filters shared by `list`, `retry`, `purge` and `export`.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only this sink.
    #[arg(long)]
    pub sink: Option<String>,
    /// Only this reason: max_attempts, permanent, conflict or expired.
    #[arg(long, value_parser = parse_reason)]
    pub reason: Option<DlqReason>,
    /// Only entries whose event is in this stream.
    #[arg(long)]
    pub stream: Option<String>,
    /// Only entries whose last failure is at or before this time (ms since the Unix epoch).
    #[arg(long, value_name = "UNIX_MS")]
    pub failed_before_ms: Option<u64>,
}

impl FilterArgs {
    pub(crate) fn is_empty(&self) -> bool {
        self.sink.is_none()
            && self.reason.is_none()
            && self.stream.is_none()
            && self.failed_before_ms.is_none()
    }
}

/// Which entries `retry` and `purge` act on.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Entries matching these filters.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only the entry at this position (with --sink).
    #[arg(long, requires = "sink", conflicts_with_all = ["reason", "stream", "failed_before_ms", "all"])]
    pub position: Option<u64>,
    /// Every entry of every sink.
    #[arg(long, conflicts_with_all = ["sink", "reason", "stream", "failed_before_ms"])]
    pub all: bool,
}

fn parse_reason(s: &str) -> Result<DlqReason, String> {
    DlqReason::parse(s).ok_or_else(|| {
        format!("unknown reason {s:?}: use max_attempts, permanent, conflict or expired")
    })
}

fn parse_after(s: &str) -> Result<(i64, u64), String> {
    let bad =
        || format!("{s:?} is not SINK_ID:POSITION (copy the `next:` value of the previous page)");
    let (sink, position) = s.split_once(':').ok_or_else(bad)?;
    Ok((
        sink.trim().parse().map_err(|_| bad())?,
        position.trim().parse().map_err(|_| bad())?,
    ))
}

/// Refuses a bare `retry`/`purge` (local and remote).
pub(crate) fn check_selector(action: &DlqAction) -> Result<(), Failure> {
    if let DlqAction::Retry(sel) | DlqAction::Purge(sel) = action {
        if !sel.all && sel.position.is_none() && sel.filter.is_empty() {
            let verb = match action {
                DlqAction::Retry(_) => "retry",
                _ => "purge",
            };
            return Err(usage(format!(
                "`dlq {verb}` needs a selector: pass --all for every entry, or narrow it with \
                 --sink, --reason, --stream, --failed-before-ms, or --sink S --position P"
            )));
        }
    }
    Ok(())
}
