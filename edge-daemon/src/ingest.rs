//! The one loop every frame passes through: route it, learn from it, hand it to the store.
//!
//! It runs as a single task, so routing table, fleet state, the station's own MAVLink
//! component (`gcs/`) and the open store batch need no locks. It publishes a [`FleetSnapshot`] ten times a second for the API; the store batch goes
//! to the writer thread whenever it fills or a tick passes, which is the 100 ms in
//! ARCHITECTURE.md's bound on what a power cut loses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::clock::{Clock, TimeBase};
use crate::config::GcsSection;
use crate::frame::Frame;
use crate::gcs::{Gcs, SendCommand, To};
use crate::link::flow::RADIO_SYSTEM_ID;
use crate::link::{Inbound, Links};
use crate::live::{LivePublisher, LiveState};
use crate::router::Router;
use crate::signing::{Admission, Signing, Verdict};
use crate::store::{IngestBatch, Reader, StoreError, StoreSender};
use crate::vehicle::geofence::Geofences;
use crate::vehicle::{Fleet, FleetSnapshot};

const RADIO_STATUS: u32 = 109;

/// Frames gathered before a batch goes to the writer even between ticks.
const FLUSH_FRAMES: usize = 4_096;
pub const TICK: Duration = Duration::from_millis(100);

pub struct Ingest {
    router: Router,
    fleet: Fleet,
    gcs: Gcs,
    clock: Clock,
    /// The clock's base, for the API and sync (the writer gets it in order with the data).
    time: watch::Sender<TimeBase>,
    batch: IngestBatch,
    store: StoreSender,
    snapshots: watch::Sender<Arc<FleetSnapshot>>,
    live: LivePublisher,
    /// Signing keys, checked on every frame to or from a vehicle that has one.
    signing: Signing,
    /// Where geofences (at start and when the store says one changed) and signing keys (at
    /// start) are read from.
    geofences: Option<(Reader, bool)>,
    /// Advances every tick; the systemd watchdog checks it moves.
    pub alive: Arc<AtomicU64>,
}

