//! `GET /api/v1/orgs/{org}/stream`: the COP, live, over a WebSocket.
//!
//! On connect the client gets `{"type": "hello", "token": {name, role, org}}` and
//! `{"type": "snapshot", "entities": [...]}` (what `GET /api/v1/cop` returns), then one
//! message per change:
//!
//! - `{"type": "vehicle", "entity": {...}}`: a vehicle's merged state changed (own, or
//!   shared with the agreement's limits applied);
//! - `{"type": "gone", "owner": ..., "id": ...}`: a shared vehicle left the picture (its
//!   agreement was revoked, or it left the agreed area);
//! - `{"type": "event", "event": {...}}`: an alert or state change of the org's vehicles;
//! - `{"type": "records"}`: fields, geofences, proposals or names changed;
//! - `{"type": "lagged"}` followed by a fresh snapshot, when the client read too slowly;
//! - `{"type": "relay", "time_us": ...}` every second, so a client that hears nothing for a
//!   few seconds knows the relay (or its own connection) is gone.
//!
//! Agreements are re-read every second, so a revoke reaches open streams within one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::cop::{own_entities, Entity, EntityView, Shared};
use super::fleet::vehicle_json;
use super::{ApiError, Caller, HqState};
use crate::live::{Sighting, Update};
use crate::store::hq::FleetVehicle;
use crate::store::StoreError;

const SHARES_REFRESH: Duration = Duration::from_secs(1);

/// The COP, live, over a WebSocket (see the module documentation for the messages).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/stream", tag = "cop", params(super::Org),
    security(("token" = []), ("access_token" = [])),
    responses((status = 101, description = "switching to the WebSocket protocol"),
        trellis_web::openapi::ReadRefusals))]
