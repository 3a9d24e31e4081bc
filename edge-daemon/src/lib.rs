//! Trellis edge daemon: the ground station that sits beside the radios.
//!
//! Data flows link → frame → router → vehicle state → store; see ARCHITECTURE.md.

pub mod api;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dialect;
pub mod frame;
pub mod ingest;
pub mod link;
pub mod live;
pub mod router;
pub mod sim;
pub mod store;
pub mod survey;
pub mod sync;
pub mod tokens;
pub mod vehicle;
