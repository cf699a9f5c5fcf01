//! The `Ironclad-Signature` header of the HTTP webhook sink (SPEC §4: "an
//! HMAC-SHA256 signature header with a timestamp"): signing a request body
//! and verifying a received one. `docs/webhook-signature.md` is the contract
//! for receivers in other languages; this file implements it.
//!
//! ```text
//! Ironclad-Signature: t=1700000000,v1=<64 lowercase hex>[,v1=<64 lowercase hex>]…
//! ```
//!
//! Each `v1` is `HMAC-SHA256(secret, "<t>.<raw body bytes>")`, one per active
//! secret, so that a secret can be rotated without a flag day: the sender
//! signs with every active secret and a receiver accepts the request if any
//! signature matches any secret it holds.
//!
//! Secrets are checked once, when a [`SigningKey`] is built (16 to 1024
//! bytes), so [`sign`] and [`verify`] never see a weak one. Both functions
//! are pure: the time is an argument. Signatures are compared in constant
//! time (the `hmac` crate's `verify_slice`). Nothing here panics on any
//! input, and every input is bounded: the header's length, the number of
//! signatures in it and the number of keys.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// The HTTP header's name.
pub const HEADER_NAME: &str = "Ironclad-Signature";
/// Longest header value [`verify`] parses, in bytes (8 KiB). A header [`sign`]
/// makes is at most 1,110 bytes (20 timestamp digits and 16 signatures).
pub const HEADER_BYTES_MAX: usize = 8 * 1024;
/// Most `v1` signatures in one header, and so most keys [`sign`] signs with.
pub const SIGNATURES_MAX: usize = 16;
/// Most keys [`verify`] tries. Each costs one HMAC over the body.
pub const KEYS_MAX: usize = 16;
/// Shortest secret a [`SigningKey`] accepts, in bytes (128 bits).
pub const SECRET_BYTES_MIN: usize = 16;
/// Longest secret a [`SigningKey`] accepts, in bytes.
pub const SECRET_BYTES_MAX: usize = 1024;
/// Longest name of an element [`verify`] skips (a future scheme such as
/// `v2`), in bytes.
pub const EXTENSION_NAME_BYTES_MAX: usize = 32;
/// The tolerance receivers should use unless they have a reason not to, in
/// seconds: 5 minutes either side of the receiver's clock.
pub const TOLERANCE_S_DEFAULT: u64 = 300;

/// Length of one `v1` value: hex of a 32-byte HMAC-SHA256.
const SIGNATURE_HEX_LEN: usize = 64;
/// Most digits of a `t` value: `u64::MAX` has 20.
const TIMESTAMP_DIGITS_MAX: usize = 20;

// The largest header `sign` can produce must parse.
const _: () = assert!(
    "t=".len() + TIMESTAMP_DIGITS_MAX + SIGNATURES_MAX * (",v1=".len() + SIGNATURE_HEX_LEN)
        <= HEADER_BYTES_MAX
);

/// One shared secret, checked and ready to sign or verify with.
///
/// It holds the HMAC state keyed with the secret, not the secret itself.
/// Its `Debug` output shows nothing of the secret.
#[derive(Clone)]
pub struct SigningKey {
    mac: HmacSha256,
}

/// Why a secret was refused as a [`SigningKey`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The secret is too short to resist guessing.
    #[error("webhook secret is {len_bytes} bytes, fewer than the minimum of {min_bytes}: use at least {min_bytes} random bytes")]
    TooShort {
        /// The secret's length.
        len_bytes: usize,
        /// [`SECRET_BYTES_MIN`].
        min_bytes: usize,
    },
    /// The secret is longer than any sensible secret.
    #[error("webhook secret is {len_bytes} bytes, more than the limit of {max_bytes}")]
    TooLong {
        /// The secret's length.
        len_bytes: usize,
        /// [`SECRET_BYTES_MAX`].
        max_bytes: usize,
    },
    /// The HMAC implementation refused the key. HMAC accepts keys of any
    /// length, so this does not happen with the `hmac` crate in use; it is
    /// here so that a future implementation cannot make this code panic.
    #[error("the HMAC implementation refused a {len_bytes}-byte webhook secret")]
    Refused {
        /// The secret's length.
        len_bytes: usize,
    },
}

