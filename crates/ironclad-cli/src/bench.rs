//! `ironclad bench append`: measured ingest throughput and ack latency, with
//! an optional naive baseline run in the same process on the same disk.
//!
//! Closed loop by default (each producer awaits its ack before the next
//! append). With `--rate`, open loop: appends are issued on a fixed schedule
//! and latency is measured from the *scheduled* time, so a stalled writer
//! shows up as latency instead of hiding as a lower offered rate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use ironclad::{Durability, ExpectedVersion, Journal, JournalConfig, NewEvent};
use serde::Serialize;

use crate::{output, Cli, CmdResult, ExitCode};

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Append throughput and acknowledgement latency.
    Append(BenchAppendArgs),
}

/// Arguments of `bench append`.
#[derive(Debug, Args, Clone)]
pub struct BenchAppendArgs {
    /// Concurrent producer tasks.
    #[arg(long, default_value_t = 64)]
    pub producers: usize,
    /// Total events to append.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Payload size in bytes (a JSON object padded to this size).
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Events per append call.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Appends each producer keeps in flight (queued but not yet acknowledged)
    /// in closed-loop mode; 1 = await every ack before the next append.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Streams the producers spread over.
    #[arg(long, default_value_t = 16)]
    pub streams: usize,
    /// Acknowledgement durability.
    #[arg(long, default_value = "fsync")]
    pub durability: Durability,
    /// Offered load in events/s (open loop). 0 = closed loop, as fast as acks allow.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Also run the naive baseline (one SQLite transaction per event,
    /// synchronous=FULL) in this process, on the same disk, and report the ratio.
    #[arg(long)]
    pub baseline: bool,
    /// Events the baseline appends.
    #[arg(long, default_value_t = 2_000)]
    pub baseline_events: u64,
    /// Directory in which the scratch database is created (and removed after).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Serialize)]
struct Report {
    producers: usize,
    events: u64,
    payload_bytes: usize,
    batch: usize,
    pipeline: usize,
    durability: Durability,
    offered_rate: u64,
    elapsed_s: f64,
    events_per_s: f64,
    ack_p50_ms: f64,
    ack_p99_ms: f64,
    ack_max_ms: f64,
    peak_rss_mib: f64,
    queue_events_max: usize,
    queue_bytes_max: usize,
    baseline_events_per_s: Option<f64>,
    ratio_vs_baseline: Option<f64>,
}

/// Runs a benchmark.
pub async fn run(cli: &Cli, which: &BenchCommand) -> CmdResult {
    match which {
        BenchCommand::Append(args) => append(cli, args).await,
    }
}

fn payload(bytes: usize) -> String {
    let skeleton = r#"{"pad":""}"#;
    let pad = bytes.saturating_sub(skeleton.len());
    format!(r#"{{"pad":"{}"}}"#, "x".repeat(pad))
}

/// Checks the flags' bounds, so a typo cannot start a run that never ends
/// or allocates without limit.
fn check_append_args(args: &BenchAppendArgs) -> anyhow::Result<()> {
    anyhow_ensure(
        args.producers >= 1 && args.producers <= 10_000,
        "--producers must be 1..=10000",
    )?;
    anyhow_ensure(
        args.batch >= 1 && args.batch <= 1000,
        "--batch must be 1..=1000",
    )?;
    anyhow_ensure(
        args.pipeline >= 1 && args.pipeline <= 4096,
        "--pipeline must be 1..=4096",
    )?;
    anyhow_ensure(args.streams >= 1, "--streams must be at least 1")?;
    anyhow_ensure(
        args.events >= 1 && args.events <= 100_000_000,
        "--events must be 1..=100000000",
    )
}

/// One producer's share of the run: what it appends, and how.
struct Producer {
    journal: Journal,
    done: Arc<AtomicU64>,
    payload: String,
    stream: String,
    batch: usize,
    appends: u64,
}

impl Producer {
    fn events(&self) -> Vec<NewEvent> {
        (0..self.batch)
            .map(|_| NewEvent::new("bench", self.payload.clone()))
            .collect()
    }

    /// Closed loop: keeps up to `pipeline` appends in flight, and records
    /// each one's enqueue-to-ack latency.
    async fn closed_loop(self, pipeline: usize) -> Result<Vec<u32>, ironclad::AppendError> {
        let mut latencies_us = Vec::with_capacity(self.appends as usize);
        let mut in_flight = std::collections::VecDeque::with_capacity(pipeline);
        for k in 0..self.appends {
            let t0 = Instant::now();
            let ticket = self
                .journal
                .enqueue(&self.stream, ExpectedVersion::Any, self.events())
                .await?;
            in_flight.push_back((t0, ticket));
            let last = k + 1 == self.appends;
            while in_flight.len() >= pipeline || (last && !in_flight.is_empty()) {
                let Some((t0, ticket)) = in_flight.pop_front() else {
                    break;
                };
                ticket.await?;
                latencies_us.push(micros(t0.elapsed()));
                self.done.fetch_add(self.batch as u64, Ordering::Relaxed);
            }
        }
        Ok(latencies_us)
    }

    /// Open loop: appends on a fixed schedule whatever the acks do, and
    /// records each one's latency from its scheduled time (no coordinated
    /// omission).
    async fn open_loop(self, interval: Duration) -> Result<Vec<u32>, ironclad::AppendError> {
        let mut latencies_us = Vec::with_capacity(self.appends as usize);
        // Waiters report through a channel and are not kept as handles, so
        // the harness's own memory stays flat.
        let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel();
        let start = tokio::time::Instant::now();
        for k in 0..self.appends {
            let scheduled = start + interval.mul_f64(k as f64);
            tokio::time::sleep_until(scheduled).await;
            let ticket = self
                .journal
                .enqueue(&self.stream, ExpectedVersion::Any, self.events())
                .await?;
            let (done, lat_tx, batch) = (Arc::clone(&self.done), lat_tx.clone(), self.batch);
            tokio::spawn(async move {
                let r = ticket.await.map(|_| micros(scheduled.elapsed()));
                done.fetch_add(batch as u64, Ordering::Relaxed);
                let _ = lat_tx.send(r);
            });
        }
        drop(lat_tx);
        while let Some(r) = lat_rx.recv().await {
            latencies_us.push(r?);
        }
        Ok(latencies_us)
    }
}

/// The `q` quantile of sorted microsecond latencies, in milliseconds; 0
/// for none.
fn quantile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * q).round() as usize;
    f64::from(sorted_us[i.min(sorted_us.len() - 1)]) / 1000.0
}

