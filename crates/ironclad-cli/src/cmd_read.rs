//! `ironclad read` and `ironclad streams`: read-only, lock-free access to a
//! data directory (works while another process is appending).

use clap::Args;
use ironclad::{LogReader, StreamHead, READ_LIMIT_MAX};
use ironclad_client::{Client, ClientError};

use crate::remote::{failure, smaller_limit, PAGE_MAX};
use crate::{journal_config, output, Cli, CmdResult, ExitCode};

/// Arguments of `read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The stream to read.
    pub stream: String,
    /// First version to print.
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// Most events to print (default: all).
    #[arg(long)]
    pub limit: Option<u64>,
}

fn open_reader(
    cli: &Cli,
) -> Result<LogReader<ironclad::store::sqlite::SqliteStore>, crate::Failure> {
    Ok(LogReader::open_sqlite(&journal_config(
        cli,
        Default::default(),
    ))?)
}

/// Runs `read`: the stream's events as JSON lines, paged from the store.
pub async fn read(cli: &Cli, args: &ReadArgs) -> CmdResult {
    let reader = open_reader(cli)?;
    let mut next = args.from.max(1);
    let mut left = args.limit.unwrap_or(u64::MAX);
    while left > 0 {
        let page_len = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(READ_LIMIT_MAX);
        let page = reader.read(&args.stream, next, page_len)?;
        for ev in &page {
            output::json_line(ev)?;
        }
        let Some(last) = page.last() else { break };
        next = last.version + 1;
        left -= page.len() as u64;
        if page.len() < page_len {
            break;
        }
    }
    Ok(ExitCode::Ok)
}

/// Runs `streams`: every stream with its head version.
pub async fn streams(cli: &Cli) -> CmdResult {
    let reader = open_reader(cli)?;
    let mut after = String::new();
    print_streams_header(cli.json);
    loop {
        let page = reader.list_streams(&after, READ_LIMIT_MAX)?;
        for head in &page {
            print_stream_head(cli.json, head)?;
        }
        match page.last() {
            Some(last) if page.len() == READ_LIMIT_MAX => after = last.stream.clone(),
            _ => break,
        }
    }
    Ok(ExitCode::Ok)
}

/// The header of the human `streams` table.
pub(crate) fn print_streams_header(json: bool) {
    if !json {
        println!("{:<50} {:>12}", "STREAM", "VERSION");
    }
}

/// One `streams` line (local and remote).
pub(crate) fn print_stream_head(json: bool, head: &StreamHead) -> anyhow::Result<()> {
    if json {
        output::json_line(head)?;
    } else {
        println!("{:<50} {:>12}", head.stream, head.version);
    }
    Ok(())
}

/// Runs `read` against the server (`--server`): the same lines, paged
/// through `GET /v1/streams/{stream}/events`.
pub async fn read_remote(client: &Client, args: &ReadArgs) -> CmdResult {
    let mut next = args.from.max(1);
    let mut left = args.limit.unwrap_or(u64::MAX);
    let mut cap = PAGE_MAX;
    while left > 0 {
        let page_len = usize::try_from(left).unwrap_or(usize::MAX).min(cap);
        let page = match client.read(&args.stream, next, page_len).await {
            Ok(page) => page,
            // A stream with no events: locally, nothing to print.
            Err(ClientError::Api { code, details, .. })
                if code == "not_found" && details.get("stream").is_some() =>
            {
                break
            }
            Err(e) => match smaller_limit(&e, cap) {
                Some(smaller) => {
                    cap = smaller;
                    continue;
                }
                None => return Err(failure(e)),
            },
        };
        for ev in &page.events {
            output::raw_line(ev.get())?;
        }
        let n = page.events.len();
        left -= n as u64;
        match page.next {
            Some(v) if n == page_len => next = v,
            _ => break,
        }
    }
    Ok(ExitCode::Ok)
}

/// Runs `streams` against the server (`--server`): every head, paged
/// through `GET /v1/streams`.
pub async fn streams_remote(cli: &Cli, client: &Client) -> CmdResult {
    let mut after = String::new();
    print_streams_header(cli.json);
    let mut cap = PAGE_MAX;
    loop {
        let page = match client.streams(&after, cap).await {
            Ok(page) => page,
            Err(e) => match smaller_limit(&e, cap) {
                Some(smaller) => {
                    cap = smaller;
                    continue;
                }
                None => return Err(failure(e)),
            },
        };
        for head in &page.streams {
            print_stream_head(cli.json, head)?;
        }
        match page.next {
            Some(n) => after = n,
            None => break,
        }
    }
    Ok(ExitCode::Ok)
}
