//! Output helpers: JSON lines on stdout, errors on stderr (as JSON with
//! `--json`), and the progress bar style shared by long-running commands.

use std::io::Write;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::ExitCode;

/// Prints one value as a JSON line on stdout.
pub fn json_line<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Prints an error to stderr: plain `error: …` with its causes, or a JSON
/// object `{"error":{"message","exit_code"}}` with `--json`.
pub fn print_error(json: bool, error: &anyhow::Error, code: ExitCode) {
    let message = chain_message(error);
    if json {
        let v = serde_json::json!({
            "error": { "message": message, "exit_code": code as u8 }
        });
        eprintln!("{v}");
    } else {
        eprintln!("error: {message}");
    }
}

/// The error and its causes joined with ": ", skipping a cause whose text the
/// message already contains (many library errors embed their source).
fn chain_message(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// A progress bar on stderr; hidden automatically when stderr is not a terminal.
pub fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style =
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}
