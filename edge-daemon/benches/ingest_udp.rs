//! `ingest_udp`: MAVLink frames/s the station takes in over real UDP sockets from other
//! processes, decoded, routed and stored, before more than 0.1 % is lost; alone, with a
//! `udpout` GCS attached, and, when it is installed, mavlink-router's figure from the same run
//! (SPEC §8: over real UDP sockets ≥ 2× mavlink-router).
//!
//! The release daemon runs as `serve` with a `udpin` link (and, for the GCS figure, a
//! `udpout` link to a socket this bench drains and counts). The frames are the `ingest`
//! bench's: 50 simulated copters flying their surveys for 120 simulated seconds (13 message
//! types), each vehicle's frames cut to a multiple of 256 so that its sequence numbers run on
//! without a gap when the mix repeats. Senders are other processes (this bench run again with
//! `INGEST_UDP_SENDER` set), each playing a share of the vehicles, pacing the pre-encoded
//! frames with `sendmmsg` (one frame per datagram) at a target rate.
//!
//! Each step is a fresh daemon: a 1 s warm-up at 20,000 frames/s (every vehicle heard and
//! asked for its data), a wait until everything is stored, then the step's rate for the
//! step's duration. A step passes when, of the frames sent, at most 0.1 % were not received
//! by the link (kernel drops; `trellis_link_rx_frames_total` on `/metrics`) and at most 0.1 %
//! were not committed to SQLite (`trellis_store_frames_total`, every frame is stored raw)
//! within 1.5 s of the last send: the commit window (1 s) plus a tick, so a daemon that only
//! buffered a step it could not keep up with (its queues hold some 300,000 frames) fails it.
//! With a GCS attached, at most 0.1 % may also be missing at the GCS socket by then (SPEC:
//! every frame to every GCS; a frame coalesced on a GCS link that fell behind is missing),
//! which is mavlink-router's criterion too.
//! What was stored later is shown too. The rate steps up (50,000, 100,000, …) until a step
//! fails, then bisects three times between the last pass and the first fail; the figure is
//! the fastest rate actually sent in a passing step (a sender starved of CPU sends less than
//! asked; when it cannot go faster the summary says SENDER-LIMITED and the figure is a lower
//! bound). Targets are interleaved step by step, so they meet the same machine.
//!
//! mavlink-router (routing only, no storage) gets the same steps with the same senders when
//! `MAVLINK_ROUTERD` names its binary: `mavlink-routerd -e 127.0.0.1:GCS 127.0.0.1:PORT`, with
//! a configuration file that only turns its TCP server off; its loss is counted at the GCS
//! socket. The GCS socket is this bench's own instrument (a thread, `recvmmsg`, a 32 MB
//! receive buffer); its kernel drops are shown, and would be the bench's fault, not the
//! router's.
//!
//! Each time the mix repeats, a vehicle's boot time goes back 120 s, which the station takes
//! for a reboot and asks the vehicle for its data again (the `ingest` bench's mix repeats
//! likewise); the senders read and discard what the station sends them.
//!
//! By default the daemon (or mavlink-router) is pinned to the last CPU and the bench, its
//! GCS socket and the senders to the others, so each figure is one core's.
//! Each step prints one line: the step's rate, frames sent and the rate sent; as percentages
//! of the frames sent, what the station's link received (`rx%`), stored within 1.5 s
//! (`st+1.5%`) and in the end (`stored%`), and what the GCS socket received (`gcs%`); kernel
//! drops at the target's input socket (`in-drop`), the GCS socket (`gcsdrop`) and the
//! senders' sockets (`snddrop`), all from `/proc/net/udp`, and system-wide (`snmp`:
//! `RcvbufErrors` in `/proc/net/snmp`, which counts other processes' sockets too); the frames
//! the station counted lost from its vehicles' sequence numbers (`seqlos`); the CPU the
//! target and the senders used while sending, in % of one core (user and system time; the
//! kernel's loopback delivery runs on the sender's core); and, for the station with a GCS,
//! what its GCS link sent, coalesced (telemetry replaced by newer frames once 1,024 wait)
//! and dropped.
//!
//! Environment:
//! - `INGEST_UDP_STEP_SECS` (5): seconds each step sends at its rate.
//! - `INGEST_UDP_STEP_RATE` (50000): the first rate and the step up, frames/s.
//! - `INGEST_UDP_MAX_RATE` (800000): no step above this rate.
//! - `INGEST_UDP_GCS` (`both`): `off` measures the station alone, `on` only with the GCS
//!   attached, `both` both.
//! - `INGEST_UDP_SENDERS` (1): sender processes, each with its share of the 50 vehicles.
//! - `INGEST_UDP_PIN` (1): `0` leaves every process wherever the scheduler puts it.
//! - `MAVLINK_ROUTERD`: a `mavlink-routerd` binary to measure beside the station.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::UdpSocket;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_daemon::sim::fleet_frames;
use edge_daemon::survey::LatLon;

