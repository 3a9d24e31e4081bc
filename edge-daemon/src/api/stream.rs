//! `GET /api/v1/stream`: the live picture over a WebSocket, for the web UI and tools.
//!
//! Query: `vehicles=1,2` (system ids; default all) and
//! `kinds=state,alerts,events,records,commands` (default all); the token as for every route (a browser sends `access_token=`).
//! Messages, JSON text:
//!
//! - `{"type":"hello","token":{name, role},"kinds":[…]}` first;
//! - `{"type":"state","vehicle":{…}}`: a vehicle as `GET /api/v1/vehicles/{id}` shows it, the
//!   moment a new position arrives (at most 10 Hz on average), other changes within 200 ms,
//!   and at least once a second (see `live.rs`);
//! - `{"type":"alert"|"event","event":{…}}` once committed (`seq` is the alert's id);
//! - `{"type":"ack","event":{…}}` when someone acknowledged an alert (`acknowledges` is the
//!   alert's `seq`), for `alerts` subscribers;
//! - `{"type":"record","table","key","field","value"}`: an editable record changed;
//! - `{"type":"command","event":{…}}`: a command to a vehicle was stored (`pending`) or got
//!   an outcome (`event.command`: its id, outcome, MAV_RESULT, sender);
//! - `{"type":"station","time_us","vehicles","sync":{"enrolled","connected"}}` every second,
//!   so a client that hears nothing for a few seconds knows the station is gone.
//!
//! A slow client never slows ingest or other clients: state is coalesced to the newest per
//! vehicle; events are never dropped, so a client a whole ring behind, or one that stops
//! reading, is closed with a reason (code 4002). A revoked token closes its streams within a
//! second (code 4001).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use trellis_web::{ApiError, Query};

use super::auth::Caller;
use super::AppState;
use crate::live::Committed;

/// Close codes (4000–4999 are the application's).
pub const CLOSE_REVOKED: u16 = 4001;
pub const CLOSE_TOO_SLOW: u16 = 4002;
/// A client that has not taken a message for this long is not reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const STATION_EVERY: Duration = Duration::from_secs(1);

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct StreamStats {
    pub clients: AtomicU64,
    pub state_sent: AtomicU64,
    /// State versions a client never saw because a newer one replaced them first.
    pub state_coalesced: AtomicU64,
    pub events_sent: AtomicU64,
    /// Clients closed for falling behind on events or not reading.
    pub dropped_slow: AtomicU64,
    pub dropped_revoked: AtomicU64,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// System ids, comma-separated (`1,2`); every vehicle when absent.
    vehicles: Option<String>,
    /// Any of `state`, `alerts`, `events`, `records`, comma-separated; all when absent.
    kinds: Option<String>,
    /// The token, for browsers, whose WebSockets cannot send a header. Read by the auth
    /// layer (and described as the `access_token` scheme); allowed here so that it is not an
    /// unknown parameter.
    #[allow(dead_code)]
    #[param(ignore)]
    access_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    State,
    Alerts,
    Events,
    Records,
    Commands,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::State,
        Kind::Alerts,
        Kind::Events,
        Kind::Records,
        Kind::Commands,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::State => "state",
            Kind::Alerts => "alerts",
            Kind::Events => "events",
            Kind::Records => "records",
            Kind::Commands => "commands",
        }
    }
}

/// What one client asked for.
#[derive(Debug, Clone)]
struct Filter {
    vehicles: Option<BTreeSet<u8>>,
    kinds: BTreeSet<Kind>,
}

