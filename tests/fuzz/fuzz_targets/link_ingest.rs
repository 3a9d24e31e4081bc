//! Any bytes on a station's links through the real ingest loop (`edge-daemon/src/ingest.rs`):
//! the frame scanner, signing checks, the router, vehicle state, the station's own component
//! (commands, mission and parameter transfers under way) and the store writer, interleaved
//! with the commands a pilot sends and the ticks of the clock.
//!
//! Input: a sequence of operations, each a tag byte and what follows it:
//! - `0x00..=0xDF`: the next `tag + 1` bytes arrive on a TCP link (a stream, any chunking);
//! - `0xE0 hi lo`: the next `hi·256 + lo` bytes (at most 2048) arrive as a UDP datagram;
//! - `0xE1..=0xFF vehicle arg`: a pilot's action or a tick (see `action`).
//!
//! Invariant: nothing panics or stalls, whatever the vehicles (or anything pretending to be
//! one) send and whatever the pilot asks. The store lives in a temporary directory (under
//! /dev/shm when there is one), shared by all inputs and replaced every few thousand.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_daemon::frame::FrameScanner;
use edge_daemon::gcs::{
    Action, Command, MissionItem, MissionKind, Operation, ParamOp, SendCommand, SigningOp,
};
use edge_daemon::ingest::Ingest;
use edge_daemon::link::{Endpoint, Inbound, LinkConfig, Links};
use edge_daemon::signing::Key;
use edge_daemon::store::{Store, StoreConfig};
use edge_daemon::vehicle::FleetSnapshot;
use libfuzzer_sys::fuzz_target;

/// Inputs one store takes before it is replaced, so the fuzzer's disk use stays small.
const STORE_INPUTS: u32 = 5_000;

struct Shared {
    store: Option<Store>,
    dir: Option<std::path::PathBuf>,
    inputs: u32,
}

thread_local! {
    static SHARED: RefCell<Shared> = const {
        RefCell::new(Shared { store: None, dir: None, inputs: 0 })
    };
}

fn with_store<T>(f: impl FnOnce(&Store) -> T) -> T {
    SHARED.with(|cell| {
        let mut shared = cell.borrow_mut();
        if shared.inputs >= STORE_INPUTS {
            if let Some(store) = shared.store.take() {
                store.close();
            }
            if let Some(dir) = shared.dir.take() {
                let _ = std::fs::remove_dir_all(dir);
            }
            shared.inputs = 0;
        }
        shared.inputs += 1;
        if shared.store.is_none() {
            let base = if std::path::Path::new("/dev/shm").is_dir() {
                std::path::PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            let dir = base.join(format!("trellis-fuzz-ingest-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let config = StoreConfig {
                quota_bytes: 32 << 20,
                ..StoreConfig::default()
            };
            shared.store = Some(Store::open(&dir, config).expect("store opens"));
            shared.dir = Some(dir);
        }
        f(shared.store.as_ref().expect("store"))
    })
}

fn endpoint(s: &str) -> LinkConfig {
    LinkConfig::from(s.parse::<Endpoint>().expect("endpoint"))
}

fuzz_target!(|data: &[u8]| {
    let sender = with_store(|store| store.sender());
    let links = Links::default();
    let udp = links.add("udpin:fuzz".into(), endpoint("udpin:127.0.0.1:14550"));
    let tcp = links.add("tcp:fuzz".into(), endpoint("tcp:127.0.0.1:5760"));
    let gcs = links.add("udpout:fuzz".into(), endpoint("udpout:127.0.0.1:14551"));
    for link in [&udp, &tcp, &gcs] {
        link.out.set_open(true);
    }
    let (snapshots, _snapshot_rx) =
        tokio::sync::watch::channel(Arc::new(FleetSnapshot::default()));
    let mut ingest = Ingest::new(
        links.clone(),
        Duration::from_secs(5),
        HashMap::new(),
        &Default::default(),
        sender,
        snapshots,
    );
    let start = Instant::now();
    let mut now = start;
    let mut next_id = 1i64;
    let mut udp_scanner = FrameScanner::new();
    let mut tcp_scanner = FrameScanner::new();

    let mut input = data;
    while let Some((&tag, rest)) = input.split_first() {
        input = rest;
        match tag {
            0x00..=0xDF => {
                let n = (usize::from(tag) + 1).min(input.len());
                let (chunk, rest) = input.split_at(n);
                input = rest;
                tcp_scanner.push(chunk);
                let frames = std::iter::from_fn(|| tcp_scanner.next_frame()).collect();
                ingest
                    .process(Inbound {
                        link: tcp.id,
                        received: now,
                        frames,
                    })
                    .expect("ingest");
            }
            0xE0 => {
                let [hi, lo, rest @ ..] = input else {
                    return;
                };
                let n = (usize::from(*hi) << 8 | usize::from(*lo)).min(2048).min(rest.len());
                let (datagram, rest) = rest.split_at(n);
                input = rest;
                udp_scanner.push(datagram);
                let frames = std::iter::from_fn(|| udp_scanner.next_frame()).collect();
                udp_scanner.end_datagram();
                ingest
                    .process(Inbound {
                        link: udp.id,
                        received: now,
                        frames,
                    })
                    .expect("ingest");
            }
            0xE1..=0xFF => {
                let [vehicle, arg, rest @ ..] = input else {
                    return;
                };
                input = rest;
                match action(tag - 0xE1, *arg) {
                    None => {
                        now += Duration::from_millis(u64::from(*arg) * 20);
                        ingest.tick(now).expect("tick");
                    }
                    Some(action) => {
                        ingest
                            .command(SendCommand {
                                id: next_id,
                                vehicle: *vehicle,
                                action,
                            })
                            .expect("command");
                        next_id += 1;
                    }
                }
            }
        }
        // What the station sent its links is taken, as their writers would.
        for link in [&udp, &tcp, &gcs] {
            while link.out.len() > 256 {
                let mut drained = Vec::new();
                futures_now(link.out.next_batch(&mut drained));
            }
        }
    }
    ingest.flush().expect("flush");
});

/// Polls a future that is ready at once (a non-empty queue's batch).
fn futures_now<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a non-empty queue was not ready"),
    }
}

