//! The live picture stream clients see: each vehicle's state the moment it changes, at most
//! [`STATE_MIN_INTERVAL`] apart (10 Hz) and at least every [`STATE_MAX_INTERVAL`], and every
//! event and record change the store commits.
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

/// A vehicle's state goes out at most this often (10 Hz).
pub const STATE_MIN_INTERVAL: Duration = Duration::from_millis(100);
/// … and at least this often, so "last heard" and link-lost show on a silent vehicle.
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

    /// The stream message: `{"type":"alert"|"event"|"record", …}`.
    pub fn message(&self) -> String {
        match self {
            Committed::Event(e) if e.kind == "alert" => json!({ "type": "alert", "event": e }),
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

/// The committed-change feed: the store writer sends, stream clients subscribe.
#[derive(Debug, Clone)]
pub struct CommittedFeed(broadcast::Sender<Arc<Committed>>);

impl Default for CommittedFeed {
    fn default() -> Self {
        CommittedFeed(broadcast::channel(EVENT_RING).0)
    }
}

impl CommittedFeed {
    /// Never waits: with no client listening the change is simply not kept.
    pub fn send(&self, c: Committed) {
        let _ = self.0.send(Arc::new(c));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.0.subscribe()
    }
}

/// The ingest loop's side: decides which vehicles' state to publish and when.
#[derive(Debug, Default)]
pub struct LivePublisher {
    tx: watch::Sender<LiveState>,
    last: HashMap<u8, Instant>,
    /// Changed, but published too recently: goes out once its interval has passed.
    due: BTreeSet<u8>,
}

impl LivePublisher {
    /// A receiver of the newest state, for one stream client.
    pub fn subscribe(&self) -> watch::Receiver<LiveState> {
        self.tx.subscribe()
    }

    /// Publishes the vehicles in `changed`, and those due, whose last publication is at least
    /// [`STATE_MIN_INTERVAL`] old; the others wait for a later call.
    pub fn publish(&mut self, fleet: &Fleet, changed: BTreeSet<u8>, now: Instant) {
        self.due.extend(changed);
        let ready: Vec<u8> = self
            .due
            .iter()
            .copied()
            .filter(|id| {
                self.last
                    .get(id)
                    .is_none_or(|t| now.saturating_duration_since(*t) >= STATE_MIN_INTERVAL)
            })
            .collect();
        if ready.is_empty() {
            return;
        }
        let mut published = Vec::with_capacity(ready.len());
        for id in ready {
            self.due.remove(&id);
            let Some(view) = fleet.view_of(id, now) else {
                continue;
            };
            self.last.insert(id, now);
            let message = json!({ "type": "state", "vehicle": view }).to_string();
            published.push((id, message));
        }
        self.tx.send_modify(|state| {
            for (id, message) in published {
                let seq = state.vehicles.get(&id).map_or(1, |v| v.seq + 1);
                let message = message.into();
                state.vehicles.insert(id, LiveVehicle { seq, message });
            }
        });
    }

    /// Once a tick: vehicles not published for [`STATE_MAX_INTERVAL`] are published now.
    pub fn refresh(&mut self, fleet: &Fleet, ids: impl Iterator<Item = u8>, now: Instant) {
        let stale: BTreeSet<u8> = ids
            .filter(|id| {
                self.last
                    .get(id)
                    .is_none_or(|t| now.saturating_duration_since(*t) >= STATE_MAX_INTERVAL)
            })
            .collect();
        self.publish(fleet, stale, now);
    }
}
