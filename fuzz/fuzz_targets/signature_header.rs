//! `Ironclad-Signature` parsing and verification: any header value gives a
//! typed result, never a panic, and a header made by `sign` verifies with
//! the key that made it, for any body and time, while a changed body does
//! not.
#![no_main]

use ironclad_core::delivery::signature::{sign, verify, SigningKey};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let secret: [u8; 32] = u.arbitrary()?;
    let Ok(key) = SigningKey::new(&secret) else {
        return Ok(());
    };
    let keys = [key];
    let now_s: u64 = u.arbitrary()?;
    let tolerance_s: u64 = u.int_in_range(0..=600)?;
    let header: &str = u.arbitrary()?;
    let body: &[u8] = u.arbitrary()?;

    // Hostile input: a result, never a panic; a match only for a header
    // that holds the right MAC, which the fuzzer cannot forge.
    if let Err(e) = verify(header, &keys, body, now_s, tolerance_s) {
        let _ = (e.is_malformed(), e.to_string());
    }

    let signed = sign(&keys, now_s, body).expect("one key signs");
    let ok = verify(&signed, &keys, body, now_s, tolerance_s).expect("own signature verifies");
    assert_eq!((ok.timestamp_s, ok.key_index), (now_s, 0));
    let mut other = body.to_vec();
    other.push(b'x');
    assert!(verify(&signed, &keys, &other, now_s, tolerance_s).is_err());
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