pub async fn upgrade(
    State(s): State<HqState>,
    caller: Caller,
    trellis_web::Path(org): trellis_web::Path<String>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // The org check comes first: another org's stream is "not found", upgrade or not.
    let org = caller.org(&org)?;
    let ws = ws.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(ws.on_upgrade(move |socket| async move {
        if let Err(e) = run(socket, s, caller, org.clone()).await {
            tracing::debug!(%org, "HQ stream ended: {e}");
        }
    }))
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("client gone: {0}")]
    Socket(#[from] axum::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("store task: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What one stream knows: the org's fleet, what is shared with it, what it has shown.
struct View {
    org: String,
    fleet: Vec<FleetVehicle>,
    shared: Shared,
    /// Shared entities on the client's screen, by (owner, id).
    shown: HashSet<(String, i64)>,
    /// Newest event already sent, by relay receive time.
    events_seen_us: i64,
}

async fn load(s: &HqState, org: &str) -> Result<(Vec<FleetVehicle>, Shared), StreamError> {
    let (store, o) = (s.store.clone(), org.to_string());
    Ok(tokio::task::spawn_blocking(move || {
        Ok::<_, StoreError>((store.fleet(&o)?, Shared::load(store.as_ref(), &o)?))
    })
    .await??)
}

async fn send(socket: &mut WebSocket, value: serde_json::Value) -> Result<(), StreamError> {
    socket.send(Message::Text(value.to_string().into())).await?;
    Ok(())
}

async fn run(
    mut socket: WebSocket,
    s: HqState,
    caller: Caller,
    org: String,
) -> Result<(), StreamError> {
    let mut updates = s.live.subscribe();
    let token = &caller.0;
    send(
        &mut socket,
        json!({ "type": "hello", "token": { "name": token.name, "role": token.role, "org": token.org } }),
    )
    .await?;
    let (fleet, shared) = load(&s, &org).await?;
    let mut view = View {
        org,
        fleet,
        shared,
        shown: HashSet::new(),
        events_seen_us: crate::now_us(),
    };
    snapshot(&mut socket, &s, &mut view).await?;
    let mut refresh = tokio::time::interval(SHARES_REFRESH);
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Ok(update) => on_update(&mut socket, &s, &mut view, &update).await?,
                Err(RecvError::Lagged(_)) => {
                    send(&mut socket, json!({ "type": "lagged" })).await?;
                    snapshot(&mut socket, &s, &mut view).await?;
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            _ = refresh.tick() => {
                send(&mut socket, json!({ "type": "relay", "time_us": crate::now_us() })).await?;
                let (fleet, shared) = load(&s, &view.org).await?;
                view.fleet = fleet;
                let changed = shared.ids() != view.shared.ids();
                view.shared = shared;
                if changed {
                    resend_shared(&mut socket, &s, &mut view).await?;
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {} // the stream is one-way; pings are answered by axum
                Some(Err(e)) => return Err(e.into()),
            },
        }
    }
}

async fn snapshot(socket: &mut WebSocket, s: &HqState, view: &mut View) -> Result<(), StreamError> {
    let mut entities = own_entities(&s.live, &view.org, &view.fleet);
    let shared = view.shared.entities(&s.live);
    view.shown = shared.iter().map(|e| (e.owner.clone(), e.id())).collect();
    entities.extend(shared);
    send(
        socket,
        json!({ "type": "snapshot", "org": view.org, "entities": entities }),
    )
    .await
}

/// After agreements changed: shared entities no longer admitted are withdrawn, newly
/// admitted ones are sent.
async fn resend_shared(
    socket: &mut WebSocket,
    s: &HqState,
    view: &mut View,
) -> Result<(), StreamError> {
    let now: Vec<Entity> = view.shared.entities(&s.live);
    let keys: HashSet<(String, i64)> = now.iter().map(|e| (e.owner.clone(), e.id())).collect();
    for (owner, id) in view.shown.difference(&keys) {
        send(socket, json!({ "type": "gone", "owner": owner, "id": id })).await?;
    }
    for entity in now {
        send(socket, json!({ "type": "vehicle", "entity": entity })).await?;
    }
    view.shown = keys;
    Ok(())
}

async fn on_update(
    socket: &mut WebSocket,
    s: &HqState,
    view: &mut View,
    update: &Arc<Update>,
) -> Result<(), StreamError> {
    match update.as_ref() {
        Update::State(sighting, _) if sighting.org == view.org => {
            let Some(v) = find(&view.fleet, sighting) else {
                return Ok(()); // not in the registry yet: its identity event is on its way
            };
            let entity = Entity {
                owner: view.org.clone(),
                shared: false,
                view: EntityView::Own(vehicle_json(&s.live, &view.org, v)),
            };
            send(socket, json!({ "type": "vehicle", "entity": entity })).await
        }
        Update::State(sighting, _) => {
            let Some(fleet) = view.shared.fleets.get(&sighting.org) else {
                return Ok(()); // nothing of that org is shared with this one
            };
            let Some(v) = find(fleet, sighting) else {
                return Ok(());
            };
            let key = (sighting.org.clone(), v.id);
            match view.shared.view(&s.live, &sighting.org, v) {
                Some(shared) => {
                    view.shown.insert(key);
                    let entity = Entity {
                        owner: sighting.org.clone(),
                        shared: true,
                        view: EntityView::Shared(shared),
                    };
                    send(socket, json!({ "type": "vehicle", "entity": entity })).await
                }
                None if view.shown.remove(&key) => {
                    send(
                        socket,
                        json!({ "type": "gone", "owner": key.0, "id": key.1 }),
                    )
                    .await
                }
                None => Ok(()),
            }
        }
        Update::Event { org, .. } if *org == view.org => {
            let (store, o) = (s.store.clone(), org.clone());
            let events =
                tokio::task::spawn_blocking(move || store.events(&o, None, None, 100)).await??;
            let mut fresh: Vec<_> = events
                .into_iter()
                .filter(|e| e.received_us > view.events_seen_us)
                .collect();
            fresh.sort_by_key(|e| (e.received_us, e.t_us));
            for e in fresh {
                view.events_seen_us = view.events_seen_us.max(e.received_us);
                send(socket, json!({ "type": "event", "event": e })).await?;
            }
            // A new identity may have added a vehicle.
            let (fleet, _) = load(s, &view.org).await?;
            view.fleet = fleet;
            Ok(())
        }
        Update::Event { .. } => Ok(()),
        // Fields, geofences, proposals or names changed: clients re-read what they show.
        Update::Records { org } if *org == view.org => {
            send(socket, json!({ "type": "records" })).await
        }
        Update::Records { .. } => Ok(()),
    }
}

fn find<'a>(fleet: &'a [FleetVehicle], sighting: &Sighting) -> Option<&'a FleetVehicle> {
    fleet.iter().find(|v| {
        v.sightings
            .iter()
            .any(|(edge, sysid)| *edge == sighting.edge && *sysid == sighting.sysid)
    })
}
