//! Unit tests of the durable-write helpers: contents, atomic replacement,
//! cleanup on failure, typed errors, and (through [`record_ops`]) the
//! fsyncs that only power loss would otherwise reveal.

use super::*;

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn write_text(dir: &Path, name: &str, text: &str) -> Result<(), DurableWriteError> {
    write_atomic(dir, name, |w| {
        w.write_all(text.as_bytes()).map_err(io_other)
    })
}

/// `write`'s errors here are plain I/O errors on the temporary file.
fn io_other(e: io::Error) -> DurableWriteError {
    DurableWriteError::new(DurableStep::Write, Path::new("tmp"), e)
}

#[test]
fn the_content_is_present_and_no_temp_file_is_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = write_atomic(dir.path(), "out.txt", |w| {
        w.write_all(b"hello\n").map_err(io_other)?;
        Ok::<_, DurableWriteError>(6)
    })
    .expect("write");
    assert_eq!(n, 6, "write's value is returned");
    assert_eq!(
        fs::read_to_string(dir.path().join("out.txt")).expect("read"),
        "hello\n"
    );
    assert_eq!(names(dir.path()), ["out.txt"]);
}

#[test]
fn an_existing_file_is_replaced_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_text(dir.path(), "f", "old").expect("first");
    // A write that fails halfway leaves the old file whole and no temp file.
    let failed = write_atomic(dir.path(), "f", |w| {
        w.write_all(b"partial new").map_err(io_other)?;
        Err::<(), _>(io_other(io::Error::other("producer failed")))
    });
    assert!(failed.is_err());
    assert_eq!(
        fs::read_to_string(dir.path().join("f")).expect("read"),
        "old"
    );
    assert_eq!(names(dir.path()), ["f"]);
    // A complete write replaces it by a rename over the old name.
    let ((), ops) = record_ops(|| write_text(dir.path(), "f", "new").expect("second"));
    assert_eq!(
        fs::read_to_string(dir.path().join("f")).expect("read"),
        "new"
    );
    assert_eq!(names(dir.path()), ["f"]);
    let renamed = ops.iter().any(|op| {
        matches!(op, DurableOp::Rename { from, to }
            if *to == dir.path().join("f") && from.to_string_lossy().ends_with(TMP_SUFFIX))
    });
    assert!(renamed, "{ops:?}");
}

#[test]
fn an_unwritable_directory_is_a_typed_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A file where the directory should be: cannot be created or written
    // into, whoever runs the test (root ignores permission bits).
    let blocked = dir.path().join("blocked");
    fs::write(&blocked, b"a file").expect("write");
    let err = write_text(&blocked, "f", "x").unwrap_err();
    assert_eq!(err.step, DurableStep::CreateDir, "{err}");
    assert_eq!(err.path, blocked);
    let text = err.to_string();
    assert!(text.contains(&blocked.display().to_string()), "{text}");
    assert!(text.contains("check that the directory exists"), "{text}");
    let nested = write_text(&blocked.join("sub"), "f", "x").unwrap_err();
    assert_eq!(nested.path, blocked, "the failing ancestor is named");
}

#[test]
fn a_name_that_is_not_a_plain_file_name_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["", "..", "a/b"] {
        let err = write_text(dir.path(), name, "x").unwrap_err();
        assert_eq!(err.step, DurableStep::Name, "{name:?}: {err}");
    }
    assert!(names(dir.path()).is_empty());
}

#[test]
fn new_directories_fsync_their_parents_and_existing_ones_do_not() {
    let root = tempfile::tempdir().expect("tempdir");
    let (a, b) = (root.path().join("a"), root.path().join("a").join("b"));
    let ((), ops) = record_ops(|| write_text(&b, "f", "x").expect("write"));
    let target = b.join("f");
    let tmp = match &ops[4] {
        DurableOp::SyncFile(tmp) => tmp.clone(),
        other => panic!("expected the temporary file's fsync, got {other:?}"),
    };
    assert_eq!(
        ops,
        [
            DurableOp::CreateDir(a.clone()),
            DurableOp::SyncDir(root.path().to_path_buf()),
            DurableOp::CreateDir(b.clone()),
            DurableOp::SyncDir(a.clone()),
            DurableOp::SyncFile(tmp.clone()),
            DurableOp::Rename {
                from: tmp,
                to: target
            },
            DurableOp::SyncDir(b.clone()),
        ]
    );
    // The directories exist now: no creation, no parent fsync.
    let ((), again) = record_ops(|| write_text(&b, "f", "y").expect("write"));
    assert_eq!(again.len(), 3, "{again:?}");
    assert_eq!(again[2], DurableOp::SyncDir(b));
}

#[test]
fn open_or_create_makes_only_a_new_file_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.jsonl");
    let mut options = OpenOptions::new();
    options.read(true).append(true);
    let ((_, created), ops) = record_ops(|| open_or_create(&path, &options).expect("create"));
    assert!(created);
    assert_eq!(
        ops,
        [
            DurableOp::SyncFile(path.clone()),
            DurableOp::SyncDir(dir.path().to_path_buf()),
        ]
    );
    let ((_, created), ops) = record_ops(|| open_or_create(&path, &options).expect("open"));
    assert!(!created);
    assert!(ops.is_empty(), "{ops:?}");
    let missing = dir.path().join("no/such/x.jsonl");
    let err = open_or_create(&missing, &options).unwrap_err();
    assert_eq!(err.path, missing);
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::NotFound);
}

#[test]
fn recording_is_off_outside_record_ops_and_nests() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_text(dir.path(), "before", "x").expect("write");
    let (inner, outer) = record_ops(|| {
        sync_dir(dir.path()).expect("sync");
        record_ops(|| sync_dir(dir.path()).expect("sync")).1
    });
    assert_eq!(inner, [DurableOp::SyncDir(dir.path().to_path_buf())]);
    assert_eq!(outer, [DurableOp::SyncDir(dir.path().to_path_buf())]);
}

#[test]
fn create_dir_durable_says_whether_it_created_the_directory() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("x").join("y");
    assert!(create_dir_durable(&dir).expect("create"));
    assert!(dir.is_dir());
    assert!(!create_dir_durable(&dir).expect("exists"));
}

#[test]
fn rename_durable_fsyncs_both_directories() {
    let root = tempfile::tempdir().expect("tempdir");
    let (from_dir, to_dir) = (root.path().join("a"), root.path().join("b"));
    create_dir_durable(&from_dir).expect("a");
    create_dir_durable(&to_dir).expect("b");
    let (from, to) = (from_dir.join("f"), to_dir.join("f"));
    fs::write(&from, b"x").expect("write");
    let ((), ops) = record_ops(|| rename_durable(&from, &to).expect("rename"));
    assert_eq!(
        ops,
        [
            DurableOp::Rename {
                from: from.clone(),
                to: to.clone()
            },
            DurableOp::SyncDir(to_dir),
            DurableOp::SyncDir(from_dir),
        ]
    );
    assert!(to.is_file() && !from.exists());
}