/// A pilot's action number `n` with argument `arg`; `None` is a tick of `arg`·20 ms.
fn action(n: u8, arg: u8) -> Option<Action> {
    let waypoint = |i: u8| MissionItem {
        command: if i == 0 { 22 } else { 16 },
        frame: 3,
        params: [0.0; 4],
        x: 382_919_000 + i32::from(i) * 100,
        y: -1_224_580_000 + i32::from(arg) * 100,
        z: 30.0,
        autocontinue: true,
    };
    let kind = [MissionKind::Mission, MissionKind::Fence, MissionKind::Rally][usize::from(arg % 3)];
    let mission = |op| Action::Mission {
        kind,
        op,
        mission: Some(format!("fuzz-{arg}")),
    };
    Some(match n {
        0 => return None,
        1 => Action::Command(Command::Arm),
        2 => Action::Command(Command::Disarm),
        3 => Action::Command(Command::Takeoff {
            alt_m: f32::from(arg),
        }),
        4 => Action::Command(Command::Land),
        5 => Action::Command(Command::Rtl),
        6 => Action::Command(Command::Mode {
            mode: "GUIDED".into(),
            custom_mode: u32::from(arg),
        }),
        7 => Action::Command(Command::Goto {
            lat: 38.29 + f64::from(arg) * 1e-4,
            lon: -122.45,
            alt_m: 30.0,
        }),
        8 => Action::Command(Command::Speed {
            speed_mps: f32::from(arg) / 10.0,
        }),
        9 => Action::Command(Command::StartMission),
        10 => Action::Command(Command::Pause),
        11 => Action::Command(Command::Continue),
        12 => Action::Command(Command::Reboot),
        13 => mission(Operation::Download),
        14 => mission(Operation::Upload((0..arg % 8).map(waypoint).collect())),
        15 => mission(Operation::Clear),
        16 => mission(Operation::SetCurrent(u16::from(arg))),
        17 => Action::Params(ParamOp::Fetch),
        18 => Action::Params(ParamOp::Read(vec!["RTL_ALT".into(), "WPNAV_SPEED".into()])),
        19 => Action::Params(ParamOp::Set(vec![("RTL_ALT".into(), f64::from(arg) * 100.0)])),
        20 => Action::Params(ParamOp::Apply(
            edge_daemon::profile::built_in("copter-survey.param").expect("built-in profile"),
        )),
        21 => Action::Signing(SigningOp::Install(Key([arg; 32]))),
        22 => Action::Signing(SigningOp::Remove),
        // 23..=30: more ticks, the commonest thing that happens.
        _ => return None,
    })
}
