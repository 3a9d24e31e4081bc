//! `ingest`: MAVLink frames/s decoded, routed and stored, the whole process on one core, with a
//! 50-vehicle ArduPilot-like mix (SPEC §8 target ≥ 300,000).
//!
//! The mix comes from 50 simulated copters flying their surveys (heartbeat, positions,
//! attitude, VFR_HUD, GPS, SYS_STATUS, battery, radio, system time, mission). Each frame is fed
//! as its own datagram through the scanner, the router (to a GCS link whose queue is drained as
//! its writer would), the fleet state and the store writer thread, which commits to a real
//! SQLite file. The clock stops when the last frame is durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_daemon::frame::{Frame, FrameScanner};
use edge_daemon::ingest::Ingest;
use edge_daemon::link::{Endpoint, Inbound, LinkConfig, Links};
use edge_daemon::sim::fleet_frames;
use edge_daemon::store::{Store, StoreConfig};
use edge_daemon::survey::LatLon;
use edge_daemon::vehicle::FleetSnapshot;

const VEHICLES: usize = 50;
const FRAMES: usize = 3_000_000;

fn main() {
    pin_to_one_core();
    let origin = LatLon {
        lat: 38.2919,
        lon: -122.4580,
    };
    let mix = fleet_frames(origin, VEHICLES, 120.0);
    let datagrams: Vec<&Frame> = mix.iter().cycle().take(FRAMES).collect();
    let ids: std::collections::BTreeMap<u32, usize> =
        mix.iter().fold(Default::default(), |mut m, f| {
            *m.entry(f.message_id()).or_default() += 1;
            m
        });
    println!(
        "mix: {} distinct frames from {VEHICLES} vehicles, {} message types, mean {:.1} bytes",
        mix.len(),
        ids.len(),
        mix.iter().map(|f| f.len()).sum::<usize>() as f64 / mix.len() as f64
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("store");
    let links = Links::default();
    let vehicles_link = links.add("udpin:bench".into(), endpoint("udpin:127.0.0.1:1"));
    let gcs = links.add("udpout:bench".into(), endpoint("udpout:127.0.0.1:2"));
    gcs.out.set_open(true);
    let (snap_tx, _snap_rx) = tokio::sync::watch::channel(Arc::new(FleetSnapshot::default()));
    let mut ingest = Ingest::new(
        links.clone(),
        Duration::from_secs(5),
        HashMap::new(),
        &Default::default(),
        store.sender(),
        snap_tx,
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut scanner = FrameScanner::new();
    let mut drained = Vec::with_capacity(8192);
    let mut routed = 0usize;
    let start = Instant::now();
    let mut next_tick = start + edge_daemon::ingest::TICK;
    rt.block_on(async {
        for chunk in datagrams.chunks(64) {
            // One read burst: up to 64 datagrams become one Inbound, as the UDP link does.
            let mut frames = Vec::with_capacity(chunk.len());
            for f in chunk {
                scanner.push(f.as_bytes());
                while let Some(frame) = scanner.next_frame() {
                    frames.push(frame);
                }
                scanner.end_datagram();
            }
            ingest
                .process(Inbound {
                    link: vehicles_link.id,
                    received: Instant::now(),
                    frames,
                })
                .expect("ingest");
            // Drain below the coalescing threshold, so every frame is routed, not coalesced.
            if gcs.out.len() >= 512 {
                gcs.out.next_batch(&mut drained).await;
                routed += drained.len();
                drained.clear();
            }
            let now = Instant::now();
            if now >= next_tick {
                ingest.tick(now).expect("tick");
                next_tick = now + edge_daemon::ingest::TICK;
            }
        }
        ingest.flush().expect("flush");
        gcs.out.next_batch(&mut drained).await;
        routed += drained.len();
    });
    store.flush().expect("durable");
    let elapsed = start.elapsed();
    let status = store.status_view();
    assert_eq!(
        status.committed_frames as usize, FRAMES,
        "every frame stored"
    );
    assert_eq!(scanner.take_errors().total(), 0);
    assert_eq!(routed, FRAMES, "every frame routed to the GCS link");
    let rate = FRAMES as f64 / elapsed.as_secs_f64();
    println!(
        "{FRAMES} frames in {:.2} s: {} samples and {} frames committed, {routed} routed to the GCS link \
         ({} coalesced), database {:.1} MB",
        elapsed.as_secs_f64(),
        status.committed_samples,
        status.committed_frames,
        gcs.stats.tx_coalesced.load(std::sync::atomic::Ordering::Relaxed),
        std::fs::metadata(store.path()).map_or(0, |m| m.len()) as f64 / 1e6,
    );
    println!("FIGURE ingest {rate:.0} frames/s");
}

fn endpoint(s: &str) -> LinkConfig {
    LinkConfig::from(s.parse::<Endpoint>().expect("endpoint"))
}

/// Pins every thread of this process (the store writer inherits it) to one CPU.
fn pin_to_one_core() {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("warning: could not pin to one CPU; the figure uses more than one core");
        }
    }
}
