//! Journal configuration: durability, queue and batch bounds, limits.
//!
//! Every bound has a default and a check in [`JournalConfig::check`], so a bad
//! configuration fails at `open` with a message rather than misbehaving later.

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::OpenError;
use crate::validate::Limits;

/// Largest allowed `limits.payload_bytes_max`: well under SQLite's 1 GB
/// string limit, so no single value can make a commit fail.
pub const PAYLOAD_BYTES_LIMIT: usize = 256 * 1024 * 1024;
/// Largest append, in queued bytes (`NewEvent::queued_bytes`, strings
/// counted JSON-escaped), whatever `queue_bytes_max` allows: room for one
/// largest payload and its envelope. An append is one line of an emergency
/// dump, so the dump's line limit is derived from this
/// (`emergency::DUMP_LINE_BYTES_MAX`): every accepted append can be dumped
/// and replayed.
pub const APPEND_BYTES_LIMIT: usize = PAYLOAD_BYTES_LIMIT + 64 * 1024;
/// Largest allowed `busy_timeout_ms`.
pub const BUSY_TIMEOUT_MS_LIMIT: u64 = 600_000;
/// Largest allowed `commit_delay_us_max`.
pub const COMMIT_DELAY_US_LIMIT: u64 = 1_000_000;

/// What an acknowledgement promises (SPEC §2; README has the full table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Acknowledge after the commit is fsynced: survives power loss.
    /// SQLite: WAL with `synchronous=FULL`.
    #[default]
    Fsync,
    /// Acknowledge after the commit reaches the OS: survives a process crash,
    /// not power loss. SQLite: WAL with `synchronous=NORMAL`.
    Os,
}

impl Durability {
    /// The name users write (`fsync`, `os`), as in configuration files and
    /// on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Os => "os",
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fsync" => Ok(Durability::Fsync),
            "os" => Ok(Durability::Os),
            other => Err(format!(
                "unknown durability {other:?}: use \"fsync\" or \"os\""
            )),
        }
    }
}

/// Everything [`crate::Journal::open`] needs.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// The data directory; created if missing. Holds `ironclad.db` and `LOCK`.
    pub data_dir: PathBuf,
    /// Acknowledgement durability.
    pub durability: Durability,
    /// Input limits.
    pub limits: Limits,
    /// Most events waiting in the ingest queue.
    pub queue_events_max: usize,
    /// Most bytes waiting in the ingest queue. One append may hold at most
    /// this many, and never more than [`APPEND_BYTES_LIMIT`].
    pub queue_bytes_max: usize,
    /// Most events in one group commit.
    pub commit_events_max: usize,
    /// Most bytes in one group commit.
    pub commit_bytes_max: usize,
    /// How long the writer lingers for more work before committing a batch
    /// that is not yet full. 0 = commit as soon as the queue is empty.
    pub commit_delay_us_max: u64,
    /// Most idle reader connections kept open.
    pub read_connections_max: usize,
    /// SQLite busy timeout.
    pub busy_timeout_ms: u64,
    /// Most stream heads cached by the writer before the cache is reset.
    pub stream_cache_entries_max: usize,
    /// Pauses before each retry of a failed commit of `submit()`ted appends;
    /// after the last, they go to an emergency dump. At most 10 entries of at
    /// most 60 s each.
    pub submit_retry_delays_ms: Vec<u64>,
}

impl JournalConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        JournalConfig {
            data_dir: data_dir.into(),
            durability: Durability::Fsync,
            limits: Limits::default(),
            queue_events_max: 65_536,
            queue_bytes_max: 256 * 1024 * 1024,
            commit_events_max: 16_384,
            commit_bytes_max: 32 * 1024 * 1024,
            commit_delay_us_max: 0,
            read_connections_max: 8,
            busy_timeout_ms: 5_000,
            stream_cache_entries_max: 100_000,
            submit_retry_delays_ms: vec![10, 100, 1_000],
        }
    }

    /// Sets durability (builder style).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The SQLite database file inside the data directory.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("ironclad.db")
    }

    /// The most queued bytes one append may hold: the queue's capacity,
    /// capped at [`APPEND_BYTES_LIMIT`].
    pub fn append_bytes_max(&self) -> usize {
        self.queue_bytes_max.min(APPEND_BYTES_LIMIT)
    }

    /// Rejects bounds that could never admit an append or would deadlock.
    pub fn check(&self) -> Result<(), OpenError> {
        let bad = |what: &str| Err(OpenError::Config(what.to_string()));
        if self.queue_events_max == 0 || self.commit_events_max == 0 {
            return bad("queue_events_max and commit_events_max must be at least 1");
        }
        if self.limits.events_per_append_max > self.queue_events_max {
            return bad("limits.events_per_append_max must not exceed queue_events_max, or a full-size append could never be queued");
        }
        if self.queue_bytes_max < self.limits.payload_bytes_max + 64 * 1024 {
            return bad("queue_bytes_max must exceed payload_bytes_max by at least 64 KiB, or a single largest event could never be queued");
        }
        if self.limits.payload_bytes_max > PAYLOAD_BYTES_LIMIT {
            return bad("limits.payload_bytes_max must be at most 256 MiB: SQLite refuses values near 1 GB, which would fail every append in the same commit");
        }
        if self.busy_timeout_ms > BUSY_TIMEOUT_MS_LIMIT {
            return bad("busy_timeout_ms must be at most 600000 (10 minutes)");
        }
        if self.commit_delay_us_max > COMMIT_DELAY_US_LIMIT {
            return bad("commit_delay_us_max must be at most 1000000 (1 second): it delays every acknowledgement");
        }
        if self.submit_retry_delays_ms.len() > 10
            || self.submit_retry_delays_ms.iter().any(|ms| *ms > 60_000)
        {
            return bad("submit_retry_delays_ms takes at most 10 pauses of at most 60000 ms each: they stall the writer while the store is failing");
        }
        if u32::try_from(self.queue_bytes_max).is_err()
            || u32::try_from(self.queue_events_max).is_err()
        {
            return bad("queue_events_max and queue_bytes_max must each be below 4 GiB");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_that_could_hang_panic_or_fail_a_batch_are_refused() {
        let ok = JournalConfig::new("d");
        assert!(ok.check().is_ok());
        let mut big = ok.clone();
        big.limits.payload_bytes_max = PAYLOAD_BYTES_LIMIT + 1;
        big.queue_bytes_max = 1 << 31;
        let mut busy = ok.clone();
        busy.busy_timeout_ms = u64::from(u32::MAX);
        let mut linger = ok.clone();
        linger.commit_delay_us_max = u64::MAX;
        for (cfg, needle) in [
            (big, "payload_bytes_max"),
            (busy, "busy_timeout_ms"),
            (linger, "commit_delay_us_max"),
        ] {
            match cfg.check() {
                Err(OpenError::Config(msg)) => assert!(msg.contains(needle), "{msg}"),
                other => panic!("{needle}: expected a config error, got {other:?}"),
            }
        }
    }
}
