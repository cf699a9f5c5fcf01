//! `ironclad ledger verify|head`: check the hash chains, or export the head.

use std::path::Path;

use anyhow::{anyhow, Context};
use clap::Subcommand;
use ironclad::{LedgerHead, LedgerMismatch, LogReader, VerifyError, VerifyOptions};
use ironclad_client::wire::VerifyRequest;
use ironclad_client::Client;

use crate::config_file::usage;
use crate::remote::failure;
use crate::{journal_config, output, Cli, CmdResult, ExitCode, Failure};

/// Ledger actions.
#[derive(Debug, Subcommand)]
pub enum LedgerAction {
    /// Recompute every hash; report the first mismatch and exit 3 if any.
    Verify {
        /// Verify only this stream's chain.
        #[arg(long)]
        stream: Option<String>,
        /// An exported head (`ledger head` output): a file path, or the JSON itself.
        /// Detects a log truncated or rewritten since the head was exported.
        #[arg(long)]
        against: Option<String>,
        /// `--server URL`, `--token T` (`ledger head` is local only).
        #[command(flatten)]
        remote: crate::remote::RemoteArgs,
    },
    /// Print the global head `{position, hash}` as JSON, to store elsewhere.
    Head,
}

pub(crate) fn parse_head(arg: &str) -> anyhow::Result<LedgerHead> {
    let text = if arg.trim_start().starts_with('{') {
        arg.to_string()
    } else {
        std::fs::read_to_string(Path::new(arg))
            .with_context(|| format!("cannot read the exported head file {arg:?}"))?
    };
    serde_json::from_str(text.trim()).with_context(|| {
        format!(
            "--against must be the JSON printed by `ironclad ledger head`, got {:?}",
            text.trim()
        )
    })
}

/// Runs a ledger action.
pub async fn run(cli: &Cli, action: &LedgerAction) -> CmdResult {
    let reader = LogReader::open_sqlite(&journal_config(cli, Default::default()))?;
    match action {
        LedgerAction::Head => {
            match reader.ledger_head()? {
                Some(head) => output::json_line(&head)?,
                // An empty log: position 0 and the all-zero hash, which
                // `verify --against` accepts as a prefix of any log.
                None => output::json_line(&LedgerHead {
                    position: 0,
                    hash: [0u8; 32],
                })?,
            }
            Ok(ExitCode::Ok)
        }
        LedgerAction::Verify {
            stream, against, ..
        } => {
            let opts = VerifyOptions {
                stream: stream.clone(),
                against: against.as_deref().map(parse_head).transpose()?,
            };
            let total = reader.ledger_head()?.map_or(0, |h| h.position);
            let bar = output::progress(total, "verify");
            let result = tokio::task::spawn_blocking(move || {
                reader.verify(&opts, &mut |n| bar.set_position(n))
            })
            .await
            .map_err(anyhow::Error::from)?;
            match result {
                Ok(report) => print_verified(cli.json, report.checked, report.head.as_ref()),
                Err(VerifyError::Mismatch(m)) => print_mismatch(cli.json, &m),
                Err(VerifyError::Usage(msg)) => Err(crate::Failure {
                    code: ExitCode::Usage,
                    error: anyhow::anyhow!(msg),
                }),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Runs `ledger verify` against the server (`--server`); `ledger head` is
/// refused before this (it reads the local data directory).
pub async fn run_remote(cli: &Cli, client: &Client, action: &LedgerAction) -> CmdResult {
    let LedgerAction::Verify {
        stream, against, ..
    } = action
    else {
        return Err(usage("`ledger head` works on a local data directory only"));
    };
    let against = against.as_deref().map(parse_head).transpose()?;
    if stream.is_some() && against.is_some() {
        return Err(usage(
            "--stream and --against cannot be combined: verify the whole log against a head",
        ));
    }
    let req = VerifyRequest {
        stream: stream.clone(),
        against,
    };
    match client.verify_ledger(&req).await {
        Ok(r) => print_verified(cli.json, r.checked, r.head.as_ref()),
        Err(e) if e.code() == Some("ledger_mismatch") => match e.ledger_mismatch() {
            Some(m) => print_mismatch(cli.json, &m),
            None => Err(Failure {
                code: ExitCode::LedgerMismatch,
                error: anyhow!("ledger verification FAILED: {e}"),
            }),
        },
        Err(e) => Err(failure(e)),
    }
}

/// Prints a successful verification (local and remote).
pub(crate) fn print_verified(json: bool, checked: u64, head: Option<&LedgerHead>) -> CmdResult {
    if json {
        output::json_line(&serde_json::json!({"ok": true, "checked": checked, "head": head}))?;
    } else {
        match head {
            Some(h) => println!(
                "ledger verified: {} events, head position {} hash {}",
                checked,
                h.position,
                hex_of(&h.hash)
            ),
            None => println!("ledger verified: {checked} events"),
        }
    }
    Ok(ExitCode::Ok)
}

/// Prints the first mismatch (local and remote); exit 3.
pub(crate) fn print_mismatch(json: bool, m: &LedgerMismatch) -> CmdResult {
    if json {
        output::json_line(&serde_json::json!({"ok": false, "mismatch": m}))?;
    } else {
        eprintln!("ledger verification FAILED: {m}");
    }
    Ok(ExitCode::LedgerMismatch)
}

fn hex_of(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}