impl Filter {
    fn parse(p: &StreamParams) -> Result<Filter, ApiError> {
        let vehicles = match p.vehicles.as_deref() {
            None | Some("") => None,
            Some(list) => Some(
                list.split(',')
                    .map(|v| {
                        v.trim().parse::<u8>().map_err(|_| {
                            ApiError::invalid("vehicles", format!("{v:?} is not a system id"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        let kinds = match p.kinds.as_deref() {
            None | Some("") => Kind::ALL.into_iter().collect(),
            Some(list) => list
                .split(',')
                .map(|k| {
                    Kind::ALL
                        .into_iter()
                        .find(|kind| kind.name() == k.trim())
                        .ok_or_else(|| {
                            ApiError::invalid(
                                "kinds",
                                format!(
                                    "{k:?}: expected state, alerts, events, records or commands"
                                ),
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Filter { vehicles, kinds })
    }

    fn wants_committed(&self) -> bool {
        [Kind::Alerts, Kind::Events, Kind::Records, Kind::Commands]
            .iter()
            .any(|k| self.kinds.contains(k))
    }

    fn vehicle(&self, id: u8) -> bool {
        self.vehicles.as_ref().is_none_or(|v| v.contains(&id))
    }

    fn committed(&self, c: &Committed) -> bool {
        let kind = match c {
            Committed::Event(e) if e.kind == "alert" || e.kind == "ack" => Kind::Alerts,
            Committed::Event(e) if e.kind == "command" => Kind::Commands,
            Committed::Event(_) => Kind::Events,
            Committed::Record { .. } => Kind::Records,
        };
        self.kinds.contains(&kind) && c.vehicle().is_none_or(|v| self.vehicle(v))
    }
}

/// The live picture over a WebSocket (see the module documentation for the messages). A
/// request that does not ask to upgrade is refused (400).
#[utoipa::path(get, path = "/api/v1/stream", tag = "station", params(StreamParams),
    security(("token" = []), ("access_token" = [])),
    responses((status = 101, description = "switching to the WebSocket protocol"),
        trellis_web::openapi::ReadRefusals))]
pub async fn upgrade(
    State(s): State<AppState>,
    caller: Caller,
    Query(params): Query<StreamParams>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(&params)?;
    let ws = ws.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(ws.on_upgrade(move |socket| async move {
        s.stream.clients.fetch_add(1, Relaxed);
        let who = caller.0.name.clone();
        match run(socket, &s, &caller, filter).await {
            Ok(()) => tracing::debug!(token = %who, "stream closed"),
            Err(e @ StreamError::NotReading(_)) => {
                s.stream.dropped_slow.fetch_add(1, Relaxed);
                tracing::info!(token = %who, "stream dropped: {e}");
            }
            Err(e) => tracing::debug!(token = %who, "stream ended: {e}"),
        }
        s.stream.clients.fetch_sub(1, Relaxed);
    }))
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("client gone: {0}")]
    Socket(#[from] axum::Error),
    #[error("client not reading for {0:?}")]
    NotReading(Duration),
}

async fn send(socket: &mut WebSocket, text: &str) -> Result<(), StreamError> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await {
        Ok(sent) => Ok(sent?),
        Err(_) => Err(StreamError::NotReading(SEND_TIMEOUT)),
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: String) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}

async fn run(
    mut socket: WebSocket,
    s: &AppState,
    caller: &Caller,
    filter: Filter,
) -> Result<(), StreamError> {
    let mut tokens = s.tokens.changes();
    let mut events = s.store_status.live.subscribe();
    let mut state = s.live.clone();
    state.mark_changed();
    // Per vehicle, the publication last sent (`LiveVehicle::seq`).
    let mut sent: BTreeMap<u8, u64> = BTreeMap::new();
    let mut station = tokio::time::interval(STATION_EVERY);
    let kinds: Vec<&str> = filter.kinds.iter().map(|k| k.name()).collect();
    let hello = json!({
        "type": "hello",
        "token": { "name": caller.0.name, "role": caller.0.role },
        "kinds": kinds,
    });
    send(&mut socket, &hello.to_string()).await?;
    loop {
        tokio::select! {
            biased;
            _ = tokens.changed() => {
                if !s.tokens.is_active(&caller.0.id) {
                    s.stream.dropped_revoked.fetch_add(1, Relaxed);
                    close(&mut socket, CLOSE_REVOKED, "token revoked".into()).await;
                    return Ok(());
                }
            }
            // A client that asked for state only is never dropped for missing events.
            event = events.recv(), if filter.wants_committed() => match event {
                Ok(c) if filter.committed(&c.change) => {
                    send(&mut socket, &c.message).await?;
                    s.stream.events_sent.fetch_add(1, Relaxed);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    s.stream.dropped_slow.fetch_add(1, Relaxed);
                    let reason = format!(
                        "too slow: {missed} events missed; reconnect and re-read /api/v1/alerts"
                    );
                    close(&mut socket, CLOSE_TOO_SLOW, reason).await;
                    return Ok(());
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            changed = state.changed(), if filter.kinds.contains(&Kind::State) => {
                if changed.is_err() {
                    return Ok(());
                }
                // Copy out what to send, so the sends do not hold the watch's lock.
                let due: Vec<(u8, u64, Arc<str>)> = state
                    .borrow_and_update()
                    .vehicles
                    .iter()
                    .filter(|(id, v)| {
                        filter.vehicle(**id) && sent.get(id).is_none_or(|seq| v.seq > *seq)
                    })
                    .map(|(id, v)| (*id, v.seq, v.message.clone()))
                    .collect();
                for (id, seq, message) in due {
                    send(&mut socket, &message).await?;
                    let previous = sent.insert(id, seq).unwrap_or(seq.saturating_sub(1));
                    s.stream
                        .state_coalesced
                        .fetch_add(seq.saturating_sub(previous + 1), Relaxed);
                    s.stream.state_sent.fetch_add(1, Relaxed);
                }
            }
            _ = station.tick() => {
                let snapshot = s.snapshots.borrow().clone();
                let sync = s.sync_view();
                let message = json!({
                    "type": "station",
                    "time_us": snapshot.time_us,
                    "time_source": snapshot.time_source,
                    "vehicles": snapshot.vehicles.len(),
                    "sync": { "enrolled": sync.enrolled, "connected": sync.connected },
                });
                send(&mut socket, &message.to_string()).await?;
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {} // one-way: pings are answered by axum
                Some(Err(e)) => return Err(e.into()),
            },
        }
    }
}
