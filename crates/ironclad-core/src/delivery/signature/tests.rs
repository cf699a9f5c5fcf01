//! Tests of the webhook signature: pinned vectors, tampering, tolerance
//! edges, rotation, malformed headers, and property tests.
use super::*;
use proptest::prelude::*;

// Test vector 1 of docs/webhook-signature.md, cross-checked with Python.
const VEC1_SECRET: &[u8] = b"ironclad-test-secret-0123456789";
const VEC1_TIMESTAMP_S: u64 = 1_700_000_000;
const VEC1_BODY: &[u8] = br#"{"hello":"world"}"#;
const VEC1_HEADER: &str =
    "t=1700000000,v1=7ce74f243f7e91777957411ce254531fca5276fb2f6c61b253c77a27f82bef5e";

// Test vector 2 (rotation): a 100-byte secret, longer than SHA-256's
// 64-byte block, so HMAC hashes it first; a body with UTF-8 and a newline.
const VEC2_OLD_SECRET: &[u8] = b"old-secret-0123456789abcdef";
const VEC2_TIMESTAMP_S: u64 = 1_767_225_600;
const VEC2_BODY: &[u8] = b"{\"name\":\"caf\xc3\xa9\"}\n";
const VEC2_HEADER: &str = "t=1767225600,\
    v1=2f2a4f60882cec066d9c65b405a3459a52fc15d148e692275c1ed3b25dff5e26,\
    v1=2cc454b8e1c07d38e8c09dbd082008dcf96f73e291ba8c3df51bf409e01036b4";

fn vec2_new_secret() -> Vec<u8> {
    (0u8..100).collect()
}

fn key(secret: &[u8]) -> SigningKey {
    SigningKey::new(secret).unwrap()
}

/// `n` distinct valid keys.
fn keys(n: usize) -> Vec<SigningKey> {
    (0..n)
        .map(|i| key(format!("secret-number-{i:04}-padding").as_bytes()))
        .collect()
}

const SIG_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

#[test]
fn pinned_vector() {
    let k = [key(VEC1_SECRET)];
    assert_eq!(sign(&k, VEC1_TIMESTAMP_S, VEC1_BODY).unwrap(), VEC1_HEADER);
    assert_eq!(
        verify(VEC1_HEADER, &k, VEC1_BODY, VEC1_TIMESTAMP_S, 0),
        Ok(Verified {
            timestamp_s: VEC1_TIMESTAMP_S,
            key_index: 0
        })
    );
}

#[test]
fn pinned_rotation_vector() {
    let new = key(&vec2_new_secret());
    let old = key(VEC2_OLD_SECRET);
    let header = sign(&[new.clone(), old.clone()], VEC2_TIMESTAMP_S, VEC2_BODY).unwrap();
    assert_eq!(header, VEC2_HEADER);
    let stranger = keys(1).remove(0);
    for (held, index) in [
        (vec![new.clone()], 0),
        (vec![old.clone()], 0),
        (vec![stranger, old.clone()], 1),
    ] {
        let got = verify(VEC2_HEADER, &held, VEC2_BODY, VEC2_TIMESTAMP_S, 0).unwrap();
        assert_eq!(got.key_index, index);
    }
}

#[test]
fn round_trip_with_default_tolerance() {
    let k = keys(1);
    let body = b"[1,2,3]";
    let header = sign(&k, 42, body).unwrap();
    assert!(header.starts_with("t=42,v1="));
    assert_eq!(header.len(), "t=42,v1=".len() + 64);
    let got = verify(
        &header,
        &k,
        body,
        42 + TOLERANCE_S_DEFAULT,
        TOLERANCE_S_DEFAULT,
    );
    assert_eq!(
        got,
        Ok(Verified {
            timestamp_s: 42,
            key_index: 0
        })
    );
    // An empty body is signed too.
    let header = sign(&k, 0, b"").unwrap();
    assert!(verify(&header, &k, b"", 0, 0).is_ok());
}

