//! `append` against a server (`--server`): the same line rules and
//! output as a local append, sent in batches through the typed client.
//! Every event gets its id here, so a retried request is idempotent.

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use ironclad::validate::validate_append;
use ironclad::{AppendError, AppendResult, AppendStatus, Limits, NewEvent};
use ironclad_client::wire::{AppendRequest, WireEvent, WireExpected};
use ironclad_client::{Client, ClientError};
use serde_json::value::RawValue;
use tokio::io::BufReader;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{AppendArgs, Counts, Line};
use crate::remote::failure;
use crate::{Cli, CmdResult, Failure};

/// Most events per request (the server's default `events_per_request_max`;
/// a smaller server limit is learnt from its `too_many_events` answer).
const BATCH_EVENTS_MAX: usize = 1_000;
/// Most payload bytes per request (half the server's default body limit).
const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Input lines read ahead of the sender.
const READ_AHEAD_MAX: usize = 65_536;
/// Retries of a request the server could not take yet (queue full,
/// shutting down) or that did not complete (connection).
const RETRIES_MAX: u32 = 8;

/// One input line: an event to send, or the reason it was rejected.
enum Item {
    Event { line: u64, event: WireEvent },
    Rejected { line: u64, error: String },
}

/// `append` against the server: a reader task parses stdin lines while the
/// sender posts them in batches (as many lines as have arrived, up to
/// [`BATCH_EVENTS_MAX`]), so a large import takes one request per thousand
/// lines. One request is in flight at a time: two concurrent requests could
/// commit out of order, and the stream's order must be the input's.
/// Every event gets its id here, so a retried request is idempotent.
pub(crate) async fn run(cli: &Cli, client: &Client, args: &AppendArgs) -> CmdResult {
    let (tx, mut rx) = mpsc::channel::<Item>(READ_AHEAD_MAX);
    let stream = args.stream.clone();
    let reader_args = AppendArgs {
        stream: args.stream.clone(),
        expected_version: args.expected_version,
        event_type: args.event_type.clone(),
        durability: args.durability,
        envelope: args.envelope,
        line_bytes_max: args.line_bytes_max,
        remote: args.remote.clone(),
    };
    let reader = tokio::spawn(async move { read_items(&reader_args, tx).await });
    let mut sender = Sender {
        client,
        stream: &stream,
        json: cli.json,
        expected: args.expected_version,
        good: 0,
        events_max: BATCH_EVENTS_MAX,
        counts: Counts::default(),
        out: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()),
    };
    let mut pending: Option<Item> = None;
    let result: Result<(), Failure> = async {
        loop {
            let first = match pending.take() {
                Some(item) => item,
                None => match rx.recv().await {
                    Some(item) => item,
                    None => break,
                },
            };
            let mut batch = Vec::new();
            let mut bytes = 0usize;
            match first {
                Item::Rejected { line, error } => {
                    sender.reject(line, &error)?;
                    continue;
                }
                Item::Event { line, event } => {
                    bytes += event.payload.get().len();
                    batch.push((line, event));
                }
            }
            while batch.len() < sender.events_max && bytes < BATCH_BYTES_MAX {
                match rx.try_recv() {
                    Ok(Item::Event { line, event }) => {
                        bytes += event.payload.get().len();
                        batch.push((line, event));
                    }
                    Ok(other) => {
                        pending = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            sender.send(batch).await?;
        }
        Ok(())
    }
    .await;
    drop(rx);
    let read_result = reader.await.map_err(anyhow::Error::from)?;
    sender.out.flush()?;
    result?;
    read_result?;
    Ok(super::print_summary(cli.json, &sender.counts))
}

/// Reads stdin into items: the same line rules and checks as a local
/// append (so a bad line is rejected with the same message), and an id for
/// every event.
async fn read_items(args: &AppendArgs, tx: mpsc::Sender<Item>) -> anyhow::Result<()> {
    let mut input = BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let limits = Limits::default();
    loop {
        let line: Line =
            match super::read_bounded_line(&mut input, &mut buf, args.line_bytes_max).await? {
                None => break,
                Some(line) => line,
            };
        line_no += 1;
        let item = match super::line_to_event(line, &buf, args) {
            Ok(None) => continue,
            Ok(Some(event)) => match to_body(&args.stream, event, &limits) {
                Ok(event) => Item::Event {
                    line: line_no,
                    event,
                },
                Err(error) => Item::Rejected {
                    line: line_no,
                    error,
                },
            },
            Err(error) => Item::Rejected {
                line: line_no,
                error,
            },
        };
        if tx.send(item).await.is_err() {
            break; // the sender stopped (it reports why)
        }
    }
    Ok(())
}

/// The wire event of one input line, checked as a local append would.
fn to_body(stream: &str, mut event: NewEvent, limits: &Limits) -> Result<WireEvent, String> {
    validate_append(stream, std::slice::from_ref(&event), limits)
        .map_err(|e| AppendError::from(e).to_string())?;
    let payload = RawValue::from_string(std::mem::take(&mut event.payload))
        .map_err(|e| format!("the payload is not JSON: {e}"))?;
    Ok(WireEvent {
        id: Some(event.id.unwrap_or_else(Uuid::now_v7)),
        event_type: event.event_type,
        op: event.op,
        entity: event.entity,
        payload,
        metadata: event.metadata,
    })
}

/// Sends batches in input order and prints each line's verdict.
struct Sender<'a> {
    client: &'a Client,
    stream: &'a str,
    json: bool,
    expected: Option<u64>,
    /// Events appended so far (for `--expected-version`).
    good: u64,
    events_max: usize,
    counts: Counts,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Sender<'_> {
    fn reject(&mut self, line: u64, error: &str) -> Result<(), Failure> {
        self.out.flush()?;
        self.counts.rejected += 1;
        super::print_rejected(self.json, line, error);
        Ok(())
    }

    /// Sends a batch, splitting it when the server wants smaller requests
    /// and resending line by line when it refuses the batch, so every line
    /// gets its own verdict as it would locally.
    async fn send(&mut self, batch: Vec<(u64, WireEvent)>) -> Result<(), Failure> {
        let mut work = VecDeque::from([batch]);
        while let Some(batch) = work.pop_front() {
            let expected = match self.expected {
                Some(v) => WireExpected::Exact(v + self.good),
                None => WireExpected::Keyword("any".to_string()),
            };
            let body = AppendRequest {
                expected_version: Some(expected),
                events: batch.iter().map(|(_, e)| e.clone()).collect(),
            };
            match self.post(&body).await {
                Ok(outcome) => self.print_acks(&outcome)?,
                Err(ClientError::Api { code, details, .. })
                    if code == "too_many_events" && batch.len() > 1 =>
                {
                    let max = details["max"].as_u64().unwrap_or(0) as usize;
                    self.events_max = max.clamp(1, batch.len() / 2).max(1);
                    let n = self.events_max;
                    for chunk in batch.chunks(n).rev() {
                        work.push_front(chunk.to_vec());
                    }
                }
                Err(ClientError::Api { code, .. })
                    if code == "body_too_large" && batch.len() > 1 =>
                {
                    let (a, b) = batch.split_at(batch.len() / 2);
                    work.push_front(b.to_vec());
                    work.push_front(a.to_vec());
                }
                Err(ClientError::Api { status, .. })
                    if (400..500).contains(&status)
                        && status != 401
                        && status != 403
                        && batch.len() > 1 =>
                {
                    for one in batch.into_iter().rev() {
                        work.push_front(vec![one]);
                    }
                }
                Err(ClientError::Api {
                    status, message, ..
                }) if (400..500).contains(&status) && status != 401 && status != 403 => {
                    let line = batch.first().map_or(0, |(l, _)| *l);
                    self.reject(line, &message)?;
                }
                Err(e) => return Err(failure(e)),
            }
        }
        Ok(())
    }

    /// One request, retried while the server asks to wait (queue full,
    /// shutting down) or the connection fails: the ids make a resend safe.
    async fn post(&self, body: &AppendRequest) -> Result<AppendResult, ClientError> {
        let mut attempt = 0u32;
        loop {
            let result = self.client.append(self.stream, body).await;
            let wait = match &result {
                Err(ClientError::Api {
                    status: 408 | 429 | 503,
                    retry_after_s,
                    ..
                }) => Duration::from_secs(retry_after_s.unwrap_or(1).min(30)),
                Err(ClientError::Transport(_)) => Duration::from_millis(200 << attempt.min(5)),
                _ => return result,
            };
            attempt += 1;
            if attempt > RETRIES_MAX {
                return result;
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn print_acks(&mut self, outcome: &AppendResult) -> Result<(), Failure> {
        let already = outcome.status == AppendStatus::AlreadyAppended;
        for ack in &outcome.events {
            super::write_ack(
                &mut self.out,
                &ack.id,
                self.stream,
                ack.version,
                ack.position,
                already,
            )?;
        }
        let n = outcome.events.len() as u64;
        if already {
            self.counts.already += n;
        } else {
            self.counts.appended += n;
        }
        self.good += n;
        self.out.flush()?;
        Ok(())
    }
}
