//! Tests for the DLQ archive: round trip, durability path, damaged files,
//! naming and listing.

use std::io::Write as _;

use super::*;

fn entry(sink: &str, position: u64) -> ArchivedDlqEntry {
    ArchivedDlqEntry {
        sink: sink.to_string(),
        position,
        event_id: Uuid::now_v7(),
        attempts: 15,
        first_failure_unix_ms: 1_700_000_000_000,
        last_failure_unix_ms: 1_700_000_360_000,
        last_error: "HTTP 503: \"unavailable\"\nretry later".to_string(),
        reason: "max_attempts".to_string(),
        archived_unix_ms: 1_700_600_000_000,
        archive_cause: "expired".to_string(),
        event: position.is_multiple_of(2).then(|| {
            raw(&format!(
                r#"{{"stream":"orders-1","payload":{{"total":{position}.50,"big":1e999999,"s":"ü"}}}}"#
            ))
        }),
    }
}

/// An archived event from its JSON text.
fn raw(text: &str) -> ArchivedEvent {
    ArchivedEvent(RawValue::from_string(text.to_string()).expect("valid JSON"))
}

fn corrupt(err: Result<Vec<ArchivedDlqEntry>, ArchiveError>) {
    match err {
        Err(ArchiveError::Corrupt { .. }) => {}
        other => panic!("expected a corrupt-archive error, got {other:?}"),
    }
}

#[test]
fn round_trip_and_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(
        list_archives(dir.path()).expect("list").is_empty(),
        "no dir yet"
    );
    let entries: Vec<ArchivedDlqEntry> = (0u64..50)
        .map(|i| entry(if i.is_multiple_of(3) { "a" } else { "b" }, i))
        .collect();
    let path = write_archive(dir.path(), &entries, 1_700_600_000_000)
        .expect("write")
        .expect("a file");
    assert_eq!(path.parent(), Some(archive_dir(dir.path()).as_path()));
    assert_eq!(read_archive(&path).expect("read"), entries);
    // Really gzip: the magic bytes.
    let bytes = fs::read(&path).expect("read raw");
    assert_eq!(&bytes[..2], &[0x1f, 0x8b]);

    write_archive(dir.path(), &[entry("a", 99)], 1_700_600_000_001).expect("write");
    assert_eq!(count_archived(dir.path(), "a").expect("count"), 18);
    assert_eq!(count_archived(dir.path(), "b").expect("count"), 33);
    assert_eq!(count_archived(dir.path(), "c").expect("count"), 0);
}

#[test]
fn nothing_to_archive_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(write_archive(dir.path(), &[], 1).expect("ok"), None);
    assert!(!archive_dir(dir.path()).exists());
}

#[test]
fn the_archive_survives_and_creates_missing_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A data directory that does not exist yet: created, and its parent
    // fsynced, on the way.
    let data = dir.path().join("data");
    let path = write_archive(&data, &[entry("s", 1)], 5)
        .expect("write")
        .expect("a file");
    assert!(path.is_file());
    // No temp file is left behind, and a fresh handle (as after a restart)
    // reads back the entry.
    let names: Vec<String> = fs::read_dir(archive_dir(&data))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(!names[0].ends_with(".tmp"));
    assert_eq!(read_archive(&path).expect("read").len(), 1);
}

#[test]
fn names_sort_by_time_and_never_collide() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut written = Vec::new();
    for now in [1_000, 1_000, 1_000, 999, 20_000_000_000_000] {
        let p = write_archive(dir.path(), &[entry("s", now)], now)
            .expect("write")
            .expect("a file");
        written.push((now, p));
    }
    let listed = list_archives(dir.path()).expect("list");
    assert_eq!(listed.len(), 5, "no collision");
    let times: Vec<u64> = listed.iter().map(|f| f.written_unix_ms).collect();
    assert_eq!(times, [999, 1_000, 1_000, 1_000, 20_000_000_000_000]);
    // Within one millisecond, write order.
    let same_ms: Vec<&PathBuf> = written.iter().take(3).map(|(_, p)| p).collect();
    let listed_same: Vec<&PathBuf> = listed[1..4].iter().map(|f| &f.path).collect();
    assert_eq!(listed_same, same_ms);
    assert!(listed.iter().all(|f| f.bytes > 0));
}

#[test]
fn listing_ignores_temp_and_foreign_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_archive(dir.path(), &[entry("s", 1)], 7)
        .expect("write")
        .expect("a file");
    let adir = archive_dir(dir.path());
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    for junk in [
        format!("{name}.tmp"),
        "dlq-x.jsonl.gz".to_string(),
        "dlq-123-abc.jsonl.gz".to_string(),
        "notes.txt".to_string(),
    ] {
        fs::write(adir.join(junk), b"junk").expect("write junk");
    }
    fs::create_dir(adir.join(format!("dlq-{:020}-dir.jsonl.gz", 1))).expect("mkdir");
    let listed = list_archives(dir.path()).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].path, path);
    assert_eq!(listed[0].written_unix_ms, 7);
    assert_eq!(count_archived(dir.path(), "s").expect("count"), 1);
}