const VEHICLES: usize = 50;
/// Set (to `k,n,port,mix-file`) in a sender process: sender `k` of `n`.
const SENDER_ENV: &str = "INGEST_UDP_SENDER";
/// The largest loss a passing step may have: 0.1 %.
const MAX_LOSS: f64 = 0.001;
/// How long after the last send the frames must be stored: the default commit window (1 s),
/// a tick (100 ms) and a commit's fsync.
const GRACE: Duration = Duration::from_millis(1500);
const WARM_UP_RATE: f64 = 20_000.0;
const WARM_UP: Duration = Duration::from_secs(1);
/// Bisections between the last passing and the first failing rate.
const BISECTIONS: u32 = 3;
/// Datagrams per `sendmmsg` (and per `recvmmsg` at the GCS).
const BATCH: usize = 64;

fn main() {
    if let Ok(spec) = std::env::var(SENDER_ENV) {
        sender::run(&spec);
        return;
    }
    let settings = Settings::from_env();
    let cpus = Cpus::choose(settings.pin);
    cpus.pin_this_process();

    let dir = tempfile::tempdir().expect("temp dir");
    let mix_path = dir.path().join("mix.bin");
    let mix = write_mix(&mix_path);
    println!("{mix}");
    println!(
        "steps of {} s from {} frames/s up by {} to at most {}; {} sender process(es); {}",
        settings.step_secs,
        settings.step_rate,
        settings.step_rate,
        settings.max_rate,
        settings.senders,
        cpus.describe()
    );
    println!(
        "pass: ≤ {:.1} % of the frames sent not received, and ≤ {:.1} % not stored (with a \
         GCS: and not received by it) {:.1} s after the last send (mavlink-router: not \
         received by the GCS)",
        MAX_LOSS * 100.0,
        MAX_LOSS * 100.0,
        GRACE.as_secs_f64()
    );

    let mut targets = Vec::new();
    if settings.gcs != GcsMode::On {
        targets.push(Target::Station { gcs: false });
    }
    if settings.gcs != GcsMode::Off {
        targets.push(Target::Station { gcs: true });
    }
    if let Some(router) = &settings.router {
        targets.push(Target::Router(router.clone()));
    }
    let mut searches: Vec<Search> = targets
        .into_iter()
        .map(|t| Search::new(t, &settings))
        .collect();

    println!("\n{}", Step::header());
    while searches.iter().any(|s| s.next.is_some()) {
        for search in &mut searches {
            let Some(rate) = search.next else { continue };
            let step = trial(&search.target, rate, &settings, &cpus, &mix_path);
            println!("{}", step.line(&search.target));
            let _ = std::io::stdout().flush();
            search.record(step, &settings);
        }
    }

    println!();
    for search in &searches {
        println!("{}", search.summary());
    }
    let router = searches
        .iter()
        .find(|s| matches!(s.target, Target::Router(_)));
    for ours in searches
        .iter()
        .filter(|s| matches!(s.target, Target::Station { .. }))
    {
        if let (Some(a), Some(b), Some(router)) =
            (ours.figure(), router.and_then(Search::figure), router)
        {
            // Only two figures that each met their limit make a ratio.
            let bounds = if ours.failed.is_none() || router.failed.is_none() {
                " (but one side never lost more than 0.1 %: its figure is a lower bound)"
            } else {
                ""
            };
            println!(
                "{} takes in {:.2}× what mavlink-router routes (SPEC: ≥ 2×){bounds}",
                ours.target.label(),
                a / b
            );
        }
    }
    for search in &searches {
        if let Some(rate) = search.figure() {
            println!("FIGURE {} {rate:.0} frames/s", search.target.figure_name());
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum GcsMode {
    Off,
    On,
    Both,
}

struct Settings {
    step_secs: f64,
    step_rate: u64,
    max_rate: u64,
    gcs: GcsMode,
    senders: usize,
    pin: bool,
    router: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Settings {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v} is not a valid value")),
                Err(_) => default,
            }
        }
        let gcs = match std::env::var("INGEST_UDP_GCS").as_deref() {
            Ok("off") => GcsMode::Off,
            Ok("on") => GcsMode::On,
            Ok("both") | Err(_) => GcsMode::Both,
            Ok(other) => panic!("INGEST_UDP_GCS={other}: off, on or both"),
        };
        let router = std::env::var_os("MAVLINK_ROUTERD").map(PathBuf::from);
        if let Some(r) = &router {
            assert!(r.is_file(), "MAVLINK_ROUTERD={} is not a file", r.display());
        }
        Settings {
            step_secs: var("INGEST_UDP_STEP_SECS", 5.0),
            step_rate: var("INGEST_UDP_STEP_RATE", 50_000),
            max_rate: var("INGEST_UDP_MAX_RATE", 800_000),
            gcs,
            senders: var("INGEST_UDP_SENDERS", 1usize).max(1),
            pin: var("INGEST_UDP_PIN", 1u8) != 0,
            router,
        }
    }
}

