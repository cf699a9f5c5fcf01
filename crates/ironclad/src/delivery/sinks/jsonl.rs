//! The JSONL file sink (SPEC §4: "a JSONL file sink that fsyncs"): appends
//! one JSON object per event, one per line, and fsyncs the file before it
//! reports the batch delivered.
//!
//! Each line is the same object as an event in the HTTP webhook's body: the
//! serialized event plus its `idempotency_key` (see `docs/webhook.md`).
//!
//! Delivery is at-least-once. A crash (or a dropped `deliver` future: the
//! blocking write it started still finishes) after the lines are written but
//! before the dispatcher settles the batch sends the batch again, so the
//! file can hold an event's line more than once. Consumers deduplicate on
//! `idempotency_key`. A crash in the middle of a write can leave a torn,
//! unacknowledged last line; the sink starts the next write on a new line,
//! so consumers skip any line that does not parse as JSON. Lines are
//! bounded by the journal's payload and metadata limits.
//!
//! The file I/O is blocking, so it runs on tokio's blocking pool; a mutex
//! keeps concurrent batches from interleaving their lines.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::{event_object_size_hint, write_event_object};
use crate::delivery::classify::Outcome;
use crate::delivery::sink::{Sink, SinkFuture, SinkResponse};
use crate::durable;
use crate::model::RecordedEvent;

/// The JSONL file sink.
#[derive(Debug)]
pub struct JsonlSink {
    name: String,
    path: PathBuf,
    file: Arc<Mutex<OpenFile>>,
}

/// The open file and whether its last line is unterminated.
#[derive(Debug)]
struct OpenFile {
    file: File,
    /// Set when the file may end in a partial line (a torn write before a
    /// crash, or a failed write that could not be undone): the next append
    /// starts with a newline so that its first line stands alone.
    needs_newline: bool,
}

impl JsonlSink {
    /// Opens `path` for appending, creating it if needed (not its
    /// directory). A newly created file and its directory entry are made
    /// durable ([`durable::open_or_create`]), so acknowledged lines cannot
    /// vanish with the whole file after a crash. Blocking: call it at
    /// start-up, not on a runtime thread that must stay responsive.
    pub fn open(name: impl Into<String>, path: impl AsRef<Path>) -> io::Result<JsonlSink> {
        let path = path.as_ref().to_path_buf();
        let mut options = OpenOptions::new();
        options.read(true).append(true);
        let (mut file, _created) = durable::open_or_create(&path, &options)?;
        let needs_newline = !ends_with_newline(&mut file)?;
        Ok(JsonlSink {
            name: name.into(),
            path,
            file: Arc::new(Mutex::new(OpenFile {
                file,
                needs_newline,
            })),
        })
    }

    /// The file this sink appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, events: &'a [RecordedEvent]) -> SinkFuture<'a> {
        Box::pin(async move {
            if events.is_empty() {
                return SinkResponse::delivered();
            }
            let size: usize = events.iter().map(|e| event_object_size_hint(e) + 1).sum();
            let mut lines = Vec::with_capacity(size);
            for event in events {
                if write_event_object(&mut lines, event).is_err() {
                    // Cannot happen for stored events; writing again would
                    // fail the same way.
                    return SinkResponse::failed(
                        Outcome::Permanent,
                        "event could not be serialized",
                    );
                }
                lines.push(b'\n');
            }
            let file = Arc::clone(&self.file);
            let retry = Outcome::Retry {
                retry_after_ms: None,
            };
            match tokio::task::spawn_blocking(move || append_durably(&file, &lines)).await {
                Ok(Ok(())) => SinkResponse::delivered(),
                Ok(Err(e)) => SinkResponse::failed(retry, format!("JSONL write failed: {e}")),
                Err(_) => SinkResponse::failed(retry, "JSONL writer task failed"),
            }
        })
    }
}

/// Appends `lines` and fsyncs them, under the file's lock. On failure the
/// file is truncated back to its previous length where possible, so a
/// half-written batch does not leave a partial line for the next one to
/// continue.
fn append_durably(file: &Mutex<OpenFile>, lines: &[u8]) -> io::Result<()> {
    // A panic while holding the lock cannot leave the state inconsistent in
    // a way that matters: at worst `needs_newline` is stale, and an extra
    // empty line is harmless.
    let mut guard = file.lock().unwrap_or_else(PoisonError::into_inner);
    let state = &mut *guard;
    let len_before = state.file.metadata()?.len();
    let result = (|| {
        if state.needs_newline {
            state.file.write_all(b"\n")?;
        }
        state.file.write_all(lines)?;
        state.file.sync_data()
    })();
    match result {
        Ok(()) => {
            state.needs_newline = false;
            Ok(())
        }
        Err(e) => {
            if state.file.set_len(len_before).is_err() {
                state.needs_newline = true;
            }
            Err(e)
        }
    }
}

/// Whether the file is empty or ends with `\n`.
fn ends_with_newline(file: &mut File) -> io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    // Appends ignore the read position, so moving it is harmless.
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::sinks::tests::event;

    #[tokio::test]
    async fn a_torn_last_line_is_not_continued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, b"{\"torn\":").unwrap();
        let sink = JsonlSink::open("f", &path).unwrap();
        let ev = event(1, "t", "{}");
        assert_eq!(
            sink.deliver(std::slice::from_ref(&ev)).await,
            SinkResponse::delivered()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "{\"torn\":");
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["idempotency_key"], ev.id.to_string());
        assert!(text.ends_with('\n'));
    }

    #[tokio::test]
    async fn a_missing_directory_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = JsonlSink::open("f", dir.path().join("no/such/dir/x.jsonl")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
