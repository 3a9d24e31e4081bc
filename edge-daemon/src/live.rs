//! The live picture stream clients see: each vehicle's state, and every event and record
//! change the store commits.
//!
//! A vehicle's state goes out the moment a new position arrives (at most 10 Hz on average:
//! [`STATE_MIN_INTERVAL`]), carrying whatever else changed with it; other changes (mode,
//! armed, battery) of a vehicle whose position has not gone out for 100 ms go out on the
//! ingest loop's next tick; and every vehicle at least every [`STATE_MAX_INTERVAL`]. Only
//! positions spend the rate limit: an autopilot sends a dozen kinds of state messages, and
//! if each could take a slot, the position behind them would wait up to 100 ms.
//!
//! Nothing here can make ingest wait. State is a `watch` of the latest message per vehicle,
//! serialised once by the ingest loop however many clients there are; a client that reads
//! slowly skips versions (coalesced to the latest). Events and record changes go out on a
//! `broadcast` ring after their commit; a client that falls a whole ring behind is told why
//! and disconnected, never silently given a gap (see `api/stream.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::store::EventRow;
use crate::vehicle::Fleet;

/// A vehicle's position goes out at most this often on average (10 Hz)…
pub const STATE_MIN_INTERVAL: Duration = Duration::from_millis(100);
/// … with this much early allowed, so that a vehicle sending positions at 10 Hz with jitter
/// is published as each one arrives.
const STATE_EARLY: Duration = Duration::from_millis(60);
/// … and a vehicle's state at least this often, so "last heard" and link-lost show on a
/// silent vehicle.
pub const STATE_MAX_INTERVAL: Duration = Duration::from_secs(1);
/// Committed events and record changes a client may fall behind before it is dropped.
pub const EVENT_RING: usize = 4_096;

/// One vehicle's newest state message, serialised.
#[derive(Debug, Clone)]
pub struct LiveVehicle {
    /// This vehicle's publications so far: a client that last saw `n` and now sees `m`
    /// missed `m - n - 1` of them (coalesced).
    pub seq: u64,
    /// `{"type":"state","vehicle":{…}}`, the vehicle as `GET /api/v1/vehicles/{id}` shows it.
    pub message: Arc<str>,
}

/// The newest state of every vehicle.
#[derive(Debug, Clone, Default)]
pub struct LiveState {
    pub vehicles: BTreeMap<u8, LiveVehicle>,
}

/// Something the store committed that stream clients are told about.
#[derive(Debug, Clone)]
pub enum Committed {
    /// An alert, state change or identity event, with its sequence (the alert's id).
    Event(EventRow),
    /// One field of an editable record took a new value (an edit here, or from HQ).
    Record {
        table: String,
        key: String,
        field: String,
        /// The value as JSON text.
        value: String,
    },
}

impl Committed {
    /// The vehicle it is about, if any.
    pub fn vehicle(&self) -> Option<u8> {
        match self {
            Committed::Event(e) => u8::try_from(e.vehicle).ok(),
            Committed::Record { .. } => None,
        }
    }

    /// The stream message: `{"type":"alert"|"ack"|"command"|"event"|"record", …}`.
    pub fn message(&self) -> String {
        match self {
            Committed::Event(e) if e.kind == "alert" => json!({ "type": "alert", "event": e }),
            Committed::Event(e) if e.kind == "ack" => json!({ "type": "ack", "event": e }),
            Committed::Event(e) if e.kind == "command" => json!({ "type": "command", "event": e }),
            Committed::Event(e) => json!({ "type": "event", "event": e }),
            Committed::Record {
                table,
                key,
                field,
                value,
            } => {
                let value: serde_json::Value =
                    serde_json::from_str(value).unwrap_or(serde_json::Value::Null);
                json!({ "type": "record", "table": table, "key": key, "field": field, "value": value })
            }
        }
        .to_string()
    }
}

/// A committed change with its stream message, serialised once for every client.
#[derive(Debug)]
pub struct CommittedMessage {
    pub change: Committed,
    pub message: String,
}

/// The committed-change feed: the store writer sends, stream clients subscribe.
#[derive(Debug, Clone)]
pub struct CommittedFeed(broadcast::Sender<Arc<CommittedMessage>>);

impl Default for CommittedFeed {
    fn default() -> Self {
        CommittedFeed(broadcast::channel(EVENT_RING).0)
    }
}

