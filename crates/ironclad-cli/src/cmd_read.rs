//! `ironclad read` and `ironclad streams`: read-only, lock-free access to a
//! data directory (works while another process is appending).

use clap::Args;
use ironclad::{LogReader, StreamHead, READ_LIMIT_MAX};

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
