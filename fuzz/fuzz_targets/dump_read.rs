//! The emergency dump reader (`read_dump`), as `ironclad dump replay` runs
//! it on a file that may be damaged: any content gives records or a named
//! error, never a panic, and every record read encodes as one line that
//! reads back as the same record (what replay and quarantine write).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use ironclad::emergency::{read_dump, DumpRecord};
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
        dir.join(format!("ironclad-fuzz-dump-{}.jsonl", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("scratch file writable");
    let Ok(records) = read_dump(path) else {
        return;
    };
    for record in records {
        let line = serde_json::to_string(&record).expect("a record encodes");
        assert!(!line.contains('\n'), "a record spans lines");
        let back: DumpRecord = serde_json::from_str(&line).expect("a record reads back");
        assert_eq!(back, record);
    }
});
