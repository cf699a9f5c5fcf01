//! `ironclad append STREAM`: one event per stdin line, pipelined.
//!
//! A reader task queues each line as an append without waiting for earlier
//! acknowledgements; a printer task awaits the tickets in input order and
//! prints one ack line per event once it is durable. Bad lines are reported
//! on stderr with their line number; good lines are still appended.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use clap::Args;
use ironclad::{AppendStatus, AppendTicket, Durability, ExpectedVersion, Journal, NewEvent, Op};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

use tokio::sync::mpsc;

use crate::{journal_config, Cli, CmdResult, ExitCode};

pub(crate) mod remote;

/// Arguments of `append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The stream to append to.
    pub stream: String,
    /// The stream must be at this version before the first line; lines then
    /// become versions V+1, V+2, … (any mismatch rejects that line and, in
    /// consequence, the lines after it).
    #[arg(long)]
    pub expected_version: Option<u64>,
    /// Event type for every line.
    #[arg(long = "type", default_value = "event")]
    pub event_type: String,
    /// Acknowledge after fsync (default) or after the OS has the write.
    #[arg(long, default_value = "fsync")]
    pub durability: Durability,
    /// Each line is an envelope `{"id"?, "type"?, "op"?, "entity"?, "metadata"?, "payload"}`
    /// instead of a bare payload. Giving ids makes a re-run of the same
    /// import idempotent: lines already appended are acknowledged again with
    /// `"already_appended": true` and not written twice.
    #[arg(long)]
    pub envelope: bool,
    /// Longest stdin line accepted, in bytes.
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    pub line_bytes_max: usize,
    /// `--server URL`, `--token T`.
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
}

/// Most appends queued ahead of the printer (bounds memory on huge inputs).
const IN_FLIGHT_MAX: usize = 65_536;

/// What the printer saw, for the closing summary.
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) appended: u64,
    pub(crate) already: u64,
    pub(crate) rejected: u64,
}

enum Item {
    Queued { line: u64, ticket: AppendTicket },
    Rejected { line: u64, error: String },
}

#[derive(Serialize)]
struct AckLine<'a> {
    id: String,
    stream: &'a str,
    version: u64,
    position: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    already_appended: bool,
}

/// Runs `append`.
pub async fn run(cli: &Cli, args: &AppendArgs) -> CmdResult {
    let journal = Journal::open(journal_config(cli, args.durability))?;
    let (tx, rx) = mpsc::channel::<Item>(IN_FLIGHT_MAX);
    let printer = tokio::spawn(print_acks(rx, args.stream.clone(), cli.json));
    let read_result = read_lines(&journal, args, tx).await;
    let Counts {
        appended,
        already,
        rejected,
    } = printer.await.map_err(anyhow::Error::from)??;
    journal.shutdown(Duration::from_secs(30)).await?;
    read_result?;
    Ok(print_summary(
        cli.json,
        &Counts {
            appended,
            already,
            rejected,
        },
    ))
}

/// Prints the closing summary on stderr; the exit code it implies.
pub(crate) fn print_summary(json: bool, counts: &Counts) -> ExitCode {
    let Counts {
        appended,
        already,
        rejected,
    } = counts;
    if json {
        eprintln!(
            "{}",
            serde_json::json!({"appended": appended, "already_appended": already, "rejected_lines": rejected})
        );
    } else {
        eprintln!(
            "appended {appended} events; {already} were already appended; {rejected} lines rejected"
        );
    }
    if *rejected > 0 {
        ExitCode::SomeLinesRejected
    } else {
        ExitCode::Ok
    }
}

/// Writes one ack line (the same for a local and a remote append).
pub(crate) fn write_ack<W: Write>(
    out: &mut W,
    id: &Uuid,
    stream: &str,
    version: u64,
    position: u64,
    already_appended: bool,
) -> std::io::Result<()> {
    let l = AckLine {
        id: id.to_string(),
        stream,
        version,
        position,
        already_appended,
    };
    serde_json::to_writer(&mut *out, &l)?;
    out.write_all(b"\n")
}

/// Reports a rejected input line on stderr.
pub(crate) fn print_rejected(json: bool, line: u64, error: &str) {
    if json {
        eprintln!("{}", serde_json::json!({"line": line, "error": error}));
    } else {
        eprintln!("line {line}: {error}");
    }
}

