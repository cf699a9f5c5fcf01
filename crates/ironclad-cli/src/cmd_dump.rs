//! `ironclad dump list|replay`: inspect emergency dumps and re-append them
//! idempotently (each replayed dump is archived, never deleted; with
//! `--quarantine-failed`, records that cannot be appended are first set
//! aside durably in a quarantine file, named in the output).

use std::path::PathBuf;

use clap::Subcommand;
use ironclad::emergency::{dump_rejection, list_dumps, DumpInfo};
use ironclad::{Journal, ReplayOptions, ReplayReport};
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
        /// Set aside each record the journal refuses (wrong expected
        /// version, idempotency conflict, invalid) in a quarantine file
        /// next to the dump, fsynced, and go on; lines of the dump that are
        /// not records (a damaged file) are set aside there too, verbatim.
        /// Without it, the replay stops at the first such record (or bad
        /// line) and keeps the dump.
        #[arg(long)]
        quarantine_failed: bool,
    },
}

/// Runs a dump action.
pub async fn run(cli: &Cli, action: &DumpAction) -> CmdResult {
    match action {
        DumpAction::List => {
            let dumps = list_dumps(&cli.data_dir)?;
            print_dumps(cli.json, &dumps, false, &cli.data_dir.display().to_string())?;
            Ok(ExitCode::Ok)
        }
        DumpAction::Replay {
            path,
            all,
            quarantine_failed,
        } => {
            let options = ReplayOptions {
                quarantine_failed: *quarantine_failed,
            };
            let paths = match (path, all) {
                (Some(p), _) => vec![p.clone()],
                (None, _) => list_dumps(&cli.data_dir)?
                    .into_iter()
                    .map(|d| d.path)
                    .collect(),
            };
            if paths.is_empty() && !cli.json {
                println!("no emergency dumps in {}", cli.data_dir.display());
            }
            let journal = Journal::open(journal_config(cli, Default::default()))?;
            let mut outcome = Ok(ExitCode::Ok);
            let mut replayed = Vec::new();
            for p in &paths {
                let bar = output::progress(0, "replay");
                let result = journal
                    .replay_dump_with(p, options, &mut |n| {
                        bar.set_length(bar.length().unwrap_or(0).max(n as u64));
                        bar.set_position(n as u64);
                    })
                    .await;
                bar.finish_and_clear();
                match result {
                    Ok(report) => {
                        print_replay(cli.json, p, &report)?;
                        replayed.push(report);
                    }
                    Err(e) => {
                        outcome = Err(e.into());
                        break;
                    }
                }
            }
            // Even after a failure: the dumps replayed before it were
            // archived, and a script should learn where.
            print_replayed(cli.json, &replayed)?;
            journal.shutdown(std::time::Duration::from_secs(30)).await?;
            outcome
        }
    }
}

/// Prints a dump listing (local and remote): one JSON document
/// `{"dumps":[…],"truncated"}` (`truncated`: the server listed only its
/// first 1,000), or a line per dump; `place` names where the dumps were
/// looked for.
pub(crate) fn print_dumps(
    json: bool,
    dumps: &[DumpInfo],
    truncated: bool,
    place: &str,
) -> anyhow::Result<()> {
    if json {
        let list: Vec<serde_json::Value> = dumps
            .iter()
            .map(|d| {
                // From the file name, so listing never reads a dump.
                let rejected = dump_rejection(&d.path).map(|r| r.as_str());
                serde_json::json!({ "path": d.path, "bytes": d.bytes, "rejected": rejected })
            })
            .collect();
        return output::json_line(&serde_json::json!({ "dumps": list, "truncated": truncated }));
    }
    for d in dumps {
        let rejected = dump_rejection(&d.path).map(|r| r.as_str());
        if let Some(reason) = rejected {
            println!(
                "{}  {} bytes  rejected at submit: {reason} (replay tries again; \
                 --quarantine-failed sets aside what is refused)",
                d.path.display(),
                d.bytes
            );
        } else {
            println!("{}  {} bytes", d.path.display(), d.bytes);
        }
    }
    if dumps.is_empty() {
        println!("no emergency dumps in {place}");
    }
    if truncated {
        println!("(the server lists at most 1000 dumps; replay them to see the rest)");
    }
    Ok(())
}

/// Prints, with `--json`, what a replay did as one document
/// `{"replayed":[report…]}` (empty when there was nothing to replay).
pub(crate) fn print_replayed(json: bool, reports: &[ReplayReport]) -> anyhow::Result<()> {
    if json {
        output::json_line(&serde_json::json!({ "replayed": reports }))?;
    }
    Ok(())
}

/// Prints, without `--json`, what replaying one dump did (local and
/// remote); with it, [`print_replayed`] reports them all at the end.
pub(crate) fn print_replay(
    json: bool,
    path: &std::path::Path,
    report: &ReplayReport,
) -> anyhow::Result<()> {
    if !json {
        println!(
            "{}: {} records, {} events appended, {} already present; archived to {}",
            path.display(),
            report.records,
            report.appended_events,
            report.already_appended_events,
            report.archived_to.display()
        );
        if let Some(q) = &report.quarantined_to {
            println!(
                "{}: {} records or unreadable lines could not be appended and were set aside in {}",
                path.display(),
                report.quarantined,
                q.display()
            );
        }
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
            print_dumps(cli.json, &dumps, truncated, &place)?;
            Ok(ExitCode::Ok)
        }
        DumpAction::Replay {
            path,
            quarantine_failed,
            ..
        } => {
            if *quarantine_failed {
                // The server's replay endpoint stops at a failing record;
                // ignoring the flag would look like it worked.
                return Err(usage(
                    "--quarantine-failed is local only: on the server's host, stop the \
                     server and run `ironclad dump replay --quarantine-failed` against its \
                     --data-dir"
                        .to_string(),
                ));
            }
            let paths = match path {
                Some(p) => vec![p.clone()],
                None => list_remote(client)
                    .await?
                    .0
                    .into_iter()
                    .map(|d| d.path)
                    .collect(),
            };
            if paths.is_empty() && !cli.json {
                println!(
                    "no emergency dumps in the data directory of {}",
                    client.base_url()
                );
            }
            let mut replayed = Vec::new();
            for p in &paths {
                let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                    return Err(usage(format!(
                        "{} is not a dump file name: `ironclad dump list` shows them",
                        p.display()
                    )));
                };
                let r = match client.replay_dump(&name).await {
                    Ok(r) => r,
                    Err(e) => {
                        print_replayed(cli.json, &replayed)?;
                        return Err(failure(e));
                    }
                };
                let report = ReplayReport {
                    records: r.records,
                    appended_events: r.appended_events,
                    already_appended_events: r.already_appended_events,
                    quarantined: 0,
                    quarantined_to: None,
                    archived_to: PathBuf::from(r.archived_to),
                };
                print_replay(cli.json, p, &report)?;
                replayed.push(report);
            }
            print_replayed(cli.json, &replayed)?;
            Ok(ExitCode::Ok)
        }
    }
}
