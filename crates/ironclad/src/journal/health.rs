//! Whether the journal's writes succeed now, for readiness probes and for
//! shutdown (`docs/api-admin.md`, "Readiness").
//!
//! The rule: the latest write decides. A group commit, a state write or a
//! write probe that fails (a full disk, an I/O error, a read-only file
//! system, …) marks writes failing, naming the error; the next one that
//! succeeds clears it. While writes fail, the writer thread runs a probe
//! write whenever it has been idle for [`WRITE_PROBE_INTERVAL`], so an
//! idle journal (one a load balancer stopped sending appends to because it
//! was unready) still notices that room came back.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::StoreError;

/// How long the writer waits idle, while writes are failing, before it
/// probes the store again.
pub(crate) const WRITE_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The outcome of the latest write, shared by the writer thread (which
/// records it) and the journal's handles (which read it).
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    failing: Mutex<Option<Arc<StoreError>>>,
}

impl WriteHealth {
    /// A write failed with `e`: writes are failing until one succeeds.
    pub(crate) fn failed(&self, e: &Arc<StoreError>) {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if failing.is_none() {
            tracing::error!(error = %e, "writes are failing: the journal reports unready until a write succeeds");
        }
        *failing = Some(Arc::clone(e));
    }

    /// A write succeeded: writes are healthy again.
    pub(crate) fn succeeded(&self) {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if failing.take().is_some() {
            tracing::info!("writes succeed again: the journal reports ready");
        }
    }

    /// The error of the latest write, if it failed.
    pub(crate) fn failing(&self) -> Option<Arc<StoreError>> {
        self.failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
