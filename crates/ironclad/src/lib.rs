//! Ironclad: a durable event log with group commit, idempotent appends,
//! expected-version checks and a tamper-evident ledger.
//!
//! Start at [`Journal::open`]. Everything that decides lives in the pure
//! `ironclad-core` crate, re-exported here. The contract is `docs/spec.md`;
//! how the pieces fit
//! is in `ARCHITECTURE.md`; the on-disk format is in `docs/design.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ironclad::{ExpectedVersion, Journal, JournalConfig, NewEvent};
//! let journal = Journal::open(JournalConfig::new("./ironclad-data"))?;
//! let ack = journal
//!     .append("orders-1", ExpectedVersion::NoStream, vec![NewEvent::new("order.placed", r#"{"total":42}"#)])
//!     .await?;
//! println!("durable at position {}", ack.events[0].position);
//! journal.shutdown(std::time::Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod clock;
pub mod config;
pub mod delivery;
pub mod durable;
pub mod emergency;
pub mod error;
pub mod journal;
pub mod lockfile;
pub mod metrics;
pub mod store;
pub mod toml_error;

/// The decision core's modules, under the paths they had before they moved
/// to `ironclad-core`, so `ironclad::model::…` and friends keep working.
pub use ironclad_core::{expected, hash, ledger, model, validate};

pub use config::{Durability, JournalConfig};
pub use error::{
    AppendError, ColumnTypeError, ControlError, CorruptDatabase, DiskFull, MigrateError, OpenError,
    ReadError, ReplayError, StoreError, Unhealthy, VerifyError,
};
pub use expected::WrongExpectedVersion;
pub use journal::{
    AppendTicket, Journal, LogReader, ReplayOptions, ReplayReport, VerifyOptions, VerifyReport,
    READ_LIMIT_MAX,
};
pub use ledger::{LedgerMismatch, MismatchKind};
pub use model::{
    AppendResult, AppendStatus, EventAck, ExpectedVersion, LedgerHead, NewEvent, Op, RecordedEvent,
    StreamHead,
};
pub use validate::{Limits, ValidationError};