#[test]
fn damaged_files_are_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries: Vec<ArchivedDlqEntry> = (0..200).map(|i| entry("s", i)).collect();
    let path = write_archive(dir.path(), &entries, 1)
        .expect("write")
        .expect("a file");
    let good = fs::read(&path).expect("read");
    let damaged = dir.path().join("damaged.jsonl.gz");

    // Truncated at many points, the trailer (CRC, length) included.
    for cut in [1, 5, 10, 20, good.len() / 2, good.len() - 8, good.len() - 1] {
        fs::write(&damaged, &good[..cut]).expect("write");
        corrupt(read_archive(&damaged));
    }
    // Not gzip at all.
    fs::write(&damaged, b"{\"sink\":\"s\"}\n").expect("write");
    corrupt(read_archive(&damaged));
    // A flipped checksum byte.
    let mut bad_crc = good.clone();
    let at = bad_crc.len() - 6;
    bad_crc[at] ^= 0xff;
    fs::write(&damaged, &bad_crc).expect("write");
    corrupt(read_archive(&damaged));
    // Garbage in the compressed body (after the 10-byte header, before the
    // last deflate byte, whose padding bits decoders ignore): a typed error
    // from the decoder, the JSON or the CRC, never a panic.
    for at in (10..good.len() - 9).step_by(37) {
        let mut flipped = good.clone();
        flipped[at] ^= 0x55;
        fs::write(&damaged, &flipped).expect("write");
        let err = read_archive(&damaged).expect_err("damage is detected");
        assert!(
            matches!(
                err,
                ArchiveError::Corrupt { .. } | ArchiveError::BadLine { .. }
            ),
            "{err}"
        );
    }
    // An empty file is not an archive either.
    fs::write(&damaged, b"").expect("write");
    corrupt(read_archive(&damaged));
    // Missing file: an I/O error naming it.
    let missing = read_archive(&dir.path().join("gone.jsonl.gz")).unwrap_err();
    assert!(matches!(missing, ArchiveError::Io { .. }), "{missing}");
}

#[test]
fn a_bad_line_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hand.jsonl.gz");
    let line = serde_json::to_string(&entry("s", 1)).expect("json");
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    write!(gz, "{line}\n\n{line}\n{{\"sink\":1}}\n").expect("write");
    fs::write(&path, gz.finish().expect("finish")).expect("write");
    match read_archive(&path) {
        Err(ArchiveError::BadLine { line: 4, .. }) => {}
        other => panic!("expected a bad line 4, got {other:?}"),
    }
}

#[test]
fn an_unwritable_directory_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join(ARCHIVE_DIR), b"a file, not a dir").expect("write");
    let err = write_archive(dir.path(), &[entry("s", 1)], 1).unwrap_err();
    assert!(matches!(err, ArchiveError::Io { .. }), "{err}");
    assert!(err.to_string().contains("check free space"));
}

#[test]
fn events_read_back_verbatim_and_old_archives_still_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries: Vec<ArchivedDlqEntry> = (0..4).map(|i| entry("s", i)).collect();
    let path = write_archive(dir.path(), &entries, 1)
        .expect("write")
        .expect("a file");
    let back = read_archive(&path).expect("read");
    let text = back[0].event.as_ref().expect("an event").get();
    assert_eq!(
        text, r#"{"stream":"orders-1","payload":{"total":0.50,"big":1e999999,"s":"ü"}}"#,
        "number spelling and key order kept"
    );
    // Archives written before events were kept verbatim: `event` re-encoded
    // through `serde_json::Value`, `null`, or absent.
    let old = |event: Option<serde_json::Value>| {
        let mut line = serde_json::to_value(entry("s", 7)).expect("json");
        let fields = line.as_object_mut().expect("an object");
        match event {
            Some(event) => fields.insert("event".into(), event),
            None => fields.remove("event"),
        };
        line.to_string()
    };
    let lines = [
        old(Some(serde_json::json!({"id": "x", "payload": {"a": 2.5}}))),
        old(Some(serde_json::Value::Null)),
        old(None),
    ];
    let hand = dir.path().join("old.jsonl.gz");
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    writeln!(gz, "{}", lines.join("\n")).expect("write");
    fs::write(&hand, gz.finish().expect("finish")).expect("write");
    let back = read_archive(&hand).expect("old archives read");
    let events: Vec<Option<&str>> = back
        .iter()
        .map(|e| e.event.as_ref().map(ArchivedEvent::get))
        .collect();
    assert_eq!(
        events,
        [Some(r#"{"id":"x","payload":{"a":2.5}}"#), None, None]
    );
}

#[test]
fn line_bytes_are_what_the_file_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries: Vec<ArchivedDlqEntry> = (0..5).map(|i| entry("s", i)).collect();
    let want: u64 = entries
        .iter()
        .map(|e| entry_line_bytes(e).expect("bytes"))
        .sum();
    let path = write_archive(dir.path(), &entries, 1)
        .expect("write")
        .expect("a file");
    let mut text = Vec::new();
    MultiGzDecoder::new(File::open(&path).expect("open"))
        .read_to_end(&mut text)
        .expect("gunzip");
    assert_eq!(text.len() as u64, want);
}

#[test]
fn a_line_reading_would_refuse_is_never_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut big = entry("s", 1);
    big.last_error = "x".repeat(ARCHIVE_LINE_BYTES_MAX);
    let err = write_archive(dir.path(), &[entry("s", 0), big], 1).unwrap_err();
    assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("nothing was archived or deleted"));
    assert!(
        list_archives(dir.path()).expect("list").is_empty(),
        "no archive, and no temporary file left"
    );
    let left = fs::read_dir(archive_dir(dir.path()))
        .expect("readdir")
        .count();
    assert_eq!(left, 0);
}
