//! `ironclad ledger verify|head`: check the hash chains, or export the head.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use ironclad::{LedgerHead, LedgerMismatch, LogReader, VerifyError, VerifyOptions};

use crate::{journal_config, output, Cli, CmdResult, ExitCode};

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
        LedgerAction::Verify { stream, against } => {
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
