//! The DLQ actions against a server (`--server`), through its admin API
//! (an admin token). The answers are turned back into the library's
//! values and printed as the local actions print them; a DLQ entry's
//! event keeps the server's payload text, so `show` and `list --json`
//! print the same bytes as they do locally.

use std::path::{Path, PathBuf};

use ironclad::delivery::dlq::{DlqEntry, SinkDlqStats};
use ironclad::store::delivery::{DlqReason, DlqStats};
use ironclad_client::wire::{
    DlqEntryBody, DlqExportQuery, DlqListQuery, DlqSelector, SinkDlqStatsBody,
};
use ironclad_client::Client;

use super::print::{
    print_entry, print_list, print_purged, print_retried, print_stats, write_export,
};
use super::{check_selector, DlqAction, DlqArgs, FilterArgs, SelectArgs};
use crate::config_file::usage;
use crate::remote::{failure, undecodable};
use crate::{output, Cli, CmdResult, ExitCode, Failure};

/// Runs a DLQ action against the server.
pub(crate) async fn run(cli: &Cli, client: &Client, args: &DlqArgs) -> CmdResult {
    check_selector(&args.action)?;
    if args.config.is_some() {
        return Err(usage(
            "--config only picks a local data directory: drop it with --server",
        ));
    }
    match &args.action {
        DlqAction::Stats => {
            let answer = client.dlq_stats().await.map_err(failure)?;
            let stats = answer
                .sinks
                .into_iter()
                .map(sink_stats)
                .collect::<Result<Vec<_>, _>>()?;
            print_stats(cli.json, &stats)
        }
        DlqAction::List {
            filter,
            limit,
            after,
        } => {
            let q = DlqListQuery {
                limit: usize::try_from(*limit).ok(),
                after: after.map(|(s, p)| format!("{s}:{p}")),
                ..list_query(filter)
            };
            let page = client.dlq_list(&q).await.map_err(failure)?;
            let entries: Vec<DlqEntry> = page.entries.into_iter().map(entry).collect();
            print_list(cli.json, &entries, page.next)
        }
        DlqAction::Show { sink, position } => {
            let e = entry(client.dlq_show(sink, *position).await.map_err(failure)?);
            if cli.json {
                output::json_line(&e)?;
            } else {
                print_entry(&e)?;
            }
            Ok(ExitCode::Ok)
        }
        DlqAction::Retry(sel) => {
            let r = client.dlq_retry(&selector(sel)).await.map_err(failure)?;
            print_retried(cli.json, r.retried, r.engine_reloaded)
        }
        DlqAction::Purge(sel) => {
            let r = client.dlq_purge(&selector(sel)).await.map_err(failure)?;
            let files: Vec<PathBuf> = r.files.into_iter().map(PathBuf::from).collect();
            print_purged(cli.json, r.purged, Path::new(&r.archive_dir), &files)
        }
        DlqAction::Export { filter, out } => export(cli, client, filter, out.as_deref()).await,
    }
}

/// The server runs the library's export: the same bytes a local
/// `dlq export` writes, written here as they arrive.
async fn export(cli: &Cli, client: &Client, filter: &FilterArgs, out: Option<&Path>) -> CmdResult {
    let q = list_query(filter);
    let q = DlqExportQuery {
        sink: q.sink,
        reason: q.reason,
        stream: q.stream,
        failed_before_ms: q.failed_before_ms,
    };
    let body = client.dlq_export(&q).await.map_err(failure)?;
    let n = body.iter().filter(|&&b| b == b'\n').count() as u64;
    write_export(cli.json, out, n, move |w| {
        w.write_all(&body)?;
        Ok(n)
    })
    .await
}

/// The list query of the command line's filters (no paging).
fn list_query(f: &FilterArgs) -> DlqListQuery {
    DlqListQuery {
        sink: f.sink.clone(),
        reason: f.reason.map(|r| r.as_str().to_string()),
        stream: f.stream.clone(),
        failed_before_ms: f.failed_before_ms,
        limit: None,
        after: None,
    }
}

/// The selector of `retry`/`purge`'s arguments (checked non-empty before).
fn selector(sel: &SelectArgs) -> DlqSelector {
    if sel.all {
        return DlqSelector {
            all: true,
            ..DlqSelector::default()
        };
    }
    let f = &sel.filter;
    DlqSelector {
        all: false,
        sink: f.sink.clone(),
        reason: f.reason,
        stream: f.stream.clone(),
        failed_before_ms: f.failed_before_ms,
        position: sel.position,
    }
}

/// The library's totals of one sink, from the server's (reasons by name).
fn sink_stats(s: SinkDlqStatsBody) -> Result<SinkDlqStats, Failure> {
    let mut by_reason = Vec::with_capacity(s.by_reason.len());
    for (name, n) in s.by_reason {
        let r = DlqReason::parse(&name)
            .ok_or_else(|| undecodable(format!("unknown DLQ reason {name:?}")))?;
        by_reason.push((r, n));
    }
    Ok(SinkDlqStats {
        sink: s.sink,
        stats: DlqStats {
            entries: s.entries,
            oldest_failure_unix_ms: s.oldest_failure_unix_ms,
            by_reason,
        },
        archived_total: s.archived_total,
    })
}

/// The library's dead letter, from the server's (the same fields).
fn entry(e: DlqEntryBody) -> DlqEntry {
    DlqEntry {
        sink: e.sink,
        row: e.row,
        event: e.event,
    }
}
