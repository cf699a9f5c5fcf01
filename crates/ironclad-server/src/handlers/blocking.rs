//! The one way handlers run blocking work (store reads, file-system
//! scans): on tokio's blocking pool, never on the async workers, so a slow
//! disk cannot stall other requests.

use crate::error::{ApiError, ErrorCode};

/// Runs `f` on the blocking pool. A panic in it is an `internal` error,
/// not a crashed server.
pub async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("the blocking task failed: {e}; retry"),
        )
    })?
}
