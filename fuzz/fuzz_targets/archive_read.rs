//! The DLQ archive reader (`read_archive`), on gzip files that may be
//! damaged: any content gives entries or a named error, never a panic.
//! Half the inputs are gzipped here first, so the fuzzer also reaches the
//! line and JSON handling behind the decoder. Every entry read encodes as
//! one line that reads back as the same entry.
#![no_main]

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use flate2::write::GzEncoder;
use flate2::Compression;
use ironclad::delivery::archive::{read_archive, ArchivedDlqEntry};
use libfuzzer_sys::fuzz_target;

/// One file per fuzzing process, in memory (`/dev/shm` when there is one).
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let dir = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        dir.join(format!(
            "ironclad-fuzz-archive-{}.jsonl.gz",
            std::process::id()
        ))
    })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(data).expect("in memory");
    gz.finish().expect("in memory")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        gzip(rest)
    };
    let path = scratch();
    std::fs::write(path, file).expect("scratch file writable");
    let Ok(entries) = read_archive(path) else {
        return;
    };
    for entry in entries {
        let line = serde_json::to_string(&entry).expect("an entry encodes");
        assert!(!line.contains('\n'), "an entry spans lines");
        let back: ArchivedDlqEntry = serde_json::from_str(&line).expect("an entry reads back");
        assert_eq!(back, entry);
    }
});