async fn append(cli: &Cli, args: &BenchAppendArgs) -> CmdResult {
    check_append_args(args)?;
    let scratch = tempfile::Builder::new()
        .prefix(".ironclad-bench-")
        .tempdir_in(&args.dir)?;
    let config = JournalConfig::new(scratch.path().join("data")).durability(args.durability);
    let (queue_events_max, queue_bytes_max) = (config.queue_events_max, config.queue_bytes_max);
    let journal = Journal::open(config)?;
    let payload = payload(args.payload_bytes);
    let per_producer = args.events.div_ceil(args.producers as u64);
    let appends_per_producer = per_producer.div_ceil(args.batch as u64);
    let total = appends_per_producer * args.batch as u64 * args.producers as u64;
    let done = Arc::new(AtomicU64::new(0));
    let bar = output::progress(total, "append");
    let ticker = {
        let (bar, done) = (bar.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            loop {
                bar.set_position(done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.producers);
    for p in 0..args.producers {
        let producer = Producer {
            journal: journal.clone(),
            done: Arc::clone(&done),
            payload: payload.clone(),
            stream: format!("bench-{}", p % args.streams),
            batch: args.batch,
            appends: appends_per_producer,
        };
        // Per-producer share of the offered rate, as an interval between appends.
        tasks.push(if args.rate > 0 {
            let interval = Duration::from_secs_f64(
                args.producers as f64 * args.batch as f64 / args.rate as f64,
            );
            tokio::spawn(producer.open_loop(interval))
        } else {
            tokio::spawn(producer.closed_loop(args.pipeline))
        });
    }
    let mut latencies = Vec::with_capacity(total as usize / args.batch);
    for t in tasks {
        latencies.extend(t.await.map_err(anyhow::Error::from)??);
    }
    let elapsed = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    journal.shutdown(Duration::from_secs(60)).await?;
    let peak_rss_mib = peak_rss_mib();
    latencies.sort_unstable();
    let events_per_s = total as f64 / elapsed.as_secs_f64().max(1e-9);
    let baseline_events_per_s = if args.baseline {
        let dir = scratch.path().to_path_buf();
        let (n, bytes) = (args.baseline_events, args.payload_bytes);
        Some(
            tokio::task::spawn_blocking(move || naive_baseline(&dir, n, bytes))
                .await
                .map_err(anyhow::Error::from)??,
        )
    } else {
        None
    };
    let report = Report {
        producers: args.producers,
        events: total,
        payload_bytes: args.payload_bytes,
        batch: args.batch,
        pipeline: args.pipeline,
        durability: args.durability,
        offered_rate: args.rate,
        elapsed_s: elapsed.as_secs_f64(),
        events_per_s,
        ack_p50_ms: quantile_ms(&latencies, 0.50),
        ack_p99_ms: quantile_ms(&latencies, 0.99),
        ack_max_ms: quantile_ms(&latencies, 1.0),
        peak_rss_mib,
        queue_events_max,
        queue_bytes_max,
        baseline_events_per_s,
        ratio_vs_baseline: baseline_events_per_s.map(|b| events_per_s / b.max(1e-9)),
    };
    print_report(cli.json, &report)?;
    Ok(ExitCode::Ok)
}

fn anyhow_ensure(ok: bool, msg: &str) -> anyhow::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(anyhow::anyhow!("{msg}"))
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The naive approach: default rollback journal, `synchronous=FULL`, one
/// autocommit transaction per event, single writer.
fn naive_baseline(dir: &std::path::Path, events: u64, payload_bytes: usize) -> anyhow::Result<f64> {
    let conn = rusqlite::Connection::open(dir.join("naive-baseline.db"))?;
    conn.execute_batch(
        "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;
         CREATE TABLE naive (id BLOB PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL,
                             payload TEXT NOT NULL, UNIQUE (stream, version));",
    )?;
    let body = payload(payload_bytes);
    let mut stmt =
        conn.prepare("INSERT INTO naive (id, stream, version, payload) VALUES (?1, ?2, ?3, ?4)")?;
    let started = Instant::now();
    for v in 1..=events {
        let id = uuid::Uuid::now_v7();
        stmt.execute(rusqlite::params![
            id.as_bytes().as_slice(),
            "bench-0",
            v as i64,
            body
        ])?;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

/// Peak resident set size of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn print_report(json: bool, r: &Report) -> anyhow::Result<()> {
    if json {
        return output::json_line(r);
    }
    let mode = if r.offered_rate > 0 {
        format!("open loop at {} events/s offered", r.offered_rate)
    } else {
        format!("closed loop, {} appends in flight per producer", r.pipeline)
    };
    println!(
        "bench append: {} producers × {} events/append, {} B payloads, durability {}, {mode}",
        r.producers, r.batch, r.payload_bytes, r.durability
    );
    println!("{:<28} {:>14}", "metric", "value");
    println!("{:<28} {:>14}", "events", r.events);
    println!("{:<28} {:>14.2}", "elapsed (s)", r.elapsed_s);
    println!("{:<28} {:>14.0}", "events/s (acknowledged)", r.events_per_s);
    println!("{:<28} {:>14.2}", "ack latency p50 (ms)", r.ack_p50_ms);
    println!("{:<28} {:>14.2}", "ack latency p99 (ms)", r.ack_p99_ms);
    println!("{:<28} {:>14.2}", "ack latency max (ms)", r.ack_max_ms);
    println!("{:<28} {:>14.1}", "peak RSS (MiB)", r.peak_rss_mib);
    println!("{:<28} {:>14}", "queue bound (events)", r.queue_events_max);
    if let (Some(b), Some(ratio)) = (r.baseline_events_per_s, r.ratio_vs_baseline) {
        println!("{:<28} {:>14.0}", "naive baseline events/s", b);
        println!("{:<28} {:>13.1}x", "ratio vs baseline", ratio);
    }
    Ok(())
}
