//! The read side of a journal: stream and global reads, heads, and ledger
//! verification. Usable without the writer (and without the data-directory
//! lock), so operators can read and verify a log that a live engine is
//! writing: SQLite WAL readers see consistent snapshots.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

use crate::config::JournalConfig;
use crate::error::{CorruptDatabase, MigrateError, OpenError, ReadError, StoreError, VerifyError};
use crate::ledger::{check_against_head, ChainVerifier, LedgerMismatch, MismatchKind};
use crate::model::{LedgerHead, RecordedEvent, StreamHead, ZERO_HASH};
use crate::store::sqlite::{
    check_schema, inspect_file, name_damage, open_connection, schema_status, FileState,
    SqliteOptions, SqliteStore, SCHEMA_VERSION,
};
use crate::store::Store;
use crate::validate::{validate_stream_name, Limits};

/// Most events one read call returns.
pub const READ_LIMIT_MAX: usize = 10_000;

/// Events fetched per page while verifying.
const VERIFY_PAGE_EVENTS: usize = 4_096;

/// What `verify` checks.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Only this stream's chain (the global chain is skipped).
    pub stream: Option<String>,
    /// An exported head that must still be present and unchanged.
    pub against: Option<LedgerHead>,
}

/// The outcome of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Events whose hashes were recomputed and matched.
    pub checked: u64,
    /// The global head reached (`None` for an empty log or a stream-only check).
    pub head: Option<LedgerHead>,
}

/// Cheap-to-clone read handle over a store.
pub struct LogReader<S: Store> {
    store: Arc<S>,
    limits: Limits,
}

impl<S: Store> Clone for LogReader<S> {
    fn clone(&self) -> Self {
        LogReader {
            store: Arc::clone(&self.store),
            limits: self.limits.clone(),
        }
    }
}

impl LogReader<SqliteStore> {
    /// Opens a data directory for reading only: no lock, no writer, no
    /// migration. A database at another schema version is refused (run
    /// `ironclad migrate` with the writer stopped), and so is a file that
    /// is empty or holds no Ironclad schema. Only the header and the schema
    /// are checked here, not every page (that is the writer's open): damage
    /// met by a read fails it with `StoreError::CorruptDatabase`.
    pub fn open_sqlite(config: &JournalConfig) -> Result<Self, OpenError> {
        let opts = SqliteOptions::from_config(config);
        if inspect_file(&opts.path)? == FileState::Missing {
            return Err(OpenError::NoDatabase {
                data_dir: config.data_dir.clone(),
            });
        }
        let named = |e| name_damage(e, &opts.path);
        let conn = open_connection(&opts, true).map_err(named)?;
        check_schema(&conn, &opts.path).map_err(named)?;
        let status = schema_status(&conn).map_err(named)?;
        if status.db_version > SCHEMA_VERSION {
            return Err(MigrateError::DatabaseNewer {
                db_version: status.db_version,
                binary_version: SCHEMA_VERSION,
            }
            .into());
        }
        if status.db_version < SCHEMA_VERSION {
            return Err(OpenError::Config(format!(
                "database schema is version {}, this binary reads version {}: run `ironclad migrate` first",
                status.db_version, SCHEMA_VERSION
            )));
        }
        drop(conn);
        Ok(LogReader::new(
            Arc::new(SqliteStore::unmigrated(opts)),
            config.limits.clone(),
        ))
    }
}