impl SigningKey {
    /// Checks a secret's length ([`SECRET_BYTES_MIN`]..=[`SECRET_BYTES_MAX`])
    /// and keys HMAC-SHA256 with it. The secret is used as these exact
    /// bytes: a secret configured as text is its UTF-8 bytes, not decoded
    /// from hex or base64.
    pub fn new(secret: &[u8]) -> Result<Self, KeyError> {
        let len_bytes = secret.len();
        if len_bytes < SECRET_BYTES_MIN {
            return Err(KeyError::TooShort {
                len_bytes,
                min_bytes: SECRET_BYTES_MIN,
            });
        }
        if len_bytes > SECRET_BYTES_MAX {
            return Err(KeyError::TooLong {
                len_bytes,
                max_bytes: SECRET_BYTES_MAX,
            });
        }
        let mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
            .map_err(|_| KeyError::Refused { len_bytes })?;
        Ok(SigningKey { mac })
    }

    /// The MAC state after `"<t>.<body>"`, ready to finalize or verify.
    fn mac_over(&self, timestamp_digits: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(timestamp_digits.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey { .. }")
    }
}

/// Why [`sign`] made no header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignError {
    /// No key to sign with: a header without a signature would be refused
    /// by every receiver.
    #[error("no webhook secret to sign with: configure at least one")]
    NoKeys,
    /// More keys than a header may carry signatures.
    #[error(
        "{count} webhook secrets, more than the limit of {max} active at once: retire the old ones"
    )]
    TooManyKeys {
        /// How many keys were given.
        count: usize,
        /// [`SIGNATURES_MAX`].
        max: usize,
    },
}

/// Builds the `Ironclad-Signature` header value for `body` sent at
/// `timestamp_s` (Unix seconds): `t=<timestamp_s>,v1=<hex>` with one `v1`
/// per key, in the order given: by convention the newest key first. Each
/// key is validated when built ([`SigningKey::new`]), so only the number of
/// keys can fail here.
pub fn sign(keys: &[SigningKey], timestamp_s: u64, body: &[u8]) -> Result<String, SignError> {
    if keys.is_empty() {
        return Err(SignError::NoKeys);
    }
    if keys.len() > SIGNATURES_MAX {
        return Err(SignError::TooManyKeys {
            count: keys.len(),
            max: SIGNATURES_MAX,
        });
    }
    let digits = timestamp_s.to_string();
    let mut header = String::with_capacity(2 + digits.len() + keys.len() * (4 + SIGNATURE_HEX_LEN));
    header.push_str("t=");
    header.push_str(&digits);
    for key in keys {
        let tag = key.mac_over(&digits, body).finalize().into_bytes();
        header.push_str(",v1=");
        header.push_str(&hex::encode(tag));
    }
    Ok(header)
}

/// A header that [`verify`] accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The signed timestamp, in Unix seconds. A receiver that keeps a replay
    /// cache keeps entries at least until this plus the tolerance.
    pub timestamp_s: u64,
    /// Which of the keys given to [`verify`] matched (its index). During a
    /// rotation this shows when senders have stopped using the old secret.
    pub key_index: usize,
}

