//! The common operating picture: the caller's own vehicles plus what other orgs share with
//! it, each labelled with its owner.
//!
//! A sharing agreement names the vehicles it covers (by name or autopilot uid; none named
//! means all), optionally an area (a vehicle outside it is not shared at all while it is
//! outside) and optionally a grid size positions are coarsened to. Shared vehicles show
//! position, altitude, armed and mode, never battery, edges or history. Agreements are read
//! fresh for every COP request and re-read every second by open streams, so a revoke takes
//! effect at once.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::fleet::{vehicle_json, VehicleJson};
use super::{blocking, ApiError, Caller, HqState};
use crate::geo::{coarsen, Area};
use crate::live::LiveView;
use crate::store::hq::{FleetVehicle, Share};
use crate::store::{HqStore, StoreError};

/// One entity of the picture.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Entity {
    pub owner: String,
    pub shared: bool,
    #[serde(flatten)]
    pub view: EntityView,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum EntityView {
    Own(VehicleJson),
    Shared(SharedVehicle),
}

/// Either kind of vehicle. `anyOf`, not the `oneOf` an untagged enum would get: a vehicle
/// of one's own has every member a shared one has, so it matches both.
impl utoipa::PartialSchema for EntityView {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{schema::AnyOfBuilder, Ref};
        AnyOfBuilder::new()
            .item(Ref::from_schema_name("VehicleJson"))
            .item(Ref::from_schema_name("SharedVehicle"))
            .into()
    }
}

impl utoipa::ToSchema for EntityView {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push(("VehicleJson".into(), VehicleJson::schema()));
        <VehicleJson as utoipa::ToSchema>::schemas(schemas);
        schemas.push(("SharedVehicle".into(), SharedVehicle::schema()));
        <SharedVehicle as utoipa::ToSchema>::schemas(schemas);
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SharedVehicle {
    pub id: i64,
    pub name: String,
    /// Grid size the position was snapped to, if the agreement coarsens.
    pub coarsened_m: Option<f64>,
    pub state: SharedState,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SharedState {
    pub t_us: i64,
    pub lat: f64,
    pub lon: f64,
    pub alt_msl_m: f64,
    pub heading_deg: Option<f64>,
    pub armed: bool,
    pub mode: Option<String>,
}

/// An agreement with its area parsed.
pub struct Agreement {
    pub share: Share,
    area: Option<Area>,
}

/// Everything shared with one org: the agreements and the sharing orgs' fleets.
pub struct Shared {
    pub agreements: Vec<Agreement>,
    pub fleets: HashMap<String, Vec<FleetVehicle>>,
}

impl Shared {
    pub fn load(store: &dyn HqStore, org: &str) -> Result<Shared, StoreError> {
        let mut agreements = Vec::new();
        let mut fleets = HashMap::new();
        for share in store.shares_to(org)? {
            let area = match share.area.as_deref().map(Area::parse).transpose() {
                Ok(a) => a,
                Err(e) => {
                    // Validated at grant time; an unreadable area shares nothing.
                    tracing::error!(share = share.id, "sharing agreement skipped: {e}");
                    continue;
                }
            };
            if !fleets.contains_key(&share.from_org) {
                fleets.insert(share.from_org.clone(), store.fleet(&share.from_org)?);
            }
            agreements.push(Agreement { share, area });
        }
        Ok(Shared { agreements, fleets })
    }

    /// Agreement ids, to tell whether anything changed between two loads.
    pub fn ids(&self) -> Vec<i64> {
        self.agreements.iter().map(|a| a.share.id).collect()
    }

    /// `v` of `owner` as the agreements let this org see it, or `None`.
    pub fn view(&self, live: &LiveView, owner: &str, v: &FleetVehicle) -> Option<SharedVehicle> {
        let state = super::fleet::freshest(live, owner, v)?.state;
        self.agreements
            .iter()
            .filter(|a| a.share.from_org == owner)
            .filter(|a| {
                a.share.vehicles.is_empty()
                    || a.share
                        .vehicles
                        .iter()
                        .any(|n| *n == v.name || v.uid.as_deref() == Some(n.as_str()))
            })
            .filter(|a| {
                a.area
                    .as_ref()
                    .is_none_or(|area| area.contains(state.lat, state.lon))
            })
            // Several agreements may admit it: the most precise one applies.
            .min_by(|a, b| {
                let grid = |a: &Agreement| a.share.coarsen_m.unwrap_or(0.0);
                grid(a).total_cmp(&grid(b))
            })
            .map(|a| {
                let (lat, lon, alt, heading) = match a.share.coarsen_m {
                    Some(m) => {
                        let (lat, lon) = coarsen(state.lat, state.lon, m);
                        (lat, lon, (state.alt_msl_m / m).round() * m, None)
                    }
                    None => (state.lat, state.lon, state.alt_msl_m, state.heading_deg),
                };
                SharedVehicle {
                    id: v.id,
                    name: v.name.clone(),
                    coarsened_m: a.share.coarsen_m,
                    state: SharedState {
                        t_us: state.t_us,
                        lat,
                        lon,
                        alt_msl_m: alt,
                        heading_deg: heading,
                        armed: state.armed,
                        mode: state.mode.clone(),
                    },
                }
            })
    }

    pub fn entities(&self, live: &LiveView) -> Vec<Entity> {
        let mut out = Vec::new();
        for (owner, fleet) in &self.fleets {
            for v in fleet {
                if let Some(view) = self.view(live, owner, v) {
                    out.push(Entity {
                        owner: owner.clone(),
                        shared: true,
                        view: EntityView::Shared(view),
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.owner, a.id()).cmp(&(&b.owner, b.id())));
        out
    }
}

impl Entity {
    pub fn id(&self) -> i64 {
        match &self.view {
            EntityView::Own(v) => v.id,
            EntityView::Shared(v) => v.id,
        }
    }
}

pub fn own_entities(live: &LiveView, org: &str, fleet: &[FleetVehicle]) -> Vec<Entity> {
    fleet
        .iter()
        .map(|v| Entity {
            owner: org.to_string(),
            shared: false,
            view: EntityView::Own(vehicle_json(live, org, v)),
        })
        .collect()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Picture {
    org: String,
    entities: Vec<Entity>,
}

/// The common operating picture: the caller's org's vehicles and everything other orgs
/// share with it, each labelled with its owner.
#[utoipa::path(get, path = "/api/v1/cop", tag = "cop",
    responses((status = 200, description = "the picture", body = Picture),
        trellis_web::openapi::ReadRefusals))]
pub async fn cop(State(s): State<HqState>, caller: Caller) -> Result<Json<Picture>, ApiError> {
    let org = caller.0.org.clone();
    let o = org.clone();
    let (fleet, shared) = blocking(&s.store, move |st| {
        Ok((st.fleet(&o)?, Shared::load(st, &o)?))
    })
    .await?;
    let mut entities = own_entities(&s.live, &org, &fleet);
    entities.extend(shared.entities(&s.live));
    Ok(Json(Picture { org, entities }))
}