#[test]
fn tampering_fails() {
    let k = [key(VEC1_SECRET)];
    let t = VEC1_TIMESTAMP_S;
    // Body changed: one byte, one byte more, one byte less, empty.
    for body in [
        &br#"{"hello":"World"}"#[..],
        br#"{"hello":"world"} "#,
        br#"{"hello":"world""#,
        b"",
    ] {
        assert_eq!(
            verify(VEC1_HEADER, &k, body, t, 10),
            Err(VerifyError::NoMatch)
        );
    }
    // Timestamp changed but still fresh: the MAC covers it.
    let moved = VEC1_HEADER.replace("t=1700000000", "t=1700000001");
    assert_eq!(
        verify(&moved, &k, VEC1_BODY, t, 10),
        Err(VerifyError::NoMatch)
    );
    // Signature changed in its last hex digit.
    let flipped = format!("{}f", &VEC1_HEADER[..VEC1_HEADER.len() - 1]);
    assert_ne!(flipped, VEC1_HEADER);
    assert_eq!(
        verify(&flipped, &k, VEC1_BODY, t, 10),
        Err(VerifyError::NoMatch)
    );
    // Wrong secret.
    assert_eq!(
        verify(VEC1_HEADER, &keys(1), VEC1_BODY, t, 10),
        Err(VerifyError::NoMatch)
    );
    // The signature of one body does not verify another at the same time.
    let other = sign(&k, t, b"other").unwrap();
    let spliced = format!("t={t},{}", &other[other.find("v1=").unwrap()..]);
    assert_eq!(
        verify(&spliced, &k, VEC1_BODY, t, 10),
        Err(VerifyError::NoMatch)
    );
}

#[test]
fn tolerance_edges_are_exact() {
    let k = keys(1);
    let t = 1_000_000;
    let header = sign(&k, t, b"x").unwrap();
    let outside = |now_s, tolerance_s| {
        Err(VerifyError::TimestampOutsideTolerance {
            timestamp_s: t,
            now_s,
            tolerance_s,
        })
    };
    for tol in [0, 1, 300] {
        assert!(
            verify(&header, &k, b"x", t + tol, tol).is_ok(),
            "late {tol}"
        );
        assert!(
            verify(&header, &k, b"x", t - tol, tol).is_ok(),
            "early {tol}"
        );
        assert_eq!(
            verify(&header, &k, b"x", t + tol + 1, tol),
            outside(t + tol + 1, tol)
        );
        assert_eq!(
            verify(&header, &k, b"x", t - tol - 1, tol),
            outside(t - tol - 1, tol)
        );
    }
    // Extremes neither overflow nor wrap.
    let header = sign(&k, u64::MAX, b"x").unwrap();
    assert!(verify(&header, &k, b"x", u64::MAX, 0).is_ok());
    assert!(verify(&header, &k, b"x", 0, u64::MAX).is_ok());
    assert_eq!(
        verify(&header, &k, b"x", 0, u64::MAX - 1),
        Err(VerifyError::TimestampOutsideTolerance {
            timestamp_s: u64::MAX,
            now_s: 0,
            tolerance_s: u64::MAX - 1
        })
    );
    let header = sign(&k, 0, b"x").unwrap();
    assert!(verify(&header, &k, b"x", 0, 0).is_ok());
    assert!(verify(&header, &k, b"x", u64::MAX, u64::MAX).is_ok());
}

#[test]
fn stale_timestamp_is_reported_before_the_signature() {
    // A stale header is refused as stale even with a bad signature, and
    // without computing any MAC.
    let header = format!("t=100,v1={SIG_A}");
    assert_eq!(
        verify(&header, &keys(1), b"", 1_000, 10),
        Err(VerifyError::TimestampOutsideTolerance {
            timestamp_s: 100,
            now_s: 1_000,
            tolerance_s: 10
        })
    );
}

#[test]
fn rotation_with_two_secrets() {
    let [new, old, stranger]: [SigningKey; 3] = keys(3).try_into().unwrap();
    let body = b"rotating";
    // The sender signs with both while receivers move over.
    let header = sign(&[new.clone(), old.clone()], 7, body).unwrap();
    assert_eq!(header.matches(",v1=").count(), 2);
    let check = |ks: &[SigningKey]| verify(&header, ks, body, 7, 0).map(|v| v.key_index);
    assert_eq!(check(std::slice::from_ref(&old)), Ok(0)); // a receiver not yet updated
    assert_eq!(check(std::slice::from_ref(&new)), Ok(0)); // a receiver already updated
    assert_eq!(check(&[stranger.clone(), old.clone()]), Ok(1));
    assert_eq!(check(&[new.clone(), old.clone()]), Ok(0));
    assert_eq!(
        check(std::slice::from_ref(&stranger)),
        Err(VerifyError::NoMatch)
    );
    // Once the sender drops the old secret, a receiver with only it fails.
    let header = sign(std::slice::from_ref(&new), 7, body).unwrap();
    assert_eq!(
        verify(&header, &[old], body, 7, 0),
        Err(VerifyError::NoMatch)
    );
    assert!(verify(&header, &[stranger, new], body, 7, 0).is_ok());
}

