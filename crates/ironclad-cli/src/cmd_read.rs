//! `ironclad read` and `ironclad streams`: read-only, lock-free access to a
//! data directory (works while another process is appending).

use std::io::Write;

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
    /// `--server URL`, `--token T`.
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
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
        if page.is_empty()
            && next == args.from.max(1)
            && reader.stream_head(&args.stream)?.is_none()
        {
            return Err(no_such_stream(&args.stream));
        }
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

/// The failure of reading a stream that has no events at all, locally and
/// remotely alike (the server answers 404): likely a mistyped name. Past
/// the end of an existing stream is no error, just no lines.
fn no_such_stream(stream: &str) -> crate::Failure {
    anyhow::anyhow!(
        "stream {stream:?} has no events: check the name (`ironclad streams` lists them), \
         or append to create it"
    )
    .into()
}

/// Runs `streams`: every stream with its head version.
pub async fn streams(cli: &Cli) -> CmdResult {
    let reader = open_reader(cli)?;
    let mut after = String::new();
    let mut printer = StreamsPrinter::new(cli.json);
    loop {
        let page = reader.list_streams(&after, READ_LIMIT_MAX)?;
        printer.page(&page)?;
        match page.last() {
            Some(last) if page.len() == READ_LIMIT_MAX => after = last.stream.clone(),
            _ => break,
        }
    }
    printer.finish()?;
    Ok(ExitCode::Ok)
}

/// Prints `streams` (local and remote) page by page, so a million
/// streams are never held at once: the table, or one JSON document
/// `{"streams":[…]}` written as the pages arrive. Nothing is printed
/// before the first page, so a failed connection leaves no header behind.
pub(crate) struct StreamsPrinter {
    json: bool,
    /// Heads printed so far.
    printed: u64,
    /// Whether the header (or the JSON opening) is out.
    started: bool,
}

impl StreamsPrinter {
    pub(crate) fn new(json: bool) -> Self {
        StreamsPrinter {
            json,
            printed: 0,
            started: false,
        }
    }

    /// Prints one page of heads (the header first, once).
    pub(crate) fn page(&mut self, heads: &[StreamHead]) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if !self.started {
            self.started = true;
            if self.json {
                out.write_all(b"{\"streams\":[")?;
            } else {
                writeln!(out, "{:<50} {:>12}", "STREAM", "VERSION")?;
            }
        }
        for head in heads {
            if self.json {
                if self.printed > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut out, head)?;
            } else {
                writeln!(out, "{:<50} {:>12}", head.stream, head.version)?;
            }
            self.printed += 1;
        }
        Ok(())
    }

    /// Closes the listing (after the last page).
    pub(crate) fn finish(mut self) -> anyhow::Result<()> {
        self.page(&[])?;
        if self.json {
            std::io::stdout().lock().write_all(b"]}\n")?;
        }
        Ok(())
    }
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
            // A stream with no events: the same failure as locally.
            Err(ClientError::Api { code, details, .. })
                if code == "not_found" && details.get("stream").is_some() =>
            {
                return Err(no_such_stream(&args.stream))
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
    let mut printer = StreamsPrinter::new(cli.json);
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
        printer.page(&page.streams)?;
        match page.next {
            Some(n) => after = n,
            None => break,
        }
    }
    printer.finish()?;
    Ok(ExitCode::Ok)
}
