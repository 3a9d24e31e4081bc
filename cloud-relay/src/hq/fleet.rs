//! The org's own picture: vehicles (merged across edges), history, alerts, edges, proposals.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use trellis_web::time::parse_time_us;
use trellis_web::Query;

use super::{blocking, ApiError, Caller, HqState};
use crate::live::{LiveView, Sighting, State as LiveState};
use crate::store::hq::FleetVehicle;
use sync_protocol::codec;

/// One vehicle of the org as HQ sees it.
#[derive(Debug, Clone, Serialize)]
pub struct VehicleJson {
    pub id: i64,
    pub name: String,
    pub uid: Option<String>,
    pub autopilot: u32,
    pub mav_type: u32,
    /// The edges that hear it, with its system id at each.
    pub heard_by: Vec<SightingJson>,
    /// The freshest state any of those edges reported, and which edge that was.
    pub state: Option<StateJson>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SightingJson {
    pub edge: String,
    pub sysid: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateJson {
    #[serde(flatten)]
    pub state: LiveState,
    pub edge: String,
}

/// Merge rule for a vehicle heard by several edges: the newest report wins (edge time),
/// ties broken by edge name so every reader picks the same one.
pub fn freshest(live: &LiveView, org: &str, v: &FleetVehicle) -> Option<StateJson> {
    v.sightings
        .iter()
        .filter_map(|(edge, sysid)| {
            let state = live.state(&Sighting {
                org: org.to_string(),
                edge: edge.clone(),
                sysid: *sysid,
            })?;
            Some(StateJson {
                state,
                edge: edge.clone(),
            })
        })
        .max_by(|a, b| {
            a.state
                .t_us
                .cmp(&b.state.t_us)
                .then_with(|| b.edge.cmp(&a.edge))
        })
}

pub fn vehicle_json(live: &LiveView, org: &str, v: &FleetVehicle) -> VehicleJson {
    VehicleJson {
        id: v.id,
        name: v.name.clone(),
        uid: v.uid.clone(),
        autopilot: v.autopilot,
        mav_type: v.mav_type,
        heard_by: v
            .sightings
            .iter()
            .map(|(edge, sysid)| SightingJson {
                edge: edge.clone(),
                sysid: *sysid,
            })
            .collect(),
        state: freshest(live, org, v),
    }
}

pub async fn vehicles(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let org = caller.org(&org)?;
    let o = org.clone();
    let fleet = blocking(&s.store, move |st| st.fleet(&o)).await?;
    let vehicles: Vec<VehicleJson> = fleet
        .iter()
        .map(|v| vehicle_json(&s.live, &org, v))
        .collect();
    Ok(Json(json!({ "org": org, "vehicles": vehicles })))
}

pub async fn find(s: &HqState, org: &str, id: &str) -> Result<FleetVehicle, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no vehicle {id:?}")))?;
    let o = org.to_string();
    let fleet = blocking(&s.store, move |st| st.fleet(&o)).await?;
    fleet
        .into_iter()
        .find(|v| v.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no vehicle {id}")))
}

pub async fn vehicle(
    State(s): State<HqState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<VehicleJson>, ApiError> {
    let org = caller.org(&org)?;
    let v = find(&s, &org, &id).await?;
    Ok(Json(vehicle_json(&s.live, &org, &v)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct SampleJson {
    t_us: i64,
    lat: f64,
    lon: f64,
    alt_msl_m: f64,
    alt_rel_m: f64,
    heading_deg: Option<f64>,
    battery_pct: Option<i8>,
    battery_v: f64,
    gps_fix: u8,
    satellites: u8,
    custom_mode: u32,
    armed: bool,
    mission_seq: u16,
}

pub async fn telemetry(
    State(s): State<HqState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Query(q): Query<TelemetryQuery>,
) -> Result<Json<Value>, ApiError> {
    let org = caller.org(&org)?;
    let from_us = q
        .from
        .as_deref()
        .map(|t| parse_time_us("from", t))
        .transpose()?
        .unwrap_or(0);
    let to_us =
        q.to.as_deref()
            .map(|t| parse_time_us("to", t))
            .transpose()?
            .unwrap_or(i64::MAX);
    if from_us >= to_us {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    let limit = trellis_web::page::limit(q.limit, 10_000, 100_000)?;
    let v = find(&s, &org, &id).await?;
    let (o, vid) = (org.clone(), v.id);
    let rows = blocking(&s.store, move |st| {
        st.vehicle_telemetry(&o, vid, from_us, to_us, limit)
    })
    .await?;
    let samples: Vec<SampleJson> = rows
        .iter()
        .map(|r| SampleJson {
            t_us: r.t_us,
            lat: f64::from(r.lat_e7) / 1e7,
            lon: f64::from(r.lon_e7) / 1e7,
            alt_msl_m: f64::from(r.alt_mm) / 1e3,
            alt_rel_m: f64::from(r.rel_alt_mm) / 1e3,
            heading_deg: codec::heading_deg(r.heading_cdeg),
            battery_pct: (r.battery_pct >= 0).then_some(r.battery_pct),
            battery_v: f64::from(r.battery_mv) / 1e3,
            gps_fix: r.gps_fix,
            satellites: r.satellites,
            custom_mode: r.custom_mode,
            armed: r.armed,
            mission_seq: r.mission_seq,
        })
        .collect();
    Ok(Json(
        json!({ "vehicle": v.id, "name": v.name, "samples": samples }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    kind: Option<String>,
    limit: Option<u32>,
}

fn kind_code(kind: &str) -> Result<i32, ApiError> {
    use sync_protocol::proto::event::Kind;
    Kind::from_str_name(&kind.to_ascii_uppercase())
        .filter(|k| *k != Kind::Unspecified)
        .map(|k| k as i32)
        .ok_or_else(|| {
            ApiError::invalid(
                "kind",
                format!("{kind:?}: expected alert, state or identity"),
            )
        })
}

async fn events_of(
    s: &HqState,
    org: String,
    kind: Option<i32>,
    limit: Option<u32>,
) -> Result<Json<Value>, ApiError> {
    let limit = trellis_web::page::limit(limit, 100, 10_000)?;
    let events = blocking(&s.store, move |st| st.events(&org, kind, limit)).await?;
    Ok(Json(json!({ "events": events })))
}

pub async fn alerts(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let org = caller.org(&org)?;
    let Json(mut body) = events_of(&s, org, Some(1), q.limit).await?;
    Ok(Json(json!({ "alerts": body["events"].take() })))
}

pub async fn events(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let org = caller.org(&org)?;
    let kind = q.kind.as_deref().map(kind_code).transpose()?;
    events_of(&s, org, kind, q.limit).await
}

pub async fn edges(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let org = caller.org(&org)?;
    let o = org.clone();
    let edges = blocking(&s.store, move |st| st.edges(&o)).await?;
    let edges: Vec<Value> = edges
        .into_iter()
        .map(|e| {
            let session = s.live.session(&org, &e.edge);
            let mut v = json!(e);
            v["connected"] = json!(session.is_some());
            v["connected_since_us"] = json!(session.map(|x| x.since_us));
            v["last_batch_us"] = json!(session.and_then(|x| x.last_batch_us));
            v
        })
        .collect();
    Ok(Json(json!({ "edges": edges })))
}
