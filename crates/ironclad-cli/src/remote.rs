//! `--server URL [--token T]`: the commands that work against a running
//! `ironclad serve` instead of a local data directory (SPEC §7).
//!
//! Each command turns the server's JSON answers back into the library's
//! types and hands them to the same printing functions the local command
//! uses, so the output (human and `--json`) is the same. Events are printed
//! as the server's JSON text, byte for byte: the server serializes them with
//! the same code `ironclad read` uses locally.
//!
//! Server errors map onto the CLI's exit codes ([`failure`]):
//! `unauthorized`/`forbidden` → 1 with what to do about the token,
//! `invalid_request`/`invalid_json` and other request errors → 2,
//! `ledger_mismatch` → 3 (from `ledger verify`), anything else → 1.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use ironclad::delivery::dlq::{DlqEntry, SinkDlqStats};
use ironclad::delivery::status::SinkStatus;
use ironclad::emergency::DumpInfo;
use ironclad::store::delivery::{DlqReason, DlqRow, DlqStats};
use ironclad::validate::validate_append;
use ironclad::{
    AppendError, LedgerHead, LedgerMismatch, Limits, MismatchKind, NewEvent, Op, RecordedEvent,
    ReplayReport, StreamHead, READ_LIMIT_MAX,
};
use ironclad_client::api::encode;
use ironclad_client::{AppendBody, AppendOutcome, Client, ClientError, EventBody};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::BufReader;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::cmd_append::{self, AppendArgs, Counts, Line};
use crate::cmd_dlq::{self, DlqAction, DlqArgs, FilterArgs, SelectArgs};
use crate::cmd_dump::{self, DumpAction};
use crate::cmd_ledger::{self, LedgerAction};
use crate::cmd_read::{self, ReadArgs};
use crate::cmd_status::{self, StatusArgs};
use crate::config_file::usage;
use crate::{cmd_tail, output, Cli, CmdResult, Command, ExitCode, Failure};

/// A connection to the server named by `--server`.
pub struct Remote {
    /// The typed client.
    pub client: Client,
    /// For the few answers whose events must be kept byte for byte inside
    /// a larger document (DLQ entries): the typed client decodes those into
    /// `serde_json::Value`, which would reorder payload keys.
    raw: reqwest::Client,
}

/// Runs the command against the server.
pub async fn run(cli: &Cli) -> CmdResult {
    let base = cli.server.as_deref().unwrap_or_default();
    let refuse = |what: &str| -> CmdResult {
        Err(usage(format!(
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
            action: LedgerAction::Head,
        } => {
            return refuse("ledger head");
        }
        _ => {}
    }
    let client = Client::new(base, cli.token.clone()).map_err(usage)?;
    let raw = reqwest::Client::builder()
        .timeout(ironclad_client::api::REQUEST_TIMEOUT)
        .build()
        .map_err(anyhow::Error::from)?;
    let remote = Remote { client, raw };
    match &cli.command {
        Command::Append(args) => append(cli, &remote, args).await,
        Command::Read(args) => read(cli, &remote, args).await,
        Command::Streams => streams(cli, &remote).await,
        Command::Tail(args) => cmd_tail::run_remote(cli, &remote, args).await,
        Command::Status(args) => status(cli, &remote, args).await,
        Command::Dlq(args) => dlq(cli, &remote, args).await,
        Command::Dump { action } => dump(cli, &remote, action).await,
        Command::Ledger { action } => ledger(cli, &remote, action).await,
        _ => unreachable!("refused above"),
    }
}

/// Maps a client error to the CLI's failure and exit code.
pub fn failure(e: ClientError) -> Failure {
    let (code, error) = match &e {
        ClientError::BadUrl(_) => (ExitCode::Usage, anyhow!(e)),
        ClientError::Api { code, message, .. } => match code.as_str() {
            "unauthorized" => (
                ExitCode::Failed,
                anyhow!(
                    "the server refused the request (unauthorized): {message}; pass a valid \
                     token with --token or IRONCLAD_TOKEN"
                ),
            ),
            "forbidden" => (
                ExitCode::Failed,
                anyhow!(
                    "the server refused the request (forbidden): {message}; this command needs \
                     a token with another role (admin for status, dlq, dump and ledger; \
                     producer for append; consumer for tail)"
                ),
            ),
            "invalid_request" | "invalid_json" | "too_many_events" | "json_too_deep"
            | "body_too_large" => (ExitCode::Usage, anyhow!(e)),
            "ledger_mismatch" => (ExitCode::LedgerMismatch, anyhow!(e)),
            _ => (ExitCode::Failed, anyhow!(e)),
        },
        ClientError::Transport(_) | ClientError::Decode(_) => (ExitCode::Failed, anyhow!(e)),
    };
    Failure { code, error }
}

/// Decodes a JSON answer into `T`, or a failure that says what was wrong.
fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| {
        failure(ClientError::Decode(format!(
            "{e}: is the server the same version as this CLI?"
        )))
    })
}