/// Generates the mix and writes it for the senders: each frame as a little-endian u16
/// length and its bytes. Returns a line describing it.
fn write_mix(path: &Path) -> String {
    let origin = LatLon {
        lat: 38.2919,
        lon: -122.4580,
    };
    let mix = fleet_frames(origin, VEHICLES, 120.0);
    let mut out = Vec::with_capacity(mix.len() * 40);
    for frame in &mix {
        out.extend_from_slice(&(frame.len() as u16).to_le_bytes());
        out.extend_from_slice(frame.as_bytes());
    }
    std::fs::write(path, out).expect("write the mix");
    let kept: usize = sender::load(path, 0, 1).len();
    let types: std::collections::BTreeSet<u32> = mix.iter().map(|f| f.message_id()).collect();
    format!(
        "mix: {} frames from {VEHICLES} vehicles ({kept} sent in a cycle: each vehicle's cut \
         to a multiple of 256), {} message types, mean {:.1} bytes",
        mix.len(),
        types.len(),
        mix.iter().map(|f| f.len()).sum::<usize>() as f64 / mix.len() as f64
    )
}

#[derive(Clone)]
enum Target {
    /// The station; with a `udpout` GCS link or not.
    Station { gcs: bool },
    /// mavlink-routerd at this path, routing to a GCS.
    Router(PathBuf),
}

impl Target {
    fn label(&self) -> &'static str {
        match self {
            Target::Station { gcs: false } => "station",
            Target::Station { gcs: true } => "station+gcs",
            Target::Router(_) => "mavlink-router",
        }
    }

    fn figure_name(&self) -> &'static str {
        match self {
            Target::Station { gcs: false } => "ingest_udp",
            Target::Station { gcs: true } => "ingest_udp_gcs",
            Target::Router(_) => "ingest_udp_mavlink_router",
        }
    }
}

/// Steps a target's rate up until a step fails, then bisects.
struct Search {
    target: Target,
    /// The rate of the next step, if any.
    next: Option<u64>,
    /// The highest target rate that passed.
    best: Option<u64>,
    /// The passing step that sent fastest (a step's senders may fall short of its rate).
    fastest: Option<Step>,
    /// The lowest target rate that failed.
    failed: Option<u64>,
    bisections: u32,
    /// The senders could not reach a passing step's rate: the target was not pushed to loss.
    sender_limited: bool,
}

impl Search {
    fn new(target: Target, settings: &Settings) -> Search {
        Search {
            target,
            next: Some(settings.step_rate),
            best: None,
            fastest: None,
            failed: None,
            bisections: 0,
            sender_limited: false,
        }
    }

    fn record(&mut self, step: Step, settings: &Settings) {
        let rate = step.target_rate;
        let passed = step.passed();
        let short = step.sent_rate() < 0.98 * rate as f64;
        // Whether this step sent faster than any passing step before it.
        let faster = self
            .fastest
            .as_ref()
            .is_none_or(|f| step.sent_rate() > 1.02 * f.sent_rate());
        if passed {
            if self.best.is_none_or(|r| r < rate) {
                self.best = Some(rate);
            }
            if self
                .fastest
                .as_ref()
                .is_none_or(|f| f.sent_rate() < step.sent_rate())
            {
                self.fastest = Some(step);
            }
        } else if self.failed.is_none_or(|f| rate < f) {
            self.failed = Some(rate);
        }
        self.next = match self.failed {
            // The senders fell short and sent no faster than before: stepping up is useless.
            None if passed && short && !faster => {
                self.sender_limited = true;
                None
            }
            None => Some(rate + settings.step_rate).filter(|r| *r <= settings.max_rate),
            Some(failed) => {
                let lo = self.best.unwrap_or(0);
                // Bisect to a round thousand frames/s.
                let mid = (lo + failed) / 2 / 1000 * 1000;
                if self.bisections >= BISECTIONS || mid <= lo || mid >= failed {
                    None
                } else {
                    self.bisections += 1;
                    Some(mid)
                }
            }
        };
    }

    /// The fastest rate sent in a passing step.
    fn figure(&self) -> Option<f64> {
        self.fastest.as_ref().map(Step::sent_rate)
    }

