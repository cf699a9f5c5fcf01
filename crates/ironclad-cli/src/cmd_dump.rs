//! `ironclad dump list|replay`: inspect emergency dumps and re-append them
//! idempotently (each replayed dump is archived, never deleted).

use clap::Subcommand;
use ironclad::emergency::{list_dumps, DumpInfo};
use ironclad::{Journal, ReplayReport};

use crate::{journal_config, output, Cli, CmdResult, ExitCode};

/// Dump actions.
#[derive(Debug, Subcommand)]
pub enum DumpAction {
    /// List dumps waiting in `<data-dir>/emergency/`, oldest first.
    List,
    /// Replay dumps: one file, or every listed dump with `--all`.
    Replay {
        /// The dump file to replay.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        path: Option<std::path::PathBuf>,
        /// Replay every listed dump, oldest first.
        #[arg(long)]
        all: bool,
    },
}

/// Runs a dump action.
pub async fn run(cli: &Cli, action: &DumpAction) -> CmdResult {
    match action {
        DumpAction::List => {
            let dumps = list_dumps(&cli.data_dir)?;
            print_dumps(cli.json, &dumps, &cli.data_dir.display().to_string())?;
            Ok(ExitCode::Ok)
        }
        DumpAction::Replay { path, all } => {
            let paths = match (path, all) {
                (Some(p), _) => vec![p.clone()],
                (None, _) => list_dumps(&cli.data_dir)?
                    .into_iter()
                    .map(|d| d.path)
                    .collect(),
            };
            let journal = Journal::open(journal_config(cli, Default::default()))?;
            let mut outcome = Ok(ExitCode::Ok);
            for p in &paths {
                let bar = output::progress(0, "replay");
                let result = journal
                    .replay_dump(p, &mut |n| {
                        bar.set_length(bar.length().unwrap_or(0).max(n as u64));
                        bar.set_position(n as u64);
                    })
                    .await;
                bar.finish_and_clear();
                match result {
                    Ok(report) => print_replay(cli.json, p, &report)?,
                    Err(e) => {
                        outcome = Err(e.into());
                        break;
                    }
                }
            }
            journal.shutdown(std::time::Duration::from_secs(30)).await?;
            outcome
        }
    }
}

/// Prints a dump listing (local and remote); `place` names where the
/// dumps were looked for.
pub(crate) fn print_dumps(json: bool, dumps: &[DumpInfo], place: &str) -> anyhow::Result<()> {
    for d in dumps {
        if json {
            output::json_line(d)?;
        } else {
            println!("{}  {} bytes", d.path.display(), d.bytes);
        }
    }
    if !json && dumps.is_empty() {
        println!("no emergency dumps in {place}");
    }
    Ok(())
}

/// Prints what replaying one dump did (local and remote).
pub(crate) fn print_replay(
    json: bool,
    path: &std::path::Path,
    report: &ReplayReport,
) -> anyhow::Result<()> {
    if json {
        output::json_line(report)?;
    } else {
        println!(
            "{}: {} records, {} events appended, {} already present; archived to {}",
            path.display(),
            report.records,
            report.appended_events,
            report.already_appended_events,
            report.archived_to.display()
        );
    }
    Ok(())
}