/// A 32-byte hash from 64 hex digits.
fn hash_of(hex: &str) -> Result<[u8; 32], Failure> {
    let bad = || failure(ClientError::Decode(format!("bad hash {hex:?}")));
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

impl Remote {
    /// `GET` a path and return the body text (for answers that embed
    /// events, which must be kept byte for byte).
    async fn get_text(&self, path_and_query: &str) -> Result<String, Failure> {
        let bytes = self.get_bytes(path_and_query).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `GET` a path and return the body as sent.
    async fn get_bytes(&self, path_and_query: &str) -> Result<Vec<u8>, Failure> {
        let mut req = self
            .raw
            .get(format!("{}{path_and_query}", self.client.base_url()));
        if let Some(t) = self.client.token() {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| failure(ClientError::Transport(e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| failure(ClientError::Transport(e)))?;
        if (200..300).contains(&status) {
            return Ok(bytes.into());
        }
        let text = String::from_utf8_lossy(&bytes);
        #[derive(Deserialize)]
        struct Envelope {
            error: Body,
        }
        #[derive(Deserialize)]
        struct Body {
            code: String,
            message: String,
            #[serde(default)]
            details: serde_json::Value,
        }
        let e = match serde_json::from_str::<Envelope>(&text) {
            Ok(e) => ClientError::Api {
                status,
                code: e.error.code,
                message: e.error.message,
                details: e.error.details,
                retry_after_s: None,
            },
            Err(_) => ClientError::Api {
                status,
                code: "unknown".into(),
                message: text.chars().take(512).collect(),
                details: serde_json::Value::Null,
                retry_after_s: None,
            },
        };
        Err(failure(e))
    }
}

// ---------------------------------------------------------------- append

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

enum Item {
    Event { line: u64, event: EventBody },
    Rejected { line: u64, error: String },
}

/// `append` against the server: a reader task parses stdin lines while the
/// sender posts them in batches (as many lines as have arrived, up to
/// [`BATCH_EVENTS_MAX`]), so a large import takes one request per thousand
/// lines. One request is in flight at a time: two concurrent requests could
/// commit out of order, and the stream's order must be the input's.
/// Every event gets its id here, so a retried request is idempotent.
async fn append(cli: &Cli, remote: &Remote, args: &AppendArgs) -> CmdResult {
    let (tx, mut rx) = mpsc::channel::<Item>(READ_AHEAD_MAX);
    let stream = args.stream.clone();
    let reader_args = AppendArgs {
        stream: args.stream.clone(),
        expected_version: args.expected_version,
        event_type: args.event_type.clone(),
        durability: args.durability,
        envelope: args.envelope,
        line_bytes_max: args.line_bytes_max,
    };
    let reader = tokio::spawn(async move { read_items(&reader_args, tx).await });
    let mut sender = Sender {
        remote,
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
    Ok(cmd_append::print_summary(cli.json, &sender.counts))
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
            match cmd_append::read_bounded_line(&mut input, &mut buf, args.line_bytes_max).await? {
                None => break,
                Some(line) => line,
            };
        line_no += 1;
        let item = match cmd_append::line_to_event(line, &buf, args) {
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

fn to_body(stream: &str, mut event: NewEvent, limits: &Limits) -> Result<EventBody, String> {
    validate_append(stream, std::slice::from_ref(&event), limits)
        .map_err(|e| AppendError::from(e).to_string())?;
    let payload = RawValue::from_string(std::mem::take(&mut event.payload))
        .map_err(|e| format!("the payload is not JSON: {e}"))?;
    let op = match event.op {
        Op::Event => None,
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string)),
    };
    Ok(EventBody {
        id: Some(event.id.unwrap_or_else(Uuid::now_v7)),
        event_type: event.event_type,
        op,
        entity: event.entity,
        payload,
        metadata: event.metadata,
    })
}

struct Sender<'a> {
    remote: &'a Remote,
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
        cmd_append::print_rejected(self.json, line, error);
        Ok(())
    }

    /// Sends a batch, splitting it when the server wants smaller requests
    /// and resending line by line when it refuses the batch, so every line
    /// gets its own verdict as it would locally.
    async fn send(&mut self, batch: Vec<(u64, EventBody)>) -> Result<(), Failure> {
        let mut work = VecDeque::from([batch]);
        while let Some(batch) = work.pop_front() {
            let expected = match self.expected {
                Some(v) => serde_json::json!(v + self.good),
                None => serde_json::json!("any"),
            };
            let body = AppendBody {
                expected_version: expected,
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
    async fn post(&self, body: &AppendBody) -> Result<AppendOutcome, ClientError> {
        let mut attempt = 0u32;
        loop {
            let result = self.remote.client.append(self.stream, body).await;
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

    fn print_acks(&mut self, outcome: &AppendOutcome) -> Result<(), Failure> {
        let already = outcome.status == "already_appended";
        for ack in &outcome.events {
            cmd_append::write_ack(
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

// ------------------------------------------------------ read and streams

/// Page size of reads and listings: the server's default `read_limit_max`
/// (a lower server limit is learnt from its `invalid_request` answer).
pub(crate) const PAGE_MAX: usize = if READ_LIMIT_MAX < 1_000 {
    READ_LIMIT_MAX
} else {
    1_000
};

/// The smaller page size a server asks for in an `invalid_request` answer
/// about `limit`, if that is what it says.
fn smaller_limit(e: &ClientError, cap: usize) -> Option<usize> {
    match e {
        ClientError::Api { code, details, .. } if code == "invalid_request" => details["max"]
            .as_u64()
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX).max(1))
            .filter(|m| *m < cap),
        _ => None,
    }
}

async fn read(_cli: &Cli, remote: &Remote, args: &ReadArgs) -> CmdResult {
    let mut next = args.from.max(1);
    let mut left = args.limit.unwrap_or(u64::MAX);
    let mut cap = PAGE_MAX;
    while left > 0 {
        let page_len = usize::try_from(left).unwrap_or(usize::MAX).min(cap);
        let page = match remote.client.read(&args.stream, next, page_len).await {
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

#[derive(Deserialize)]
struct WireHead {
    stream: String,
    version: u64,
    hash: String,
}

#[derive(Deserialize)]
struct WireStreams {
    streams: Vec<WireHead>,
    next: Option<String>,
}

async fn streams(cli: &Cli, remote: &Remote) -> CmdResult {
    let mut after = String::new();
    cmd_read::print_streams_header(cli.json);
    let mut cap = PAGE_MAX;
    loop {
        let v = match remote.client.streams(&after, cap).await {
            Ok(v) => v,
            Err(e) => match smaller_limit(&e, cap) {
                Some(smaller) => {
                    cap = smaller;
                    continue;
                }
                None => return Err(failure(e)),
            },
        };
        let page: WireStreams = decode(v)?;
        for h in page.streams {
            let head = StreamHead {
                hash: hash_of(&h.hash)?,
                stream: h.stream,
                version: h.version,
            };
            cmd_read::print_stream_head(cli.json, &head)?;
        }
        match page.next {
            Some(n) => after = n,
            None => break,
        }
    }
    Ok(ExitCode::Ok)
}

// ---------------------------------------------------------------- status

#[derive(Deserialize)]
struct WireSinks {
    sinks: Vec<WireSinkStatus>,
}

#[derive(Deserialize)]
struct WireSinkStatus {
    sink: String,
    pending: u64,
    oldest_pending_age_ms: Option<u64>,
    circuit: String,
    dlq_entries: u64,
    dlq_archived: u64,
    retry_rows: u64,
    retrying: u64,
    next_retry_unix_ms: Option<u64>,
    delivered_total: u64,
    cursor_position: u64,
}

/// `status` from `GET /v1/admin/sinks`: the server runs the engine, so it
/// knows the routes (`pending` is complete) and the live circuits.
async fn status(cli: &Cli, remote: &Remote, args: &StatusArgs) -> CmdResult {
    if args.config.is_some() {
        return Err(usage(
            "--config is for a local data directory: with --server the server's own \
             configuration gives the routes",
        ));
    }
    let v = match remote.client.sinks().await {
        Ok(v) => v,
        Err(ClientError::Api { code, details, .. })
            if code == "not_found" && details["resource"] == "delivery_engine" =>
        {
            return Err(anyhow!(
                "the server runs no delivery engine: start it with a --config that has \
                 [delivery] sinks and routes"
            )
            .into())
        }
        Err(e) => return Err(failure(e)),
    };
    let wire: WireSinks = decode(v)?;
    let statuses: Vec<SinkStatus> = wire
        .sinks
        .into_iter()
        .map(|s| SinkStatus {
            sink: s.sink,
            pending: s.pending,
            oldest_pending_age_ms: s.oldest_pending_age_ms,
            circuit: s.circuit,
            dlq_entries: s.dlq_entries,
            dlq_archived: s.dlq_archived,
            retry_rows: s.retry_rows,
            retrying: s.retrying,
            next_retry_unix_ms: s.next_retry_unix_ms,
            delivered_total: s.delivered_total,
            cursor_position: s.cursor_position,
        })
        .collect();
    cmd_status::print_statuses(cli.json, &statuses, None, &|_| true)?;
    Ok(ExitCode::Ok)
}

// ------------------------------------------------------------------- dlq

#[derive(Deserialize)]
struct WireDlqStats {
    sinks: Vec<WireSinkDlqStats>,
}

#[derive(Deserialize)]
struct WireSinkDlqStats {
    sink: String,
    entries: u64,
    oldest_failure_unix_ms: Option<u64>,
    by_reason: BTreeMap<String, u64>,
    archived_total: u64,
}

/// A recorded event as the server serializes it; the payload kept verbatim.
#[derive(Deserialize)]
pub(crate) struct WireEvent {
    id: Uuid,
    stream: String,
    version: u64,
    position: u64,
    #[serde(rename = "type")]
    event_type: String,
    op: Op,
    entity: Option<String>,
    payload: Box<RawValue>,
    metadata: BTreeMap<String, String>,
    created_at_us: i64,
    hash_version: u32,
    prev_hash: String,
    hash: String,
    global_hash: String,
}

impl WireEvent {
    fn into_event(self) -> Result<RecordedEvent, Failure> {
        Ok(RecordedEvent {
            prev_hash: hash_of(&self.prev_hash)?,
            hash: hash_of(&self.hash)?,
            global_hash: hash_of(&self.global_hash)?,
            id: self.id,
            stream: self.stream,
            version: self.version,
            position: self.position,
            event_type: self.event_type,
            op: self.op,
            entity: self.entity,
            payload: self.payload.get().to_string(),
            metadata: self.metadata,
            created_at_us: self.created_at_us,
            hash_version: self.hash_version,
        })
    }
}

#[derive(Deserialize)]
struct WireDlqEntry {
    sink: String,
    sink_id: i64,
    position: u64,
    event_id: Uuid,
    lane: String,
    attempts: u32,
    first_failure_unix_ms: u64,
    last_failure_unix_ms: u64,
    last_error: String,
    reason: String,
    event: Option<WireEvent>,
}

impl WireDlqEntry {
    fn into_entry(self) -> Result<DlqEntry, Failure> {
        let reason = DlqReason::parse(&self.reason).ok_or_else(|| {
            failure(ClientError::Decode(format!(
                "unknown DLQ reason {:?}",
                self.reason
            )))
        })?;
        Ok(DlqEntry {
            sink: self.sink,
            row: DlqRow {
                sink_id: self.sink_id,
                position: self.position,
                event_id: self.event_id,
                lane: self.lane,
                attempts: self.attempts,
                first_failure_unix_ms: self.first_failure_unix_ms,
                last_failure_unix_ms: self.last_failure_unix_ms,
                last_error: self.last_error,
                reason,
            },
            event: self.event.map(WireEvent::into_event).transpose()?,
        })
    }
}

#[derive(Deserialize)]
struct WireDlqPage {
    entries: Vec<WireDlqEntry>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct WireRetried {
    retried: u64,
    #[serde(default)]
    engine_reloaded: bool,
}

#[derive(Deserialize)]
struct WirePurged {
    purged: u64,
    archive_dir: String,
    files: Vec<String>,
}

fn push_query(q: &mut Vec<String>, key: &str, value: Option<String>) {
    if let Some(v) = value {
        q.push(format!("{key}={}", encode(&v)));
    }
}

fn filter_query(f: &FilterArgs, q: &mut Vec<String>) {
    push_query(q, "sink", f.sink.clone());
    push_query(q, "reason", f.reason.map(|r| r.as_str().to_string()));
    push_query(q, "stream", f.stream.clone());
    push_query(
        q,
        "failed_before_ms",
        f.failed_before_ms.map(|t| t.to_string()),
    );
}

fn selector(sel: &SelectArgs) -> serde_json::Value {
    if sel.all {
        return serde_json::json!({ "all": true });
    }
    let mut m = serde_json::Map::new();
    let f = &sel.filter;
    if let Some(s) = &f.sink {
        m.insert("sink".into(), s.clone().into());
    }
    if let Some(r) = f.reason {
        m.insert("reason".into(), r.as_str().into());
    }
    if let Some(s) = &f.stream {
        m.insert("stream".into(), s.clone().into());
    }
    if let Some(t) = f.failed_before_ms {
        m.insert("failed_before_ms".into(), t.into());
    }
    if let Some(p) = sel.position {
        m.insert("position".into(), p.into());
    }
    serde_json::Value::Object(m)
}

async fn dlq(cli: &Cli, remote: &Remote, args: &DlqArgs) -> CmdResult {
    cmd_dlq::check_selector(&args.action)?;
    if args.config.is_some() {
        return Err(usage(
            "--config only picks a local data directory: drop it with --server",
        ));
    }
    match &args.action {
        DlqAction::Stats => {
            let v = remote
                .client
                .get_json("/v1/admin/dlq/stats")
                .await
                .map_err(failure)?;
            let wire: WireDlqStats = decode(v)?;
            let mut stats = Vec::with_capacity(wire.sinks.len());
            for s in wire.sinks {
                let mut by_reason = Vec::new();
                for (r, n) in s.by_reason {
                    let r = DlqReason::parse(&r).ok_or_else(|| {
                        failure(ClientError::Decode(format!("unknown DLQ reason {r:?}")))
                    })?;
                    by_reason.push((r, n));
                }
                stats.push(SinkDlqStats {
                    sink: s.sink,
                    stats: DlqStats {
                        entries: s.entries,
                        oldest_failure_unix_ms: s.oldest_failure_unix_ms,
                        by_reason,
                    },
                    archived_total: s.archived_total,
                });
            }
            cmd_dlq::print_stats(cli.json, &stats)
        }
        DlqAction::List {
            filter,
            limit,
            after,
        } => {
            let mut q = Vec::new();
            filter_query(filter, &mut q);
            q.push(format!("limit={limit}"));
            push_query(&mut q, "after", after.map(|(s, p)| format!("{s}:{p}")));
            let text = remote
                .get_text(&format!("/v1/admin/dlq?{}", q.join("&")))
                .await?;
            let page: WireDlqPage = serde_json::from_str(&text)
                .map_err(|e| failure(ClientError::Decode(e.to_string())))?;
            let entries = page
                .entries
                .into_iter()
                .map(WireDlqEntry::into_entry)
                .collect::<Result<Vec<_>, _>>()?;
            cmd_dlq::print_list(cli.json, &entries, page.next)
        }
        DlqAction::Show { sink, position } => {
            let text = remote
                .get_text(&format!("/v1/admin/dlq/{}/{position}", encode(sink)))
                .await?;
            let wire: WireDlqEntry = serde_json::from_str(&text)
                .map_err(|e| failure(ClientError::Decode(e.to_string())))?;
            let entry = wire.into_entry()?;
            if cli.json {
                output::json_line(&entry)?;
            } else {
                cmd_dlq::print_entry(&entry)?;
            }
            Ok(ExitCode::Ok)
        }
        DlqAction::Retry(sel) => {
            let v = remote
                .client
                .post_json("/v1/admin/dlq/retry", &selector(sel))
                .await
                .map_err(failure)?;
            let r: WireRetried = decode(v)?;
            cmd_dlq::print_retried(cli.json, r.retried, r.engine_reloaded)
        }
        DlqAction::Purge(sel) => {
            let v = remote
                .client
                .post_json("/v1/admin/dlq/purge", &selector(sel))
                .await
                .map_err(failure)?;
            let r: WirePurged = decode(v)?;
            let files: Vec<PathBuf> = r.files.into_iter().map(PathBuf::from).collect();
            cmd_dlq::print_purged(cli.json, r.purged, Path::new(&r.archive_dir), &files)
        }
        DlqAction::Export { filter, out } => {
            // The server runs the library's export: the same bytes a local
            // `dlq export` writes.
            let mut q = Vec::new();
            filter_query(filter, &mut q);
            let path = if q.is_empty() {
                "/v1/admin/dlq/export".to_string()
            } else {
                format!("/v1/admin/dlq/export?{}", q.join("&"))
            };
            let body = remote.get_bytes(&path).await?;
            let n = body.iter().filter(|&&b| b == b'\n').count() as u64;
            cmd_dlq::write_export(cli.json, out.as_deref(), n, move |w| {
                w.write_all(&body)?;
                Ok(n)
            })
            .await
        }
    }
}

// ------------------------------------------------------------------ dump

#[derive(Deserialize)]
struct WireDumps {
    dumps: Vec<WireDump>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
struct WireDump {
    path: String,
    bytes: u64,
}

#[derive(Deserialize)]
struct WireReplay {
    records: usize,
    appended_events: u64,
    already_appended_events: u64,
    archived_to: String,
}

async fn list_remote_dumps(remote: &Remote) -> Result<(Vec<DumpInfo>, bool), Failure> {
    let v = remote
        .client
        .get_json("/v1/admin/dumps")
        .await
        .map_err(failure)?;
    let wire: WireDumps = decode(v)?;
    let dumps = wire
        .dumps
        .into_iter()
        .map(|d| DumpInfo {
            path: PathBuf::from(d.path),
            bytes: d.bytes,
        })
        .collect();
    Ok((dumps, wire.truncated))
}

async fn dump(cli: &Cli, remote: &Remote, action: &DumpAction) -> CmdResult {
    match action {
        DumpAction::List => {
            let (dumps, truncated) = list_remote_dumps(remote).await?;
            let place = format!("the data directory of {}", remote.client.base_url());
            cmd_dump::print_dumps(cli.json, &dumps, &place)?;
            if truncated {
                eprintln!("note: the server lists at most 1000 dumps; replay them to see the rest");
            }
            Ok(ExitCode::Ok)
        }
        DumpAction::Replay { path, .. } => {
            let paths = match path {
                Some(p) => vec![p.clone()],
                None => list_remote_dumps(remote)
                    .await?
                    .0
                    .into_iter()
                    .map(|d| d.path)
                    .collect(),
            };
            for p in &paths {
                let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                    return Err(usage(format!(
                        "{} is not a dump file name: `ironclad dump list` shows them",
                        p.display()
                    )));
                };
                let v = remote
                    .client
                    .post_json(
                        &format!("/v1/admin/dumps/{}/replay", encode(&name)),
                        &serde_json::json!({}),
                    )
                    .await
                    .map_err(failure)?;
                let r: WireReplay = decode(v)?;
                let report = ReplayReport {
                    records: r.records,
                    appended_events: r.appended_events,
                    already_appended_events: r.already_appended_events,
                    archived_to: PathBuf::from(r.archived_to),
                };
                cmd_dump::print_replay(cli.json, p, &report)?;
            }
            Ok(ExitCode::Ok)
        }
    }
}

// ---------------------------------------------------------------- ledger

#[derive(Deserialize)]
struct WireVerified {
    checked: u64,
    head: Option<LedgerHead>,
}

#[derive(Deserialize)]
struct WireMismatch {
    kind: String,
    stream: String,
    version: u64,
    position: u64,
    expected: String,
    actual: String,
}

fn mismatch_kind(s: &str) -> Option<MismatchKind> {
    Some(match s {
        "event_hash" => MismatchKind::EventHash,
        "prev_hash" => MismatchKind::PrevHash,
        "global_hash" => MismatchKind::GlobalHash,
        "version_gap" => MismatchKind::VersionGap,
        "position_order" => MismatchKind::PositionOrder,
        "unknown_hash_version" => MismatchKind::UnknownHashVersion,
        "stream_head" => MismatchKind::StreamHead,
        "head_missing" => MismatchKind::HeadMissing,
        "head_mismatch" => MismatchKind::HeadMismatch,
        "column_type" => MismatchKind::ColumnType,
        _ => return None,
    })
}

async fn ledger(cli: &Cli, remote: &Remote, action: &LedgerAction) -> CmdResult {
    let LedgerAction::Verify { stream, against } = action else {
        unreachable!("refused in run")
    };
    let against = against.as_deref().map(cmd_ledger::parse_head).transpose()?;
    if stream.is_some() && against.is_some() {
        return Err(usage(
            "--stream and --against cannot be combined: verify the whole log against a head",
        ));
    }
    let mut body = serde_json::Map::new();
    if let Some(s) = stream {
        body.insert("stream".into(), s.clone().into());
    }
    if let Some(h) = &against {
        body.insert(
            "against".into(),
            serde_json::to_value(h).map_err(anyhow::Error::from)?,
        );
    }
    match remote
        .client
        .verify_ledger(&serde_json::Value::Object(body))
        .await
    {
        Ok(v) => {
            let r: WireVerified = decode(v)?;
            cmd_ledger::print_verified(cli.json, r.checked, r.head.as_ref())
        }
        Err(ClientError::Api { code, details, .. }) if code == "ledger_mismatch" => {
            let m: WireMismatch = decode(details)?;
            let kind = mismatch_kind(&m.kind).ok_or_else(|| Failure {
                code: ExitCode::LedgerMismatch,
                error: anyhow!("ledger verification FAILED: mismatch of kind {:?}", m.kind),
            })?;
            let m = LedgerMismatch {
                kind,
                stream: m.stream,
                version: m.version,
                position: m.position,
                expected: m.expected,
                actual: m.actual,
            };
            cmd_ledger::print_mismatch(cli.json, &m)
        }
        Err(e) => Err(failure(e)),
    }
}
