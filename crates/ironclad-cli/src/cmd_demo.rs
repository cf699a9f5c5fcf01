//! `ironclad demo`: a sample workload from several concurrent producers,
//! then a summary and a full ledger verification. Safe to run repeatedly.

use std::time::{Duration, Instant};

use clap::Args;
use ironclad::{ExpectedVersion, Journal, NewEvent, Op, VerifyOptions};

use crate::{journal_config, output, Cli, CmdResult, ExitCode};

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Concurrent producers.
    #[arg(long, default_value_t = 8)]
    pub producers: usize,
    /// Appends per producer (each holds 1–3 events).
    #[arg(long, default_value_t = 250)]
    pub appends: usize,
}

/// Runs the demo.
pub async fn run(cli: &Cli, args: &DemoArgs) -> CmdResult {
    let journal = Journal::open(journal_config(cli, Default::default()))?;
    let before = journal.ledger_head()?.map_or(0, |h| h.position);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..args.producers.clamp(1, 256) {
        let journal = journal.clone();
        let appends = args.appends.min(100_000);
        tasks.push(tokio::spawn(async move {
            let mut events = 0u64;
            for i in 0..appends {
                let order = format!("order-{p}-{i}");
                let stream = format!("demo-orders-{}", i % 4);
                let mut batch = vec![NewEvent::from_value(
                    "order.placed",
                    &serde_json::json!({"order": order, "producer": p, "total_cents": 1000 + i}),
                )
                .with_entity(Op::Create, order.clone())
                .with_metadata("source", "demo")];
                if i % 2 == 0 {
                    batch.push(
                        NewEvent::from_value("order.paid", &serde_json::json!({"order": order}))
                            .with_entity(Op::Update, order.clone()),
                    );
                }
                if i % 5 == 0 {
                    batch.push(
                        NewEvent::from_value("order.shipped", &serde_json::json!({"order": order}))
                            .with_entity(Op::Update, order.clone()),
                    );
                }
                let n = batch.len() as u64;
                journal.append(&stream, ExpectedVersion::Any, batch).await?;
                events += n;
            }
            Ok::<u64, ironclad::AppendError>(events)
        }));
    }
    let mut appended = 0u64;
    for t in tasks {
        appended += t.await.map_err(anyhow::Error::from)??;
    }
    let elapsed = started.elapsed();
    let reader = journal.reader();
    let report =
        tokio::task::spawn_blocking(move || reader.verify(&VerifyOptions::default(), &mut |_| {}))
            .await
            .map_err(anyhow::Error::from)??;
    let streams = journal.list_streams("", ironclad::READ_LIMIT_MAX)?.len();
    journal.shutdown(Duration::from_secs(30)).await?;
    let rate = appended as f64 / elapsed.as_secs_f64().max(1e-9);
    let summary = serde_json::json!({
        "data_dir": cli.data_dir,
        "producers": args.producers,
        "appended_events": appended,
        "positions": {"from": before + 1, "to": report.head.map_or(0, |h| h.position)},
        "elapsed_ms": elapsed.as_millis() as u64,
        "events_per_second": rate.round(),
        "streams": streams,
        "ledger_verified_events": report.checked,
        "ledger_head": report.head,
    });
    if cli.json {
        output::json_line(&summary)?;
    } else {
        println!("Ironclad demo: {} producers appended {appended} events in {:.2?} ({rate:.0} events/s, fsync durability)", args.producers, elapsed);
        println!("  data directory:  {}", cli.data_dir.display());
        println!("  streams:         {streams}");
        if let Some(h) = report.head {
            println!(
                "  ledger head:     position {} hash {}",
                h.position,
                summary["ledger_head"]["hash"].as_str().unwrap_or("?")
            );
        }
        println!(
            "  ledger verified: {} events, every hash recomputed and every link checked",
            report.checked
        );
        println!(
            "Try: ironclad --data-dir {} read demo-orders-0 --limit 3",
            cli.data_dir.display()
        );
    }
    Ok(ExitCode::Ok)
}
