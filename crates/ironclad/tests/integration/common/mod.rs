//! Helpers shared by the integration tests: temp data directories, configs,
//! full-log reads, the structural invariants every test re-checks (contiguous
//! versions, unique ids and positions, a verifying ledger), a way to hold the
//! SQLite write lock from outside, and the re-exec trick for child processes.
//!
//! Each test binary compiles this module separately and uses only part of it.
#![allow(dead_code)]

pub mod accounting;
pub mod flaky;
pub mod receiver;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ironclad::{
    Durability, Journal, JournalConfig, LogReader, RecordedEvent, VerifyOptions, VerifyReport,
    READ_LIMIT_MAX,
};
use tempfile::TempDir;

/// A fresh temporary directory; the data directory lives inside it.
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("ironclad-test-")
        .tempdir()
        .expect("create temp dir")
}

/// The data directory used inside a temp dir.
pub fn data_dir(tmp: &TempDir) -> PathBuf {
    tmp.path().join("data")
}

/// Default configuration (fsync durability) for `dir`.
pub fn config(dir: &Path) -> JournalConfig {
    JournalConfig::new(dir)
}

/// Configuration with `os` durability: for tests where fsync is not the point.
pub fn fast_config(dir: &Path) -> JournalConfig {
    JournalConfig::new(dir).durability(Durability::Os)
}

/// The SQLite file of a data directory.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("ironclad.db")
}

/// Opens a journal, panicking with the error's message on failure.
pub fn open(cfg: JournalConfig) -> Journal {
    match Journal::open(cfg) {
        Ok(j) => j,
        Err(e) => panic!("Journal::open failed: {e}"),
    }
}

/// Shuts a journal down, asserting success.
pub async fn shutdown(journal: &Journal) {
    journal
        .shutdown(Duration::from_secs(60))
        .await
        .expect("shutdown");
}

/// Every event in the log, in position order (pages through `read_all`).
pub fn read_everything<S: ironclad::store::Store>(reader: &LogReader<S>) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    let mut next = 1u64;
    loop {
        let page = reader.read_all(next, READ_LIMIT_MAX).expect("read_all");
        let Some(last) = page.last() else { break };
        next = last.position + 1;
        let full = page.len() == READ_LIMIT_MAX;
        out.extend(page);
        if !full {
            break;
        }
    }
    out
}

/// Summary of a log that passed [`check_log_structure`].
#[derive(Debug, Default)]
pub struct LogSummary {
    /// Last version per stream.
    pub stream_versions: HashMap<String, u64>,
    /// id -> (stream, version, position)
    pub by_id: HashMap<uuid::Uuid, (String, u64, u64)>,
}

/// Checks, for events in position order: positions strictly increase, ids and
/// positions are unique, and every stream's versions are exactly 1, 2, 3, …
/// in position order.
pub fn check_log_structure(events: &[RecordedEvent]) -> LogSummary {
    let mut summary = LogSummary::default();
    let mut positions = HashSet::new();
    let mut last_position = 0u64;
    for ev in events {
        assert!(
            ev.position > last_position,
            "positions must strictly increase: {} after {}",
            ev.position,
            last_position
        );
        last_position = ev.position;
        assert!(
            positions.insert(ev.position),
            "duplicate position {}",
            ev.position
        );
        let v = summary
            .stream_versions
            .entry(ev.stream.clone())
            .or_insert(0);
        assert_eq!(
            ev.version,
            *v + 1,
            "stream {:?}: version {} follows {} (position {})",
            ev.stream,
            ev.version,
            v,
            ev.position
        );
        *v = ev.version;
        let prev = summary
            .by_id
            .insert(ev.id, (ev.stream.clone(), ev.version, ev.position));
        assert!(prev.is_none(), "duplicate id {}", ev.id);
    }
    summary
}

/// Checks that each stream's head (as the store reports it) matches the
/// last version seen in the events.
pub fn check_stream_heads<S: ironclad::store::Store>(reader: &LogReader<S>, summary: &LogSummary) {
    for (stream, version) in &summary.stream_versions {
        let head = reader
            .stream_head(stream)
            .expect("stream_head")
            .unwrap_or_else(|| panic!("stream {stream:?} has events but no head"));
        assert_eq!(head.version, *version, "head of {stream:?}");
    }
}

/// Runs a full ledger verification and asserts it passes.
pub fn verify_ok<S: ironclad::store::Store>(reader: &LogReader<S>) -> VerifyReport {
    match reader.verify(&VerifyOptions::default(), &mut |_| {}) {
        Ok(r) => r,
        Err(e) => panic!("ledger does not verify: {e}"),
    }
}

/// Opens a plain rusqlite connection to a data directory's database.
pub fn raw_connection(dir: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db_path(dir)).expect("open sqlite");
    conn.busy_timeout(Duration::from_secs(30))
        .expect("busy_timeout");
    conn
}

/// Holds SQLite's write lock from a separate connection until dropped (or
/// `release`d), so the journal's writer blocks in `BEGIN IMMEDIATE` while a
/// test fills the queue deterministically.
pub struct WriteLock {
    conn: Option<rusqlite::Connection>,
}

impl WriteLock {
    /// Takes the lock on the database of data directory `dir`.
    pub fn acquire(dir: &Path) -> WriteLock {
        let conn = raw_connection(dir);
        conn.execute_batch("BEGIN EXCLUSIVE")
            .expect("BEGIN EXCLUSIVE");
        WriteLock { conn: Some(conn) }
    }

    /// Releases the lock (rolls back the empty transaction).
    pub fn release(mut self) {
        self.release_inner();
    }

    fn release_inner(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.execute_batch("ROLLBACK").expect("ROLLBACK");
        }
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

/// Re-runs this test binary so that only test `name` runs, as a child
/// process with `env` set. The named test must do nothing unless its env
/// var is present. stdout is piped, stdin is closed, stderr is inherited.
pub fn spawn_self(name: &str, env: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child test process")
}
