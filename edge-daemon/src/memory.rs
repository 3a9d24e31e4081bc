//! Keeping the station's resident memory near what it uses (SPEC §8: ≤ 20 MB on a Pi).
//!
//! glibc's malloc gives threads that allocate at the same time arenas of their own, up to
//! eight per core, and keeps what is freed in them for reuse. The station's allocations are
//! bursty: a catch-up holds batches of 16,384 rows and a compressor on blocking-pool threads
//! for a few seconds, then lets them go. With the default arenas that left some 20 MB
//! resident for good (the footprint bench: 13.7 MB of anonymous memory before a catch-up,
//! 33.3 MB after it). Two arenas are enough for two busy threads at a time (the ingest loop
//! and the store writer); what a burst freed is handed back to the kernel by a periodic trim.
//! That brought it to 18.7 MB; the 7–12 MB still left after a catch-up sit in the second arena
//! where a trim cannot reach them (BENCHMARKS.md, footprint). Both are glibc's: elsewhere
//! (musl) these are no-ops.

use std::time::Duration;

/// How often freed memory is handed back. A trim walks the free lists, well under a
/// millisecond for the station's heap.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Caps malloc's arenas. Call before the runtime starts threads: an arena, once made, stays.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tunable; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands memory freed since the last call back to the kernel, every [`TRIM_EVERY`], for as
/// long as the runtime runs.
pub fn spawn_trim() {
    tokio::spawn(async {
        let mut every = tokio::time::interval(TRIM_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            trim();
        }
    });
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes malloc's own locks; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
