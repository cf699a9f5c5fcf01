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

/// Prints JSON text that is already one value (an event as the server
/// serialized it) as a line on stdout.
pub fn raw_line(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
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

/// A short human duration: `850ms`, `12.3s`, `4m05s`, `2h10m`, `3d04h`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..=86_399_999 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A time in microseconds since the Unix epoch as RFC 3339 in UTC, e.g.
/// `2026-12-03T20:11:50.123456Z` (whole seconds drop the fraction).
pub fn rfc3339_utc_us(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let time = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        sod / 3_600,
        (sod % 3_600) / 60,
        sod % 60
    );
    if micros == 0 {
        format!("{time}Z")
    } else {
        format!("{time}.{micros:06}Z")
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::{age, rfc3339_utc_us};

    #[test]
    fn microsecond_times_print_as_rfc3339_utc() {
        assert_eq!(rfc3339_utc_us(0), "1970-01-01T00:00:00Z");
        // `date -u -d @1796328710` = Thu Dec  3 20:11:50 UTC 2026.
        assert_eq!(
            rfc3339_utc_us(1_796_328_710_123_456),
            "2026-12-03T20:11:50.123456Z"
        );
        // A leap day, and the last microsecond of a century year.
        assert_eq!(rfc3339_utc_us(951_782_400_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339_utc_us(4_102_444_799_999_999),
            "2099-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(850), "850ms");
        assert_eq!(age(12_345), "12.3s");
        assert_eq!(age(245_000), "4m05s");
        assert_eq!(age(7_800_000), "2h10m");
        assert_eq!(age(273_600_000), "3d04h");
    }
}
