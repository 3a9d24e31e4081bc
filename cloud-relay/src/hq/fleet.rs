//! The org's own picture: vehicles (merged across edges), history, alerts, edges, proposals.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use trellis_web::openapi::ReadRefusals;
use trellis_web::page::{by_key, KeyPageParams};
use trellis_web::time::TimeRange;
use trellis_web::{Path, Query, SampleView};
use utoipa::{IntoParams, ToSchema};

use super::{blocking, ApiError, Caller, HqState, Org};
use crate::live::{LiveView, Sighting, State as LiveState};
use crate::store::history::HistoryCursor;
use crate::store::hq::{EdgeRecord, EventCursor, EventRecord, FleetVehicle};

/// One vehicle of the org as HQ sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SightingJson {
    pub edge: String,
    pub sysid: u32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Serialize, ToSchema)]
pub struct VehicleList {
    org: String,
    vehicles: Vec<VehicleJson>,
    /// `after` for the next page (a fleet id); `null` on the last.
    next: Option<String>,
}

/// The org's vehicles by fleet id, merged across its stations, each with its freshest state.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/vehicles", tag = "fleet",
    params(Org, KeyPageParams),
    responses((status = 200, description = "the org's vehicles", body = VehicleList),
        ReadRefusals))]
pub async fn vehicles(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(page): Query<KeyPageParams>,
) -> Result<Json<VehicleList>, ApiError> {
    let org = caller.org(&org)?;
    page.limit()?;
    let o = org.clone();
    let fleet = blocking(&s.store, move |st| st.fleet(&o)).await?;
    let (fleet, next) = by_key(fleet, &page, |v| v.id)?;
    let vehicles: Vec<VehicleJson> = fleet
        .iter()
        .map(|v| vehicle_json(&s.live, &org, v))
        .collect();
    Ok(Json(VehicleList {
        org,
        vehicles,
        next,
    }))
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

/// One vehicle of the org.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/vehicles/{id}", tag = "fleet",
    params(Org, ("id" = i64, Path, description = "the fleet id")),
    responses((status = 200, description = "the vehicle", body = VehicleJson), ReadRefusals))]