    fn summary(&self) -> String {
        let label = self.target.label();
        match (&self.fastest, self.failed) {
            (None, _) => format!("{label}: no step passed"),
            (Some(step), failed) => {
                let rate = step.target_rate;
                let mut line = format!(
                    "{label}: {:.0} frames/s sent with ≤ 0.1 % lost (step {rate})",
                    step.sent_rate()
                );
                match failed {
                    Some(f) => line += &format!("; {f} frames/s lost more"),
                    None if self.sender_limited => {
                        line += "; SENDER-LIMITED, a lower bound: the senders could not go \
                                 faster (snd% near 100: CPU-bound; well below: starved)"
                    }
                    None => line += "; never lost more up to INGEST_UDP_MAX_RATE (a lower bound)",
                }
                if step.station {
                    line += &format!(
                        "; {:.0} samples/s committed",
                        step.settled.samples as f64 / step.send_secs
                    );
                }
                if let Some(gcs) = step.gcs_fraction() {
                    line += &format!("; the GCS received {:.2} % of it", gcs * 100.0);
                }
                line
            }
        }
    }
}

/// Counters of one target at one moment.
#[derive(Clone, Copy, Default)]
struct Counters {
    /// Frames the station's `udpin` link received.
    rx: u64,
    /// Raw frames the station's store committed.
    stored: u64,
    samples: u64,
    /// What the station's GCS link sent, coalesced and dropped.
    gcs_tx: u64,
    gcs_coalesced: u64,
    gcs_dropped: u64,
    /// The daemon's own loss count, from each vehicle's sequence numbers.
    seq_lost: u64,
    /// Frames the bench's GCS socket received.
    gcs_rx: u64,
    /// Kernel drops at the target's input socket and at the GCS socket.
    input_drops: u64,
    gcs_drops: u64,
    /// Kernel drops at the senders' sockets (what the station sends its vehicles).
    sender_drops: u64,
    /// Datagrams waiting in those sockets.
    queued: u64,
    snmp_rcvbuf_errors: u64,
    cpu: f64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, b: Counters) -> Counters {
        Counters {
            rx: self.rx - b.rx,
            stored: self.stored - b.stored,
            samples: self.samples - b.samples,
            gcs_tx: self.gcs_tx - b.gcs_tx,
            gcs_coalesced: self.gcs_coalesced - b.gcs_coalesced,
            gcs_dropped: self.gcs_dropped - b.gcs_dropped,
            seq_lost: self.seq_lost.saturating_sub(b.seq_lost),
            gcs_rx: self.gcs_rx - b.gcs_rx,
            input_drops: self.input_drops - b.input_drops,
            gcs_drops: self.gcs_drops - b.gcs_drops,
            sender_drops: self.sender_drops - b.sender_drops,
            queued: self.queued,
            snmp_rcvbuf_errors: self.snmp_rcvbuf_errors - b.snmp_rcvbuf_errors,
            cpu: self.cpu - b.cpu,
        }
    }
}

/// What one step measured.
#[derive(Clone)]
struct Step {
    station: bool,
    gcs: bool,
    target_rate: u64,
    sent: u64,
    send_secs: f64,
    /// Counted `GRACE` after the last send, and once everything settled.
    at_grace: Counters,
    settled: Counters,
    /// CPU seconds the target and the senders used while the senders sent.
    target_cpu: f64,
    sender_cpu: f64,
}

impl Step {
    fn sent_rate(&self) -> f64 {
        self.sent as f64 / self.send_secs
    }

    fn lost(&self, got: u64) -> f64 {
        self.sent.saturating_sub(got) as f64 / self.sent.max(1) as f64
    }

    fn passed(&self) -> bool {
        if self.station {
            self.lost(self.settled.rx) <= MAX_LOSS
                && self.lost(self.at_grace.stored) <= MAX_LOSS
                && (!self.gcs || self.lost(self.at_grace.gcs_rx) <= MAX_LOSS)
        } else {
            self.lost(self.at_grace.gcs_rx) <= MAX_LOSS
        }
    }

    fn gcs_fraction(&self) -> Option<f64> {
        self.gcs
            .then(|| self.settled.gcs_rx as f64 / self.sent.max(1) as f64)
    }

    fn header() -> String {
        format!(
            "{:<15} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>6} {:>5} {:>5}  {}",
            "target",
            "step/s",
            "sent",
            "sent/s",
            "rx%",
            "st+1.5%",
            "stored%",
            "gcs%",
            "in-drop",
            "gcsdrop",
            "snddrop",
            "snmp",
            "seqlos",
            "cpu%",
            "snd%",
            "pass"
        )
    }

