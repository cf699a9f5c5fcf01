//! How DLQ answers are printed, the same for a local data directory and a
//! server: tables for people, one JSON document with `--json`, and exports
//! written to stdout or atomically to a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use indicatif::ProgressBar;
use ironclad::delivery::dlq::{DlqEntry, SinkDlqStats};
use serde::Serialize;

use crate::{output, CmdResult, ExitCode};

/// Prints DLQ totals per sink (local and remote).
pub(crate) fn print_stats(json: bool, stats: &[SinkDlqStats]) -> CmdResult {
    if json {
        // One document, `{"sinks":[]}` before any sink has run.
        output::json_line(&serde_json::json!({ "sinks": stats }))?;
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

/// Prints one dead letter with its event, pretty (local and remote).
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
