//! `--server URL [--token T]`: what every command's remote side shares,
//! the connection and the mapping of server errors onto exit codes.
//! `main.rs` dispatches; each command's remote side lives with the command (`cmd_append`, `cmd_read`,
//! `cmd_tail`, `cmd_status`, `cmd_dlq`, `cmd_dump`, `cmd_ledger`): it
//! fetches the typed answer through [`ironclad_client::Client`] and hands
//! it to the same printing functions the local command uses, so the output
//! (human and `--json`) is the same.
//!
//! Server errors map onto the CLI's exit codes ([`failure`]):
//! `unauthorized`/`forbidden` → 1 with what to do about the token,
//! `invalid_request`/`invalid_json` and other request errors → 2,
//! `ledger_mismatch` → 3 (from `ledger verify`), anything else → 1.

use anyhow::anyhow;
use clap::Args;
use ironclad::READ_LIMIT_MAX;
use ironclad_client::{Client, ClientError};

use crate::config_file::usage;
use crate::{Cli, ExitCode, Failure};

/// Page size of reads and listings: the server's default `read_limit_max`
/// (a lower server limit is learnt from its `invalid_request` answer, see
/// [`smaller_limit`]).
pub(crate) const PAGE_MAX: usize = if READ_LIMIT_MAX < 1_000 {
    READ_LIMIT_MAX
} else {
    1_000
};

/// `--server URL` and `--token T` after the command name, on the commands
/// that can work against a server only (so the others neither list nor
/// accept them). Given here they win over the same options before the
/// command name; the environment variables are read there, once.
#[derive(Debug, Args, Clone, Default)]
pub struct RemoteArgs {
    /// Work against a running `ironclad serve` (e.g. http://127.0.0.1:7070)
    /// instead of a local data directory (or $IRONCLAD_SERVER); the output
    /// is the same.
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token for --server (or $IRONCLAD_TOKEN, which keeps it out
    /// of the process list).
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// The client for `--server URL` (and `--token`), or a usage error for a
/// URL that is not `http(s)://HOST:PORT`.
pub(crate) fn connect(cli: &Cli) -> Result<Client, Failure> {
    let base = cli.server.as_deref().unwrap_or_default();
    Client::new(base, cli.token.clone()).map_err(usage)
}

/// Maps a client error to the CLI's failure and exit code.
pub fn failure(e: ClientError) -> Failure {
    let (code, error) = match &e {
        ClientError::BadUrl(_) => (ExitCode::Usage, anyhow!(e)),
        ClientError::Api { code, message, .. } => match code.as_str() {
            "unauthorized" => (
                ExitCode::Failed,
                anyhow!(
                    "the server refused the request (unauthorized): {message}; pass a valid \
                     token with --token or IRONCLAD_TOKEN"
                ),
            ),
            "forbidden" => (
                ExitCode::Failed,
                anyhow!(
                    "the server refused the request (forbidden): {message}; this command needs \
                     a token with another role (admin for status, dlq, dump and ledger; \
                     producer for append; consumer for tail)"
                ),
            ),
            "invalid_request" | "invalid_json" | "too_many_events" | "json_too_deep"
            | "body_too_large" => (ExitCode::Usage, anyhow!(e)),
            "ledger_mismatch" => (ExitCode::LedgerMismatch, anyhow!(e)),
            _ => (ExitCode::Failed, anyhow!(e)),
        },
        ClientError::Transport(_) | ClientError::Decode(_) => (ExitCode::Failed, anyhow!(e)),
    };
    Failure { code, error }
}

/// A failure for an answer the CLI cannot use (a server of another version).
pub(crate) fn undecodable(what: impl std::fmt::Display) -> Failure {
    failure(ClientError::Decode(format!(
        "{what}: is the server the same version as this CLI?"
    )))
}

/// The smaller page size a server asks for in an `invalid_request` answer
/// about `limit`, if that is what it says.
pub(crate) fn smaller_limit(e: &ClientError, cap: usize) -> Option<usize> {
    match e {
        ClientError::Api { code, details, .. } if code == "invalid_request" => details["max"]
            .as_u64()
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX).max(1))
            .filter(|m| *m < cap),
        _ => None,
    }
}
