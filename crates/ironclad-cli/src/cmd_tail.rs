//! `ironclad tail STREAM|--all`: follow new events live, printed as JSON
//! lines exactly as `ironclad read` prints them.
//!
//! Locally it polls the data directory read-only and lock-free (so it works
//! while another process appends); with `--server` it long-polls
//! `GET /v1/poll` (a consumer or admin token), and rides out a server
//! restart by retrying. It starts at the current end of the log (or after
//! `--after POSITION`) and runs until interrupted.

use std::time::Duration;

use clap::Args;
use ironclad::{LogReader, READ_LIMIT_MAX};
use ironclad_client::{Client, ClientError};
use serde::Deserialize;

use crate::remote::{failure, PAGE_MAX};
use crate::{journal_config, output, Cli, CmdResult};

/// Arguments of `tail`.
#[derive(Debug, Args)]
#[command(after_help = "\
Prints one JSON line per event, as `ironclad read` does, until interrupted \
(Ctrl-C). A line on stderr says where following starts. With --server it \
needs a consumer or admin token.")]
pub struct TailArgs {
    /// The stream to follow.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub stream: Option<String>,
    /// Follow every stream.
    #[arg(long)]
    pub all: bool,
    /// Start after this global position (default: the current end of the
    /// log, so only events appended from now on are printed; 0 prints the
    /// whole history first).
    #[arg(long, value_name = "POSITION")]
    pub after: Option<u64>,
    /// `--server URL`, `--token T`.
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
}

/// How often a local tail looks for new events when it has caught up.
const LOCAL_POLL: Duration = Duration::from_millis(100);
/// How long one remote long-poll waits for an event.
const REMOTE_WAIT_MS: u64 = 25_000;
/// Longest pause between retries while the server is unreachable.
const RETRY_MAX: Duration = Duration::from_secs(5);

fn announce(cli: &Cli, args: &TailArgs, after: u64) {
    let what = args.stream.as_deref();
    if cli.json {
        eprintln!(
            "{}",
            serde_json::json!({ "following": what.unwrap_or("*"), "after": after })
        );
    } else {
        match what {
            Some(s) => eprintln!("following stream {s:?} after position {after} (Ctrl-C to stop)"),
            None => eprintln!("following every stream after position {after} (Ctrl-C to stop)"),
        }
    }
}

fn wanted(args: &TailArgs, stream: &str) -> bool {
    args.stream.as_deref().is_none_or(|s| s == stream)
}

/// Runs `tail` on the local data directory.
pub async fn run(cli: &Cli, args: &TailArgs) -> CmdResult {
    let reader = LogReader::open_sqlite(&journal_config(cli, Default::default()))?;
    let mut after = match args.after {
        Some(a) => a,
        None => reader.ledger_head()?.map_or(0, |h| h.position),
    };
    announce(cli, args, after);
    loop {
        let page = reader.read_all(after.saturating_add(1), READ_LIMIT_MAX)?;
        for ev in &page {
            after = ev.position;
            if wanted(args, &ev.stream) {
                output::json_line(ev)?;
            }
        }
        if page.len() < READ_LIMIT_MAX {
            tokio::time::sleep(LOCAL_POLL).await;
        }
    }
}

/// The part of an event `tail` looks at.
#[derive(Deserialize)]
struct Where {
    stream: String,
    position: u64,
}

/// Whether the server has an event after `after`.
async fn exists_after(client: &Client, after: u64) -> Result<bool, ClientError> {
    Ok(!client.poll(after, 0, 1).await?.events.is_empty())
}

/// The server's last position, found with O(log n) zero-wait polls (the
/// API has no "head" endpoint a consumer token may read).
async fn remote_head(client: &Client) -> Result<u64, ClientError> {
    if !exists_after(client, 0).await? {
        return Ok(0);
    }
    // Invariant: an event exists after `lo`, none after `hi`.
    let (mut lo, mut hi) = (0u64, 1u64);
    while exists_after(client, hi).await? {
        lo = hi;
        hi = hi.saturating_mul(2);
        if hi == u64::MAX {
            break;
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if exists_after(client, mid).await? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(hi)
}

/// Whether an error is worth waiting out (the server restarting or busy).
fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Transport(_) => true,
        ClientError::Api { status, .. } => matches!(status, 408 | 429 | 502 | 503 | 504),
        _ => false,
    }
}

/// Runs `tail` against the server (`--server`).
pub async fn run_remote(cli: &Cli, client: &Client, args: &TailArgs) -> CmdResult {
    let mut after = match args.after {
        Some(a) => a,
        None => remote_head(client).await.map_err(failure)?,
    };
    announce(cli, args, after);
    let mut backoff = Duration::from_millis(100);
    loop {
        let page = match client.poll(after, REMOTE_WAIT_MS, PAGE_MAX).await {
            Ok(page) => page,
            Err(e) if transient(&e) => {
                tracing::warn!(
                    "tail: {e}; retrying in {}",
                    output::age(u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX))
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
                continue;
            }
            Err(e) => return Err(failure(e)),
        };
        backoff = Duration::from_millis(100);
        for ev in &page.events {
            let w: Where = serde_json::from_str(ev.get()).map_err(|e| {
                failure(ClientError::Decode(format!(
                    "event without a stream or position: {e}"
                )))
            })?;
            after = after.max(w.position);
            if wanted(args, &w.stream) {
                output::raw_line(ev.get())?;
            }
        }
        after = after.max(page.next);
    }
}