impl CommittedFeed {
    /// Never waits: with no client listening the change is not even serialised.
    pub fn send(&self, change: Committed) {
        if self.0.receiver_count() == 0 {
            return;
        }
        let message = change.message();
        let _ = self.0.send(Arc::new(CommittedMessage { change, message }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CommittedMessage>> {
        self.0.subscribe()
    }
}

/// The ingest loop's side: decides which vehicles' state to publish and when.
#[derive(Debug, Default)]
pub struct LivePublisher {
    tx: watch::Sender<LiveState>,
    /// When each vehicle was last published.
    last: HashMap<u8, Instant>,
    /// Each vehicle's next position slot on its 10 Hz grid (the generic cell rate algorithm's
    /// theoretical arrival time): a position published at `now` moves it to
    /// `max(slot, now) + 100 ms`; one may go out up to [`STATE_EARLY`] before its slot.
    slot: HashMap<u8, Instant>,
    /// New positions that came before their slot.
    moved: BTreeSet<u8>,
    /// Other changes not yet published.
    changed: BTreeSet<u8>,
}

impl LivePublisher {
    /// A receiver of the newest state, for one stream client.
    pub fn subscribe(&self) -> watch::Receiver<LiveState> {
        self.tx.subscribe()
    }

    /// After each inbound batch: publishes the vehicles with a new position whose slot has
    /// come (the others on a later call), and records the other changes for the tick.
    pub fn on_batch(
        &mut self,
        fleet: &Fleet,
        moved: BTreeSet<u8>,
        changed: BTreeSet<u8>,
        now: Instant,
    ) {
        self.changed.extend(changed);
        self.moved.extend(moved);
        let ready = self.positions_due(now);
        self.publish(fleet, ready, now);
    }

    /// The vehicles with a new position whose slot has come; their slots move on.
    fn positions_due(&mut self, now: Instant) -> Vec<u8> {
        let ready: Vec<u8> = self
            .moved
            .iter()
            .copied()
            .filter(|id| {
                self.slot
                    .get(id)
                    .is_none_or(|slot| now + STATE_EARLY >= *slot)
            })
            .collect();
        for id in &ready {
            self.moved.remove(id);
            let slot = self.slot.get(id).map_or(now, |s| (*s).max(now));
            self.slot.insert(*id, slot + STATE_MIN_INTERVAL);
        }
        ready
    }

    /// Once a tick: positions whose slot has come (when no batch came since to publish
    /// them), other changes of vehicles not published for [`STATE_MIN_INTERVAL`], and every
    /// vehicle not published for [`STATE_MAX_INTERVAL`].
    pub fn on_tick(&mut self, fleet: &Fleet, now: Instant) {
        let positions = self.positions_due(now);
        let since = |id: &u8| {
            self.last
                .get(id)
                .map_or(Duration::MAX, |t| now.saturating_duration_since(*t))
        };
        let mut ready: BTreeSet<u8> = self
            .changed
            .iter()
            .copied()
            .filter(|id| since(id) >= STATE_MIN_INTERVAL)
            .collect();
        ready.extend(fleet.ids().filter(|id| since(id) >= STATE_MAX_INTERVAL));
        ready.extend(positions);
        self.publish(fleet, ready, now);
    }

    fn publish(&mut self, fleet: &Fleet, ids: impl IntoIterator<Item = u8>, now: Instant) {
        let mut published = Vec::new();
        for id in ids {
            // The view holds everything: no other change of this vehicle is pending now.
            self.changed.remove(&id);
            let Some(view) = fleet.view_of(id, now) else {
                continue;
            };
            self.last.insert(id, now);
            let message = json!({ "type": "state", "vehicle": view }).to_string();
            published.push((id, message));
        }
        if published.is_empty() {
            return;
        }
        self.tx.send_modify(|state| {
            for (id, message) in published {
                let seq = state.vehicles.get(&id).map_or(1, |v| v.seq + 1);
                let message = message.into();
                state.vehicles.insert(id, LiveVehicle { seq, message });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::dialect::MavMessage;
    use crate::frame::{Frame, Version};
    use mavlink::dialects::ardupilotmega as apm;

    fn fleet_of_one(now: Instant) -> Fleet {
        fleet_of(&[7], now)
    }

    fn fleet_of(ids: &[u8], now: Instant) -> Fleet {
        let mut fleet = Fleet::new(Duration::from_secs(5), HashMap::new());
        let heartbeat = MavMessage::HEARTBEAT(apm::HEARTBEAT_DATA {
            mavtype: apm::MavType::MAV_TYPE_QUADROTOR,
            autopilot: apm::MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA,
            base_mode: apm::MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
            custom_mode: 5,
            system_status: apm::MavState::MAV_STATE_ACTIVE,
            mavlink_version: 3,
        });
        for id in ids {
            let frame = Frame::encode(Version::V2, *id, 1, 0, &heartbeat);
            fleet.observe(1, &frame, now, &mut Clock::default());
        }
        fleet
    }

    /// Publishes a change of vehicle 7 at each of `arrivals` (ms); returns how many went out
    /// at once, and how many in all.
    fn run(arrivals: impl Iterator<Item = f64>) -> (usize, usize) {
        let t0 = Instant::now();
        let fleet = fleet_of_one(t0);
        let mut live = LivePublisher::default();
        let rx = live.subscribe();
        let (mut at_once, mut published) = (0, 0);
        let mut seen = 0;
        for ms in arrivals {
            let now = t0 + Duration::from_secs_f64(ms / 1e3);
            live.on_batch(&fleet, BTreeSet::from([7]), BTreeSet::new(), now);
            let seq = rx.borrow().vehicles.get(&7).map_or(0, |v| v.seq);
            if seq > seen {
                at_once += 1;
                published += (seq - seen) as usize;
                seen = seq;
            }
        }
        (at_once, published)
    }

    #[test]
    fn a_vehicle_at_10_hz_with_jitter_is_published_as_each_frame_arrives() {
        // Frames 100 ms apart, each up to 25 ms early or late (a radio's bursts).
        let jitter = [0.0, -25.0, 25.0, -10.0, 25.0, -24.0, 5.0, -20.0];
        let arrivals = (0..200).map(|i| f64::from(i) * 100.0 + jitter[i as usize % 8]);
        let (at_once, published) = run(arrivals);
        assert_eq!(
            (at_once, published),
            (200, 200),
            "no frame deferred, none dropped"
        );
    }

    #[test]
    fn vehicles_taking_turns_are_each_published_as_their_frames_arrive() {
        let t0 = Instant::now();
        let fleet = fleet_of(&[1, 2], t0);
        let mut live = LivePublisher::default();
        let rx = live.subscribe();
        for step in 0..100u32 {
            let id = (step % 2) as u8 + 1;
            let before = rx.borrow().vehicles.get(&id).map_or(0, |v| v.seq);
            let now = t0 + Duration::from_millis(u64::from(step) * 50);
            live.on_batch(&fleet, BTreeSet::from([id]), BTreeSet::new(), now);
            let after = rx.borrow().vehicles.get(&id).map_or(0, |v| v.seq);
            assert_eq!(
                after,
                before + 1,
                "vehicle {id} at step {step} was not published"
            );
        }
    }

    #[test]
    fn other_changes_ride_with_positions_or_the_tick_and_never_delay_a_position() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let fleet = fleet_of(&[7, 8], t0);
        let mut live = LivePublisher::default();
        let rx = live.subscribe();
        let seq = |id: u8| rx.borrow().vehicles.get(&id).map_or(0, |v| v.seq);
        let none = BTreeSet::new;
        live.on_batch(&fleet, BTreeSet::from([7]), none(), at(0));
        assert_eq!(seq(7), 1, "a position goes out at once");
        // A battery report and a mode change in between: they wait, taking no slot.
        live.on_batch(&fleet, none(), BTreeSet::from([7]), at(30));
        live.on_batch(&fleet, none(), BTreeSet::from([7]), at(60));
        live.on_tick(&fleet, at(80));
        assert_eq!(
            seq(7),
            1,
            "within 100 ms of the last publication, other changes wait"
        );
        live.on_batch(&fleet, BTreeSet::from([7]), none(), at(100));
        assert_eq!(seq(7), 2, "the next position is not delayed by them");
        live.on_tick(&fleet, at(180));
        assert_eq!(seq(7), 2, "they went out with that position");
        // A vehicle with no position (no GPS) still shows its changes, on the tick.
        let before = seq(8);
        live.on_batch(&fleet, none(), BTreeSet::from([8]), at(200));
        assert_eq!(seq(8), before);
        live.on_tick(&fleet, at(200));
        assert_eq!(seq(8), before + 1);
    }

    #[test]
    fn a_position_held_for_its_slot_goes_out_on_the_tick_if_nothing_else_comes() {
        let t0 = Instant::now();
        let fleet = fleet_of_one(t0);
        let mut live = LivePublisher::default();
        let rx = live.subscribe();
        let seq = || rx.borrow().vehicles.get(&7).map_or(0, |v| v.seq);
        live.on_batch(&fleet, BTreeSet::from([7]), BTreeSet::new(), t0);
        live.on_batch(
            &fleet,
            BTreeSet::from([7]),
            BTreeSet::new(),
            t0 + Duration::from_millis(20),
        );
        assert_eq!(seq(), 1, "20 ms after the last: held for its slot");
        live.on_tick(&fleet, t0 + Duration::from_millis(100));
        assert_eq!(
            seq(),
            2,
            "the tick after its slot sends it, with no batch to wait for"
        );
    }

    #[test]
    fn a_vehicle_sending_fast_is_published_at_10_hz_on_average() {
        // 50 Hz for 10 s.
        let (_, published) = run((0..500).map(|i| f64::from(i) * 20.0));
        assert!(
            (100..=102).contains(&published),
            "{published} publications in 10 s"
        );
    }
}