pub async fn vehicle(
    State(s): State<HqState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<VehicleJson>, ApiError> {
    let org = caller.org(&org)?;
    let v = find(&s, &org, &id).await?;
    Ok(Json(vehicle_json(&s.live, &org, &v)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TelemetryQuery {
    /// RFC 3339 or Unix milliseconds; from the oldest sample when absent.
    #[param(schema_with = trellis_web::openapi::time_param)]
    from: Option<String>,
    /// RFC 3339 or Unix milliseconds; to the newest when absent.
    #[param(schema_with = trellis_web::openapi::time_param)]
    to: Option<String>,
    #[param(minimum = 1, maximum = 100_000)]
    limit: Option<u32>,
    /// Only samples after where the page before ended: its `next` (same `from` and `to`).
    #[param(pattern = r"^-?[0-9]{1,19}(~[0-9.-]+)*$", max_length = 4_260)]
    after: Option<String>,
}

// The document's bound on `after` is the cursor's.
const _: () = assert!(crate::store::history::CURSOR_MAX_LEN == 4_260);

/// A vehicle's history, merged from every station that heard it.
#[derive(Serialize, ToSchema)]
pub struct TelemetryPage {
    vehicle: i64,
    name: String,
    samples: Vec<SampleView>,
    /// `after` for the next page; `null` on the last.
    next: Option<String>,
}

/// A vehicle's stored history, oldest first, paged by `limit` and `after`. Walking the pages
/// gives the samples one long read gives, each sample heard by two stations once.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/vehicles/{id}/telemetry", tag = "fleet",
    params(Org, ("id" = i64, Path, description = "the fleet id"), TelemetryQuery),
    responses((status = 200, description = "the samples", body = TelemetryPage), ReadRefusals))]
pub async fn telemetry(
    State(s): State<HqState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    Query(q): Query<TelemetryQuery>,
) -> Result<Json<TelemetryPage>, ApiError> {
    let org = caller.org(&org)?;
    // Unbounded by default: from the oldest sample to the newest.
    let TimeRange { from_us, to_us } =
        TimeRange::parse(q.from.as_deref(), q.to.as_deref(), i64::MAX, i64::MAX)?;
    let limit = trellis_web::page::limit(q.limit, 10_000, 100_000)?;
    let after: Option<HistoryCursor> = q
        .after
        .as_deref()
        .map(|a| {
            a.parse()
                .map_err(|_| ApiError::invalid("after", "not a `next` this history gave"))
        })
        .transpose()?;
    let v = find(&s, &org, &id).await?;
    let (o, vid) = (org.clone(), v.id);
    let page = blocking(&s.store, move |st| {
        st.vehicle_telemetry(&o, vid, from_us, to_us, after.as_ref(), limit)
    })
    .await?;
    Ok(Json(TelemetryPage {
        vehicle: v.id,
        name: v.name,
        samples: page.rows.iter().map(SampleView::from).collect(),
        next: page.next.map(|c| c.to_string()),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// `alert`, `state`, `identity`, `ack` or `command`; every kind when absent.
    #[param(pattern = "^(alert|state|identity|ack|command)$")]
    kind: Option<String>,
    /// How many, newest first (default 100).
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<u32>,
    /// Only events older than this: the `next` of the page before.
    #[param(pattern = r"^-?[0-9]{1,19}\.[0-9]{1,20}\..+$")]
    before: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// How many, newest first (default 100).
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<u32>,
    /// Only alerts older than this: the `next` of the page before.
    #[param(pattern = r"^-?[0-9]{1,19}\.[0-9]{1,20}\..+$")]
    before: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    events: Vec<EventRecord>,
    /// `before` for the next page; `null` on the last.
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertList {
    alerts: Vec<EventRecord>,
    /// `before` for the next page; `null` on the last.
    next: Option<String>,
}

fn kind_code(kind: &str) -> Result<i32, ApiError> {
    use sync_protocol::proto::event::Kind;
    Kind::from_str_name(&kind.to_ascii_uppercase())
        .filter(|k| *k != Kind::Unspecified && kind == kind.to_ascii_lowercase())
        .map(|k| k as i32)
        .ok_or_else(|| {
            ApiError::invalid(
                "kind",
                format!("{kind:?}: expected alert, state, identity, ack or command"),
            )
        })
}

/// A page of events and the `before` of the next one.
async fn events_of(
    s: &HqState,
    org: String,
    kind: Option<i32>,
    limit: Option<u32>,
    before: Option<&str>,
) -> Result<(Vec<EventRecord>, Option<String>), ApiError> {
    let limit = trellis_web::page::limit(limit, 100, 10_000)?;
    let before = before
        .map(|b| {
            EventCursor::parse(b)
                .ok_or_else(|| ApiError::invalid("before", "not a `next` this API gave"))
        })
        .transpose()?;
    let events = blocking(&s.store, move |st| {
        st.events(&org, kind, before.as_ref(), limit + 1)
    })
    .await?;
    Ok(trellis_web::page::split(events, limit, |e| {
        EventCursor::of(e).to_string()
    }))
}

/// The org's alerts from every station, newest first, each with its acknowledgement.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/alerts", tag = "fleet",
    params(Org, AlertsQuery),
    responses((status = 200, description = "the alerts", body = AlertList), ReadRefusals))]
pub async fn alerts(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(q): Query<AlertsQuery>,
) -> Result<Json<AlertList>, ApiError> {
    let org = caller.org(&org)?;
    let (alerts, next) = events_of(&s, org, Some(1), q.limit, q.before.as_deref()).await?;
    Ok(Json(AlertList { alerts, next }))
}

/// The org's events from every station (alerts, state changes, identity), newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/events", tag = "fleet",
    params(Org, EventsQuery),
    responses((status = 200, description = "the events", body = EventList), ReadRefusals))]
pub async fn events(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<EventList>, ApiError> {
    let org = caller.org(&org)?;
    let kind = q.kind.as_deref().map(kind_code).transpose()?;
    let (events, next) = events_of(&s, org, kind, q.limit, q.before.as_deref()).await?;
    Ok(Json(EventList { events, next }))
}

/// A ground station of the org and its sync state.
#[derive(Serialize, ToSchema)]
pub struct EdgeJson {
    #[serde(flatten)]
    record: EdgeRecord,
    connected: bool,
    connected_since_us: Option<i64>,
    last_batch_us: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct EdgeList {
    edges: Vec<EdgeJson>,
    /// `after` for the next page (a station's name); `null` on the last.
    next: Option<String>,
}

/// The org's ground stations by name: enrolled, connected, how far sync has come.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/edges", tag = "fleet",
    params(Org, KeyPageParams),
    responses((status = 200, description = "the stations", body = EdgeList), ReadRefusals))]
pub async fn edges(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(page): Query<KeyPageParams>,
) -> Result<Json<EdgeList>, ApiError> {
    let org = caller.org(&org)?;
    page.limit()?;
    let o = org.clone();
    let edges = blocking(&s.store, move |st| st.edges(&o)).await?;
    let (edges, next) = by_key(edges, &page, |e| e.edge.clone())?;
    let edges = edges
        .into_iter()
        .map(|record| {
            let session = s.live.session(&org, &record.edge);
            EdgeJson {
                connected: session.is_some(),
                connected_since_us: session.map(|x| x.since_us),
                last_batch_us: session.and_then(|x| x.last_batch_us),
                record,
            }
        })
        .collect();
    Ok(Json(EdgeList { edges, next }))
}