    fn line(&self, target: &Target) -> String {
        let pct = |n: u64| format!("{:.3}", n as f64 / self.sent.max(1) as f64 * 100.0);
        let dash = || "-".to_string();
        let s = &self.settled;
        let gcs_note = if self.station && self.gcs {
            format!(
                " (gcs link: {} sent, {} coalesced, {} dropped)",
                s.gcs_tx, s.gcs_coalesced, s.gcs_dropped
            )
        } else {
            String::new()
        };
        format!(
            "{:<15} {:>7} {:>9} {:>8.0} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>6} {:>5.0} {:>5.0}  {}{}",
            target.label(),
            self.target_rate,
            self.sent,
            self.sent_rate(),
            if self.station { pct(s.rx) } else { dash() },
            if self.station {
                pct(self.at_grace.stored)
            } else {
                dash()
            },
            if self.station { pct(s.stored) } else { dash() },
            if self.gcs { pct(s.gcs_rx) } else { dash() },
            s.input_drops,
            if self.gcs {
                s.gcs_drops.to_string()
            } else {
                dash()
            },
            s.sender_drops,
            s.snmp_rcvbuf_errors,
            if self.station {
                s.seq_lost.to_string()
            } else {
                dash()
            },
            self.target_cpu / self.send_secs * 100.0,
            self.sender_cpu / self.send_secs * 100.0,
            if self.passed() { "yes" } else { "NO" },
            gcs_note
        )
    }
}

/// The process under test.
enum Under {
    Station(common::Daemon),
    Router {
        child: Child,
        port: u16,
        _conf: tempfile::NamedTempFile,
    },
}