#[test]
fn most_signatures_fit_and_verify() {
    let k = keys(SIGNATURES_MAX);
    let header = sign(&k, u64::MAX, b"b").unwrap();
    assert!(header.len() <= HEADER_BYTES_MAX);
    let last = [k[SIGNATURES_MAX - 1].clone()];
    assert!(verify(&header, &last, b"b", u64::MAX, 0).is_ok());
    assert_eq!(
        verify(&header, &k, b"b", u64::MAX, 0).map(|v| v.key_index),
        Ok(0)
    );
}

#[test]
fn key_length_limits() {
    for len in [0, 1, SECRET_BYTES_MIN - 1] {
        assert_eq!(
            SigningKey::new(&vec![7; len]).unwrap_err(),
            KeyError::TooShort {
                len_bytes: len,
                min_bytes: SECRET_BYTES_MIN
            }
        );
    }
    for len in [SECRET_BYTES_MIN, 64, 65, SECRET_BYTES_MAX] {
        assert!(SigningKey::new(&vec![7; len]).is_ok(), "{len}");
    }
    assert_eq!(
        SigningKey::new(&vec![7; SECRET_BYTES_MAX + 1]).unwrap_err(),
        KeyError::TooLong {
            len_bytes: SECRET_BYTES_MAX + 1,
            max_bytes: SECRET_BYTES_MAX
        }
    );
    let msg = SigningKey::new(b"short").unwrap_err().to_string();
    assert!(msg.contains("5 bytes") && msg.contains("16"), "{msg}");
}

#[test]
fn debug_hides_the_secret() {
    let shown = format!("{:?}", key(VEC1_SECRET));
    assert_eq!(shown, "SigningKey { .. }");
}

#[test]
fn key_count_limits() {
    assert_eq!(sign(&[], 1, b""), Err(SignError::NoKeys));
    assert_eq!(
        sign(&keys(SIGNATURES_MAX + 1), 1, b""),
        Err(SignError::TooManyKeys {
            count: SIGNATURES_MAX + 1,
            max: SIGNATURES_MAX
        })
    );
    let header = sign(&keys(1), 1, b"").unwrap();
    assert_eq!(verify(&header, &[], b"", 1, 0), Err(VerifyError::NoKeys));
    assert_eq!(
        verify(&header, &keys(KEYS_MAX + 1), b"", 1, 0),
        Err(VerifyError::TooManyKeys {
            count: KEYS_MAX + 1,
            max: KEYS_MAX
        })
    );
    assert!(verify(&header, &keys(KEYS_MAX), b"", 1, 0).is_ok());
}

/// What verifying `header` gives, with a key that matches nothing and a
/// clock at the header's time when it is 1.
fn verify_any(header: &str) -> Result<Verified, VerifyError> {
    verify(header, &keys(1), b"", 1, 0)
}