impl<S: Store> LogReader<S> {
    /// Wraps a store.
    pub fn new(store: Arc<S>, limits: Limits) -> Self {
        LogReader { store, limits }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// `Err` naming the file and what to do once a read or a write has
    /// found the database damaged (`SQLITE_CORRUPT`, `SQLITE_NOTADB`); it
    /// stays `Err` until the journal is reopened. For readiness probes
    /// (`Journal` derefs here): cheap, never blocks, changes nothing.
    pub fn health(&self) -> Result<(), CorruptDatabase> {
        self.store.health()
    }

    /// Up to `limit` (≤ [`READ_LIMIT_MAX`]) events of `stream` from
    /// `from_version` on. Blocking: call from `spawn_blocking` in async code.
    pub fn read(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        validate_stream_name(stream, &self.limits)?;
        Ok(self
            .store
            .read_stream(stream, from_version.max(1), limit.min(READ_LIMIT_MAX))?)
    }

    /// Up to `limit` (≤ [`READ_LIMIT_MAX`]) events from `from_position` on,
    /// in position order. Blocking.
    pub fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        Ok(self
            .store
            .read_all(from_position.max(1), limit.min(READ_LIMIT_MAX))?)
    }

    /// The stream's head, or `None` if it has no events. Blocking.
    pub fn stream_head(&self, stream: &str) -> Result<Option<StreamHead>, ReadError> {
        validate_stream_name(stream, &self.limits)?;
        Ok(self.store.stream_head(stream)?)
    }

    /// Stream heads sorted by name, after `after` (use `""` to start). Blocking.
    pub fn list_streams(&self, after: &str, limit: usize) -> Result<Vec<StreamHead>, ReadError> {
        Ok(self.store.list_streams(after, limit.min(READ_LIMIT_MAX))?)
    }

    /// The global ledger head. Blocking.
    pub fn ledger_head(&self) -> Result<Option<LedgerHead>, ReadError> {
        Ok(self.store.ledger_head()?)
    }

    /// Recomputes every hash and checks every link; returns the first
    /// mismatch as [`VerifyError::Mismatch`]. `progress` is called with the
    /// running count after each page. Blocking; O(streams) memory.
    pub fn verify(
        &self,
        opts: &VerifyOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport, VerifyError> {
        let mismatch = |m| VerifyError::Mismatch(Box::new(m));
        let (mut verifier, report_head) = match &opts.stream {
            Some(_) if opts.against.is_some() => {
                return Err(VerifyError::Usage(
                    "an exported head pins the global chain, which a single-stream check does not recompute: drop --stream to use --against".into(),
                ));
            }
            Some(s) => {
                validate_stream_name(s, &self.limits)?;
                (ChainVerifier::stream_only(), false)
            }
            None => (ChainVerifier::new(), true),
        };
        let mut next = 1u64;
        loop {
            let page = self.verify_page(&mut verifier, opts.stream.as_deref(), next)?;
            let Some(last) = page.last() else { break };
            next = match &opts.stream {
                Some(_) => last.version + 1,
                None => last.position + 1,
            };
            for ev in &page {
                verifier.check(ev).map_err(mismatch)?;
            }
            progress(verifier.checked());
            if page.len() < VERIFY_PAGE_EVENTS {
                break;
            }
        }
        // Heads are read after the events; if anything was appended in
        // between, a head may legitimately be ahead of the verified chain.
        let quiescent = match &opts.stream {
            Some(_) => true,
            None => {
                self.store.ledger_head()?.map(|h| h.position) == verifier.head().map(|h| h.position)
            }
        };
        self.verify_stream_heads(&verifier, opts.stream.as_deref(), quiescent)?;
        if let Some(head) = &opts.against {
            let found = self.store.event_at(head.position)?;
            check_against_head(head, found.as_ref()).map_err(mismatch)?;
        }
        Ok(VerifyReport {
            checked: verifier.checked(),
            head: if report_head { verifier.head() } else { None },
        })
    }
}

impl<S: Store> LogReader<S> {
    /// The page of events from `next` (a position, or with `stream` a
    /// version) on. If a row in it has a column of the wrong storage class,
    /// the events before that row are checked first, so that the mismatch
    /// returned is still the first one in the chain.
    fn verify_page(
        &self,
        verifier: &mut ChainVerifier,
        stream: Option<&str>,
        next: u64,
    ) -> Result<Vec<RecordedEvent>, VerifyError> {
        let read = |from, limit| match stream {
            Some(s) => self.store.read_stream(s, from, limit),
            None => self.store.read_all(from, limit),
        };
        match read(next, VERIFY_PAGE_EVENTS) {
            Err(StoreError::ColumnType(bad)) => {
                let at = match stream {
                    Some(_) => bad.version.unwrap_or(next),
                    None => bad.position,
                };
                let before = usize::try_from(at.saturating_sub(next)).unwrap_or(0);
                for ev in &read(next, before)? {
                    verifier
                        .check(ev)
                        .map_err(|m| VerifyError::Mismatch(Box::new(m)))?;
                }
                Err(StoreError::ColumnType(bad).into())
            }
            page => Ok(page?),
        }
    }

