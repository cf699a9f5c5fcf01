//! Classifying a sink's answer into what delivery does next (SPEC §4
//! "Classifying results"): pure functions from an HTTP status (plus its
//! `Retry-After` header) or a transport failure to an [`Outcome`].
//!
//! The time used to resolve an HTTP-date `Retry-After` is passed in, so the
//! same inputs always give the same outcome. Nothing here panics on any input.

use thiserror::Error;

use super::retry::parse_retry_after;

/// What delivery does with an event after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The sink accepted it: done.
    Delivered,
    /// A transient failure: try again later, under the retry policy.
    Retry {
        /// How long the sink asked us to wait, in milliseconds from the
        /// classification time, parsed from `Retry-After`. Not yet capped:
        /// the retry policy caps it (`retry_after_ms_cap`).
        retry_after_ms: Option<u64>,
    },
    /// The sink refused it as conflicting (409): handed to the reconciler (SPEC §5).
    Conflict,
    /// The sink will never accept it as sent: straight to the DLQ.
    Permanent,
}

impl Outcome {
    /// The value of the `result` label on the delivery `attempts` counter
    /// (SPEC §9): `delivered`, `retry`, `conflict` or `permanent`.
    pub fn result_label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Conflict => "conflict",
            Outcome::Permanent => "permanent",
        }
    }
}

/// How a request failed before a complete HTTP response arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum TransportError {
    /// The host name did not resolve.
    #[error("DNS lookup failed")]
    Dns,
    /// The TCP connection was refused or could not be made.
    #[error("connection failed")]
    Connect,
    /// The TLS handshake failed.
    #[error("TLS handshake failed")]
    Tls,
    /// No complete response arrived within the request timeout.
    #[error("request timed out")]
    Timeout,
    /// The connection was reset or closed before the response was complete.
    #[error("connection closed before the response was complete")]
    ConnectionClosed,
    /// The bytes that came back were not a valid HTTP response.
    #[error("malformed HTTP response")]
    MalformedResponse,
}

/// Classifies a final HTTP status, per SPEC §4.
///
/// | status | outcome |
/// | --- | --- |
/// | 2xx | [`Outcome::Delivered`] |
/// | 408, 425, 429, 5xx except 501 | [`Outcome::Retry`] |
/// | 409 | [`Outcome::Conflict`] |
/// | other 4xx, 501 | [`Outcome::Permanent`] |
/// | 3xx | [`Outcome::Permanent`] |
/// | 1xx, and anything outside 100..=599 | [`Outcome::Retry`] |
///
/// A retry carries the parsed `Retry-After` (seconds or HTTP-date, resolved
/// against `now_unix_ms`); an unparseable header is ignored rather than
/// failing the classification. Other outcomes ignore the header.
pub fn classify_http(status: u16, retry_after_header: Option<&str>, now_unix_ms: u64) -> Outcome {
    let retry = || Outcome::Retry {
        retry_after_ms: retry_after_header.and_then(|h| parse_retry_after(h, now_unix_ms)),
    };
    match status {
        200..=299 => Outcome::Delivered,
        // Redirects are not followed: re-sending a signed payload to a URL
        // the operator never configured would leak it, and a moved endpoint
        // is a configuration fix, which retrying cannot make.
        300..=399 => Outcome::Permanent,
        // 408: the server timed out reading us; 425: too early (replay
        // protection); 429: rate limited. All go away with time.
        408 | 425 | 429 => retry(),
        409 => Outcome::Conflict,
        400..=499 => Outcome::Permanent,
        // 501: the server does not implement the method, and waiting will
        // not change that.
        501 => Outcome::Permanent,
        500..=599 => retry(),
        // A 1xx is not a valid final status, and a code outside 100..=599 is
        // not HTTP at all: both mean a broken server or middlebox, which is
        // what a malformed response means too, so they retry like one. The
        // retry policy's limits still send the event to the DLQ in the end,
        // whereas Permanent would dead-letter it on a one-off proxy glitch.
        _ => retry(),
    }
}

/// Classifies a transport failure. Every one retries (SPEC §4): none of them
/// says anything about the event itself, and the retry policy bounds how
/// long we keep trying. A `Retry-After` cannot exist without a response.
pub fn classify_transport(kind: TransportError) -> Outcome {
    match kind {
        TransportError::Dns
        | TransportError::Connect
        | TransportError::Tls
        | TransportError::Timeout
        | TransportError::ConnectionClosed
        | TransportError::MalformedResponse => Outcome::Retry {
            retry_after_ms: None,
        },
    }
}

