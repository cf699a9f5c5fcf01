//! `ironclad dump list|replay`: inspect emergency dumps and re-append them
//! idempotently (each replayed dump is archived, never deleted).

use std::path::PathBuf;

use clap::Subcommand;
use ironclad::emergency::{list_dumps, DumpInfo};
use ironclad::{Journal, ReplayReport};
use ironclad_client::Client;

use crate::config_file::usage;
use crate::remote::failure;
use crate::{journal_config, output, Cli, CmdResult, ExitCode, Failure};

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

/// The server's dumps (`GET /v1/admin/dumps`), and whether it listed
/// them all.
async fn list_remote(client: &Client) -> Result<(Vec<DumpInfo>, bool), Failure> {
    let answer = client.dumps().await.map_err(failure)?;
    let dumps = answer
        .dumps
        .into_iter()
        .map(|d| DumpInfo {
            path: PathBuf::from(d.path),
            bytes: d.bytes,
        })
        .collect();
    Ok((dumps, answer.truncated))
}

/// Runs a dump action against the server (`--server`): the dumps in the
/// server's data directory, replayed by name into its running journal.
pub async fn run_remote(cli: &Cli, client: &Client, action: &DumpAction) -> CmdResult {
    match action {
        DumpAction::List => {
            let (dumps, truncated) = list_remote(client).await?;
            let place = format!("the data directory of {}", client.base_url());
            print_dumps(cli.json, &dumps, &place)?;
            if truncated {
                eprintln!("note: the server lists at most 1000 dumps; replay them to see the rest");
            }
            Ok(ExitCode::Ok)
        }
        DumpAction::Replay { path, .. } => {
            let paths = match path {
                Some(p) => vec![p.clone()],
                None => list_remote(client)
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
                let r = client.replay_dump(&name).await.map_err(failure)?;
                let report = ReplayReport {
                    records: r.records,
                    appended_events: r.appended_events,
                    already_appended_events: r.already_appended_events,
                    archived_to: PathBuf::from(r.archived_to),
                };
                print_replay(cli.json, p, &report)?;
            }
            Ok(ExitCode::Ok)
        }
    }
}
