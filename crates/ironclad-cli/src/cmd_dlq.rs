//! `ironclad dlq stats|list|show|retry|purge|export`: inspect and operate on
//! the dead-letter queue of a stopped engine (SPEC §4, §7).
//!
//! Every action opens the journal normally, taking the data-directory lock:
//! while `ironclad run` holds it they fail with "locked by pid N" (exit 5).
//! Removal always archives first (the library writes a fsynced, compressed
//! archive under `<data-dir>/dlq-archive/` before deleting), and `retry`
//! only moves entries back to retrying: the next `ironclad run` sends them.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use ironclad::delivery::archive::{archive_dir, list_archives};
use ironclad::delivery::dlq::{self, DlqEntry, SinkDlqStats, DLQ_PAGE_MAX};
use ironclad::store::delivery::{DlqFilter, DlqReason};
use ironclad::{Journal, OpenError};
use serde::Serialize;

use crate::config_file::{self, usage};
use crate::{output, Cli, CmdResult, ExitCode, Failure};

/// Arguments of `dlq`.
#[derive(Debug, Args)]
#[command(after_help = "\
These commands work on a stopped engine: they take the data-directory lock, \
so while `ironclad run` is running they fail with \"locked by pid N\" \
(exit 5). Stop it (SIGTERM), operate, start it again. With --server URL \
they act on a running `ironclad serve` through its admin API instead (an \
admin token; a remote `export` is built in the server's memory, at most \
256 MiB: narrow a larger one with filters).")]
pub struct DlqArgs {
    /// A configuration file whose top-level `data_dir` to use when
    /// --data-dir is not given (nothing else in it is read).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The DLQ action.
    #[command(subcommand)]
    pub action: DlqAction,
}

/// DLQ actions.
#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Entries per sink: count, oldest failure, count per reason, archived so far.
    Stats,
    /// One page of entries, oldest position first per sink; prints a `next:`
    /// cursor when the page is full.
    List {
        /// Which entries.
        #[command(flatten)]
        filter: FilterArgs,
        /// Most entries on the page (1..=1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=DLQ_PAGE_MAX as u64))]
        limit: u64,
        /// Start after this entry: the `next:` value the previous page printed.
        #[arg(long, value_name = "SINK_ID:POSITION", value_parser = parse_after)]
        after: Option<(i64, u64)>,
    },
    /// One entry, with its full event.
    Show {
        /// The sink's name.
        sink: String,
        /// The event's global position.
        position: u64,
    },
    /// Move entries back to retrying (attempts reset, due at once); the next
    /// `ironclad run` sends them. Needs --all, a filter, or --sink and --position.
    Retry(SelectArgs),
    /// Archive entries to `<data-dir>/dlq-archive/` (fsynced, gzip JSONL), then
    /// delete them. Needs --all, a filter, or --sink and --position.
    Purge(SelectArgs),
    /// Write matching entries (default: all) as JSON lines, with their events,
    /// to stdout or --out.
    Export {
        /// Which entries.
        #[command(flatten)]
        filter: FilterArgs,
        /// Write to this file (replaced atomically when complete) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Filters shared by `list`, `retry`, `purge` and `export`.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only this sink.
    #[arg(long)]
    pub sink: Option<String>,
    /// Only this reason: max_attempts, permanent, conflict or expired.
    #[arg(long, value_parser = parse_reason)]
    pub reason: Option<DlqReason>,
    /// Only entries whose event is in this stream.
    #[arg(long)]
    pub stream: Option<String>,
    /// Only entries whose last failure is at or before this time (ms since the Unix epoch).
    #[arg(long, value_name = "UNIX_MS")]
    pub failed_before_ms: Option<u64>,
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.sink.is_none()
            && self.reason.is_none()
            && self.stream.is_none()
            && self.failed_before_ms.is_none()
    }
}

/// Which entries `retry` and `purge` act on.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Entries matching these filters.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only the entry at this position (with --sink).
    #[arg(long, requires = "sink", conflicts_with_all = ["reason", "stream", "failed_before_ms", "all"])]
    pub position: Option<u64>,
    /// Every entry of every sink.
    #[arg(long, conflicts_with_all = ["sink", "reason", "stream", "failed_before_ms"])]
    pub all: bool,
}

fn parse_reason(s: &str) -> Result<DlqReason, String> {
    DlqReason::parse(s).ok_or_else(|| {
        format!("unknown reason {s:?}: use max_attempts, permanent, conflict or expired")
    })
}

fn parse_after(s: &str) -> Result<(i64, u64), String> {
    let bad =
        || format!("{s:?} is not SINK_ID:POSITION (copy the `next:` value of the previous page)");
    let (sink, position) = s.split_once(':').ok_or_else(bad)?;
    Ok((
        sink.trim().parse().map_err(|_| bad())?,
        position.trim().parse().map_err(|_| bad())?,
    ))
}

