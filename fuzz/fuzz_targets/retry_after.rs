//! `Retry-After` parsing and HTTP response classification: any header
//! value gives a delay or `None`, never a panic. Delta-seconds give exactly
//! their value (capped), and every date `httpdate` prints parses back to
//! its distance from now.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use ironclad_core::delivery::classify::{classify_http, Outcome};
use ironclad_core::delivery::retry::{parse_retry_after, RETRY_AFTER_SECONDS_MAX};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let now_unix_ms: u64 = u.arbitrary()?;
    let status: u16 = u.arbitrary()?;
    let date_s = u64::from(u.arbitrary::<u32>()?) * 4; // up to year ~2514
    let header: &str = u.arbitrary()?;

    let parsed = parse_retry_after(header, now_unix_ms);
    let value = header.trim_matches([' ', '\t']);
    if !value.is_empty() && header.len() <= 64 && value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        assert_eq!(parsed, Some(seconds.min(RETRY_AFTER_SECONDS_MAX) * 1000));
    }
    match classify_http(status, Some(header), now_unix_ms) {
        Outcome::Retry { retry_after_ms } => {
            assert!(retry_after_ms.is_none() || retry_after_ms == parsed)
        }
        _ => {}
    }

    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(date_s));
    let expected = (date_s * 1000).saturating_sub(now_unix_ms);
    assert_eq!(
        parse_retry_after(&date, now_unix_ms),
        Some(expected),
        "{date}"
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