    /// A head row ahead of the verified chain is legitimate only if appends
    /// landed after the events were read, in which case the event it names
    /// exists and carries its hash (it is verified next time). A head left
    /// pointing at a deleted or altered event is a mismatch.
    fn check_head_ahead(&self, head: &StreamHead) -> Result<(), VerifyError> {
        let found = self
            .store
            .read_stream(&head.stream, head.version, 1)?
            .pop()
            .filter(|e| e.version == head.version);
        match found {
            Some(e) if e.hash == head.hash => Ok(()),
            found => Err(VerifyError::Mismatch(Box::new(LedgerMismatch {
                kind: MismatchKind::StreamHead,
                stream: head.stream.clone(),
                version: head.version,
                position: found.as_ref().map_or(0, |e| e.position),
                expected: format!(
                    "an event at version {} with hash {}",
                    head.version,
                    hex::encode(head.hash)
                ),
                actual: match found {
                    Some(e) => format!("hash {}", hex::encode(e.hash)),
                    None => "no such event".to_string(),
                },
            }))),
        }
    }

    /// The `streams` table must agree with the chains just verified: same
    /// version and hash for every stream, and no stream missing. A head row
    /// can only be *ahead* of the chain if appends landed after the events
    /// were read (never when `quiescent`); such a row must name a real event
    /// with its hash (`check_head_ahead`).
    fn verify_stream_heads(
        &self,
        verifier: &ChainVerifier,
        only: Option<&str>,
        quiescent: bool,
    ) -> Result<(), VerifyError> {
        let mismatch = |m| VerifyError::Mismatch(Box::new(m));
        if let Some(stream) = only {
            let head = self.store.stream_head(stream)?.unwrap_or(StreamHead {
                stream: stream.to_string(),
                version: 0,
                hash: ZERO_HASH,
            });
            if head.version > verifier.stream_version(stream) {
                return self.check_head_ahead(&head);
            }
            return verifier.check_stream_head(&head).map_err(mismatch);
        }
        let mut listed = HashSet::new();
        let mut after = String::new();
        loop {
            let page = self.store.list_streams(&after, VERIFY_PAGE_EVENTS)?;
            for head in &page {
                listed.insert(head.stream.clone());
                if !quiescent && head.version > verifier.stream_version(&head.stream) {
                    self.check_head_ahead(head)?;
                    continue;
                }
                verifier.check_stream_head(head).map_err(mismatch)?;
            }
            match page.last() {
                Some(last) if page.len() == VERIFY_PAGE_EVENTS => after = last.stream.clone(),
                _ => break,
            }
        }
        if let Some((stream, version)) = verifier.streams().find(|(s, _)| !listed.contains(*s)) {
            let missing = StreamHead {
                stream: stream.to_string(),
                version: 0,
                hash: ZERO_HASH,
            };
            let mut m = match verifier.check_stream_head(&missing) {
                Err(m) => m,
                Ok(()) => return Ok(()),
            };
            m.actual = format!("no head row (chain is at version {version})");
            return Err(mismatch(m));
        }
        Ok(())
    }
}

impl From<ReadError> for VerifyError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Invalid(v) => VerifyError::Invalid(v),
            ReadError::Store(s) => s.into(),
        }
    }
}