/// Runs a DLQ action: opens the journal, acts, and always closes it.
pub async fn run(cli: &Cli, args: &DlqArgs) -> CmdResult {
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

/// Refuses a bare `retry`/`purge` (local and remote).
pub(crate) fn check_selector(action: &DlqAction) -> Result<(), Failure> {
    if let DlqAction::Retry(sel) | DlqAction::Purge(sel) = action {
        if !sel.all && sel.position.is_none() && sel.filter.is_empty() {
            let verb = match action {
                DlqAction::Retry(_) => "retry",
                _ => "purge",
            };
            return Err(usage(format!(
                "`dlq {verb}` needs a selector: pass --all for every entry, or narrow it with \
                 --sink, --reason, --stream, --failed-before-ms, or --sink S --position P"
            )));
        }
    }
    Ok(())
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

/// Prints DLQ totals per sink (local and remote).
pub(crate) fn print_stats(json: bool, stats: &[SinkDlqStats]) -> CmdResult {
    if json {
        for s in stats {
            output::json_line(s)?;
        }
        return Ok(ExitCode::Ok);
    }
    if stats.is_empty() {
        println!("no sinks have run on this data directory yet");
        return Ok(ExitCode::Ok);
    }
    let now = output::now_unix_ms();
    println!(
        "{:<20} {:>9} {:>14} {:>9}  BY REASON",
        "SINK", "ENTRIES", "OLDEST FAILURE", "ARCHIVED"
    );
    for s in stats {
        let by_reason: Vec<String> = s
            .stats
            .by_reason
            .iter()
            .map(|(r, n)| format!("{}={n}", r.as_str()))
            .collect();
        println!(
            "{:<20} {:>9} {:>14} {:>9}  {}",
            s.sink,
            s.stats.entries,
            s.stats.oldest_failure_unix_ms.map_or_else(
                || "-".into(),
                |t| format!("{} ago", output::age(now.saturating_sub(t)))
            ),
            s.archived_total,
            if by_reason.is_empty() {
                "-".to_string()
            } else {
                by_reason.join(" ")
            }
        );
    }
    Ok(ExitCode::Ok)
}

/// `dlq list --json` output: one page and the cursor of the next.
#[derive(Serialize)]
struct Page<'a> {
    entries: &'a [DlqEntry],
    /// `SINK_ID:POSITION` to pass as `--after`, when the page is full.
    next: Option<String>,
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

/// Prints one page of dead letters and its `next` cursor (local and remote).
pub(crate) fn print_list(json: bool, entries: &[DlqEntry], next: Option<String>) -> CmdResult {
    if json {
        output::json_line(&Page { entries, next })?;
        return Ok(ExitCode::Ok);
    }
    if entries.is_empty() {
        println!("no dead letters match");
        return Ok(ExitCode::Ok);
    }
    let now = output::now_unix_ms();
    println!(
        "{:<16} {:>10} {:<24} {:<20} {:<12} {:>8} {:>12}  LAST ERROR",
        "SINK", "POSITION", "STREAM", "TYPE", "REASON", "ATTEMPTS", "LAST FAILED"
    );
    for e in entries {
        let (stream, ty) = e.event.as_ref().map_or(("?", "?"), |ev| {
            (ev.stream.as_str(), ev.event_type.as_str())
        });
        println!(
            "{:<16} {:>10} {:<24} {:<20} {:<12} {:>8} {:>12}  {}",
            e.sink,
            e.row.position,
            stream,
            ty,
            e.row.reason.as_str(),
            e.row.attempts,
            format!(
                "{} ago",
                output::age(now.saturating_sub(e.row.last_failure_unix_ms))
            ),
            e.row.last_error
        );
    }
    if let Some(next) = next {
        println!("next: {next}   (ironclad dlq list --after {next} …)");
    }
    Ok(ExitCode::Ok)
}

pub(crate) fn print_entry(e: &DlqEntry) -> anyhow::Result<()> {
    let now = output::now_unix_ms();
    let when = |t: u64| format!("{t} ({} ago)", output::age(now.saturating_sub(t)));
    println!("sink:           {}", e.sink);
    println!("position:       {}", e.row.position);
    println!("event id:       {}", e.row.event_id);
    println!("reason:         {}", e.row.reason.as_str());
    println!("attempts:       {}", e.row.attempts);
    println!("first failure:  {}", when(e.row.first_failure_unix_ms));
    println!("last failure:   {}", when(e.row.last_failure_unix_ms));
    println!("last error:     {}", e.row.last_error);
    println!("lane:           {}", e.row.lane);
    match &e.event {
        Some(ev) => {
            println!("stream:         {} (version {})", ev.stream, ev.version);
            println!("type:           {}", ev.event_type);
            println!("event:");
            println!("{}", serde_json::to_string_pretty(ev)?);
        }
        None => println!(
            "event:          missing from the store (damaged?); run `ironclad ledger verify`"
        ),
    }
    Ok(())
}

async fn retry(cli: &Cli, journal: &Journal, sel: &SelectArgs) -> CmdResult {
    let moved = dlq::retry(journal, &selection_filter(journal, sel)?).await?;
    print_retried(cli.json, moved, false)
}

/// Prints what `retry` moved (local and remote). `engine_reloaded`: a
/// server's running engine picked them up at once.
pub(crate) fn print_retried(json: bool, moved: u64, engine_reloaded: bool) -> CmdResult {
    if json {
        output::json_line(&serde_json::json!({ "retried": moved }))?;
    } else if moved == 0 {
        println!("no dead letters matched; nothing moved");
    } else if engine_reloaded {
        println!(
            "moved {moved} dead letters back to retrying (attempts reset); the server's \
             delivery engine sends them now"
        );
    } else {
        println!(
            "moved {moved} dead letters back to retrying (attempts reset); the next \
             `ironclad run` sends them, and `ironclad status` counts them as retry rows"
        );
    }
    Ok(ExitCode::Ok)
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

/// Prints what `purge` archived (local and remote).
pub(crate) fn print_purged(json: bool, archived: u64, dir: &Path, files: &[PathBuf]) -> CmdResult {
    if json {
        output::json_line(&serde_json::json!({
            "archived": archived, "archive_dir": dir, "files": files
        }))?;
    } else if archived == 0 {
        println!("no dead letters matched; nothing archived");
    } else {
        println!(
            "archived {archived} dead letters to {} and removed them from the DLQ",
            dir.display()
        );
        for f in files {
            println!("  {}", f.display());
        }
    }
    Ok(ExitCode::Ok)
}

/// Writes the export to `target` with the library's durable write (a
/// temporary file, fsynced, renamed over `target`, the directory fsynced),
/// counting lines on `bar`. Blocking.
fn write_export_file<F>(target: &Path, bar: ProgressBar, produce: F) -> anyhow::Result<u64>
where
    F: FnOnce(&mut dyn Write) -> anyhow::Result<u64>,
{
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // The helper would create a missing directory; a mistyped `--out`
    // should fail instead, as it always has.
    if !dir.is_dir() {
        return Err(anyhow!(
            "cannot create a file in {}: no such directory; create it or fix --out",
            dir.display()
        ));
    }
    let name = target
        .file_name()
        .ok_or_else(|| anyhow!("--out {} does not name a file", target.display()))?;
    ironclad::durable::write_atomic(dir, name, |w| {
        // Dead letters carry event payloads: owner-only, as the export
        // has always been written.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            w.get_ref()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| anyhow!("cannot make the export in {} private: {e}", dir.display()))?;
        }
        let mut counting = Counting { inner: w, bar };
        produce(&mut counting)
    })
}

/// Counts lines written through it on a progress bar.
struct Counting<W> {
    inner: W,
    bar: ProgressBar,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
        if lines > 0 {
            self.bar.inc(lines as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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

/// Writes an export (`produce` writes the JSON lines and returns how many)
/// to stdout, or to `out` (replaced atomically when complete, with a
/// progress bar of `total` lines), then reports it (local and remote).
pub(crate) async fn write_export<F>(
    json: bool,
    out: Option<&Path>,
    total: u64,
    produce: F,
) -> CmdResult
where
    F: FnOnce(&mut dyn Write) -> anyhow::Result<u64> + Send + 'static,
{
    let Some(out) = out else {
        let n = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            let n = produce(&mut w)?;
            w.flush()?;
            Ok(n)
        })
        .await
        .map_err(anyhow::Error::from)??;
        if json {
            eprintln!("{}", serde_json::json!({ "exported": n }));
        } else {
            eprintln!("exported {n} dead letters");
        }
        return Ok(ExitCode::Ok);
    };
    let bar = output::progress(total, "export");
    let counting_bar = bar.clone();
    let target = out.to_path_buf();
    let n = tokio::task::spawn_blocking(move || write_export_file(&target, counting_bar, produce))
        .await
        .map_err(anyhow::Error::from)??;
    bar.finish_and_clear();
    if json {
        output::json_line(&serde_json::json!({ "exported": n, "out": out }))?;
    } else {
        println!("exported {n} dead letters to {}", out.display());
    }
    Ok(ExitCode::Ok)
}
