//! The relay's live picture: each vehicle's latest state as its edges report it, in memory,
//! and a broadcast of every change for HQ's WebSocket streams.
//!
//! State arrives two ways: `Live` datagrams (best effort, about once a second per vehicle)
//! and the newest row of each telemetry batch (reliable, but behind any backlog). Whichever
//! is newer by the edge's timestamp wins, so a late backlog batch never overwrites a fresher
//! datagram. Keys are sightings, (org, edge, system id): the registry in the store says
//! which vehicle a sighting is, and HQ merges sightings of one vehicle by taking the
//! freshest.
//!
//! Nothing here is durable: after a restart the picture refills within one live interval of
//! each edge reconnecting.
//!
//! Several relay instances share what each learns here (`cluster.rs`): every local change
//! is also handed to [`Peers`], and what other instances learnt comes back through
//! [`LiveView::apply_peer`], which changes the picture without handing it on again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sync_protocol::proto::Live;
use sync_protocol::telemetry::{self, TelemetryRow};
use tokio::sync::broadcast;

/// One vehicle's state as one edge last reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct State {
    /// Edge time of the report, microseconds since the Unix epoch.
    pub t_us: i64,
    pub lat: f64,
    pub lon: f64,
    pub alt_msl_m: f64,
    pub heading_deg: Option<f64>,
    pub battery_pct: Option<i32>,
    pub armed: bool,
    /// Known from datagrams; a state taken from telemetry has only the raw mode number.
    pub mode: Option<String>,
    pub custom_mode: u32,
}

impl State {
    pub fn from_live(l: &Live) -> State {
        State {
            t_us: l.t_us,
            lat: f64::from(l.lat_e7) / 1e7,
            lon: f64::from(l.lon_e7) / 1e7,
            alt_msl_m: f64::from(l.alt_mm) / 1e3,
            heading_deg: u16::try_from(l.heading_cdeg)
                .ok()
                .and_then(telemetry::heading_deg),
            battery_pct: (l.battery_pct >= 0).then_some(l.battery_pct),
            armed: l.armed,
            mode: (!l.mode.is_empty()).then(|| l.mode.clone()),
            custom_mode: l.custom_mode,
        }
    }

    pub fn from_row(r: &TelemetryRow) -> State {
        State {
            t_us: r.t_us,
            lat: r.lat(),
            lon: r.lon(),
            alt_msl_m: r.alt_msl_m(),
            heading_deg: r.heading_deg(),
            battery_pct: r.battery_pct().map(i32::from),
            armed: r.armed,
            mode: None,
            custom_mode: r.custom_mode,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sighting {
    pub org: String,
    pub edge: String,
    pub sysid: u32,
}

/// What HQ streams are told.
#[derive(Debug, Clone)]
pub enum Update {
    State(Sighting, State),
    /// An event stored for this org (alerts, state changes); the store has the details.
    Event {
        org: String,
        edge: String,
        seq: u64,
    },
    /// The org's editable records changed: sessions send the new revisions downstream.
    Records {
        org: String,
    },
}

pub struct LiveView {
    states: RwLock<HashMap<Sighting, State>>,
    updates: broadcast::Sender<Arc<Update>>,
    /// Edges connected to this instance, each with the id of the connection that opened it.
    sessions: RwLock<HashMap<(String, String), (u64, Session)>>,
    next_session: AtomicU64,
    /// Edges connected to other instances, as their last heartbeats said.
    peer_sessions: RwLock<HashMap<(String, String), PeerSession>>,
    peers: OnceLock<Peers>,
    pub metrics: Metrics,
}

/// An edge's open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub since_us: i64,
    pub last_batch_us: Option<i64>,
}

/// An edge's session on this instance, open while this lives.
pub struct OpenSession<'a> {
    live: &'a LiveView,
    key: (String, String),
    id: u64,
}

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        let mut sessions = self
            .live
            .sessions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if sessions
            .get(&self.key)
            .is_some_and(|(id, _)| *id == self.id)
        {
            sessions.remove(&self.key);
            drop(sessions);
            let (org, edge) = self.key.clone();
            self.live
                .tell_peers(|| PeerMessage::SessionClosed { org, edge });
        }
    }
}

#[derive(Debug, Clone)]
struct PeerSession {
    instance: String,
    session: Session,
    heard: Instant,
}

/// What one instance tells the others (see `cluster.rs` for how it travels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerMessage {
    State {
        sighting: Sighting,
        state: State,
    },
    Event {
        org: String,
        edge: String,
        seq: u64,
    },
    Records {
        org: String,
    },
    SessionClosed {
        org: String,
        edge: String,
    },
    /// Every edge connected to the sending instance, now: sent when one connects and as a
    /// heartbeat, so an instance that died takes its sessions with it.
    Sessions {
        sessions: Vec<(String, String, Session)>,
    },
}

