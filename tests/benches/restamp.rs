//! `restamp`: how long the store writer is busy moving history onto the right time when a
//! station that started on an unsynchronised clock (a Pi without a real-time clock) first
//! learns the time: every sample, raw-frame chunk and event of the run so far is shifted in one
//! transaction (`store/restamp.rs`), during which ingest queues behind the writer.
//!
//! The store is filled the way the daemon fills it: 50 simulated copters' frames (ArduPilot's
//! mix: positions, attitude, GPS, system time, ...) through the ingest loop for
//! `RESTAMP_MINUTES` (default 10) of flight, each second of flight fed as fast as it goes.

use std::time::Instant;

use edge_daemon::clock::{Adjustment, Restamp, TimeSource};
use edge_daemon::frame::Frame;
use edge_daemon::sim::fleet_frames;
use edge_daemon::store::{Store, StoreConfig};
use edge_daemon::survey::LatLon;

#[allow(dead_code)]
mod common;

/// `fleet_frames` flies this many seconds.
const MIX_SECONDS: f64 = 120.0;

fn main() {
    let minutes: f64 = std::env::var("RESTAMP_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10.0);
    let origin = LatLon {
        lat: 38.2919,
        lon: -122.4580,
    };
    let mix = fleet_frames(origin, common::VEHICLES, MIX_SECONDS);
    let total = (mix.len() as f64 * minutes * 60.0 / MIX_SECONDS) as usize;
    let frames: Vec<&Frame> = mix.iter().cycle().take(total).collect();

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("store");
    common::ingest_all(&store, &frames);
    let status = store.status_view();
    let db_mb = std::fs::metadata(store.path()).map_or(0, |m| m.len()) as f64 / 1e6;

    // Everything stored so far moves by 26 years, as on a Pi that booted at 2000.
    let start = Instant::now();
    store
        .sender()
        .send_time(Adjustment {
            base: store.time_base(),
            restamp: Some(Restamp {
                since_us: 0,
                shift_us: 850_000_000_000_000,
                source: TimeSource::Gps,
            }),
        })
        .expect("send");
    store.flush().expect("durable");
    let busy = start.elapsed();
    println!(
        "{minutes} min of {} copters: {} frames, {} samples, database {db_mb:.1} MB",
        common::VEHICLES,
        status.committed_frames,
        status.committed_samples
    );
    println!(
        "FIGURE restamp {:.2} s writer busy ({:.1} µs a sample)",
        busy.as_secs_f64(),
        busy.as_micros() as f64 / status.committed_samples.max(1) as f64
    );
}