/// The outcome of one event in a batch, given the batch's outcome and the
/// event's own result where the sink reported one (SPEC §4: "each event in
/// a batch gets its own result").
///
/// A batch that must be retried retries every event, whatever the body
/// says: a failing server or an intermediary may have produced that body,
/// and re-sending a delivered event is safe because each carries its
/// idempotency key. Otherwise the sink answered deliberately, so an event's
/// own result wins and an event it did not mention takes the batch's.
pub fn event_outcome_in_batch(batch: Outcome, reported: Option<Outcome>) -> Outcome {
    match (batch, reported) {
        (Outcome::Retry { .. }, _) | (_, None) => batch,
        (_, Some(own)) => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// SPEC §4's table written out independently, for comparison.
    fn is_retry(status: u16) -> bool {
        matches!(status, 408 | 425 | 429)
            || ((500..=599).contains(&status) && status != 501)
            || !(200..=599).contains(&status)
    }

    fn any_outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Delivered),
            proptest::option::of(any::<u64>()).prop_map(|r| Outcome::Retry { retry_after_ms: r }),
            Just(Outcome::Conflict),
            Just(Outcome::Permanent),
        ]
    }

    proptest! {
        #[test]
        fn every_status_matches_the_spec_table(
            status in any::<u16>(),
            header in proptest::option::of(".{0,40}"),
            now in any::<u64>(),
        ) {
            let got = classify_http(status, header.as_deref(), now);
            let want = if (200..=299).contains(&status) {
                Outcome::Delivered
            } else if status == 409 {
                Outcome::Conflict
            } else if is_retry(status) {
                Outcome::Retry {
                    retry_after_ms: header.as_deref().and_then(|h| parse_retry_after(h, now)),
                }
            } else {
                Outcome::Permanent
            };
            prop_assert_eq!(got, want);
        }

        #[test]
        fn transport_failures_always_retry_without_a_delay(
            kind in prop_oneof![
                Just(TransportError::Dns),
                Just(TransportError::Connect),
                Just(TransportError::Tls),
                Just(TransportError::Timeout),
                Just(TransportError::ConnectionClosed),
                Just(TransportError::MalformedResponse),
            ],
        ) {
            prop_assert_eq!(classify_transport(kind), Outcome::Retry { retry_after_ms: None });
        }

        #[test]
        fn batch_retry_wins_otherwise_the_event_result_does(
            batch in any_outcome(),
            reported in proptest::option::of(any_outcome()),
        ) {
            let got = event_outcome_in_batch(batch, reported);
            match (batch, reported) {
                (Outcome::Retry { .. }, _) | (_, None) => prop_assert_eq!(got, batch),
                (_, Some(own)) => prop_assert_eq!(got, own),
            }
        }
    }

    #[test]
    fn concrete_statuses() {
        let retry = Outcome::Retry {
            retry_after_ms: None,
        };
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(classify_http(s, None, 0), Outcome::Delivered, "{s}");
        }
        for s in [
            408, 425, 429, 500, 502, 503, 504, 599, 100, 103, 0, 99, 600, 999,
        ] {
            assert_eq!(classify_http(s, None, 0), retry, "{s}");
        }
        for s in [
            400, 401, 403, 404, 410, 413, 422, 499, 501, 301, 302, 304, 307, 308,
        ] {
            assert_eq!(classify_http(s, None, 0), Outcome::Permanent, "{s}");
        }
        assert_eq!(classify_http(409, Some("5"), 0), Outcome::Conflict);
    }

    #[test]
    fn retry_after_is_attached_to_retries_only() {
        assert_eq!(
            classify_http(429, Some("120"), 0),
            Outcome::Retry {
                retry_after_ms: Some(120_000)
            }
        );
        // 1994-11-06T08:49:37Z, asked 37 s before it.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            classify_http(503, Some(date), 784_111_740_000),
            Outcome::Retry {
                retry_after_ms: Some(37_000)
            }
        );
        assert_eq!(
            classify_http(503, Some("soon"), 0),
            Outcome::Retry {
                retry_after_ms: None
            }
        );
        assert_eq!(classify_http(200, Some("120"), 0), Outcome::Delivered);
        assert_eq!(classify_http(400, Some("120"), 0), Outcome::Permanent);
    }

    #[test]
    fn result_labels() {
        let labels = [
            Outcome::Delivered,
            Outcome::Retry {
                retry_after_ms: Some(1),
            },
            Outcome::Conflict,
            Outcome::Permanent,
        ]
        .map(|o| o.result_label());
        assert_eq!(labels, ["delivered", "retry", "conflict", "permanent"]);
    }
}
