//! Trellis cloud relay: receives what ground stations sync, merges it per organization, and
//! serves HQ. See ARCHITECTURE.md and sync-protocol/PROTOCOL.md.

pub mod config;
pub mod geo;
pub mod hq;
pub mod live;
pub mod pki_files;
pub mod relay;
pub mod server;
pub mod store;