#[test]
fn malformed_headers_give_typed_errors() {
    use VerifyError as E;
    let a = SIG_A;
    let upper = SIG_A.to_uppercase();
    let cases: Vec<(String, VerifyError)> = vec![
        (String::new(), E::HeaderEmpty),
        (" \t ".into(), E::HeaderEmpty),
        (",".into(), E::EmptyElement { index: 0 }),
        (format!("t=1,,v1={a}"), E::EmptyElement { index: 1 }),
        (format!("t=1,v1={a},"), E::EmptyElement { index: 2 }),
        (format!(",t=1,v1={a}"), E::EmptyElement { index: 0 }),
        (format!("t=1,v1{a}"), E::MissingEquals { index: 1 }),
        ("garbage".into(), E::MissingEquals { index: 0 }),
        (format!("t=1,v1={a},=x"), E::BadName { index: 2 }),
        (format!("T=1,v1={a}"), E::BadName { index: 0 }),
        (format!("t=1,V1={a}"), E::BadName { index: 1 }),
        (format!("t=1, v1={a}"), E::BadName { index: 1 }),
        (format!("t=1,v1 ={a}"), E::BadName { index: 1 }),
        (format!("t=1,v1={a},v_2=x"), E::BadName { index: 2 }),
        (
            format!("t=1,v1={a},{}=x", "n".repeat(33)),
            E::BadName { index: 2 },
        ),
        (
            format!("t=1,v1={a},v2=a b"),
            E::BadExtensionValue { index: 2 },
        ),
        (
            format!("t=1,v1={a},v2=caf\u{e9}"),
            E::BadExtensionValue { index: 2 },
        ),
        (format!("t=,v1={a}"), E::BadTimestamp { index: 0 }),
        (format!("t=01,v1={a}"), E::BadTimestamp { index: 0 }),
        (format!("t=+1,v1={a}"), E::BadTimestamp { index: 0 }),
        (format!("t=-1,v1={a}"), E::BadTimestamp { index: 0 }),
        (format!("t=1.5,v1={a}"), E::BadTimestamp { index: 0 }),
        (format!("t=1 ,v1={a}"), E::BadTimestamp { index: 0 }),
        (format!("t==1,v1={a}"), E::BadTimestamp { index: 0 }),
        (
            format!("t=18446744073709551616,v1={a}"),
            E::BadTimestamp { index: 0 },
        ),
        (
            format!("t=100000000000000000000,v1={a}"),
            E::BadTimestamp { index: 0 },
        ),
        (format!("t=\u{661},v1={a}"), E::BadTimestamp { index: 0 }),
        (
            format!("t=1,v1={a},t=1"),
            E::DuplicateTimestamp { index: 2 },
        ),
        (format!("v1={a}"), E::MissingTimestamp),
        (format!("v1={a},v2=x"), E::MissingTimestamp),
        ("t=1".into(), E::MissingSignature),
        ("t=1,v0=abc,v2=def".into(), E::MissingSignature),
        ("t=1,v1=".into(), E::BadSignature { index: 1 }),
        (format!("t=1,v1={upper}"), E::BadSignature { index: 1 }),
        (format!("t=1,v1={}", &a[1..]), E::BadSignature { index: 1 }),
        (format!("t=1,v1={a}a"), E::BadSignature { index: 1 }),
        (format!("t=1,v1={}g", &a[1..]), E::BadSignature { index: 1 }),
        (
            format!("t=1,v1=0x{}", &a[2..]),
            E::BadSignature { index: 1 },
        ),
        (format!("t=1,v1={a}=="), E::BadSignature { index: 1 }),
        (
            format!("t=1{}", format!(",v1={a}").repeat(SIGNATURES_MAX + 1)),
            E::TooManySignatures {
                count: SIGNATURES_MAX + 1,
                max: SIGNATURES_MAX,
            },
        ),
    ];
    for (header, want) in cases {
        let got = verify_any(&header);
        assert_eq!(got, Err(want.clone()), "header {header:?}");
        assert!(want.is_malformed(), "{want:?}");
        assert!(!want.to_string().is_empty());
    }
    // Well formed but wrong: not malformed.
    for ok_shape in [
        format!("t=1,v1={a}"),
        format!(" t=1,v1={a}\t"),
        format!("v1={a},t=1"),
        format!("t=1,v1={a},v1={a}"),
        format!("t=1,v0=old,v1={a},v2=x=y+/"),
        format!("t=1{}", format!(",v1={a}").repeat(SIGNATURES_MAX)),
    ] {
        let err = verify_any(&ok_shape).unwrap_err();
        assert_eq!(err, E::NoMatch, "header {ok_shape:?}");
        assert!(!err.is_malformed());
    }
    assert!(!E::NoKeys.is_malformed());
    assert!(!E::TooManyKeys { count: 17, max: 16 }.is_malformed());
    assert!(!E::TimestampOutsideTolerance {
        timestamp_s: 0,
        now_s: 9,
        tolerance_s: 1
    }
    .is_malformed());
}

