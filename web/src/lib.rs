//! What the station and the relay share at their edges, so that both behave the same way.
//!
//! The HTTP layer: one error shape and status table ([`ApiError`]), one way to carry and
//! check a bearer token ([`auth`]), one limit on guessing tokens
//! ([`auth::FailedSignIns`]), one reading of times and ranges ([`time`]) and of pagination
//! ([`page`]), one JSON shape of a telemetry sample ([`SampleView`]), the shared parts of both
//! OpenAPI documents ([`openapi`]), and serving itself, HTTP or HTTPS ([`serve`]). The web app
//! both serve,
//! embedded ([`assets`]). And life under systemd
//! ([`lifecycle`]): signals, STOPPING, the watchdog.
//!
//! It knows nothing of either daemon's store or roles: each daemon maps its own errors into
//! [`ApiError`] and its own token book onto [`auth::bearer`].

pub mod assets;
pub mod auth;
mod error;
pub mod lifecycle;
pub mod openapi;
pub mod page;
mod sample;
pub mod serve;
pub mod time;

pub use error::{ApiError, ErrorBody, Json, Path, Query};
pub use sample::SampleView;