impl Ingest {
    pub fn new(
        links: Links,
        link_lost_after: Duration,
        names: HashMap<u8, String>,
        gcs: &GcsSection,
        store: StoreSender,
        snapshots: watch::Sender<Arc<FleetSnapshot>>,
    ) -> Ingest {
        let clock = Clock::default();
        Ingest {
            router: Router::new(links, gcs.system_id),
            fleet: Fleet::new(link_lost_after, names),
            gcs: Gcs::new(gcs, link_lost_after),
            time: watch::channel(clock.base()).0,
            clock,
            batch: IngestBatch::default(),
            store,
            snapshots,
            live: LivePublisher::default(),
            signing: Signing::default(),
            geofences: None,
            alive: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Starts the clock on `base`: the store's, which begins after everything it holds.
    pub fn with_time(mut self, base: TimeBase) -> Ingest {
        self.clock = Clock::new(base);
        self.time.send_replace(base);
        self
    }

    pub fn process(&mut self, inbound: Inbound) -> Result<(), StoreError> {
        self.adjust_clock(Instant::now())?;
        self.router.refresh();
        let t_us = self.clock.wall_us(inbound.received);
        let stamp = crate::signing::timestamp(self.clock.base().now_us());
        for frame in inbound.frames {
            if !self.check_signature(&frame, stamp) {
                continue;
            }
            let refused = self.signing.broadcast_refused(&frame);
            if refused.is_empty() {
                self.router.route(inbound.link, &frame);
            } else {
                for &(vehicle, verdict) in &refused {
                    self.fleet.count_signing(vehicle, verdict, false);
                }
                let withheld: Vec<u8> = refused.iter().map(|(v, _)| *v).collect();
                self.router
                    .route_withholding(inbound.link, &frame, &withheld);
            }
            if frame.message_id() == RADIO_STATUS && frame.system_id() == RADIO_SYSTEM_ID {
                self.radio_report(inbound.link, &frame);
            }
            if let Some(sample) =
                self.fleet
                    .observe(inbound.link, &frame, inbound.received, &mut self.clock)
            {
                self.batch.samples.push(sample);
            }
            self.gcs.observe(&frame, inbound.received, &self.fleet);
            self.batch.frames.push((t_us, frame));
        }
        self.send_own_frames();
        let (moved, changed) = self.fleet.take_changes();
        self.live
            .on_batch(&self.fleet, moved, changed, inbound.received);
        // An event (an alert) goes to the writer now: it is committed on arrival, not at the
        // end of the commit window.
        if self.batch.frames.len() >= FLUSH_FRAMES
            || self.fleet.has_events()
            || self.gcs.has_command_updates()
        {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.batch.vehicles.extend(self.fleet.take_records());
        self.batch.events.extend(self.fleet.take_events());
        self.batch.params.extend(self.gcs.take_param_updates());
        self.batch.commands.extend(self.gcs.take_command_updates());
        for (vehicle, mission) in self.gcs.take_missions_changed() {
            self.fleet.set_mission(vehicle, mission);
        }
        if self.batch.is_empty() {
            return Ok(());
        }
        self.store.send_batch(std::mem::take(&mut self.batch))
    }

    pub fn tick(&mut self, now: Instant) -> Result<(), StoreError> {
        self.alive.fetch_add(1, Relaxed);
        self.adjust_clock(now)?;
        self.fleet.check_links(now, &self.clock);
        self.gcs.tick(now, self.clock.wall_us(now), &self.fleet);
        self.send_own_frames();
        for (sysid, name) in self.store.status().take_renames() {
            self.fleet.rename(sysid, name);
        }
        self.reload_geofences();
        self.snapshots
            .send_replace(Arc::new(self.fleet.snapshot(now, &self.clock)));
        self.live.on_tick(&self.fleet, now);
        self.flush()
    }

    /// Whether a frame may go on: to or from a signing vehicle it must be signed as
    /// `signing.rs` says; a dropped one is counted against that vehicle, and neither routed,
    /// stored nor believed.
    fn check_signature(&mut self, frame: &Frame, stamp: u64) -> bool {
        let source = frame.system_id();
        match self.signing.inbound(frame, stamp) {
            Admission::Dropped { vehicle, verdict } => {
                tracing::debug!(
                    vehicle,
                    from = source,
                    verdict = verdict.as_str(),
                    "dropped"
                );
                self.fleet.count_signing(vehicle, verdict, false);
                false
            }
            Admission::Admitted { vehicle, verdict } => {
                self.fleet.count_signing(vehicle, verdict, true);
                if source == vehicle && self.gcs.is_setting_up_signing(vehicle) {
                    let valid = verdict == Verdict::Valid;
                    self.gcs
                        .signing_seen(vehicle, valid, verdict == Verdict::Unsigned);
                }
                true
            }
            Admission::Unchecked => {
                if self.gcs.is_setting_up_signing(source) {
                    self.gcs.signing_seen(source, false, !frame.is_signed());
                }
                true
            }
        }
    }

    /// Sends a command a person made (stored already) to its vehicle.
    pub fn command(&mut self, c: SendCommand) -> Result<(), StoreError> {
        if let crate::gcs::Action::Signing(op) = &c.action {
            let key = match op {
                crate::gcs::SigningOp::Install(key) => Some(key.clone()),
                crate::gcs::SigningOp::Remove => None,
            };
            self.fleet.set_signing(c.vehicle, key.is_some());
            self.signing.install(c.vehicle, key);
        }
        let now = Instant::now();
        let now_us = self.clock.wall_us(now);
        self.gcs
            .command(c.id, c.vehicle, c.action, now, now_us, &self.fleet);
        self.send_own_frames();
        Ok(())
    }

    /// Sends what the station's own component queued, through the router to its vehicles.
    fn send_own_frames(&mut self) {
        if !self.gcs.has_outbox() {
            return;
        }
        let stamp = crate::signing::timestamp(self.clock.base().now_us());
        for (to, frame) in self.gcs.take_outbox() {
            match to {
                To::Vehicle(system) => {
                    let frame = self.signing.outbound(&frame, system, stamp);
                    self.router.send_to([system], &frame);
                }
                // Each signing vehicle gets its own signed copy; the others share one.
                To::EveryVehicleLink => {
                    let (signed, plain): (Vec<u8>, Vec<u8>) =
                        self.fleet.ids().partition(|v| self.signing.is_on(*v));
                    if !plain.is_empty() {
                        self.router.send_to(plain, &frame);
                    }
                    for vehicle in signed {
                        let frame = self.signing.outbound(&frame, vehicle, stamp);
                        self.router.send_to([vehicle], &frame);
                    }
                }
            }
        }
    }

    /// Checks every armed vehicle's position against the geofences read from `reader`.
    pub fn with_geofences(mut self, reader: Reader) -> Ingest {
        self.geofences = Some((reader, false));
        self
    }

    /// Reads the geofences at the first tick and whenever the store says one changed.
    fn reload_geofences(&mut self) {
        let changed = self.store.status().take_geofences_changed();
        let Some((reader, loaded)) = &mut self.geofences else {
            return;
        };
        if *loaded && !changed {
            return;
        }
        // Small reads, a few times a day; ingest waits for them as it waits for the writer.
        if !*loaded {
            match blocking(|| reader.signing_keys()) {
                Ok(keys) => {
                    tracing::info!(vehicles = keys.len(), "signing keys read");
                    for (vehicle, _, _) in &keys {
                        self.fleet.set_signing(*vehicle, true);
                    }
                    self.signing
                        .load(keys.into_iter().map(|(vehicle, key, _)| (vehicle, key)));
                }
                Err(e) => {
                    tracing::warn!("signing keys not read, retrying next tick: {e}");
                    return;
                }
            }
        }
        match blocking(|| reader.records("geofences")) {
            Ok(records) => {
                *loaded = true;
                let fences = Geofences::from_records(&records);
                tracing::info!(geofences = records.len(), "geofences read");
                self.fleet.set_geofences(fences);
            }
            Err(e) => tracing::warn!("geofences not read, retrying next tick: {e}"),
        }
    }

    /// Sets the battery percentage that raises a low-battery alert.
    pub fn with_low_battery_pct(mut self, pct: i8) -> Ingest {
        self.fleet.set_low_battery_pct(pct);
        self
    }

    /// The link's own radio said how full its buffer is: the link's writer paces to it.
    fn radio_report(&self, link: crate::link::LinkId, frame: &Frame) {
        let Some(crate::dialect::MavMessage::RADIO_STATUS(m)) = frame.decode() else {
            return;
        };
        if let Some(link) = self.router.link(link) {
            link.flow.report(m.txbuf, link.line_rate());
        }
    }

    /// Takes in a new time base, if the clock has one. What is batched was stamped on the
    /// old base, so it goes to the writer first; the writer then moves to the new one.
    fn adjust_clock(&mut self, now: Instant) -> Result<(), StoreError> {
        if let Some(adjustment) = self.clock.adjust(now) {
            self.flush()?;
            self.store.send_time(adjustment)?;
            self.time.send_replace(adjustment.base);
        }
        Ok(())
    }

    /// Where sync tells the clock the relay's time.
    pub fn relay_time(&self) -> crate::clock::RelayTime {
        self.clock.relay_time()
    }

    /// The station's time base as it moves.
    pub fn time(&self) -> watch::Receiver<TimeBase> {
        self.time.subscribe()
    }

    /// The live state stream clients read (see `live.rs`).
    pub fn live(&self) -> watch::Receiver<LiveState> {
        self.live.subscribe()
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn unroutable(&self) -> u64 {
        self.router.unroutable
    }
}

/// Runs the loop until `shutdown` turns true, then hands the last batch to the store.
/// Runs a blocking store read from the ingest task: `block_in_place` on the multi-threaded
/// runtime, so other tasks keep running; directly elsewhere (tests, a current-thread
/// runtime).
fn blocking<T>(read: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(read)
        }
        _ => read(),
    }
}

pub async fn run(
    mut ingest: Ingest,
    mut inbound: mpsc::Receiver<Inbound>,
    mut commands: mpsc::Receiver<SendCommand>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let result = tokio::select! {
            Some(batch) = inbound.recv() => ingest.process(batch),
            Some(command) = commands.recv() => ingest.command(command),
            _ = tick.tick() => ingest.tick(Instant::now()),
            _ = shutdown.changed() => break,
        };
        if let Err(e) = result {
            // Only a stopped writer gets here; nothing more can be stored.
            tracing::error!("ingest stopped: {e}");
            return;
        }
    }
    if let Err(e) = ingest.flush() {
        tracing::error!("final flush failed: {e}");
    }
}
