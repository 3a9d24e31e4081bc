//! The simulated fleet: ArduPilot-like copters surveying vineyard blocks, speaking MAVLink over
//! any endpoint the daemon itself supports (it reuses the daemon's link layer, so the simulator
//! exercises serial, UDP and TCP exactly as a real radio would).
//!
//! All vehicles share one link, as drones on one radio network do; frames addressed to a
//! system reach only that copter.

mod copter;

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

pub use copter::{Copter, CopterConfig};

use crate::clock::system_now_us;
use crate::frame::{Frame, Version};
use crate::link::{self, Endpoint, LinkConfig, Links};
use crate::survey::{from_local_m, LatLon};

/// Physics and telemetry step.
const STEP: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub endpoint: Endpoint,
    pub vehicles: u8,
    pub first_sysid: u8,
    pub telemetry_hz: f64,
    pub auto_fly: bool,
    /// Corner of the vineyard where the blocks are laid out.
    pub origin: LatLon,
    /// Report positions with GPS noise (see [`CopterConfig::gps_noise`]).
    pub gps_noise: bool,
}

impl SimConfig {
    pub fn new(endpoint: Endpoint) -> SimConfig {
        SimConfig {
            endpoint,
            vehicles: 1,
            first_sysid: 1,
            telemetry_hz: 10.0,
            auto_fly: true,
            // Sonoma Valley, California: vineyard country.
            origin: LatLon {
                lat: 38.2919,
                lon: -122.4580,
            },
            gps_noise: false,
        }
    }
}

/// Vineyard blocks in a grid east of `origin`, one per vehicle: 120 m × 80 m, 30 m apart.
pub fn vineyard_blocks(origin: LatLon, n: usize) -> Vec<Vec<LatLon>> {
    (0..n)
        .map(|i| {
            let (col, row) = ((i % 4) as f64, (i / 4) as f64);
            let (e, n) = (col * 150.0, row * 110.0);
            [(0.0, 0.0), (120.0, 0.0), (120.0, 80.0), (0.0, 80.0)]
                .iter()
                .map(|(de, dn)| from_local_m(origin, e + de, n + dn))
                .collect()
        })
        .collect()
}

/// The frames `vehicles` auto-flying copters send in `seconds` of simulated flight, interleaved
/// as one radio network carries them; for benchmarks that need realistic traffic without
/// sockets or real time.
pub fn fleet_frames(origin: LatLon, vehicles: usize, seconds: f64) -> Vec<Frame> {
    let mut frames = Vec::new();
    fleet_frames_each(origin, vehicles, seconds, false, |_, frame| {
        frames.push(frame)
    });
    frames
}

/// The same flight as [`fleet_frames`], optionally with GPS noise, handed over frame by
/// frame with the simulated time it was sent (since the start; the copters step every
/// 20 ms, so frames of one step share it) instead of collected: an hour of 50 vehicles is
/// 6.5 million frames.
pub fn fleet_frames_each(
    origin: LatLon,
    vehicles: usize,
    seconds: f64,
    gps_noise: bool,
    mut each: impl FnMut(Duration, Frame),
) {
    let mut copters: Vec<(Copter, u8)> = vineyard_blocks(origin, vehicles)
        .into_iter()
        .enumerate()
        .map(|(i, field)| {
            let home = from_local_m(field[0], -10.0, -10.0);
            let config = CopterConfig {
                gps_noise,
                ..CopterConfig::new(i as u8 + 1, home, field)
            };
            (Copter::new(config), 0u8)
        })
        .collect();
    let mut out = Vec::new();
    let dt = STEP.as_secs_f64();
    let mut unix_us = 1_790_000_000_000_000u64;
    for step in 0..(seconds / dt) as u32 {
        let at = STEP * step;
        for (copter, seq) in &mut copters {
            copter.step(dt, unix_us, &mut out);
            for m in out.drain(..) {
                each(at, Frame::encode(Version::V2, copter.sysid(), 1, *seq, &m));
                *seq = seq.wrapping_add(1);
            }
        }
        unix_us += STEP.as_micros() as u64;
    }
}

/// Runs the fleet until the task is dropped.
pub async fn run(config: SimConfig) -> anyhow::Result<()> {
    let links = Links::default();
    let (inbound_tx, mut inbound) = mpsc::channel(256);
    link::spawn(
        LinkConfig::from(config.endpoint.clone()),
        &links,
        inbound_tx,
    );

    let blocks = vineyard_blocks(config.origin, usize::from(config.vehicles));
    let mut copters: Vec<(Copter, u8)> = blocks
        .into_iter()
        .enumerate()
        .map(|(i, field)| {
            let sysid = config.first_sysid + i as u8;
            let home = from_local_m(field[0], -10.0, -10.0);
            let copter = Copter::new(CopterConfig {
                sysid,
                home,
                field,
                telemetry_hz: config.telemetry_hz,
                auto_fly: config.auto_fly,
                seed: u64::from(sysid),
                gps_noise: config.gps_noise,
            });
            (copter, 0u8)
        })
        .collect();
    tracing::info!(
        vehicles = copters.len(),
        endpoint = %config.endpoint,
        "simulated fleet flying"
    );

    let mut tick = tokio::time::interval(STEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut out = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                let dt = now.duration_since(last).as_secs_f64();
                last = now;
                let unix_us = system_now_us() as u64;
                for (copter, seq) in &mut copters {
                    copter.step(dt, unix_us, &mut out);
                    send(&links, copter.sysid(), seq, &mut out);
                }
            }
            Some(batch) = inbound.recv() => {
                for frame in batch.frames {
                    let Some(message) = frame.decode() else { continue };
                    let target = frame.target().map_or(0, |(sys, _)| sys);
                    for (copter, seq) in &mut copters {
                        if target == 0 || target == copter.sysid() {
                            copter.handle(frame.system_id(), frame.component_id(), &message, &mut out);
                            send(&links, copter.sysid(), seq, &mut out);
                        }
                    }
                }
            }
        }
    }
}

fn send(links: &Links, sysid: u8, seq: &mut u8, messages: &mut Vec<crate::dialect::MavMessage>) {
    if messages.is_empty() {
        return;
    }
    let live = links.snapshot();
    for message in messages.drain(..) {
        let frame = Frame::encode(Version::V2, sysid, 1, *seq, &message);
        *seq = seq.wrapping_add(1);
        for link in &live {
            link.send(frame.clone());
        }
    }
}