/// Where local changes go to reach the other instances; full means dropped (all of it is
/// refreshed soon: states by the next report, sessions by the next heartbeat).
pub type Peers = tokio::sync::mpsc::Sender<PeerMessage>;

/// Another instance's sessions count as open this long after its last heartbeat.
pub const PEER_SESSIONS_EXPIRE: Duration = Duration::from_secs(6);

/// Updates a slow HQ client may fall behind by before it is told it missed some.
const UPDATE_BACKLOG: usize = 4_096;

impl Default for LiveView {
    fn default() -> Self {
        LiveView {
            states: RwLock::new(HashMap::new()),
            updates: broadcast::channel(UPDATE_BACKLOG).0,
            sessions: RwLock::new(HashMap::new()),
            next_session: AtomicU64::new(0),
            peer_sessions: RwLock::new(HashMap::new()),
            peers: OnceLock::new(),
            metrics: Metrics::default(),
        }
    }
}

impl LiveView {
    /// From now on every local change is also sent to `peers`.
    pub fn join_cluster(&self, peers: Peers) {
        let _ = self.peers.set(peers);
    }

    fn tell_peers(&self, message: impl FnOnce() -> PeerMessage) {
        if let Some(peers) = self.peers.get() {
            if peers.try_send(message()).is_err() {
                self.metrics.peer_messages_dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// What another instance learnt: changes the picture here, and goes no further.
    pub fn apply_peer(&self, instance: &str, message: PeerMessage) {
        match message {
            PeerMessage::State { sighting, state } => {
                self.record(sighting, state);
            }
            PeerMessage::Event { org, edge, seq } => {
                let _ = self
                    .updates
                    .send(Arc::new(Update::Event { org, edge, seq }));
            }
            PeerMessage::Records { org } => {
                let _ = self.updates.send(Arc::new(Update::Records { org }));
            }
            PeerMessage::SessionClosed { org, edge } => {
                let mut sessions = self
                    .peer_sessions
                    .write()
                    .unwrap_or_else(|p| p.into_inner());
                if sessions
                    .get(&(org.clone(), edge.clone()))
                    .is_some_and(|s| s.instance == instance)
                {
                    sessions.remove(&(org, edge));
                }
            }
            PeerMessage::Sessions { sessions: list } => {
                let heard = Instant::now();
                let mut sessions = self
                    .peer_sessions
                    .write()
                    .unwrap_or_else(|p| p.into_inner());
                // This instance's old list goes, and so do instances no longer heard from.
                sessions.retain(|_, s| {
                    s.instance != instance && s.heard.elapsed() < PEER_SESSIONS_EXPIRE
                });
                for (org, edge, session) in list {
                    let instance = instance.to_string();
                    sessions.insert(
                        (org, edge),
                        PeerSession {
                            instance,
                            session,
                            heard,
                        },
                    );
                }
            }
        }
    }

    /// This instance's sessions, for its heartbeat to the others.
    pub fn local_sessions(&self) -> PeerMessage {
        let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        PeerMessage::Sessions {
            sessions: sessions
                .iter()
                .map(|((org, edge), (_, s))| (org.clone(), edge.clone(), *s))
                .collect(),
        }
    }

    /// Records `state` if it is newer than what is known for the sighting.
    pub fn observe(&self, sighting: Sighting, state: State) {
        if self.peers.get().is_none() {
            self.record(sighting, state);
        } else if let Some(state) = self.record(sighting.clone(), state) {
            self.tell_peers(|| PeerMessage::State { sighting, state });
        }
    }

    /// Records `state` if it is newer, and says so to the HQ streams: the state as kept.
    fn record(&self, sighting: Sighting, mut state: State) -> Option<State> {
        {
            let mut states = self.states.write().unwrap_or_else(|p| p.into_inner());
            if let Some(known) = states.get(&sighting) {
                if known.t_us >= state.t_us {
                    return None;
                }
                if state.mode.is_none() && known.custom_mode == state.custom_mode {
                    state.mode = known.mode.clone(); // same mode, name known from a datagram
                }
            }
            states.insert(sighting.clone(), state.clone());
        }
        let _ = self
            .updates
            .send(Arc::new(Update::State(sighting, state.clone())));
        Some(state)
    }

    pub fn state(&self, sighting: &Sighting) -> Option<State> {
        self.states
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(sighting)
            .cloned()
    }

    pub fn notify(&self, update: Update) {
        self.tell_peers(|| match &update {
            Update::State(sighting, state) => PeerMessage::State {
                sighting: sighting.clone(),
                state: state.clone(),
            },
            Update::Event { org, edge, seq } => PeerMessage::Event {
                org: org.clone(),
                edge: edge.clone(),
                seq: *seq,
            },
            Update::Records { org } => PeerMessage::Records { org: org.clone() },
        });
        let _ = self.updates.send(Arc::new(update));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Update>> {
        self.updates.subscribe()
    }

    /// The edge's session is open from now until the returned guard drops. An edge that
    /// reconnects opens its new session before the relay has noticed the old one is gone, so
    /// closing removes only the session it opened.
    pub fn session_opened(&self, org: &str, edge: &str) -> OpenSession<'_> {
        let id = self.next_session.fetch_add(1, Relaxed);
        let session = Session {
            since_us: crate::now_us(),
            last_batch_us: None,
        };
        self.sessions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((org.into(), edge.into()), (id, session));
        self.tell_peers(|| self.local_sessions());
        OpenSession {
            live: self,
            key: (org.into(), edge.into()),
            id,
        }
    }

    pub fn batch_stored(&self, org: &str, edge: &str) {
        let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        if let Some((_, s)) = sessions.get_mut(&(org.to_string(), edge.to_string())) {
            s.last_batch_us = Some(crate::now_us());
        }
    }

    /// The edge's session, on this instance or (as its last heartbeat said) on another.
    pub fn session(&self, org: &str, edge: &str) -> Option<Session> {
        let key = (org.to_string(), edge.to_string());
        if let Some(s) = self
            .sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Some(s.1);
        }
        self.peer_sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|s| s.heard.elapsed() < PEER_SESSIONS_EXPIRE)
            .map(|s| s.session)
    }

    pub fn sessions_open(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

/// Counters for `/metrics` (Prometheus text format).
#[derive(Debug, Default)]
pub struct Metrics {
    pub telemetry_batches: AtomicU64,
    pub telemetry_rows: AtomicU64,
    pub event_batches: AtomicU64,
    pub events: AtomicU64,
    pub datagrams: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    /// Connections closed for breaking the protocol.
    pub protocol_errors: AtomicU64,
    /// Connections refused: no identity, unknown or revoked edge.
    pub refused: AtomicU64,
    /// Sessions closed because the relay's store could not store a batch (disk full, I/O).
    pub store_failures: AtomicU64,
    /// Messages to and from the other relay instances (`cluster.rs`).
    pub peer_messages_sent: AtomicU64,
    pub peer_messages_received: AtomicU64,
    /// Not sent: the queue to NATS was full (NATS slow or unreachable).
    pub peer_messages_dropped: AtomicU64,
    /// Received but not understood (another version, or not a relay).
    pub peer_messages_malformed: AtomicU64,
}

impl Metrics {
    pub fn render(&self, sessions: usize) -> String {
        let c = |a: &AtomicU64| a.load(Relaxed);
        format!(
            "# TYPE trellis_relay_sessions gauge\n\
             trellis_relay_sessions {}\n\
             # TYPE trellis_relay_batches_total counter\n\
             trellis_relay_batches_total{{stream=\"telemetry\"}} {}\n\
             trellis_relay_batches_total{{stream=\"events\"}} {}\n\
             # TYPE trellis_relay_records_total counter\n\
             trellis_relay_records_total{{stream=\"telemetry\"}} {}\n\
             trellis_relay_records_total{{stream=\"events\"}} {}\n\
             # TYPE trellis_relay_datagrams_total counter\n\
             trellis_relay_datagrams_total {}\n\
             # TYPE trellis_relay_datagrams_dropped_total counter\n\
             trellis_relay_datagrams_dropped_total {}\n\
             # TYPE trellis_relay_protocol_errors_total counter\n\
             trellis_relay_protocol_errors_total {}\n\
             # TYPE trellis_relay_refused_total counter\n\
             trellis_relay_refused_total {}\n\
             # TYPE trellis_relay_store_failures_total counter\n\
             trellis_relay_store_failures_total {}\n\
             # TYPE trellis_relay_peer_messages_total counter\n\
             trellis_relay_peer_messages_total{{outcome=\"sent\"}} {}\n\
             trellis_relay_peer_messages_total{{outcome=\"received\"}} {}\n\
             trellis_relay_peer_messages_total{{outcome=\"dropped\"}} {}\n\
             trellis_relay_peer_messages_total{{outcome=\"malformed\"}} {}\n",
            sessions,
            c(&self.telemetry_batches),
            c(&self.event_batches),
            c(&self.telemetry_rows),
            c(&self.events),
            c(&self.datagrams),
            c(&self.datagrams_dropped),
            c(&self.protocol_errors),
            c(&self.refused),
            c(&self.store_failures),
            c(&self.peer_messages_sent),
            c(&self.peer_messages_received),
            c(&self.peer_messages_dropped),
            c(&self.peer_messages_malformed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_session_closing_leaves_the_reconnected_one_open() {
        let live = LiveView::default();
        let old = live.session_opened("vineyard-co", "pi-north");
        let new = live.session_opened("vineyard-co", "pi-north");
        drop(old);
        assert!(live.session("vineyard-co", "pi-north").is_some());
        assert_eq!(live.sessions_open(), 1);
        drop(new);
        assert!(live.session("vineyard-co", "pi-north").is_none());
        assert_eq!(live.sessions_open(), 0);
    }
}
