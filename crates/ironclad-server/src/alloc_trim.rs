//! Giving memory freed by large request bodies back to the operating
//! system.
//!
//! glibc's malloc keeps freed memory in its arenas for reuse: after 64
//! concurrent 8 MB appends the server's RSS stayed at about 450 MiB
//! although nothing held those buffers any more, and `malloc_trim(0)` took
//! it to about 95 MiB (BENCHMARKS.md, "Memory under concurrent large
//! appends"). So the body budget ([`crate::body_budget`]) asks for a trim
//! when its reservations fall back to zero after at least
//! [`TRIM_AFTER_BYTES`] of bodies were released since the last one: once
//! a burst of large requests is over, not on every request, and never two
//! at once. The trim runs on tokio's blocking pool.
//!
//! Other allocators return memory on their own, and other C libraries have
//! no `malloc_trim`: there this does nothing.

use std::time::Instant;

/// Body bytes released since the last trim before another is worth its
/// cost (a walk over malloc's free lists).
pub const TRIM_AFTER_BYTES: usize = 64 * 1024 * 1024;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    /// glibc: returns free memory at the top of every arena, and whole free
    /// pages inside them, to the kernel. Returns 1 if any was released.
    fn malloc_trim(pad: usize) -> std::ffi::c_int;
}

/// Returns memory malloc holds free to the operating system, where the C
/// library can (glibc); `false` where it cannot or nothing was returned.
pub fn release_freed_memory() -> bool {
    let started = Instant::now();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and has no preconditions; it
    // takes each arena's lock, so it is safe while other threads allocate.
    let released = unsafe { malloc_trim(0) } == 1;
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let released = false;
    tracing::debug!(
        released,
        took_us = started.elapsed().as_micros() as u64,
        "malloc trim after large request bodies"
    );
    released
}