#[test]
fn header_length_limit_is_exact() {
    let k = keys(1);
    let signed = sign(&k, 5, b"b").unwrap();
    // Pad with a skipped extension element up to exactly the limit.
    let pad = HEADER_BYTES_MAX - signed.len() - ",x=".len();
    let at_limit = format!("{signed},x={}", "p".repeat(pad));
    assert_eq!(at_limit.len(), HEADER_BYTES_MAX);
    assert!(verify(&at_limit, &k, b"b", 5, 0).is_ok());
    let over = format!("{at_limit}p");
    assert_eq!(
        verify(&over, &k, b"b", 5, 0),
        Err(VerifyError::HeaderTooLong {
            len_bytes: HEADER_BYTES_MAX + 1,
            max_bytes: HEADER_BYTES_MAX
        })
    );
    assert!(VerifyError::HeaderTooLong {
        len_bytes: 1,
        max_bytes: 0
    }
    .is_malformed());
}

/// Headers that look nearly right, so that fuzzing reaches every branch
/// of the parser rather than failing at the first character.
fn header_like() -> impl Strategy<Value = String> {
    let element = prop_oneof![
        "t=[0-9]{0,22}",
        "t=[-+ 0-9a-f]{0,6}",
        "v1=[0-9a-f]{62,66}",
        "v1=[0-9a-fA-F =]{0,70}",
        "[a-zA-Z0-9 _]{0,4}=[ -~]{0,8}",
        "[ -~]{0,12}",
        ".{0,12}",
    ];
    proptest::collection::vec(element, 0..24).prop_map(|parts| parts.join(","))
}

proptest! {
    #[test]
    fn verify_never_panics_on_arbitrary_headers(
        header in prop_oneof![".{0,300}", header_like()],
        body in proptest::collection::vec(any::<u8>(), 0..64),
        now_s in any::<u64>(),
        tolerance_s in any::<u64>(),
    ) {
        // No header made without the key verifies (a forgery would need
        // a 256-bit guess), and none panics.
        let got = verify(&header, &keys(2), &body, now_s, tolerance_s);
        prop_assert!(got.is_err());
    }

    #[test]
    fn huge_headers_are_refused_without_parsing(extra in 1usize..4096) {
        let header = "t=1,".repeat((HEADER_BYTES_MAX + extra).div_ceil(4));
        prop_assert!(
            matches!(
                verify(&header, &keys(1), b"", 1, 0),
                Err(VerifyError::HeaderTooLong { .. })
            ),
            "expected HeaderTooLong"
        );
    }

    #[test]
    fn sign_then_verify_round_trips(
        secrets in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), SECRET_BYTES_MIN..=SECRET_BYTES_MAX),
            1..=3,
        ),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        timestamp_s in any::<u64>(),
        skew_s in 0u64..=600,
        pick in any::<prop::sample::Index>(),
    ) {
        let ks: Vec<SigningKey> = secrets.iter().map(|s| key(s)).collect();
        let header = sign(&ks, timestamp_s, &body).unwrap();
        let now_s = timestamp_s.saturating_add(skew_s);
        let tolerance_s = now_s - timestamp_s;
        // The receiver may hold any one of the sender's keys.
        let i = pick.index(ks.len());
        let got = verify(&header, &ks[i..=i], &body, now_s, tolerance_s).unwrap();
        prop_assert_eq!(got.timestamp_s, timestamp_s);
        prop_assert_eq!(got.key_index, 0);
        // The header has the documented shape: t, then one v1 per key.
        let expected_len = format!("t={timestamp_s}").len() + ks.len() * (4 + 64);
        prop_assert_eq!(header.len(), expected_len);
    }

    #[test]
    fn any_changed_body_byte_fails(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let k = keys(1);
        let header = sign(&k, 9, &body).unwrap();
        let mut tampered = body.clone();
        tampered[at.index(body.len())] ^= xor;
        prop_assert_eq!(verify(&header, &k, &tampered, 9, 0), Err(VerifyError::NoMatch));
    }

    #[test]
    fn any_changed_header_byte_fails(
        body in proptest::collection::vec(any::<u8>(), 0..64),
        timestamp_s in 1u64..=u64::MAX / 2,
        at in any::<prop::sample::Index>(),
        replacement in b' '..=b'~',
    ) {
        let k = keys(1);
        let header = sign(&k, timestamp_s, &body).unwrap();
        let mut bytes = header.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        let tampered = String::from_utf8(bytes).unwrap();
        // A huge tolerance, so that only the MAC or the syntax can refuse.
        prop_assert!(verify(&tampered, &k, &body, timestamp_s, u64::MAX).is_err());
    }
}
