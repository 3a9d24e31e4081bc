//! Trellis cloud relay: receives what ground stations sync, merges it per organization, and
//! serves HQ. See ARCHITECTURE.md and sync-protocol/PROTOCOL.md.

pub mod cluster;
pub mod config;
pub mod geo;
pub mod hq;
pub mod live;
pub mod pki_files;
pub mod relay;
pub mod server;
pub mod store;

/// Wall-clock microseconds since the Unix epoch (0 if the clock is before it): the relay's
/// timestamps for enrolments, receipts and HQ's edits.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
