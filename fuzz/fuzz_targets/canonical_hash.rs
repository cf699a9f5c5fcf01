//! The canonical event encoding and the hash chains (`docs/hashing.md`):
//! the encoding is deterministic and decodes back to exactly the fields it
//! was made from (so two different events never share an encoding), and
//! both hashes are deterministic and refuse unknown hash versions.
#![no_main]

use std::collections::BTreeMap;

use ironclad_core::hash::{canonical_bytes, event_hash, global_hash, EventFields, HASH_VERSION};
use ironclad_core::model::{Hash, Op};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

/// Owned fields, as decoded back from an encoding.
#[derive(Debug, PartialEq)]
struct Owned {
    id: Uuid,
    stream: String,
    version: u64,
    position: u64,
    created_at_us: i64,
    event_type: String,
    op: Op,
    entity: Option<String>,
    payload: String,
    metadata: BTreeMap<String, String>,
}

/// A reader over an encoding; `None` on any malformation.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn text(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

/// The layout of `docs/hashing.md`, read back.
fn decode(bytes: &[u8]) -> Option<Owned> {
    let mut r = Reader(bytes);
    let id = Uuid::from_slice(r.take(16)?).ok()?;
    let stream = r.text()?;
    let (version, position) = (r.u64()?, r.u64()?);
    let created_at_us = r.u64()? as i64;
    let event_type = r.text()?;
    let op = Op::from_code(r.take(1)?[0])?;
    let entity = match r.take(1)?[0] {
        0 => None,
        1 => Some(r.text()?),
        _ => return None,
    };
    let payload = r.text()?;
    let mut metadata = BTreeMap::new();
    let mut previous: Option<String> = None;
    for _ in 0..r.u32()? {
        let (key, value) = (r.text()?, r.text()?);
        // Keys are sorted and distinct, so an encoding has one reading.
        assert!(
            previous.as_ref().is_none_or(|p| p < &key),
            "metadata keys out of order"
        );
        previous = Some(key.clone());
        metadata.insert(key, value);
    }
    r.0.is_empty().then_some(Owned {
        id,
        stream,
        version,
        position,
        created_at_us,
        event_type,
        op,
        entity,
        payload,
        metadata,
    })
}

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let owned = Owned {
        id: Uuid::from_u128(u.arbitrary()?),
        stream: u.arbitrary()?,
        version: u.arbitrary()?,
        position: u.arbitrary()?,
        created_at_us: u.arbitrary()?,
        event_type: u.arbitrary()?,
        op: Op::from_code(u.int_in_range(0..=3)?).unwrap_or_default(),
        entity: u.arbitrary()?,
        metadata: u.arbitrary()?,
        payload: u.arbitrary()?,
    };
    let fields = EventFields {
        id: &owned.id,
        stream: &owned.stream,
        version: owned.version,
        position: owned.position,
        created_at_us: owned.created_at_us,
        event_type: &owned.event_type,
        op: owned.op,
        entity: owned.entity.as_deref(),
        payload: &owned.payload,
        metadata: &owned.metadata,
    };
    let (mut a, mut b) = (vec![0xAA; 7], Vec::new());
    canonical_bytes(&fields, &mut a);
    canonical_bytes(&fields, &mut b);
    assert_eq!(a, b, "the encoding depends on the buffer's old contents");
    assert_eq!(
        decode(&a).as_ref(),
        Some(&owned),
        "the encoding does not decode back"
    );

    let prev: Hash = u.arbitrary()?;
    let h1 = event_hash(HASH_VERSION, &prev, &fields, &mut a).expect("known version");
    let h2 = event_hash(HASH_VERSION, &prev, &fields, &mut b).expect("known version");
    assert_eq!(h1, h2);
    let g1 = global_hash(HASH_VERSION, &prev, owned.position, &h1).expect("known version");
    assert_eq!(
        g1,
        global_hash(HASH_VERSION, &prev, owned.position, &h2).expect("known")
    );
    let other: u32 = u.arbitrary()?;
    if other != HASH_VERSION {
        assert!(event_hash(other, &prev, &fields, &mut a).is_err());
        assert!(global_hash(other, &prev, owned.position, &h1).is_err());
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