impl Under {
    fn start(target: &Target, gcs: Option<u16>, cpus: &Cpus) -> Under {
        let pin = cpus.target;
        let pin_child = move |command: &mut Command| {
            if let Some(cpu) = pin {
                // SAFETY: sched_setaffinity is async-signal-safe; the closure allocates nothing.
                unsafe {
                    command.pre_exec(move || {
                        set_affinity(&[cpu]);
                        Ok(())
                    });
                }
            }
        };
        match target {
            Target::Station { .. } => {
                let links: Vec<String> = gcs
                    .map(|port| format!("udpout:127.0.0.1:{port}"))
                    .into_iter()
                    .collect();
                let daemon = common::Daemon::start_configured(&links, "viewer", pin_child);
                let started = Instant::now();
                while metrics(daemon.api).is_none() || udp_socket(daemon.udp).is_none() {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "the daemon did not start"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                Under::Station(daemon)
            }
            Target::Router(bin) => {
                let port = common::free_port();
                let gcs = gcs.expect("mavlink-router routes to the GCS");
                // Its configuration: no TCP server; the endpoints are on the command line.
                let conf = tempfile::NamedTempFile::new().expect("a configuration file");
                std::fs::write(conf.path(), "[General]\nTcpServerPort = 0\n")
                    .expect("write the configuration");
                let mut command = Command::new(bin);
                command
                    .arg("-c")
                    .arg(conf.path())
                    .args(["-e", &format!("127.0.0.1:{gcs}")])
                    .arg(format!("127.0.0.1:{port}"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                pin_child(&mut command);
                let child = command.spawn().expect("start mavlink-routerd");
                let started = Instant::now();
                while udp_socket(port).is_none() {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "mavlink-routerd did not bind its port"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                Under::Router {
                    child,
                    port,
                    _conf: conf,
                }
            }
        }
    }

    fn port(&self) -> u16 {
        match self {
            Under::Station(d) => d.udp,
            Under::Router { port, .. } => *port,
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Under::Station(d) => d.pid(),
            Under::Router { child, .. } => child.id(),
        }
    }

    fn counters(&self, gcs: Option<&GcsSink>, senders: &[Sender]) -> Counters {
        let mut c = Counters::default();
        if let Under::Station(d) = self {
            let m = metrics(d.api).expect("/metrics");
            c.rx = m.rx;
            c.stored = m.stored;
            c.samples = m.samples;
            c.gcs_tx = m.gcs_tx;
            c.gcs_coalesced = m.gcs_coalesced;
            c.gcs_dropped = m.gcs_dropped;
            c.seq_lost = seq_lost(d.api, &d.token);
        }
        let (drops, queued) = udp_socket(self.port()).unwrap_or_default();
        c.input_drops = drops;
        c.queued = queued;
        if let Some(g) = gcs {
            c.gcs_rx = g.frames.load(Relaxed);
            let (drops, queued) = udp_socket(g.port).unwrap_or_default();
            c.gcs_drops = drops;
            c.queued += queued;
        }
        c.sender_drops = senders
            .iter()
            .filter_map(|s| udp_socket(s.port))
            .map(|(drops, _)| drops)
            .sum();
        c.snmp_rcvbuf_errors = snmp_rcvbuf_errors();
        c.cpu = common::cpu_seconds(self.pid());
        c
    }

    /// Waits until nothing moves: sockets empty, counters still for 300 ms and, for the
    /// station, everything received stored; or counters still for 3 s; or 60 s.
    fn settle(&self, gcs: Option<&GcsSink>, senders: &[Sender]) -> Counters {
        let started = Instant::now();
        let mut last = self.counters(gcs, senders);
        let mut still_since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.counters(gcs, senders);
            let key = |c: &Counters| (c.rx, c.stored, c.gcs_rx, c.input_drops, c.gcs_drops);
            if key(&now) != key(&last) {
                still_since = Instant::now();
            }
            let complete = now.queued == 0
                && match self {
                    Under::Station(_) => now.stored >= now.rx,
                    Under::Router { .. } => true,
                };
            let still = still_since.elapsed();
            if (complete && still >= Duration::from_millis(300))
                || still >= Duration::from_secs(3)
                || started.elapsed() >= Duration::from_secs(60)
            {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for Under {
    fn drop(&mut self) {
        if let Under::Router { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One step: a fresh target, warmed up, then `rate` frames/s for the step's duration.
fn trial(target: &Target, rate: u64, settings: &Settings, cpus: &Cpus, mix: &Path) -> Step {
    let with_gcs = matches!(target, Target::Station { gcs: true } | Target::Router(_));
    let gcs = with_gcs.then(GcsSink::start);
    let under = Under::start(target, gcs.as_ref().map(|g| g.port), cpus);
    let mut senders: Vec<Sender> = (0..settings.senders)
        .map(|k| Sender::start(k, settings.senders, under.port(), mix))
        .collect();

    let per_sender = |total: f64| total / settings.senders as f64;
    send_all(
        &mut senders,
        per_sender(WARM_UP_RATE),
        WARM_UP.as_secs_f64(),
    );
    let before = under.settle(gcs.as_ref(), &senders);
    let sender_cpu_0: f64 = senders.iter().map(Sender::cpu).sum();
    let (sent, send_secs) = send_all(&mut senders, per_sender(rate as f64), settings.step_secs);
    let sender_cpu = senders.iter().map(Sender::cpu).sum::<f64>() - sender_cpu_0;
    let target_cpu = common::cpu_seconds(under.pid()) - before.cpu;
    std::thread::sleep(GRACE);
    let at_grace = under.counters(gcs.as_ref(), &senders) - before;
    let settled = under.settle(gcs.as_ref(), &senders) - before;
    drop(senders);
    drop(under);
    Step {
        station: matches!(target, Target::Station { .. }),
        gcs: with_gcs,
        target_rate: rate,
        sent,
        send_secs,
        at_grace,
        settled,
        target_cpu,
        sender_cpu,
    }
}

/// Has every sender send at `rate` for `secs`; returns the frames sent and the longest time
/// a sender took.
fn send_all(senders: &mut [Sender], rate: f64, secs: f64) -> (u64, f64) {
    for s in senders.iter_mut() {
        writeln!(s.stdin, "send {rate} {secs}").expect("command a sender");
        s.stdin.flush().expect("command a sender");
    }
    let mut total = (0, 0.0f64);
    for s in senders.iter_mut() {
        let mut line = String::new();
        s.stdout.read_line(&mut line).expect("a sender's report");
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("sent"), "a sender said {line:?}");
        let n: u64 = words.next().and_then(|w| w.parse().ok()).expect("count");
        let t: f64 = words.next().and_then(|w| w.parse().ok()).expect("secs");
        total = (total.0 + n, total.1.max(t));
    }
    total
}

/// A sender process, ended when dropped (its stdin closes).
struct Sender {
    child: Child,
    /// Its socket's port.
    port: u16,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Sender {
    fn start(k: usize, n: usize, port: u16, mix: &Path) -> Sender {
        let mut child = Command::new(std::env::current_exe().expect("this bench's path"))
            .env(SENDER_ENV, format!("{k},{n},{port},{}", mix.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a sender");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut ready = String::new();
        stdout.read_line(&mut ready).expect("the sender starts");
        let port = ready
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("a sender said {ready:?}"));
        Sender {
            child,
            port,
            stdin,
            stdout,
        }
    }

    fn cpu(&self) -> f64 {
        common::cpu_seconds(self.child.id())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // Its own child: ended here whatever it is doing.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sender process: sends its vehicles' frames at the rate it is told, with `sendmmsg`.
mod sender {
    use super::*;

    /// The frames of vehicles `k` of every `n` (by system id), each vehicle's cut to a
    /// multiple of 256 so that its sequence numbers continue across the cycle.
    pub fn load(path: &Path, k: usize, n: usize) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(path).expect("read the mix");
        let mut frames = Vec::new();
        let mut at = 0;
        while at + 2 <= bytes.len() {
            let len = u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
            frames.push(bytes[at + 2..at + 2 + len].to_vec());
            at += 2 + len;
        }
        // MAVLink 2: the system id is byte 5.
        let sysid = |f: &Vec<u8>| f[5] as usize;
        let mut per_vehicle = [0usize; 256];
        for f in &frames {
            per_vehicle[sysid(f)] += 1;
        }
        let mut kept = [0usize; 256];
        frames
            .into_iter()
            .filter(|f| {
                let id = sysid(f);
                if id % n != k || kept[id] >= per_vehicle[id] / 256 * 256 {
                    return false;
                }
                kept[id] += 1;
                true
            })
            .collect()
    }

    pub fn run(spec: &str) {
        let parts: Vec<&str> = spec.splitn(4, ',').collect();
        let [k, n, port, path] = parts[..] else {
            panic!("{SENDER_ENV}={spec}: k,n,port,mix-file")
        };
        let (k, n, port): (usize, usize, u16) = (
            k.parse().expect("k"),
            n.parse().expect("n"),
            port.parse().expect("port"),
        );
        let frames = load(Path::new(path), k, n);
        assert!(!frames.is_empty(), "sender {k} of {n} has no frames");
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.connect(("127.0.0.1", port)).expect("connect");
        socket.set_nonblocking(true).expect("non-blocking");
        let fd = socket.as_raw_fd();
        // Room for what the station sends its vehicles between two reads (after a wrap of
        // the mix it asks all 50 for their data at once).
        force_recv_buffer(fd, 4 << 20);
        let mut iovecs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                // SAFETY: an all-zero mmsghdr is valid (no name, no control data).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();

        let mut out = std::io::stdout().lock();
        let port = socket.local_addr().expect("address").port();
        writeln!(out, "ready {port}").expect("stdout");
        out.flush().expect("stdout");
        let mut at = 0usize;
        let mut answers = [0u8; 2048];
        for line in std::io::stdin().lock().lines() {
            let line = line.expect("stdin");
            let mut words = line.split_whitespace();
            assert_eq!(words.next(), Some("send"), "command {line:?}");
            let rate: f64 = words.next().and_then(|w| w.parse().ok()).expect("rate");
            let secs: f64 = words.next().and_then(|w| w.parse().ok()).expect("secs");
            let start = Instant::now();
            let mut sent = 0u64;
            let mut calls = 0u64;
            loop {
                let elapsed = start.elapsed().as_secs_f64();
                if elapsed >= secs {
                    break;
                }
                let due = ((rate * elapsed) as u64).saturating_sub(sent);
                if due == 0 {
                    std::thread::sleep(Duration::from_micros(100));
                    continue;
                }
                let batch = (due as usize).min(BATCH).min(frames.len() - at);
                // SAFETY: headers[at..at + batch] are initialised and point into `iovecs`
                // and `frames`, which outlive the call.
                let n =
                    unsafe { libc::sendmmsg(fd, headers.as_mut_ptr().add(at), batch as u32, 0) };
                if n > 0 {
                    sent += n as u64;
                    at = (at + n as usize) % frames.len();
                } else {
                    // EAGAIN/ENOBUFS, or ECONNREFUSED for an earlier datagram: try again.
                    std::thread::yield_now();
                }
                calls += 1;
                // The station answers its vehicles (heartbeats, requests): read them so they
                // do not pile up as kernel drops on this socket.
                if calls.is_multiple_of(16) {
                    while socket.recv(&mut answers).is_ok() {}
                }
            }
            while socket.recv(&mut answers).is_ok() {}
            writeln!(out, "sent {sent} {}", start.elapsed().as_secs_f64()).expect("stdout");
            out.flush().expect("stdout");
        }
    }
}

/// The bench's GCS: a socket drained by a thread that counts the frames it receives.
struct GcsSink {
    port: u16,
    frames: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GcsSink {
    fn start() -> GcsSink {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the GCS socket");
        let port = socket.local_addr().expect("address").port();
        let fd = socket.as_raw_fd();
        force_recv_buffer(fd, 32 << 20);
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let frames = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (frames, stop) = (frames.clone(), stop.clone());
            std::thread::spawn(move || drain(&socket, &frames, &stop))
        };
        GcsSink {
            port,
            frames,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for GcsSink {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn drain(socket: &UdpSocket, frames: &AtomicU64, stop: &AtomicBool) {
    let mut buffers = vec![[0u8; 2048]; BATCH];
    let mut iovecs: Vec<libc::iovec> = buffers
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: an all-zero mmsghdr is valid (no name, no control data).
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let fd = socket.as_raw_fd();
    while !stop.load(Relaxed) {
        // SAFETY: the headers point into `iovecs` and `buffers`, which outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue; // the read timeout: look at `stop`
        }
        let mut count = 0;
        for (h, b) in headers.iter().zip(&buffers).take(n as usize) {
            count += count_frames(&b[..h.msg_len as usize]);
        }
        frames.fetch_add(count, Relaxed);
    }
}

/// Sets a socket's receive buffer: past `net.core.rmem_max` as root (`SO_RCVBUFFORCE`),
/// otherwise as much as that allows.
fn force_recv_buffer(fd: std::os::fd::RawFd, bytes: libc::c_int) {
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads an int from a valid pointer.
        let ok = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        } == 0;
        if ok {
            return;
        }
    }
}

/// Frames in a datagram, by their headers (no CRC check: the sender is trusted).
fn count_frames(mut data: &[u8]) -> u64 {
    let mut n = 0;
    while data.len() >= 8 {
        let size = match data[0] {
            0xFD if data.len() >= 12 => {
                12 + data[1] as usize + if data[2] & 1 != 0 { 13 } else { 0 }
            }
            0xFE => 8 + data[1] as usize,
            _ => break,
        };
        if size > data.len() {
            break;
        }
        n += 1;
        data = &data[size..];
    }
    n
}

/// The station's counters from `/metrics` (no token).
struct Metrics {
    rx: u64,
    stored: u64,
    samples: u64,
    gcs_tx: u64,
    gcs_coalesced: u64,
    gcs_dropped: u64,
}

fn metrics(api: u16) -> Option<Metrics> {
    let body = ureq::get(&format!("http://127.0.0.1:{api}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    let mut m = Metrics {
        rx: 0,
        stored: 0,
        samples: 0,
        gcs_tx: 0,
        gcs_coalesced: 0,
        gcs_dropped: 0,
    };
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value = value.parse::<f64>().unwrap_or(0.0) as u64;
        let (name, labels) = key.split_once('{').unwrap_or((key, ""));
        let vehicles = labels.contains("name=\"udpin:");
        let gcs = labels.contains("name=\"udpout:");
        match name {
            "trellis_link_rx_frames_total" if vehicles => m.rx += value,
            "trellis_link_tx_frames_total" if gcs => m.gcs_tx += value,
            "trellis_link_tx_coalesced_total" if gcs => m.gcs_coalesced += value,
            "trellis_link_tx_dropped_total" if gcs => m.gcs_dropped += value,
            "trellis_store_frames_total" => m.stored = value,
            "trellis_store_samples_total" => m.samples = value,
            _ => {}
        }
    }
    Some(m)
}

/// Frames the station counts as lost from its vehicles' sequence numbers (gaps of up to 127
/// per vehicle; a longer gap reads as a reordering). 0 if the API does not answer.
fn seq_lost(api: u16, token: &str) -> u64 {
    let body: Option<serde_json::Value> =
        ureq::get(&format!("http://127.0.0.1:{api}/api/v1/vehicles"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json().ok());
    let Some(body) = body else { return 0 };
    body["vehicles"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|v| v["link"]["links"].as_array().into_iter().flatten())
        .filter_map(|l| l["lost"].as_u64())
        .sum()
}

/// Kernel drops and queued datagrams of the UDP socket bound to `port`, from
/// `/proc/net/udp` (and `udp6`); `None` if no socket is bound there.
fn udp_socket(port: u16) -> Option<(u64, u64)> {
    let mut found = None;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx_queue:rx_queue tr tm->when retrnsmt uid timeout inode ref
            // pointer drops
            let Some(local) = fields.get(1) else { continue };
            let Some((_, p)) = local.rsplit_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            let queue = fields
                .get(4)
                .and_then(|q| q.split_once(':'))
                .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok())
                .unwrap_or(0);
            let drops = fields.last().and_then(|d| d.parse().ok()).unwrap_or(0);
            let (d, q) = found.unwrap_or((0, 0));
            found = Some((d + drops, q + queue));
        }
    }
    found
}

/// `RcvbufErrors` of `Udp:` in `/proc/net/snmp`: every socket's drops for a full buffer.
fn snmp_rcvbuf_errors() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let udp: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    let [names, values] = udp[..] else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Which CPUs the target and the rest get.
struct Cpus {
    /// The target's CPU, if pinned.
    target: Option<usize>,
    /// The bench's and the senders' CPUs.
    rest: Vec<usize>,
}

impl Cpus {
    fn choose(pin: bool) -> Cpus {
        let allowed = allowed_cpus();
        if !pin || allowed.len() < 2 {
            if pin {
                eprintln!("warning: fewer than 2 CPUs allowed; nothing is pinned");
            }
            return Cpus {
                target: None,
                rest: Vec::new(),
            };
        }
        let (rest, target) = allowed.split_at(allowed.len() - 1);
        Cpus {
            target: Some(target[0]),
            rest: rest.to_vec(),
        }
    }

    fn pin_this_process(&self) {
        if !self.rest.is_empty() {
            set_affinity(&self.rest);
        }
    }

    fn describe(&self) -> String {
        match self.target {
            Some(t) => format!(
                "target on CPU {t}, senders and the GCS socket on CPU {:?}",
                self.rest
            ),
            None => "nothing pinned".into(),
        }
    }
}

fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is the empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins the calling thread (and the threads and processes it starts after) to `cpus`.
fn set_affinity(cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
