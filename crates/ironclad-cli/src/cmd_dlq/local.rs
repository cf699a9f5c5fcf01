//! The DLQ actions on a local data directory: open the journal (taking
//! its lock), resolve the filters, act through `ironclad::delivery::dlq`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ironclad::delivery::archive::{archive_dir, list_archives};
use ironclad::delivery::dlq;
use ironclad::store::delivery::DlqFilter;
use ironclad::{Journal, OpenError};

use super::print::{
    print_entry, print_list, print_purged, print_retried, print_stats, write_export,
};
use super::{check_selector, DlqAction, DlqArgs, FilterArgs, SelectArgs};
use crate::config_file;
use crate::{output, Cli, CmdResult, ExitCode, Failure};

/// Runs a DLQ action: opens the journal, acts, and always closes it.
pub(crate) async fn run(cli: &Cli, args: &DlqArgs) -> CmdResult {
    check_selector(&args.action)?;
    let file = args.config.as_deref().map(config_file::read).transpose()?;
    let data_dir = config_file::data_dir(cli, file.as_ref());
    let journal = open(&data_dir)?;
    let result = act(cli, &args.action, &journal, &data_dir).await;
    let closed = journal.shutdown(std::time::Duration::from_secs(30)).await;
    let code = result?;
    closed?;
    Ok(code)
}

/// Opens the journal; a missing database is an error rather than a new,
/// empty one, and a lock held by `run` says what to do.
fn open(data_dir: &Path) -> Result<Journal, Failure> {
    let config = config_file::journal_config(data_dir);
    if !config.db_path().exists() {
        return Err(OpenError::NoDatabase {
            data_dir: data_dir.to_path_buf(),
        }
        .into());
    }
    match Journal::open(config) {
        Ok(j) => Ok(j),
        Err(e @ OpenError::Locked { .. }) => Err(Failure {
            code: ExitCode::Locked,
            error: anyhow::Error::from(e).context(
                "dlq commands need the engine stopped (stop `ironclad run` with SIGTERM, then retry)",
            ),
        }),
        Err(e) => Err(e.into()),
    }
}

fn filter_of(journal: &Journal, f: &FilterArgs) -> Result<DlqFilter, Failure> {
    Ok(dlq::filter_for(
        journal,
        f.sink.as_deref(),
        DlqFilter {
            sink_id: None,
            reason: f.reason,
            stream: f.stream.clone(),
            failed_before_unix_ms: f.failed_before_ms,
            position: None,
        },
    )?)
}

/// The selection's filter, narrowed to one entry when `--position` is given
/// (which needs `--sink`; a missing entry is an error, not "0 matched").
fn selection_filter(journal: &Journal, sel: &SelectArgs) -> Result<DlqFilter, Failure> {
    let mut f = filter_of(journal, &sel.filter)?;
    if let (Some(sink), Some(position)) = (&sel.filter.sink, sel.position) {
        dlq::show(journal, sink, position)?;
        f.position = Some(position);
    }
    Ok(f)
}

async fn act(cli: &Cli, action: &DlqAction, journal: &Journal, data_dir: &Path) -> CmdResult {
    match action {
        DlqAction::Stats => stats(cli, journal),
        DlqAction::List {
            filter,
            limit,
            after,
        } => list(cli, journal, filter, *limit as usize, *after),
        DlqAction::Show { sink, position } => {
            let entry = dlq::show(journal, sink, *position)?;
            if cli.json {
                output::json_line(&entry)?;
            } else {
                print_entry(&entry)?;
            }
            Ok(ExitCode::Ok)
        }
        DlqAction::Retry(sel) => retry(cli, journal, sel).await,
        DlqAction::Purge(sel) => purge(cli, journal, sel, data_dir).await,
        DlqAction::Export { filter, out } => export(cli, journal, filter, out.as_deref()).await,
    }
}

fn stats(cli: &Cli, journal: &Journal) -> CmdResult {
    let stats = dlq::stats(journal)?;
    print_stats(cli.json, &stats)
}

fn list(
    cli: &Cli,
    journal: &Journal,
    filter: &FilterArgs,
    limit: usize,
    after: Option<(i64, u64)>,
) -> CmdResult {
    let f = filter_of(journal, filter)?;
    let entries = dlq::list(journal, &f, after, limit)?;
    let next = match entries.last() {
        Some(last) if entries.len() == limit => {
            Some(format!("{}:{}", last.row.sink_id, last.row.position))
        }
        _ => None,
    };
    print_list(cli.json, &entries, next)
}

async fn retry(cli: &Cli, journal: &Journal, sel: &SelectArgs) -> CmdResult {
    let moved = dlq::retry(journal, &selection_filter(journal, sel)?).await?;
    print_retried(cli.json, moved, false)
}

async fn purge(cli: &Cli, journal: &Journal, sel: &SelectArgs, data_dir: &Path) -> CmdResult {
    let before: BTreeSet<PathBuf> = list_archives(data_dir)
        .map_err(anyhow::Error::from)?
        .into_iter()
        .map(|a| a.path)
        .collect();
    let archived = dlq::purge(journal, &selection_filter(journal, sel)?).await?;
    let files: Vec<PathBuf> = list_archives(data_dir)
        .map_err(anyhow::Error::from)?
        .into_iter()
        .map(|a| a.path)
        .filter(|p| !before.contains(p))
        .collect();
    let dir = archive_dir(data_dir);
    print_purged(cli.json, archived, &dir, &files)
}

async fn export(
    cli: &Cli,
    journal: &Journal,
    filter: &FilterArgs,
    out: Option<&Path>,
) -> CmdResult {
    let f = filter_of(journal, filter)?;
    // The bar's length is the matching sinks' DLQ size: exact unless other
    // filters narrow it, then an upper bound corrected at the end.
    let total = match out {
        Some(_) => dlq::stats(journal)?
            .iter()
            .filter(|s| filter.sink.as_deref().is_none_or(|name| s.sink == name))
            .map(|s| s.stats.entries)
            .sum(),
        None => 0,
    };
    let journal = journal.clone();
    write_export(cli.json, out, total, move |w| {
        Ok(dlq::export(&journal, &f, w)?)
    })
    .await
}