async fn read_lines(
    journal: &Journal,
    args: &AppendArgs,
    tx: mpsc::Sender<Item>,
) -> anyhow::Result<()> {
    let mut input = BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut good = 0u64;
    loop {
        let line = match read_bounded_line(&mut input, &mut buf, args.line_bytes_max).await? {
            None => break,
            Some(line) => line,
        };
        line_no += 1;
        let event = match line_to_event(line, &buf, args) {
            Ok(None) => continue, // blank line
            Ok(Some(event)) => event,
            Err(error) => {
                let item = Item::Rejected {
                    line: line_no,
                    error,
                };
                send(&tx, item).await?;
                continue;
            }
        };
        let item = {
            let expected = match args.expected_version {
                Some(v) => ExpectedVersion::Exact(v + good),
                None => ExpectedVersion::Any,
            };
            match journal.enqueue(&args.stream, expected, vec![event]).await {
                Ok(ticket) => {
                    good += 1;
                    Item::Queued {
                        line: line_no,
                        ticket,
                    }
                }
                Err(e) => Item::Rejected {
                    line: line_no,
                    error: e.to_string(),
                },
            }
        };
        send(&tx, item).await?;
    }
    Ok(())
}

/// Turns one input line into an event: `Ok(None)` for a blank line,
/// `Err` with a message for a line that cannot be an event.
pub(crate) fn line_to_event(
    line: Line,
    buf: &[u8],
    args: &AppendArgs,
) -> Result<Option<NewEvent>, String> {
    let text = match line {
        Line::TooLong(len) => {
            return Err(format!(
                "line is at least {len} bytes, over --line-bytes-max {}",
                args.line_bytes_max
            ))
        }
        Line::Text => std::str::from_utf8(buf)
            .map_err(|e| format!("line is not valid UTF-8 ({e})"))?
            .trim(),
    };
    if text.is_empty() {
        return Ok(None);
    }
    if args.envelope {
        return parse_envelope(text, &args.event_type).map(Some);
    }
    Ok(Some(NewEvent::new(
        args.event_type.clone(),
        text.to_string(),
    )))
}

/// One `--envelope` line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    id: Option<Uuid>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    #[serde(default)]
    op: Op,
    entity: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    payload: Box<RawValue>,
}

fn parse_envelope(text: &str, default_type: &str) -> Result<NewEvent, String> {
    let env: Envelope = serde_json::from_str(text).map_err(|e| {
        format!("not an envelope {{\"id\"?, \"type\"?, \"op\"?, \"entity\"?, \"metadata\"?, \"payload\"}}: {e}")
    })?;
    Ok(NewEvent {
        id: env.id,
        event_type: env.event_type.unwrap_or_else(|| default_type.to_string()),
        op: env.op,
        entity: env.entity,
        payload: env.payload.get().to_string(),
        metadata: env.metadata,
    })
}

async fn send(tx: &mpsc::Sender<Item>, item: Item) -> anyhow::Result<()> {
    if tx.send(item).await.is_err() {
        anyhow::bail!("the ack printer stopped early (stdout closed?)");
    }
    Ok(())
}

pub(crate) enum Line {
    /// The line (without its newline) is in the buffer.
    Text,
    /// The line was longer than the limit and was skipped; its length so far.
    TooLong(usize),
}

/// Reads one line into `buf` without ever holding more than `max + 1` bytes
/// of it; `None` at end of input.
pub(crate) async fn read_bounded_line<R: tokio::io::AsyncBufRead + Unpin>(
    input: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> anyhow::Result<Option<Line>> {
    use tokio::io::AsyncReadExt;
    buf.clear();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let n = (&mut *input).take(limit).read_until(b'\n', buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Some(Line::Text));
    }
    if buf.len() <= max {
        return Ok(Some(Line::Text)); // last line, no trailing newline
    }
    // Too long: discard the rest of this line in bounded chunks.
    let mut skipped = buf.len();
    loop {
        buf.clear();
        let n = (&mut *input).take(64 * 1024).read_until(b'\n', buf).await?;
        skipped += n;
        if n == 0 || buf.last() == Some(&b'\n') {
            break;
        }
    }
    buf.clear();
    Ok(Some(Line::TooLong(skipped)))
}

async fn print_acks(
    mut rx: mpsc::Receiver<Item>,
    stream: String,
    json: bool,
) -> anyhow::Result<Counts> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
    let mut counts = Counts::default();
    loop {
        // Flush whenever we would otherwise wait, so acks are never held back.
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(_) => {
                out.flush()?;
                match rx.recv().await {
                    Some(item) => item,
                    None => break,
                }
            }
        };
        let (line, error) = match item {
            Item::Queued { line, ticket } => match ticket.await {
                Ok(result) => {
                    for ack in &result.events {
                        write_ack(
                            &mut out,
                            &ack.id,
                            &stream,
                            ack.version,
                            ack.position,
                            result.status == AppendStatus::AlreadyAppended,
                        )?;
                    }
                    let n = result.events.len() as u64;
                    match result.status {
                        AppendStatus::Appended => counts.appended += n,
                        AppendStatus::AlreadyAppended => counts.already += n,
                    }
                    continue;
                }
                Err(e) => (line, e.to_string()),
            },
            Item::Rejected { line, error } => (line, error),
        };
        counts.rejected += 1;
        print_rejected(json, line, &error);
    }
    out.flush()?;
    Ok(counts)
}
