//! Trellis edge daemon: the ground station that sits beside the radios.
//!
//! Data flows link → frame → router → vehicle state → store; the station's own MAVLink
//! component (`gcs`) answers back through the router. See ARCHITECTURE.md.

pub mod api;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dialect;
pub mod frame;
// ArduPilot takes data-stream requests only as REQUEST_DATA_STREAM, and older firmware
// answers only the superseded request commands, all marked deprecated in the dialect.
#[allow(deprecated)]
pub mod gcs;
pub mod ingest;
pub mod link;
pub mod live;
pub mod memory;
pub mod planner;
pub mod profile;
pub mod router;
pub mod signing;
pub mod sim;
pub mod store;
pub mod survey;
pub mod sync;
pub mod tokens;
pub mod vehicle;