/// Why [`verify`] refused a request. The variants from `HeaderEmpty` to
/// `TooManySignatures` are a malformed header ([`VerifyError::is_malformed`]);
/// `index` counts the header's comma-separated elements from 0.
///
/// None of these says who sent the request: only `Ok` authenticates it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// The receiver holds no key, so nothing could ever verify.
    #[error("no webhook secret to verify with: configure at least one")]
    NoKeys,
    /// The receiver holds more keys than it may try.
    #[error(
        "{count} webhook secrets to verify with, more than the limit of {max}: retire the old ones"
    )]
    TooManyKeys {
        /// How many keys were given.
        count: usize,
        /// [`KEYS_MAX`].
        max: usize,
    },
    /// The header is longer than [`HEADER_BYTES_MAX`]; it was not parsed.
    #[error("Ironclad-Signature header is {len_bytes} bytes, more than the limit of {max_bytes}")]
    HeaderTooLong {
        /// The header's length.
        len_bytes: usize,
        /// [`HEADER_BYTES_MAX`].
        max_bytes: usize,
    },
    /// The header is empty or only whitespace.
    #[error("Ironclad-Signature header is empty")]
    HeaderEmpty,
    /// An element is empty: two commas in a row, or one at either end.
    #[error("Ironclad-Signature header: element {index} is empty (stray comma)")]
    EmptyElement {
        /// The element's position.
        index: usize,
    },
    /// An element is not `name=value`.
    #[error("Ironclad-Signature header: element {index} has no '=': expected name=value")]
    MissingEquals {
        /// The element's position.
        index: usize,
    },
    /// An element's name is not 1 to [`EXTENSION_NAME_BYTES_MAX`] lowercase
    /// ASCII letters and digits (names are case-sensitive: `T` is not `t`).
    #[error("Ironclad-Signature header: element {index} has an invalid name: expected t, v1, or another lowercase name")]
    BadName {
        /// The element's position.
        index: usize,
    },
    /// An element with a name other than `t` or `v1` (which is skipped) has
    /// a value with a character outside visible ASCII.
    #[error("Ironclad-Signature header: element {index} has a value with a space, control or non-ASCII character")]
    BadExtensionValue {
        /// The element's position.
        index: usize,
    },
    /// The `t` value is not a decimal Unix time in seconds: 1 to 20 digits,
    /// no sign, no leading zero, at most `u64::MAX`.
    #[error("Ironclad-Signature header: element {index}: t is not a decimal Unix time in seconds (digits only, no leading zero)")]
    BadTimestamp {
        /// The element's position.
        index: usize,
    },
    /// `t` appears more than once.
    #[error("Ironclad-Signature header: element {index} repeats t: exactly one is allowed")]
    DuplicateTimestamp {
        /// The position of the second `t`.
        index: usize,
    },
    /// There is no `t`.
    #[error("Ironclad-Signature header has no t=<unix seconds>")]
    MissingTimestamp,
    /// A `v1` value is not 64 lowercase hex digits.
    #[error("Ironclad-Signature header: element {index}: v1 is not 64 lowercase hex digits")]
    BadSignature {
        /// The element's position.
        index: usize,
    },
    /// There is no `v1`.
    #[error("Ironclad-Signature header has no v1=<signature>")]
    MissingSignature,
    /// More than [`SIGNATURES_MAX`] `v1` elements.
    #[error("Ironclad-Signature header has {count} v1 signatures, more than the limit of {max}")]
    TooManySignatures {
        /// How many there are.
        count: usize,
        /// [`SIGNATURES_MAX`].
        max: usize,
    },
    /// The signed time is too far from the receiver's clock, in either
    /// direction: a replay, a request held up too long, or clock skew.
    #[error("Ironclad-Signature timestamp {timestamp_s} is more than {tolerance_s} s away from now ({now_s}): replayed, delayed, or a clock is wrong")]
    TimestampOutsideTolerance {
        /// The header's `t`.
        timestamp_s: u64,
        /// The receiver's clock.
        now_s: u64,
        /// The tolerance it was checked with.
        tolerance_s: u64,
    },
    /// The header is well formed and fresh, but no signature matches any
    /// key: a wrong secret, or a body or timestamp changed in transit.
    #[error("no Ironclad-Signature v1 signature matches the body with any configured secret")]
    NoMatch,
}

impl VerifyError {
    /// Whether the header itself is malformed (or too long), as opposed to
    /// the receiver's keys being misconfigured, the timestamp being stale or
    /// the signature not matching.
    pub fn is_malformed(&self) -> bool {
        !matches!(
            self,
            VerifyError::NoKeys
                | VerifyError::TooManyKeys { .. }
                | VerifyError::TimestampOutsideTolerance { .. }
                | VerifyError::NoMatch
        )
    }
}

/// A parsed header: the timestamp (its digits as sent, and its value) and
/// the decoded signatures.
struct Parsed<'a> {
    timestamp_digits: &'a str,
    timestamp_s: u64,
    signatures: Vec<[u8; 32]>,
}

/// Checks `header` (an `Ironclad-Signature` value) against `body`, with the
/// receiver's clock at `now_s` (Unix seconds) and `tolerance_s` allowed
/// either side of it (see [`TOLERANCE_S_DEFAULT`]; 0 demands the exact
/// second).
///
/// The checks run in this order, and the first failure is returned: the
/// keys (1 to [`KEYS_MAX`]), the header's length and syntax, the timestamp's
/// distance from `now_s` (at most `tolerance_s` passes), then the
/// signatures. `Ok` says which key matched. Elements with other names (for
/// example a future `v2`) are skipped, so that a sender can add a scheme
/// before receivers know it.
///
/// A fresh, valid request can still be a replay within the tolerance window:
/// receivers deduplicate on the events' idempotency keys, or keep a cache of
/// seen signatures until `timestamp_s + tolerance_s`.
pub fn verify(
    header: &str,
    keys: &[SigningKey],
    body: &[u8],
    now_s: u64,
    tolerance_s: u64,
) -> Result<Verified, VerifyError> {
    if keys.is_empty() {
        return Err(VerifyError::NoKeys);
    }
    if keys.len() > KEYS_MAX {
        return Err(VerifyError::TooManyKeys {
            count: keys.len(),
            max: KEYS_MAX,
        });
    }
    let parsed = parse(header)?;
    if parsed.timestamp_s.abs_diff(now_s) > tolerance_s {
        return Err(VerifyError::TimestampOutsideTolerance {
            timestamp_s: parsed.timestamp_s,
            now_s,
            tolerance_s,
        });
    }
    for (key_index, key) in keys.iter().enumerate() {
        // One pass over the body per key; each signature then costs only
        // the finalization of a copy of the state.
        let mac = key.mac_over(parsed.timestamp_digits, body);
        for signature in &parsed.signatures {
            if mac.clone().verify_slice(signature).is_ok() {
                return Ok(Verified {
                    timestamp_s: parsed.timestamp_s,
                    key_index,
                });
            }
        }
    }
    Err(VerifyError::NoMatch)
}

/// Parses a header value per the grammar in `docs/webhook-signature.md`.
fn parse(header: &str) -> Result<Parsed<'_>, VerifyError> {
    if header.len() > HEADER_BYTES_MAX {
        return Err(VerifyError::HeaderTooLong {
            len_bytes: header.len(),
            max_bytes: HEADER_BYTES_MAX,
        });
    }
    // HTTP strips optional whitespace around a field value; a caller that
    // hands us the raw line may not have.
    let header = header.trim_matches([' ', '\t']);
    if header.is_empty() {
        return Err(VerifyError::HeaderEmpty);
    }
    let mut timestamp: Option<(&str, u64)> = None;
    let mut signatures = Vec::new();
    let mut signature_count = 0usize;
    for (index, element) in header.split(',').enumerate() {
        if element.is_empty() {
            return Err(VerifyError::EmptyElement { index });
        }
        let Some((name, value)) = element.split_once('=') else {
            return Err(VerifyError::MissingEquals { index });
        };
        match name {
            "t" => {
                if timestamp.is_some() {
                    return Err(VerifyError::DuplicateTimestamp { index });
                }
                let value_s = parse_timestamp(value).ok_or(VerifyError::BadTimestamp { index })?;
                timestamp = Some((value, value_s));
            }
            "v1" => {
                let tag = parse_signature(value).ok_or(VerifyError::BadSignature { index })?;
                signature_count += 1;
                if signatures.len() < SIGNATURES_MAX {
                    signatures.push(tag);
                }
            }
            _ => {
                let name_ok = (1..=EXTENSION_NAME_BYTES_MAX).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
                if !name_ok {
                    return Err(VerifyError::BadName { index });
                }
                if !value.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(VerifyError::BadExtensionValue { index });
                }
            }
        }
    }
    if signature_count > SIGNATURES_MAX {
        return Err(VerifyError::TooManySignatures {
            count: signature_count,
            max: SIGNATURES_MAX,
        });
    }
    let Some((timestamp_digits, timestamp_s)) = timestamp else {
        return Err(VerifyError::MissingTimestamp);
    };
    if signatures.is_empty() {
        return Err(VerifyError::MissingSignature);
    }
    Ok(Parsed {
        timestamp_digits,
        timestamp_s,
        signatures,
    })
}

/// A canonical decimal `u64`: digits only, no leading zero (except "0"
/// itself), no overflow. Canonical, so that the digits signed are exactly
/// the decimal form of the value checked against the clock.
fn parse_timestamp(digits: &str) -> Option<u64> {
    let bytes = digits.as_bytes();
    let canonical = !bytes.is_empty()
        && bytes.len() <= TIMESTAMP_DIGITS_MAX
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes[0] != b'0' || bytes.len() == 1);
    if !canonical {
        return None;
    }
    digits.parse().ok()
}

/// Exactly 64 lowercase hex digits, decoded.
fn parse_signature(hex_digits: &str) -> Option<[u8; 32]> {
    let lowercase_hex = hex_digits.len() == SIGNATURE_HEX_LEN
        && hex_digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lowercase_hex {
        return None;
    }
    let mut tag = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut tag).ok()?;
    Some(tag)
}

#[cfg(test)]
mod tests;
